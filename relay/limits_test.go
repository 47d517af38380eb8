package relay_test

import (
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/cleanrelay/cleanrelay/relay"
)

// TestFloodsArePaced: pings, pongs and empty fragments cost a message of the rate limit each, like frames, so
// a flood of them is read more slowly instead of costing the relay a core.
func TestFloodsArePaced(t *testing.T) {
	for _, tc := range []struct {
		name  string
		flood func(i int) []byte
	}{
		{"ping", func(int) []byte { return frame(true, websocket.PingMessage, []byte("p")) }},
		{"pong", func(int) []byte { return frame(true, websocket.PongMessage, nil) }},
		{"empty fragments", func(i int) []byte {
			if i == 0 {
				return frame(false, websocket.BinaryMessage, nil)
			}
			return frame(false, 0, nil)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := startRelay(t, relay.Config{RateFrames: 200, RateBurst: 10})
			rc := tr.dialRaw(t)
			var seg []byte
			for i := range 60 {
				seg = append(seg, tc.flood(i)...)
			}
			rc.write(seg)
			eventually(t, "the relay read the flood more slowly", func() bool { return tr.srv.Stats().RateLimited > 0 })
		})
	}
}

// TestInvalidUTF8TextCloses1007: a text message that is not UTF-8 closes the connection with 1007 (RFC 6455
// §8.1).
func TestInvalidUTF8TextCloses1007(t *testing.T) {
	tr := startRelay(t, relay.Config{})
	rc := tr.dialRaw(t)
	rc.write(frame(true, websocket.TextMessage, []byte("{\"t\":\"create\",\"x\":\"\xff\"}")))
	if code := rc.closed(); code != websocket.CloseInvalidFramePayloadData {
		t.Fatalf("closed with %d, want 1007", code)
	}
}

// TestControlTooLargeSaysItsSize: the error names the size the client sent, not the bytes the relay kept.
func TestControlTooLargeSaysItsSize(t *testing.T) {
	tr := startRelay(t, relay.Config{})
	rc := tr.dialRaw(t)
	rc.write(text(`{"t":"create","pad":"` + strings.Repeat("x", 10000) + `"}`))
	r := rc.reply()
	if r["code"] != "control_too_large" || !strings.Contains(r["msg"].(string), "10023 bytes") {
		t.Fatalf("got %v, want control_too_large naming 10023 bytes", r)
	}
	rc.write(text(`{"t":"create","id":2}`)) // the connection goes on
	if r := rc.reply(); r["t"] != "joined" {
		t.Fatalf("got %v, want joined", r)
	}
}

// TestIncompleteMessageKeptAliveByPings: a message left unfinished while the client keeps the connection
// alive with pings holds its buffer only for the message timeout; then the connection is closed with 1008.
func TestIncompleteMessageKeptAliveByPings(t *testing.T) {
	tr := startRelay(t, relay.Config{MessageTimeout: 300 * time.Millisecond})
	rc := tr.dialRaw(t)
	rc.write(frame(false, websocket.BinaryMessage, make([]byte, 60<<10)))
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				if _, err := rc.nc.Write(frame(true, websocket.PingMessage, nil)); err != nil {
					return
				}
			}
		}
	}()
	if code := rc.closed(); code != websocket.ClosePolicyViolation {
		t.Fatalf("closed with %d, want 1008", code)
	}
	if n := tr.srv.Stats().Drops["incomplete"]; n != 1 {
		t.Fatalf("%d incomplete drops, want 1", n)
	}
}

// TestJoinTwiceIsAlreadyMember: a connection that joins a room it already holds is told so, not that the
// room is full, and nothing changes.
func TestJoinTwiceIsAlreadyMember(t *testing.T) {
	tr := startRelay(t, relay.Config{})
	a, b, ra, rb := tr.pair(t)
	_, err := b.Join(ctx10s(t), ra.ID, ra.Cap)
	wantError(t, err, "already_member")
	big := tr.dial(t, nil)
	r3 := mustCreate(t, big, 3)
	_, err = big.Join(ctx10s(t), r3.ID, r3.Cap) // a free place, but this connection holds one already
	wantError(t, err, "already_member")
	exchange(t, a, b, ra, rb)
}

// TestHelloSaysTheLimits: hello carries what a client must know to follow the protocol (docs/protocol.md §4.1).
func TestHelloSaysTheLimits(t *testing.T) {
	tr := startRelay(t, relay.Config{IdleTimeout: 90 * time.Second, RateFrames: 500, RateBurst: 20, AckDelay: 150 * time.Millisecond})
	h := tr.dial(t, nil).Hello()
	if h.Idle != 90 || h.Rate != 500 || h.Burst != 20 || h.AckDelay != 150 || h.Buffer != 256 || h.AckEvery != 32 {
		t.Fatalf("hello %+v, want idle 90, rate 500, burst 20, ackDelay 150, buffer 256, ackEvery 32", h)
	}
}
