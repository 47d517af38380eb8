package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/cleanrelay/cleanrelay/relay/client"
)

// registerOnly makes an account on the relay at url (no key, no login), as a browser's register form does.
func registerOnly(t *testing.T, hc *http.Client, url, name, password string) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"username": name, "full_name": strings.ToUpper(name[:1]) + name[1:] + " Tester", "password": password})
	req, _ := http.NewRequest("POST", strings.TrimSuffix(url, "/")+"/api/register", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("register %s: HTTP %d", name, resp.StatusCode)
	}
}

// relayWithAccounts starts a relay on loopback with the accounts alice (Alice-pass1!) and bob (Bob-pass1!).
func relayWithAccounts(t *testing.T) string {
	t.Helper()
	_, url, _ := startServe(t, "--local-only", "--listen", "127.0.0.1:0")
	registerOnly(t, http.DefaultClient, url, "alice", "Alice-pass1!")
	registerOnly(t, http.DefaultClient, url, "bob", "Bob-pass1!")
	return url
}

// TestChatDialog: two terminal accounts in a dialog through the real relay (accounts API, logged-in sessions,
// protocol v2 with the account keys as identities): each makes and publishes a key (one exports it as the browser's ZIP), the same safety code,
// messages and files both ways, the timer; one makes a new key and comes back: the other is blocked until it
// trusts the new key, and the pins file follows; then burn.
func TestChatDialog(t *testing.T) {
	url := relayWithAccounts(t)
	dir := t.TempDir()
	pins, zipPath := filepath.Join(dir, "pins.json"), filepath.Join(dir, "alice.zip")
	envA := []string{envPassword + "=Alice-pass1!", envPassphrase + "=Alice-zip-pass1!"}
	envB := []string{envPassword + "=Bob-pass1!"}
	// Alice makes, exports and publishes a key; bob has none yet, so the dialog does not open (one line, exit 1).
	a := startChatEnv(t, envA, "--login", "alice", "--key-type", "curve25519", "--export", zipPath, "--pins", pins, url, "@bob")
	ka := a.wait(t, "key", nil)
	a.wait(t, "exported", func(e chatEvent) bool { return e.Path == zipPath })
	if c := a.exit(t); c != 1 || !strings.Contains(a.stderr.String(), "bob has not published a key yet") {
		t.Fatalf("exit %d, stderr %q", c, a.stderr)
	}
	b := startChatEnv(t, envB, "--login", "bob", "--key-type", "curve25519", "--save", dir, url, "@alice")
	b.wait(t, "key", nil)
	// Alice again, with the key from her ZIP: no new key is published. The peer's name as typed is normalized by
	// the relay, and the pin kept under that.
	a = startChatEnv(t, envA, "--login", "alice", "--key", zipPath, "--pins", pins, "--save", dir, url, "@Bob")
	sa, sb := a.wait(t, "safety", nil), b.wait(t, "safety", nil)
	if sa.Safety != sb.Safety || len(sa.Safety) != 35 || sa.User != "bob" {
		t.Fatalf("safety %+v and %+v", sa, sb)
	}
	a.send(t, chatCommand{Cmd: "send", Text: "hello bob"})
	if m := b.wait(t, "message", nil); m.Text != "hello bob" || m.Unverified {
		t.Fatalf("bob got %+v", m)
	}
	b.send(t, chatCommand{Cmd: "send", Text: "hello alice", TTL: 1})
	m := a.wait(t, "message", func(e chatEvent) bool { return e.Text == "hello alice" })
	a.wait(t, "expired", func(e chatEvent) bool { return e.ID == m.ID })
	src, big := randomFile(t, "big.bin", 100<<10)
	b.send(t, chatCommand{Cmd: "file", Path: src})
	if f := a.wait(t, "file", nil); f.Name != "big.bin" {
		t.Fatalf("file %+v", f)
	} else if got, _ := os.ReadFile(f.Path); !bytes.Equal(got, big) {
		t.Fatal("alice saved another file")
	}
	a.send(t, chatCommand{Cmd: "file", Path: src})
	if f := b.wait(t, "file", nil); f.Size != int64(len(big)) {
		t.Fatalf("file %+v", f)
	}

	// Bob comes back with a new key: alice sees the change, sends nothing, and talks to the new key once trusted.
	b.send(t, chatCommand{Cmd: "leave"})
	b.wait(t, "ended", nil)
	b.exit(t)
	a.wait(t, "presence", func(e chatEvent) bool { return e.Event == "leave" })
	b = startChatEnv(t, envB, "--login", "bob", "--new-key", "--key-type", "curve25519", url, "@alice")
	kb := b.wait(t, "key", nil)
	kc := a.wait(t, "keychange", nil)
	if kc.Safety != sa.Safety || kc.Offered == sa.Safety || kc.User != "bob" {
		t.Fatalf("keychange %+v (before %s)", kc, sa.Safety)
	}
	a.send(t, chatCommand{Cmd: "send", Text: "must not go out"})
	for e := range a.events {
		if e.Type == "sent" {
			t.Fatalf("sent while a key change waits: %+v", e)
		}
		if e.Type == "error" {
			break
		}
	}
	var pinned map[string]map[string]string
	if b, _ := os.ReadFile(pins); json.Unmarshal(b, &pinned) != nil || pinned["alice"]["bob"] == "" || pinned["alice"]["bob"] == kb.Text {
		t.Fatalf("pins before trust: %v", pinned)
	}
	a.send(t, chatCommand{Cmd: "trust"})
	if s := a.wait(t, "safety", nil); s.Safety != kc.Offered {
		t.Fatalf("after trust, safety %s, want %s", s.Safety, kc.Offered)
	}
	if s := b.wait(t, "safety", nil); s.Safety != kc.Offered {
		t.Fatalf("bob's safety %s, want %s", s.Safety, kc.Offered)
	}
	if b, _ := os.ReadFile(pins); json.Unmarshal(b, &pinned) != nil || pinned["alice"]["bob"] != kb.Text {
		t.Fatalf("pins after trust: %v, want bob %s", pinned, kb.Text)
	}
	a.send(t, chatCommand{Cmd: "send", Text: "to the new key"})
	if m := b.wait(t, "message", nil); m.Text != "to the new key" || m.Unverified {
		t.Fatalf("bob's new key read %+v (the blocked message went out?)", m)
	}
	b.send(t, chatCommand{Cmd: "burn"})
	if ea, eb := a.wait(t, "ended", nil), b.wait(t, "ended", nil); ea.Reason != "burned" || eb.Reason != "burned" {
		t.Fatalf("ended %+v %+v", ea, eb)
	}
	if ka.Text == kb.Text {
		t.Fatal("bob's new key is alice's")
	}
}

