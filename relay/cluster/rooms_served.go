package cluster

// The sequencer's side of a member on another node: the served link its room sees as a connection.

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cleanrelay/cleanrelay/relay/internal/rooms"
	"github.com/cleanrelay/cleanrelay/relay/internal/ws"
	"github.com/cleanrelay/cleanrelay/relay/protocol"
)

// served is, on the sequencer, a member whose socket is on another node: the rooms.Conn it is attached to.
type served struct {
	// Static after construction.
	l    *roomLinks
	node string // the member's node
	inc  uint64 // its incarnation
	id   linkID
	sub  string // the member's node's room subject
	// Written once, with l.mu held, before run starts.
	m    *rooms.Member
	wake chan struct{}
	ops  chan servedOp
	out  outbox // numbers and keeps what goes to the member's node
	in   inbox  // checked by roomLinks.handle
	// stamped is the member's frames its proxy was told the mirror holds (opStamped).
	stamped atomic.Uint64
	// queued counts the proxy's requests handed to run and not yet applied. While it is 0, roomLinks.handle
	// applies a frame or an ack itself (applyNow), without the hand-off to run; only handle queues requests,
	// so they are still applied in the order they came.
	queued atomic.Int32
	done   chan struct{}
	once   sync.Once
}

// servedOp is a request of a served member's proxy.
type servedOp struct {
	op  byte
	p   *ws.Payload // opFwd
	n   uint64      // opFwd: the frame's number among the member's frames
	seq uint64      // opAck
	how rooms.LinkEnd
}

// Wake implements rooms.Conn.
func (sv *served) Wake() {
	select {
	case sv.wake <- struct{}{}:
	default:
	}
}

// Closed implements rooms.Conn: the room ended the membership; the proxy's node is told why (after what the
// link still holds unconfirmed).
func (sv *served) Closed(_ *rooms.Member, _ byte, reason string) {
	sv.stop()
	sv.out.send(sv.l, sv.sub, append(appendHeader(nil, opEnded, &sv.id), reason...))
	sv.l.ended(sv.id, false, &sv.out, sv.node, sv.inc)
}

func (sv *served) stop() {
	sv.once.Do(func() {
		close(sv.done)
		sv.l.forgetServed(sv.id)
	})
}

// run sends the member's entries to its node as they come and applies what its node sends, until the
// membership ends here or moves.
func (sv *served) run() {
	defer sv.l.n.wg.Done()
	sub := sv.sub
	sv.drain(sub)
	for {
		select {
		case <-sv.done:
			return
		case <-sv.l.n.done:
			return
		case <-sv.wake:
			sv.drain(sub)
		case o := <-sv.ops:
			sv.apply(&o, sub)
			sv.queued.Add(-1)
		}
	}
}

// applyNow applies a frame or an ack of the proxy at once, in the goroutine that received it, when no request
// queued for run comes before it and it needs no wait. It reports false for what run must apply: another
// request, or a frame its room finds crowded or over the memory budget (run waits, or refuses it). m is the
// served member (nil: not admitted yet).
func (sv *served) applyNow(m *rooms.Member, o *servedOp) bool {
	if m == nil || sv.queued.Load() != 0 {
		return false
	}
	switch o.op {
	case opAck:
		m.Ack(sv, o.seq)
		return true
	case opFwd:
		if o.n != 0 && o.n <= m.In(sv) {
			ws.PutPayload(o.p) // the room has it already (see apply)
			return true
		}
		if o.n != 0 {
			m.NumberFrom(sv, o.n)
		}
		switch m.Forward(sv, o.p) {
		case rooms.Forwarded:
			sv.tellStamped(sv.sub) // a room with no mirror holds it now
			return true
		case rooms.NotMember:
			ws.PutPayload(o.p)
			sv.l.dropped.Add(1)
			return true
		}
	}
	return false
}

