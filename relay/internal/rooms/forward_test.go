package rooms

import (
	"reflect"
	"strconv"
	"testing"

	"github.com/cleanrelay/cleanrelay/relay/internal/ws"
)

// forwardRig is a pair room on two fake connections, for measuring the forwarding path alone: frame in
// (Forward), frame out (Next into the writer's buffer), acknowledgment (Ack).
type forwardRig struct {
	table  *Table
	a, b   *fakeConn
	ma, mb *Member
	body   []byte
	seq    uint64
}

func newForwardRig(tb testing.TB) *forwardRig {
	return newForwardRigWith(tb, Config{}, true)
}

// newForwardRigWith makes the rig with cfg; creatorAcks says whether a acknowledges b's join.
func newForwardRigWith(tb testing.TB, cfg Config, creatorAcks bool) *forwardRig {
	t := newTable(tb, cfg, 0)
	a, b := newFakeConn(tb, t), newFakeConn(tb, t)
	ja := mustCreate(tb, t, a, 1, 2)
	jb := mustJoin(tb, t, b, 1, ja)
	g := &forwardRig{table: t, a: a, b: b, ma: ja.Member, mb: jb.Member, body: make([]byte, 64<<10)}
	if it := g.ma.Next(a, 1, g.body); it.Kind != Presence { // a's writer sends it b's join
		tb.Fatalf("a was sent %+v, want b's join", it)
	}
	if creatorAcks {
		g.ma.Ack(a, jb.Seq) // a has seen b join
	}
	return g
}

// forwardBytes forwards a copy of payload as a frame m sent on c; the room owns the copy if it took it.
func forwardBytes(m *Member, c Conn, payload []byte) ForwardResult {
	p := ws.PayloadOf(payload)
	res := m.Forward(c, p)
	if res != Forwarded {
		ws.PutPayload(p)
	}
	return res
}

// step forwards one frame of n bytes from a to b and acknowledges it. It reports whether b got it. The frame
// is a pooled payload the sender's reader would have filled (its unmasking copy is the reader's work, not
// the room's, and is not measured); the room takes it as it is.
func (g *forwardRig) step(n int) bool {
	if g.ma.Forward(g.a, ws.GetPayload(n)) != Forwarded {
		return false
	}
	ok := false
	for {
		it := g.mb.Next(g.b, 1, g.body)
		if it.Kind == None {
			return ok
		}
		if it.Kind == Frame {
			ok = it.Len == n
			g.seq = it.Seq
			g.mb.Ack(g.b, g.seq)
		}
	}
}

// TestForwardDoesNotAllocate keeps the hot path at zero allocations per frame.
func TestForwardDoesNotAllocate(t *testing.T) {
	g := newForwardRig(t)
	for range 100 { // warm the pools and grow the ring
		if !g.step(1024) {
			t.Fatal("frame not delivered")
		}
	}
	allocs := testing.AllocsPerRun(1000, func() {
		if !g.step(1024) {
			t.Fatal("frame not delivered")
		}
	})
	if allocs != 0 {
		t.Fatalf("%.2f allocations per forwarded frame, want 0", allocs)
	}
	if n := g.ma.room.log.n; n != 0 {
		t.Fatalf("%d entries still buffered after every frame was acknowledged", n)
	}
}

// TestForwardKeepsTheBuffer: the room keeps the very buffer it was given (no copy), and delivers its bytes.
func TestForwardKeepsTheBuffer(t *testing.T) {
	g := newForwardRig(t)
	p := ws.PayloadOf([]byte("the frame"))
	if g.ma.Forward(g.a, p) != Forwarded {
		t.Fatal("frame refused")
	}
	r := g.ma.room
	r.mu.Lock()
	kept := r.log.at(r.log.head).data
	r.mu.Unlock()
	if kept != p {
		t.Fatal("the room copied the frame instead of keeping the reader's buffer")
	}
	if it, data := next(g.mb, g.b, 1); it.Kind != Frame || data != "the frame" || it.From != g.ma.ID() {
		t.Fatalf("b got %+v %q", it, data)
	}
}

// TestReleasedBuffersAreZeroed: a frame's bytes do not outlive it in the relay's buffers.
func TestReleasedBuffersAreZeroed(t *testing.T) {
	g := newForwardRig(t)
	r := g.ma.room
	secret := []byte("a frame nobody may find later")
	forwardBytes(g.ma, g.a, secret)
	r.mu.Lock()
	data := payloadBytes(r.log.at(r.log.head).data)
	r.mu.Unlock()
	g.table.Close("burned") // as a burn does
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

// BenchmarkForward measures the rooms' work per frame, without sockets: forward, deliver, acknowledge.
func BenchmarkForward(b *testing.B) {
	for _, size := range []int{64, 1024, 16 << 10} {
		b.Run(byteSize(size), func(b *testing.B) {
			g := newForwardRig(b)
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for b.Loop() {
				g.step(size)
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
