package relay

import (
	"crypto/sha256"
	"errors"
	"net/http"
	"time"
)

// errNoTicket and its siblings refuse a WebSocket handshake (401); the client learns only "not logged in".
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
	var raw secret
	raw.fill()
	value := b64.EncodeToString(raw[:])
	raw.wipe()
	now := time.Now()
	a.mu.Lock()
	if len(a.tickets) >= a.cfg.MaxTickets {
		for h, t := range a.tickets {
			if !t.live(now) {
				delete(a.tickets, h)
			}
		}
	}
	full := len(a.tickets) >= a.cfg.MaxTickets
	if !full {
		a.tickets[sha256.Sum256([]byte(value))] = &ticket{userID: s.UserID, username: s.Username, tokenID: s.TokenID,
			fingerprint: info.Fingerprint, expires: now.Add(a.cfg.TicketLifetime)}
	}
	a.mu.Unlock()
	if full {
		writeError(w, http.StatusServiceUnavailable, "busy", "too many WebSocket sessions are being opened; try again shortly")
		return
	}
	// No Max-Age: the browser keeps the cookie for the browsing session, and the relay decides how long the
	// ticket is good (a socket may stay open far longer than TicketLifetime).
	setCookie(w, ticketCookie, value, "/ws", 0)
	writeJSON(w, http.StatusOK, map[string]any{"fingerprint": info.Fingerprint, "ticket_lifetime": int(a.cfg.TicketLifetime.Seconds())})
}

// authenticateWS is the relay's Server.Authenticate: a handshake without a ticket cookie is an anonymous
// session; one with a ticket is the ticket's user if the ticket is live, the session cookie is still the
// login that made it, and the key it proved is still the user's published key. A ticket shown with another
// login's session cookie is burned.
func (a *Accounts) authenticateWS(r *http.Request) (Identity, error) {
	c, err := r.Cookie(ticketCookie)
	if err != nil || c.Value == "" {
		return Identity{}, nil
	}
	h := sha256.Sum256([]byte(c.Value))
	a.mu.Lock()
	t, ok := a.tickets[h]
	if ok && !t.live(time.Now()) {
		delete(a.tickets, h)
		ok = false
	}
	a.mu.Unlock()
	if !ok {
		return Identity{}, errBadTicket
	}
	sc, err := r.Cookie(sessionCookie)
	if err != nil {
		return Identity{}, errTicketSession
	}
	s, err := a.dir.Authenticate(sc.Value)
	if err == nil && (s.UserID != t.userID || s.TokenID != t.tokenID) {
		err = errTicketSession
	}
	if err != nil {
		a.mu.Lock()
		delete(a.tickets, h)
		a.mu.Unlock()
		return Identity{}, err
	}
	if err := a.dir.CheckSender(t.userID, t.fingerprint); err != nil {
		return Identity{}, err
	}
	if a.srv.userConns(t.username) >= a.cfg.MaxSessionsPerUser {
		return Identity{}, errTooManySess
	}
	a.mu.Lock()
	if a.tickets[h] != t { // forgotten (revoked, key replaced) while we checked
		a.mu.Unlock()
		return Identity{}, errBadTicket
	}
	t.open++
	a.mu.Unlock()
	return Identity{User: t.username, ended: func() { a.ticketClosed(t) }}, nil
}

// ticketClosed is called once for each session a ticket opened, when it ends (or its handshake fails after
// authenticateWS): the ticket's lifetime runs again from the last close.
func (a *Accounts) ticketClosed(t *ticket) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if t.open--; t.open == 0 {
		t.expires = time.Now().Add(a.cfg.TicketLifetime)
	}
}

// forgetTickets drops every ticket of a user whose account or key was withdrawn; its open sessions are
// ended by Server.Revoke.
func (a *Accounts) forgetTickets(userID string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for h, t := range a.tickets {
		if t.userID == userID {
			delete(a.tickets, h)
		}
	}
}
