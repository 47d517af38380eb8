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
// a single-use WebSocket ticket in a cookie only /ws receives. Opening /ws with it makes the WebSocket a
// logged-in session; a stolen session cookie alone cannot do that.
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
			if now.After(t.expires) {
				delete(a.tickets, h)
			}
		}
	}
	full := len(a.tickets) >= a.cfg.MaxTickets
	if !full {
		a.tickets[sha256.Sum256([]byte(value))] = ticket{userID: s.UserID, username: s.Username, tokenID: s.TokenID,
			fingerprint: info.Fingerprint, expires: now.Add(a.cfg.TicketLifetime)}
	}
	a.mu.Unlock()
	if full {
		writeError(w, http.StatusServiceUnavailable, "busy", "too many WebSocket sessions are being opened; try again shortly")
		return
	}
	setCookie(w, ticketCookie, value, "/ws", int(a.cfg.TicketLifetime.Seconds()))
	writeJSON(w, http.StatusOK, map[string]any{"fingerprint": info.Fingerprint, "ticket_lifetime": int(a.cfg.TicketLifetime.Seconds())})
}

// authenticateWS is the relay's Server.Authenticate: a handshake without a ticket cookie is an anonymous
// session; one with a ticket is the ticket's user if the ticket is fresh and unused, the session cookie is
// still the login that made it, and the key it proved is still the user's published key.
func (a *Accounts) authenticateWS(r *http.Request) (Identity, error) {
	c, err := r.Cookie(ticketCookie)
	if err != nil || c.Value == "" {
		return Identity{}, nil
	}
	h := sha256.Sum256([]byte(c.Value))
	a.mu.Lock()
	t, ok := a.tickets[h]
	delete(a.tickets, h) // single use, whatever happens next
	a.mu.Unlock()
	if !ok || time.Now().After(t.expires) {
		return Identity{}, errBadTicket
	}
	sc, err := r.Cookie(sessionCookie)
	if err != nil {
		return Identity{}, errTicketSession
	}
	s, err := a.dir.Authenticate(sc.Value)
	if err != nil {
		return Identity{}, err
	}
	if s.UserID != t.userID || s.TokenID != t.tokenID {
		return Identity{}, errTicketSession
	}
	if err := a.dir.CheckSender(t.userID, t.fingerprint); err != nil {
		return Identity{}, err
	}
	if a.srv.userConns(t.username) >= a.cfg.MaxSessionsPerUser {
		return Identity{}, errTooManySess
	}
	return Identity{User: t.username}, nil
}

// forgetTickets drops the unused tickets of a user whose account or key was withdrawn.
func (a *Accounts) forgetTickets(userID string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for h, t := range a.tickets {
		if t.userID == userID {
			delete(a.tickets, h)
		}
	}
}
