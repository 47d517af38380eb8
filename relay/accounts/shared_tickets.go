package accounts

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"net/http"
	"time"

	"github.com/cleanrelay/cleanrelay/keydir"
)

// WebSocket tickets across the nodes of a cluster (docs/cluster.md §5). With a key every node shares, a
// ticket carries its own proof: version ‖ issued (Unix milliseconds) ‖ 16 random bytes ‖ HMAC-SHA-256 under the
// key of those and of the login (user id, token id) and the key it proved (fingerprint, publication time). A
// node that does not hold the ticket takes it while it is within its lifetime from being issued, the session
// cookie is that login, and the key is still the published one; from then on the node holds it as one it
// issued (it stays good there while a socket opened with it is open, and for the lifetime after the last one
// closed). A ticket burned on one node (shown with another login's session cookie) is burned on every node.

const (
	sharedTicketVersion = 1
	sharedTicketBytes   = 1 + 8 + 16 + sha256.Size
	// ticketSkew is how far ahead of this node's clock a ticket's issue time may be (another node's clock).
	ticketSkew = 5 * time.Second
)

// sharedTickets is the cluster's part of the tickets. Static after ShareTickets but for burned.
type sharedTickets struct {
	key  []byte
	burn func(h [32]byte, until time.Time) // tells the other nodes of a ticket burned here
	// Guarded by Accounts.mu: tickets burned here or on another node, until they would be too old to take.
	burned map[[32]byte]time.Time
}

// ShareTickets makes the tickets of this node good on every node that has the same key (32 bytes, derived
// from the cluster secret), and burn tell the other nodes of a ticket burned here (TicketBurned there). Call it
// once, before serving.
func (a *Accounts) ShareTickets(key []byte, burn func(h [32]byte, until time.Time)) {
	a.shared.Store(&sharedTickets{key: key, burn: burn, burned: make(map[[32]byte]time.Time)})
}

// TicketBurned takes in a ticket burned on another node: it no longer opens a socket here.
func (a *Accounts) TicketBurned(h [32]byte, until time.Time) {
	s := a.shared.Load()
	if s == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.dropTicketLocked(h)
	a.keepBurnedLocked(s, h, until)
}

// keepBurnedLocked remembers a burned ticket until it would be too old to take. The set holds at most
// MaxTickets: the expired go first, then any one.
func (a *Accounts) keepBurnedLocked(s *sharedTickets, h [32]byte, until time.Time) {
	now := time.Now()
	if !until.After(now) {
		return
	}
	if until.After(now.Add(a.cfg.TicketLifetime + ticketSkew)) {
		until = now.Add(a.cfg.TicketLifetime + ticketSkew)
	}
	if len(s.burned) >= a.cfg.MaxTickets {
		for b, u := range s.burned {
			if !u.After(now) {
				delete(s.burned, b)
			}
		}
		for b := range s.burned {
			if len(s.burned) < a.cfg.MaxTickets {
				break
			}
			delete(s.burned, b)
		}
	}
	s.burned[h] = until
}

// burnLocked burns the ticket under h here and on every other node. a.mu is held.
func (a *Accounts) burnLocked(h [32]byte, t *ticket) {
	a.dropTicketLocked(h)
	s := a.shared.Load()
	if s == nil || t == nil {
		return
	}
	until := t.issued.Add(a.cfg.TicketLifetime + ticketSkew)
	a.keepBurnedLocked(s, h, until)
	if s.burn != nil {
		go s.burn(h, until)
	}
}

// mintTicket makes a shared ticket for the login s that proved key.
func (a *Accounts) mintTicket(sh *sharedTickets, s keydir.Session, key keydir.KeyInfo, now time.Time) string {
	var raw [sharedTicketBytes]byte
	raw[0] = sharedTicketVersion
	binary.BigEndian.PutUint64(raw[1:9], uint64(now.UnixMilli()))
	rand.Read(raw[9:25])
	copy(raw[25:], ticketMAC(sh.key, raw[:25], s.UserID, s.TokenID, key))
	out := base64.RawURLEncoding.EncodeToString(raw[:])
	clear(raw[:])
	return out
}

func ticketMAC(k, head []byte, userID, tokenID string, key keydir.KeyInfo) []byte {
	m := hmac.New(sha256.New, k)
	m.Write([]byte("cleanrelay ws ticket v1\x00"))
	m.Write(head)
	var pub [8]byte
	binary.BigEndian.PutUint64(pub[:], uint64(key.Published.UnixMilli()))
	for _, s := range []string{userID, tokenID, key.Fingerprint} {
		m.Write([]byte(s))
		m.Write([]byte{0})
	}
	m.Write(pub[:])
	return m.Sum(nil)
}

// adoptTicket takes a shared ticket issued on another node (or issued here and since dropped from the table)
// into the table, when it is within its lifetime, not burned, made for the login of the request's session
// cookie, and for the key that login's user publishes now.
func (a *Accounts) adoptTicket(sh *sharedTickets, r *http.Request, value string, h [32]byte) (*ticket, error) {
	raw, err := base64.RawURLEncoding.DecodeString(value)
	defer clear(raw)
	if err != nil || len(raw) != sharedTicketBytes || raw[0] != sharedTicketVersion {
		return nil, errBadTicket
	}
	now := time.Now()
	issued := time.UnixMilli(int64(binary.BigEndian.Uint64(raw[1:9])))
	if issued.After(now.Add(ticketSkew)) || !now.Before(issued.Add(a.cfg.TicketLifetime)) {
		return nil, errBadTicket
	}
	a.mu.Lock()
	_, burned := sh.burned[h]
	a.mu.Unlock()
	if burned {
		return nil, errBadTicket
	}
	sc, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil, errTicketSession
	}
	s, err := a.dir.Authenticate(sc.Value)
	if err != nil {
		return nil, err
	}
	p, err := a.dir.User(s.Username)
	if err != nil || p.Key == nil {
		return nil, errBadTicket
	}
	if !hmac.Equal(raw[25:], ticketMAC(sh.key, raw[:25], s.UserID, s.TokenID, *p.Key)) {
		return nil, errBadTicket // forged, for another login, or for a key no longer published
	}
	t := &ticket{userID: s.UserID, username: s.Username, tokenID: s.TokenID, tokenExpires: s.Expires,
		fingerprint: p.Key.Fingerprint, issued: issued, expires: issued.Add(a.cfg.TicketLifetime)}
	a.mu.Lock()
	defer a.mu.Unlock()
	if held := a.tickets[h]; held != nil { // taken meanwhile by another handshake
		return held, nil
	}
	if perr := a.addTicketLocked(h, t, now); perr != nil {
		return nil, perr
	}
	return t, nil
}
