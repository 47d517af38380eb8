package relay_test

import (
	"encoding/binary"
	"flag"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cleanrelay/cleanrelay/relay"
	"github.com/cleanrelay/cleanrelay/relay/client"
)

// The size of TestDocClientLosesNothing. The defaults run in seconds under -race; a larger run is a manual
// soak: go test ./relay -run TestDocClientLosesNothing -doc.rooms 10 -doc.frames 30000 -v
var (
	docRooms  = flag.Int("doc.rooms", 4, "TestDocClientLosesNothing: pair rooms")
	docFrames = flag.Int("doc.frames", 1500, "TestDocClientLosesNothing: frames each member sends")
)

// docWindow is how many of its own frames a doc client keeps unreceived by its peer: far inside the buffer.
const docWindow = 16

// docMember is a client that does only what docs/protocol.md §4.2 and §5 tell it: it acknowledges the last
// entry it received once ackEvery entries arrived since its last acknowledgement, and ackDelay after an
// entry it has not acknowledged yet; it paces its own frames by what its peer received (end to end: here
// the peer's counter).
type docMember struct {
	conn     *client.Conn
	room     *client.Room
	received atomic.Int64 // frames received from the peer, in order
	err      error
}

// receive takes events until it has n frames from the peer, following the acknowledgement rules.
func (m *docMember) receive(n int, peer uint32) {
	hello := m.conn.Hello()
	ackDelay := time.Duration(hello.AckDelay) * time.Millisecond
	if ackDelay == 0 {
		ackDelay = 200 * time.Millisecond // a relay that does not say
	}
	var last, acked uint64
	var unacked int
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	ack := func() {
		if last > acked {
			m.conn.Ack(m.room.Ch, last)
			acked, unacked = last, 0
		}
	}
	for m.received.Load() < int64(n) {
		select {
		case ev, ok := <-m.conn.Events():
			if !ok {
				m.err = fmt.Errorf("member %d: connection ended: %v", m.room.Member, m.conn.Err())
				return
			}
			switch ev.Kind {
			case client.KindFrame:
				if ev.From != peer {
					m.err = fmt.Errorf("member %d: frame from %d", m.room.Member, ev.From)
					return
				}
				if got := binary.BigEndian.Uint32(ev.Payload); int64(got) != m.received.Load() {
					m.err = fmt.Errorf("member %d: frame %d arrived after %d frames", m.room.Member, got, m.received.Load())
					return
				}
				m.received.Add(1)
			case client.KindPresence:
			case client.KindLost:
				m.err = fmt.Errorf("member %d: lost %d..%d while connected, after %d frames", m.room.Member, ev.LostFrom, ev.LostTo, m.received.Load())
				return
			default:
				m.err = fmt.Errorf("member %d: unexpected %+v", m.room.Member, ev)
				return
			}
			if ev.Seq <= last {
				m.err = fmt.Errorf("member %d: seq %d after %d", m.room.Member, ev.Seq, last)
				return
			}
			last = ev.Seq
			if unacked++; unacked >= hello.AckEvery {
				ack()
			} else if unacked == 1 {
				timer.Reset(ackDelay)
			}
		case <-timer.C:
			ack()
		}
	}
	ack()
}

// send sends n frames of size bytes, keeping at most docWindow of them unreceived by peer.
func (m *docMember) send(n, size int, peer *docMember) {
	payload := make([]byte, size)
	for i := range n {
		for int64(i)-peer.received.Load() >= docWindow {
			select {
			case <-m.conn.Done():
				return
			case <-time.After(100 * time.Microsecond):
			}
		}
		binary.BigEndian.PutUint32(payload, uint32(i))
		if err := m.conn.Send(m.room.Ch, payload); err != nil {
			return // the receiver reports why
		}
	}
}

// TestDocClientLosesNothing: pairs of clients that follow the protocol document exactly, in rooms where both
// send at once and in rooms where one sends and the other only receives, never get lost while connected;
// the relay never counts one of them slow, and pushes out of a room's buffer at most what arrives before the
// first acknowledgements.
func TestDocClientLosesNothing(t *testing.T) {
	tr := startRelay(t, relay.Config{})
	rooms, frames := *docRooms, *docFrames
	start := time.Now()
	var wg sync.WaitGroup
	members := make([]*docMember, 0, 2*rooms)
	for i := range rooms {
		ca, cb, ra, rb := tr.pair(t)
		a := &docMember{conn: ca, room: ra}
		b := &docMember{conn: cb, room: rb}
		members = append(members, a, b)
		for _, p := range [][2]*docMember{{a, b}, {b, a}} {
			n := frames
			if i%2 == 0 && p[0] == b {
				n = 0 // every other room is a one-way transfer: its sender receives nothing
			}
			wg.Add(2)
			go func() { defer wg.Done(); p[1].receive(n, p[0].room.Member) }()
			go func() { defer wg.Done(); p[0].send(n, 1024, p[1]) }()
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		t.Fatal("the exchange did not finish within 5 minutes")
	}
	for _, m := range members {
		if m.err != nil {
			t.Error(m.err)
		}
	}
	s := tr.srv.Stats()
	t.Logf("%d rooms (half of them one-way), %d frames of 1 KiB per sender, in %v; drops: %v; lost notices %d",
		rooms, frames, time.Since(start).Round(time.Millisecond), s.Drops, s.Lost)
	if s.Drops["slow"] != 0 || s.Lost != 0 {
		t.Errorf("slow drops %d, lost notices %d; want 0", s.Drops["slow"], s.Lost)
	}
	if max := uint64(rooms * tr.dial(t, nil).Hello().Buffer); s.Drops["evicted"] > max {
		t.Errorf("%d entries pushed out of room buffers, want at most %d (a buffer per room)", s.Drops["evicted"], max)
	}
}
