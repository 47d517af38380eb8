package cluster

import (
	"encoding/binary"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cleanrelay/cleanrelay/relay/cluster/natsnet"
	"github.com/cleanrelay/cleanrelay/relay/internal/rooms"
	"github.com/cleanrelay/cleanrelay/relay/internal/ws"
)

// chatter is a member of a room on a test table that may lose its membership and resume it, as a client
// following the protocol does: it numbers its frames from 1, reads everything it is handed (acknowledging as
// it goes), and after a resume sends again the frames the room's In does not count.
type chatter struct {
	name string
	wake chan struct{}

	mu      sync.Mutex
	table   *rooms.Table  // guarded by mu: where its membership is now
	m       *rooms.Member // guarded by mu; nil while it has none
	token   rooms.Secret  // guarded by mu
	next    uint64        // guarded by mu: the number of its next frame to send
	last    uint64        // guarded by mu: the seq of the last entry it processed
	frames  []uint32      // guarded by mu: the numbers of the frames it was handed, in order
	seqs    []uint64      // guarded by mu: the seq of every entry it was handed, in order
	events  []string      // guarded by mu: presence, lost, closed
	resumes int           // guarded by mu
}

func newChatter(name string) *chatter {
	return &chatter{name: name, wake: make(chan struct{}, 1), next: 1}
}

func (c *chatter) Wake() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *chatter) Closed(m *rooms.Member, _ byte, reason string) {
	c.mu.Lock()
	if c.m == m {
		c.m = nil
		c.events = append(c.events, "closed "+reason)
	}
	c.mu.Unlock()
	c.Wake()
}

// member returns its membership and table now.
func (c *chatter) member() (*rooms.Member, *rooms.Table) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m, c.table
}

// attached records a membership taken on table t.
func (c *chatter) attached(t *rooms.Table, j *rooms.Joined, token bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.table, c.m = t, j.Member
	if token {
		c.token = j.Token
	}
	if j.In+1 < c.next || c.resumes > 0 {
		c.next = j.In + 1 // the frames the room does not count go again
	}
}

// resume takes the membership back on table t with its token, from the last entry processed; it tries again
// while t does not find it (a node that has not heard its peers yet).
func (c *chatter) resume(tb testing.TB, t *rooms.Table, limit time.Duration) {
	tb.Helper()
	c.mu.Lock()
	token, last := c.token, c.last
	c.resumes++
	c.mu.Unlock()
	for deadline := time.Now().Add(limit); ; time.Sleep(50 * time.Millisecond) {
		var j rooms.Joined
		err := t.Resume(rooms.Seat{Conn: c, Ch: 1}, &token, last, &j)
		if err == nil {
			c.attached(t, &j, false)
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s: resume: %v", c.name, err)
		}
	}
}

// read takes what its membership hands it until done closes, acknowledging every 16 entries.
func (c *chatter) read(done <-chan struct{}) {
	body := make([]byte, 1<<16)
	unacked := 0
	for {
		select {
		case <-done:
			return
		case <-c.wake:
		case <-time.After(20 * time.Millisecond):
		}
		for {
			m, _ := c.member()
			if m == nil {
				break
			}
			it := m.Next(c, 1, body)
			if it.Kind == rooms.None {
				break
			}
			c.mu.Lock()
			switch it.Kind {
			case rooms.Frame:
				c.frames = append(c.frames, binary.BigEndian.Uint32(body))
			case rooms.Presence:
				c.events = append(c.events, fmt.Sprintf("presence %d %s", it.From, it.Event))
			case rooms.Lost:
				c.events = append(c.events, fmt.Sprintf("lost %d..%d", it.LostFrom, it.LostTo))
			}
			if it.Seq != 0 {
				c.seqs = append(c.seqs, it.Seq)
				c.last = it.Seq
			}
			c.mu.Unlock()
			if unacked++; unacked >= 16 && it.Seq != 0 {
				m.Ack(c, it.Seq)
				unacked = 0
			}
		}
	}
}

func (c *chatter) received() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.frames)
}

// send sends frames up to count, each once the other has received all but window of the ones before; while
// it holds no membership (or the room says Crowded) it waits. It stops when done closes.
func (c *chatter) send(tb testing.TB, other *chatter, count, window int, done <-chan struct{}) {
	for {
		c.mu.Lock()
		m, n := c.m, c.next
		c.mu.Unlock()
		if n > uint64(count) {
			return
		}
		if m == nil || other.received() < int(n)-window {
			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
			}
			continue
		}
		p := ws.PayloadOf(append(binary.BigEndian.AppendUint32(nil, uint32(n)), make([]byte, 296)...))
		res := m.Forward(c, p)
		if res != rooms.Forwarded {
			ws.PutPayload(p)
			if res != rooms.Crowded && res != rooms.NotMember {
				tb.Errorf("%s's frame %d: %v", c.name, n, res)
				return
			}
			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
			}
			continue
		}
		c.mu.Lock()
		if c.m == m && c.next == n {
			c.next = n + 1
		}
		c.mu.Unlock()
	}
}

