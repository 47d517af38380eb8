package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cleanrelay/cleanrelay/relay/bench"
	"github.com/cleanrelay/cleanrelay/relay/client"
	"github.com/cleanrelay/cleanrelay/relay/cluster/natsnet"
)

// roomMember is one client of a rooms script: its socket, its membership, and everything it was told, in the
// order it was told, written so that two runs of one script can be compared line by line.
type roomMember struct {
	t    *testing.T
	name string
	c    *client.Conn
	room *client.Room
	log  []string
	last uint64 // the seq of the last entry received
}

// eventLimit bounds the wait for one event (a loaded 2-core machine, -race elsewhere).
const eventLimit = 15 * time.Second

func dialAnon(ctx context.Context, t *testing.T, url string) *client.Conn {
	t.Helper()
	c, err := client.Dial(ctx, "ws"+strings.TrimPrefix(url, "http")+"ws?anonymous=1", nil)
	if err != nil {
		t.Fatalf("socket on %s: %v", url, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (m *roomMember) note(r *client.Room, what string) {
	m.log = append(m.log, fmt.Sprintf("%s member=%d seq=%d in=%d max=%d members=%v", what, r.Member, r.Seq, r.In, r.Max, r.Members))
}

// create makes a room for max members on url.
func createOn(ctx context.Context, t *testing.T, name, url string, max int) *roomMember {
	t.Helper()
	m := &roomMember{t: t, name: name, c: dialAnon(ctx, t, url)}
	r, err := m.c.Create(ctx, max)
	if err != nil {
		t.Fatalf("%s creates a room on %s: %v", name, url, err)
	}
	m.room = r
	m.note(r, "created")
	return m
}

// joinAsking joins a room as a client following docs/protocol.md §4.3 does: a join answered busy (a node of
// the loaded machine was unheard for a moment, and the cluster cannot tell yet) is asked again.
func joinAsking(ctx context.Context, c *client.Conn, room, capability string) (*client.Room, error) {
	r, _, err := c.JoinUntil(ctx, room, capability, time.Now().Add(client.JoinBusy))
	return r, err
}

// joinOn joins owner's room from url.
func joinOn(ctx context.Context, t *testing.T, name, url string, owner *roomMember) *roomMember {
	t.Helper()
	m := &roomMember{t: t, name: name, c: dialAnon(ctx, t, url)}
	r, err := joinAsking(ctx, m.c, owner.room.ID, owner.room.Cap)
	if err != nil {
		t.Fatalf("%s joins on %s: %v", name, url, err)
	}
	m.room = r
	m.note(r, "joined")
	return m
}

// resumeOn resumes m's membership on a new socket on url, from last.
func (m *roomMember) resumeOn(ctx context.Context, url string, last uint64) {
	m.t.Helper()
	m.c.Close()
	m.c = dialAnon(ctx, m.t, url)
	r, _, err := m.c.ResumeUntil(ctx, m.room.Resume, last, time.Now().Add(20*time.Second)) // busy: asked again (§4.3)
	if err != nil {
		m.t.Fatalf("%s resumes on %s: %v", m.name, url, err)
	}
	r.Resume = m.room.Resume
	m.room = r
	m.note(r, "resumed")
}

// until reads events, logging each, until one satisfies done.
func (m *roomMember) until(what string, done func(client.Event) bool) {
	m.t.Helper()
	deadline := time.After(eventLimit)
	for {
		select {
		case ev := <-m.c.Events():
			var line string
			switch ev.Kind {
			case client.KindFrame:
				line = fmt.Sprintf("frame seq=%d from=%d %q", ev.Seq, ev.From, ev.Payload)
				m.last = ev.Seq
			case client.KindPresence:
				line = fmt.Sprintf("presence seq=%d member=%d %s reason=%q user=%q", ev.Seq, ev.Member, ev.Event, ev.Reason, ev.User)
				m.last = ev.Seq
			case client.KindLost:
				line = fmt.Sprintf("lost %d..%d", ev.LostFrom, ev.LostTo)
			case client.KindClosed:
				line = fmt.Sprintf("closed %s", ev.Reason)
			case client.KindError:
				line = fmt.Sprintf("error %v", ev.Err)
			default:
				line = fmt.Sprintf("event %d", ev.Kind)
			}
			m.log = append(m.log, line)
			if done(ev) {
				return
			}
		case <-deadline:
			m.t.Fatalf("%s: no %s within %v; it was told:\n%s", m.name, what, eventLimit, strings.Join(m.log, "\n"))
		}
	}
}

func isFrame(payload string) func(client.Event) bool {
	return func(ev client.Event) bool { return ev.Kind == client.KindFrame && string(ev.Payload) == payload }
}

func isPresence(member uint32, event string) func(client.Event) bool {
	return func(ev client.Event) bool {
		return ev.Kind == client.KindPresence && ev.Member == member && ev.Event == event
	}
}

func isClosed(ev client.Event) bool { return ev.Kind == client.KindClosed }

func (m *roomMember) send(t *testing.T, payload string) {
	t.Helper()
	if err := m.c.Send(m.room.Ch, []byte(payload)); err != nil {
		t.Fatalf("%s sends: %v", m.name, err)
	}
}

// pairScript: x creates on urls[0], y joins on urls[1]; they chat both ways in order with acknowledgements; y
// drops its socket having acknowledged half of x's frames and resumes on urls[2] with last 0, which replays
// what it did not acknowledge; then y leaves.
func pairScript(ctx context.Context, t *testing.T, urls []string) []*roomMember {
	x := createOn(ctx, t, "x", urls[0], 2)
	y := joinOn(ctx, t, "y", urls[1], x)
	x.until("y's join", isPresence(y.room.Member, "join"))
	_, err := joinAsking(ctx, y.c, x.room.ID, x.room.Cap)
	y.log = append(y.log, fmt.Sprintf("join again: %v", err))
	var half uint64
	for i := range 20 {
		x.send(t, fmt.Sprintf("x%d", i))
	}
	for i := range 20 {
		y.until("x's frame", isFrame(fmt.Sprintf("x%d", i)))
		if i == 9 {
			half = y.last
			y.c.Ack(y.room.Ch, half)
		}
	}
	for i := range 20 {
		y.send(t, fmt.Sprintf("y%d", i))
	}
	x.until("y's frames", isFrame("y19"))
	x.c.Ack(x.room.Ch, x.last)
	y.c.Close()
	x.until("y away", isPresence(y.room.Member, "away"))
	y.resumeOn(ctx, urls[2], 0)
	x.until("y back", isPresence(y.room.Member, "back"))
	x.send(t, "after")
	y.until("x's frame after the resume", isFrame("after"))
	y.c.Ack(y.room.Ch, y.last)
	if err := y.c.Leave(ctx, y.room.Ch); err != nil {
		t.Fatalf("y leaves: %v", err)
	}
	y.log = append(y.log, "left")
	x.until("y's leave", isPresence(y.room.Member, "leave"))
	return []*roomMember{x, y}
}

// groupScript: four members on urls[0..3]; each in turn sends five frames, which the three others receive in
// order; the last one leaves; the first one burns the room.
func groupScript(ctx context.Context, t *testing.T, urls []string) []*roomMember {
	ms := []*roomMember{createOn(ctx, t, "m1", urls[0], 4)}
	for i := 1; i < 4; i++ {
		m := joinOn(ctx, t, fmt.Sprintf("m%d", i+1), urls[i], ms[0])
		for _, o := range ms {
			o.until("a join", isPresence(m.room.Member, "join"))
		}
		ms = append(ms, m)
	}
	for k, sender := range ms {
		for i := range 5 {
			sender.send(t, fmt.Sprintf("%s-%d", sender.name, i))
		}
		for j, o := range ms {
			if j != k {
				o.until("the round's last frame", isFrame(fmt.Sprintf("%s-4", sender.name)))
				o.c.Ack(o.room.Ch, o.last)
			}
		}
	}
	if err := ms[3].c.Leave(ctx, ms[3].room.Ch); err != nil {
		t.Fatalf("m4 leaves: %v", err)
	}
	for _, o := range ms[:3] {
		o.until("m4's leave", isPresence(ms[3].room.Member, "leave"))
	}
	ms[0].c.Burn(ms[0].room.Ch)
	for _, o := range ms[:3] {
		o.until("the burn", isClosed)
	}
	return ms
}

// burnScript: two pairs split over urls[0] and urls[1]; the joiner burns the first room, the creator the
// second.
func burnScript(ctx context.Context, t *testing.T, urls []string) []*roomMember {
	var out []*roomMember
	for _, joinerBurns := range []bool{true, false} {
		x := createOn(ctx, t, "x", urls[0], 2)
		y := joinOn(ctx, t, "y", urls[1], x)
		x.until("y's join", isPresence(y.room.Member, "join"))
		x.send(t, "hello")
		y.until("x's frame", isFrame("hello"))
		burner := x
		if joinerBurns {
			burner = y
		}
		burner.c.Burn(burner.room.Ch)
		x.until("the burn", isClosed)
		y.until("the burn", isClosed)
		// The room is gone on every node: joining it again is refused.
		late := dialAnon(ctx, t, urls[1])
		if _, err := joinAsking(ctx, late, x.room.ID, x.room.Cap); err == nil || !strings.Contains(err.Error(), "denied") {
			t.Fatalf("a join after the burn: %v, want denied", err)
		}
		out = append(out, x, y)
	}
	return out
}

// sameAsOneNode runs script with every member on node one, then with members spread as urls says, and
// checks that every member was told exactly the same things in both.
func sameAsOneNode(ctx context.Context, t *testing.T, one string, urls []string, script func(context.Context, *testing.T, []string) []*roomMember) {
	t.Helper()
	single := make([]string, len(urls))
	for i := range single {
		single[i] = one
	}
	want := script(ctx, t, single)
	got := script(ctx, t, urls)
	for i := range want {
		if !slices.Equal(got[i].log, want[i].log) {
			t.Errorf("%s across nodes was told:\n%s\n\non one node:\n%s", got[i].name, strings.Join(got[i].log, "\n"), strings.Join(want[i].log, "\n"))
		}
	}
	if !t.Failed() {
		t.Logf("%d members, %d lines each on average, the same across nodes as on one node", len(got), len(got[0].log))
	}
}

// TestClusterRooms runs three NATS servers and three relay nodes: members of one room on different nodes are
// told exactly what members on one node are told (order, sequence numbers, sender ids, presence, what a
// resume replays after the acknowledgements) for a pair split over two nodes with the resume on the third, a
// group of four over three nodes, and burns from either side.
func TestClusterRooms(t *testing.T) {
	nc, secret, a, b, c := threeNodes(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// A member on B of a room made on A: A sequences it and serves B's member, B proxies it.
	x := createOn(ctx, t, "x", a.url, 2)
	y := joinOn(ctx, t, "y", b.url, x)
	eventually(t, 5*time.Second, "the gauges of a split pair", func() bool {
		return a.scrape(t, "cleanrelay_cluster_rooms_sequenced") == 1 && a.scrape(t, "cleanrelay_cluster_members_served") == 1 &&
			b.scrape(t, "cleanrelay_cluster_members_proxied") == 1 && b.scrape(t, "cleanrelay_cluster_rooms_sequenced") == 0
	})
	x.c.Close()
	y.c.Close()

	t.Run("pair", func(t *testing.T) {
		sameAsOneNode(ctx, t, a.url, []string{a.url, b.url, c.url}, pairScript)
	})
	t.Run("pair-reverse", func(t *testing.T) {
		sameAsOneNode(ctx, t, b.url, []string{b.url, a.url, b.url}, pairScript)
	})
	t.Run("group", func(t *testing.T) {
		sameAsOneNode(ctx, t, c.url, []string{a.url, b.url, c.url, b.url}, groupScript)
	})
	t.Run("burn", func(t *testing.T) {
		sameAsOneNode(ctx, t, a.url, []string{a.url, c.url}, burnScript)
		sameAsOneNode(ctx, t, a.url, []string{c.url, a.url}, burnScript)
	})

	// Everything ended: no node holds a room or a membership of another node's room any more.
	for _, n := range []*clusterNode{a, b, c} {
		eventually(t, 5*time.Second, n.name+" holds nothing", func() bool {
			return n.scrape(t, "cleanrelay_cluster_members_served") == 0 && n.scrape(t, "cleanrelay_cluster_members_proxied") == 0
		})
		if g := n.scrape(t, "cleanrelay_cluster_room_gaps_total"); g != 0 {
			t.Errorf("%s counted %v rooms messages lost on NATS", n.name, g)
		}
	}

	// A dialog opened on A: bob joins it on C and they chat, his user stamped on his join; carol, on B with
	// the capability, is refused as on one node.
	alice, _ := newUser(ctx, t, a.url, "alice")
	bob, _ := newUser(ctx, t, b.url, "bob")
	carol, _ := newUser(ctx, t, b.url, "carol")
	dlg, err := alice.OpenDialog(ctx, bob.Name)
	if err != nil {
		t.Fatal(err)
	}
	da := &roomMember{t: t, name: "alice", c: session(ctx, t, alice, a.url)}
	if da.room, err = joinAsking(ctx, da.c, dlg.Room, dlg.Cap); err != nil {
		t.Fatalf("alice joins her dialog on A: %v", err)
	}
	db := &roomMember{t: t, name: "bob", c: session(ctx, t, bob, c.url)}
	if db.room, err = joinAsking(ctx, db.c, dlg.Room, dlg.Cap); err != nil {
		t.Fatalf("bob joins the dialog on C: %v", err)
	}
	da.until("bob's join", func(ev client.Event) bool {
		return ev.Kind == client.KindPresence && ev.Event == "join" && ev.Member == db.room.Member && ev.User == bob.Name
	})
	db.send(t, "hi alice")
	da.until("bob's frame", isFrame("hi alice"))
	da.send(t, "hi bob")
	db.until("alice's frame", isFrame("hi bob"))
	if _, err := joinAsking(ctx, session(ctx, t, carol, b.url), dlg.Room, dlg.Cap); err == nil || !strings.Contains(err.Error(), "denied") {
		t.Fatalf("carol joins alice and bob's dialog on B: %v, want denied", err)
	}
	da.c.Close()
	db.c.Close()

	// A room's lifetime is its sequencer's: node D ends its rooms after 3 s, for members on every node.
	d := startNode(t, nc, "node-d", 0, secret, "--room-lifetime", "3s")
	eventually(t, 10*time.Second, "A sees D", func() bool { return a.scrape(t, "cleanrelay_cluster_peers") == 3 })
	sameAsOneNode(ctx, t, d.url, []string{d.url, a.url}, func(ctx context.Context, t *testing.T, urls []string) []*roomMember {
		x := createOn(ctx, t, "x", urls[0], 2)
		y := joinOn(ctx, t, "y", urls[1], x)
		x.until("y's join", isPresence(y.room.Member, "join"))
		y.send(t, "hello")
		x.until("y's frame", isFrame("hello"))
		x.until("the end of the room's lifetime", isClosed)
		y.until("the end of the room's lifetime", isClosed)
		return []*roomMember{x, y}
	})
	d.cmd.Process.Signal(syscall.SIGTERM)
	d.cmd.Wait()

	// Node B dies (SIGKILL) under a member of a room A sequences: A's member sees it go away once B is
	// unheard, and it resumes on C with its token within the grace, getting again what it had not
	// acknowledged and nothing it had.
	x = createOn(ctx, t, "x", a.url, 2)
	y = joinOn(ctx, t, "y", b.url, x)
	x.until("y's join", isPresence(y.room.Member, "join"))
	x.send(t, "before")
	y.until("x's frame", isFrame("before"))
	x.send(t, "unacknowledged")
	y.until("x's frame", isFrame("unacknowledged"))
	y.c.Ack(y.room.Ch, y.last-1)
	// The ack and y's frames take one path to A in order: once x has y's frame, A has the ack.
	y.send(t, "acked")
	x.until("y's frame after its ack", isFrame("acked"))
	start := time.Now()
	if err := b.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	b.cmd.Wait()
	x.until("y away after B's death", isPresence(y.room.Member, "away"))
	t.Logf("A saw the member on the killed node B away %v after the SIGKILL", time.Since(start).Round(time.Millisecond))
	y.resumeOn(ctx, c.url, 0)
	x.until("y back", isPresence(y.room.Member, "back"))
	y.until("the unacknowledged frame again", isFrame("unacknowledged"))
	x.send(t, "after")
	y.until("x's frame", isFrame("after"))
	t.Logf("y, on B, resumed on C %v after B's SIGKILL; it was told:\n%s", time.Since(start).Round(time.Millisecond), strings.Join(y.log, "\n"))
	if n := strings.Count(strings.Join(y.log, "\n"), `"before"`); n != 1 {
		t.Errorf("y was given the acknowledged frame %d times, want 1", n)
	}
	x.c.Close()
	y.c.Close()
	for _, n := range []*clusterNode{a, c} {
		eventually(t, 5*time.Second, n.name+" holds nothing", func() bool {
			return n.scrape(t, "cleanrelay_cluster_members_served") == 0 && n.scrape(t, "cleanrelay_cluster_members_proxied") == 0
		})
	}
}

// clusterCounters says what the nodes' cluster counters that tell a link's trouble count (a failed run's
// explanation: a takeover, a room ended by the fence, a relink, gaps and messages sent again, busy answers).
func clusterCounters(t *testing.T, nodes ...*clusterNode) string {
	t.Helper()
	var out []string
	for _, n := range nodes {
		var c []string
		for _, name := range []string{"takeovers_total", "rooms_yielded_total", "relinks_total", "room_gaps_total",
			"room_resent_total", "room_dropped_total", "busy_total", "peers"} {
			c = append(c, fmt.Sprintf("%s %v", name, n.scrape(t, "cleanrelay_cluster_"+name)))
		}
		out = append(out, n.name+": "+strings.Join(c, ", "))
	}
	return strings.Join(out, "; ")
}

// pairOfNodes is a cluster of two relay nodes, A and B, on three NATS servers, each hearing the other.
func pairOfNodes(t *testing.T) (a, b *clusterNode) {
	t.Helper()
	nc := natsnet.Start(t, natsnet.Options{})
	secret := writeSecret(t)
	a, b = startNode(t, nc, "node-a", 0, secret), startNode(t, nc, "node-b", 1, secret)
	for _, n := range []*clusterNode{a, b} {
		eventually(t, 10*time.Second, n.name+" sees its peer", func() bool { return n.scrape(t, "cleanrelay_cluster_peers") == 1 })
	}
	return a, b
}

// TestClusterPairs runs the bench's pairs workload with both members of each pair on node A, then with the
// second member on node B, side by side: across nodes as on one, every frame arrives once and in order. It
// logs the throughput and latency of both (docs/cluster.md §2); `cleanrelay bench --url … --join-url …`
// measures the same on a running cluster.
func TestClusterPairs(t *testing.T) {
	a, b := pairOfNodes(t)
	ws := func(n *clusterNode) string { return "ws" + strings.TrimPrefix(n.url, "http") + "ws" }
	ctx := context.Background()
	for _, run := range []struct {
		name string
		cfg  bench.PairsConfig
	}{
		{"unthrottled", bench.PairsConfig{Rooms: 50, Frames: 1000, Size: 1024, Window: 32, Timeout: 2 * time.Minute}},
		{"10 frames/s", bench.PairsConfig{Rooms: 50, Frames: 30, Size: 1024, Rate: 10, Timeout: 2 * time.Minute}},
	} {
		for _, join := range []*clusterNode{a, b} {
			s := bench.Attach("relay", ws(a), a.cmd.Process.Pid)
			if join != a {
				s.JoinURL = ws(join)
			}
			r, err := bench.Pairs(ctx, s, run.cfg)
			if err != nil {
				t.Fatalf("%s pairs on A and %s: %v", run.name, join.name, err)
			}
			p := r.Pairs
			t.Logf("%s, pairs on node-a and %s: %.0f frames/s, p50 %.2f ms, p99 %.2f ms, max %.2f ms; A's CPU %.2f s",
				run.name, join.name, p.FramesPerS, p.LatP50ms, p.LatP99ms, p.LatMaxms, r.ServerCPU)
			if r.Errors != 0 || p.Lost != 0 || p.Duplicated != 0 || p.Reordered != 0 || p.LostNotices != 0 {
				t.Errorf("%s pairs on A and %s: %d errors (%s), %d lost, %d unsent, %d duplicated, %d reordered, %d lost notices; %s",
					run.name, join.name, r.Errors, r.ErrorKinds, p.Lost, p.Unsent, p.Duplicated, p.Reordered, p.LostNotices,
					clusterCounters(t, a, b))
			}
		}
	}
}
