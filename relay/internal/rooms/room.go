package rooms

import (
	"container/list"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cleanrelay/cleanrelay/relay/internal/ws"
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

// eventNames are the events' names on the wire (docs/protocol.md §4).
var eventNames = [...]string{eventJoin: "join", eventAway: "away", eventBack: "back", eventLeave: "leave"}

// entry is one item of a room's log: a frame or a presence event, numbered by the room.
type entry struct {
	seq     uint64
	kind    entryKind
	event   presenceEvent // presence only
	timeout bool          // presence leave only: the grace ran out
	from    uint32        // frame: the sender; presence: the member concerned
	user    string        // presence join only, for rooms of logged-in users
	data    *ws.Payload   // frame only: the payload, owned by the log (the sender's reader made it)
}

// roomLog is a room's ordered log: a ring of the entries some member may still need, numbered tail..head.
type roomLog struct {
	ring  []entry
	start int    // ring index of the entry numbered tail
	n     int    // entries held
	tail  uint64 // seq of the oldest entry held; head+1 when empty
	head  uint64 // seq of the newest entry ever appended; 0 before the first
	bytes int    // bytes of the frame buffers held (their capacity, which the pool rounds up)

	held *atomic.Int64 // the relay's memory account (Budget.Held), which the log's buffers are counted in
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

// Room is one conversation: its members and its log. Membership changes take Table.mu then Room.mu;
// forwarding and delivery take Room.mu alone.
type Room struct {
	// Static after construction.
	table *Table
	max   int
	allow []string // logged-in users who may join; empty: anyone with the capability

	// Static until the room is dropped, which overwrites them (with Table.mu and mu held).
	id        RoomID
	capHash   [32]byte
	dialogCap Secret // a dialog's capability, which the relay hands to both users whenever they ask

	// Guarded by mu.
	mu         sync.Mutex
	log        roomLog
	members    []*Member
	nextMember uint32
	closed     bool
	yielded    bool // closed by Yield: the room goes on elsewhere
	lifeTimer  *time.Timer

	// Guarded by Table.mu: the room's place in the table's index of rooms with no member attached.
	idle     *list.Element
	idleList *list.List

	// A proxy room (remote.go) holds one local member of a room another node sequences. proxy is static;
	// link is set once the sequencer admitted the member (Table.mu and mu held); the rest is guarded by mu.
	proxy            bool
	link             Link
	queue            []proxyItem
	qbytes           int
	lostFrom, lostTo uint64 // entries dropped from a full queue, which the writer reports as lost

	// A room copied to a mirror on another node (mirror.go): mirror is static (nil: not copied, every entry
	// is visible at once); the rest is guarded by mu.
	mirror  Conn
	safe    uint64    // entries up to this seq are held by the mirror: only they are handed to members
	epoch   uint64    // how many takeovers the room went through
	expires time.Time // the end of the room's lifetime
}

// Member is one place in a room. It outlives a connection while it is away. A connection holds the members
// attached to it and calls their methods (Forward, Next, Ack), naming itself: a member no longer attached to
// that connection does nothing for it.
type Member struct {
	// Static after construction.
	id   uint32
	room *Room
	user string // the logged-in user, in a dialog room only

	// Guarded by Table.mu: overwritten when the member leaves or its room is dropped.
	tokenHash [32]byte // the SHA-256 of its resume token

	// Guarded by room.mu.
	conn      Conn   // nil while away
	ch        byte   // the channel on conn
	next      uint64 // the next seq to hand to conn's writer
	acked     uint64 // every entry up to this one is processed by the client (or is its own frame)
	in        uint64 // frames accepted from this member
	inSafe    uint64 // of those, the ones the mirror holds (mirror.go)
	relinking bool   // taken over from a mirror, its proxy not yet back: a resume is no presence (mirror.go)
	awayTimer *time.Timer
}

// ID is the member's id in its room, which the relay stamps on its frames.
func (m *Member) ID() uint32 { return m.id }

// memberIDsLocked lists the ids of the present members.
func (r *Room) memberIDsLocked() []uint32 {
	ids := make([]uint32, len(r.members))
	for i, m := range r.members {
		ids[i] = m.id
	}
	return ids
}

// attachedToLocked reports whether a member of r is attached to c.
func (r *Room) attachedToLocked(c Conn) bool {
	for _, m := range r.members {
		if m.conn == c {
			return true
		}
	}
	return false
}

// appendLocked adds e to the log, making room within the bounds first. The caller wakes the attached members
// once it has released the lock (wakeable).
func (r *Room) appendLocked(e entry) {
	cfg := &r.table.cfg
	size := 0
	if e.data != nil {
		size = e.data.Cap()
	}
	for r.log.n > 0 && (r.log.n >= cfg.RoomBuffer || r.log.bytes+size > cfg.RoomBufferBytes) {
		r.evictLocked()
	}
	if r.table.mem.OverNow() {
		r.shedLocked()
	}
	r.log.push(e, cfg.RoomBuffer)
}

// evictLocked drops the oldest entry to make room. A connected member that had not yet been sent it has fallen
// a whole buffer behind: its writer sends it lost for the gap and goes on (protocol §5). Each such missed
// delivery is counted; the member's connection is closed only if a write misses its deadline.
func (r *Room) evictLocked() {
	e := r.popLocked()
	for _, m := range r.members {
		if m.conn != nil && m.next <= e.seq {
			r.table.stats.Slow.Add(1)
		}
	}
	r.table.stats.Evicted.Add(1)
	ws.PutPayload(e.data)
}

// popLocked removes the oldest entry and returns it. A member whose next entry it was, and who sent it, never
// needed it: its position moves past it, so that its writer does not take the gap for a loss.
func (r *Room) popLocked() entry {
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

// Ack records that m, attached to c, processed every entry up to seq, and releases what no member needs any
// more. It does nothing if m is no longer attached to c.
func (m *Member) Ack(c Conn, seq uint64) {
	r := m.room
	if r.proxy {
		m.ackProxy(c, seq)
		return
	}
	r.mu.Lock()
	was := m.acked
	if m.conn == c {
		r.ackLocked(m, seq)
	}
	moved := m.acked != was && r.mirror != nil
	r.mu.Unlock()
	if moved {
		r.mirror.Wake() // the mirror trims too
	}
}

// ackLocked records that m processed every entry up to seq, and releases what no member needs any more.
func (r *Room) ackLocked(m *Member, seq uint64) {
	if seq > r.log.head {
		seq = r.log.head
	}
	if seq > m.acked {
		m.acked = seq
	}
	r.trimLocked()
}

// trimLocked releases the oldest entries while every member has acknowledged them or sent them itself.
func (r *Room) trimLocked() {
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
func (r *Room) crowdsOutLocked(m *Member, size int) bool {
	cfg := &r.table.cfg
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
func (r *Room) presenceLocked(m *Member, ev presenceEvent, timeout bool, n *notes) {
	e := entry{kind: entryPresence, event: ev, from: m.id, timeout: timeout}
	if ev == eventJoin {
		e.user = m.user
	}
	r.appendLocked(e)
	for _, x := range r.members {
		if x.conn != nil {
			n.wake = append(n.wake, x.conn)
		}
	}
	if r.mirror != nil {
		n.wake = append(n.wake, r.mirror)
	}
	r.trimLocked()
}

// wakeInline bounds the connections a forwarded frame wakes without allocating (a room of up to 9 members).
const wakeInline = 8

// Forward appends data, a frame m sent on c, to m's room and wakes the other attached members. If it returns
// Forwarded, the room owns data from then on; otherwise data stays the caller's.
//
// A member's own frames never push out of the log entries its own writer has not yet sent it (protocol §5):
// Forward then returns Crowded, and the caller tries again once that writer has had a moment to catch up,
// which slows the reading of this connection only. The writer catches up, or misses its write deadline and
// the connection is killed.
func (m *Member) Forward(c Conn, data *ws.Payload) ForwardResult {
	r := m.room
	if r.proxy {
		return m.forwardProxy(c, data)
	}
	var wake [wakeInline]Conn
	var more []Conn
	k := 0
	r.mu.Lock()
	if r.closed || m.conn != c {
		r.mu.Unlock()
		return NotMember
	}
	if r.table.mem.OverNow() && r.unsentBytesLocked() >= r.table.cfg.RoomBufferBytes/4 {
		r.mu.Unlock()
		return OverMemory
	}
	if r.crowdsOutLocked(m, data.Cap()) {
		r.mu.Unlock()
		return Crowded
	}
	m.in++
	r.appendLocked(entry{kind: entryFrame, from: m.id, data: data})
	if r.mirror != nil {
		wake[0], k = r.mirror, 1 // members are woken once the mirror holds it
	}
	for _, x := range r.members {
		if x.conn == nil || x == m || r.mirror != nil {
			continue
		}
		if k < len(wake) {
			wake[k], k = x.conn, k+1
		} else {
			more = append(more, x.conn)
		}
	}
	r.trimLocked()
	r.mu.Unlock()
	for _, c := range wake[:k] {
		c.Wake()
	}
	for _, c := range more {
		c.Wake()
	}
	return Forwarded
}

// ForwardResult is what became of a frame (Member.Forward).
type ForwardResult int

const (
	Forwarded  ForwardResult = iota
	NotMember                // m is no longer attached to c: the room was burned, or m resumed elsewhere
	OverMemory               // refused: the relay is over its memory budget and the room holds much unsent
	Crowded                  // not yet: the frame would push out an entry c's own writer has not sent
)

// shedLocked releases, while the relay is over its memory budget, the oldest entries that every attached
// member has been sent (or sent itself): only a member's resume would need them, and it is told lost.
func (r *Room) shedLocked() {
	for r.log.n > 0 {
		e := r.log.at(r.log.tail)
		for _, m := range r.members {
			if m.conn != nil && m.next <= e.seq && !(e.kind == entryFrame && e.from == m.id) {
				return
			}
		}
		r.table.mem.Shed.Add(1)
		ws.PutPayload(r.popLocked().data)
	}
}

// unsentBytesLocked returns the most bytes of frames the log holds that one attached member has not yet been
// sent (its own frames, which it is never sent, aside).
func (r *Room) unsentBytesLocked() int {
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

// ItemKind says what Member.Next handed out.
type ItemKind uint8

const (
	None     ItemKind = iota // nothing pending for that connection and channel
	Frame                    // a frame, copied into the caller's buffer
	Presence                 // a presence event
	Lost                     // entries the member had not been sent were pushed out of the log
	Refused                  // a proxy room's: the sequencer refused a frame the member sent (Code; remote.go)
)

// Item is one thing for a writer to send, for the connection to format (docs/protocol.md §3–5).
type Item struct {
	Kind    ItemKind
	Seq     uint64 // Frame, Presence: the entry's sequence number
	From    uint32 // Frame: the sender; Presence: the member concerned
	Len     int    // Frame: the bytes copied
	Event   string // Presence: join, away, back or leave
	Timeout bool   // Presence leave: the member's grace ran out
	User    string // Presence join, in a dialog room: the member's user
	// Lost: the sequence numbers of the entries the member will not get.
	LostFrom, LostTo uint64
	// Refused: the error code (protocol.CodeOverMemory).
	Code string
}

// Pending reports whether Next may have something for c's writer on channel ch, without moving m: false means
// Next would return None. (True may still end in None: the entries left may be m's own frames.)
func (m *Member) Pending(c Conn, ch byte) bool {
	r := m.room
	r.mu.Lock()
	defer r.mu.Unlock()
	return !r.closed && m.conn == c && m.ch == ch && m.next <= r.visibleLocked() // also when m.next < r.log.tail (Lost)
}

// Next returns what c's writer should send next for m on channel ch, and moves m past it. A frame's bytes are
// copied into body, which has room for the largest frame. It returns None when m has nothing pending there, or
// is no longer attached to c on ch.
func (m *Member) Next(c Conn, ch byte, body []byte) Item {
	r := m.room
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proxy {
		return m.nextProxyLocked(c, ch, body)
	}
	for {
		if r.closed || m.conn != c || m.ch != ch {
			return Item{}
		}
		if m.next < r.log.tail {
			from, to := m.next, r.log.tail-1
			m.next = r.log.tail
			r.table.stats.Lost.Add(1)
			return Item{Kind: Lost, LostFrom: from, LostTo: to}
		}
		if m.next > r.visibleLocked() {
			return Item{}
		}
		e := r.log.at(m.next)
		m.next++
		switch e.kind {
		case entryFrame:
			if e.from == m.id {
				continue
			}
			if len(body) < e.data.Len() {
				return Item{} // cannot happen: the writer sizes body for the largest frame
			}
			return Item{Kind: Frame, Seq: e.seq, From: e.from, Len: e.data.CopyTo(body, 0)}
		case entryPresence:
			return Item{Kind: Presence, Seq: e.seq, From: e.from, Event: eventNames[e.event], Timeout: e.timeout, User: e.user}
		}
	}
}
