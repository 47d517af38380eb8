package relay

import (
	"bytes"
	"net/http"
	"time"

	"github.com/cleanrelay/cleanrelay/keydir"
)

// dialogRef is the room of a dialog between two users. The room itself keeps the capability both of them get
// (room.dialogCap), so that dropping the room overwrites it.
type dialogRef struct {
	room     *room
	notified [2]time.Time // when each user of the pair (in its order) was last told (guarded by Accounts.mu)
}

// openDialog finds or creates the room of the caller and another user (POST /api/dialogs/{name}), answers
// its id and capability, and tells the other user's connected sessions that the dialog is waiting. Only the
// two users can join the room (its allow list); it lives by the relay's room rules.
func (a *Accounts) openDialog(w http.ResponseWriter, r *http.Request) {
	s, err := a.session(r)
	if err == nil {
		err = a.dir.Allow(s.UserID, keydir.ActionDialog)
	}
	if err != nil {
		a.fail(w, err)
		return
	}
	peer, err := a.dir.User(r.PathValue("name"))
	if err != nil || peer.Disabled {
		a.fail(w, keydir.ErrNotFound)
		return
	}
	if peer.Username == s.Username {
		writeError(w, http.StatusBadRequest, "bad_request", "a dialog needs another user")
		return
	}
	me, err := a.dir.User(s.Username)
	if err != nil {
		a.fail(w, err)
		return
	}
	if me.Key == nil {
		writeError(w, http.StatusConflict, "no_key", "publish your public key before opening a dialog")
		return
	}
	if peer.Key == nil {
		writeError(w, http.StatusConflict, "no_key", "the other user has not published a public key yet")
		return
	}
	pair := [2]string{s.Username, peer.Username}
	if pair[1] < pair[0] {
		pair[0], pair[1] = pair[1], pair[0]
	}
	h := a.srv.hub
	a.mu.Lock()
	d, ok := a.dialogs[pair]
	// The texts of the room id and capability, read while the room is known alive. They go out in an HTTP
	// response through encoding/json and net/http, whose buffers the relay cannot overwrite: docs/threat-model.md
	// (Memory) names this copy.
	var room, capability string
	if ok {
		room, capability, ok = h.dialogTexts(d.room)
		if !ok {
			delete(a.dialogs, pair)
		}
	}
	var perr *protoError
	if !ok {
		if len(a.dialogs) >= a.cfg.MaxDialogs {
			a.sweepDialogsLocked()
		}
		if len(a.dialogs) >= a.cfg.MaxDialogs {
			perr = errorf(codeBusy, "the relay holds as many dialogs as it may; try again later")
		} else if d.room, perr = h.openRoom(2, pair[:]); perr == nil {
			d.notified = [2]time.Time{} // a new room: its capability is news
			room, capability, _ = h.dialogTexts(d.room)
		}
	}
	// One notice per dialog per DialogNoticeInterval: the other user's sessions were told already.
	now, told := time.Now(), 0
	if pair[1] == peer.Username {
		told = 1
	}
	notify := perr == nil && now.Sub(d.notified[told]) >= a.cfg.DialogNoticeInterval
	if notify {
		d.notified[told] = now
	}
	if perr == nil {
		a.dialogs[pair] = d
	}
	a.mu.Unlock()
	if perr != nil {
		writeError(w, http.StatusServiceUnavailable, "busy", perr.msg)
		return
	}
	if notify {
		a.srv.notifyUser(peer.Username, h.dialogNotice(d.room, s.Username))
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"room": room, "cap": capability,
		"peer": map[string]any{"username": peer.Username, "full_name": peer.FullName, "fingerprint": peer.Key.Fingerprint},
	})
}

// sweepDialogsLocked forgets the dialogs whose room is gone. It reads no room id or capability: those stay
// in the rooms' own storage, which is overwritten when a room is dropped. Accounts.mu is held.
func (a *Accounts) sweepDialogsLocked() {
	for p, x := range a.dialogs {
		if !x.room.alive() {
			delete(a.dialogs, p)
		}
	}
}

// openRoom makes a room with no member yet, for max members, that only the users in allow may join; it keeps
// its capability to hand out again. A room that nobody joins within the grace is dropped, like a room whose
// members all went away.
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

// dialogTexts returns the id and capability of a dialog's room as text, or false if the room is gone.
func (h *hub) dialogTexts(r *room) (id, capability string, alive bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return "", "", false
	}
	return b64.EncodeToString(r.id[:]), b64.EncodeToString(r.dialogCap[:]), true
}

// alive reports whether r is still open, without making text of its id or capability.
func (r *room) alive() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return !r.closed
}

// dialogNotice formats the dialog notice for the other user of r, in a buffer the writer zeroes (it carries
// the capability); nil if the room is gone.
func (h *hub) dialogNotice(r *room, from string) []byte {
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

// userConns counts the connections of a logged-in user.
func (s *Server) userConns(user string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byUser[user])
}
