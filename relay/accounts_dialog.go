package relay

import (
	"net/http"
	"time"

	"github.com/cleanrelay/cleanrelay/keydir"
)

// dialogRef is the room of a dialog between two users and the capability both of them get.
type dialogRef struct {
	room, capability string
}

// openDialog finds or creates the room of the caller and another user (POST /api/dialogs/{name}), answers
// its id and capability, and tells the other user's connected sessions that the dialog is waiting. Only the
// two users can join the room (its allow list); it lives by the relay's room rules.
func (a *Accounts) openDialog(w http.ResponseWriter, r *http.Request) {
	s, err := a.session(r)
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
	if ok && !h.roomAlive(d.room) {
		delete(a.dialogs, pair)
		ok = false
	}
	var perr *protoError
	if !ok {
		if len(a.dialogs) >= a.cfg.MaxDialogs {
			for p, x := range a.dialogs {
				if !h.roomAlive(x.room) {
					delete(a.dialogs, p)
				}
			}
		}
		if len(a.dialogs) >= a.cfg.MaxDialogs {
			perr = errorf(codeBusy, "the relay holds as many dialogs as it may; try again later")
		} else if d.room, d.capability, perr = h.openRoom(2, pair[:]); perr == nil {
			a.dialogs[pair] = d
		}
	}
	a.mu.Unlock()
	if perr != nil {
		writeError(w, http.StatusServiceUnavailable, "busy", perr.msg)
		return
	}
	a.srv.notifyUser(peer.Username, newObj(nil, "dialog").strEsc("from", s.Username).str("room", d.room).
		str("cap", d.capability).done())
	writeJSON(w, http.StatusOK, map[string]any{
		"room": d.room, "cap": d.capability,
		"peer": map[string]any{"username": peer.Username, "full_name": peer.FullName, "fingerprint": peer.Key.Fingerprint},
	})
}

// openRoom makes a room with no member yet, for max members, that only the users in allow may join. A
// room that nobody joins within the grace is dropped, like a room whose members all went away.
func (h *hub) openRoom(max int, allow []string) (id, capability string, perr *protoError) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r, capability, perr := h.newRoomLocked(max, allow)
	if perr != nil {
		return "", "", perr
	}
	time.AfterFunc(h.cfg.Grace, func() { h.dropIfEmpty(r) })
	return r.id, capability, nil
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

// roomAlive reports whether the room id still exists.
func (h *hub) roomAlive(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.rooms[id]
	return ok
}

// notifyUser queues a control message on every connection of a logged-in user.
func (s *Server) notifyUser(user string, msg []byte) {
	s.mu.Lock()
	var conns []*conn
	for c := range s.conns {
		if c.identity.User == user {
			conns = append(conns, c)
		}
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.sendControl(msg)
	}
}

// userConns counts the connections of a logged-in user.
func (s *Server) userConns(user string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for c := range s.conns {
		if c.identity.User == user {
			n++
		}
	}
	return n
}
