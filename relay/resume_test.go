package relay_test

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cleanrelay/cleanrelay/relay"
	"github.com/cleanrelay/cleanrelay/relay/client"
)

// member is a test participant that survives its connections: it tracks the last seq it processed, acks,
// and resumes on a fresh connection after a drop, resending what the relay never got.
type member struct {
	t      *testing.T
	tr     *testRelay
	conn   *client.Conn
	room   *client.Room
	last   uint64
	outbox *client.Outbox
	got    []uint32 // payload counters received from the peer, in order
	acked  uint64
}

func (m *member) send(n uint32) {
	var p [4]byte
	binary.BigEndian.PutUint32(p[:], n)
	m.outbox.Add(p[:])
	m.conn.Send(m.room.Ch, p[:]) // an error means the connection dropped: the outbox has the frame
}

// reconnect drops the current connection abruptly and resumes on a new one.
func (m *member) reconnect() {
	m.t.Helper()
	m.conn.Close()
	for range m.conn.Events() {
	}
	m.conn = m.tr.dial(m.t, nil)
	r, err := m.conn.Resume(ctx10s(m.t), m.room.Resume, m.last)
	if err != nil {
		m.t.Fatalf("resume: %v", err)
	}
	m.room = r
	again, err := m.outbox.Since(r.In)
	if err != nil {
		m.t.Fatalf("resend: %v", err)
	}
	for _, p := range again {
		m.conn.Send(r.Ch, p)
	}
}

// take processes one event, if one comes within d. It reports whether one came.
func (m *member) take(d time.Duration) bool {
	m.t.Helper()
	select {
	case ev, ok := <-m.conn.Events():
		if !ok {
			return false
		}
		// Seqs rise but skip: a member never receives its own frames. Loss shows in the payload counters.
		switch ev.Kind {
		case client.KindFrame, client.KindPresence:
			if ev.Seq <= m.last {
				m.t.Fatalf("member %d: seq %d after %d", m.room.Member, ev.Seq, m.last)
			}
			if ev.Kind == client.KindFrame {
				m.got = append(m.got, binary.BigEndian.Uint32(ev.Payload))
			}
		case client.KindLost:
			m.t.Fatalf("member %d: lost %d..%d", m.room.Member, ev.LostFrom, ev.LostTo)
		default:
			m.t.Fatalf("member %d: unexpected %+v", m.room.Member, ev)
		}
		m.last = ev.Seq
		if m.last-m.acked >= 16 {
			m.conn.Ack(m.room.Ch, m.last)
			m.acked = m.last
		}
		return true
	case <-time.After(d):
		return false
	}
}

func checkCounters(t *testing.T, who string, got []uint32, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("%s received %d frames, want %d", who, len(got), n)
	}
	for i, v := range got {
		if v != uint32(i) {
			t.Fatalf("%s: frame %d carries %d: lost, duplicated or reordered", who, i, v)
		}
	}
}

// TestResumeLosesAndDuplicatesNothing: 1000 frames each way while one member's connection drops twice.
func TestResumeLosesAndDuplicatesNothing(t *testing.T) {
	tr := startRelay(t, relay.Config{})
	ca, cb, ra, rb := tr.pair(t)
	a := &member{t: t, tr: tr, conn: ca, room: ra, last: ra.Seq + 1, outbox: client.NewOutbox(256)}
	b := &member{t: t, tr: tr, conn: cb, room: rb, last: rb.Seq, outbox: client.NewOutbox(256)}
	const n = 1000
	for i := range n {
		a.send(uint32(i))
		b.send(uint32(i))
		if i == 300 || i == 700 {
			b.reconnect()
		}
		// Take what has arrived, and keep both directions within a window of 64 frames, well inside the
		// room's buffer of 256 entries: unthrottled, but never so far ahead that a receiver counts as slow.
		for a.take(0) || i-len(a.got) > 64 && a.take(5*time.Second) {
		}
		for b.take(0) || i-len(b.got) > 64 && b.take(5*time.Second) {
		}
	}
	for len(b.got) < n && b.take(5*time.Second) {
	}
	for len(a.got) < n && a.take(5*time.Second) {
	}
	checkCounters(t, "the stable member", a.got, n)
	checkCounters(t, "the member that dropped twice", b.got, n)
	if s := tr.srv.Stats(); s.Resumes != 2 || s.Lost != 0 {
		t.Fatalf("resumes %d, lost notices %d; want 2 and 0", s.Resumes, s.Lost)
	}
}

