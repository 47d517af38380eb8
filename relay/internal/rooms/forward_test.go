package relay

import (
	"log/slog"
	"reflect"
	"strconv"
	"testing"

	"github.com/cleanrelay/cleanrelay/relay/internal/ws"
)

// forwardRig is a pair room on two socketless connections, for measuring the forwarding path alone: frame in
// (forward), frame out (nextForLocked into the writer's buffer), acknowledgment (ackLocked).
type forwardRig struct {
	srv    *Server
	a, b   *conn
	ma, mb *member
	out    *ws.Buf
	seq    uint64
	sent   *ws.Payload // the payload of step's last frame, and the slice it came from
	from   []byte
}

func newForwardRig(tb testing.TB) *forwardRig {
	return newForwardRigWith(tb, Config{}, true)
}

// newForwardRigWith makes the rig with cfg; creatorAcks says whether a acknowledges b's join.
func newForwardRigWith(tb testing.TB, cfg Config, creatorAcks bool) *forwardRig {
	srv, err := New(cfg, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatal(err)
	}
	a, b := newConn(srv, nil, Identity{}), newConn(srv, nil, Identity{})
	a.writing.Store(true) // no writer goroutines: step plays their part
	b.writing.Store(true)
	if err := srv.hub.create(a, 1, 2); err != nil {
		tb.Fatal(err)
	}
	a.mu.Lock()
	ma := a.chans[0].m
	a.ctrl = nil
	a.mu.Unlock()
	// The capability is only in the reply, which we dropped; set a known one.
	var id, capability wireSecret
	id.state, id.n, capability.state, capability.n = wireOK, roomIDLen, wireOK, secretLen
	copy(id.b[:], ma.room.id[:])
	capability.b[0] = 1
	ma.room.capHash = (*secret)(&capability.b).hash()
	if err := srv.hub.join(b, 1, &id, &capability); err != nil {
		tb.Fatal(err)
	}
	b.mu.Lock()
	mb := b.chans[0].m
	b.ctrl = nil
	b.mu.Unlock()
	r := ma.room
	out := ws.GetBuf(deliverHeaderLen + srv.cfg.MaxFrame)
	r.mu.Lock()
	if msg, _ := r.nextForLocked(ma, a, 1, out.B); msg == nil { // a's writer sends it b's join
		tb.Fatal("a was not sent b's join")
	}
	r.mu.Unlock()
	if creatorAcks {
		r.mu.Lock()
		r.ackLocked(ma, r.log.head) // a has seen b join
		r.mu.Unlock()
	}
	return &forwardRig{srv: srv, a: a, b: b, ma: ma, mb: mb, out: out}
}

// forwardBytes forwards payload as a frame m sent on c.
func (r *room) forwardBytes(m *member, c *conn, payload []byte) forwardResult {
	p := ws.PayloadOf(payload)
	defer ws.PutPayload(p)
	return r.forward(m, c, p, 0)
}

// step forwards one frame from a to b and acknowledges it. It reports whether b got the payload. The payload
// is made a ws.Payload once for the same slice, as the reader would have made it, so that a benchmark
// measures the relay's work alone.
func (g *forwardRig) step(payload []byte) bool {
	r := g.ma.room
	if g.sent == nil || len(g.from) != len(payload) || &g.from[0] != &payload[0] {
		ws.PutPayload(g.sent)
		g.sent, g.from = ws.PayloadOf(payload), payload
	}
	if r.forward(g.ma, g.a, g.sent, 0) != forwarded {
		return false
	}
	ok := false
	for {
		r.mu.Lock()
		msg, bin := r.nextForLocked(g.mb, g.b, 1, g.out.B)
		if msg != nil && bin {
			ok = len(msg) == deliverHeaderLen+len(payload)
			g.seq = r.log.head
			r.ackLocked(g.mb, g.seq)
		}
		r.mu.Unlock()
		if msg == nil {
			return ok
		}
	}
}

// TestForwardDoesNotAllocate keeps the hot path at zero allocations per frame.
func TestForwardDoesNotAllocate(t *testing.T) {
	g := newForwardRig(t)
	payload := make([]byte, 1024)
	for range 100 { // warm the pools and grow the ring
		if !g.step(payload) {
			t.Fatal("frame not delivered")
		}
	}
	allocs := testing.AllocsPerRun(1000, func() {
		if !g.step(payload) {
			t.Fatal("frame not delivered")
		}
	})
	if allocs != 0 {
		t.Fatalf("%.2f allocations per forwarded frame, want 0", allocs)
	}
	if g.ma.room.log.n != 0 {
		t.Fatalf("%d entries still buffered after every frame was acknowledged", g.ma.room.log.n)
	}
}

// TestReleasedBuffersAreZeroed: a frame's bytes do not outlive it in the relay's buffers.
func TestReleasedBuffersAreZeroed(t *testing.T) {
	g := newForwardRig(t)
	r := g.ma.room
	secret := []byte("a frame nobody may find later")
	r.forwardBytes(g.ma, g.a, secret)
	r.mu.Lock()
	data := payloadBytes(r.log.at(r.log.head).data)
	r.mu.Unlock()
	g.srv.hub.closeAll(reasonBurned) // as a burn does
	if string(data) == string(secret) {
		t.Fatal("a dropped room's frame is still readable in its buffer")
	}
	for i, v := range data {
		if v != 0 {
			t.Fatalf("byte %d of a dropped frame is %#x", i, v)
		}
	}
}

// payloadBytes returns the bytes p holds, which package ws hands out to no one, so that a test can look at
// them after p is released.
func payloadBytes(p *ws.Payload) []byte {
	return reflect.ValueOf(p).Elem().FieldByName("b").Bytes()
}

// BenchmarkForward measures the relay's own work per frame, without sockets: forward, deliver, acknowledge.
func BenchmarkForward(b *testing.B) {
	for _, size := range []int{64, 1024, 16 << 10} {
		b.Run(byteSize(size), func(b *testing.B) {
			g := newForwardRig(b)
			payload := make([]byte, size)
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for b.Loop() {
				g.step(payload)
			}
		})
	}
}

func byteSize(n int) string {
	if n >= 1024 {
		return strconv.Itoa(n/1024) + "KiB"
	}
	return strconv.Itoa(n) + "B"
}
