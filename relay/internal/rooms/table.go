// Package rooms keeps the relay's rooms in memory — members, ordered logs, acknowledgements, reconnect grace
// and lifetimes — driven by connections and reaching them only through the Conn interface.
package rooms

import (
	"crypto/rand"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/cleanrelay/cleanrelay/relay/protocol"
)

// Config holds the limits of the rooms; package relay fills it from its own Config, which documents each.
type Config struct {
	DefaultMembers, MaxMembers  int
	MaxRooms                    int
	RoomBuffer, RoomBufferBytes int
	Grace, OrphanGrace          time.Duration
	MaxRoomLifetime             time.Duration
}

// Table holds every room and every resume token. Its lock orders before any room's. Calls go one way: a
// connection calls the table and its rooms; they call a connection (Conn) only after releasing their locks.
type Table struct {
	// Static after construction.
	cfg   Config
	stats *Stats
	log   *slog.Logger
	mem   *Budget

	mu sync.Mutex
	// Guarded by mu.
	rooms     wipedTable[RoomID, Room]
	tokens    wipedTable[[32]byte, Member] // by the SHA-256 of the resume token
	idle      idleRooms
	lastSweep time.Time // the last shedAllLocked
	closed    bool
	remote    Remote             // rooms on other nodes (remote.go); nil: none
	proxies   map[*Room]struct{} // the proxy rooms (remote.go)
	mirrors   Mirrors            // copies the rooms made here to another node (mirror.go); nil: none
}

// New returns an empty table with cfg's limits that counts in stats and mem.
func New(cfg Config, stats *Stats, mem *Budget, log *slog.Logger) *Table {
	return &Table{cfg: cfg, stats: stats, log: log, mem: mem}
}

// Joined is what a connection tells its client about a membership it took (Create, Join, Resume). It holds
// copies of the room id, the capability and the resume token, which Wipe overwrites.
type Joined struct {
	Member  *Member
	ID      uint32 // the member's id
	Room    RoomID
	Cap     Secret   // Create only: the room's capability
	Token   Secret   // Create and Join: the member's resume token, which the table keeps only hashed
	Seq     uint64   // the room's last sequence number
	In      uint64   // Resume: frames accepted from the member so far
	Max     int      // members the room admits
	Members []uint32 // the present members
	// Replaced is, on Resume, the channel of the same connection the membership was attached to until now
	// (0: none). The table does not call Closed for it: the connection tells its client after the reply.
	Replaced byte
}

// Wipe overwrites the identifiers j holds.
func (j *Joined) Wipe() {
	clear(j.Room[:])
	j.Cap.Wipe()
	j.Token.Wipe()
}

// fillLocked records m's membership in j. m's room lock is held.
func (j *Joined) fillLocked(m *Member) {
	r := m.room
	j.Member, j.ID, j.Room, j.Seq, j.Max, j.Members = m, m.id, r.id, r.log.head, r.max, r.memberIDsLocked()
}