// TestGapBeyondBufferIsReported: a member away for longer than the buffer holds is told exactly what it lost.
func TestGapBeyondBufferIsReported(t *testing.T) {
	tr := startRelay(t, relay.Config{RoomBuffer: 16})
	a, b, ra, rb := tr.pair(t)
	b.Close()
	if ev := nextEvent(t, a); ev.Event != "away" {
		t.Fatalf("got %+v, want away", ev)
	}
	for i := range 40 {
		a.Send(ra.Ch, []byte{byte(i)})
	}
	eventually(t, "the relay took all 40 frames", func() bool { return tr.srv.Stats().FramesIn == 40 })
	b2 := tr.dial(t, nil)
	r, err := b2.Resume(ctx10s(t), rb.Resume, rb.Seq)
	if err != nil {
		t.Fatal(err)
	}
	// Log: 1,2 joins; 3 away; 4..43 frames 0..39; 44 back. 16 entries are kept: 29..44, frames 25..39.
	ev := nextEvent(t, b2)
	if ev.Kind != client.KindLost || ev.LostFrom != rb.Seq+1 || ev.LostTo != 28 {
		t.Fatalf("got %+v, want lost %d..28", ev, rb.Seq+1)
	}
	for i := 25; i < 40; i++ {
		ev := nextFrame(t, b2)
		if ev.Payload[0] != byte(i) {
			t.Fatalf("got frame %d, want %d", ev.Payload[0], i)
		}
	}
	if ev := nextEvent(t, b2); ev.Kind != client.KindPresence || ev.Event != "back" || r.Member != ev.Member {
		t.Fatalf("got %+v, want its own back", ev)
	}
}

// TestResumeTakesOverALiveConnection: Tor circuits die without the relay noticing; a resume on a new connection
// must take the membership over from the old one, which is told "moved".
func TestResumeTakesOverALiveConnection(t *testing.T) {
	tr := startRelay(t, relay.Config{})
	a, b, ra, rb := tr.pair(t)
	b2 := tr.dial(t, nil)
	rb2, err := b2.Resume(ctx10s(t), rb.Resume, rb.Seq)
	if err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, b); ev.Kind != client.KindClosed || ev.Reason != "moved" {
		t.Fatalf("old connection got %+v, want closed moved", ev)
	}
	exchange(t, a, b2, ra, rb2)
}

