package relay

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/cleanrelay/cleanrelay/relay/internal/ws"
)

// FuzzParseRequest: any bytes either parse into a request that marshals and parses back to the same request,
// or are refused with a documented error code; nothing panics.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		`{"t":"create","id":1,"max":2}`, `{"t":"join","id":2,"room":"r","cap":"c"}`,
		`{"t":"resume","id":3,"resume":"x","last":41}`, `{"t":"ack","ch":1,"seq":64}`, `{"t":"burn","ch":1}`,
		`{"t":"leave","id":4,"ch":1}`, `{`, `[]`, `{"t":5}`, `{"id":-1}`, `{"id":1e300}`, `{"t":"x","ch":1.5}`,
		"{\"t\":\"\xff\"}", ` {"t":"create"}`,
	} {
		f.Add([]byte(s))
	}
	codes := map[string]bool{codeBadRequest: true, codeControlSize: true}
	f.Fuzz(func(t *testing.T, data []byte) {
		var req request
		perr := parseRequest(data, &req)
		if perr != nil {
			if !codes[perr.Code] || perr.Msg == "" {
				t.Fatalf("undocumented error %q %q", perr.Code, perr.Msg)
			}
			return
		}
		again, err := json.Marshal(req)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		var req2 request
		perr = parseRequest(again, &req2)
		if perr != nil {
			t.Fatalf("re-parse of %s: %v", again, perr)
		}
		if !reflect.DeepEqual(req, req2) {
			t.Fatalf("round trip changed the request: %+v != %+v", req, req2)
		}
	})
}

// fuzzPeers drives two connections of one relay without sockets: each fuzz record is one message from one of
// them, and after each the writers' work is done by pump, which checks everything the relay would send.
type fuzzPeers struct {
	t     *testing.T
	srv   *Server
	conns [2]*conn
	// The last room id, capability and token the relay handed out, substituted for $ROOM, $CAP and $TOKEN
	// so that the fuzzer can reach join and resume.
	room, capability, token string
}

func (p *fuzzPeers) pump() {
	out := ws.GetBuf(deliverHeaderLen + p.srv.cfg.MaxFrame)
	defer ws.PutBuf(out)
	for _, c := range p.conns {
		c.mu.Lock()
		ctrl := c.ctrl
		c.ctrl = nil
		refs := append([]chanRef(nil), c.chans...)
		c.mu.Unlock()
		for _, msg := range ctrl {
			var m map[string]any
			if err := json.Unmarshal(msg, &m); err != nil || m["t"] == nil {
				p.t.Fatalf("relay sent a malformed control message %q", msg)
			}
			if m["t"] == "joined" {
				p.room, _ = m["room"].(string)
				p.token, _ = m["resume"].(string)
				if cp, ok := m["cap"].(string); ok {
					p.capability = cp
				}
			}
		}
		for _, ref := range refs {
			if ref.m == nil {
				p.t.Fatalf("channel %d still reserved between requests", ref.ch)
			}
			for {
				msg, bin := formatItem(out.B, ref.ch, ref.m.Next(c, ref.ch, out.B[deliverHeaderLen:]))
				if msg == nil {
					break
				}
				if bin && (len(msg) < deliverHeaderLen+1 || msg[0] != ref.ch) {
					p.t.Fatalf("malformed delivery % x", msg)
				}
				if !bin && !json.Valid(msg) {
					p.t.Fatalf("malformed notice %q", msg)
				}
			}
		}
	}
}

// FuzzConnInput feeds arbitrary client messages to the relay: it must answer each with a well-formed reply,
// keep every room within its bounds, and never panic.
func FuzzConnInput(f *testing.F) {
	rec := func(conn, typ int, msg string) []byte {
		return append([]byte{byte(conn<<7 | typ<<6 | len(msg)&63)}, msg...)
	}
	cat := func(rs ...[]byte) []byte { return bytes.Join(rs, nil) }
	f.Add(cat(rec(0, 1, `{"t":"create"}`), rec(1, 1, `{"t":"join","room":"$ROOM","cap":"$CAP"}`), rec(0, 0, "\x01hello"), rec(1, 0, "\x01hi")))
	f.Add(cat(rec(0, 1, `{"t":"create","max":3}`), rec(0, 0, "\x01a"), rec(1, 1, `{"t":"resume","resume":"$TOKEN","last":1}`), rec(1, 1, `{"t":"burn","ch":1}`)))
	f.Add(cat(rec(0, 1, `{"t":"create"}`), rec(0, 1, `{"t":"ack","ch":1,"seq":99}`), rec(0, 1, `{"t":"leave","ch":1}`), rec(0, 0, "\x01x")))
	f.Add(cat(rec(1, 0, ""), rec(1, 0, "\x07"), rec(0, 1, "{"), rec(0, 1, `{"t":"nope"}`)))
	f.Fuzz(func(t *testing.T, data []byte) {
		watchdog := time.AfterFunc(5*time.Second, func() { panic(fmt.Sprintf("input hangs: %q", data)) })
		defer watchdog.Stop()
		srv, err := New(Config{RoomBuffer: 8, RoomBufferBytes: 256, MaxFrame: 64, MaxRoomsPerConn: 3, MaxRooms: 4}, nil, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		p := &fuzzPeers{t: t, srv: srv}
		for i := range p.conns {
			p.conns[i] = newConn(srv, nil, Identity{})
			p.conns[i].writing.Store(true) // no writer goroutine: pump plays its part
		}
		for len(data) > 0 {
			h := data[0]
			n := min(int(h&63), len(data)-1)
			msg, c := data[1:1+n], p.conns[h>>7]
			data = data[1+n:]
			if h&64 != 0 {
				msg = bytes.ReplaceAll(msg, []byte("$ROOM"), []byte(p.room))
				msg = bytes.ReplaceAll(msg, []byte("$CAP"), []byte(p.capability))
				msg = bytes.ReplaceAll(msg, []byte("$TOKEN"), []byte(p.token))
				c.handleControl(msg)
			} else {
				c.handleFrame(ws.PayloadWithHead(msg, sendHeaderLen)) // as the reader makes it; handleFrame owns it
			}
			p.pump()
		}
		srv.table.Close(reasonShutdown)
		if n := srv.stats.room.Rooms.Load(); n != 0 {
			t.Fatalf("%d rooms counted after closing all", n)
		}
	})
}