// check fails the test unless c was handed frames 1..count of the other member exactly once and in order,
// entries in growing seq order, and no lost notice.
func (c *chatter) check(t *testing.T, count int) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.frames) != count {
		t.Errorf("%s was handed %d frames, want %d", c.name, len(c.frames), count)
	}
	for i, n := range c.frames {
		if n != uint32(i+1) {
			t.Errorf("%s's frame %d is number %d: lost, repeated or out of order", c.name, i+1, n)
			break
		}
	}
	for i := 1; i < len(c.seqs); i++ {
		if c.seqs[i] <= c.seqs[i-1] {
			t.Errorf("%s was handed seq %d after %d: entries of two sequencers", c.name, c.seqs[i], c.seqs[i-1])
			break
		}
	}
	for _, e := range c.events {
		if e[:4] == "lost" {
			t.Errorf("%s was told %s", c.name, e)
		}
	}
}

// chat runs x and y until each has received count frames of the other, within limit; during it calls
// midway once each has received a third of them.
func chat(t *testing.T, x, y *chatter, count int, limit time.Duration, midway func()) {
	t.Helper()
	done := make(chan struct{})
	var wg sync.WaitGroup
	defer func() {
		close(done)
		// A sender may wait for its link's window (a failed run): it returns once the nodes close.
		finished := make(chan struct{})
		go func() {
			wg.Wait()
			close(finished)
		}()
		select {
		case <-finished:
		case <-time.After(5 * time.Second):
		}
	}()
	for _, m := range []*chatter{x, y} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.read(done)
		}()
	}
	for _, p := range [][2]*chatter{{x, y}, {y, x}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p[0].send(t, p[1], count, 32, done)
		}()
	}
	waitFor(t, limit, "a third of the frames received", func() bool { return x.received() >= count/3 && y.received() >= count/3 })
	midway()
	for deadline := time.Now().Add(limit); x.received() < count || y.received() < count; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			x.mu.Lock()
			y.mu.Lock()
			msg := fmt.Sprintf("not every frame received within %v: %s has %d (events %v), %s has %d (events %v)", limit,
				x.name, len(x.frames), x.events, y.name, len(y.frames), y.events)
			y.mu.Unlock()
			x.mu.Unlock()
			t.Fatal(msg)
		}
	}
}

// pair makes a room on ta for x and joins y to it on tb.
func pair(t *testing.T, x *chatter, ta *rooms.Table, y *chatter, tb *rooms.Table) {
	t.Helper()
	var jx, jy rooms.Joined
	if err := ta.Create(rooms.Seat{Conn: x, Ch: 1}, 2, &jx); err != nil {
		t.Fatal(err)
	}
	x.attached(ta, &jx, true)
	if err := tb.Join(rooms.Seat{Conn: y, Ch: 1}, &jx.Room, &jx.Cap, &jy); err != nil {
		t.Fatalf("join: %v", err)
	}
	y.attached(tb, &jy, true)
}

// pairNodes is two nodes A and B, on the NATS servers urlsA and urlsB of nc (all of them when nil), and a room
// of A with x on A and y on B, mirrored on B.
type pairNodes struct {
	nc     *natsnet.Cluster
	a, b   *Node
	ta, tb *rooms.Table
	la, lb *roomLinks
	x, y   *chatter
}

func startPair(t *testing.T, first func(urls []string) (urlsA, urlsB []string)) *pairNodes {
	t.Helper()
	p := &pairNodes{nc: natsnet.Start(t, natsnet.Options{})}
	keys := testKeys(t, secretA)
	urls := p.nc.URLs()
	urlsA, urlsB := urls, append(urls[1:], urls[0])
	if first != nil {
		urlsA, urlsB = first(urls)
	}
	p.a, p.ta, p.la = roomsNodeOn(t, p.nc, "node-a", urlsA, keys, nil)
	p.b, p.tb, p.lb = roomsNodeOn(t, p.nc, "node-b", urlsB, keys, nil)
	waitFor(t, 10*time.Second, "the nodes hear each other", func() bool { return len(p.a.livePeers()) == 1 && len(p.b.livePeers()) == 1 })
	p.x, p.y = newChatter("x"), newChatter("y")
	pair(t, p.x, p.ta, p.y, p.tb)
	waitFor(t, 10*time.Second, "B mirrors the room", func() bool { return p.b.Stats().RoomsMirrored == 1 })
	return p
}

