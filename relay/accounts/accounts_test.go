package accounts_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/gorilla/websocket"

	"github.com/cleanrelay/cleanrelay/keydir"
	"github.com/cleanrelay/cleanrelay/relay"
	"github.com/cleanrelay/cleanrelay/relay/accounts"
	"github.com/cleanrelay/cleanrelay/relay/client"
	"github.com/cleanrelay/cleanrelay/relay/internal/relaytest"
)

const testPassword = "Correct-h0rse"

// accountsRelay is a relay with the accounts API on a real loopback socket, and its admin interface on a
// second loopback listener.
type accountsRelay struct {
	srv   *relay.Server
	dir   *keydir.Directory
	acc   *accounts.Accounts
	http  *httptest.Server
	admin *httptest.Server
	base  string // http://127.0.0.1:PORT
	ws    string // ws://127.0.0.1:PORT/ws
	logs  *relaytest.LogCapture
}

func startAccounts(t testing.TB, cfg relay.Config, dcfg keydir.Config, acfg ...accounts.Config) *accountsRelay {
	t.Helper()
	logs := &relaytest.LogCapture{T: t}
	log := slog.New(logs)
	if dcfg.TokenAlgorithm == "" {
		dcfg.TokenAlgorithm = "EdDSA" // an RSA key per test is slow; RS256 is tested in keydir
	}
	dir, err := keydir.New(dcfg)
	if err != nil {
		t.Fatal(err)
	}
	var ac accounts.Config
	if len(acfg) > 0 {
		ac = acfg[0]
	}
	acc := accounts.New(dir, ac, log)
	cfg.Authenticator = acc
	srv, err := relay.New(cfg, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	acc.Attach(srv)
	hs := httptest.NewServer(acc.Handler(srv.Handler()))
	srv.AllowHost(hs.Listener.Addr().String())
	adm := httptest.NewServer(acc.AdminHandler())
	ar := &accountsRelay{srv: srv, dir: dir, acc: acc, http: hs, admin: adm, base: hs.URL,
		ws: "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws", logs: logs}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Close(ctx); err != nil {
			t.Errorf("relay Close: %v", err)
		}
		hs.Close()
		adm.Close()
		// The clean-server contract: no user names in any log line.
		for _, name := range []string{"alice", "bob", "mallory"} {
			if strings.Contains(strings.ToLower(logs.String()), name) {
				t.Errorf("a log line names a user: %s", logs.String())
			}
		}
	})
	return ar
}

// user is one browser-like API client: its cookies, handled by hand because the cookies are Secure and
// the test server speaks plain http on loopback (as a browser allows for localhost).
type apiUser struct {
	t       testing.TB
	ar      *accountsRelay
	name    string
	cookies map[string]*http.Cookie
	key     *openpgp.Entity
}

func (ar *accountsRelay) newUser(t testing.TB, name string) *apiUser {
	return &apiUser{t: t, ar: ar, name: name, cookies: map[string]*http.Cookie{}}
}

type apiResp struct {
	status int
	body   map[string]any
	hdr    http.Header
	raw    []byte
}

func (r apiResp) code() string { s, _ := r.body["error"].(string); return s }

// do sends a request with the user's cookies and keeps the cookies it sets. body: nil, a string (sent as
// is) or anything else (sent as JSON).
func (u *apiUser) do(method, path string, body any, hdr ...string) apiResp {
	u.t.Helper()
	var rd io.Reader
	ct := "application/json"
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, u.ar.base+path, rd)
	if err != nil {
		u.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", ct)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	for _, c := range u.cookies {
		if strings.HasPrefix(path, c.Path) {
			req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
		}
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		u.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	for _, c := range res.Cookies() {
		if c.MaxAge < 0 {
			delete(u.cookies, c.Name)
		} else {
			u.cookies[c.Name] = c
		}
	}
	r := apiResp{status: res.StatusCode, hdr: res.Header, raw: raw}
	json.Unmarshal(raw, &r.body)
	return r
}

func (u *apiUser) want(r apiResp, status int, code string) {
	u.t.Helper()
	if r.status != status || r.code() != code {
		u.t.Fatalf("got %d %s, want %d %q", r.status, r.raw, status, code)
	}
}

func (u *apiUser) register() {
	u.t.Helper()
	r := u.do("POST", "/api/register", map[string]string{"username": u.name, "full_name": "Test " + u.name,
		"email": u.name + "@example.org", "password": testPassword})
	u.want(r, http.StatusCreated, "")
}

