package cluster

import (
	"encoding/binary"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cleanrelay/cleanrelay/relay/cluster/natsnet"
	"github.com/cleanrelay/cleanrelay/relay/internal/rooms"
	"github.com/cleanrelay/cleanrelay/relay/internal/ws"
)

// testMember is a member of a room on a test table, read by its own goroutine as a socket's writer would:
// every item its room hands out, in order.
type testMember struct {
	name  string
	table *rooms.Table
	m     *rooms.Member
	wake  chan struct{}

	mu     sync.Mutex
	items  []rooms.Item // guarded by mu
	frames []uint32     // guarded by mu: the numbers of the frames received, in order
	closed string       // guarded by mu
}

func (tm *testMember) Wake() {
	select {
	case tm.wake <- struct{}{}:
	default:
	}
}

func (tm *testMember) Closed(_ *rooms.Member, _ byte, reason string) {
	tm.mu.Lock()
	tm.closed = reason
	tm.mu.Unlock()
	tm.Wake()
}

// read takes the member's items until done closes, acknowledging every 16.
func (tm *testMember) read(done <-chan struct{}) {
	body := make([]byte, 1<<16)
	unacked := 0
	for {
		select {
		case <-done:
			return
		case <-tm.wake:
		case <-time.After(20 * time.Millisecond):
		}
		for {
			it := tm.m.Next(tm, 1, body)
			if it.Kind == rooms.None {
				break
			}
			tm.mu.Lock()
			tm.items = append(tm.items, it)
			if it.Kind == rooms.Frame {
				tm.frames = append(tm.frames, binary.BigEndian.Uint32(body))
			}
			tm.mu.Unlock()
			if unacked++; unacked >= 16 && it.Seq != 0 {
				tm.m.Ack(tm, it.Seq)
				unacked = 0
			}
		}
	}
}

func (tm *testMember) received() int {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return len(tm.frames)
}

// send forwards frames 1..count, each once the other member has received all but window of the ones before,
// waiting while the room says Crowded.
func (tm *testMember) send(t *testing.T, other *testMember, count, window int) {
	for i := 1; i <= count; i++ {
		for deadline := time.Now().Add(time.Minute); other.received() < i-window; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Errorf("%s's frame %d not received within a minute", tm.name, i-window)
				return
			}
		}
		for {
			p := ws.PayloadOf(append(binary.BigEndian.AppendUint32(nil, uint32(i)), make([]byte, 296)...))
			res := tm.m.Forward(tm, p)
			if res == rooms.Forwarded {
				break
			}
			ws.PutPayload(p)
			if res != rooms.Crowded {
				t.Errorf("%s's frame %d: %v", tm.name, i, res)
				return
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// roomsNode is a node with a rooms table.
func roomsNode(t *testing.T, nc *natsnet.Cluster, name string, first int, keys *Keys, extra func() int64) (*Node, *rooms.Table, *roomLinks) {
	t.Helper()
	urls := nc.URLs()
	return roomsNodeOn(t, nc, name, append(urls[first:], urls[:first]...), keys, extra)
}

// roomsNodeOn is roomsNode on the NATS servers urls only.
func roomsNodeOn(t *testing.T, nc *natsnet.Cluster, name string, urls []string, keys *Keys, extra func() int64) (*Node, *rooms.Table, *roomLinks) {
	t.Helper()
	n, _, _ := testNodeOn(t, nc, name, urls, keys)
	var conns atomic.Int64
	tb := rooms.New(rooms.Config{DefaultMembers: 2, MaxMembers: 8, MaxRooms: 100, RoomBuffer: 256, RoomBufferBytes: 1 << 20,
		Grace: time.Minute, OrphanGrace: time.Minute, MaxRoomLifetime: time.Hour}, &rooms.Stats{},
		&rooms.Budget{Max: 1 << 30, Conns: &conns, Extra: extra}, slog.New(slog.DiscardHandler))
	if err := n.ServeRooms(tb, 1<<16); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tb.Close("shutdown") })
	return n, tb, n.rooms.Load()
}

