package rooms

import (
	"crypto/rand"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/cleanrelay/cleanrelay/relay/protocol"
)

// Closed reasons of docs/protocol.md §4.1.
const (
	reasonBurned   = protocol.ReasonBurned
	reasonExpired  = protocol.ReasonExpired
	reasonShutdown = protocol.ReasonShutdown
	reasonRevoked  = protocol.ReasonRevoked
	reasonMoved    = protocol.ReasonMoved
)

// hub holds every room and every resume token. Its lock orders before any room's and any connection's.
type hub struct {
	// Static after construction.
	cfg   Config
	stats *Stats
	log   *slog.Logger
	mem   *budget

	mu sync.Mutex
	// Guarded by mu.
	rooms     wipedTable[roomID, room]
	tokens    wipedTable[[32]byte, member] // by the SHA-256 of the resume token
	idle      idleRooms
	lastSweep time.Time // the last shedAllLocked
	closed    bool
}

func newHub(cfg Config, stats *Stats, log *slog.Logger) *hub {
	return &hub{cfg: cfg, stats: stats, log: log, mem: &budget{max: cfg.MaxMemory, extra: cfg.ExtraHeld, conns: &stats.conns}}
}

// joinedReply formats the reply to create (with the capability) and join (capability nil) into a buffer
// sized for it, so that the capability and token it carries exist in exactly one array, which the writer
// zeroes once it is written.
func joinedReply(id uint64, m *member, ch byte, capability, token *secret) []byte {
	r := m.room
	members := r.memberIDsLocked()
	o := newObj(make([]byte, 0, replyRoom+len(members)*replyPerMember), "joined").id(id).num("ch", uint64(ch)).
		b64("room", r.id[:])
	if capability != nil {
		o = o.b64("cap", capability[:])
	}
	return o.num("member", uint64(m.id)).b64("resume", token[:]).num("seq", r.log.head).num("max", uint64(r.max)).
		nums("members", members).done()
}

// Sizes of the replies that carry identifiers, generous upper bounds: the fixed part (field names, quotes, an
// id, a room id, a capability and a token as text, numbers at their widest) and each member id.
const (
	replyRoom      = 320
	replyPerMember = 11
)