// TestRoomLinksOneSidedDeath: node A, which sequences a room, stops hearing node B's heartbeats for longer
// than the peer timeout (as a loaded node misses them) while B still hears A. A makes B's member away and
// forgets its link; B, which saw nothing wrong, goes on sending on that link, is told "no such link", and its
// proxy links to the room again (a resume from the last entry it was handed, then the frames the room lacks),
// without its member knowing. Both members receive every frame of the other once and in order, while A stays
// deaf and after. On the code before opNoLink, B's member stalls: its frames go into a link nobody holds.
func TestRoomLinksOneSidedDeath(t *testing.T) {
	p := startPair(t, nil)
	a, b, lb, x, y := p.a, p.b, p.lb, p.x, p.y
	const count = 600
	chat(t, x, y, count, time.Minute, func() {
		deaf := "node-b"
		a.deafTo.Store(&deaf)
		waitFor(t, 10*time.Second, "A no longer counts B live", func() bool { return len(a.livePeers()) == 0 })
		// B's member was made away on A: its proxy relinks (again and again, while A stays deaf).
		waitFor(t, 20*time.Second, "B's proxy linked to the room again", func() bool { return lb.relinks.Load() > 0 })
		time.Sleep(time.Second) // a while longer deaf: the members talk through relinks
		if len(b.livePeers()) != 1 {
			t.Errorf("B stopped hearing A")
		}
		a.deafTo.Store(nil)
	})
	x.check(t, count)
	y.check(t, count)
	x.mu.Lock()
	away := 0
	for _, e := range x.events {
		if e == fmt.Sprintf("presence %d away", 2) {
			away++
		}
	}
	x.mu.Unlock()
	if away == 0 {
		t.Errorf("x was never told y away: A did not drop y's link")
	}
	t.Logf("%d frames each way, A deaf to B for a while: all received once and in order; y away on A %d times, relinks on B %d, rooms messages A dropped %d",
		count, away, lb.relinks.Load(), a.Stats().RoomDropped)
}

// TestRoomLinksNoSuchLink: the sequencer forgets a served link without telling its proxy (the notice of
// TestRoomLinksOneSidedDeath lost, or never sent); the proxy's next message is answered "no such link", and
// the proxy links to the room again. Every frame still arrives once and in order. On the code before opNoLink
// the proxy's member stalls.
func TestRoomLinksNoSuchLink(t *testing.T) {
	p := startPair(t, nil)
	a, ta, la, lb, x, y := p.a, p.ta, p.la, p.lb, p.x, p.y
	const count = 600
	chat(t, x, y, count, time.Minute, func() {
		la.mu.Lock()
		var svs []*served
		for _, sv := range la.served {
			svs = append(svs, sv)
		}
		la.mu.Unlock()
		if len(svs) != 1 {
			t.Fatalf("A serves %d links, want 1", len(svs))
		}
		sv := svs[0]
		sv.stop()
		sv.out.stop(&la.env)
		ta.Away(sv, []*rooms.Member{sv.m})
		// y's next frame or acknowledgement finds no link on A.
	})
	x.check(t, count)
	y.check(t, count)
	if lb.relinks.Load() == 0 || a.Stats().RoomDropped == 0 {
		t.Errorf("relinks on B %d, messages dropped on A %d: the link was not found again through opNoLink", lb.relinks.Load(), a.Stats().RoomDropped)
	}
	t.Logf("%d frames each way; A forgot y's link: relinks on B %d, rooms messages A dropped (each answered) %d", count, lb.relinks.Load(), a.Stats().RoomDropped)
}