func (u *apiUser) login() {
	u.t.Helper()
	r := u.do("POST", "/api/login", map[string]string{"username": u.name, "password": testPassword})
	u.want(r, http.StatusOK, "")
}

// publishKey makes a key (Ed25519/Cv25519 unless given) and publishes it with a proof.
func (u *apiUser) publishKey(e *openpgp.Entity) string {
	u.t.Helper()
	if e == nil {
		var err error
		e, err = openpgp.NewEntity(u.name, "", u.name+"@example.org", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
		if err != nil {
			u.t.Fatal(err)
		}
	}
	u.key = e
	r := u.do("POST", "/api/key/challenge", nil)
	u.want(r, http.StatusOK, "")
	ch := r.body["challenge"].(string)
	r = u.do("PUT", "/api/key", map[string]string{"key": pubArmor(u.t, e), "challenge": ch, "signature": detachSign(u.t, e, ch)})
	u.want(r, http.StatusOK, "")
	return r.body["key"].(map[string]any)["fingerprint"].(string)
}

// ticket proves possession of the key for a WebSocket session; the ticket lands in the cookie jar.
func (u *apiUser) ticket() {
	u.t.Helper()
	r := u.do("POST", "/api/session/challenge", nil)
	u.want(r, http.StatusOK, "")
	ch := r.body["challenge"].(string)
	u.want(u.do("POST", "/api/session/proof", map[string]string{"challenge": ch, "signature": detachSign(u.t, u.key, ch)}), http.StatusOK, "")
}

func (u *apiUser) cookieHeader() http.Header {
	h := http.Header{}
	var parts []string
	for _, c := range u.cookies {
		parts = append(parts, c.Name+"="+c.Value)
	}
	if len(parts) > 0 {
		h.Set("Cookie", strings.Join(parts, "; "))
	}
	return h
}

// dial opens a WebSocket with the user's cookies, then forgets the ticket, so that the user's next dial is
// anonymous unless the test proves the key again or puts a ticket back.
func (u *apiUser) dial() (*client.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, u.ar.ws, &client.Options{Header: u.cookieHeader()})
	delete(u.cookies, "ws_ticket")
	if err == nil {
		u.t.Cleanup(func() { c.Close() })
	}
	return c, err
}

func (u *apiUser) mustDial() *client.Conn {
	u.t.Helper()
	u.ticket()
	c, err := u.dial()
	if err != nil {
		u.t.Fatalf("dial as %s: %v", u.name, err)
	}
	return c
}

// keyedUser is a new user who has registered, logged in and published a key.
func (ar *accountsRelay) keyedUser(t testing.TB, name string) *apiUser {
	u := ar.newUser(t, name)
	u.register()
	u.login()
	u.publishKey(nil)
	return u
}

// dialog opens the dialog with peer and returns room and capability.
func (u *apiUser) dialog(peer string) (string, string) {
	u.t.Helper()
	r := u.do("POST", "/api/dialogs/"+peer, nil)
	u.want(r, http.StatusOK, "")
	return r.body["room"].(string), r.body["cap"].(string)
}

func pubArmor(t testing.TB, e *openpgp.Entity) string {
	var b bytes.Buffer
	w, _ := armor.Encode(&b, openpgp.PublicKeyType, nil)
	if err := e.Serialize(w); err != nil {
		t.Fatal(err)
	}
	w.Close()
	return b.String()
}

