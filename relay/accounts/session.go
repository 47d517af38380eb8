package accounts

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"time"

	"github.com/cleanrelay/cleanrelay/relay"
)

// These errors, and keydir's, refuse a WebSocket handshake (401); the client learns only "not logged in".
var (
	errBadTicket     = errors.New("unknown, used or expired WebSocket ticket")
	errTicketSession = errors.New("the WebSocket ticket does not belong to this login")
	errTooManySess   = errors.New("this account holds as many WebSocket sessions as it may")
)

// sessionProof checks a signature by the user's published key over a session challenge and answers with
// a WebSocket ticket in a cookie only /ws receives. Opening /ws with it (and the session cookie of the same
// login) makes the WebSocket a logged-in session; a stolen session cookie alone cannot do that. The ticket
// stays good while a socket opened with it is open and for TicketLifetime after the last one closed, so a
// client that lost its connection comes back with one round trip and no new signature.
func (a *Accounts) sessionProof(w http.ResponseWriter, r *http.Request) {
	s, err := a.session(r)
	if err != nil {
		a.fail(w, err)
		return
	}
	var req struct {
		Challenge string `json:"challenge"`
		Signature string `json:"signature"`
	}
	if err := decode(r, &req); err != nil {
		a.fail(w, err)
		return
	}
	info, err := a.dir.VerifySession(s.UserID, req.Challenge, req.Signature)
	if err != nil {
		a.fail(w, err)
		return
	}
	// The ticket travels in a cookie, which net/http handles as a string: it cannot be kept as wipeable bytes.
	now := time.Now()
	var value string
	if sh := a.shared.Load(); sh != nil {
		value = a.mintTicket(sh, s, info, now) // good on every node of the cluster (shared_tickets.go)
	} else {
		var raw [32]byte
		rand.Read(raw[:])
		value = base64.RawURLEncoding.EncodeToString(raw[:])
		clear(raw[:])
	}
	a.mu.Lock()
	perr := a.addTicketLocked(sha256.Sum256([]byte(value)), &ticket{userID: s.UserID, username: s.Username,
		tokenID: s.TokenID, tokenExpires: s.Expires, fingerprint: info.Fingerprint, issued: now,
		expires: now.Add(a.cfg.TicketLifetime)}, now)
	a.mu.Unlock()
	if perr != nil {
		a.fail(w, perr)
		return
	}
	// No Max-Age: the browser keeps the cookie for the browsing session, and the relay decides how long the
	// ticket is good (a socket may stay open far longer than TicketLifetime).
	setCookie(w, ticketCookie, value, "/ws", 0)
	writeJSON(w, http.StatusOK, map[string]any{"fingerprint": info.Fingerprint, "ticket_lifetime": int(a.cfg.TicketLifetime.Seconds())})
}

// Authenticate is the relay.Authenticator of logged-in sessions: a handshake without a ticket cookie is an
// anonymous session; one with a ticket is the ticket's user if the ticket is live, the session cookie is still
// the login that made it, the key it proved is still the user's published key, and the user holds fewer than
// MaxSessionsPerUser sessions. A ticket shown with another login's session cookie is burned. On a cluster, a
// ticket this node does not hold may be one another node issued (shared_tickets.go).
func (a *Accounts) Authenticate(r *http.Request) (relay.Identity, error) {
	c, err := r.Cookie(ticketCookie)
	if err != nil || c.Value == "" {
		return relay.Identity{}, nil
	}
	h := sha256.Sum256([]byte(c.Value))
	a.mu.Lock()
	t, ok := a.tickets[h]
	if ok && !t.live(time.Now()) {
		a.dropTicketLocked(h)
		ok = false
	}
	a.mu.Unlock()
	if sh := a.shared.Load(); !ok && sh != nil {
		if t, err = a.adoptTicket(sh, r, c.Value, h); err != nil {
			return relay.Identity{}, err
		}
		ok = true
	}
	if !ok {
		return relay.Identity{}, errBadTicket
	}
	sc, err := r.Cookie(sessionCookie)
	if err != nil {
		return relay.Identity{}, errTicketSession
	}
	s, err := a.dir.Authenticate(sc.Value)
	if err == nil && (s.UserID != t.userID || s.TokenID != t.tokenID) {
		err = errTicketSession
	}
	if err != nil {
		a.mu.Lock()
		a.burnLocked(h, t)
		a.mu.Unlock()
		return relay.Identity{}, err
	}
	if err := a.dir.CheckSender(t.userID, t.fingerprint); err != nil {
		return relay.Identity{}, err
	}
	if a.srv.SessionCount(t.username) >= a.cfg.MaxSessionsPerUser {
		return relay.Identity{}, errTooManySess
	}
	a.mu.Lock()
	if a.tickets[h] != t || !time.Now().Before(t.tokenExpires) { // forgotten (revoked, key replaced, expired)
		a.mu.Unlock()
		return relay.Identity{}, errBadTicket
	}
	a.ticketOpened(t)
	a.mu.Unlock()
	return relay.Identity{User: t.username, Session: t.tokenID, Ended: func() { a.ticketClosed(t) }}, nil
}