// Create makes a room for max members (0: the default) and makes s its member 1, filling j.
func (h *Table) Create(s Seat, max int, j *Joined) *Error {
	if max == 0 {
		max = h.cfg.DefaultMembers
	}
	if max < 2 || max > h.cfg.MaxMembers {
		return Errorf(protocol.CodeBadRequest, "max must be 2..%d", h.cfg.MaxMembers)
	}
	var n notes
	defer n.deliver()
	h.mu.Lock()
	defer h.mu.Unlock()
	r, perr := h.newRoomLocked(max, nil, &j.Cap)
	if perr != nil {
		return perr
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := h.addMemberLocked(s, r, j, &n); err != nil {
		j.Cap.Wipe()
		h.dropRoomLocked(r, "", &n)
		return err
	}
	return nil
}

// newRoomLocked registers a new room with no member yet, for max members; if allow is not empty, only those
// logged-in users may join it. It draws the room's capability into capability (which the caller wipes) and
// returns the room, or busy at the relay's room limit. h.mu is held.
func (h *Table) newRoomLocked(max int, allow []string, capability *Secret) (*Room, *Error) {
	if !h.closed && h.rooms.len() >= h.cfg.MaxRooms {
		h.evictIdleLocked()
	}
	if h.closed || h.rooms.len() >= h.cfg.MaxRooms {
		h.stats.RefusedRooms.Add(1)
		return nil, Errorf(protocol.CodeBusy, "the relay holds as many rooms as it may; try again later")
	}
	if !h.withinBudgetLocked() {
		h.stats.RefusedRooms.Add(1)
		return nil, h.mem.Refuse(RefusedCreate)
	}
	capability.Fill()
	r := &Room{table: h, capHash: capability.Hash(), max: max, allow: allow}
	r.log.held = &h.mem.Held
	// 128 random bits do not collide in practice; the loop only keeps the table's keys unique if they did.
	for rand.Read(r.id[:]); h.rooms.get(&r.id) != nil; rand.Read(r.id[:]) {
	}
	r.expires = time.Now().Add(h.cfg.MaxRoomLifetime)
	r.lifeTimer = time.AfterFunc(h.cfg.MaxRoomLifetime, func() { h.expire(r) })
	if h.mirrors != nil {
		r.mirror = h.mirrors.Track(r)
	}
	h.rooms.put(&r.id, r)
	h.stats.Rooms.Add(1)
	h.stats.RoomsCreated.Add(1)
	h.log.Debug("room created", "rooms_open", h.rooms.len())
	return r, nil
}

// Join makes s a member of the room id if capability opens it, filling j. id and capability are nil when
// the client sent something malformed: that is answered like a room that does not exist.
func (h *Table) Join(s Seat, id *RoomID, capability *Secret, j *Joined) *Error {
	found, err := h.join(s, id, capability, j, true)
	if found || id == nil || capability == nil {
		return err
	}
	remote := h.getRemote()
	if remote == nil {
		return err
	}
	err = h.takeRemote(s, j, func(p Proxy) (Link, *Error) { return remote.Join(id, capability, s.User, p, j) })
	if err != nil && err.Code == protocol.CodeDenied {
		h.stats.RefusedJoins.Add(1)
	}
	return err
}

// join is Join for this table's rooms; found is false if id names none. With count, a room that is not here
// counts as a refused join.
func (h *Table) join(s Seat, id *RoomID, capability *Secret, j *Joined, count bool) (found bool, err *Error) {
	var n notes
	defer n.deliver()
	h.mu.Lock()
	defer h.mu.Unlock()
	var r *Room
	if id != nil {
		r = h.rooms.get(id)
	}
	if r == nil && (!count || h.remote != nil) {
		if id != nil && h.proxyOfLocked(s.Conn, id) {
			return true, Errorf(protocol.CodeAlreadyIn, "this connection is already a member of that room")
		}
		return false, Errorf(protocol.CodeDenied, "no such room, or the capability is wrong")
	}
	return r != nil, h.joinLocked(s, r, capability, j, &n)
}

// joinLocked is join for the room r. h.mu is held.
func (h *Table) joinLocked(s Seat, r *Room, capability *Secret, j *Joined, n *notes) *Error {
	// One answer for a missing room and a wrong capability, and a comparison whose time does not depend on
	// how much of the capability was right.
	var want, got [32]byte
	if r != nil {
		want = r.capHash
	}
	if capability != nil {
		got = capability.Hash()
	}
	if r == nil || !hashEqual(&want, &got) {
		h.stats.RefusedJoins.Add(1)
		return Errorf(protocol.CodeDenied, "no such room, or the capability is wrong")
	}
	// A dialog room admits only its two users (r.allow is static); the answer is the one for a wrong
	// capability, so nobody learns whom a room is for.
	if len(r.allow) > 0 && !slices.Contains(r.allow, s.User) {
		h.stats.RefusedJoins.Add(1)
		return Errorf(protocol.CodeDenied, "no such room, or the capability is wrong")
	}
	if !h.withinBudgetLocked() {
		h.stats.RefusedJoins.Add(1)
		return h.mem.Refuse(RefusedJoin)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.attachedToLocked(s.Conn) {
		return Errorf(protocol.CodeAlreadyIn, "this connection is already a member of that room")
	}
	if len(r.allow) > 0 {
		h.supersedeAwayLocked(r, s.User, n)
	}
	if len(r.members) >= r.max {
		h.stats.RefusedJoins.Add(1)
		return Errorf(protocol.CodeRoomFull, "room is full (%d of %d members)", len(r.members), r.max)
	}
	return h.addMemberLocked(s, r, j, n)
}

// supersedeAwayLocked ends user's away membership of the dialog room r, if it has one: a logged-in user who
// joins their dialog again (after a reload, which forgets the resume token) takes the place back at once
// instead of finding the room full until the grace has passed. The other member sees it leave, then join.
// h.mu and r.mu are held.
func (h *Table) supersedeAwayLocked(r *Room, user string, n *notes) {
	for _, m := range r.members {
		if m.user == user && m.conn == nil && m.awayTimer != nil {
			m.awayTimer.Stop()
			m.awayTimer = nil
			h.removeMemberLocked(m, false, n)
			return
		}
	}
}

// addMemberLocked makes s a new member of r and fills j. h.mu and r.mu are held.
func (h *Table) addMemberLocked(s Seat, r *Room, j *Joined, n *notes) *Error {
	if s.Full != nil {
		return s.Full
	}
	j.Token.Fill()
	r.nextMember++
	m := &Member{id: r.nextMember, room: r, tokenHash: j.Token.Hash()}
	if len(r.allow) > 0 {
		// Only a dialog names its members: an anonymous room never learns an account, whatever socket joins it.
		m.user = s.User
	}
	r.members = append(r.members, m)
	r.presenceLocked(m, eventJoin, false, n)
	m.next, m.acked = r.log.head+1, r.log.head
	m.conn, m.ch = s.Conn, s.Ch
	j.fillLocked(m)
	h.tokens.put(&m.tokenHash, m)
	h.reindexLocked(r)
	return nil
}

// Resume attaches the member that token names to s and replays what it missed after last, filling j. token
// is nil when the client sent something malformed: that is answered like an unknown token.
func (h *Table) Resume(s Seat, token *Secret, last uint64, j *Joined) *Error {
	if token == nil {
		h.stats.RefusedResumes.Add(1)
		return Errorf(protocol.CodeBadToken, "unknown or expired resume token")
	}
	// The table is keyed by the token's hash, so a lookup's timing tells nothing about the token itself.
	th := token.Hash()
	found, err := h.resume(s, &th, last, j, true)
	if found {
		return err
	}
	remote := h.getRemote()
	if remote == nil {
		return err
	}
	err = h.takeRemote(s, j, func(p Proxy) (Link, *Error) { return remote.Resume(&th, s.User, last, p, j) })
	if err != nil && err.Code == protocol.CodeBadToken {
		h.stats.RefusedResumes.Add(1)
	}
	return err
}

// resume is Resume for this table's members; found is false if no member has the token hash th. With count,
// a token that is not here counts as a refused resume.
func (h *Table) resume(s Seat, th *[32]byte, last uint64, j *Joined, count bool) (found bool, err *Error) {
	var n notes
	defer n.deliver()
	h.mu.Lock()
	defer h.mu.Unlock()
	m := h.tokens.get(th)
	if m == nil {
		if count && h.remote == nil {
			h.stats.RefusedResumes.Add(1)
		}
		return false, Errorf(protocol.CodeBadToken, "unknown or expired resume token")
	}
	return true, h.resumeLocked(s, m, last, j, &n)
}

// resumeLocked is resume for the member m. h.mu is held.
func (h *Table) resumeLocked(s Seat, m *Member, last uint64, j *Joined, n *notes) *Error {
	r := m.room
	// A dialog membership belongs to its user: a token carried to an anonymous or another user's socket
	// (after a logout, say) opens nothing.
	if len(r.allow) > 0 && s.User != m.user {
		h.stats.RefusedResumes.Add(1)
		return Errorf(protocol.CodeBadToken, "unknown or expired resume token")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if last > r.log.head {
		return Errorf(protocol.CodeBadRequest, "last (%d) is beyond the room's last sequence number", last)
	}
	if s.Full != nil {
		return s.Full
	}
	old, oldCh := m.conn, m.ch
	j.fillLocked(m)
	j.In = m.in
	switch {
	case old == s.Conn:
		j.Replaced = oldCh
	case old != nil:
		n.close(old, m, oldCh, protocol.ReasonMoved)
	}
	if m.awayTimer != nil {
		m.awayTimer.Stop()
		m.awayTimer = nil
	}
	m.conn, m.ch = s.Conn, s.Ch
	m.next = max(last, m.acked) + 1
	h.stats.Resumes.Add(1)
	if old == nil && !m.relinking {
		r.presenceLocked(m, eventBack, false, n)
	} else if m.relinking && r.mirror != nil {
		n.wake = append(n.wake, r.mirror) // where the member is now
	}
	m.relinking = false
	h.reindexLocked(r)
	return nil
}
