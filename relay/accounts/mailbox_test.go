package accounts_test

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/cleanrelay/cleanrelay/keydir"
	"github.com/cleanrelay/cleanrelay/relay"
	"github.com/cleanrelay/cleanrelay/relay/accounts"
	"github.com/cleanrelay/cleanrelay/relay/client"
	"github.com/cleanrelay/cleanrelay/relay/internal/relaytest"
	"github.com/cleanrelay/cleanrelay/relay/mailbox"
)

// startMailbox is a relay with accounts and a mailbox of cfg's limits.
func startMailbox(t testing.TB, cfg mailbox.Config) (*accountsRelay, *mailbox.Store) {
	box := mailbox.New(cfg)
	t.Cleanup(box.Close)
	return startAccounts(t, relay.Config{}, keydir.Config{}, accounts.Config{Mailbox: box}), box
}

// put leaves data for peer, encrypted (as far as the relay knows) to fp.
func (u *apiUser) put(peer, fp string, data []byte, query string) apiResp {
	u.t.Helper()
	return u.do("POST", "/api/mailbox/"+peer+"?fp="+fp+query, data, "Content-Type", "application/octet-stream")
}

type fetched struct{ ids, data []string }

func (u *apiUser) fetch(from string) fetched {
	u.t.Helper()
	r := u.do("GET", "/api/mailbox/"+from, nil)
	u.want(r, http.StatusOK, "")
	var f fetched
	for _, x := range r.body["items"].([]any) {
		it := x.(map[string]any)
		d, err := base64.StdEncoding.DecodeString(it["data"].(string))
		if err != nil {
			u.t.Fatal(err)
		}
		f.ids = append(f.ids, it["id"].(string))
		f.data = append(f.data, string(d))
	}
	return f
}

func fingerprint(t testing.TB, u *apiUser, of string) string {
	t.Helper()
	r := u.do("GET", "/api/users/"+of+"/key", nil)
	u.want(r, http.StatusOK, "")
	return r.body["key"].(map[string]any)["fingerprint"].(string)
}

// TestMailboxAPI: messages for a user who is away wait, are told to its sessions, come back in order
// exactly once (acknowledged ones are gone), and every refusal says why and keeps what waits.
func TestMailboxAPI(t *testing.T) {
	ar, box := startMailbox(t, mailbox.Config{MaxPerRecipient: 3, MaxItemBytes: 1000})
	alice, bob := ar.keyedUser(t, "alice"), ar.keyedUser(t, "bob")
	fp := fingerprint(t, alice, "bob")
	cb := bob.mustDial()
	for i := range 3 {
		r := alice.put("bob", fp, []byte(fmt.Sprintf("ciphertext %d", i)), "&ttl=3600")
		alice.want(r, http.StatusCreated, "")
		if ev := relaytest.NextEvent(t, cb); ev.Kind != client.KindMail || ev.User != "alice" {
			t.Fatalf("bob got %+v, want a mail notice from alice", ev)
		}
	}
	// Full: the newest is refused, the three stay.
	alice.want(alice.put("bob", fp, []byte("fourth"), ""), http.StatusInsufficientStorage, "mailbox_full")
	// Refusals that hold nothing.
	alice.want(alice.put("bob", "0000", []byte("x"), ""), http.StatusConflict, "key_changed")
	alice.want(alice.put("bob", fp, []byte("x"), "&ttl=999999999"), http.StatusBadRequest, "bad_ttl")
	alice.want(alice.put("bob", fp, bytes.Repeat([]byte("x"), 1001), ""), http.StatusRequestEntityTooLarge, "body_too_large")
	alice.want(alice.put("nobody", fp, []byte("x"), ""), http.StatusNotFound, "not_found")
	alice.want(alice.do("POST", "/api/mailbox/bob?fp="+fp, "text"), http.StatusUnsupportedMediaType, "unsupported_media_type")
	anon := ar.newUser(t, "anon")
	anon.want(anon.do("GET", "/api/mailbox", nil), http.StatusUnauthorized, "unauthorized")

	r := bob.do("GET", "/api/mailbox", nil)
	bob.want(r, http.StatusOK, "")
	w := r.body["waiting"].([]any)
	if len(w) != 1 || w[0].(map[string]any)["from"] != "alice" || w[0].(map[string]any)["unread"] != 3.0 {
		t.Fatalf("summary %s", r.raw)
	}
	if r.body["ttl_max"] != float64((7 * 24 * time.Hour).Seconds()) {
		t.Fatalf("ttl_max %v", r.body["ttl_max"])
	}
	f := bob.fetch("alice")
	if fmt.Sprint(f.data) != "[ciphertext 0 ciphertext 1 ciphertext 2]" {
		t.Fatalf("fetched %q", f.data)
	}
	if got := alice.fetch("bob"); len(got.ids) != 0 {
		t.Fatal("the sender read the recipient's mailbox")
	}
	r = bob.do("POST", "/api/mailbox/alice/ack", map[string]any{"ids": f.ids[:2]})
	if r.status != http.StatusOK || r.body["removed"] != 2.0 {
		t.Fatalf("ack: %d %s", r.status, r.raw)
	}
	bob.do("POST", "/api/mailbox/alice/ack", map[string]any{"ids": f.ids[:2]}) // again: nothing
	if again := bob.fetch("alice"); fmt.Sprint(again.data) != "[ciphertext 2]" {
		t.Fatalf("after the ack: %q", again.data)
	}
	if st := box.Stats(); st.Held != 1 || st.Delivered != 2 {
		t.Fatalf("stats %+v", st)
	}

	// Off: every route says so.
	ar2 := startAccounts(t, relay.Config{}, keydir.Config{})
	c := ar2.keyedUser(t, "carol")
	c.want(c.do("GET", "/api/mailbox", nil), http.StatusNotFound, "mailbox_off")
	c.want(c.put("carol", "x", []byte("x"), ""), http.StatusNotFound, "mailbox_off")
}

