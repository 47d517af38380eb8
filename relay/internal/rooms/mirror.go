package rooms

import (
	"time"

	"github.com/cleanrelay/cleanrelay/relay/internal/ws"
)

// How a room outlives the node that sequences it (a cluster, docs/cluster.md §2 "Mirror" and "Takeover").
// The table hands every room it makes to its Mirrors, which copies the room to another node (its mirror):
// the room wakes the mirror's Conn when it has something new, the mirror takes it with Room.CopyFrom and,
// once the other node holds it, calls Room.Mirrored. Until then no member is handed the new entries, so
// whatever a member was given is on two nodes. When the sequencer dies, the mirror's node makes the room
// again from its copy (Table.Adopt) and sequences it from there on.

// Mirrors copies the rooms a table makes to another node (package cluster implements it).
type Mirrors interface {
	// Track is called, with the table's lock held, for each room made or adopted here; it must not block or
	// call into the table or the room. It returns the Conn the room wakes when there is something to copy.
	Track(r *Room) Conn
}

// SetMirrors makes the table copy every room it makes from now on with m. Call it before serving.
func (h *Table) SetMirrors(m Mirrors) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.mirrors = m
}

// Hold counts n bytes (negative: released) held for the rooms outside the table (a mirror's copies) in the
// relay's memory budget.
func (h *Table) Hold(n int64) { h.mem.Held.Add(n) }

// OverBudget reports whether the relay holds more than its memory budget.
func (h *Table) OverBudget() bool { return h.mem.Over() }

// Bounds are the room buffer's limits: entries and bytes.
func (h *Table) Bounds() (entries, bytes int) { return h.cfg.RoomBuffer, h.cfg.RoomBufferBytes }

// EpochOf returns the epoch of room id if this table sequences it.
func (h *Table) EpochOf(id *RoomID) (uint64, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.rooms.get(id)
	if r == nil {
		return 0, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.epoch, true
}

// Copy is what a mirror holds of a room: enough to sequence it from where its copy ends.
type Copy struct {
	Room       RoomID
	CapHash    [32]byte
	DialogCap  Secret
	Allow      []string
	Max        int
	NextMember uint32
	Epoch      uint64
	Expires    time.Time
	Tail, Head uint64 // the log holds entries Tail..Head (Tail = Head+1: none)
	Members    []MemberCopy
	Entries    []EntryCopy // CopyFrom: the entries after its from, up to Head
}

// MemberCopy is one member in a Copy.
type MemberCopy struct {
	ID        uint32
	User      string
	TokenHash [32]byte
	Acked, In uint64
	Where     string // the node its connection is on; "": away
}

// EntryCopy is one entry of the log in a Copy.
type EntryCopy struct {
	Seq      uint64
	Presence bool
	Event    uint8 // presence: join, away, back, leave
	Timeout  bool
	From     uint32
	User     string
	Data     []byte // frame: its bytes
}

// CopyFrom fills c with the room as it is now and its entries after seq from (all the log holds when from
// is 0), up to about maxBytes of frames: more says that entries remain after c.Head. where names the node of a
// member's connection. closed says that the room is gone (its mirror may drop its copy).
func (r *Room) CopyFrom(from uint64, maxBytes int, where func(Conn) string, c *Copy) (more, closed bool) {
	// A member's token hash is written only with the table's lock and the room's held: the room's is enough
	// to read it.
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false, true
	}
	c.Room, c.CapHash, c.Allow, c.Max, c.NextMember, c.Epoch, c.Expires = r.id, r.capHash, r.allow, r.max, r.nextMember, r.epoch, r.expires
	c.DialogCap = r.dialogCap
	c.Tail, c.Head = r.log.tail, r.log.head
	c.Members = c.Members[:0]
	for _, m := range r.members {
		x := MemberCopy{ID: m.id, User: m.user, TokenHash: m.tokenHash, Acked: m.acked, In: m.in}
		if m.conn != nil {
			x.Where = where(m.conn)
		}
		c.Members = append(c.Members, x)
	}
	c.Entries = c.Entries[:0]
	bytes := 0
	for seq := max(from+1, r.log.tail); seq <= r.log.head; seq++ {
		if bytes >= maxBytes {
			c.Head = seq - 1
			return true, false
		}
		e := r.log.at(seq)
		x := EntryCopy{Seq: seq, Presence: e.kind == entryPresence, Event: uint8(e.event), Timeout: e.timeout, From: e.from, User: e.user}
		if e.data != nil {
			x.Data = make([]byte, e.data.Len())
			e.data.CopyTo(x.Data, 0)
			bytes += len(x.Data)
		}
		c.Entries = append(c.Entries, x)
	}
	return false, false
}

