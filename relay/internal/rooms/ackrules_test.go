package relay

import (
	"testing"
	"time"
)

// TestStaleAckDoesNotPinTheBuffer: a member that sends much and receives little acknowledges late; once it
// has, its own frames must leave the log as its peer acknowledges them, even though entries between its old
// acknowledgement and them were pushed out meanwhile. (The log used to stay full for good, every new frame
// pushing one out: thousands of evictions in a one-way transfer of a client that followed the protocol.)
func TestStaleAckDoesNotPinTheBuffer(t *testing.T) {
	g := newForwardRigWith(t, Config{RoomBuffer: 16}, false) // a has not acknowledged b's join (seq 2) yet
	payload := []byte("frame")
	for range 40 {
		if !g.step(payload) {
			t.Fatal("b did not get a frame")
		}
	}
	r := g.ma.room
	r.mu.Lock()
	r.ackLocked(g.ma, 2) // a's acknowledgement comes at last
	r.mu.Unlock()
	evicted := g.srv.stats.drops[dropEvicted].Load()
	for range 40 {
		if !g.step(payload) {
			t.Fatal("b did not get a frame")
		}
	}
	r.mu.Lock()
	n := r.log.n
	r.mu.Unlock()
	if more := g.srv.stats.drops[dropEvicted].Load() - evicted; n != 0 || more != 0 {
		t.Fatalf("after both acknowledged everything the log holds %d entries and pushed out %d more; want 0 and 0", n, more)
	}
}

// TestOwnFramesWaitForOwnWriter: a member whose own writer is behind (its client reads slowly) while it keeps
// sending must not push out of the room buffer the entries it has not been sent yet: its frames wait for its
// writer, and it loses nothing.
func TestOwnFramesWaitForOwnWriter(t *testing.T) {
	g := newForwardRigWith(t, Config{RoomBuffer: 16}, true)
	r := g.ma.room
	if r.forwardBytes(g.mb, g.b, []byte("from b")) != forwarded { // a's writer has not run: a has not been sent it
		t.Fatal("b's frame was refused")
	}
	const n = 20 // more than the buffer holds
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range n {
			if r.forwardBytes(g.ma, g.a, []byte("from a")) != forwarded {
				t.Error("a's frame was refused")
				return
			}
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for g.srv.stats.ownWriterWaits.Load() == 0 {
		select {
		case <-done:
			t.Fatal("a sent a whole buffer past the frame it had not been sent, without waiting for its writer")
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("a's frames neither waited nor went through")
		}
		time.Sleep(time.Millisecond)
	}
	r.mu.Lock()
	msg, binary := r.nextForLocked(g.ma, g.a, 1, g.out.B) // a's writer catches up
	r.mu.Unlock()
	if !binary || string(msg[deliverHeaderLen:]) != "from b" {
		t.Fatalf("a's writer wrote %q, want b's frame", msg)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a's frames still wait after its writer caught up")
	}
	if s := g.srv.stats.lost.Load(); s != 0 {
		t.Fatalf("%d lost notices, want 0", s)
	}
}