// TestFrozenReader: a member that stops reading must not delay its room's other members nor other rooms. It
// falls a buffer behind (counted as slow), its connection is closed when a write misses the write deadline, and
// its peers see it go away. The deadline is long enough for the sender, paced by the healthy member, to send a
// buffer's worth first on a loaded machine.
func TestFrozenReader(t *testing.T) {
	tr := startRelay(t, relay.Config{RoomBuffer: 64, RoomBufferBytes: 8 << 20, WriteTimeout: 5 * time.Second, RateFrames: 1e6, RateBurst: 1e6})
	sender := tr.dial(t, nil)
	room := mustCreate(t, sender, 3)
	// The frozen member's socket has tiny kernel buffers and its program takes no events at all.
	frozen := tr.dial(t, frozenOptions())
	rf := mustJoin(t, frozen, room.ID, room.Cap)
	healthy := tr.dial(t, nil)
	mustJoin(t, healthy, room.ID, room.Cap)
	other1, other2, ro1, ro2 := tr.pair(t)

	payload := make([]byte, 32<<10)
	// The healthy member's reader records what it got; the test waits on these, not on the reader, so that
	// the end of sending may come before or after the reader's last event.
	var progress atomic.Int64 // frames the healthy member has received, in order
	var sawAway atomic.Bool   // it saw the frozen member go away
	healthyErr := make(chan error, 1)
	go func() {
		n := 0
		for ev := range healthy.Events() {
			switch {
			case ev.Kind == client.KindFrame:
				if got := binary.BigEndian.Uint32(ev.Payload); got != uint32(n) {
					healthyErr <- fmt.Errorf("the healthy member got frame %d, want %d", got, n)
					return
				}
				n++
				progress.Store(int64(n))
			case ev.Kind == client.KindLost:
				healthyErr <- fmt.Errorf("the healthy member lost %d..%d", ev.LostFrom, ev.LostTo)
				return
			case ev.Kind == client.KindPresence && ev.Event == "away" && ev.Member == rf.Member:
				sawAway.Store(true)
			}
		}
		healthyErr <- fmt.Errorf("the healthy member's connection ended: %v", healthy.Err())
	}()
	// The frozen member's writer blocks once its socket is full and fails at the write timeout, however fast
	// the sender goes: after a burst that fills every buffer the sender slows down, and the loop is bounded by
	// time, not by a number of frames that a fast machine sends before the timeout can fire.
	const burst = 2000
	start := time.Now()
	sent := 0
	for tr.srv.Stats().Drops["write_failed"] == 0 {
		if time.Since(start) > 12*5*time.Second {
			t.Fatalf("%d frames of 32 KiB sent in 60 s and the frozen member's connection was never closed", sent)
		}
		if sent >= burst {
			time.Sleep(5 * time.Millisecond)
		}
		// The sender keeps pace with the healthy member (a window well inside the room buffer): the frozen one
		// must not hold anybody up, and a healthy member must never be taken for a slow one.
		for int64(sent)-progress.Load() > 32 {
			time.Sleep(100 * time.Microsecond)
		}
		binary.BigEndian.PutUint32(payload, uint32(sent))
		if err := sender.Send(room.Ch, payload); err != nil {
			t.Fatal(err)
		}
		sent++
		if sent%100 == 0 {
			exchange(t, other1, other2, ro1, ro2) // another room is never held up
		}
	}
	// The healthy member gets every frame, in order, and sees the frozen one go away.
	deadline := time.After(10 * time.Second)
	for progress.Load() != int64(sent) || !sawAway.Load() {
		select {
		case err := <-healthyErr:
			t.Fatal(err)
		case <-deadline:
			t.Fatalf("the healthy member got %d of %d frames (saw away: %v) within 10s", progress.Load(), sent, sawAway.Load())
		case <-time.After(5 * time.Millisecond):
		}
	}
	t.Logf("frozen member's connection closed after %d frames of 32 KiB (it missed %d deliveries); the healthy member received all of them in order",
		sent, tr.srv.Stats().Drops["slow"])
	if tr.srv.Stats().Drops["slow"] == 0 {
		t.Error("the frozen member never fell a buffer behind")
	}
	exchange(t, other1, other2, ro1, ro2)
	// The relay has let go of the frozen connection; its client still holds bytes it never read.
	eventually(t, "the relay holds 4 connections", func() bool { return tr.srv.Stats().Conns == 4 })
}

// TestOwnFramesAreNoLoss: a member's own frames that every peer acknowledged leave the log before the member's
// writer ever passes them; that must not look like a gap to it (a bug the load tool found).
func TestOwnFramesAreNoLoss(t *testing.T) {
	tr := startRelay(t, relay.Config{})
	a, b, ra, rb := tr.pair(t)
	a.Ack(ra.Ch, ra.Seq+1) // a has processed b's join
	var last uint64
	for i := range 10 {
		a.Send(ra.Ch, []byte{byte(i)})
		last = nextFrame(t, b).Seq
	}
	if err := b.Ack(rb.Ch, last); err != nil {
		t.Fatal(err)
	}
	// Let the relay take the ack (and trim), then a frame the other way.
	eventually(t, "the relay took the frames", func() bool { return tr.srv.Stats().FramesOut == 10 })
	time.Sleep(50 * time.Millisecond)
	b.Send(rb.Ch, []byte("reply"))
	if ev := nextEvent(t, a); ev.Kind != client.KindFrame || string(ev.Payload) != "reply" {
		t.Fatalf("got %+v, want the reply frame (no lost notice)", ev)
	}
	if n := tr.srv.Stats().Lost; n != 0 {
		t.Fatalf("%d lost notices, want 0", n)
	}
}