// Mirrored says that the mirror holds the room's entries up to head, and (when ins is not nil) the members'
// frames counted in ins (member id → In of its copy): members may be handed them now.
func (r *Room) Mirrored(head uint64, ins map[uint32]uint64) {
	var wake []Conn
	r.mu.Lock()
	if head > r.safe {
		r.safe = min(head, r.log.head)
	}
	for _, m := range r.members {
		if in, ok := ins[m.id]; ok && in > m.inSafe {
			m.inSafe = min(in, m.in)
		}
		if m.conn != nil {
			wake = append(wake, m.conn)
		}
	}
	r.mu.Unlock()
	for _, c := range wake {
		c.Wake()
	}
}

// Stamped returns how many of m's frames the room's mirror holds (all it accepted, for a room with no
// mirror), or 0 if m is not attached to c.
func (m *Member) Stamped(c Conn) uint64 {
	r := m.room
	r.mu.Lock()
	defer r.mu.Unlock()
	if m.conn != c {
		return 0
	}
	if r.mirror == nil {
		return m.in
	}
	return m.inSafe
}

// In returns how many frames the room accepted from m, or 0 if m is not attached to c.
func (m *Member) In(c Conn) uint64 {
	r := m.room
	r.mu.Lock()
	defer r.mu.Unlock()
	if m.conn != c {
		return 0
	}
	return m.in
}

// Adopt makes the room of a mirror's copy a room of this table, one epoch on: its log, members and tokens as
// the copy has them. Members whose connection was on node dead are away (the others are told, and they may
// resume on any node within the grace); members on other nodes wait, detached, for their proxy to come back
// (a resume that tells nobody), within the grace too. It reports false if the table holds that room already
// or is closed.
func (h *Table) Adopt(c *Copy, dead string) bool {
	var n notes
	defer n.deliver()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || h.rooms.get(&c.Room) != nil {
		return false
	}
	r := &Room{table: h, capHash: c.CapHash, max: c.Max, allow: c.Allow, id: c.Room, nextMember: c.NextMember,
		epoch: c.Epoch + 1, expires: c.Expires}
	r.dialogCap = c.DialogCap
	r.log.held = &h.mem.Held
	entries := c.Entries
	if len(entries) > h.cfg.RoomBuffer {
		entries = entries[len(entries)-h.cfg.RoomBuffer:]
	}
	start := c.Head + 1
	if len(entries) > 0 {
		start = entries[0].Seq
	}
	r.log.head, r.log.tail = start-1, start
	for _, x := range entries {
		if x.Seq != r.log.head+1 {
			break // the copy is contiguous; nothing after a hole is taken
		}
		e := entry{kind: entryFrame, from: x.From, event: presenceEvent(x.Event), timeout: x.Timeout, user: x.User}
		if x.Presence {
			e.kind = entryPresence
		} else {
			e.data = ws.PayloadOf(x.Data)
		}
		r.log.push(e, h.cfg.RoomBuffer)
	}
	if r.log.head < c.Head {
		r.log.head = c.Head
		if r.log.n == 0 {
			r.log.tail = r.log.head + 1
		}
	}
	r.safe = r.log.head
	r.mu.Lock()
	defer r.mu.Unlock()
	var away []*Member
	for _, x := range c.Members {
		m := &Member{id: x.ID, room: r, user: x.User, tokenHash: x.TokenHash, acked: x.Acked, in: x.In, inSafe: x.In,
			next: r.log.head + 1}
		r.members = append(r.members, m)
		h.tokens.put(&m.tokenHash, m)
		m.awayTimer = time.AfterFunc(h.cfg.Grace, func() { h.graceOver(m) })
		switch x.Where {
		case dead:
			away = append(away, m)
		case "":
		default:
			m.relinking = true
		}
	}
	life := max(time.Until(c.Expires), time.Millisecond)
	r.lifeTimer = time.AfterFunc(life, func() { h.expire(r) })
	if h.mirrors != nil {
		r.mirror = h.mirrors.Track(r)
	}
	h.rooms.put(&r.id, r)
	h.stats.Rooms.Add(1)
	for _, m := range away {
		r.presenceLocked(m, eventAway, false, &n)
	}
	h.reindexLocked(r)
	return true
}