func detachSign(t testing.TB, e *openpgp.Entity, text string) string {
	var b bytes.Buffer
	if err := openpgp.ArmoredDetachSign(&b, e, strings.NewReader(text), nil); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestAccountsRegisterAPI(t *testing.T) {
	ar := startAccounts(t, relay.Config{}, keydir.Config{})
	u := ar.newUser(t, "alice")
	u.register()
	host := strings.TrimPrefix(ar.base, "http://")
	reg := func(name, pw, email string) map[string]string {
		return map[string]string{"username": name, "full_name": "Someone", "email": email, "password": pw}
	}
	cases := []struct {
		name   string
		body   any
		hdr    []string
		status int
		code   string
	}{
		{"duplicate upper", reg("ALICE", testPassword, ""), nil, 409, "username_taken"},
		{"duplicate fullwidth", reg("ａｌｉｃｅ", testPassword, ""), nil, 409, "username_taken"},
		{"duplicate zero width", reg("ali\u200bce", testPassword, ""), nil, 400, "invalid_username"},
		{"duplicate trailing space", reg("alice ", testPassword, ""), nil, 400, "invalid_username"},
		{"duplicate cyrillic", reg("\u0430lice", testPassword, ""), nil, 400, "invalid_username"},
		{"short name", reg("al", testPassword, ""), nil, 400, "invalid_username"},
		{"short password", reg("bob", "Ab1!", ""), nil, 400, "weak_password"},
		{"no upper", reg("bob", "correct-h0rse", ""), nil, 400, "weak_password"},
		{"no lower", reg("bob", "CORRECT-H0RSE", ""), nil, 400, "weak_password"},
		{"no digit", reg("bob", "Correct-horse", ""), nil, 400, "weak_password"},
		{"no special", reg("bob", "CorrectH0rse", ""), nil, 400, "weak_password"},
		{"73-byte password", reg("bob", "Aa1!"+strings.Repeat("x", 69), ""), nil, 400, "password_too_long"},
		{"bad email", reg("bob", testPassword, "bob@"), nil, 400, "invalid_email"},
		{"email with name", reg("bob", testPassword, "Bob <bob@example.org>"), nil, 400, "invalid_email"},
		{"huge body", `{"username":"bob","full_name":"` + strings.Repeat("x", 1<<20) + `"}`, nil, 413, "body_too_large"},
		{"malformed json", `{"username":`, nil, 400, "bad_json"},
		{"not an object", `["bob"]`, nil, 400, "bad_json"},
		{"two objects", `{"username":"bob"} {}`, nil, 400, "bad_json"},
		{"unknown field", `{"username":"bob","admin":true}`, nil, 400, "bad_json"},
		{"wrong type", `{"username":1}`, nil, 400, "bad_json"},
		{"text/plain", reg("bob", testPassword, ""), []string{"Content-Type", "text/plain"}, 415, "unsupported_media_type"},
		{"form", "username=bob", []string{"Content-Type", "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"},
		{"cross-origin", reg("bob", testPassword, ""), []string{"Origin", "http://evil.example", "Sec-Fetch-Site", "cross-site"}, 403, "cross_origin"},
		{"cross-origin no fetch metadata", reg("bob", testPassword, ""), []string{"Origin", "http://evil.example"}, 403, "cross_origin"},
		{"unknown host", reg("bob", testPassword, ""), []string{"Host", "evil.example"}, 421, "bad_host"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			u := ar.newUser(t, "x")
			u.want(u.do("POST", "/api/register", c.body, c.hdr...), c.status, c.code)
		})
	}
	if n := ar.dir.Stats().Accounts; n != 1 {
		t.Fatalf("%d accounts after refusals, want 1", n)
	}
	// Same-origin with fetch metadata is fine; and the refusals lost nothing.
	bob := ar.newUser(t, "bob")
	bob.want(bob.do("POST", "/api/register", reg("bob", testPassword, "bob@example.org"), "Origin", "http://"+host, "Sec-Fetch-Site", "same-origin"), 201, "")
	if r := bob.do("GET", "/api/register", nil); r.status != http.StatusMethodNotAllowed {
		t.Fatalf("GET /api/register: %d", r.status)
	}
	u.login()
}

func TestAccountsLoginLogout(t *testing.T) {
	ar := startAccounts(t, relay.Config{}, keydir.Config{LoginFreeFailures: 2})
	u := ar.newUser(t, "alice")
	u.register()
	r := u.do("POST", "/api/login", map[string]string{"username": "ALICE", "password": testPassword})
	u.want(r, 200, "")
	c := u.cookies["session"]
	if c == nil || !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || c.Path != "/" ||
		c.MaxAge < 7*24*3600-5 || c.MaxAge > 7*24*3600 {
		t.Fatalf("session cookie %+v", c)
	}
	me := u.do("GET", "/api/me", nil)
	u.want(me, 200, "")
	if me.body["user"].(map[string]any)["username"] != "alice" || me.body["key"] != nil {
		t.Fatalf("me = %s", me.raw)
	}
	old := *c
	u.want(u.do("POST", "/api/logout", nil), 204, "")
	if u.cookies["session"] != nil {
		t.Fatal("logout did not clear the cookie")
	}
	u.cookies["session"] = &old // a copy of the token kept by an attacker
	u.want(u.do("GET", "/api/me", nil), 401, "unauthorized")
	delete(u.cookies, "session")
	u.want(u.do("GET", "/api/me", nil), 401, "unauthorized")

	wrong := u.do("POST", "/api/login", map[string]string{"username": "alice", "password": "Wrong-h0rse"})
	unknown := u.do("POST", "/api/login", map[string]string{"username": "nobody", "password": "Wrong-h0rse"})
	u.want(wrong, 401, "bad_credentials")
	u.want(unknown, 401, "bad_credentials")
	if !bytes.Equal(wrong.raw, unknown.raw) {
		t.Fatalf("unknown user and wrong password answer differently: %s / %s", wrong.raw, unknown.raw)
	}
	u.do("POST", "/api/login", map[string]string{"username": "alice", "password": "Wrong-h0rse"})
	r = u.do("POST", "/api/login", map[string]string{"username": "alice", "password": testPassword})
	u.want(r, 429, "too_many_attempts")
	if r.hdr.Get("Retry-After") == "" {
		t.Fatal("no Retry-After")
	}
	u.want(u.do("GET", "/api/login", nil), 405, "method_not_allowed")
	u.want(u.do("GET", "/api/nothing", nil), 404, "not_found")
}

func TestAccountsKeysSearchDialog(t *testing.T) {
	ar := startAccounts(t, relay.Config{}, keydir.Config{})
	alice, bob, mallory := ar.newUser(t, "alice"), ar.newUser(t, "bob"), ar.newUser(t, "mallory")
	for _, u := range []*apiUser{alice, bob, mallory} {
		u.register()
		u.login()
	}
	// Not logged in: nothing.
	anon := ar.newUser(t, "anon")
	anon.want(anon.do("GET", "/api/users/bob/key", nil), 401, "unauthorized")
	anon.want(anon.do("GET", "/api/users?prefix=b", nil), 401, "unauthorized")

	alice.want(alice.do("POST", "/api/dialogs/bob", nil), 409, "no_key")
	fa := alice.publishKey(nil)
	alice.want(alice.do("POST", "/api/dialogs/bob", nil), 409, "no_key") // bob has none yet
	alice.want(alice.do("GET", "/api/users/bob/key", nil), 404, "no_key")
	fb := bob.publishKey(nil)
	mallory.publishKey(nil)

	r := alice.do("GET", "/api/users/BOB/key", nil)
	alice.want(r, 200, "")
	if k := r.body["key"].(map[string]any); k["fingerprint"] != fb || !strings.Contains(k["armored"].(string), "PUBLIC KEY BLOCK") {
		t.Fatalf("bob's key: %s", r.raw)
	}
	r = alice.do("GET", "/api/users?prefix=b&limit=5", nil)
	alice.want(r, 200, "")
	if us := r.body["users"].([]any); len(us) != 1 || us[0].(map[string]any)["username"] != "bob" {
		t.Fatalf("search: %s", r.raw)
	}
	alice.want(alice.do("GET", "/api/users?prefix=", nil), 400, "bad_request")
	alice.want(alice.do("GET", "/api/users/nobody/key", nil), 404, "not_found")
	alice.want(alice.do("POST", "/api/dialogs/alice", nil), 400, "bad_request")
	alice.want(alice.do("POST", "/api/dialogs/nobody", nil), 404, "not_found")

	// Bob is connected when alice opens the dialog: he is told.
	bob.ticket()
	bobRaw, _, err := websocket.DefaultDialer.Dial(ar.ws, withProto(bob.cookieHeader()))
	if err != nil {
		t.Fatalf("bob raw dial: %v", err)
	}
	defer bobRaw.Close()
	delete(bob.cookies, "ws_ticket")
	readText(t, bobRaw, "hello")

	room, capability := alice.dialog("bob")
	notice := readText(t, bobRaw, "dialog")
	if notice["from"] != "alice" || notice["room"] != room || notice["cap"] != capability {
		t.Fatalf("dialog notice %v", notice)
	}
	if room2, cap2 := bob.dialog("alice"); room2 != room || cap2 != capability {
		t.Fatal("the two users of a dialog got different rooms")
	}

	ca, cb := alice.mustDial(), bob.mustDial()
	ra := relaytest.MustJoin(t, ca, room, capability)
	// Only the two users: mallory (logged in, with a key) and an anonymous session are refused.
	cm := mallory.mustDial()
	_, err = cm.Join(relaytest.Ctx10s(t), room, capability)
	relaytest.WantError(t, err, "denied")
	canon, err := anon.dial()
	if err != nil {
		t.Fatal(err)
	}
	_, err = canon.Join(relaytest.Ctx10s(t), room, capability)
	relaytest.WantError(t, err, "denied")
	// A stolen session cookie without the key is an anonymous session: refused as well.
	thief := ar.newUser(t, "thief")
	thief.cookies["session"] = alice.cookies["session"]
	ct, err := thief.dial()
	if err != nil {
		t.Fatal(err)
	}
	_, err = ct.Join(relaytest.Ctx10s(t), room, capability)
	relaytest.WantError(t, err, "denied")

	rb := relaytest.MustJoin(t, cb, room, capability)
	ev := relaytest.NextEvent(t, ca)
	if ev.Kind != client.KindPresence || ev.Event != "join" || ev.User != "bob" {
		t.Fatalf("alice got %+v, want bob's join stamped with his name", ev)
	}
	if err := ca.Send(ra.Ch, []byte("ciphertext from alice")); err != nil {
		t.Fatal(err)
	}
	if f := relaytest.NextFrame(t, cb); string(f.Payload) != "ciphertext from alice" || f.From != ra.Member {
		t.Fatalf("bob got %+v", f)
	}
	if err := cb.Send(rb.Ch, []byte("reply")); err != nil {
		t.Fatal(err)
	}
	if f := relaytest.NextFrame(t, ca); string(f.Payload) != "reply" {
		t.Fatalf("alice got %+v", f)
	}
	_ = fa
}

func withProto(h http.Header) http.Header {
	h.Set("Sec-WebSocket-Protocol", relay.Subprotocol)
	return h
}

// readText reads text messages from a raw WebSocket until one of type typ.
func readText(t *testing.T, ws *websocket.Conn, typ string) map[string]any {
	t.Helper()
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		mt, msg, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("waiting for %q: %v", typ, err)
		}
		var m map[string]any
		if mt == websocket.TextMessage && json.Unmarshal(msg, &m) == nil && m["t"] == typ {
			return m
		}
	}
}

