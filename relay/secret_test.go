package relay

import (
	"crypto/rand"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/cleanrelay/cleanrelay/relay/internal/rooms"
)

func TestWireSecretDecode(t *testing.T) {
	var room roomID
	var cp secret
	rand.Read(room[:])
	cp.Fill()
	roomText, capText := b64.EncodeToString(room[:]), b64.EncodeToString(cp[:])
	// The last character of a 32-byte value carries 2 spare bits; a strict decoder refuses them set, so that
	// each value has one text.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	sloppy := capText[:42] + string(alphabet[strings.IndexByte(alphabet, capText[42])|1])
	tests := []struct {
		name  string
		json  string
		state wireState
		n     int
	}{
		{"room id", `"` + roomText + `"`, wireOK, roomIDLen},
		{"capability", `"` + capText + `"`, wireOK, secretLen},
		{"null", `null`, wireAbsent, 0},
		{"empty", `""`, wireAbsent, 0},
		{"too short", `"` + capText[:42] + `"`, wireMalformed, 0},
		{"too long", `"` + capText + `A"`, wireMalformed, 0},
		{"standard base64", `"` + strings.Repeat("+", 43) + `"`, wireMalformed, 0},
		{"spare bits set", `"` + sloppy + `"`, wireMalformed, 0},
		{"escaped", `"\u0041` + capText[1:] + `"`, wireMalformed, 0},
		{"number", `12`, wireWrongType, 0},
		{"object", `{"a":1}`, wireWrongType, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w wireSecret
			w.b[0] = 0xFF // whatever was there before is wiped
			if err := w.UnmarshalJSON([]byte(tt.json)); err != nil {
				t.Fatal(err)
			}
			if w.state != tt.state || int(w.n) != tt.n {
				t.Fatalf("state %d, %d bytes; want %d, %d", w.state, w.n, tt.state, tt.n)
			}
			if tt.state != wireOK && w.b != [secretLen]byte{} {
				t.Fatalf("bytes left from a refused value: % x", w.b)
			}
		})
	}
	var w wireSecret
	w.UnmarshalJSON([]byte(`"` + roomText + `"`))
	if id, ok := w.roomID(); !ok || *id != room {
		t.Fatalf("room id %v %v", id, ok)
	}
	if _, ok := w.secret(); ok {
		t.Fatal("a room id passes for a capability")
	}
	w.UnmarshalJSON([]byte(`"` + capText + `"`))
	if s, ok := w.secret(); !ok || *s != cp {
		t.Fatalf("capability %v %v", s, ok)
	}
	if _, ok := w.roomID(); ok {
		t.Fatal("a capability passes for a room id")
	}
}

// TestWireSecretMakesNoCopy: decoding an identifier allocates nothing (no string, no buffer), so the only
// copy of it is the one wipe overwrites.
func TestWireSecretMakesNoCopy(t *testing.T) {
	var cp secret
	cp.Fill()
	data := []byte(`"` + b64.EncodeToString(cp[:]) + `"`)
	var w wireSecret
	if allocs := testing.AllocsPerRun(100, func() { w.UnmarshalJSON(data) }); allocs != 0 {
		t.Fatalf("%.1f allocations per decode", allocs)
	}
}

func TestRequestWipe(t *testing.T) {
	var id roomID
	var cp, tok secret
	rand.Read(id[:])
	cp.Fill()
	tok.Fill()
	msg := `{"t":"join","id":7,"room":"` + b64.EncodeToString(id[:]) + `","cap":"` + b64.EncodeToString(cp[:]) +
		`","resume":"` + b64.EncodeToString(tok[:]) + `"}`
	var r request
	if perr := parseRequest([]byte(msg), &r); perr != nil {
		t.Fatal(perr)
	}
	if s, ok := r.Cap.secret(); !ok || *s != cp {
		t.Fatal("the capability did not decode")
	}
	r.wipe()
	for _, w := range []wireSecret{r.Room, r.Cap, r.Resume} {
		if w != (wireSecret{}) {
			t.Fatalf("wiped field still holds %+v", w)
		}
	}
	if r.ID != 7 || r.T != "join" {
		t.Fatalf("wipe touched more than the identifiers: %+v", r)
	}
}

