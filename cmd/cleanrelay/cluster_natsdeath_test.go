package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cleanrelay/cleanrelay/relay/client"
)

// chatRoom is a room of TestClusterNATSDeath: its members send numbered frames, and every member checks it
// receives every other member's frames exactly once, in the order they were sent, with rising sequence numbers.
type chatRoom struct {
	members []*roomMember
	// recv[r][s] is how many of member s's frames member r received (in order, no repeats).
	recv [][]atomic.Int64
	mu   sync.Mutex
	bad  []string // guarded by mu
}

func (cr *chatRoom) fail(format string, args ...any) {
	cr.mu.Lock()
	if len(cr.bad) < 20 {
		cr.bad = append(cr.bad, fmt.Sprintf(format, args...))
	}
	cr.mu.Unlock()
}

func newChatRoom(members ...*roomMember) *chatRoom {
	cr := &chatRoom{members: members, recv: make([][]atomic.Int64, len(members))}
	for i := range cr.recv {
		cr.recv[i] = make([]atomic.Int64, len(members))
	}
	return cr
}

// chatFrame is frame number i of a member: the number and padding, about the size of a short padded message.
func chatFrame(i int) []byte {
	b := binary.BigEndian.AppendUint32(make([]byte, 0, 512), uint32(i))
	return append(b, make([]byte, 508)...)
}

// read takes member r's events until it has every frame of every other member (frames each), or stop closes.
func (cr *chatRoom) read(r, frames int, stop <-chan struct{}) {
	m := cr.members[r]
	index := map[uint32]int{}
	for s, o := range cr.members {
		index[o.room.Member] = s
	}
	var lastSeq uint64
	unacked := 0
	want := frames * (len(cr.members) - 1)
	for got := 0; got < want; {
		var ev client.Event
		select {
		case ev = <-m.c.Events():
		case <-stop:
			return
		}
		switch ev.Kind {
		case client.KindFrame:
			s, ok := index[ev.From]
			if !ok || s == r || len(ev.Payload) < 4 {
				cr.fail("%s: a frame from member %d", m.name, ev.From)
				continue
			}
			n := int64(binary.BigEndian.Uint32(ev.Payload))
			if prev := cr.recv[r][s].Load(); n != prev+1 {
				cr.fail("%s: frame %d of %s after %d (lost, repeated or out of order)", m.name, n, cr.members[s].name, prev)
			}
			if ev.Seq <= lastSeq {
				cr.fail("%s: seq %d after %d", m.name, ev.Seq, lastSeq)
			}
			lastSeq = ev.Seq
			cr.recv[r][s].Store(max(n, cr.recv[r][s].Load()))
			got++
			if unacked++; unacked >= 16 {
				m.c.Ack(m.room.Ch, lastSeq)
				unacked = 0
			}
		case client.KindPresence:
			cr.fail("%s: presence %s of member %d (reason %q) during the chat", m.name, ev.Event, ev.Member, ev.Reason)
		case client.KindLost:
			cr.fail("%s: lost %d..%d", m.name, ev.LostFrom, ev.LostTo)
		case client.KindClosed:
			cr.fail("%s: closed %s", m.name, ev.Reason)
			return
		case client.KindError:
			cr.fail("%s: error %v", m.name, ev.Err)
		}
	}
	m.c.Ack(m.room.Ch, lastSeq)
}

