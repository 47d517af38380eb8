package accounts

import (
	"errors"
	"net/http"
	"time"

	"github.com/cleanrelay/cleanrelay/keydir"
	"github.com/cleanrelay/cleanrelay/relay"
)

// dialogRef is the room of a dialog between two users. The room itself keeps the capability both of them get,
// so that dropping the room overwrites it.
type dialogRef struct {
	room     relay.Dialog
	notified [2]time.Time // when each user of the pair (in its order) was last told (guarded by Accounts.mu)
}

// errDialogsFull refuses a new dialog (503 busy) while the dialog table is full of live dialogs.
var errDialogsFull = errors.New("the relay holds as many dialogs as it may; try again later")

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
	a.mu.Lock()
	d, ok := a.dialogs[pair]
	// The texts of the room id and capability, read while the room is known alive. They go out in an HTTP
	// response through encoding/json and net/http, whose buffers the relay cannot overwrite: docs/threat-model.md
	// (Memory) names this copy.
	var room, capability string
	if ok {
		room, capability, ok = d.room.Texts()
		if !ok {
			delete(a.dialogs, pair)
		}
	}
	var busy error
	if !ok {
		if len(a.dialogs) >= a.cfg.MaxDialogs {
			a.sweepDialogsLocked()
		}
		if len(a.dialogs) >= a.cfg.MaxDialogs {
			busy = errDialogsFull
		} else if d.room, busy = a.srv.OpenDialog(pair); busy == nil {
			d.notified = [2]time.Time{} // a new room: its capability is news
			room, capability, _ = d.room.Texts()
		}
	}
	// One notice per dialog per DialogNoticeInterval: the other user's sessions were told already.
	now, told := time.Now(), 0
	if pair[1] == peer.Username {
		told = 1
	}
	notify := busy == nil && now.Sub(d.notified[told]) >= a.cfg.DialogNoticeInterval
	if notify {
		d.notified[told] = now
	}
	if busy == nil {
		a.dialogs[pair] = d
	}
	a.mu.Unlock()
	if busy != nil {
		writeError(w, http.StatusServiceUnavailable, "busy", busy.Error())
		return
	}
	if notify {
		a.srv.NotifyDialog(peer.Username, d.room, s.Username)
		if a.onDialog != nil {
			a.onDialog(peer.Username, room, capability, s.Username)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"room": room, "cap": capability,
		"peer": map[string]any{"username": peer.Username, "full_name": peer.FullName, "fingerprint": peer.Key.Fingerprint},
	})
}

// OnDialogNotice registers fn to be called, after the other user's sessions on this relay were told, with what
// they were told: the user, the dialog's room and capability (texts), and who opened it. A cluster tells the
// user's sessions on the other nodes with it. Call it once, before serving.
func (a *Accounts) OnDialogNotice(fn func(user, room, capability, from string)) { a.onDialog = fn }

// sweepDialogsLocked forgets the dialogs whose room is gone. It reads no room id or capability: those stay
// in the rooms' own storage, which is overwritten when a room is dropped. Accounts.mu is held.
func (a *Accounts) sweepDialogsLocked() {
	for p, x := range a.dialogs {
		if !x.room.Alive() {
			delete(a.dialogs, p)
		}
	}
}
