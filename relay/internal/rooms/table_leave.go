package rooms

// The ends of memberships and rooms: a connection's end (away, then the grace), a leave, a burn, a room's
// lifetime, the table's close, a revoked user.

import (
	"time"

	"github.com/cleanrelay/cleanrelay/relay/protocol"
)

// Away marks every membership of ms still attached to c, a connection that ended, as away, each with its
// grace timer.
func (h *Table) Away(c Conn, ms []*Member) {
	h.forAttached(c, ms, func(m *Member, n *notes) {
		r := m.room
		if r.proxy {
			h.endProxyLocked(m, LinkAway, "", n)
			return
		}
		m.conn = nil
		grace := h.cfg.Grace
		if r.orphanLocked() {
			grace = h.cfg.OrphanGrace // nobody has the invite yet, or nobody used it
		}
		m.awayTimer = time.AfterFunc(grace, func() { h.graceOver(m) })
		r.presenceLocked(m, eventAway, false, n)
		h.reindexLocked(r)
	})
}

// graceOver ends the membership of a member that stayed away for the whole grace.
func (h *Table) graceOver(m *Member) {
	var n notes
	defer n.deliver()
	h.mu.Lock()
	defer h.mu.Unlock()
	r := m.room
	r.mu.Lock()
	defer r.mu.Unlock()
	if m.conn != nil || r.closed || m.awayTimer == nil {
		return // it came back, or the room is gone
	}
	m.awayTimer = nil
	h.stats.GraceExpired.Add(1)
	h.removeMemberLocked(m, true, &n)
}

// forAttached runs f, with h.mu and the member's room lock held, for every member of ms still attached to c
// in an open room, then makes the calls f noted.
func (h *Table) forAttached(c Conn, ms []*Member, f func(m *Member, n *notes)) {
	var n notes
	defer n.deliver()
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, m := range ms {
		r := m.room
		r.mu.Lock()
		if m.conn == c && !r.closed {
			f(m, &n)
		}
		r.mu.Unlock()
	}
}

// withMember runs f like forAttached for m alone, and reports whether it ran.
func (h *Table) withMember(c Conn, m *Member, f func(r *Room, n *notes)) bool {
	ran := false
	h.forAttached(c, []*Member{m}, func(m *Member, n *notes) {
		ran = true
		f(m.room, n)
	})
	return ran
}

// Leave ends m's membership for good, at its own request from c. It reports false if m is no longer attached
// to c; otherwise the channel is c's to release.
func (h *Table) Leave(c Conn, m *Member) bool {
	return h.withMember(c, m, func(r *Room, n *notes) {
		if r.proxy {
			h.endProxyLocked(m, LinkLeave, "", n)
			return
		}
		m.conn = nil
		h.removeMemberLocked(m, false, n)
	})
}

// removeMemberLocked takes m out of its room and drops the room when nobody is left.
func (h *Table) removeMemberLocked(m *Member, timeout bool, n *notes) {
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
		h.dropRoomLocked(r, "", n)
		return
	}
	r.presenceLocked(m, eventLeave, timeout, n)
	h.reindexLocked(r)
}

// Burn ends m's room for everyone, at m's request from c. It reports false if m is no longer attached to c.
func (h *Table) Burn(c Conn, m *Member) bool {
	return h.withMember(c, m, func(r *Room, n *notes) {
		if r.proxy {
			h.endProxyLocked(m, LinkBurn, protocol.ReasonBurned, n)
			return
		}
		h.stats.Burned.Add(1)
		h.dropRoomLocked(r, protocol.ReasonBurned, n)
	})
}

func (h *Table) expire(r *Room) {
	var n notes
	defer n.deliver()
	h.mu.Lock()
	defer h.mu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		h.dropRoomLocked(r, protocol.ReasonExpired, &n)
	}
}

// dropRoomLocked makes r unreachable, tells attached members why (unless reason is empty: nobody is
// attached), and overwrites everything it buffered and its identifiers. h.mu and r.mu are held.
func (h *Table) dropRoomLocked(r *Room, reason string, n *notes) {
	r.closed = true
	h.rooms.delete(&r.id)
	clear(r.id[:])
	clear(r.capHash[:])
	r.dialogCap.Wipe()
	h.stats.Rooms.Add(-1)
	r.lifeTimer.Stop()
	for _, m := range r.members {
		h.tokens.delete(&m.tokenHash)
		clear(m.tokenHash[:])
		if m.awayTimer != nil {
			m.awayTimer.Stop()
			m.awayTimer = nil
		}
		if m.conn != nil {
			n.close(m.conn, m, m.ch, reason)
			m.conn = nil
		}
	}
	r.members = nil
	h.reindexLocked(r)
	r.log.wipe()
	switch {
	case r.mirror != nil && n != nil:
		n.wake = append(n.wake, r.mirror) // it tells the mirror to drop its copy
	case r.mirror != nil:
		r.mirror.Wake() // a mirror link's Wake takes no lock (package cluster)
	}
	if reason == "" {
		reason = "empty"
	}
	h.log.Debug("room dropped", "why", reason, "rooms_open", h.rooms.len())
}

// Close drops every room, telling its attached members reason, and refuses new rooms from then on.
func (h *Table) Close(reason string) {
	var n notes
	defer n.deliver()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for r := range h.proxies {
		r.mu.Lock()
		h.endProxyLocked(r.members[0], LinkAway, reason, &n)
		r.mu.Unlock()
	}
	for _, r := range h.rooms.values() {
		r.mu.Lock()
		h.dropRoomLocked(r, reason, &n)
		r.mu.Unlock()
	}
}

// Revoke ends every membership of the logged-in user, attached or away, and frees their places; used when an
// account or key is withdrawn. Attached ones are told closed "revoked".
func (h *Table) Revoke(user string) {
	var n notes
	defer n.deliver()
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
				n.close(m.conn, m, m.ch, protocol.ReasonRevoked)
				m.conn = nil
			}
			if m.awayTimer != nil {
				m.awayTimer.Stop()
				m.awayTimer = nil
			}
			h.removeMemberLocked(m, false, &n)
			if r.closed {
				break
			}
			i--
		}
		r.mu.Unlock()
	}
}

// Remove ends every membership of ms still attached to c for good, telling c each is closed for reason.
func (h *Table) Remove(c Conn, ms []*Member, reason string) {
	h.forAttached(c, ms, func(m *Member, n *notes) {
		if m.room.proxy {
			h.endProxyLocked(m, LinkLeave, reason, n)
			return
		}
		n.close(c, m, m.ch, reason)
		m.conn = nil
		h.removeMemberLocked(m, false, n)
	})
}