// TestRoomLinksLoseAFifth: node A sequences a room, node B holds its second member; each node's links
// lose a fifth of the messages they publish (first sends and sends again alike), as core NATS does when a
// server dies or a node is a slow consumer. Both members still receive all 300 of the other's frames
// exactly once and in order, with no lost notice; B's leave reaches A; and once the links have ended, the
// nodes hold no link and nothing unconfirmed.
func TestRoomLinksLoseAFifth(t *testing.T) {
	nc := natsnet.Start(t, natsnet.Options{})
	keys := testKeys(t, secretA)
	a, ta, la := roomsNode(t, nc, "node-a", 0, keys, nil)
	b, tb, lb := roomsNode(t, nc, "node-b", 1, keys, nil)
	waitFor(t, 10*time.Second, "the nodes hear each other", func() bool { return len(a.livePeers()) == 1 && len(b.livePeers()) == 1 })
	// A fifth of the messages, drawn at random (a fixed fraction by count would lose the same message of
	// every resend of a window of five, forever: no network loses like that).
	var rndMu sync.Mutex
	rnd := rand.New(rand.NewPCG(1, 2))
	for _, l := range []*roomLinks{la, lb} {
		publish := l.env.publish
		l.env.publish = func(subject string, b []byte) {
			rndMu.Lock()
			lose := rnd.IntN(5) == 0
			rndMu.Unlock()
			if !lose {
				publish(subject, b)
			}
		}
	}

	x := &testMember{name: "x", table: ta, wake: make(chan struct{}, 1)}
	y := &testMember{name: "y", table: tb, wake: make(chan struct{}, 1)}
	var jx, jy rooms.Joined
	if err := ta.Create(rooms.Seat{Conn: x, Ch: 1}, 2, &jx); err != nil {
		t.Fatal(err)
	}
	x.m = jx.Member
	if err := tb.Join(rooms.Seat{Conn: y, Ch: 1}, &jx.Room, &jx.Cap, &jy); err != nil {
		t.Fatalf("join on B: %v", err)
	}
	y.m = jy.Member
	done := make(chan struct{})
	var wg sync.WaitGroup
	defer func() {
		close(done)
		wg.Wait()
	}()
	for _, m := range []*testMember{x, y} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.read(done)
		}()
	}
	const count = 300
	var senders sync.WaitGroup
	for _, p := range [][2]*testMember{{x, y}, {y, x}} {
		senders.Add(1)
		go func() {
			defer senders.Done()
			p[0].send(t, p[1], count, 32)
		}()
	}
	senders.Wait()
	waitFor(t, time.Minute, "every frame received", func() bool { return x.received() == count && y.received() == count })
	tb.Leave(y, y.m)
	waitFor(t, 30*time.Second, "y's leave on A", func() bool {
		x.mu.Lock()
		defer x.mu.Unlock()
		last := x.items[len(x.items)-1]
		return last.Kind == rooms.Presence && last.Event == "leave" && last.From == jy.ID
	})
	for _, m := range []*testMember{x, y} {
		m.mu.Lock()
		for i, n := range m.frames {
			if n != uint32(i+1) {
				t.Fatalf("%s's frame %d is number %d: lost, repeated or out of order", m.name, i+1, n)
			}
		}
		for _, it := range m.items {
			if it.Kind == rooms.Lost {
				t.Errorf("%s was told lost %d..%d", m.name, it.LostFrom, it.LostTo)
			}
		}
		m.mu.Unlock()
	}
	waitFor(t, 20*time.Second, "no link left on either node", func() bool {
		for _, l := range []*roomLinks{la, lb} {
			l.mu.Lock()
			left := len(l.served) + len(l.proxied) + len(l.closing)
			l.mu.Unlock()
			if left != 0 {
				return false
			}
		}
		return true
	})
	sa, sb := a.Stats(), b.Stats()
	if sa.RoomGaps+sb.RoomGaps == 0 || sa.RoomResent+sb.RoomResent == 0 {
		t.Fatalf("gaps %d+%d, resent %d+%d: the lost messages were not noticed", sa.RoomGaps, sb.RoomGaps, sa.RoomResent, sb.RoomResent)
	}
	t.Logf("%d frames each way with a fifth of the messages lost: all received once and in order; gaps found %d, messages sent again %d",
		count, sa.RoomGaps+sb.RoomGaps, sa.RoomResent+sb.RoomResent)
}

// TestRoomLinksRefusedFrame: a frame the home node's room refuses because the relay there is over its memory
// budget (and the room holds a quarter of its buffer unsent) is answered to the member on another node with
// the same over_memory error a member on one node gets, in its place among the entries, not dropped silently.
func TestRoomLinksRefusedFrame(t *testing.T) {
	nc := natsnet.Start(t, natsnet.Options{})
	keys := testKeys(t, secretA)
	var extra atomic.Int64
	a, ta, _ := roomsNode(t, nc, "node-a", 0, keys, extra.Load)
	b, tb, _ := roomsNode(t, nc, "node-b", 1, keys, nil)
	waitFor(t, 10*time.Second, "the nodes hear each other", func() bool { return len(a.livePeers()) == 1 && len(b.livePeers()) == 1 })
	x := &testMember{name: "x", table: ta, wake: make(chan struct{}, 1)}
	y := &testMember{name: "y", table: tb, wake: make(chan struct{}, 1)}
	var jx, jy rooms.Joined
	if err := ta.Create(rooms.Seat{Conn: x, Ch: 1}, 2, &jx); err != nil {
		t.Fatal(err)
	}
	x.m = jx.Member
	if err := tb.Join(rooms.Seat{Conn: y, Ch: 1}, &jx.Room, &jx.Cap, &jy); err != nil {
		t.Fatalf("join on B: %v", err)
	}
	y.m = jy.Member
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		y.read(done) // x reads nothing: y's frames stay unsent to it
	}()
	defer func() {
		close(done)
		wg.Wait()
	}()
	extra.Store(1 << 40) // A is over its budget from now on (within the budget's 100 ms refresh)
	time.Sleep(200 * time.Millisecond)
	for i := 1; i <= 64; i++ {
		y.m.Forward(y, ws.PayloadOf(append(binary.BigEndian.AppendUint32(nil, uint32(i)), make([]byte, 8000)...)))
	}
	refused := func() (n int) {
		y.mu.Lock()
		defer y.mu.Unlock()
		for _, it := range y.items {
			if it.Kind == rooms.Refused && it.Code == "over_memory" {
				n++
			}
		}
		return n
	}
	// 8 KiB buffers: the room takes about 32 (a quarter of its 1 MiB unsent) and refuses the rest; each frame is
	// either in the room (x gets it once it reads) or refused to y, none dropped silently.
	waitFor(t, 30*time.Second, "y told of its refused frames", func() bool { return refused() > 0 })
	wg.Add(1)
	go func() {
		defer wg.Done()
		x.read(done)
	}()
	waitFor(t, 30*time.Second, "every frame taken by the room or refused", func() bool { return x.received()+refused() == 64 })
	if d := a.Stats().RoomDropped; d != 0 {
		t.Errorf("A dropped %d frames silently", d)
	}
	t.Logf("of 64 frames of 8 KiB, the room took %d and refused %d, each refusal told to the sender on B", x.received(), refused())
}
