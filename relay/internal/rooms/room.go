package rooms

import (
	"container/list"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cleanrelay/cleanrelay/relay/internal/ws"
	"github.com/cleanrelay/cleanrelay/relay/protocol"
)

type entryKind uint8

const (
	entryFrame entryKind = iota
	entryPresence
)

type presenceEvent uint8

const (
	eventJoin presenceEvent = iota
	eventAway
	eventBack
	eventLeave
)

var eventNames = [...]string{eventJoin: "join", eventAway: "away", eventBack: "back", eventLeave: "leave"}

// entry is one item of a room's log: a frame or a presence event, numbered by the room.
type entry struct {
	seq     uint64
	kind    entryKind
	event   presenceEvent // presence only
	timeout bool          // presence leave only: the grace ran out
	from    uint32        // frame: the sender; presence: the member concerned
	user    string        // presence join only, for rooms of logged-in users
	data    *ws.Payload   // frame only: the payload, owned by the log
}

// roomLog is a room's ordered log: a ring of the entries some member may still need, numbered tail..head.
type roomLog struct {
	ring  []entry
	start int    // ring index of the entry numbered tail
	n     int    // entries held
	tail  uint64 // seq of the oldest entry held; head+1 when empty
	head  uint64 // seq of the newest entry ever appended; 0 before the first
	bytes int    // bytes of the frame buffers held (their capacity, which the pool rounds up)

	held *atomic.Int64 // the relay's memory account (budget.held), which the log's buffers are counted in
}

// entrySize is what one slot of the ring costs.
const entrySize = int64(unsafe.Sizeof(entry{}))

func (l *roomLog) push(e entry, limit int) {
	if l.n == len(l.ring) {
		size := max(8, 2*len(l.ring))
		size = min(size, limit)
		grown := make([]entry, size)
		for i := range l.n {
			grown[i] = l.ring[(l.start+i)%len(l.ring)]
		}
		l.held.Add(int64(size-len(l.ring)) * entrySize)
		l.ring, l.start = grown, 0
	}
	l.head++
	e.seq = l.head
	if l.n == 0 {
		l.tail = l.head
	}
	l.ring[(l.start+l.n)%len(l.ring)] = e
	l.n++
	if e.data != nil {
		l.bytes += e.data.Cap()
		l.held.Add(int64(e.data.Cap()))
	}
}

// at returns the entry numbered seq, which must be held (tail <= seq <= head).
func (l *roomLog) at(seq uint64) *entry {
	return &l.ring[(l.start+int(seq-l.tail))%len(l.ring)]
}

// popFront removes the oldest entry and returns it; the caller owns its buffer.
func (l *roomLog) popFront() entry {
	e := l.ring[l.start]
	l.ring[l.start] = entry{}
	l.start = (l.start + 1) % len(l.ring)
	l.n--
	l.tail++
	if e.data != nil {
		l.bytes -= e.data.Cap()
		l.held.Add(-int64(e.data.Cap()))
	}
	return e
}

// wipe zeroes and releases every buffered frame.
func (l *roomLog) wipe() {
	for l.n > 0 {
		e := l.popFront()
		ws.PutPayload(e.data)
	}
	l.held.Add(-int64(len(l.ring)) * entrySize)
	l.ring = nil
}

// room is one conversation: its members and its log. Membership changes take hub.mu then room.mu; forwarding
// and delivery take room.mu alone.
type room struct {
	// Static after construction.
	hub   *hub
	max   int
	allow []string // logged-in users who may join; empty: anyone with the capability

	// Static until the room is dropped, which overwrites them (with hub.mu and mu held).
	id        roomID
	capHash   [32]byte
	dialogCap secret // a dialog's capability, which the relay hands to both users whenever they ask

	// Guarded by mu.
	mu         sync.Mutex
	log        roomLog
	members    []*member
	nextMember uint32
	closed     bool
	lifeTimer  *time.Timer

	// Guarded by hub.mu: the room's place in the hub's index of rooms with no member attached.
	idle     *list.Element
	idleList *list.List
}

// member is one place in a room. It outlives a connection while it is away.
type member struct {
	// Static after construction.
	id   uint32
	room *room
	user string // the logged-in user, in a dialog room only

	// Guarded by hub.mu: overwritten when the member leaves or its room is dropped.
	tokenHash [32]byte // the SHA-256 of its resume token

	// Guarded by room.mu.
	conn      *conn  // nil while away
	ch        byte   // the channel on conn
	next      uint64 // the next seq to hand to conn's writer
	acked     uint64 // every entry up to this one is processed by the client (or is its own frame)
	in        uint64 // frames accepted from this member
	awayTimer *time.Timer
}

