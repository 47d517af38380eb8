package rooms

import "time"

// OpenRoom makes a room with no member yet, for max members, that only the users in allow may join; it keeps
// its capability to hand out again (Room.Secrets). A room that nobody joins within the grace is dropped.
func (h *Table) OpenRoom(max int, allow []string) (*Room, *Error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var capability Secret
	defer capability.Wipe()
	r, perr := h.newRoomLocked(max, allow, &capability)
	if perr != nil {
		return nil, perr
	}
	// The room is in the table already: its mirror (relay/cluster) may be copying it, under the room's lock.
	r.mu.Lock()
	r.dialogCap = capability
	r.mu.Unlock()
	time.AfterFunc(h.cfg.Grace, func() { h.dropIfEmpty(r) })
	return r, nil
}

// dropIfEmpty drops r if it has no member.
func (h *Table) dropIfEmpty(r *Room) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed && len(r.members) == 0 {
		h.dropRoomLocked(r, "", nil)
	}
}

// Alive reports whether the room is still open.
func (r *Room) Alive() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return !r.closed
}

// Secrets calls f with the id and the kept capability of a room made by OpenRoom, and reports false without
// calling it if the room is gone. f runs with the room's lock held: it may only copy or format them, into
// memory its caller overwrites, and must not call the rooms.
func (r *Room) Secrets(f func(id *RoomID, capability *Secret)) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	f(&r.id, &r.dialogCap)
	return true
}
