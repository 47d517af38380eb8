package relay

import (
	"bytes"
	"errors"

	"github.com/cleanrelay/cleanrelay/relay/internal/rooms"
)

// Dialog is the room of a dialog between two logged-in users, opened by Server.OpenDialog. Its id and
// capability stay in the room's own storage, which is overwritten when the room is dropped; only Texts makes
// Go strings of them. The zero Dialog is no room.
type Dialog struct{ r *rooms.Room }

// OpenDialog makes a room for the two users only (its allow list), with no member yet, that keeps its
// capability to hand out again. A room that nobody joins within the grace is dropped, like a room whose
// members all went away. An error (the room table or the memory budget is full) says why, for people.
func (s *Server) OpenDialog(users [2]string) (Dialog, error) {
	r, perr := s.table.OpenRoom(2, users[:])
	if perr != nil {
		return Dialog{}, errors.New(perr.Msg)
	}
	return Dialog{r}, nil
}

// Alive reports whether the dialog's room is still open, without making text of its id or capability.
func (d Dialog) Alive() bool {
	return d.r != nil && d.r.Alive()
}

// Texts returns the id and capability of the dialog's room as text, or false if the room is gone.
func (d Dialog) Texts() (id, capability string, alive bool) {
	if d.r == nil {
		return "", "", false
	}
	alive = d.r.Secrets(func(rid *roomID, c *secret) {
		id, capability = b64.EncodeToString(rid[:]), b64.EncodeToString(c[:])
	})
	return id, capability, alive
}

// NotifyDialog tells every connection of the logged-in user that from opened the dialog d with them (a
// "dialog" notice carrying its room and capability). Nothing is sent if the room is gone. Each connection
// gets its own copy, which its writer zeroes once written.
func (s *Server) NotifyDialog(user string, d Dialog, from string) {
	if d.r == nil {
		return
	}
	s.notifyUser(user, dialogNotice(d.r, from))
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

// dialogNotice formats the dialog notice for the other user of r, in a buffer the writer zeroes (it carries
// the capability); nil if the room is gone.
func dialogNotice(r *rooms.Room, from string) (msg []byte) {
	r.Secrets(func(id *roomID, capability *secret) {
		msg = newObj(make([]byte, 0, replyRoom+len(from)*6), "dialog").strEsc("from", from).b64("room", id[:]).
			b64("cap", capability[:]).done()
	})
	return msg
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