// TestChatIgnoresUnknownKinds: envelopes of kinds this client does not know (a newer client's receipts, states
// or timer announcements) are skipped without an event, in both kinds of room, and the next message still
// shows.
func TestChatIgnoresUnknownKinds(t *testing.T) {
	out := make(chan chatEvent, 16)
	s := &chatSession{out: out, files: newChatFiles(t.TempDir())}
	for _, h := range []map[string]any{
		{"k": "receipt", "id": "x", "of": "abc", "state": "delivered"},
		{"k": "timer", "id": "y", "ttl": 30},
		{"k": "state", "id": "z", "state": "read", "extra": []int{1, 2}},
	} {
		b, err := encodeEnvelope(h, []byte("body"))
		if err != nil {
			t.Fatal(err)
		}
		s.onPlain(2, b, true)
	}
	b, _ := encodeEnvelope(map[string]any{"k": "msg", "id": "m", "text": "after them", "ts": 1, "ttl": 0}, nil)
	s.onPlain(2, b, true)
	if ev := <-out; ev.Type != "message" || ev.Text != "after them" {
		t.Fatalf("first event %+v, want the message (an unknown kind made an event?)", ev)
	}
	if len(out) != 0 {
		t.Fatalf("%d more events", len(out))
	}
}

// TestChatDialogBadInput: each mistake of a dialog's setup is one line and a non-zero exit, and nothing is
// published by a failed login.
func TestChatDialogBadInput(t *testing.T) {
	_, url, _ := startServe(t, "--local-only", "--listen", "127.0.0.1:0")
	registerOnly(t, http.DefaultClient, url, "carol", "Carol-pass1!")
	registerOnly(t, http.DefaultClient, url, "dave", "Dave-pass1!")
	zip := filepath.Join(t.TempDir(), "carol.zip")
	os.WriteFile(zip, []byte("not a zip"), 0o600)
	badPins := filepath.Join(t.TempDir(), "pins.json")
	os.WriteFile(badPins, []byte("{not json"), 0o600)
	defer func() { // the --export and pins failures published nothing
		if me := loginMe(t, url, "dave", "Dave-pass1!"); me.Key != nil {
			t.Errorf("dave has a published key after failed exports: %+v", me.Key)
		}
	}()
	for _, tt := range []struct {
		name string
		env  []string
		args []string
		code int
		want string
	}{
		{"no peer", nil, []string{"--login", "carol", url}, 2, "give the relay's URL and @PEER"},
		{"wrong password", []string{envPassword + "=Wrong-pass1!"}, []string{"--login", "carol", url, "@dave"}, 1, "failed to log in as carol: wrong username or password"},
		{"bad key type", nil, []string{"--login", "carol", "--key-type", "dsa", url, "@dave"}, 1, "rsa, curve25519 or v6"},
		{"not a zip", []string{envPassword + "=Carol-pass1!", envPassphrase + "=x"}, []string{"--login", "carol", "--key", zip, url, "@dave"}, 1, "not a zip archive"},
		{"no such peer", []string{envPassword + "=Carol-pass1!"}, []string{"--login", "carol", "--key-type", "curve25519", url, "@nobody"}, 1, "there is no user nobody"},
		{"a broken pins file", []string{envPassword + "=Dave-pass1!"}, []string{"--login", "dave", "--pins", badPins, url, "@carol"}, 1, "failed to read the pins file"},
		{"--export exists", []string{envPassword + "=Dave-pass1!", envPassphrase + "=Dave-zip-pass1!"}, []string{"--login", "dave", "--export", zip, url, "@carol"}, 1, "exists: it is never overwritten"},
		{"--export weak passphrase", []string{envPassword + "=Dave-pass1!", envPassphrase + "=short"}, []string{"--login", "dave", "--export", zip + ".new", url, "@carol"}, 1, "a key passphrase needs"},
		{"a key already published", []string{envPassword + "=Carol-pass1!"}, []string{"--login", "carol", url, "@dave"}, 1, "carol already has a published key"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := startChatEnv(t, tt.env, tt.args...)
			code := p.exit(t)
			lines := strings.Split(strings.TrimSpace(p.stderr.String()), "\n")
			if code != tt.code || !strings.Contains(lines[0], tt.want) || (code == 1 && len(lines) != 1) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, p.stderr, tt.code, tt.want)
			}
		})
	}
}