// memberIDsLocked lists the ids of the present members.
func (r *room) memberIDsLocked() []uint32 {
	ids := make([]uint32, len(r.members))
	for i, m := range r.members {
		ids[i] = m.id
	}
	return ids
}

// appendLocked adds e to the log, making room within the bounds first, and wakes every attached member.
func (r *room) appendLocked(e entry) {
	cfg := &r.hub.cfg
	size := 0
	if e.data != nil {
		size = e.data.Cap()
	}
	for r.log.n > 0 && (r.log.n >= cfg.RoomBuffer || r.log.bytes+size > cfg.RoomBufferBytes) {
		r.evictLocked()
	}
	if r.hub.mem.over() {
		r.shedLocked()
	}
	r.log.push(e, cfg.RoomBuffer)
	for _, m := range r.members {
		// A sender's own writer has nothing to do for its own frame.
		if m.conn != nil && !(e.kind == entryFrame && e.from == m.id) {
			m.conn.wakeUp()
		}
	}
}

// evictLocked drops the oldest entry to make room. A connected member that had not yet been sent it has fallen
// a whole buffer behind: its writer sends it lost for the gap and goes on (protocol §5). Each such missed
// delivery is counted; the member's connection is closed only if a write misses its deadline.
func (r *room) evictLocked() {
	e := r.popLocked()
	for _, m := range r.members {
		if m.conn != nil && m.next <= e.seq {
			r.hub.stats.drop(dropSlow)
		}
	}
	r.hub.stats.drop(dropEvicted)
	ws.PutPayload(e.data)
}

// popLocked removes the oldest entry and returns it. A member whose next entry it was, and who sent it, never
// needed it: its position moves past it, so that its writer does not take the gap for a loss.
func (r *room) popLocked() entry {
	e := r.log.popFront()
	if e.kind == entryFrame {
		for _, m := range r.members {
			if m.id == e.from && m.next == e.seq {
				m.next++
			}
		}
	}
	return e
}

// ackLocked records that m processed every entry up to seq, and releases what no member needs any more.
func (r *room) ackLocked(m *member, seq uint64) {
	if seq > r.log.head {
		seq = r.log.head
	}
	if seq > m.acked {
		m.acked = seq
	}
	r.trimLocked()
}

// trimLocked releases the oldest entries while every member has acknowledged them or sent them itself.
func (r *room) trimLocked() {
	for r.log.n > 0 {
		e := r.log.at(r.log.tail)
		for _, m := range r.members {
			// A member never receives its own frames, so it never acknowledges them: they count as processed
			// whatever it acknowledged last (which may lie before entries the buffer bound pushed out). acked
			// moves past them only where it is contiguous, so that a resume still reports what was pushed out.
			if e.kind == entryFrame && e.from == m.id {
				if m.acked == e.seq-1 {
					m.acked = e.seq
				}
				continue
			}
			if m.acked < e.seq {
				return
			}
		}
		ws.PutPayload(r.popLocked().data)
	}
}

// crowdsOutLocked reports whether appending size payload bytes would push out of the log an entry that m,
// which is attached, has not yet been sent: its writer is behind its own reader. Entries m sent itself do not
// count (it never receives them).
func (r *room) crowdsOutLocked(m *member, size int) bool {
	cfg := &r.hub.cfg
	n, bytes, next := r.log.n, r.log.bytes, m.next
	for seq := r.log.tail; n > 0 && (n >= cfg.RoomBuffer || bytes+size > cfg.RoomBufferBytes); seq++ {
		e := r.log.at(seq)
		if seq >= next {
			if e.kind != entryFrame || e.from != m.id || next != seq {
				return true
			}
			next++
		}
		n--
		if e.data != nil {
			bytes -= e.data.Cap()
		}
	}
	return false
}

// presenceLocked appends a presence event about m.
func (r *room) presenceLocked(m *member, ev presenceEvent, timeout bool) {
	e := entry{kind: entryPresence, event: ev, from: m.id, timeout: timeout}
	if ev == eventJoin {
		e.user = m.user
	}
	r.appendLocked(e)
	r.trimLocked()
}

