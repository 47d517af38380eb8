// Package accounts serves the HTTP API of accounts, public keys, user search and dialogs on a keydir.Directory,
// and authenticates the logged-in WebSocket sessions of a relay.Server.
package accounts

import (
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cleanrelay/cleanrelay/keydir"
	"github.com/cleanrelay/cleanrelay/relay"
	"github.com/cleanrelay/cleanrelay/relay/mailbox"
	"github.com/cleanrelay/cleanrelay/relay/prekeys"
)

// Config holds the limits of the accounts API. The zero value of a field means its default.
type Config struct {
	// MaxBodyBytes caps every request body of the API. Optional; default 80 KiB (an armored key of
	// keydir.Config.MaxKeyBytes, 64 KiB, plus its proof and JSON).
	MaxBodyBytes int64

	// TicketLifetime is how long a WebSocket ticket (issued after a session proof) stays good after it was
	// issued and after the last socket opened with it closed (while one is open it does not expire).
	// Optional; default 5m: long enough to come back after a dropped Tor circuit without a new proof.
	TicketLifetime time.Duration

	// MaxTickets bounds the WebSocket tickets held at once. When it is reached, a new proof drops the ticket
	// that has opened no socket for longest (an expired one first); only when every ticket holds an open
	// socket is it refused (503 busy). Tickets with sockets are bounded by the relay's connections, so keep it
	// at least relay.Config.MaxConns. Optional; default 10000.
	MaxTickets int

	// MaxTicketsPerUser bounds the WebSocket tickets one account holds at once, so that one account cannot
	// fill the table for everyone: a new proof drops the account's oldest ticket that opens no socket, or is
	// refused (429 rate_limited) while every one of them does. Optional; default 8.
	MaxTicketsPerUser int

	// MaxDialogs bounds the dialog rooms held at once (each also counts as a room). Optional; default 10000.
	MaxDialogs int

	// DialogNoticeInterval is how often, at most, one dialog notifies its other user again: opening the
	// same dialog again within it tells nobody (the other user's sessions were told already). Optional;
	// default 10s.
	DialogNoticeInterval time.Duration

	// MaxSessionsPerUser bounds the logged-in WebSocket sessions one account holds at once; a handshake
	// beyond it is refused. Optional; default 8.
	MaxSessionsPerUser int

	// Mailbox keeps dialog messages for contacts who are away (docs/accounts.md §Mailbox); the API serves it
	// and wipes what it holds for a user whose key changes or is withdrawn. Optional; nil: no mailbox (its
	// routes answer 404 mailbox_off).
	Mailbox *mailbox.Store

	// Prekeys keeps the one-time prekeys users publish for the mailbox (docs/accounts.md §Prekeys); the API
	// wipes a user's when its key changes or is withdrawn, and a sender's hold on them ends when the owner
	// acknowledges its mailbox items. Optional; nil: its routes answer 404 prekeys_off.
	Prekeys *prekeys.Store
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 80 << 10
	}
	if c.TicketLifetime == 0 {
		c.TicketLifetime = 5 * time.Minute
	}
	if c.MaxTickets == 0 {
		c.MaxTickets = 10000
	}
	if c.MaxTicketsPerUser == 0 {
		c.MaxTicketsPerUser = 8
	}
	if c.MaxDialogs == 0 {
		c.MaxDialogs = 10000
	}
	if c.DialogNoticeInterval == 0 {
		c.DialogNoticeInterval = 10 * time.Second
	}
	if c.MaxSessionsPerUser == 0 {
		c.MaxSessionsPerUser = 8
	}
	return c
}

// Cookie names. The session cookie carries the JWT for every path; the ticket cookie is only sent to /ws.
const (
	sessionCookie = "session"
	ticketCookie  = "ws_ticket"
)

// Accounts is the HTTP API of accounts, public keys, user search and dialogs (docs/accounts.md), on top of
// a keydir.Directory, and the relay.Authenticator of logged-in WebSocket sessions.
type Accounts struct {
	// Static after construction.
	dir *keydir.Directory
	cfg Config
	log *slog.Logger
	cop *http.CrossOriginProtection
	mux *http.ServeMux
	// Set once by Attach, before serving.
	srv *relay.Server
	// Set once by OnDialogNotice, before serving; nil without a cluster.
	onDialog func(user, room, capability, from string)
	// Set once by ShareTickets; nil without a cluster (shared_tickets.go).
	shared atomic.Pointer[sharedTickets]

	mu sync.Mutex
	// Guarded by mu.
	tickets map[[32]byte]*ticket            // SHA-256 of a WebSocket ticket → what it proves
	byUser  map[string]map[[32]byte]*ticket // user id → its tickets (the same ones)
	unused  list.List                       // the tickets that open no socket, in the order they stopped (or were issued)
	dialogs map[[2]string]dialogRef         // sorted pair of usernames → their room
}

