package accounts

import (
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/cleanrelay/cleanrelay/keydir"
	"github.com/cleanrelay/cleanrelay/relay/mailbox"
)

// The mailbox routes (docs/accounts.md §Mailbox): a dialog message for a contact who is away waits in the
// relay's memory, ciphertext only, until the contact fetches and acknowledges it or its time is up.

// maxFetchBytes bounds the ciphertext one GET /api/mailbox/{name} answers; "more" says to ask again after
// acknowledging.
const maxFetchBytes = 1 << 20

func (a *Accounts) mailboxRoutes() {
	m := a.mux
	m.HandleFunc("GET /api/mailbox", a.mailboxSummary)
	m.HandleFunc("POST /api/mailbox/{name}", a.mailboxPut)
	m.HandleFunc("GET /api/mailbox/{name}", a.mailboxFetch)
	m.HandleFunc("POST /api/mailbox/{name}/ack", a.mailboxAck)
}

var errMailboxOff = &apiError{http.StatusNotFound, "mailbox_off", "this relay keeps no messages for absent contacts"}

// mailboxSession returns the caller's session, or fails the request (the mailbox is off, not logged in).
func (a *Accounts) mailboxSession(w http.ResponseWriter, r *http.Request) (keydir.Session, bool) {
	s, err := a.session(r)
	if err == nil && a.cfg.Mailbox == nil {
		err = errMailboxOff
	}
	if err != nil {
		a.fail(w, err)
		return keydir.Session{}, false
	}
	return s, true
}

// mailboxSummary answers what waits for the caller, per sender, and what it left that was wiped unread.
func (a *Accounts) mailboxSummary(w http.ResponseWriter, r *http.Request) {
	s, ok := a.mailboxSession(w, r)
	if !ok {
		return
	}
	type waiting struct {
		From   string `json:"from"`
		Unread int    `json:"unread"`
		Items  int    `json:"items"`
	}
	type gone struct {
		To     string `json:"to"`
		ID     string `json:"id"`
		Reason string `json:"reason"`
	}
	box := a.cfg.Mailbox
	ws, gs := []waiting{}, []gone{}
	for _, x := range box.Summary(s.Username) {
		ws = append(ws, waiting{x.From, x.Unread, x.Items})
	}
	for _, u := range box.Undeliverables(s.Username) {
		gs = append(gs, gone{u.To, u.ID, u.Reason})
	}
	writeJSON(w, http.StatusOK, map[string]any{"ttl_max": int(box.Config().MaxTTL.Seconds()), "waiting": ws, "undeliverable": gs})
}

// mailboxPut leaves the request body (application/octet-stream: one dialog frame payload, ciphertext) for
// the user {name}. Query: fp, the recipient's key fingerprint the item is encrypted to (it must be the
// published one); ttl in seconds (optional: the maximum); quiet=1 for an item that is no message of its own.
// The answer goes out on the taken-over connection (wipe.go), whatever it is.
func (a *Accounts) mailboxPut(w http.ResponseWriter, r *http.Request) {
	s, ok := a.mailboxSession(w, r)
	if !ok {
		return
	}
	status, body := a.putItem(s, r)
	finishWiped(w, status, body)
}

// putItem reads the item of a put into the mailbox, or refuses it, and returns the answer.
func (a *Accounts) putItem(s keydir.Session, r *http.Request) (int, []byte) {
	box := a.cfg.Mailbox
	q := r.URL.Query()
	ttl, err := strconv.Atoi(q.Get("ttl"))
	if q.Get("ttl") == "" {
		ttl, err = 0, nil
	}
	max := int(box.Config().MaxTTL.Seconds())
	switch {
	case err != nil || ttl < 0 || ttl > max:
		return http.StatusBadRequest, errorJSON("bad_ttl", "ttl must be a number of seconds from 1 to "+strconv.Itoa(max))
	case r.Header.Get("Content-Type") != "application/octet-stream":
		return http.StatusUnsupportedMediaType, errorJSON("unsupported_media_type", "the body must be application/octet-stream")
	case r.ContentLength < 1 || r.ContentLength > int64(box.Config().MaxItemBytes):
		return http.StatusRequestEntityTooLarge, errorJSON("body_too_large", "the message must have a Content-Length from 1 to "+strconv.Itoa(box.Config().MaxItemBytes)+" bytes")
	}
	peer, err := a.dir.User(r.PathValue("name"))
	if err != nil || peer.Disabled {
		return http.StatusNotFound, errorJSON("not_found", keydir.ErrNotFound.Error())
	}
	me, err := a.dir.User(s.Username)
	switch {
	case err != nil:
		return http.StatusNotFound, errorJSON("not_found", keydir.ErrNotFound.Error())
	case me.Key == nil:
		return http.StatusConflict, errorJSON("no_key", "publish your public key before writing to anyone")
	case peer.Key == nil:
		return http.StatusConflict, errorJSON("no_key", "the other user has no published key")
	case peer.Key.Fingerprint != q.Get("fp"):
		return http.StatusConflict, errorJSON("key_changed", "the other user's published key is not the one this message is encrypted to; fetch and verify the new key")
	case peer.Username == s.Username:
		return http.StatusBadRequest, errorJSON("bad_request", "a message needs another user")
	}
	// The buffer is the mailbox's from here on: it overwrites it when the item leaves or is refused.
	data := make([]byte, r.ContentLength)
	if _, err := io.ReadFull(r.Body, data); err != nil {
		clear(data)
		return http.StatusBadRequest, errorJSON("bad_request", "the body is shorter than its Content-Length")
	}
	id, expires, err := box.Put(s.Username, peer.Username, data, time.Duration(ttl)*time.Second, q.Get("quiet") == "1")
	switch {
	case errors.Is(err, mailbox.ErrFull):
		return http.StatusInsufficientStorage, errorJSON("mailbox_full", "the other user's mailbox is full; nothing waiting was dropped: try again after they read it")
	case errors.Is(err, mailbox.ErrRelayFull):
		return http.StatusInsufficientStorage, errorJSON("mailbox_relay_full", "the relay's mailbox is full; try again later")
	case err != nil:
		return http.StatusServiceUnavailable, errorJSON("busy", err.Error())
	}
	a.srv.NotifyMail(peer.Username, s.Username)
	b := append([]byte(`{"id":"`), id...)
	b = append(b, `","expires":"`...)
	b = expires.UTC().AppendFormat(b, time.RFC3339)
	return http.StatusCreated, append(b, "\"}\n"...)
}