// TestAccountsWebSocketTickets runs with the relay's own tickets and with tickets shared by a cluster's nodes
// (shared_tickets.go): on one node they behave alike.
func TestAccountsWebSocketTickets(t *testing.T) {
	for _, shared := range []bool{false, true} {
		t.Run(map[bool]string{false: "own", true: "shared"}[shared], func(t *testing.T) { testWebSocketTickets(t, shared) })
	}
}

func testWebSocketTickets(t *testing.T, shared bool) {
	const lifetime = 300 * time.Millisecond
	ar := startAccounts(t, relay.Config{}, keydir.Config{}, accounts.Config{TicketLifetime: lifetime})
	if shared {
		ar.acc.ShareTickets(bytes.Repeat([]byte{7}, 32), nil)
	}
	alice, bob := ar.keyedUser(t, "alice"), ar.keyedUser(t, "bob")
	alice.ticket()
	saved := *alice.cookies["ws_ticket"]
	if saved.Path != "/ws" || !saved.HttpOnly || !saved.Secure || saved.SameSite != http.SameSiteStrictMode || saved.MaxAge != 0 {
		t.Fatalf("ticket cookie %+v", saved)
	}
	dialWith := func(tk http.Cookie) (*client.Conn, error) {
		alice.cookies["ws_ticket"] = &tk
		return alice.dial()
	}
	// identity is the user the relay stamps on c's presence in alice's dialog with bob, as bob's logged-in
	// observer sees it (only a dialog names its members).
	room, capability := alice.dialog("bob")
	observer := bob.mustDial()
	relaytest.MustJoin(t, observer, room, capability)
	identity := func(c *client.Conn) string {
		t.Helper()
		ctx := context.Background()
		j, err := c.Join(ctx, room, capability)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Leave(ctx, j.Ch)
		for { // (skip what the observer's earlier rooms still had to say)
			if ev := relaytest.NextEvent(t, observer); ev.Kind == client.KindPresence && ev.Event == "join" {
				return ev.User
			}
		}
	}
	// A ticket opens several sockets, and stays good past its lifetime while one of them is open.
	first, err := dialWith(saved)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * lifetime)
	second, err := dialWith(saved)
	if err != nil {
		t.Fatalf("second socket with the ticket while the first is open: %v", err)
	}
	if identity(first) != "alice" || identity(second) != "alice" {
		t.Fatal("a socket opened with the ticket is not alice's")
	}
	// After the last socket closed, it is good for its lifetime, then gone.
	first.Close()
	second.Close()
	relaytest.Eventually(t, "the sockets to end", func() bool { return ar.srv.Stats().Conns == 1 })
	third, err := dialWith(saved)
	if err != nil {
		t.Fatalf("reconnect within the lifetime: %v", err)
	}
	if identity(third) != "alice" {
		t.Fatal("the reconnected socket is not alice's")
	}
	third.Close()
	relaytest.Eventually(t, "the socket to end", func() bool { return ar.srv.Stats().Conns == 1 })
	time.Sleep(2 * lifetime)
	if _, err := dialWith(saved); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("ticket after its lifetime: %v", err)
	}
	// A ticket with another login's cookie is refused, and burned: not even its owner can use it then.
	alice.ticket()
	stolen := *alice.cookies["ws_ticket"]
	aliceSession := alice.cookies["session"]
	alice.cookies["session"] = bob.cookies["session"]
	if _, err := alice.dial(); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("ticket with bob's session: %v", err)
	}
	alice.cookies["session"] = aliceSession
	if _, err := dialWith(stolen); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("burned ticket: %v", err)
	}
	// A ticket after logout is refused.
	alice.ticket()
	tk := *alice.cookies["ws_ticket"]
	sess := *alice.cookies["session"]
	alice.want(alice.do("POST", "/api/logout", nil), 204, "")
	alice.cookies["ws_ticket"], alice.cookies["session"] = &tk, &sess
	if _, err := alice.dial(); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("ticket after logout: %v", err)
	}
	// A bad session proof gives no ticket.
	bob.want(bob.do("POST", "/api/session/proof", map[string]string{"challenge": "made up", "signature": "x"}), 400, "bad_proof")
	r := bob.do("POST", "/api/session/challenge", nil)
	other, _ := openpgp.NewEntity("bob", "", "", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	ch := r.body["challenge"].(string)
	bob.want(bob.do("POST", "/api/session/proof", map[string]string{"challenge": ch, "signature": detachSign(t, other, ch)}), 400, "bad_proof")
	if bob.cookies["ws_ticket"] != nil {
		t.Fatal("a failed proof set a ticket")
	}
}