// TestChatDialRenewsTicket: a handshake refused with 401 (the ticket expired while the client was away) makes
// the client prove its key for a new ticket and dial again, once; with a good ticket it does not ask.
func TestChatDialRenewsTicket(t *testing.T) {
	var dials, proofs atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dials.Add(1)
		if !strings.Contains(r.Header.Get("Cookie"), "ws_ticket=fresh") {
			http.Error(w, "no ticket", http.StatusUnauthorized)
			return
		}
		up := websocket.Upgrader{Subprotocols: []string{"cleanrelay.v1"}}
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		c.WriteMessage(websocket.TextMessage, []byte(`{"t":"hello","v":1}`))
		c.ReadMessage()
		c.Close()
	}))
	defer srv.Close()
	ticket := "stale"
	cfg := chatConfig{wsURL: "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws", header: func(ctx context.Context, fresh bool) (http.Header, error) {
		if fresh {
			proofs.Add(1)
			ticket = "fresh"
		}
		return http.Header{"Cookie": {"session=s; ws_ticket=" + ticket}}, nil
	}}
	c, err := dialRelay(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if dials.Load() != 2 || proofs.Load() != 1 {
		t.Fatalf("%d dials and %d proofs, want 2 and 1", dials.Load(), proofs.Load())
	}
	if c, err = dialRelay(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if dials.Load() != 3 || proofs.Load() != 1 {
		t.Fatalf("with a good ticket: %d dials and %d proofs, want 3 and 1", dials.Load(), proofs.Load())
	}
}

func loginMe(t *testing.T, url, name, password string) *client.Me {
	t.Helper()
	_, me, err := client.Login(context.Background(), url, name, password, nil)
	if err != nil {
		t.Fatal(err)
	}
	return me
}