// mailboxFetch answers the items from {name} waiting for the caller, oldest first, up to maxFetchBytes of
// ciphertext, on the taken-over connection (wipe.go), from a buffer it overwrites after the write.
func (a *Accounts) mailboxFetch(w http.ResponseWriter, r *http.Request) {
	s, ok := a.mailboxSession(w, r)
	if !ok {
		return
	}
	from, err := keydir.NormalizeUsername(r.PathValue("name"))
	if err != nil {
		a.fail(w, keydir.ErrNotFound)
		return
	}
	buf := make([]byte, 0, 4096)
	buf = append(buf, `{"items":[`...)
	more, n, size := false, 0, 0
	a.cfg.Mailbox.Visit(s.Username, from, func(id string, sent, expires time.Time, data []byte) bool {
		if n > 0 && size+len(data) > maxFetchBytes {
			more = true
			return false
		}
		buf = grow(buf, base64.StdEncoding.EncodedLen(len(data))+160)
		if n > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, `{"id":"`...)
		buf = append(buf, id...) // base64url: nothing to escape
		buf = append(buf, `","sent":"`...)
		buf = sent.UTC().AppendFormat(buf, time.RFC3339)
		buf = append(buf, `","expires":"`...)
		buf = expires.UTC().AppendFormat(buf, time.RFC3339)
		buf = append(buf, `","data":"`...)
		buf = base64.StdEncoding.AppendEncode(buf, data)
		buf = append(buf, `"}`...)
		n++
		size += len(data)
		return true
	})
	buf = append(buf, `],"more":`...)
	buf = strconv.AppendBool(buf, more)
	buf = append(buf, "}\n"...)
	finishWiped(w, http.StatusOK, buf)
}

// grow makes room for n more bytes in b, overwriting the old buffer when it has to move: a ciphertext's
// base64 must not stay behind in a dropped buffer.
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b
	}
	nb := make([]byte, len(b), 2*cap(b)+n)
	copy(nb, b)
	clear(b[:cap(b)])
	return nb
}

// mailboxAck removes the caller's items from {name} with the given ids, after the client decrypted them.
func (a *Accounts) mailboxAck(w http.ResponseWriter, r *http.Request) {
	s, ok := a.mailboxSession(w, r)
	if !ok {
		return
	}
	var req struct {
		IDs []string `json:"ids"`
	}
	if err := decode(r, &req); err != nil {
		a.fail(w, err)
		return
	}
	if len(req.IDs) > a.cfg.Mailbox.Config().MaxPerRecipient {
		writeError(w, http.StatusBadRequest, "bad_request", "too many ids in one acknowledgement")
		return
	}
	from, err := keydir.NormalizeUsername(r.PathValue("name"))
	if err != nil {
		a.fail(w, keydir.ErrNotFound)
		return
	}
	removed := a.cfg.Mailbox.Ack(s.Username, from, req.IDs)
	if removed > 0 && a.cfg.Prekeys != nil {
		a.cfg.Prekeys.Release(s.Username, from) // read: the sender may take this user's prekeys again
	}
	writeJSON(w, http.StatusOK, map[string]int{"removed": removed})
}

// keyGone wipes what waits for a user whose key changed or went (reason), reports it to its senders, and
// tells everyone who has a dialog with the user, open or in the mailbox, that its key changed.
func (a *Accounts) keyGone(user, reason string) {
	tell := map[string]bool{}
	if a.cfg.Prekeys != nil {
		a.cfg.Prekeys.Wipe(user) // signed by the key that went
	}
	if box := a.cfg.Mailbox; box != nil {
		for _, p := range box.Peers(user) {
			tell[p] = true
		}
		box.WipeTo(user, reason)
		if reason == mailbox.ReasonRevoked {
			box.WipeFrom(user)
		}
	}
	a.mu.Lock()
	for pair := range a.dialogs {
		if pair[0] == user {
			tell[pair[1]] = true
		} else if pair[1] == user {
			tell[pair[0]] = true
		}
	}
	a.mu.Unlock()
	for p := range tell {
		a.srv.NotifyKey(p, user)
	}
}
