package relay_test

import (
	"testing"

	"github.com/cleanrelay/cleanrelay/relay"
	"github.com/cleanrelay/cleanrelay/relay/client"
)

// TestOwnFrameReleasedIsNotLost: when the other member acknowledges a frame at once, the relay releases it
// before the sender's writer has skipped it; the sender must not be told that its own frame was lost.
// (Found by the browser tests: a "lost" for the sender's own key announcement.)
func TestOwnFrameReleasedIsNotLost(t *testing.T) {
	tr := startRelay(t, relay.Config{})
	a, b, ra, rb := tr.pair(t)
	for i := 0; i < 3; i++ {
		if err := b.Send(rb.Ch, []byte("from b")); err != nil {
			t.Fatalf("send: %v", err)
		}
		ev := nextFrame(t, a)
		if err := a.Ack(ra.Ch, ev.Seq); err != nil {
			t.Fatalf("ack: %v", err)
		}
		if err := a.Send(ra.Ch, []byte("from a")); err != nil {
			t.Fatalf("send: %v", err)
		}
		if ev := nextEvent(t, b); ev.Kind != client.KindFrame || string(ev.Payload) != "from a" {
			t.Fatalf("round %d: b got %+v, want the frame from a", i, ev)
		}
	}
}
