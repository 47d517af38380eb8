package accounts_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/cleanrelay/cleanrelay/keydir"
	"github.com/cleanrelay/cleanrelay/relay"
	"github.com/cleanrelay/cleanrelay/relay/accounts"
	"github.com/cleanrelay/cleanrelay/relay/client"
	"github.com/cleanrelay/cleanrelay/relay/internal/relaytest"
)

// dialURL opens a WebSocket at url (the relay's /ws with a query) with the user's cookies, as a browser
// sends them with every handshake.
func (u *apiUser) dialURL(url string) (*client.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, url, &client.Options{Header: u.cookieHeader()})
	if err == nil {
		u.t.Cleanup(func() { c.Close() })
	}
	return c, err
}

// An anonymous room never learns an account, whatever cookies the browsers of its members hold; a socket
// that declares itself anonymous ignores the cookies, so a stale ticket cannot refuse it.
func TestAnonymousRoomCarriesNoAccount(t *testing.T) {
	ar := startAccounts(t, relay.Config{}, keydir.Config{})
	alice, bob := ar.keyedUser(t, "alice"), ar.keyedUser(t, "bob")

	// Logged-in sockets (session and ticket cookies) that create and join an anonymous room.
	ca, cb := alice.mustDial(), bob.mustDial()
	r := relaytest.MustCreate(t, ca, 2)
	relaytest.MustJoin(t, cb, r.ID, r.Cap)
	if ev := relaytest.NextEvent(t, ca); ev.Event != "join" || ev.User != "" {
		t.Fatalf("the creator of an anonymous room saw %+v, want a join without a user", ev)
	}

	// A socket declared anonymous is anonymous even with a good ticket: the dialog does not admit it.
	room, capability := alice.dialog("bob")
	alice.ticket()
	cx, err := alice.dialURL(ar.ws + "?anonymous=1")
	if err != nil {
		t.Fatalf("anonymous socket with a good ticket: %v", err)
	}
	_, err = cx.Join(relaytest.Ctx10s(t), room, capability)
	relaytest.WantError(t, err, "denied")

	// A stale ticket cookie (the relay restarted, or the ticket expired) does not refuse an anonymous socket.
	alice.cookies["ws_ticket"] = &http.Cookie{Name: "ws_ticket", Value: "c3RhbGU", Path: "/ws"}
	cs, err := alice.dialURL(ar.ws + "?anonymous=1")
	if err != nil {
		t.Fatalf("anonymous socket with a stale ticket: %v", err)
	}
	relaytest.MustCreate(t, cs, 2)
	// Without the declaration the handshake claims a login, and a stale ticket still refuses it: a socket
	// that wanted to be logged in never silently becomes anonymous.
	if _, err := alice.dialURL(ar.ws); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("stale ticket without the declaration: %v", err)
	}
}

// closedWith drains c until it ends and checks its close code and reason; no frame or dialog notice may
// arrive on the way.
func closedWith(t *testing.T, c *client.Conn, code int, text string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-c.Events():
			if !ok {
				var ce *websocket.CloseError
				if !errors.As(c.Err(), &ce) || ce.Code != code || ce.Text != text {
					t.Fatalf("connection ended with %v, want %d %s", c.Err(), code, text)
				}
				return
			}
			if ev.Kind == client.KindFrame || ev.Kind == client.KindDialog {
				t.Fatalf("got %+v on a socket whose session ended", ev)
			}
		case <-timeout:
			t.Fatal("the socket of an ended session is still open after 10s")
		}
	}
}

