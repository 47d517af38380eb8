package rooms

import (
	"slices"
	"sync"
	"testing"

	"github.com/cleanrelay/cleanrelay/relay/internal/ws"
	"github.com/cleanrelay/cleanrelay/relay/protocol"
)

// fakeRemote admits every join and resume (unless refuse is set) as member 2 of a room of two, and records
// what its links are sent.
type fakeRemote struct {
	refuse *Error

	mu      sync.Mutex
	proxies []Proxy
	sent    []string // "fwd <bytes>", "ack <seq>", "end <how>"
}

func (f *fakeRemote) admit(p Proxy, j *Joined) (Link, *Error) {
	if f.refuse != nil {
		return nil, f.refuse
	}
	f.mu.Lock()
	f.proxies = append(f.proxies, p)
	f.mu.Unlock()
	j.ID, j.Seq, j.Max, j.Members = 2, 1, 2, []uint32{1, 2}
	j.Token.Fill()
	return &fakeLink{f}, nil
}

func (f *fakeRemote) Join(_ *RoomID, _ *Secret, _ string, p Proxy, j *Joined) (Link, *Error) {
	return f.admit(p, j)
}

func (f *fakeRemote) Resume(_ *[32]byte, _ string, _ uint64, p Proxy, j *Joined) (Link, *Error) {
	return f.admit(p, j)
}

func (f *fakeRemote) record(s string) {
	f.mu.Lock()
	f.sent = append(f.sent, s)
	f.mu.Unlock()
}

func (f *fakeRemote) calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.sent)
}

type fakeLink struct{ f *fakeRemote }

func (l *fakeLink) Forward(data *ws.Payload) bool {
	b := make([]byte, data.Len())
	data.CopyTo(b, 0)
	l.f.record("fwd " + string(b))
	return true
}
func (l *fakeLink) Ack(seq uint64)  { l.f.record("ack " + string(rune('0'+seq))) }
func (l *fakeLink) End(how LinkEnd) { l.f.record("end " + string(rune('0'+how))) }

// proxyJoin joins, on a table with a fake remote, a room the table does not hold.
func proxyJoin(t *testing.T, cfg Config) (*Table, *fakeRemote, *fakeConn, *Member) {
	t.Helper()
	tb := newTable(t, cfg, 0)
	r := &fakeRemote{}
	tb.SetRemote(r)
	c := newFakeConn(t, tb)
	var id RoomID
	var capability Secret
	j := new(Joined)
	if err := tb.Join(Seat{Conn: c, Ch: 3}, &id, &capability, j); err != nil {
		t.Fatalf("join of a room on another node: %v", err)
	}
	if j.ID != 2 || j.Member == nil || tb.stats.Proxied.Load() != 1 || tb.RoomsHere() != 0 {
		t.Fatalf("joined member %d, proxied %d, rooms here %d", j.ID, tb.stats.Proxied.Load(), tb.RoomsHere())
	}
	return tb, r, c, j.Member
}

// TestProxyDelivers: the sequencer's entries reach the member in order, its frames and acks go to the
// sequencer, and leaving hands the membership back and holds nothing.
func TestProxyDelivers(t *testing.T) {
	tb, r, c, m := proxyJoin(t, Config{})
	p := r.proxies[0]
	p.Deliver(Item{Kind: Presence, Seq: 2, From: 1, Event: "back"}, nil)
	p.Deliver(Item{Kind: Frame, Seq: 3, From: 1}, []byte("hello"))
	if c.woken() != 2 {
		t.Fatal("the connection was not woken for each entry")
	}
	var id RoomID
	var capability Secret
	if err := tb.Join(Seat{Conn: c, Ch: 4}, &id, &capability, new(Joined)); err == nil || err.Code != protocol.CodeAlreadyIn {
		t.Fatalf("a second join of the same room on one connection: %v", err)
	}
	if it, body := next(m, c, 3); it.Kind != Presence || it.Seq != 2 || it.Event != "back" {
		t.Fatalf("first item %+v %q", it, body)
	}
	if it, body := next(m, c, 3); it.Kind != Frame || it.Seq != 3 || it.From != 1 || body != "hello" {
		t.Fatalf("second item %+v %q", it, body)
	}
	if it, _ := next(m, c, 4); it.Kind != None {
		t.Fatal("an item on another channel")
	}
	if res := m.Forward(c, ws.PayloadOf([]byte("hi"))); res != Forwarded {
		t.Fatalf("forward: %v", res)
	}
	m.Ack(c, 3)
	if !tb.Leave(c, m) {
		t.Fatal("leave refused")
	}
	if got, want := r.calls(), []string{"fwd hi", "ack 3", "end 0"}; !slices.Equal(got, want) {
		t.Fatalf("the link was sent %q, want %q", got, want)
	}
	p.Deliver(Item{Kind: Frame, Seq: 4, From: 1}, []byte("late"))
	if tb.stats.Proxied.Load() != 0 || tb.mem.Held.Load() != 0 || m.Forward(c, ws.PayloadOf([]byte("x"))) != NotMember {
		t.Fatalf("after leaving: proxied %d, held %d", tb.stats.Proxied.Load(), tb.mem.Held.Load())
	}
}