// forward appends a frame sent by m on c, the bytes of msg from offset from on, or says why it did not
// (forwardResult). msg stays the caller's.
//
// A member's own frames never push out of the log entries its own writer has not yet sent it (protocol §5):
// the frame waits until that writer has caught up, which slows the reading of this connection only. The
// writer catches up, or misses its write deadline and the connection is killed.
func (r *room) forward(m *member, c *conn, msg *ws.Payload, from int) forwardResult {
	b := ws.GetPayload(msg.Len() - from)
	b.CopyFrom(msg, from)
	var wait *time.Timer
	for {
		r.mu.Lock()
		if r.closed || m.conn != c {
			r.mu.Unlock()
			ws.PutPayload(b)
			return forwardNotMember
		}
		if r.hub.mem.over() && r.unsentBytesLocked() >= r.hub.cfg.RoomBufferBytes/4 {
			r.mu.Unlock()
			ws.PutPayload(b)
			return forwardOverMemory
		}
		if !r.crowdsOutLocked(m, b.Cap()) {
			break
		}
		r.mu.Unlock()
		if wait == nil {
			r.hub.stats.ownWriterWaits.Add(1)
			wait = time.NewTimer(writerCatchUp)
			defer wait.Stop()
		} else {
			wait.Reset(writerCatchUp)
		}
		select {
		case <-wait.C:
		case <-c.done:
			ws.PutPayload(b)
			return forwardKilled
		}
	}
	defer r.mu.Unlock()
	m.in++
	r.appendLocked(entry{kind: entryFrame, from: m.id, data: b})
	r.trimLocked()
	return forwarded
}

// forwardResult is what became of a frame (forward).
type forwardResult int

const (
	forwarded         forwardResult = iota
	forwardNotMember                // m is no longer attached to c: the room was burned, or m resumed elsewhere
	forwardKilled                   // c was killed while the frame waited for c's writer
	forwardOverMemory               // refused: the relay is over its memory budget and the room holds much unsent
)

// shedLocked releases, while the relay is over its memory budget, the oldest entries that every attached
// member has been sent (or sent itself): only a member's resume would need them, and it is told lost.
func (r *room) shedLocked() {
	for r.log.n > 0 {
		e := r.log.at(r.log.tail)
		for _, m := range r.members {
			if m.conn != nil && m.next <= e.seq && !(e.kind == entryFrame && e.from == m.id) {
				return
			}
		}
		r.hub.mem.shed.Add(1)
		ws.PutPayload(r.popLocked().data)
	}
}

// unsentBytesLocked returns the most bytes of frames the log holds that one attached member has not yet been
// sent (its own frames, which it is never sent, aside).
func (r *room) unsentBytesLocked() int {
	most := 0
	for _, m := range r.members {
		if m.conn == nil {
			continue
		}
		n := 0
		for seq := max(m.next, r.log.tail); seq <= r.log.head; seq++ {
			if e := r.log.at(seq); e.data != nil && e.from != m.id {
				n += e.data.Cap()
			}
		}
		most = max(most, n)
	}
	return most
}

// writerCatchUp is how often a frame that waits for its sender's own writer (forward) looks again.
const writerCatchUp = time.Millisecond

// nextForLocked returns what c's writer should write next for m, formatted at the start of out (a buffer the
// writer owns, with room for a deliverHeaderLen header and the largest frame), or nil when m has nothing
// pending on c. binary says whether it is a frame (else a text notice).
func (r *room) nextForLocked(m *member, c *conn, ch byte, out []byte) (msg []byte, binary bool) {
	for {
		if r.closed || m.conn != c || m.ch != ch {
			return nil, false
		}
		if m.next < r.log.tail {
			from, to := m.next, r.log.tail-1
			m.next = r.log.tail
			r.hub.stats.lost.Add(1)
			return newObj(out[:0], "lost").num("ch", uint64(ch)).num("from", from).num("to", to).done(), false
		}
		if m.next > r.log.head {
			return nil, false
		}
		e := r.log.at(m.next)
		m.next++
		switch e.kind {
		case entryFrame:
			if e.from == m.id {
				continue
			}
			n := deliverHeaderLen + e.data.Len()
			if cap(out) < n {
				return nil, false // cannot happen: the writer sizes out for MaxFrame
			}
			msg = out[:n]
			protocol.PutDeliverHeader(msg, ch, e.seq, e.from)
			e.data.CopyTo(msg[deliverHeaderLen:], 0)
			return msg, true
		case entryPresence:
			o := newObj(out[:0], "presence").num("ch", uint64(ch)).num("seq", e.seq).num("member", uint64(e.from)).
				str("event", eventNames[e.event])
			if e.timeout {
				o = o.str("reason", "timeout")
			}
			if e.user != "" {
				o = o.strEsc("user", e.user)
			}
			return o.done(), false
		}
	}
}