// create makes a room for c with room for max members (0: the default) and joins c to it as member 1.
func (h *hub) create(c *conn, reqID uint64, max int) *protoError {
	if max == 0 {
		max = h.cfg.DefaultMembers
	}
	if max < 2 || max > h.cfg.MaxMembers {
		return errorf(codeBadRequest, "max must be 2..%d", h.cfg.MaxMembers)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	var capability secret
	defer capability.wipe()
	r, perr := h.newRoomLocked(max, nil, &capability)
	if perr != nil {
		return perr
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := h.addMemberLocked(c, r, reqID, &capability); err != nil {
		h.dropRoomLocked(r, "")
		return err
	}
	return nil
}

// newRoomLocked registers a new room with no member yet, for max members; if allow is not empty, only those
// logged-in users may join it. It draws the room's capability into capability (which the caller wipes) and
// returns the room, or busy at the relay's room limit. hub.mu is held.
func (h *hub) newRoomLocked(max int, allow []string, capability *secret) (*room, *protoError) {
	if !h.closed && h.rooms.len() >= h.cfg.MaxRooms {
		h.evictIdleLocked()
	}
	if h.closed || h.rooms.len() >= h.cfg.MaxRooms {
		h.stats.refusedRooms.Add(1)
		return nil, errorf(codeBusy, "the relay holds as many rooms as it may; try again later")
	}
	if !h.withinBudgetLocked() {
		h.stats.refusedRooms.Add(1)
		return nil, h.mem.refuse(refusedMemCreate)
	}
	capability.fill()
	r := &room{hub: h, capHash: capability.hash(), max: max, allow: allow}
	r.log.held = &h.mem.held
	// 128 random bits do not collide in practice; the loop only keeps the table's keys unique if they did.
	for rand.Read(r.id[:]); h.rooms.get(&r.id) != nil; rand.Read(r.id[:]) {
	}
	r.lifeTimer = time.AfterFunc(h.cfg.MaxRoomLifetime, func() { h.expire(r) })
	h.rooms.put(&r.id, r)
	h.stats.rooms.Add(1)
	h.stats.roomsCreated.Add(1)
	h.log.Debug("room created", "rooms_open", h.rooms.len())
	return r, nil
}

// join adds c to the room id if capability opens it. Either may be malformed: that is answered like a room
// that does not exist.
func (h *hub) join(c *conn, reqID uint64, id, capability *wireSecret) *protoError {
	h.mu.Lock()
	defer h.mu.Unlock()
	var r *room
	if rid, ok := id.roomID(); ok {
		r = h.rooms.get(rid)
	}
	// One answer for a missing room and a wrong capability, and a comparison whose time does not depend on
	// how much of the capability was right.
	var want, got [32]byte
	if r != nil {
		want = r.capHash
	}
	if s, ok := capability.secret(); ok {
		got = s.hash()
	}
	if r == nil || !hashEqual(&want, &got) {
		h.stats.refusedJoins.Add(1)
		return errorf(codeDenied, "no such room, or the capability is wrong")
	}
	// A dialog room admits only its two users (r.allow is static); the answer is the one for a wrong
	// capability, so nobody learns whom a room is for.
	if len(r.allow) > 0 && !slices.Contains(r.allow, c.identity.User) {
		h.stats.refusedJoins.Add(1)
		return errorf(codeDenied, "no such room, or the capability is wrong")
	}
	if !h.withinBudgetLocked() {
		h.stats.refusedJoins.Add(1)
		return h.mem.refuse(refusedMemJoin)
	}
	if c.holds(r) {
		return errorf(codeAlreadyIn, "this connection is already a member of that room")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.allow) > 0 {
		h.supersedeAwayLocked(r, c.identity.User)
	}
	if len(r.members) >= r.max {
		h.stats.refusedJoins.Add(1)
		return errorf(codeRoomFull, "room is full (%d of %d members)", len(r.members), r.max)
	}
	return h.addMemberLocked(c, r, reqID, nil)
}

// supersedeAwayLocked ends user's away membership of the dialog room r, if it has one: a logged-in user who
// joins their dialog again (after a reload, which forgets the resume token) takes the place back at once
// instead of finding the room full until the grace has passed. The other member sees it leave, then join.
// hub.mu and r.mu are held.
func (h *hub) supersedeAwayLocked(r *room, user string) {
	for _, m := range r.members {
		if m.user == user && m.conn == nil && m.awayTimer != nil {
			m.awayTimer.Stop()
			m.awayTimer = nil
			h.removeMemberLocked(m, false)
			return
		}
	}
}

// addMemberLocked makes c a new member of r and queues the joined reply, which carries capability unless it
// is nil. hub.mu and r.mu are held.
func (h *hub) addMemberLocked(c *conn, r *room, reqID uint64, capability *secret) *protoError {
	ch, err := c.freeChannel()
	if err != nil {
		return err
	}
	var token secret
	defer token.wipe()
	token.fill()
	r.nextMember++
	m := &member{id: r.nextMember, room: r, tokenHash: token.hash()}
	if len(r.allow) > 0 {
		// Only a dialog names its members: an anonymous room never learns an account, whatever socket joins it.
		m.user = c.identity.User
	}
	r.members = append(r.members, m)
	r.presenceLocked(m, eventJoin, false)
	m.next, m.acked = r.log.head+1, r.log.head
	m.conn, m.ch = c, ch
	c.attach(ch, m, joinedReply(reqID, m, ch, capability, &token))
	h.tokens.put(&m.tokenHash, m)
	h.reindexLocked(r)
	return nil
}

// resume attaches the member that token names to c and replays what it missed after last. A malformed token
// is answered like an unknown one.
func (h *hub) resume(c *conn, reqID uint64, token *wireSecret, last uint64) *protoError {
	h.mu.Lock()
	defer h.mu.Unlock()
	var m *member
	if s, ok := token.secret(); ok {
		// The table is keyed by the token's hash, so a lookup's timing tells nothing about the token itself.
		th := s.hash()
		m = h.tokens.get(&th)
	}
	if m == nil {
		h.stats.refusedResumes.Add(1)
		return errorf(codeBadToken, "unknown or expired resume token")
	}
	r := m.room
	// A dialog membership belongs to its user: a token carried to an anonymous or another user's socket
	// (after a logout, say) opens nothing.
	if len(r.allow) > 0 && c.identity.User != m.user {
		h.stats.refusedResumes.Add(1)
		return errorf(codeBadToken, "unknown or expired resume token")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if last > r.log.head {
		return errorf(codeBadRequest, "last (%d) is beyond the room's last sequence number", last)
	}
	ch, err := c.freeChannel()
	if err != nil {
		return err
	}
	old := m.conn
	members := r.memberIDsLocked()
	c.attach(ch, m, newObj(make([]byte, 0, replyRoom+len(members)*replyPerMember), "resumed").id(reqID).
		num("ch", uint64(ch)).b64("room", r.id[:]).num("member", uint64(m.id)).num("seq", r.log.head).num("in", m.in).
		num("max", uint64(r.max)).nums("members", members).done())
	if old != nil {
		old.detach(m.ch, reasonMoved)
	}
	if m.awayTimer != nil {
		m.awayTimer.Stop()
		m.awayTimer = nil
	}
	m.conn, m.ch = c, ch
	m.next = max(last, m.acked) + 1
	h.stats.resumes.Add(1)
	if old == nil {
		r.presenceLocked(m, eventBack, false)
	} else {
		c.wakeUp()
	}
	h.reindexLocked(r)
	return nil
}

// away marks every membership of a connection that ended as away, each with its grace timer.
func (h *hub) away(c *conn, members []*member) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, m := range members {
		r := m.room
		r.mu.Lock()
		if m.conn == c && !r.closed {
			m.conn = nil
			grace := h.cfg.Grace
			if r.orphanLocked() {
				grace = h.cfg.OrphanGrace // nobody has the invite yet, or nobody used it
			}
			m.awayTimer = time.AfterFunc(grace, func() { h.graceOver(m) })
			r.presenceLocked(m, eventAway, false)
			h.reindexLocked(r)
		}
		r.mu.Unlock()
	}
}

// graceOver ends the membership of a member that stayed away for the whole grace.
func (h *hub) graceOver(m *member) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := m.room
	r.mu.Lock()
	defer r.mu.Unlock()
	if m.conn != nil || r.closed || m.awayTimer == nil {
		return // it came back, or the room is gone
	}
	m.awayTimer = nil
	h.stats.graceExpired.Add(1)
	h.removeMemberLocked(m, true)
}

// withMember runs f with hub.mu and m's room lock held, if m is still attached to c and its room still open.
// It reports whether f ran.
func (h *hub) withMember(c *conn, m *member, f func(r *room)) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := m.room
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || m.conn != c {
		return false
	}
	f(r)
	return true
}

