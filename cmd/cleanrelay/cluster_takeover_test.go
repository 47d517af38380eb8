package main

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cleanrelay/cleanrelay/relay/client"
	"github.com/cleanrelay/cleanrelay/relay/cluster/natsnet"
)

// talker is one member of TestClusterTakeover: it sends its frames one by one, reads everything it is told,
// acknowledges, and when its socket dies resumes on another node with its token and sends again what the relay
// had not accepted (the resumed reply's In), as a client following the protocol does.
type talker struct {
	name  string
	room  string // which room, for the checks
	url   string // the node its socket is on now
	c     *client.Conn
	r     *client.Room
	token string
	out   *client.Outbox

	last    uint64            // the seq of the last entry processed
	frames  []takeoverFrame   // the frames it was given, in order
	events  []string          // everything else it was told
	peers   map[uint32]string // member id → name, of the others in its room
	resumed time.Duration     // how long after the kill its resume was answered (dead node's members)
	busy    int               // resumes answered busy and asked again
}

type takeoverFrame struct {
	seq     uint64
	from    uint32
	payload string
}

// takeoverFrames is how many frames each member sends; the kill comes when every member has sent killAfter.
const (
	takeoverFrames = 300
	killAfter      = 100
)

// TestClusterTakeover SIGKILLs the node that sequences a set of rooms in the middle of their conversations:
// two pairs with one member on the dying node and one on each other node, a pair whose members are both on the
// surviving nodes, and a group of four with two members on the dying node. Every room's mirror takes it over;
// members on the surviving nodes keep their sockets, members of the dying node resume on another node with
// their token, and every member is given every frame of every other member once, in an order all members of a
// room share (the same seq for the same frame), with no lost notice and no closed room.
func TestClusterTakeover(t *testing.T) {
	nc := natsnet.Start(t, natsnet.Options{})
	secret := writeSecret(t)
	const grace = 30 * time.Second
	// A buffer that holds what the others send while a member of the dead node is away (about 2 s), so that
	// nobody is told lost for want of room, which would be the same on one node.
	flags := []string{"--grace", grace.String(), "--room-buffer", "4096", "--room-buffer-bytes", "33554432"}
	a := startNode(t, nc, "node-a", 0, secret, flags...)
	b := startNode(t, nc, "node-b", 1, secret, flags...)
	c := startNode(t, nc, "node-c", 2, secret, flags...)
	for _, n := range []*clusterNode{a, b, c} {
		eventually(t, 10*time.Second, n.name+" sees two peers", func() bool { return n.scrape(t, "cleanrelay_cluster_peers") == 2 })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// Every room is made on A, so A sequences them all.
	var all []*talker
	room := func(name string, urls ...string) []*talker {
		x := createOn(ctx, t, name+"-1", a.url, len(urls))
		ms := []*talker{{name: name + "-1", room: name, url: a.url, c: x.c, r: x.room, token: x.room.Resume}}
		for i, u := range urls[1:] {
			y := joinOn(ctx, t, fmt.Sprintf("%s-%d", name, i+2), u, x)
			ms = append(ms, &talker{name: y.name, room: name, url: u, c: y.c, r: y.room, token: y.room.Resume})
		}
		if urls[0] != a.url {
			// The creator moves to another node: A sequences a room none of whose members is on A.
			x.resumeOn(ctx, urls[0], x.room.Seq)
			ms[0].c, ms[0].r, ms[0].url = x.c, x.room, urls[0]
		}
		for _, m := range ms {
			m.out = client.NewOutbox(4 * takeoverFrames)
			m.peers = map[uint32]string{}
			for _, o := range ms {
				if o != m {
					m.peers[o.r.Member] = o.name
				}
			}
		}
		all = append(all, ms...)
		return ms
	}
	room("p1", a.url, b.url)
	room("p2", a.url, c.url)
	room("p3", b.url, c.url)
	room("g", a.url, b.url, c.url, a.url)
	eventually(t, 10*time.Second, "A sequences the four rooms, which are mirrored", func() bool {
		return a.scrape(t, "cleanrelay_cluster_rooms_sequenced") == 4 &&
			b.scrape(t, "cleanrelay_cluster_rooms_mirrored")+c.scrape(t, "cleanrelay_cluster_rooms_mirrored") == 4
	})

	// Everyone talks; A dies once each member has sent killAfter frames.
	var sentEnough sync.WaitGroup
	sentEnough.Add(len(all))
	var killed time.Time
	killedCh := make(chan struct{})
	errs := make(chan error, len(all))
	for i, m := range all {
		other := []string{b.url, c.url}[i%2]
		go func() { errs <- m.talk(ctx, &sentEnough, killedCh, &killed, other) }()
	}
	sentEnough.Wait()
	killed = time.Now()
	if err := a.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	a.cmd.Wait()
	close(killedCh)
	for range all {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	t.Logf("node-a killed; node-b took over %v rooms, node-c %v; proxies relinked: %v on B, %v on C; mirror lag B %v s, C %v s",
		b.scrape(t, "cleanrelay_cluster_takeovers_total"), c.scrape(t, "cleanrelay_cluster_takeovers_total"),
		b.scrape(t, "cleanrelay_cluster_relinks_total"), c.scrape(t, "cleanrelay_cluster_relinks_total"),
		b.scrape(t, "cleanrelay_cluster_mirror_lag_seconds"), c.scrape(t, "cleanrelay_cluster_mirror_lag_seconds"))
	if t.Failed() {
		return
	}

	checkTalkers(t, all)
	var times []time.Duration
	for _, m := range all {
		if m.resumed != 0 {
			times = append(times, m.resumed)
		}
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	if len(times) != 4 {
		t.Errorf("%d members of the dead node resumed, want 4", len(times))
	}
	t.Logf("%d members, %d frames each: none lost or repeated, one order per room; the dead node's members resumed on another node %v after the SIGKILL (grace %v)",
		len(all), takeoverFrames, times, grace)
	// Gaps are no loss: each link asks for what it lacks again (a relink sends every kept frame at once, and a
	// served link whose queue is full leaves messages for its proxy to send again). The check above is the
	// members' own.
	for _, n := range []*clusterNode{b, c} {
		t.Logf("%s: link gaps %v, messages sent again %v", n.name, n.scrape(t, "cleanrelay_cluster_room_gaps_total"),
			n.scrape(t, "cleanrelay_cluster_room_resent_total"))
	}
}

// talk sends the member's frames and reads until it has every frame of the other members of its room, resuming
// on node other if its socket dies after the kill.
func (m *talker) talk(ctx context.Context, sentEnough *sync.WaitGroup, killedCh <-chan struct{}, killed *time.Time, other string) error {
	tick := time.NewTicker(3 * time.Millisecond)
	defer tick.Stop()
	want := len(m.peers) * takeoverFrames
	deadline := time.After(2 * time.Minute)
	signalled := false
	sent, events := 0, 0
	for sent < takeoverFrames || len(m.frames) < want {
		select {
		case <-deadline:
			return fmt.Errorf("%s: sent %d, was given %d of %d frames; events: %v", m.name, sent, len(m.frames), want, m.events)
		case <-tick.C:
			if sent == killAfter && !signalled {
				signalled = true
				sentEnough.Done()
			}
			if sent >= takeoverFrames {
				continue
			}
			p := fmt.Sprintf("%s/%d", m.name, sent)
			m.out.Add([]byte(p))
			sent++
			m.c.Send(m.r.Ch, []byte(p)) // a socket that died meanwhile: the resume sends it again
		case ev, ok := <-m.c.Events():
			if !ok {
				if err := m.died(ctx, killedCh, killed, other); err != nil {
					return err
				}
				continue
			}
			switch ev.Kind {
			case client.KindFrame:
				m.frames = append(m.frames, takeoverFrame{ev.Seq, ev.From, string(ev.Payload)})
				m.last = ev.Seq
			case client.KindPresence:
				m.last = ev.Seq
				m.events = append(m.events, fmt.Sprintf("presence %d %s", ev.Member, ev.Event))
			case client.KindLost:
				m.events = append(m.events, fmt.Sprintf("lost %d..%d", ev.LostFrom, ev.LostTo))
			case client.KindClosed:
				m.events = append(m.events, "closed "+ev.Reason)
				return fmt.Errorf("%s: its room closed (%s)", m.name, ev.Reason)
			case client.KindError:
				m.events = append(m.events, fmt.Sprintf("error %v", ev.Err))
			}
			if events++; events%4 == 0 {
				m.c.Ack(m.r.Ch, m.last)
			}
		case <-m.c.Done():
			if err := m.died(ctx, killedCh, killed, other); err != nil {
				return err
			}
		}
	}
	m.c.Ack(m.r.Ch, m.last)
	return nil
}

// died resumes on node other once the socket died, which only the kill may cause.
func (m *talker) died(ctx context.Context, killedCh <-chan struct{}, killed *time.Time, other string) error {
	select {
	case <-killedCh:
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s: its socket on %s ended before the kill: %v", m.name, m.url, m.c.Err())
	}
	return m.resume(ctx, other, *killed)
}

// resume takes the membership back on url with the token, from the last entry processed, asking again while
// the relay answers busy (the cluster cannot tell yet where the place is: the dead node is unheard for the
// peer timeout first; bad_token is final), and sends again the frames the relay had not accepted.
func (m *talker) resume(ctx context.Context, url string, killed time.Time) error {
	m.c.Close()
	c, err := client.Dial(ctx, "ws"+strings.TrimPrefix(url, "http")+"ws?anonymous=1", nil)
	if err != nil {
		return fmt.Errorf("%s: socket on %s: %v", m.name, url, err)
	}
	r, busy, err := c.ResumeUntil(ctx, m.token, m.last, time.Now().Add(20*time.Second))
	m.busy += busy
	if err != nil {
		c.Close()
		return fmt.Errorf("%s: resume on %s: %v", m.name, url, err)
	}
	m.resumed = time.Since(killed)
	m.c, m.r, m.url = c, r, url
	again, err := m.out.Since(r.In)
	if err != nil {
		return fmt.Errorf("%s: %v", m.name, err)
	}
	m.events = append(m.events, fmt.Sprintf("resumed in=%d, sending %d again", r.In, len(again)))
	for _, p := range again {
		c.Send(r.Ch, p)
	}
	return nil
}

// checkTalkers fails the test unless every member has every frame of every other member of its room once, in
// the sender's order; a frame has the same seq for every member given it; seqs only grow; and nobody was told
// lost, closed or an error.
func checkTalkers(t *testing.T, all []*talker) {
	t.Helper()
	seqOf := map[string]uint64{} // payload → seq
	for _, m := range all {
		got := map[string]int{}
		var prev uint64
		for _, f := range m.frames {
			if f.seq <= prev {
				t.Errorf("%s: seq %d after %d", m.name, f.seq, prev)
			}
			prev = f.seq
			got[f.payload]++
			if s, ok := seqOf[f.payload]; ok && s != f.seq {
				t.Errorf("%s was given %q as seq %d, another member as seq %d", m.name, f.payload, f.seq, s)
			}
			seqOf[f.payload] = f.seq
			if want := m.peers[f.from]; !strings.HasPrefix(f.payload, want+"/") {
				t.Errorf("%s: %q stamped from member %d (%s)", m.name, f.payload, f.from, want)
			}
		}
		for _, o := range all {
			if o.room != m.room || o == m {
				continue
			}
			next := 0
			for _, f := range m.frames {
				if i, ok := strings.CutPrefix(f.payload, o.name+"/"); ok {
					if n, _ := strconv.Atoi(i); n != next {
						t.Errorf("%s was given %s's frame %d where %d was next", m.name, o.name, n, next)
					}
					next++
				}
			}
			for i := range takeoverFrames {
				if n := got[fmt.Sprintf("%s/%d", o.name, i)]; n != 1 {
					t.Errorf("%s was given %s's frame %d %d times", m.name, o.name, i, n)
				}
			}
		}
		for _, e := range m.events {
			if strings.HasPrefix(e, "lost") || strings.HasPrefix(e, "closed") || strings.HasPrefix(e, "error") {
				t.Errorf("%s was told %s", m.name, e)
			}
		}
	}
}