func TestParseRequestIdentifierErrors(t *testing.T) {
	for _, tt := range []struct{ msg, want string }{
		{`{"t":"join","id":3,"room":5,"cap":"x"}`, `field "room" has the wrong type`},
		{`{"t":"resume","id":3,"resume":[],"last":1}`, `field "resume" has the wrong type`},
	} {
		var r request
		perr := parseRequest([]byte(tt.msg), &r)
		if perr == nil || perr.Code != codeBadRequest || perr.Msg != tt.want || r.ID != 3 {
			t.Errorf("%s: %v (id %d), want bad_request %q with the id", tt.msg, perr, r.ID, tt.want)
		}
	}
}

// TestRepliesFitTheirBuffers: a reply that carries a capability and a token is built in one array, never
// grown (which would leave the first part behind in the old one), even at the widest numbers.
func TestRepliesFitTheirBuffers(t *testing.T) {
	srv, err := New(Config{MaxMembers: 1000}, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	j := rooms.Joined{ID: 1<<32 - 1, Seq: 1<<64 - 1, In: 1<<64 - 1, Max: srv.cfg.MaxMembers}
	rand.Read(j.Room[:])
	j.Cap.Fill()
	j.Token.Fill()
	for i := range 1000 {
		j.Members = append(j.Members, 1<<32-1-uint32(i))
	}
	for _, reply := range [][]byte{joinedReply(maxRequestID, 255, &j, true), resumedReply(maxRequestID, 255, &j)} {
		if want := replyRoom + 1000*replyPerMember; cap(reply) != want {
			t.Fatalf("the reply grew its buffer: capacity %d, made with %d", cap(reply), want)
		}
		if !json.Valid(reply) {
			t.Fatalf("malformed reply %s", reply)
		}
	}
}

// TestMalformedIdentifiers: an identifier that is not one the relay could have handed out is answered exactly
// like a wrong one (denied, bad_token), and one of the wrong JSON type is a bad request; the request id comes
// back either way.
func TestMalformedIdentifiers(t *testing.T) {
	srv, err := New(Config{}, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	c := newConn(srv, nil, Identity{})
	c.writing.Store(true) // no writer goroutine: the test reads the queue
	c.handleControl([]byte(`{"t":"create","id":1}`))
	var created map[string]any
	c.mu.Lock()
	json.Unmarshal(c.ctrl[0], &created)
	c.ctrl = nil
	c.mu.Unlock()
	room, _ := created["room"].(string)
	capText, _ := created["cap"].(string)
	if len(room) != 22 || len(capText) != 43 {
		t.Fatalf("create gave %v", created)
	}
	var other secret
	other.Fill()
	for _, tt := range []struct{ msg, code string }{
		{`{"t":"join","id":7,"room":"` + room + `","cap":"` + b64.EncodeToString(other[:]) + `"}`, codeDenied},
		{`{"t":"join","id":7,"room":"` + room + `","cap":"` + capText[:40] + `"}`, codeDenied},
		{`{"t":"join","id":7,"room":"` + room + `x","cap":"` + capText + `"}`, codeDenied},
		{`{"t":"join","id":7,"room":"` + capText + `","cap":"` + capText + `"}`, codeDenied},
		{`{"t":"join","id":7,"room":"` + room + `","cap":7}`, codeBadRequest},
		{`{"t":"join","id":7,"room":"` + room + `"}`, codeBadRequest},
		{`{"t":"resume","id":7,"resume":"` + capText + `","last":0}`, codeBadToken},
		{`{"t":"resume","id":7,"resume":"not a token","last":0}`, codeBadToken},
		{`{"t":"resume","id":7,"resume":true,"last":0}`, codeBadRequest},
	} {
		c.handleControl([]byte(tt.msg))
		c.mu.Lock()
		got := c.ctrl
		c.ctrl = nil
		c.mu.Unlock()
		var e struct {
			T    string `json:"t"`
			ID   int    `json:"id"`
			Code string `json:"code"`
		}
		if len(got) != 1 || json.Unmarshal(got[0], &e) != nil || e.T != "error" || e.Code != tt.code || e.ID != 7 {
			t.Errorf("%s: got %q, want error %s with id 7", tt.msg, got, tt.code)
		}
	}
}