// A sender whose key the operator revokes mid-conversation gets its next frame refused and is
// disconnected; its peer is told; it cannot rejoin.
func TestAccountsRevocationMidConversation(t *testing.T) {
	for _, how := range []string{"revoke-key", "disable"} {
		t.Run(how, func(t *testing.T) {
			ar := startAccounts(t, relay.Config{}, keydir.Config{})
			alice, bob := ar.keyedUser(t, "alice"), ar.keyedUser(t, "bob")
			room, capability := alice.dialog("bob")
			ca, cb := alice.mustDial(), bob.mustDial()
			ra := relaytest.MustJoin(t, ca, room, capability)
			rb := relaytest.MustJoin(t, cb, room, capability)
			relaytest.NextEvent(t, ca) // bob's join
			if err := ca.Send(ra.Ch, []byte("before")); err != nil {
				t.Fatal(err)
			}
			if f := relaytest.NextFrame(t, cb); string(f.Payload) != "before" {
				t.Fatalf("bob got %+v", f)
			}

			adminPost(t, ar, "/admin/"+how, `{"username":"alice"}`, 204)

			// Alice's next frame is refused: bob never gets it. Bob is told that alice's key went (a key notice),
			// and sees her leave.
			ca.Send(ra.Ch, []byte("after revocation"))
			for told, left := false, false; !told || !left; {
				switch ev := relaytest.NextEvent(t, cb); {
				case ev.Kind == client.KindKey && ev.User == "alice" && !told:
					told = true
				case ev.Kind == client.KindPresence && ev.Event == "leave" && ev.Member == ra.Member && !left:
					left = true
				default:
					t.Fatalf("bob got %+v, want alice's leave and a key notice for her", ev)
				}
			}
			// Alice is told and disconnected with 1008 revoked.
			for {
				ev, ok := <-ca.Events()
				if !ok {
					break
				}
				if ev.Kind == client.KindFrame {
					t.Fatalf("alice got a frame after revocation: %+v", ev)
				}
			}
			var ce *websocket.CloseError
			if !errors.As(ca.Err(), &ce) || ce.Code != websocket.ClosePolicyViolation || ce.Text != "revoked" {
				t.Fatalf("alice's connection ended with %v, want 1008 revoked", ca.Err())
			}
			// Bob's side is intact.
			if err := cb.Send(rb.Ch, []byte("still here")); err != nil {
				t.Fatal(err)
			}
			// Alice cannot come back as herself.
			switch how {
			case "revoke-key":
				alice.want(alice.do("POST", "/api/session/challenge", nil), 409, "no_key")
				alice.want(alice.do("POST", "/api/dialogs/bob", nil), 409, "no_key")
			case "disable":
				alice.want(alice.do("POST", "/api/session/challenge", nil), 403, "account_disabled")
				alice.want(alice.do("POST", "/api/login", map[string]string{"username": "alice", "password": testPassword}), 403, "account_disabled")
			}
			cx, err := alice.dial() // no ticket: anonymous at best
			if err != nil {
				t.Fatal(err)
			}
			_, err = cx.Join(relaytest.Ctx10s(t), room, capability)
			relaytest.WantError(t, err, "denied")
		})
	}
}