// send sends member s's frames 1..frames, keeping at most window of them not yet received by every other
// member (a client paces itself by what its peers confirm end to end: docs/protocol.md §4.2).
func (cr *chatRoom) send(s, frames, window int, stop <-chan struct{}) {
	for i := 1; i <= frames; i++ {
		for {
			slowest := int64(frames)
			for r := range cr.members {
				if r != s {
					slowest = min(slowest, cr.recv[r][s].Load())
				}
			}
			if int64(i)-slowest <= int64(window) {
				break
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
		if err := cr.members[s].c.Send(cr.members[s].room.Ch, chatFrame(i)); err != nil {
			cr.fail("%s sends frame %d: %v", cr.members[s].name, i, err)
			return
		}
	}
}

// received is how many frames the room's members received, all together.
func (cr *chatRoom) received() int64 {
	var n int64
	for r := range cr.recv {
		for s := range cr.recv[r] {
			n += cr.recv[r][s].Load()
		}
	}
	return n
}

// TestClusterNATSDeath runs three NATS servers and three relay nodes; three pairs, each split over two nodes,
// and a group of four spread over the three nodes chat as fast as their pacing lets them; one NATS server (the
// first of node A) is SIGKILLed mid-conversation. The relay goes on through the other two, and every member
// receives every frame of every other member exactly once, in order, with no lost notice, no presence change
// and no closed room: what core NATS dropped when the server died was sent again by the links (docs/cluster.md
// §2, "On NATS").
func TestClusterNATSDeath(t *testing.T) {
	nc, _, a, b, c := threeNodes(t)
	nodes := []*clusterNode{a, b, c}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	pair := func(name string, home, other *clusterNode) *chatRoom {
		x := createOn(ctx, t, name+"-x@"+home.name, home.url, 2)
		y := joinOn(ctx, t, name+"-y@"+other.name, other.url, x)
		x.until("the join", isPresence(y.room.Member, "join"))
		return newChatRoom(x, y)
	}
	rooms := []*chatRoom{pair("p1", a, b), pair("p2", b, c), pair("p3", c, a)}
	group := []*roomMember{createOn(ctx, t, "g1@node-b", b.url, 4)}
	for i, n := range []*clusterNode{a, c, a} {
		m := joinOn(ctx, t, fmt.Sprintf("g%d@%s", i+2, n.name), n.url, group[0])
		for _, o := range group {
			o.until("a join", isPresence(m.room.Member, "join"))
		}
		group = append(group, m)
	}
	rooms = append(rooms, newChatRoom(group...))

	const frames, window = 400, 16
	stop := make(chan struct{})
	var readers, senders sync.WaitGroup
	var total int64
	for _, cr := range rooms {
		total += int64(frames * len(cr.members) * (len(cr.members) - 1))
		for i := range cr.members {
			readers.Add(1)
			go func() {
				defer readers.Done()
				cr.read(i, frames, stop)
			}()
			senders.Add(1)
			go func() {
				defer senders.Done()
				cr.send(i, frames, window, stop)
			}()
		}
	}
	received := func() int64 {
		var n int64
		for _, cr := range rooms {
			n += cr.received()
		}
		return n
	}
	finished := make(chan struct{})
	go func() {
		readers.Wait()
		close(finished)
	}()
	defer func() {
		close(stop)
		senders.Wait()
		readers.Wait()
	}()

	// Mid-conversation: node A's NATS server dies.
	eventually(t, 2*time.Minute, "a third of the frames received", func() bool { return received() >= total/3 })
	at := received()
	nc.Servers()[0].Kill()
	t.Logf("killed NATS server 1 (node A's) after %d of %d frames received", at, total)

	select {
	case <-finished:
	case <-time.After(3 * time.Minute):
		t.Errorf("only %d of %d frames received within 3 minutes", received(), total)
	}
	for _, cr := range rooms {
		for _, s := range cr.bad {
			t.Error(s)
		}
	}
	if got := received(); got != total {
		t.Errorf("%d of %d frames received", got, total)
	}
	var gaps, resent float64
	for _, n := range nodes {
		if !n.healthy(t) {
			t.Errorf("%s is not healthy after the NATS server's death", n.name)
		}
		gaps += n.scrape(t, "cleanrelay_cluster_room_gaps_total")
		resent += n.scrape(t, "cleanrelay_cluster_room_resent_total")
	}
	if !t.Failed() {
		t.Logf("%d frames to %d members in %d rooms, each received exactly once and in order; the links found %v gaps and sent %v messages again",
			total, 3*2+4, len(rooms), gaps, resent)
	}

	// The relay goes on through the other two servers: a new pair split over A and C chats both ways.
	x := createOn(ctx, t, "x", a.url, 2)
	y := joinOn(ctx, t, "y", c.url, x)
	x.until("y's join", isPresence(y.room.Member, "join"))
	x.send(t, "after the death")
	y.until("x's frame", isFrame("after the death"))
	y.send(t, "heard")
	x.until("y's frame", isFrame("heard"))
	if t.Failed() {
		for _, n := range nodes {
			t.Logf("%s: %s", n.name, strings.Join(strings.Fields(clip(n.stderr.String(), 2000)), " "))
		}
	}
}
