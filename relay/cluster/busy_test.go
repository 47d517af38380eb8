package cluster

import (
	"bytes"
	"crypto/rand"
	"testing"
	"time"

	"github.com/cleanrelay/cleanrelay/relay/cluster/natsnet"
	"github.com/cleanrelay/cleanrelay/relay/internal/rooms"
	"github.com/cleanrelay/cleanrelay/relay/protocol"
)

// TestResumeBusyOrBadToken: a join or resume that no node answers "here" is refused for good (denied,
// bad_token) only when every node answered and this node hears them: on a node cut off from NATS (the fence's
// wait for NATS run out), and on a node that stopped hearing a peer a moment ago, both are answered busy,
// which a client asks again; once the node is back they are final again. On the code before busy, the
// cut-off node answered bad_token and denied, as if the cluster had said nobody holds them.
func TestResumeBusyOrBadToken(t *testing.T) {
	nc := natsnet.Start(t, natsnet.Options{})
	keys := testKeys(t, secretA)
	urls := nc.URLs()
	a, ta, la := roomsNodeOn(t, nc, "node-a", urls[:1], keys, nil)
	b, tb, lb := roomsNodeOn(t, nc, "node-b", urls[1:], keys, nil)
	waitFor(t, 10*time.Second, "the nodes hear each other", func() bool { return len(a.livePeers()) == 1 && len(b.livePeers()) == 1 })
	ask := func(tb *rooms.Table) (resume, join string) {
		var token rooms.Secret
		var room rooms.RoomID
		var capability rooms.Secret
		rand.Read(token[:])
		rand.Read(room[:])
		rand.Read(capability[:])
		var j rooms.Joined
		c := newChatter("z")
		if err := tb.Resume(rooms.Seat{Conn: c, Ch: 1}, &token, 0, &j); err != nil {
			resume = err.Code
		}
		if err := tb.Join(rooms.Seat{Conn: c, Ch: 1}, &room, &capability, &j); err != nil {
			join = err.Code
		}
		return resume, join
	}
	if r, j := ask(tb); r != protocol.CodeBadToken || j != protocol.CodeDenied {
		t.Fatalf("an unknown token and room on a steady cluster: resume %q, join %q; want bad_token and denied", r, j)
	}
	nc.Servers()[0].Kill()
	waitFor(t, 10*time.Second, "A cut off", func() bool { return a.cutOff() })
	// B is on NATS, but A, heard a moment ago, is not: it may be alive (only slow) and hold them.
	if r, j := ask(tb); r != protocol.CodeBusy || j != protocol.CodeBusy {
		t.Fatalf("on a node that lost a peer a moment ago: resume %q, join %q; want busy for both", r, j)
	}
	start := time.Now()
	if r, j := ask(ta); r != protocol.CodeBusy || j != protocol.CodeBusy {
		t.Fatalf("on a node cut off from NATS: resume %q, join %q; want busy for both", r, j)
	}
	if la.busy.Load() != 2 || a.Stats().Busy != 2 || lb.busy.Load() != 2 {
		t.Errorf("busy answers counted %d on A and %d on B, want 2 each", la.busy.Load(), lb.busy.Load())
	}
	t.Logf("the cut-off node answered busy after %v (it waits for NATS up to %v first)", time.Since(start), fenceWait)
	if err := nc.Servers()[0].Restart(); err != nil {
		t.Fatal(err)
	}
	if r, j := ask(ta); r != protocol.CodeBadToken || j != protocol.CodeDenied {
		t.Fatalf("on the node back on NATS: resume %q, join %q; want bad_token and denied", r, j)
	}
}

// TestFindPendingCopy: a node that holds a room only as its mirror copy answers a find for the room, or for a
// member's token, "pending" rather than "not here" (the asker must not say the room or the place does not
// exist: the copy may be about to be taken over); a token or room it does not hold is "not here"; once it
// took the room over, it is "here".
func TestFindPendingCopy(t *testing.T) {
	nc := natsnet.Start(t, natsnet.Options{})
	keys := testKeys(t, secretA)
	a, ta, _ := roomsNode(t, nc, "node-a", 0, keys, nil)
	b, tb, lb := roomsNode(t, nc, "node-b", 1, keys, nil)
	waitFor(t, 10*time.Second, "the nodes hear each other", func() bool { return len(a.livePeers()) == 1 && len(b.livePeers()) == 1 })
	x := newChatter("x")
	var jx rooms.Joined
	if err := ta.Create(rooms.Seat{Conn: x, Ch: 1}, 2, &jx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "B mirrors the room", func() bool { return b.Stats().RoomsMirrored == 1 })
	find := func(op string, th []byte, room []byte) roomMsg {
		t.Helper()
		link := make([]byte, 16)
		rand.Read(link)
		// admit overwrites what it is given
		req := roomMsg{Op: op, Link: link, From: "node-c", Inc: 1, TokenHash: bytes.Clone(th), Room: bytes.Clone(room)}
		if op == "join" {
			req.Cap = make([]byte, rooms.SecretLen) // a wrong capability: the room is not joined
		}
		ans, sv, ok := lb.admit(&req)
		if !ok || sv != nil {
			t.Fatalf("%s: admitted %v, answered %v", op, sv != nil, ok)
		}
		return ans
	}
	th := jx.Token.Hash()
	other := make([]byte, 32)
	rand.Read(other)
	if a := find("resume", th[:], nil); a.Here || !a.Pending {
		t.Errorf("a member held in a copy: here %v, pending %v; want pending", a.Here, a.Pending)
	}
	if a := find("resume", other, nil); a.Here || a.Pending {
		t.Errorf("an unknown token: here %v, pending %v; want neither", a.Here, a.Pending)
	}
	if a := find("join", nil, jx.Room[:]); a.Here || !a.Pending {
		t.Errorf("a room held in a copy: here %v, pending %v; want pending", a.Here, a.Pending)
	}
	deaf := "node-a"
	b.deafTo.Store(&deaf)
	waitFor(t, 10*time.Second, "B took the room over", func() bool { return lb.takeovers.Load() == 1 })
	if a := find("join", nil, jx.Room[:]); !a.Here || a.Pending || a.Code != protocol.CodeDenied {
		t.Errorf("a room taken over, with a wrong capability: here %v, pending %v, code %q; want here and denied", a.Here, a.Pending, a.Code)
	}
	lb.mu.Lock()
	left := len(lb.copyTokens) + len(lb.adopting)
	lb.mu.Unlock()
	if left != 0 || tb.RoomsHere() != 1 {
		t.Errorf("after the takeover B indexes %d tokens or adoptions, sequences %d rooms", left, tb.RoomsHere())
	}
}
