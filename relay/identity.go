package relay

import "net/http"

// Identity is who a WebSocket session belongs to, as established when it started. The zero Identity is an
// anonymous session.
type Identity struct {
	// User is the logged-in user's account name, stamped on the presence events of the user's memberships.
	User string
	// Session names the login (the access token's id) the socket was opened with, so that logging out or
	// the token's expiry ends exactly that login's sockets (Server.EndSession).
	Session string
	// Ended, when set, is called once when the session ends, or when its handshake fails after
	// Authenticate gave it.
	Ended func()
}

// Authenticator establishes who a WebSocket session belongs to (Config.Authenticator).
type Authenticator interface {
	// Authenticate returns the Identity of the session a handshake request opens. An error refuses the
	// handshake with 401 "not logged in" and tells the client nothing more. It is not asked about a handshake
	// that declares itself anonymous (/ws?anonymous=1).
	Authenticate(*http.Request) (Identity, error)
}

// SessionCount returns how many WebSocket sessions the logged-in user holds.
func (s *Server) SessionCount(user string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byUser[user])
}

// EndSession ends every socket of one login of user (session is the access token's id) at once, as Revoke
// does for all of a user's sockets: each membership they hold is removed (the other members see it leave,
// and the user's place is free at once), the client is told closed "revoked", and the socket is closed with
// 1008. Logging out and the token's expiry call it.
func (s *Server) EndSession(user, session string) {
	if user == "" || session == "" {
		return
	}
	s.mu.Lock()
	var conns []*conn
	for c := range s.byUser[user] {
		if c.identity.Session == session {
			conns = append(conns, c)
		}
	}
	s.mu.Unlock()
	for _, c := range conns {
		s.table.Remove(c, c.members(), reasonRevoked)
		c.kill(closeRevoked)
	}
}

// AuthenticatorFunc is a function used as an Authenticator.
type AuthenticatorFunc func(*http.Request) (Identity, error)

// Authenticate returns f(r).
func (f AuthenticatorFunc) Authenticate(r *http.Request) (Identity, error) { return f(r) }