func adminPost(t *testing.T, ar *accountsRelay, path, body string, want int) []byte {
	t.Helper()
	res, err := http.Post(ar.admin.URL+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != want {
		t.Fatalf("admin %s: %d %s, want %d", path, res.StatusCode, b, want)
	}
	return b
}

func TestAdminInterface(t *testing.T) {
	ar := startAccounts(t, relay.Config{}, keydir.Config{})
	alice := ar.newUser(t, "alice")
	alice.register()

	get := func(path string, hdr ...string) (int, map[string]any) {
		req, _ := http.NewRequest("GET", ar.admin.URL+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			if hdr[i] == "Host" {
				req.Host = hdr[i+1]
			} else {
				req.Header.Set(hdr[i], hdr[i+1])
			}
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var m map[string]any
		json.NewDecoder(res.Body).Decode(&m)
		return res.StatusCode, m
	}
	st, m := get("/admin/stats")
	if st != 200 || m["accounts"] != 1.0 || m["with_key"] != 0.0 {
		t.Fatalf("stats %d %v", st, m)
	}
	if b, _ := json.Marshal(m); strings.Contains(string(b), "alice") {
		t.Fatal("stats name a user")
	}
	if st, _ := get("/admin/accounts"); st != 400 {
		t.Fatalf("account list without names=1: %d", st)
	}
	if st, m := get("/admin/accounts?names=1"); st != 200 || len(m["accounts"].([]any)) != 1 {
		t.Fatalf("account list: %d %v", st, m)
	}
	if st, _ := get("/admin/stats", "Origin", "http://evil.example"); st != 403 {
		t.Fatalf("browser request: %d", st)
	}
	if st, _ := get("/admin/stats", "Sec-Fetch-Site", "cross-site"); st != 403 {
		t.Fatalf("browser request: %d", st)
	}
	if st, _ := get("/admin/stats", "Host", "rebind.example:80"); st != 421 {
		t.Fatalf("non-loopback host: %d", st)
	}
	adminPost(t, ar, "/admin/revoke-key", `{"username":"alice"}`, 409) // no key
	adminPost(t, ar, "/admin/disable", `{"username":"nobody"}`, 404)
	adminPost(t, ar, "/admin/disable", `{"username":"ALICE"}`, 204)
	if st, m := get("/admin/stats"); st != 200 || m["disabled"] != 1.0 {
		t.Fatalf("stats after disable: %v", m)
	}
	// The public listener does not serve the admin interface.
	if r := alice.do("POST", "/admin/disable", `{"username":"alice"}`); r.status == 204 {
		t.Fatal("the public listener served an admin action")
	}
}

// A logged-in user whose dialog socket dropped and who joins the dialog again (a reload forgets the resume
// token) takes the place back at once; the peer sees the old membership leave and the new one join.
func TestAccountsDialogRejoinAfterReload(t *testing.T) {
	ar := startAccounts(t, relay.Config{Grace: time.Hour}, keydir.Config{})
	alice, bob := ar.keyedUser(t, "alice"), ar.keyedUser(t, "bob")
	room, capability := alice.dialog("bob")
	ca, cb := alice.mustDial(), bob.mustDial()
	old := relaytest.MustJoin(t, ca, room, capability)
	relaytest.MustJoin(t, cb, room, capability)
	if ev := relaytest.NextEvent(t, ca); ev.Event != "join" || ev.User != "bob" {
		t.Fatalf("alice got %+v", ev)
	}
	ca.Close()
	if ev := relaytest.NextEvent(t, cb); ev.Event != "away" || ev.Member != old.Member {
		t.Fatalf("bob got %+v, want alice away", ev)
	}
	// Someone else's place is not taken over: bob joining from a second socket finds the room full.
	_, err := bob.mustDial().Join(relaytest.Ctx10s(t), room, capability)
	relaytest.WantError(t, err, "room_full")
	again := relaytest.MustJoin(t, alice.mustDial(), room, capability)
	if again.Member == old.Member {
		t.Fatal("the rejoin got the old member id")
	}
	if ev := relaytest.NextEvent(t, cb); ev.Event != "leave" || ev.Member != old.Member {
		t.Fatalf("bob got %+v, want alice's old membership to leave", ev)
	}
	if ev := relaytest.NextEvent(t, cb); ev.Event != "join" || ev.Member != again.Member || ev.User != "alice" {
		t.Fatalf("bob got %+v, want alice to join again", ev)
	}
}

func TestAccountsSessionLimit(t *testing.T) {
	ar := startAccounts(t, relay.Config{}, keydir.Config{}, accounts.Config{MaxSessionsPerUser: 2})
	alice := ar.newUser(t, "alice")
	alice.register()
	alice.login()
	alice.publishKey(nil)
	c1 := alice.mustDial()
	alice.mustDial()
	alice.ticket()
	if _, err := alice.dial(); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("third session: %v", err)
	}
	// The limit is alice's own: bob still gets his sessions.
	bob := ar.newUser(t, "bob")
	bob.register()
	bob.login()
	bob.publishKey(nil)
	bob.mustDial()
	bob.mustDial()
	c1.CloseGracefully()
	relaytest.Eventually(t, "the relay forgets the closed session", func() bool { return ar.srv.Stats().Conns == 3 })
	alice.mustDial()
}

// Parallel registrations of one name over HTTP, in different spellings, give exactly one account.
func TestAccountsRegisterConcurrent(t *testing.T) {
	ar := startAccounts(t, relay.Config{}, keydir.Config{})
	variants := []string{"carol", "CAROL", "Carol", "ｃａｒｏｌ", "cArOl", "caroL"}
	codes := make(chan int, len(variants))
	var wg sync.WaitGroup
	for _, v := range variants {
		wg.Go(func() {
			body, _ := json.Marshal(map[string]string{"username": v, "full_name": "C", "password": testPassword})
			for { // as a client does: a busy answer is asked again after Retry-After
				res, err := http.Post(ar.base+"/api/register", "application/json", bytes.NewReader(body))
				if err != nil {
					t.Error(err)
					return
				}
				res.Body.Close()
				if res.StatusCode == http.StatusServiceUnavailable && res.Header.Get("Retry-After") == "1" {
					time.Sleep(time.Second)
					continue
				}
				codes <- res.StatusCode
				return
			}
		})
	}
	wg.Wait()
	close(codes)
	created, taken := 0, 0
	for c := range codes {
		switch c {
		case 201:
			created++
		case 409:
			taken++
		default:
			t.Errorf("status %d", c)
		}
	}
	if created != 1 || taken != len(variants)-1 || ar.dir.Stats().Accounts != 1 {
		t.Fatalf("%d created, %d taken, %d accounts", created, taken, ar.dir.Stats().Accounts)
	}
}

func TestAccountsKeyRefusalsAPI(t *testing.T) {
	ar := startAccounts(t, relay.Config{}, keydir.Config{})
	alice := ar.newUser(t, "alice")
	alice.register()
	alice.login()
	e, _ := openpgp.NewEntity("alice", "", "", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	mallory, _ := openpgp.NewEntity("mallory", "", "", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	var priv bytes.Buffer
	w, _ := armor.Encode(&priv, openpgp.PrivateKeyType, nil)
	e.SerializePrivate(w, nil)
	w.Close()

	challenge := func() string {
		r := alice.do("POST", "/api/key/challenge", nil)
		alice.want(r, 200, "")
		return r.body["challenge"].(string)
	}
	for _, c := range []struct {
		name, key, sig, code string
		signer               *openpgp.Entity
	}{
		{name: "private key", key: priv.String(), code: "private_key"},
		{name: "garbage", key: "hello", code: "key_malformed"},
		{name: "wrong user ID", key: pubArmor(t, mallory), signer: mallory, code: "key_user_id"},
		{name: "proof by another key", key: pubArmor(t, e), signer: mallory, code: "bad_proof"},
		{name: "no proof", key: pubArmor(t, e), code: "bad_proof"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ch := challenge()
			sig := c.sig
			if c.signer != nil {
				sig = detachSign(t, c.signer, ch)
			}
			r := alice.do("PUT", "/api/key", map[string]string{"key": c.key, "challenge": ch, "signature": sig})
			alice.want(r, 400, c.code)
			if c.code == "private_key" && (strings.Contains(string(r.raw), "BEGIN") || len(r.raw) > 200) {
				t.Fatalf("the answer to a private key carries more than a message: %s", r.raw)
			}
		})
	}
	if me := alice.do("GET", "/api/me", nil); me.body["key"] != nil {
		t.Fatal("a refused upload published a key")
	}
	// Not logged in: no challenge, no upload.
	anon := ar.newUser(t, "anon")
	anon.want(anon.do("POST", "/api/key/challenge", nil), 401, "unauthorized")
	anon.want(anon.do("PUT", "/api/key", map[string]string{"key": pubArmor(t, e)}), 401, "unauthorized")
}