// TestFenceCutOff: node A, which sequences a room, loses its only NATS server in the middle of a conversation
// between x on A and y on B. B no longer hears A and takes the room over from its mirror copy; A, cut off for
// the peer timeout, stops sequencing it and ends x's membership so that it resumes (rooms.ReasonResume),
// which x does on A once A is back on NATS: A finds the room on B. Both members receive every frame of the
// other once and in order, with seqs that only grow (nobody was handed entries of two sequencers), and what
// the room had accepted of x before the cut is not sent twice. On the code before the fence A goes on
// sequencing the room for x alone, unmirrored, and x's frames never reach y.
func TestFenceCutOff(t *testing.T) {
	p := startPair(t, func(urls []string) ([]string, []string) { return urls[:1], urls[1:] })
	nc, ta, tb, la, lb, x, y := p.nc, p.ta, p.tb, p.la, p.lb, p.x, p.y
	const count = 600
	chat(t, x, y, count, time.Minute, func() {
		nc.Servers()[0].Kill()
		waitFor(t, 10*time.Second, "B took the room over", func() bool { return lb.takeovers.Load() == 1 })
		waitFor(t, 10*time.Second, "A ended x's membership so that it resumes", func() bool {
			m, _ := x.member()
			return m == nil
		})
		if ta.RoomsHere() != 0 || la.yielded.Load() != 1 {
			t.Errorf("A, cut off, sequences %d rooms and yielded %d", ta.RoomsHere(), la.yielded.Load())
		}
		time.Sleep(time.Second) // y goes on alone meanwhile
		if err := nc.Servers()[0].Restart(); err != nil {
			t.Fatal(err)
		}
		x.resume(t, ta, 20*time.Second)
	})
	x.check(t, count)
	y.check(t, count)
	x.mu.Lock()
	events := x.events
	x.mu.Unlock()
	if ta.RoomsHere() != 0 || tb.RoomsHere() != 1 {
		t.Errorf("A sequences %d rooms, B %d; want 0 and 1", ta.RoomsHere(), tb.RoomsHere())
	}
	t.Logf("%d frames each way, A cut off from NATS for a while: all received once and in order; x's events %v", count, events)
}

// TestFenceStale: node B, which mirrors a room node A sequences, stops hearing A for longer than the peer
// timeout (A still hears B) and takes the room over; its member y's proxy links to B's copy. B tells A it took
// the room over ("taken"; and its copy of the new epoch reaches A too, A being its mirror): A ends the room
// there and x's membership so that it resumes (rooms.ReasonResume), which x does on A, finding the room on B.
// Every frame arrives once and in order. On the code before, A's room froze once idle (its copy requests
// refused, and no new frame to make one answered "stale"), and x and y never talked again.
func TestFenceStale(t *testing.T) {
	p := startPair(t, nil)
	b, ta, tb, la, lb, x, y := p.b, p.ta, p.tb, p.la, p.lb, p.x, p.y
	const count = 600
	chat(t, x, y, count, time.Minute, func() {
		deaf := "node-a"
		b.deafTo.Store(&deaf)
		waitFor(t, 10*time.Second, "B took the room over", func() bool { return lb.takeovers.Load() == 1 })
		b.deafTo.Store(nil)
		waitFor(t, 10*time.Second, "A ended x's membership so that it resumes", func() bool {
			m, _ := x.member()
			return m == nil
		})
		if ta.RoomsHere() != 0 || la.yielded.Load() != 1 {
			t.Errorf("A sequences %d rooms and yielded %d", ta.RoomsHere(), la.yielded.Load())
		}
		x.resume(t, ta, 20*time.Second)
	})
	x.check(t, count)
	y.check(t, count)
	if ta.RoomsHere() != 0 || tb.RoomsHere() != 1 {
		t.Errorf("A sequences %d rooms, B %d; want 0 and 1", ta.RoomsHere(), tb.RoomsHere())
	}
}

// TestProxyHandsEachEntryOnce: for a moment after a relink a proxy's entries may come on two links, the old
// link's last batch while the new one resumes from the last entry handed here. An entry the proxy was handed
// already, coming again on another link of the same proxy, is not handed on again: every frame arrives once
// and in order. On the code before, y is handed the repeated frame a second time (seen once in node-death
// runs under load: 34 frames given twice).
func TestProxyHandsEachEntryOnce(t *testing.T) {
	p := startPair(t, nil)
	lb, x, y := p.lb, p.x, p.y
	const count = 300
	chat(t, x, y, count, time.Minute, func() {
		lb.mu.Lock()
		var pr *proxied
		for _, pl := range lb.proxied {
			pr = pl.pr
		}
		lb.mu.Unlock()
		if pr == nil {
			t.Fatal("B holds no proxy for y")
		}
		// A second link of y's proxy brings the last entry y was handed, a frame of x, once more.
		l2 := lb.newLink(pr)
		defer lb.forgetProxy(l2.id)
		last := pr.last.Load()
		msg := appendHeader(nil, opItems, &l2.id)
		binary.BigEndian.PutUint64(msg[wireHeader-8:wireHeader], 1)
		msg = appendItem(msg, &rooms.Item{Kind: rooms.Frame, Seq: last, From: 1}, binary.BigEndian.AppendUint32(nil, 1))
		msg = appendItem(msg, &rooms.Item{Kind: rooms.Lost, LostFrom: 1, LostTo: last}, nil)
		lb.handle(msg, "")
	})
	x.check(t, count)
	y.check(t, count)
}
