package rooms

import (
	"testing"
)

// TestHeldCountsCapacity: a 4,097-byte payload sits in an 8 KiB buffer; the room's bound and the relay's
// memory account count the 8 KiB, and give it back when the frame leaves.
func TestHeldCountsCapacity(t *testing.T) {
	g := newForwardRig(t)
	r := g.ma.room
	held := &g.table.mem.Held
	before := held.Load()
	if forwardBytes(g.ma, g.a, make([]byte, 4097)) != Forwarded {
		t.Fatal("frame refused")
	}
	r.mu.Lock()
	logBytes := r.log.bytes
	head := r.log.head
	r.mu.Unlock()
	if got := held.Load() - before; logBytes != 8192 || got < 8192 {
		t.Fatalf("log counts %d bytes and the account %d more for a 4097-byte payload; want 8192 and at least 8192", logBytes, got)
	}
	g.mb.Ack(g.b, head)
	if got := held.Load(); got > before {
		t.Fatalf("after the frame left, the account holds %d bytes, %d before", got, before)
	}
}
