package relay_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/cleanrelay/cleanrelay/relay"
	"github.com/cleanrelay/cleanrelay/relay/client"
)

func TestChatBothWaysInOrder(t *testing.T) {
	// The clients acknowledge nothing: a log that holds every frame keeps a writer slowed by a loaded machine
	// from being pushed a buffer behind (lost), which is not what this test is about.
	tr := startRelay(t, relay.Config{RoomBuffer: 1024})
	a, b, ra, rb := tr.pair(t)
	if ra.Member != 1 || rb.Member != 2 || ra.ID != rb.ID || ra.Cap == "" || rb.Cap != "" {
		t.Fatalf("rooms: creator %+v, joiner %+v", ra, rb)
	}
	if len(ra.ID) != 22 || len(ra.Cap) != 43 || len(ra.Resume) != 43 {
		t.Fatalf("room id, capability and token must be 128, 256 and 256 bits of base64url: %q %q %q", ra.ID, ra.Cap, ra.Resume)
	}
	const n = 200
	go func() {
		for i := range n {
			a.Send(ra.Ch, []byte(fmt.Sprintf("a%d", i)))
			b.Send(rb.Ch, []byte(fmt.Sprintf("b%d", i)))
		}
	}()
	for _, side := range []struct {
		c    *client.Conn
		from uint32
		pfx  string
	}{{b, ra.Member, "a"}, {a, rb.Member, "b"}} {
		var lastSeq uint64
		for i := range n {
			ev := nextFrame(t, side.c)
			if want := fmt.Sprintf("%s%d", side.pfx, i); string(ev.Payload) != want || ev.From != side.from {
				t.Fatalf("frame %d: got %q from member %d, want %q from %d", i, ev.Payload, ev.From, want, side.from)
			}
			if ev.Seq <= lastSeq {
				t.Fatalf("frame %d: seq %d after %d", i, ev.Seq, lastSeq)
			}
			lastSeq = ev.Seq
		}
	}
	// The counter moves just after the write returns, so possibly after the client has the frame.
	eventually(t, "the relay counts 2n frames forwarded", func() bool { return tr.srv.Stats().FramesOut == 2*n })
}

func TestThirdMemberRefusedFromPair(t *testing.T) {
	tr := startRelay(t, relay.Config{})
	a, b, ra, rb := tr.pair(t)
	c := tr.dial(t, nil)
	_, err := c.Join(ctx10s(t), ra.ID, ra.Cap)
	wantError(t, err, "room_full")
	exchange(t, a, b, ra, rb)
	// The refused join left no trace: no presence event reached the pair.
	select {
	case ev := <-a.Events():
		t.Fatalf("unexpected event after a refused join: %+v", ev)
	case <-time.After(50 * time.Millisecond):
	}

	// A creator may allow more, up to the relay's maximum.
	big := mustCreate(t, a, 3)
	mustJoin(t, b, big.ID, big.Cap)
	mustJoin(t, c, big.ID, big.Cap)
	_, err = a.Create(ctx10s(t), 9)
	wantError(t, err, "bad_request")
}

func TestHandshakeChecks(t *testing.T) {
	tr := startRelay(t, relay.Config{})
	host := tr.http.Listener.Addr().String()
	_, port, _ := strings.Cut(host, ":")
	tests := []struct {
		name     string
		protos   []string
		origin   string
		host     string
		wantCode int
	}{
		{"no subprotocol", nil, "", "", http.StatusBadRequest},
		{"other subprotocol", []string{"chat"}, "", "", http.StatusBadRequest},
		{"foreign origin", []string{relay.Subprotocol}, "http://evil.example", "", http.StatusForbidden},
		{"origin on another port", []string{relay.Subprotocol}, "http://127.0.0.1:1", "", http.StatusForbidden},
		{"null origin", []string{relay.Subprotocol}, "null", "", http.StatusForbidden},
		{"foreign host (DNS rebinding)", []string{relay.Subprotocol}, "", "evil.example:" + port, http.StatusMisdirectedRequest},
		{"own origin", []string{relay.Subprotocol}, "http://" + host, "", http.StatusSwitchingProtocols},
		{"localhost origin", []string{relay.Subprotocol}, "http://localhost:" + port, "", http.StatusSwitchingProtocols},
		{"no origin (not a browser)", []string{relay.Subprotocol}, "", "", http.StatusSwitchingProtocols},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			if tt.origin != "" {
				h.Set("Origin", tt.origin)
			}
			if tt.host != "" {
				h.Set("Host", tt.host)
			}
			d := websocket.Dialer{Subprotocols: tt.protos}
			ws, resp, err := d.Dial(tr.url, h)
			if resp == nil {
				t.Fatalf("no HTTP response: %v", err)
			}
			if resp.StatusCode != tt.wantCode {
				body, _ := io.ReadAll(resp.Body)
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, body, tt.wantCode)
			}
			if ws != nil {
				ws.Close()
			}
		})
	}
	// The page itself carries the security headers.
	resp, err := http.Get(tr.http.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, h := range []string{"Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy"} {
		if resp.Header.Get(h) == "" {
			t.Errorf("page has no %s header", h)
		}
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "connect-src 'self' ws://"+host) || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("CSP %q does not pin connect-src to this relay", csp)
	}
}