// leave ends m's membership for good, at its own request.
func (h *hub) leave(c *conn, m *member) bool {
	return h.withMember(c, m, func(*room) {
		c.release(m.ch)
		m.conn = nil
		h.removeMemberLocked(m, false)
	})
}

// removeMemberLocked takes m out of its room and drops the room when nobody is left.
func (h *hub) removeMemberLocked(m *member, timeout bool) {
	r := m.room
	h.tokens.delete(&m.tokenHash)
	clear(m.tokenHash[:])
	for i, x := range r.members {
		if x == m {
			r.members = append(r.members[:i], r.members[i+1:]...)
			break
		}
	}
	if len(r.members) == 0 {
		h.dropRoomLocked(r, "")
		return
	}
	r.presenceLocked(m, eventLeave, timeout)
	h.reindexLocked(r)
}

// burn ends m's room for everyone.
func (h *hub) burn(c *conn, m *member) bool {
	return h.withMember(c, m, func(r *room) {
		h.stats.burned.Add(1)
		h.dropRoomLocked(r, reasonBurned)
	})
}

func (h *hub) expire(r *room) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		h.dropRoomLocked(r, reasonExpired)
	}
}

// dropRoomLocked makes r unreachable, tells attached members why (unless reason is empty: nobody is
// attached), and overwrites everything it buffered and its identifiers. hub.mu and r.mu are held.
func (h *hub) dropRoomLocked(r *room, reason string) {
	r.closed = true
	h.rooms.delete(&r.id)
	clear(r.id[:])
	clear(r.capHash[:])
	r.dialogCap.wipe()
	h.stats.rooms.Add(-1)
	r.lifeTimer.Stop()
	for _, m := range r.members {
		h.tokens.delete(&m.tokenHash)
		clear(m.tokenHash[:])
		if m.awayTimer != nil {
			m.awayTimer.Stop()
			m.awayTimer = nil
		}
		if m.conn != nil {
			m.conn.detach(m.ch, reason)
			m.conn = nil
		}
	}
	r.members = nil
	h.reindexLocked(r)
	r.log.wipe()
	if reason == "" {
		reason = "empty"
	}
	h.log.Debug("room dropped", "why", reason, "rooms_open", h.rooms.len())
}

// closeAll drops every room, telling its members reason, and refuses new rooms from then on.
func (h *hub) closeAll(reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for _, r := range h.rooms.values() {
		r.mu.Lock()
		h.dropRoomLocked(r, reason)
		r.mu.Unlock()
	}
}

// revoke closes every membership of the logged-in user and drops their rooms' places; used when an account or
// key is withdrawn. Server.Revoke then closes the user's connections.
func (h *hub) revoke(user string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.rooms.values() {
		r.mu.Lock()
		for i := 0; i < len(r.members); i++ {
			m := r.members[i]
			if m.user != user {
				continue
			}
			if m.conn != nil {
				m.conn.detach(m.ch, reasonRevoked)
				m.conn = nil
			}
			if m.awayTimer != nil {
				m.awayTimer.Stop()
				m.awayTimer = nil
			}
			h.removeMemberLocked(m, false)
			if r.closed {
				break
			}
			i--
		}
		r.mu.Unlock()
	}
}
