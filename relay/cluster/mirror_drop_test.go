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
	nc := natsnet.Start(t, natsnet.Options{})
	keys := testKeys(t, secretA)
	a, ta, la := roomsNode(t, nc, "node-a", 0, keys, nil)
	b, _, _ := roomsNode(t, nc, "node-b", 1, keys, nil)
	waitFor(t, 10*time.Second, "the nodes hear each other", func() bool { return len(a.livePeers()) == 1 && len(b.livePeers()) == 1 })
	// Rooms until at least three of them will move to C, and three stay on B.
	both := map[string]uint64{"node-b": 1, "node-c": 1}
	var onB, onC int
	var members []*chatter
	var onCRoom *chatter
	for onB < 3 || onC < 3 {
		if len(members) == 60 {
			t.Fatal("60 rooms and not three on each of B and C")
		}
		x := newChatter("x")
		var j rooms.Joined
		if err := ta.Create(rooms.Seat{Conn: x, Ch: 1}, 2, &j); err != nil {
			t.Fatal(err)
		}
		x.attached(ta, &j, true)
		members = append(members, x)
		if node, _ := la.mirrorFor(&j.Room, both, nil); node == "node-c" {
			onC++
			onCRoom = x
		} else {
			onB++
		}
	}
	all := len(members)
	waitFor(t, 10*time.Second, "B mirrors every room", func() bool { return b.Stats().RoomsMirrored == all })
	la.loseDrops.Store(1 << 30)
	c, _, _ := roomsNode(t, nc, "node-c", 2, keys, nil)
	waitFor(t, 10*time.Second, "C mirrors its rooms", func() bool { return c.Stats().RoomsMirrored == onC })
	time.Sleep(time.Second) // a few heartbeats: every drop asked again is lost too
	if n := b.Stats().RoomsMirrored; n != all {
		t.Fatalf("B holds %d copies while every drop is lost, want all %d: nothing was lost, the test shows nothing", n, all)
	}
	la.loseDrops.Store(0)
	waitFor(t, 10*time.Second, "B drops the copies of the rooms that moved", func() bool { return b.Stats().RoomsMirrored == onB })
	if n := c.Stats().RoomsMirrored; n != onC {
		t.Errorf("C holds %d copies, want %d", n, onC)
	}
	// A room that ends, its drop lost once: its mirror (C) drops it all the same.
	la.loseDrops.Store(1)
	m, _ := onCRoom.member()
	ta.Leave(onCRoom, m)
	waitFor(t, 10*time.Second, "C drops the copy of the room that ended", func() bool { return c.Stats().RoomsMirrored == onC-1 })
	if la.loseDrops.Load() != 0 {
		t.Errorf("the ended room's drop was not lost once (%d left to lose)", la.loseDrops.Load())
	}
	t.Logf("%d rooms, %d moved from B to C with every drop lost for a while: B and C hold exactly their own", all, onC)
}