// ticket is the proof, made over HTTP, that the WebSockets opened with it belong to a user who holds the key.
type ticket struct {
	hash                                   [32]byte // its key in Accounts.tickets
	userID, username, tokenID, fingerprint string
	tokenExpires                           time.Time // when the login's token expires: its sockets end then
	issued                                 time.Time
	// Guarded by Accounts.mu.
	open    int           // sessions opened with the ticket and not yet ended
	expires time.Time     // meaningful while open == 0
	expiry  *time.Timer   // while open > 0: ends the login's sockets at tokenExpires
	idle    *list.Element // its place in Accounts.unused while open == 0
}

// live reports whether the ticket may still open a socket (and must be kept).
func (t *ticket) live(now time.Time) bool { return t.open > 0 || now.Before(t.expires) }

// New makes the accounts API on dir. It serves nothing until Attach has given it its relay: make the relay
// with a as its Config.Authenticator, then call Attach once, before serving.
func New(dir *keydir.Directory, cfg Config, log *slog.Logger) *Accounts {
	cfg = cfg.WithDefaults()
	a := &Accounts{dir: dir, cfg: cfg, log: log,
		tickets: make(map[[32]byte]*ticket), byUser: make(map[string]map[[32]byte]*ticket), dialogs: make(map[[2]string]dialogRef)}
	a.cop = http.NewCrossOriginProtection()
	a.cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusForbidden, "cross_origin", "cross-origin requests may not change anything")
	}))
	a.mux = http.NewServeMux()
	a.routes()
	return a
}

// Attach serves the accounts on srv, whose Config.Authenticator is a: the API opens dialog rooms on it,
// logging out ends sessions on it, and withdrawing an account or a key ends that user's sessions on it.
func (a *Accounts) Attach(srv *relay.Server) {
	a.srv = srv
	again := srv.Config().HandshakeTimeout + time.Second
	a.dir.OnRevoke(func(userID string) {
		a.forgetTickets(userID)
		// The account may be disabled but it still exists: its name is known.
		acc, err := a.dir.Account(userID)
		if err != nil {
			return
		}
		srv.Revoke(acc.Username)
		a.keyGone(acc.Username, mailbox.ReasonRevoked)
		// A handshake that passed Authenticate just before the withdrawal can register its connection
		// after the sweep above; a second sweep, once every such handshake has ended, closes it too.
		time.AfterFunc(again, func() { srv.Revoke(acc.Username) })
	})
	// Sessions that proved the old key must prove the new one. No second sweep here: the owner's new
	// sessions, made with the new key, must survive.
	a.dir.OnKeyChange(func(userID string) {
		a.forgetTickets(userID)
		if acc, err := a.dir.Account(userID); err == nil {
			srv.Revoke(acc.Username)
			a.keyGone(acc.Username, mailbox.ReasonKeyChanged)
		}
	})
}

// Handler serves /api/ (size-capped, cross-origin protected, on the relay's allowed hosts only) and hands
// everything else to next, the relay's own handler.
func (a *Accounts) Handler(next http.Handler) http.Handler {
	api := a.cop.Handler(a.mux)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/api/") {
			next.ServeHTTP(w, r)
			return
		}
		if !a.srv.HostAllowed(r.Host) {
			writeError(w, http.StatusMisdirectedRequest, "bad_host", "this relay does not serve that host name")
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		r.Body = http.MaxBytesReader(w, r.Body, a.cfg.MaxBodyBytes)
		api.ServeHTTP(w, r)
	})
}

// apiError is an error answer: HTTP status, a code a program branches on, and a message for people.
type apiError struct {
	status int
	code   string
	msg    string
}

