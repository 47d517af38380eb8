package accounts

import (
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/cleanrelay/cleanrelay/keydir"
	"github.com/cleanrelay/cleanrelay/relay/prekeys"
)

// The prekey routes (docs/accounts.md §Prekeys): a user publishes one-time prekeys signed by its key, and a
// sender writing to it while it is away takes one, so that the mailbox item is sealed with forward secrecy
// (docs/e2e.md §9).

func (a *Accounts) prekeyRoutes() {
	m := a.mux
	m.HandleFunc("PUT /api/prekeys", a.prekeysPut)
	m.HandleFunc("GET /api/prekeys", a.prekeysLeft)
	m.HandleFunc("POST /api/prekeys/{name}/take", a.prekeyTake)
}

var errPrekeysOff = &apiError{http.StatusNotFound, "prekeys_off", "this relay keeps no prekeys (it has no mailbox)"}

// prekeySession returns the caller's session, or fails the request (prekeys are off, not logged in).
func (a *Accounts) prekeySession(w http.ResponseWriter, r *http.Request) (keydir.Session, bool) {
	s, err := a.session(r)
	if err == nil && a.cfg.Prekeys == nil {
		err = errPrekeysOff
	}
	if err != nil {
		a.fail(w, err)
		return keydir.Session{}, false
	}
	return s, true
}

// prekeysPut replaces the caller's prekeys with the bundle in the body (application/octet-stream,
// docs/e2e.md §9), published under its current key.
func (a *Accounts) prekeysPut(w http.ResponseWriter, r *http.Request) {
	s, ok := a.prekeySession(w, r)
	if !ok {
		return
	}
	store := a.cfg.Prekeys
	if r.Header.Get("Content-Type") != "application/octet-stream" {
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "the body must be application/octet-stream")
		return
	}
	me, err := a.dir.User(s.Username)
	if err != nil {
		a.fail(w, err)
		return
	}
	if me.Key == nil {
		writeError(w, http.StatusConflict, "no_key", "publish your public key before its prekeys")
		return
	}
	data, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "body_too_large", "the bundle is larger than "+strconv.FormatInt(mbe.Limit, 10)+" bytes")
			return
		}
		writeError(w, http.StatusBadRequest, "bad_request", "failed to read the body")
		return
	}
	n, err := store.Replace(s.Username, me.Key.Fingerprint, data)
	switch {
	case errors.Is(err, prekeys.ErrTooMany):
		writeError(w, http.StatusBadRequest, "too_many_prekeys", "a bundle holds at most "+strconv.Itoa(store.Config().MaxPerUser)+" prekeys")
	case errors.Is(err, prekeys.ErrMalformed):
		writeError(w, http.StatusBadRequest, "bad_prekeys", err.Error())
	case errors.Is(err, prekeys.ErrRelayFull):
		writeError(w, http.StatusInsufficientStorage, "prekeys_relay_full", "the relay holds as many prekeys as it may; try again later")
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, "busy", err.Error())
	default:
		writeJSON(w, http.StatusOK, map[string]int{"count": n, "max": store.Config().MaxPerUser})
	}
}

// prekeysLeft answers the ids of the caller's prekeys not yet taken.
func (a *Accounts) prekeysLeft(w http.ResponseWriter, r *http.Request) {
	s, ok := a.prekeySession(w, r)
	if !ok {
		return
	}
	store := a.cfg.Prekeys
	writeJSON(w, http.StatusOK, map[string]any{"ids": store.IDs(s.Username), "max": store.Config().MaxPerUser})
}

// prekeyTake hands the caller one prekey of the user {name} and removes it from the relay.
func (a *Accounts) prekeyTake(w http.ResponseWriter, r *http.Request) {
	s, ok := a.prekeySession(w, r)
	if !ok {
		return
	}
	peer, err := a.dir.User(r.PathValue("name"))
	if err != nil || peer.Disabled {
		a.fail(w, keydir.ErrNotFound)
		return
	}
	me, err := a.dir.User(s.Username)
	switch {
	case err != nil:
		a.fail(w, keydir.ErrNotFound)
		return
	case me.Key == nil:
		writeError(w, http.StatusConflict, "no_key", "publish your public key before writing to anyone")
		return
	case peer.Username == s.Username:
		writeError(w, http.StatusBadRequest, "bad_request", "a message needs another user")
		return
	case peer.Key == nil:
		writeError(w, http.StatusConflict, "no_prekeys", "the other user has no published key")
		return
	}
	k, err := a.cfg.Prekeys.Take(peer.Username, s.Username)
	if err == nil && k.Fingerprint != peer.Key.Fingerprint {
		// Published under a key that has changed since: the wipe that goes with the change is under way.
		err = prekeys.ErrNone
	}
	switch {
	case errors.Is(err, prekeys.ErrNone):
		writeError(w, http.StatusConflict, "no_prekeys", "the other user has no prekey left; the message waits until they are online")
	case errors.Is(err, prekeys.ErrHeld):
		writeError(w, http.StatusTooManyRequests, "prekeys_held", "you hold as many of this user's prekeys as you may until they read your messages")
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, "busy", err.Error())
	default:
		writeJSON(w, http.StatusOK, map[string]any{"id": k.ID, "fingerprint": k.Fingerprint, "prekey": base64.StdEncoding.EncodeToString(k.Data)})
	}
}