// TestMailboxKeyChange: when bob publishes a new key, what waits for him (encrypted to the old one) is
// wiped and reported to its sender as undeliverable, and everyone with a dialog with bob, open or in the
// mailbox, is told at once on its sessions; a message still encrypted to the old key is refused.
func TestMailboxKeyChange(t *testing.T) {
	ar, box := startMailbox(t, mailbox.Config{})
	alice, bob, carol := ar.keyedUser(t, "alice"), ar.keyedUser(t, "bob"), ar.keyedUser(t, "carol")
	old := fingerprint(t, alice, "bob")
	r := alice.put("bob", old, []byte("for the old key"), "")
	alice.want(r, http.StatusCreated, "")
	id := r.body["id"].(string)
	carol.dialog("bob") // an open dialog, nothing in the mailbox
	ca, cc := alice.mustDial(), carol.mustDial()

	bob.publishKey(nil)

	for _, c := range []*client.Conn{ca, cc} {
		for {
			ev := relaytest.NextEvent(t, c)
			if ev.Kind == client.KindDialog {
				continue
			}
			if ev.Kind != client.KindKey || ev.User != "bob" {
				t.Fatalf("got %+v, want a key notice for bob", ev)
			}
			break
		}
	}
	if st := box.Stats(); st.Held != 0 || st.Wiped != 1 {
		t.Fatalf("stats %+v", st)
	}
	r = alice.do("GET", "/api/mailbox", nil)
	u := r.body["undeliverable"].([]any)
	if len(u) != 1 || u[0].(map[string]any)["id"] != id || u[0].(map[string]any)["reason"] != "key_changed" || u[0].(map[string]any)["to"] != "bob" {
		t.Fatalf("summary %s", r.raw)
	}
	alice.want(alice.put("bob", old, []byte("late"), ""), http.StatusConflict, "key_changed")
	alice.want(alice.put("bob", fingerprint(t, alice, "bob"), []byte("new"), ""), http.StatusCreated, "")
}

// TestMailboxRevocationWipes: an account disabled, or a key revoked, wipes what waits for it and what it
// left for others.
func TestMailboxRevocationWipes(t *testing.T) {
	for _, how := range []string{"revoke-key", "disable"} {
		t.Run(how, func(t *testing.T) {
			ar, box := startMailbox(t, mailbox.Config{})
			alice, bob := ar.keyedUser(t, "alice"), ar.keyedUser(t, "bob")
			alice.want(alice.put("bob", fingerprint(t, alice, "bob"), []byte("a to b"), ""), http.StatusCreated, "")
			bob.want(bob.put("alice", fingerprint(t, bob, "alice"), []byte("b to a"), ""), http.StatusCreated, "")
			carol := ar.keyedUser(t, "carol")
			carol.want(carol.put("bob", fingerprint(t, carol, "bob"), []byte("c to b"), ""), http.StatusCreated, "")
			adminPost(t, ar, "/admin/"+how, `{"username":"alice"}`, 204)
			if st := box.Stats(); st.Held != 1 || st.Wiped != 2 {
				t.Fatalf("stats %+v", st)
			}
			if f := bob.fetch("carol"); len(f.data) != 1 {
				t.Fatalf("carol's message to bob: %q", f.data)
			}
		})
	}
}

// FuzzMailboxRequests sends puts, fetches and acknowledgements with the fuzzer's query, content type and body
// to a real relay: each gets one of the documented answers, never an internal error, and what the mailbox holds
// stays within its bounds.
func FuzzMailboxRequests(f *testing.F) {
	ar, box := startMailbox(f, mailbox.Config{MaxPerRecipient: 5, MaxItemBytes: 512})
	alice := ar.keyedUser(f, "alice")
	bob := ar.keyedUser(f, "bob")
	fp := fingerprint(f, alice, "bob")
	f.Add("POST", "bob", "fp="+fp+"&ttl=60", "application/octet-stream", []byte("ciphertext"))
	f.Add("POST", "bob", "fp="+fp+"&quiet=1", "application/octet-stream", []byte{0, 1, 2})
	f.Add("POST", "bob", "fp=x&ttl=-1", "text/plain", []byte{})
	f.Add("GET", "bob", "", "", []byte(nil))
	f.Add("POST", "alice/ack", "", "application/json", []byte(`{"ids":["a","b"]}`))
	f.Add("POST", "alice/ack", "", "application/json", []byte(`{"ids":7}`))
	allowed := map[int]bool{200: true, 201: true, 400: true, 404: true, 405: true, 409: true, 413: true, 415: true, 507: true}
	f.Fuzz(func(t *testing.T, method, path, query, ctype string, body []byte) {
		if method != "GET" && method != "POST" {
			method = "POST"
		}
		u := alice
		if len(body)%2 == 1 {
			u = bob
		}
		u.t = t
		req, err := http.NewRequest(method, ar.base+"/api/mailbox/"+path+"?"+query, bytes.NewReader(body))
		if err != nil {
			return // not a request a client can send
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		req.AddCookie(&http.Cookie{Name: "session", Value: u.cookies["session"].Value})
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return // the request line or header was refused on the wire
		}
		res.Body.Close()
		if !allowed[res.StatusCode] {
			t.Fatalf("%s /api/mailbox/%s?%s answered %d", method, path, query, res.StatusCode)
		}
		if st := box.Stats(); st.Held > 10 || st.Bytes > 10*(512+mailbox.ItemOverhead) {
			t.Fatalf("the mailbox holds %+v", st)
		}
	})
}
