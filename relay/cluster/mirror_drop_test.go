package cluster

import (
	"testing"
	"time"

	"github.com/cleanrelay/cleanrelay/relay/cluster/natsnet"
	"github.com/cleanrelay/cleanrelay/relay/internal/rooms"
)

// TestMirrorDropRetried: node A sequences rooms mirrored on B; node C joins, and the rooms whose rendezvous
// score is higher on C move there, A telling B to drop its copies. While every drop A sends is lost (as core
// NATS loses messages), B keeps the stale copies (which it would take over as well if A died: two sequencers);
// once drops get through again, A's drops asked again reach B, and B holds exactly the rooms whose mirror it
// is, C the others. A room that ends is dropped by its mirror the same way. On the code before, a lost drop
// was never sent again and B kept its stale copies.
func TestMirrorDropRetried(t *testing.T) {
	m := movedMirrors(t)
	la, b, c, onB, onC, all := m.la, m.b, m.c, m.onB, m.onC, m.all
	la.loseDrops.Store(0)
	waitFor(t, 10*time.Second, "B drops the copies of the rooms that moved", func() bool { return b.Stats().RoomsMirrored == onB })
	if n := c.Stats().RoomsMirrored; n != onC {
		t.Errorf("C holds %d copies, want %d", n, onC)
	}
	// A room that ends, its drop lost once: its mirror (C) drops it all the same.
	la.loseDrops.Store(1)
	x, _ := m.onCRoom.member()
	m.ta.Leave(m.onCRoom, x)
	waitFor(t, 10*time.Second, "C drops the copy of the room that ended", func() bool { return c.Stats().RoomsMirrored == onC-1 })
	if la.loseDrops.Load() != 0 {
		t.Errorf("the ended room's drop was not lost once (%d left to lose)", la.loseDrops.Load())
	}
	t.Logf("%d rooms, %d moved from B to C with every drop lost for a while: B and C hold exactly their own", all, onC)
}

// TestMovedMirrorTakenOverOnce: as in TestMirrorDropRetried, rooms of A mirrored on B move to C while every drop
// is lost, so B keeps stale copies of them; then A leaves NATS without a word. Each room is taken
// over once: the moved ones by C, whose copies are of a later mirror generation, the others by B, which declines
// its stale copies after asking C. On the code before, B took over every room, the moved ones as well as C: two
// sequencers for one room.
func TestMovedMirrorTakenOverOnce(t *testing.T) {
	m := movedMirrors(t)
	m.a.Close() // as dead to the others as a SIGKILL: no more heartbeats, nothing handed over
	// Each node decides on every copy of A's (or C, first, mirrors the rooms it took over on B, in place of
	// B's stale copies).
	waitFor(t, 20*time.Second, "B and C decide on every copy of A's", func() bool {
		return m.lb.copiesOf("node-a") == 0 && m.lc.copiesOf("node-a") == 0
	})
	if got := m.lb.takeovers.Load(); got != uint64(m.onB) {
		t.Errorf("B took over %d rooms, want the %d whose mirror it still was (it declined %d)", got, m.onB, m.lb.declined.Load())
	}
	if got := m.lc.takeovers.Load(); got != uint64(m.onC) {
		t.Errorf("C took over %d rooms, want the %d that moved there", got, m.onC)
	}
	if n := m.tb.RoomsHere() + m.tc.RoomsHere(); n != int64(m.all) {
		t.Errorf("B and C sequence %d rooms together, want %d", n, m.all)
	}
	t.Logf("%d rooms, %d moved to C with B's drops lost: B took over %d and declined %d, C took over %d",
		m.all, m.onC, m.lb.takeovers.Load(), m.lb.declined.Load(), m.lc.takeovers.Load())
}

// moved is node A with rooms mirrored on B and C, and B holding stale copies of the rooms that moved to C.
type moved struct {
	ta, tb, tc    *rooms.Table
	la, lb, lc    *roomLinks
	a, b, c       *Node
	onB, onC, all int
	onCRoom       *chatter
}

// movedMirrors makes rooms on node A, mirrored on B, until at least three of them will move to C and three
// stay on B; then C joins while every drop A sends is lost, and the moved rooms' copies stay on B as well.
func movedMirrors(t *testing.T) *moved {
	t.Helper()
	nc := natsnet.Start(t, natsnet.Options{})
	keys := testKeys(t, secretA)
	a, ta, la := roomsNode(t, nc, "node-a", 0, keys, nil)
	b, tb, lb := roomsNode(t, nc, "node-b", 1, keys, nil)
	m := &moved{ta: ta, tb: tb, la: la, lb: lb, a: a, b: b}
	waitFor(t, 10*time.Second, "the nodes hear each other", func() bool { return len(a.livePeers()) == 1 && len(b.livePeers()) == 1 })
	both := map[string]uint64{"node-b": 1, "node-c": 1}
	for m.onB < 3 || m.onC < 3 {
		if m.all == 60 {
			t.Fatal("60 rooms and not three on each of B and C")
		}
		x := newChatter("x")
		var j rooms.Joined
		if err := ta.Create(rooms.Seat{Conn: x, Ch: 1}, 2, &j); err != nil {
			t.Fatal(err)
		}
		x.attached(ta, &j, true)
		m.all++
		if node, _ := la.mirrorFor(&j.Room, both, nil); node == "node-c" {
			m.onC++
			m.onCRoom = x
		} else {
			m.onB++
		}
	}
	waitFor(t, 10*time.Second, "B mirrors every room", func() bool { return b.Stats().RoomsMirrored == m.all })
	la.loseDrops.Store(1 << 30)
	m.c, m.tc, m.lc = roomsNode(t, nc, "node-c", 2, keys, nil)
	waitFor(t, 10*time.Second, "C mirrors its rooms", func() bool { return m.c.Stats().RoomsMirrored == m.onC })
	time.Sleep(time.Second) // a few heartbeats: every drop asked again is lost too
	if n := b.Stats().RoomsMirrored; n != m.all {
		t.Fatalf("B holds %d copies while every drop is lost, want all %d: nothing was lost, the test shows nothing", n, m.all)
	}
	return m
}

// copiesOf counts the copies held here of node's rooms, and those being taken over.
func (l *roomLinks) copiesOf(node string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(l.adopting)
	for _, c := range l.mirrors {
		if c.node == node {
			n++
		}
	}
	return n
}