// TestProxyBounded: a proxy holds at most the room buffer for a writer that does not keep up; what it drops
// is reported lost, as a full log does on one node.
func TestProxyBounded(t *testing.T) {
	tb, r, c, m := proxyJoin(t, Config{RoomBuffer: 4})
	p := r.proxies[0]
	for seq := uint64(3); seq <= 12; seq++ {
		p.Deliver(Item{Kind: Frame, Seq: seq, From: 1}, []byte{byte(seq)})
	}
	items := drain(m, c, 3)
	if len(items) != 5 || items[0].Kind != Lost || items[0].LostFrom != 3 || items[0].LostTo != 8 || items[1].Seq != 9 || items[4].Seq != 12 {
		t.Fatalf("items %+v, want lost 3..8 then frames 9..12", items)
	}
	if tb.mem.Held.Load() != 0 {
		t.Fatalf("%d bytes held once everything was sent", tb.mem.Held.Load())
	}
}

// TestProxyRefused: a frame the sequencer refused reaches the writer, in its place among the entries, as the
// error one node would answer; pushed out of a full queue, it is dropped without a lost range of its own.
func TestProxyRefused(t *testing.T) {
	_, r, c, m := proxyJoin(t, Config{RoomBuffer: 4})
	p := r.proxies[0]
	p.Deliver(Item{Kind: Frame, Seq: 3, From: 1}, []byte{3})
	p.Deliver(Item{Kind: Refused, Code: protocol.CodeOverMemory}, nil)
	p.Deliver(Item{Kind: Frame, Seq: 4, From: 1}, []byte{4})
	items := drain(m, c, 3)
	if len(items) != 3 || items[1].Kind != Refused || items[0].Seq != 3 || items[2].Seq != 4 {
		t.Fatalf("items %+v, want frame 3, the refusal, frame 4", items)
	}
	if e := RefusedError(&items[1]); e.Code != protocol.CodeOverMemory || e.Msg != overMemoryMsg {
		t.Fatalf("the refusal reads %v", e)
	}
	p.Deliver(Item{Kind: Refused, Code: protocol.CodeOverMemory}, nil)
	for seq := uint64(5); seq <= 8; seq++ {
		p.Deliver(Item{Kind: Frame, Seq: seq, From: 1}, []byte{byte(seq)})
	}
	if items := drain(m, c, 3); len(items) != 4 || items[0].Kind != Frame || items[0].Seq != 5 {
		t.Fatalf("items %+v, want frames 5..8 (the refusal pushed out, no lost)", items)
	}
}

// TestProxyEnds: the sequencer's end reaches the connection; a relay that closes hands its proxies back as
// away; a refused join leaves nothing behind.
func TestProxyEnds(t *testing.T) {
	tb, r, c, m := proxyJoin(t, Config{})
	r.proxies[0].Ended(protocol.ReasonBurned)
	if cl := c.closes(); len(cl) != 1 || cl[0].m != m || cl[0].ch != 3 || cl[0].reason != protocol.ReasonBurned {
		t.Fatalf("closes %+v", cl)
	}
	if tb.stats.Proxied.Load() != 0 || tb.Leave(c, m) {
		t.Fatal("the membership outlived the sequencer's end")
	}

	tb, r, c, _ = proxyJoin(t, Config{})
	tb.Close(protocol.ReasonShutdown)
	if cl := c.closes(); len(cl) != 1 || cl[0].reason != protocol.ReasonShutdown {
		t.Fatalf("closes %+v", cl)
	}
	if got := r.calls(); !slices.Equal(got, []string{"end 2"}) {
		t.Fatalf("the link was sent %q, want away", got)
	}

	tb, r, c, _ = proxyJoin(t, Config{})
	r.refuse = Errorf(protocol.CodeDenied, "no")
	id := RoomID{1}
	var capability Secret
	if err := tb.Join(Seat{Conn: c, Ch: 4}, &id, &capability, new(Joined)); err == nil || err.Code != protocol.CodeDenied {
		t.Fatalf("a refused join: %v", err)
	}
	if tb.stats.Proxied.Load() != 1 || tb.stats.RefusedJoins.Load() != 1 {
		t.Fatalf("proxied %d, refused joins %d", tb.stats.Proxied.Load(), tb.stats.RefusedJoins.Load())
	}
}