// Logging out ends every socket of that login at once; the user's place in a dialog is free for the next
// login, and another login of the same user goes on.
func TestLogoutEndsSessionSockets(t *testing.T) {
	ar := startAccounts(t, relay.Config{Grace: time.Hour}, keydir.Config{})
	alice, bob := ar.keyedUser(t, "alice"), ar.keyedUser(t, "bob")
	other := ar.newUser(t, "alice") // alice's second login, in another browser
	other.login()
	other.key = alice.key
	room, capability := alice.dialog("bob")
	ca, cb, co := alice.mustDial(), bob.mustDial(), other.mustDial()
	ra := relaytest.MustJoin(t, ca, room, capability)
	relaytest.MustJoin(t, cb, room, capability)
	relaytest.NextEvent(t, ca) // bob's join

	alice.want(alice.do("POST", "/api/logout", nil), http.StatusNoContent, "")
	closedWith(t, ca, websocket.ClosePolicyViolation, "revoked")
	if ev := relaytest.NextEvent(t, cb); ev.Event != "leave" || ev.Member != ra.Member {
		t.Fatalf("bob got %+v, want alice's membership to leave", ev)
	}
	// Bob re-opening the dialog notifies alice's other login only; it can take the free place at once.
	bob.dialog("alice")
	if ev := relaytest.NextEvent(t, co); ev.Kind != client.KindDialog || ev.User != "bob" {
		t.Fatalf("alice's other login got %+v, want the dialog notice", ev)
	}
	relaytest.MustJoin(t, co, room, capability)
	// A resume token of the ended login opens nothing, not even from an anonymous socket.
	cx, err := alice.dialURL(ar.ws + "?anonymous=1")
	if err != nil {
		t.Fatal(err)
	}
	_, err = cx.Resume(relaytest.Ctx10s(t), ra.Resume, 0)
	relaytest.WantError(t, err, "bad_token")
}

// When the login's token expires, its sockets end, as at logout.
func TestTokenExpiryEndsSessionSockets(t *testing.T) {
	const left = 3 * time.Second
	// Tokens are issued an hour (the shortest lifetime) minus left before now, so they expire in left.
	// Keys and signatures made now are judged with that much clock skew allowed.
	ar := startAccounts(t, relay.Config{}, keydir.Config{TokenLifetime: time.Hour, MaxClockSkew: 2 * time.Hour,
		Now: func() time.Time { return time.Now().Add(left - time.Hour) }})
	ar.keyedUser(t, "bob")
	alice := ar.keyedUser(t, "alice") // her token expires left after this login
	room, capability := alice.dialog("bob")
	ca := alice.mustDial()
	relaytest.MustJoin(t, ca, room, capability)
	closedWith(t, ca, websocket.ClosePolicyViolation, "revoked")
}

// One account cannot fill the ticket table for everyone: it holds at most MaxTicketsPerUser tickets.
func TestTicketsBoundedPerUser(t *testing.T) {
	ar := startAccounts(t, relay.Config{}, keydir.Config{}, accounts.Config{MaxTickets: 6, MaxTicketsPerUser: 2, MaxSessionsPerUser: 8})
	mallory, alice := ar.keyedUser(t, "mallory"), ar.keyedUser(t, "alice")
	for i := range 20 {
		mallory.ticket() // each drops mallory's oldest idle ticket
		if i == 0 {
			mallory.mustDial() // (mustDial proves again) two sockets hold two tickets
		}
	}
	// Alice still gets her tickets and sockets.
	alice.mustDial()
	alice.mustDial()
	// Two tickets of mallory's hold open sockets: a third proof is refused for mallory alone.
	m2 := ar.newUser(t, "mallory")
	m2.login()
	m2.key = mallory.key
	m2.mustDial()
	r := m2.do("POST", "/api/session/challenge", nil)
	ch := r.body["challenge"].(string)
	m2.want(m2.do("POST", "/api/session/proof", map[string]string{"challenge": ch, "signature": detachSign(t, m2.key, ch)}),
		http.StatusTooManyRequests, "rate_limited")
}

// Accounts that make session proofs and never use them cannot fill the ticket table for everyone: a new proof
// takes the place of the ticket unused longest, and only tickets that hold sockets keep their places.
func TestTicketTableMakesWay(t *testing.T) {
	ar := startAccounts(t, relay.Config{}, keydir.Config{}, accounts.Config{MaxTickets: 6, MaxTicketsPerUser: 2, MaxSessionsPerUser: 8})
	holder := ar.keyedUser(t, "holder")
	holder.mustDial() // a ticket that holds a socket
	holder.ticket()
	keep := holder.cookieHeader() // a second ticket of holder's, which will hold a socket too
	if _, err := holder.dial(); err != nil {
		t.Fatal(err)
	}
	var flooders []*apiUser
	for _, name := range []string{"mallory", "trudy", "eve"} {
		flooders = append(flooders, ar.keyedUser(t, name))
	}
	for range 5 { // 30 proofs by three accounts, against a table of 6
		for _, f := range flooders {
			f.ticket()
		}
	}
	// Alice's proof takes the place of a flooder's unused ticket (before: 503 busy), and her socket opens.
	alice := ar.keyedUser(t, "alice")
	alice.mustDial()
	// Holder's tickets were never dropped: the one that opened a socket opens another.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, ar.ws, &client.Options{Header: keep})
	if err != nil {
		t.Fatalf("a ticket holding a socket was dropped: %v", err)
	}
	c.Close()

	// Only a table of tickets that all hold sockets refuses a proof.
	full := startAccounts(t, relay.Config{}, keydir.Config{}, accounts.Config{MaxTickets: 2, MaxTicketsPerUser: 2, MaxSessionsPerUser: 8})
	a, b := full.keyedUser(t, "alice"), full.keyedUser(t, "bob")
	a.mustDial()
	b.mustDial()
	r := a.do("POST", "/api/session/challenge", nil)
	ch := r.body["challenge"].(string)
	a.want(a.do("POST", "/api/session/proof", map[string]string{"challenge": ch, "signature": detachSign(t, a.key, ch)}),
		http.StatusServiceUnavailable, "busy")
}

