package relay

import (
	"bytes"
	"errors"
	"time"
)

// Dialog is the room of a dialog between two logged-in users, opened by Server.OpenDialog. Its id and
// capability stay in the room's own storage, which is overwritten when the room is dropped; only Texts makes
// Go strings of them. The zero Dialog is no room.
type Dialog struct{ r *room }

// OpenDialog makes a room for the two users only (its allow list), with no member yet, that keeps its
// capability to hand out again. A room that nobody joins within the grace is dropped, like a room whose
// members all went away. An error (the room table or the memory budget is full) says why, for people.
func (s *Server) OpenDialog(users [2]string) (Dialog, error) {
	r, perr := s.hub.openRoom(2, users[:])
	if perr != nil {
		return Dialog{}, errors.New(perr.msg)
	}
	return Dialog{r}, nil
}

// Alive reports whether the dialog's room is still open, without making text of its id or capability.
func (d Dialog) Alive() bool {
	if d.r == nil {
		return false
	}
	d.r.mu.Lock()
	defer d.r.mu.Unlock()
	return !d.r.closed
}

// Texts returns the id and capability of the dialog's room as text, or false if the room is gone.
func (d Dialog) Texts() (id, capability string, alive bool) {
	if d.r == nil {
		return "", "", false
	}
	r := d.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return "", "", false
	}
	return b64.EncodeToString(r.id[:]), b64.EncodeToString(r.dialogCap[:]), true
}

// NotifyDialog tells every connection of the logged-in user that from opened the dialog d with them (a
// "dialog" notice carrying its room and capability). Nothing is sent if the room is gone. Each connection
// gets its own copy, which its writer zeroes once written.
func (s *Server) NotifyDialog(user string, d Dialog, from string) {
	if d.r == nil {
		return
	}
	s.notifyUser(user, d.r.dialogNotice(from))
}

// NotifyMail tells every connection of the logged-in user that from left them a message in the mailbox (a
// "mail" notice; docs/accounts.md §Mailbox). A missed notice loses nothing: the message waits.
func (s *Server) NotifyMail(user, from string) {
	s.notifyUser(user, newObj(make([]byte, 0, 32+len(from)*6), "mail").strEsc("from", from).done())
}

// NotifyKey tells every connection of the logged-in user that changed published a new key, or lost its key
// (a "key" notice): the client stops encrypting to the key it pinned until its user accepts the new one.
func (s *Server) NotifyKey(user, changed string) {
	s.notifyUser(user, newObj(make([]byte, 0, 32+len(changed)*6), "key").strEsc("user", changed).done())
}

// NotifyRemoteDialog tells every connection of the logged-in user that from opened a dialog whose room another
// node of the cluster holds: room and capability are the base64url texts Dialog.Texts gives there. Texts that are
// not base64url are ignored.
func (s *Server) NotifyRemoteDialog(user, room, capability, from string) {
	if !isB64URL(room) || !isB64URL(capability) {
		return
	}
	s.notifyUser(user, newObj(make([]byte, 0, replyRoom+len(from)*6), "dialog").strEsc("from", from).
		str("room", room).str("cap", capability).done())
}

func isB64URL(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// openRoom makes a room with no member yet, for max members, that only the users in allow may join; it keeps
// its capability to hand out again. A room that nobody joins within the grace is dropped.
func (h *hub) openRoom(max int, allow []string) (*room, *protoError) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var capability secret
	defer capability.wipe()
	r, perr := h.newRoomLocked(max, allow, &capability)
	if perr != nil {
		return nil, perr
	}
	r.dialogCap = capability
	time.AfterFunc(h.cfg.Grace, func() { h.dropIfEmpty(r) })
	return r, nil
}

// dialogNotice formats the dialog notice for the other user of r, in a buffer the writer zeroes (it carries
// the capability); nil if the room is gone.
func (r *room) dialogNotice(from string) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	return newObj(make([]byte, 0, replyRoom+len(from)*6), "dialog").strEsc("from", from).b64("room", r.id[:]).
		b64("cap", r.dialogCap[:]).done()
}

// dropIfEmpty drops r if it has no member.
func (h *hub) dropIfEmpty(r *room) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed && len(r.members) == 0 {
		h.dropRoomLocked(r, "")
	}
}

// notifyUser queues a control message on every connection of a logged-in user, each its own copy (a writer
// zeroes what it wrote), and zeroes msg. A nil msg is nothing to send.
func (s *Server) notifyUser(user string, msg []byte) {
	if msg == nil {
		return
	}
	defer clear(msg)
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.byUser[user]))
	for c := range s.byUser[user] {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.sendNotice(bytes.Clone(msg))
	}
}

// sendNotice queues a notice the client may miss (a dialog notice: the dialog can be opened again) unless
// half the control queue is already waiting: notices alone never make a connection slow. A connection being
// closed (a logout, say) gets none.
func (c *conn) sendNotice(msg []byte) {
	c.mu.Lock()
	room := !c.gone && !c.killed && len(c.ctrl) < maxQueuedControl/2
	if room {
		c.ctrl = append(c.ctrl, msg)
	}
	c.mu.Unlock()
	if !room {
		clear(msg)
		return
	}
	c.wakeUp()
}