// apply applies one request of the proxy.
func (sv *served) apply(o *servedOp, sub string) {
	t := sv.l.t
	switch o.op {
	case opFwd:
		// The frame's number is its proxy's: the frames before it were taken or refused (a refused one's kept
		// copy is dropped by its proxy, so a new sequencer after a takeover sees a gap in the numbers, and
		// counts the refused frames as taken).
		p := o.p
		if o.n != 0 && o.n <= sv.m.In(sv) {
			ws.PutPayload(p) // the room has it already: sent again to a new sequencer after a takeover
			return
		}
		if o.n != 0 {
			sv.m.NumberFrom(sv, o.n)
		}
		// While the room says Crowded (the member's own writer, this link, has not taken what it is owed, or
		// the room's mirror does not hold it yet), the frame waits, as a socket's reader does on one node, until
		// the link has sent it and its node confirmed it (an ack wakes the link, as does the room once its
		// mirror caught up), or the membership ends here.
		for {
			res := sv.m.Forward(sv, p)
			if res == rooms.Forwarded {
				if len(sv.ops) == 0 {
					sv.tellStamped(sub) // a room with no mirror holds it now
				}
				return
			}
			if res == rooms.OverMemory {
				// The member is told, as on one node (its frame was not forwarded: send it again later); the
				// frame counts among the member's frames, so the numbers of the next ones stay its proxy's.
				ws.PutPayload(p)
				if o.n != 0 {
					sv.m.NumberFrom(sv, o.n+1)
				}
				sv.out.send(sv.l, sub, appendItem(appendHeader(nil, opItems, &sv.id), &rooms.Item{Kind: rooms.Refused, Seq: o.n, Code: protocol.CodeOverMemory}, nil))
				return
			}
			if res != rooms.Crowded {
				ws.PutPayload(p)
				sv.l.dropped.Add(1) // NotMember: the membership ended here, and its node is told so
				return
			}
			sv.drain(sub)
			select {
			case <-sv.wake:
			case <-time.After(linkTick):
			case <-sv.done:
				ws.PutPayload(p)
				return
			case <-sv.l.n.done:
				ws.PutPayload(p)
				return
			}
		}
	case opAck:
		sv.m.Ack(sv, o.seq)
	case opEnd:
		switch o.how {
		case rooms.LinkLeave:
			t.Leave(sv, sv.m)
		case rooms.LinkBurn:
			t.Burn(sv, sv.m)
		default:
			t.Away(sv, []*rooms.Member{sv.m})
		}
		sv.stop()
		sv.out.stop(&sv.l.env)
	}
}

// drain sends what is pending for the member to its node, in batches, while the link's window has room (an
// ack that makes room wakes it): what does not fit stays in the room's log, within the log's bounds, as for a
// socket that does not keep up on one node.
func (sv *served) drain(sub string) {
	body := ws.GetBuf(sv.l.maxFrame)
	defer ws.PutBuf(body)
	var b []byte
	n := 0
	for {
		if b == nil && !sv.out.fits() {
			break
		}
		it := sv.m.Next(sv, 1, body.B)
		if it.Kind == rooms.None {
			break
		}
		if b == nil {
			b = appendHeader(make([]byte, 0, wireHeader+it.Len+64), opItems, &sv.id)
		}
		b = appendItem(b, &it, body.B[:it.Len])
		clear(body.B[:it.Len])
		if n++; n >= itemsBatch || len(b) >= itemsBatchBytes {
			sv.out.send(sv.l, sub, b)
			b, n = nil, 0
		}
	}
	if b != nil {
		sv.out.send(sv.l, sub, b)
	}
	sv.tellStamped(sub)
}

// tellStamped tells the proxy how many of its member's frames the room's mirror holds, if that grew. run and
// applyNow may both call it: the proxy takes the highest number it was told.
func (sv *served) tellStamped(sub string) {
	n := sv.m.Stamped(sv)
	for {
		old := sv.stamped.Load()
		if n <= old {
			return
		}
		if sv.stamped.CompareAndSwap(old, n) {
			sv.out.send(sv.l, sub, binary.AppendUvarint(appendHeader(make([]byte, 0, wireHeader+10), opStamped, &sv.id), n))
			return
		}
	}
}
