package relay_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/cleanrelay/cleanrelay/relay"
	"github.com/cleanrelay/cleanrelay/relay/client"
)

// TestMemoryBudget: over its budget (here pushed over by Config.ExtraHeld, as the key directory would) the
// relay refuses new rooms and joins with over_memory, keeps a conversation that follows the protocol going,
// shows it all in its counters, and takes new work again once memory is back under the budget.
func TestMemoryBudget(t *testing.T) {
	var extra atomic.Int64
	const budget = 64 << 20
	tr := startRelay(t, relay.Config{MaxMemory: budget, ExtraHeld: extra.Load})
	a, b, ra, rb := tr.pair(t)
	waiting := tr.dial(t, nil)
	rw := mustCreate(t, waiting, 0)
	extra.Store(budget)
	time.Sleep(150 * time.Millisecond) // ExtraHeld is asked at most every 100 ms
	c := tr.dial(t, nil)
	_, err := c.Create(ctx10s(t), 0)
	wantError(t, err, "over_memory")
	_, err = c.Join(ctx10s(t), rw.ID, rw.Cap)
	wantError(t, err, "over_memory")
	for range 20 {
		exchange(t, a, b, ra, rb) // the pair acknowledges nothing and loses nothing
	}
	s := tr.srv.Stats()
	if s.MemoryRefusals["create"] != 1 || s.MemoryRefusals["join"] != 1 || s.MemoryHeld <= budget || s.MemoryBudget != budget {
		t.Fatalf("refusals %v, held %d, budget %d; want 1 create, 1 join, held over %d", s.MemoryRefusals, s.MemoryHeld, s.MemoryBudget, budget)
	}
	extra.Store(0)
	time.Sleep(150 * time.Millisecond)
	mustJoin(t, c, rw.ID, rw.Cap)
}

// TestMemoryBudgetShedsAndRefusesFrames: over the budget, a room whose receiver reads but never acknowledges
// keeps only what it has not yet sent; a room whose receiver does not read at all has its frames refused with
// over_memory once a quarter of its buffer waits unsent. The reading receiver loses nothing.
func TestMemoryBudgetShedsAndRefusesFrames(t *testing.T) {
	var extra atomic.Int64
	const budget = 64 << 20
	tr := startRelay(t, relay.Config{MaxMemory: budget, ExtraHeld: extra.Load, RoomBufferBytes: 1 << 20})
	a, b, ra, _ := tr.pair(t)
	// A receiver that does not read, with small kernel buffers.
	sender := tr.dial(t, nil)
	rs := mustCreate(t, sender, 0)
	frozen := tr.dial(t, frozenOptions())
	mustJoin(t, frozen, rs.ID, rs.Cap)
	extra.Store(budget)
	time.Sleep(150 * time.Millisecond)
	payload := make([]byte, 16<<10)
	for i := range 200 { // 3 MiB: three buffers' worth
		payload[0] = byte(i)
		a.Send(ra.Ch, payload)
		if ev := nextFrame(t, b); ev.Payload[0] != byte(i) {
			t.Fatalf("b got frame %d, want %d", ev.Payload[0], i)
		}
	}
	if s := tr.srv.Stats(); s.MemoryShed == 0 || s.Drops["evicted"] != 0 || s.Lost != 0 {
		t.Fatalf("shed %d, evicted %d, lost %d; want some shed and nothing evicted or lost", s.MemoryShed, s.Drops["evicted"], s.Lost)
	}
	refused := false
	for i := 0; i < 4000 && !refused; i++ {
		sender.Send(rs.Ch, payload)
		select {
		case ev := <-sender.Events():
			refused = ev.Kind == client.KindError && ev.Err.Code == "over_memory"
		default:
		}
	}
	if !refused {
		t.Fatal("frames into a room that holds a quarter of its buffer unsent were not refused over the budget")
	}
	if s := tr.srv.Stats(); s.MemoryRefusals["frame"] == 0 || s.Drops["over_memory"] == 0 {
		t.Fatalf("refusals %v, drops %v; want frame refusals counted", s.MemoryRefusals, s.Drops)
	}
}

// TestUnackedRoomsStayWithinBudget: rooms whose receivers read but never acknowledge fill their buffers with
// 4,097-byte frames (8 KiB each as held); with a budget below what they would hold, the relay's account stays
// within the budget and every receiver gets every frame.
func TestUnackedRoomsStayWithinBudget(t *testing.T) {
	const rooms, budget = 24, 16 << 20 // unbounded, 24 rooms would hold 24 MiB of buffers
	tr := startRelay(t, relay.Config{MaxMemory: budget})
	payload := make([]byte, 4097)
	for range rooms {
		a, b, ra, _ := tr.pair(t)
		for i := range 140 { // more than the 128 buffers of 8 KiB that fill 1 MiB
			payload[0] = byte(i)
			a.Send(ra.Ch, payload)
			if ev := nextFrame(t, b); ev.Payload[0] != byte(i) {
				t.Fatalf("b got frame %d, want %d", ev.Payload[0], i)
			}
		}
		if s := tr.srv.Stats(); s.MemoryHeld > budget+64<<10 {
			t.Fatalf("the relay holds %d bytes, over its budget of %d", s.MemoryHeld, budget)
		}
	}
	s := tr.srv.Stats()
	t.Logf("held %d of %d bytes; %d entries shed; drops %v", s.MemoryHeld, s.MemoryBudget, s.MemoryShed, s.Drops)
	if s.MemoryShed == 0 || s.Lost != 0 {
		t.Fatalf("shed %d, lost %d; want some shed and nothing lost", s.MemoryShed, s.Lost)
	}
}

// TestFramesDoNotWaitForExtraHeld: the frame path never waits for Config.ExtraHeld (the key directory's count,
// behind the lock every login, proof and key lookup takes): with ExtraHeld stuck, a pair still chats.
func TestFramesDoNotWaitForExtraHeld(t *testing.T) {
	var stuck atomic.Bool
	release := make(chan struct{})
	extra := func() int64 {
		if stuck.Load() {
			<-release
		}
		return 0
	}
	tr := startRelay(t, relay.Config{ExtraHeld: extra})
	t.Cleanup(func() { close(release) }) // runs before the relay's own cleanup, which waits for its rooms
	a, b, ra, rb := tr.pair(t)
	stuck.Store(true)
	for range 3 {
		time.Sleep(150 * time.Millisecond) // an answer of ExtraHeld is due again (it is asked at most every 100 ms)
		exchange(t, a, b, ra, rb)
	}
}
