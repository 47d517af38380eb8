package rooms

import (
	"container/list"
	"time"
)

// How the room table stays open to new rooms when clients leave rooms behind (docs/protocol.md §6): a room in
// which nobody is attached any more costs the relay memory and a place in the table, yet nobody uses it until
// a member resumes. Such rooms are indexed in the order their last member went away; when the table is full,
// a new room takes the place of the one unattached longest, rooms that nobody ever joined first. So clients
// that create rooms and drop their connections in quick succession (behind Tor they all share one address)
// hold nothing another client cannot take, and only rooms with a member attached — bounded by the
// connections the relay admits, times the rooms each may hold — can keep the table full.

// idleRooms are the rooms of the table in which no member is attached. Guarded by Table.mu.
type idleRooms struct {
	orphans list.List // rooms that only their creator ever joined, oldest first
	joined  list.List // rooms that two members or more joined, oldest first
}

// attachedLocked reports whether some member of r is attached to a connection. r.mu is held.
func (r *Room) attachedLocked() bool {
	for _, m := range r.members {
		if m.conn != nil {
			return true
		}
	}
	return false
}

// orphanLocked reports whether r is an anonymous room that nobody but its creator ever joined. r.mu is held.
func (r *Room) orphanLocked() bool {
	return len(r.allow) == 0 && r.nextMember == 1
}

// reindexLocked puts r in the idle index or takes it out, after a change of its members. h.mu and r.mu are
// held.
func (h *Table) reindexLocked(r *Room) {
	idle := !r.closed && len(r.members) > 0 && !r.attachedLocked()
	if idle == (r.idle != nil) {
		return
	}
	if !idle {
		r.idleList.Remove(r.idle)
		r.idle, r.idleList = nil, nil
		return
	}
	r.idleList = &h.idle.joined
	if r.orphanLocked() {
		r.idleList = &h.idle.orphans
	}
	r.idle = r.idleList.PushBack(r)
}

// evictIdleLocked drops the room unattached longest, an orphan first, to make a place in the table. It
// reports whether there was one. h.mu is held.
func (h *Table) evictIdleLocked() bool {
	for _, l := range []*list.List{&h.idle.orphans, &h.idle.joined} {
		if e := l.Front(); e != nil {
			r := e.Value.(*Room)
			r.mu.Lock()
			h.stats.RoomsEvicted.Add(1)
			h.dropRoomLocked(r, "", nil)
			r.mu.Unlock()
			return true
		}
	}
	return false
}

// withinBudgetLocked reports whether the relay is within its memory budget, dropping rooms with nobody
// attached, oldest first, while it is not. h.mu is held.
func (h *Table) withinBudgetLocked() bool {
	for h.mem.Over() {
		if !h.evictIdleLocked() {
			return h.shedAllLocked()
		}
	}
	return true
}

// shedSweepEvery bounds how often a request over the budget makes every room shed (shedAllLocked), which
// costs a look at every room.
const shedSweepEvery = 100 * time.Millisecond

// shedAllLocked makes every room release what only a resume would need, at most every shedSweepEvery, and
// reports whether the relay is then within its budget. h.mu is held.
func (h *Table) shedAllLocked() bool {
	if now := time.Now(); now.Sub(h.lastSweep) >= shedSweepEvery {
		h.lastSweep = now
		h.rooms.each(func(r *Room) {
			r.mu.Lock()
			r.shedLocked()
			r.mu.Unlock()
		})
	}
	return !h.mem.Over()
}