func (e *apiError) Error() string { return e.code + ": " + e.msg }

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(struct {
		Error string `json:"error"`
		Msg   string `json:"msg"`
	}{code, msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// fail answers err: an *apiError as it is, a keydir sentinel by the one switch below, anything else as
// an internal error (logged without details that could name a user).
func (a *Accounts) fail(w http.ResponseWriter, err error) {
	var ae *apiError
	if errors.As(err, &ae) {
		writeError(w, ae.status, ae.code, ae.msg)
		return
	}
	var be *keydir.BackoffError
	if errors.As(err, &be) {
		w.Header().Set("Retry-After", strconv.Itoa(int((be.RetryAfter+time.Second-1)/time.Second)))
	}
	status, code := http.StatusInternalServerError, "internal"
	switch {
	case errors.Is(err, keydir.ErrUsernameInvalid):
		status, code = http.StatusBadRequest, "invalid_username"
	case errors.Is(err, keydir.ErrUsernameTaken):
		status, code = http.StatusConflict, "username_taken"
	case errors.Is(err, keydir.ErrUsernameConfusable):
		status, code = http.StatusConflict, "username_confusable"
	case errors.Is(err, keydir.ErrFullNameInvalid):
		status, code = http.StatusBadRequest, "invalid_full_name"
	case errors.Is(err, keydir.ErrEmailInvalid):
		status, code = http.StatusBadRequest, "invalid_email"
	case errors.Is(err, keydir.ErrPasswordPolicy):
		status, code = http.StatusBadRequest, "weak_password"
	case errors.Is(err, keydir.ErrPasswordTooLong):
		status, code = http.StatusBadRequest, "password_too_long"
	case errors.Is(err, keydir.ErrTooManyAccounts):
		status, code = http.StatusServiceUnavailable, "too_many_accounts"
	case errors.Is(err, keydir.ErrBadCredentials):
		status, code = http.StatusUnauthorized, "bad_credentials"
	case errors.Is(err, keydir.ErrTooManyAttempts):
		status, code = http.StatusTooManyRequests, "too_many_attempts"
	case errors.Is(err, keydir.ErrAccountDisabled):
		status, code = http.StatusForbidden, "account_disabled"
	case errors.Is(err, keydir.ErrBadToken):
		status, code = http.StatusUnauthorized, "unauthorized"
	case errors.Is(err, keydir.ErrNotFound):
		status, code = http.StatusNotFound, "not_found"
	case errors.Is(err, keydir.ErrPrivateKey):
		status, code = http.StatusBadRequest, "private_key"
	case errors.Is(err, keydir.ErrKeyMalformed):
		status, code = http.StatusBadRequest, "key_malformed"
	case errors.Is(err, keydir.ErrKeyWeak):
		status, code = http.StatusBadRequest, "key_weak"
	case errors.Is(err, keydir.ErrKeyExpired):
		status, code = http.StatusBadRequest, "key_expired"
	case errors.Is(err, keydir.ErrKeyRevoked):
		status, code = http.StatusBadRequest, "key_revoked"
	case errors.Is(err, keydir.ErrKeyUserID):
		status, code = http.StatusBadRequest, "key_user_id"
	case errors.Is(err, keydir.ErrKeyTooLarge):
		status, code = http.StatusBadRequest, "key_too_large"
	case errors.Is(err, keydir.ErrKeyUnusable):
		status, code = http.StatusBadRequest, "key_unusable"
	case errors.Is(err, keydir.ErrBadProof):
		status, code = http.StatusBadRequest, "bad_proof"
	case errors.Is(err, keydir.ErrNoKey):
		status, code = http.StatusConflict, "no_key"
	case errors.Is(err, keydir.ErrBusy):
		w.Header().Set("Retry-After", "1")
		status, code = http.StatusServiceUnavailable, "busy"
	case errors.Is(err, keydir.ErrRateLimited):
		status, code = http.StatusTooManyRequests, "rate_limited"
	case errors.Is(err, keydir.ErrBadRequest):
		status, code = http.StatusBadRequest, "bad_request"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		status, code = http.StatusServiceUnavailable, "busy"
	}
	msg := err.Error()
	if status == http.StatusInternalServerError {
		// The message may carry details; the log gets only that it happened.
		a.log.Error("accounts API internal error")
		msg = "internal error"
	}
	writeError(w, status, code, msg)
}

// decode reads the request's JSON body into v: Content-Type application/json, one object, no unknown
// fields, within the size cap.
func decode(r *http.Request, v any) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return &apiError{http.StatusUnsupportedMediaType, "unsupported_media_type", "the body must be application/json"}
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &apiError{http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("the body is larger than %d bytes", mbe.Limit)}
		}
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return &apiError{http.StatusBadRequest, "bad_json", fmt.Sprintf("field %q has the wrong type", te.Field)}
		}
		if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return &apiError{http.StatusBadRequest, "bad_json", "unknown field " + f}
		}
		return &apiError{http.StatusBadRequest, "bad_json", "the body is not a JSON object of the expected shape"}
	}
	if _, err := dec.Token(); err != io.EOF {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &apiError{http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("the body is larger than %d bytes", mbe.Limit)}
		}
		return &apiError{http.StatusBadRequest, "bad_json", "the body holds more than one JSON value"}
	}
	return nil
}

// session returns the logged-in session of the request's cookie, or an *apiError (401) or
// keydir.ErrAccountDisabled.
func (a *Accounts) session(r *http.Request) (keydir.Session, error) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return keydir.Session{}, &apiError{http.StatusUnauthorized, "unauthorized", "not logged in"}
	}
	s, err := a.dir.Authenticate(c.Value)
	if errors.Is(err, keydir.ErrBadToken) {
		return keydir.Session{}, &apiError{http.StatusUnauthorized, "unauthorized", "the session is invalid or has ended; log in again"}
	}
	return s, err
}

// setCookie sets a cookie the way every cookie of cleanrelay is set: HttpOnly, Secure (browsers treat
// localhost and .onion as secure contexts), SameSite=Strict.
func setCookie(w http.ResponseWriter, name, value, path string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: path, MaxAge: maxAge,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
}