// TestBadInput sends each kind of malformed input from one member of a pair and checks the documented answer,
// and that the pair and an unrelated room go on as before.
func TestBadInput(t *testing.T) {
	tr := startRelay(t, relay.Config{MaxFrame: 8192})
	other1, other2, ro1, ro2 := tr.pair(t)
	longJSON := `{"t":"ack","pad":"` + strings.Repeat("x", 5000) + `"}`
	tests := []struct {
		name     string
		typ      int
		data     func(rb *client.Room) []byte
		wantCode string // the error event; "" when the connection must close instead
		wantCl   int    // the close code when it closes
	}{
		{"text where binary is expected", websocket.TextMessage, func(*client.Room) []byte { return []byte{1, 'd', 'e', 'a', 'd'} }, "bad_request", 0},
		{"garbage JSON", websocket.TextMessage, func(*client.Room) []byte { return []byte(`{"t":`) }, "bad_request", 0},
		{"JSON array", websocket.TextMessage, func(*client.Room) []byte { return []byte(`["t","create"]`) }, "bad_request", 0},
		{"type of wrong type", websocket.TextMessage, func(*client.Room) []byte { return []byte(`{"t":5}`) }, "bad_request", 0},
		{"missing type", websocket.TextMessage, func(*client.Room) []byte { return []byte(`{"id":3}`) }, "bad_request", 0},
		{"negative id", websocket.TextMessage, func(*client.Room) []byte { return []byte(`{"t":"create","id":-1}`) }, "bad_request", 0},
		{"channel out of range", websocket.TextMessage, func(*client.Room) []byte { return []byte(`{"t":"burn","ch":300}`) }, "bad_request", 0},
		{"unknown type", websocket.TextMessage, func(*client.Room) []byte { return []byte(`{"t":"sudo"}`) }, "unknown_type", 0},
		{"control message too large", websocket.TextMessage, func(*client.Room) []byte { return []byte(longJSON) }, "control_too_large", 0},
		{"empty binary", websocket.BinaryMessage, func(*client.Room) []byte { return nil }, "bad_frame", 0},
		{"channel byte only", websocket.BinaryMessage, func(rb *client.Room) []byte { return []byte{rb.Ch} }, "bad_frame", 0},
		{"frame for a channel not held", websocket.BinaryMessage, func(*client.Room) []byte { return []byte{77, 1, 2, 3} }, "not_member", 0},
		{"burn of a channel not held", websocket.TextMessage, func(*client.Room) []byte { return []byte(`{"t":"burn","ch":77}`) }, "not_member", 0},
		{"join without capability", websocket.TextMessage, func(rb *client.Room) []byte { return []byte(`{"t":"join","room":"` + rb.ID + `"}`) }, "bad_request", 0},
		{"join with a wrong capability", websocket.TextMessage, func(rb *client.Room) []byte {
			return []byte(`{"t":"join","room":"` + rb.ID + `","cap":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}`)
		}, "denied", 0},
		{"resume with a forged token", websocket.TextMessage, func(*client.Room) []byte {
			return []byte(`{"t":"resume","resume":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","last":0}`)
		}, "bad_token", 0},
		{"text that is not UTF-8", websocket.TextMessage, func(*client.Room) []byte { return []byte{1, 0xde, 0xad, 0xbe, 0xef} }, "", websocket.CloseInvalidFramePayloadData},
		{"oversized frame", websocket.BinaryMessage, func(rb *client.Room) []byte { return append([]byte{rb.Ch}, make([]byte, 8193)...) }, "", websocket.CloseMessageTooBig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b, ra, rb := tr.pair(t)
			if err := b.SendRaw(tt.typ, tt.data(rb)); err != nil {
				t.Fatal(err)
			}
			if tt.wantCode != "" {
				ev := nextEvent(t, b)
				if ev.Kind != client.KindError || ev.Err.Code != tt.wantCode {
					t.Fatalf("got %+v, want error %q", ev, tt.wantCode)
				}
				exchange(t, a, b, ra, rb)
			} else {
				select {
				case <-b.Done():
				case <-time.After(10 * time.Second):
					t.Fatal("connection not closed")
				}
				if !websocket.IsCloseError(b.Err(), tt.wantCl) {
					t.Fatalf("closed with %v, want close code %d", b.Err(), tt.wantCl)
				}
				// Its peer sees it go away, and it can come back with its token.
				if ev := nextEvent(t, a); ev.Kind != client.KindPresence || ev.Event != "away" {
					t.Fatalf("peer got %+v, want presence away", ev)
				}
				b2 := tr.dial(t, nil)
				rb2, err := b2.Resume(ctx10s(t), rb.Resume, rb.Seq)
				if err != nil {
					t.Fatalf("resume after the oversized frame: %v", err)
				}
				exchange(t, a, b2, ra, rb2)
			}
			exchange(t, other1, other2, ro1, ro2)
		})
	}
}