// Opening dialogs is rate limited per caller, and a burst of opens of one dialog tells the other user
// once, so a flood cannot close the other user's sessions as slow.
func TestDialogOpenRateAndNotices(t *testing.T) {
	ar := startAccounts(t, relay.Config{}, keydir.Config{DialogBurst: 1000})
	mallory, alice, bob := ar.keyedUser(t, "mallory"), ar.keyedUser(t, "alice"), ar.keyedUser(t, "bob")
	cb := bob.mustDial()
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 25 {
				mallory.do("POST", "/api/dialogs/bob", nil)
			}
		}()
	}
	wg.Wait()
	alice.dialog("bob") // a marker: every notice of mallory's came before it
	from := []string{}
	for {
		ev := relaytest.NextEvent(t, cb)
		if ev.Kind != client.KindDialog {
			t.Fatalf("bob got %+v", ev)
		}
		from = append(from, ev.User)
		if ev.User == "alice" {
			break
		}
	}
	if len(from) != 2 || from[0] != "mallory" {
		t.Fatalf("bob was told %v, want mallory once, then alice", from)
	}

	// The default rate: a burst of 10, then 429.
	ar2 := startAccounts(t, relay.Config{}, keydir.Config{})
	m, v := ar2.keyedUser(t, "mallory"), ar2.keyedUser(t, "victim")
	_ = v
	for range 10 {
		m.want(m.do("POST", "/api/dialogs/victim", nil), http.StatusOK, "")
	}
	m.want(m.do("POST", "/api/dialogs/victim", nil), http.StatusTooManyRequests, "rate_limited")
}

// Key lookups are rate limited per caller, like search.
func TestKeyLookupRateLimited(t *testing.T) {
	ar := startAccounts(t, relay.Config{}, keydir.Config{KeyLookupBurst: 5, KeyLookupInterval: time.Hour})
	alice, bob := ar.keyedUser(t, "alice"), ar.keyedUser(t, "bob")
	for i := range 5 {
		name := "bob"
		if i%2 == 1 {
			name = "nobody" // misses cost the same
		}
		alice.do("GET", "/api/users/"+name+"/key", nil)
	}
	alice.want(alice.do("GET", "/api/users/bob/key", nil), http.StatusTooManyRequests, "rate_limited")
	bob.want(bob.do("GET", "/api/users/alice/key", nil), http.StatusOK, "")
}

// A login that finds the bcrypt queue full is answered 503 busy with Retry-After, not queued.
func TestLoginBusyAnswer(t *testing.T) {
	ar := startAccounts(t, relay.Config{}, keydir.Config{MaxConcurrentHashes: 1, MaxHashQueue: 1, MaxHashWait: time.Millisecond})
	var wg sync.WaitGroup
	var mu sync.Mutex
	busy := 0
	for i := range 50 {
		wg.Go(func() {
			u := ar.newUser(t, fmt.Sprint("flood", i))
			r := u.do("POST", "/api/login", map[string]string{"username": u.name, "password": testPassword})
			if r.status == http.StatusServiceUnavailable && r.code() == "busy" && r.hdr.Get("Retry-After") == "1" {
				mu.Lock()
				busy++
				mu.Unlock()
			} else if r.status != http.StatusUnauthorized {
				t.Errorf("login: %d %s", r.status, r.raw)
			}
		})
	}
	wg.Wait()
	if busy == 0 {
		t.Fatal("50 logins at once with one bcrypt slot and a queue of one: none was answered busy")
	}
}