// addTicketLocked keeps t under hash h. A user holds at most MaxTicketsPerUser tickets: a new one drops the
// user's oldest ticket that opens no socket, or is refused (429) if every one does. The whole table holds at
// most MaxTickets: a new ticket drops the one that has opened no socket for longest, and is refused (503
// busy) only when every ticket opens a socket. So accounts that make proofs and never use them (however many
// they are) cost each other their tickets, and holding the table costs a socket per ticket, which the relay's
// connection limit bounds.
func (a *Accounts) addTicketLocked(h [32]byte, t *ticket, now time.Time) *apiError {
	a.dropExpiredLocked(now)
	mine := a.byUser[t.userID]
	if len(mine) >= a.cfg.MaxTicketsPerUser {
		var oldest *ticket
		for _, o := range mine {
			if o.open == 0 && (oldest == nil || o.issued.Before(oldest.issued)) {
				oldest = o
			}
		}
		if oldest == nil {
			return &apiError{http.StatusTooManyRequests, "rate_limited", "this account holds as many WebSocket tickets as it may; close one of its sessions first"}
		}
		a.dropTicketLocked(oldest.hash)
	}
	if len(a.tickets) >= a.cfg.MaxTickets {
		e := a.unused.Front()
		if e == nil {
			return &apiError{http.StatusServiceUnavailable, "busy", "too many WebSocket sessions are being opened; try again shortly"}
		}
		a.dropTicketLocked(e.Value.(*ticket).hash)
	}
	t.hash = h
	a.tickets[h] = t
	if a.byUser[t.userID] == nil {
		a.byUser[t.userID] = make(map[[32]byte]*ticket)
	}
	a.byUser[t.userID][h] = t
	t.idle = a.unused.PushBack(t)
	return nil
}

// dropExpiredLocked drops the tickets that expired unused. They are the first of a.unused: a ticket joins
// it when issued or when its last socket closes, and expires TicketLifetime later.
func (a *Accounts) dropExpiredLocked(now time.Time) {
	for e := a.unused.Front(); e != nil && !e.Value.(*ticket).live(now); e = a.unused.Front() {
		a.dropTicketLocked(e.Value.(*ticket).hash)
	}
}

// dropTicketLocked forgets the ticket under hash h, if there is one.
func (a *Accounts) dropTicketLocked(h [32]byte) {
	t := a.tickets[h]
	if t == nil {
		return
	}
	delete(a.tickets, h)
	if t.idle != nil {
		a.unused.Remove(t.idle)
		t.idle = nil
	}
	mine := a.byUser[t.userID]
	delete(mine, h)
	if len(mine) == 0 {
		delete(a.byUser, t.userID)
	}
	if t.expiry != nil {
		t.expiry.Stop()
		t.expiry = nil
	}
}

// ticketOpened counts a session the ticket opened. The first one starts the timer that ends the login's
// sockets when its token expires.
func (a *Accounts) ticketOpened(t *ticket) {
	if t.idle != nil {
		a.unused.Remove(t.idle)
		t.idle = nil
	}
	if t.open++; t.open == 1 && t.expiry == nil {
		userID, user, tokenID := t.userID, t.username, t.tokenID
		t.expiry = time.AfterFunc(time.Until(t.tokenExpires), func() { a.endSession(userID, user, tokenID) })
	}
}

// ticketClosed is called once for each session a ticket opened, when it ends (or its handshake fails after
// Authenticate): the ticket's lifetime runs again from the last close.
func (a *Accounts) ticketClosed(t *ticket) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if t.open--; t.open == 0 {
		t.expires = time.Now().Add(a.cfg.TicketLifetime)
		if t.expiry != nil {
			t.expiry.Stop()
			t.expiry = nil
		}
		if a.tickets[t.hash] == t { // not forgotten meanwhile
			t.idle = a.unused.PushBack(t)
		}
	}
}

// forgetTickets drops every ticket of a user whose account or key was withdrawn; its open sessions are
// ended by relay.Server.Revoke.
func (a *Accounts) forgetTickets(userID string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for h := range a.byUser[userID] {
		a.dropTicketLocked(h)
	}
}

// endSession ends one login's tickets and sockets: at logout, and when its token expires. A handshake that
// passed Authenticate just before can register its socket after the sweep; a second sweep, once every
// such handshake has ended, closes it too.
func (a *Accounts) endSession(userID, user, tokenID string) {
	a.mu.Lock()
	for h, t := range a.byUser[userID] {
		if t.tokenID == tokenID {
			a.dropTicketLocked(h)
		}
	}
	a.mu.Unlock()
	a.srv.EndSession(user, tokenID)
	time.AfterFunc(a.srv.Config().HandshakeTimeout+time.Second, func() { a.srv.EndSession(user, tokenID) })
}