func TestStaleCapabilityAfterBurn(t *testing.T) {
	tr := startRelay(t, relay.Config{})
	a, b, ra, _ := tr.pair(t)
	if err := a.Burn(ra.Ch); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client.Conn{a, b} {
		if ev := nextEvent(t, c); ev.Kind != client.KindClosed || ev.Reason != "burned" {
			t.Fatalf("got %+v, want closed burned", ev)
		}
	}
	c := tr.dial(t, nil)
	_, err := c.Join(ctx10s(t), ra.ID, ra.Cap)
	wantError(t, err, "denied")
	_, err = c.Resume(ctx10s(t), ra.Resume, 0)
	wantError(t, err, "bad_token")
	if n := tr.srv.Stats().Rooms; n != 0 {
		t.Fatalf("%d rooms after burn, want 0", n)
	}
	// The channel was released: sending on it is refused, not forwarded anywhere.
	a.Send(ra.Ch, []byte("after burn"))
	if ev := nextEvent(t, a); ev.Kind != client.KindError || ev.Err.Code != "not_member" {
		t.Fatalf("got %+v, want error not_member", ev)
	}
}

func TestTooManyRoomsPerConnection(t *testing.T) {
	tr := startRelay(t, relay.Config{MaxRoomsPerConn: 2})
	a := tr.dial(t, nil)
	mustCreate(t, a, 0)
	mustCreate(t, a, 0)
	_, err := a.Create(ctx10s(t), 0)
	wantError(t, err, "too_many_rooms")
	if n := tr.srv.Stats().Rooms; n != 2 {
		t.Fatalf("%d rooms, want 2: a refused create must not leave a room behind", n)
	}
}

func TestRelayRoomLimit(t *testing.T) {
	tr := startRelay(t, relay.Config{MaxRooms: 1})
	a := tr.dial(t, nil)
	mustCreate(t, a, 0)
	_, err := a.Create(ctx10s(t), 0)
	wantError(t, err, "busy")
}

func TestConnectionLimit(t *testing.T) {
	tr := startRelay(t, relay.Config{MaxConns: 1})
	tr.dial(t, nil)
	d := websocket.Dialer{Subprotocols: []string{relay.Subprotocol}}
	_, resp, err := d.Dial(tr.url, nil)
	if resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("second connection: %v %v, want 503", resp, err)
	}
}

func TestIdleConnectionClosed(t *testing.T) {
	tr := startRelay(t, relay.Config{IdleTimeout: 50 * time.Millisecond, PongWait: 500 * time.Millisecond, PingPeriod: 20 * time.Millisecond})
	c := tr.dial(t, nil)
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("an idle connection was not closed")
	}
	if !websocket.IsCloseError(c.Err(), websocket.ClosePolicyViolation) {
		t.Fatalf("closed with %v, want 1008", c.Err())
	}
	// A connection that holds a room stays past the idle timeout. (A timeout of its own: under -race on a loaded
	// machine, 50 ms can pass before the create is handled.)
	tr = startRelay(t, relay.Config{IdleTimeout: 2 * time.Second, PongWait: 5 * time.Second, PingPeriod: 100 * time.Millisecond})
	a := tr.dial(t, nil)
	mustCreate(t, a, 0)
	select {
	case <-a.Done():
		t.Fatalf("a connection with a room was closed: %v", a.Err())
	case <-time.After(3 * time.Second):
	}
}

// TestWireBytes checks the exact bytes of protocol §3 with a raw WebSocket, not through the Go client.
func TestWireBytes(t *testing.T) {
	tr := startRelay(t, relay.Config{})
	a := tr.dial(t, nil)
	ra := mustCreate(t, a, 0)
	d := websocket.Dialer{Subprotocols: []string{relay.Subprotocol}}
	ws, _, err := d.Dial(tr.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, msg, _ := ws.ReadMessage(); !bytes.HasPrefix(msg, []byte(`{"t":"hello","v":1,`)) {
		t.Fatalf("first message %s, want hello", msg)
	}
	ws.WriteMessage(websocket.TextMessage, []byte(`{"t":"join","id":9,"room":"`+ra.ID+`","cap":"`+ra.Cap+`"}`))
	_, msg, _ := ws.ReadMessage()
	want := `{"t":"joined","id":9,"ch":1,"room":"` + ra.ID + `","member":2,"resume":"`
	if !bytes.HasPrefix(msg, []byte(want)) || !bytes.HasSuffix(msg, []byte(`"seq":2,"max":2,"members":[1,2]}`)) {
		t.Fatalf("joined reply %s", msg)
	}
	if err := a.Send(ra.Ch, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	typ, msg, err := ws.ReadMessage()
	if err != nil || typ != websocket.BinaryMessage {
		t.Fatalf("read %d %v", typ, err)
	}
	// ch=1, seq=3 (seqs 1 and 2 were the joins), from=1, payload.
	if want := []byte{1, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 1, 'h', 'i'}; !bytes.Equal(msg, want) {
		t.Fatalf("frame bytes % x, want % x", msg, want)
	}
	if got := binary.BigEndian.Uint64(msg[1:9]); got != 3 {
		t.Fatalf("seq %d", got)
	}
}
