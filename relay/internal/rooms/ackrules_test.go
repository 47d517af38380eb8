package rooms

import (
	"testing"
)

// TestStaleAckDoesNotPinTheBuffer: a member that sends much and receives little acknowledges late; once it
// has, its own frames must leave the log as its peer acknowledges them, even though entries between its old
// acknowledgement and them were pushed out meanwhile. (The log used to stay full for good, every new frame
// pushing one out: thousands of evictions in a one-way transfer of a client that followed the protocol.)
func TestStaleAckDoesNotPinTheBuffer(t *testing.T) {
	g := newForwardRigWith(t, Config{RoomBuffer: 16}, false) // a has not acknowledged b's join (seq 2) yet
	for range 40 {
		if !g.step(5) {
			t.Fatal("b did not get a frame")
		}
	}
	g.ma.Ack(g.a, 2) // a's acknowledgement comes at last
	evicted := g.table.stats.Evicted.Load()
	for range 40 {
		if !g.step(5) {
			t.Fatal("b did not get a frame")
		}
	}
	r := g.ma.room
	r.mu.Lock()
	n := r.log.n
	r.mu.Unlock()
	if more := g.table.stats.Evicted.Load() - evicted; n != 0 || more != 0 {
		t.Fatalf("after both acknowledged everything the log holds %d entries and pushed out %d more; want 0 and 0", n, more)
	}
}

// TestOwnFramesWaitForOwnWriter: a member whose own writer is behind (its client reads slowly) while it keeps
// sending must not push out of the room buffer the entries it has not been sent yet: its frames are refused
// as Crowded until its writer catches up, and it loses nothing.
func TestOwnFramesWaitForOwnWriter(t *testing.T) {
	g := newForwardRigWith(t, Config{RoomBuffer: 16}, true)
	if forwardBytes(g.mb, g.b, []byte("from b")) != Forwarded { // a's writer has not run: a has not been sent it
		t.Fatal("b's frame was refused")
	}
	const n = 20 // more than the buffer holds
	sent := 0
	for ; sent < n; sent++ {
		res := forwardBytes(g.ma, g.a, []byte("from a"))
		if res == Crowded {
			break
		}
		if res != Forwarded {
			t.Fatalf("a's frame %d: %v", sent, res)
		}
	}
	if sent == n {
		t.Fatal("a sent a whole buffer past the frame it had not been sent, without waiting for its writer")
	}
	it, data := next(g.ma, g.a, 1) // a's writer catches up
	if it.Kind != Frame || data != "from b" {
		t.Fatalf("a's writer wrote %+v %q, want b's frame", it, data)
	}
	for ; sent < n; sent++ {
		if res := forwardBytes(g.ma, g.a, []byte("from a")); res != Forwarded {
			t.Fatalf("a's frame %d after its writer caught up: %v", sent, res)
		}
	}
	if s := g.table.stats.Lost.Load(); s != 0 {
		t.Fatalf("%d lost notices, want 0", s)
	}
}