// visibleLocked is the last seq members may be handed: the room's head, or with a mirror the last entry it
// holds. r.mu is held.
func (r *Room) visibleLocked() uint64 {
	if r.mirror == nil {
		return r.log.head
	}
	return r.safe
}

// Unadopt drops room id, taken over here (epoch one above epoch), if no member has come to it yet: its
// sequencer was only slow to be heard, and still sequences it. It reports whether it dropped it.
func (h *Table) Unadopt(id *RoomID, epoch uint64) bool {
	var n notes
	defer n.deliver()
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.rooms.get(id)
	if r == nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.epoch != epoch+1 || r.attachedLocked() {
		return false
	}
	for _, m := range r.members {
		if m.awayTimer != nil {
			m.awayTimer.Stop()
			m.awayTimer = nil
		}
	}
	h.dropRoomLocked(r, "", &n)
	return true
}

// NumberFrom says that the frame m sends next on c is its nth (a served member's proxy numbers them): frames
// before it that the room refused count as taken, so In stays the proxy's count, which a new sequencer after
// a takeover compares the proxy's kept frames with.
func (m *Member) NumberFrom(c Conn, n uint64) {
	r := m.room
	r.mu.Lock()
	defer r.mu.Unlock()
	if m.conn == c && n > 0 && n-1 > m.in {
		m.in = n - 1
	}
}

// ReasonResume is the reason a Conn is told when its membership ends on this node although the room goes on
// elsewhere (Table.Yield: a sequencer fenced off from its cluster, or a proxy whose room it cannot reach): it
// is no closed reason of the protocol; the connection ends so that its client resumes, with the same token,
// wherever the room is sequenced now.
const ReasonResume = "resume"

// WakeOlder wakes the mirror of room id if this table sequences it at an epoch below epoch (another node took
// it over, one epoch on): its next copy request learns whether the room is given back or ends here.
func (h *Table) WakeOlder(id *RoomID, epoch uint64) {
	h.mu.Lock()
	r := h.rooms.get(id)
	h.mu.Unlock()
	if r == nil {
		return
	}
	r.mu.Lock()
	mirror := r.mirror
	if r.epoch >= epoch {
		mirror = nil
	}
	r.mu.Unlock()
	if mirror != nil {
		mirror.Wake()
	}
}

// Yield stops sequencing r here because another node sequences it now (its mirror took it over while this
// node was cut off from the cluster): the room is dropped here without ending it, its attached members told
// ReasonResume. It reports false if r was gone already.
func (h *Table) Yield(r *Room) bool {
	var n notes
	defer n.deliver()
	h.mu.Lock()
	defer h.mu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.proxy || h.rooms.get(&r.id) != r {
		return false
	}
	r.yielded = true
	h.dropRoomLocked(r, ReasonResume, &n)
	return true
}

// Yielded reports whether r was dropped by Yield: it goes on at another node, and its mirror's copy must not
// be dropped.
func (r *Room) Yielded() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.yielded
}
