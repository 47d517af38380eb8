package accounts_test

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/cleanrelay/cleanrelay/keydir"
	"github.com/cleanrelay/cleanrelay/relay"
	"github.com/cleanrelay/cleanrelay/relay/accounts"
	"github.com/cleanrelay/cleanrelay/relay/mailbox"
	"github.com/cleanrelay/cleanrelay/relay/prekeys"
)

// startPrekeys is a relay with accounts, a mailbox and a prekey store of cfg's limits.
func startPrekeys(t testing.TB, cfg prekeys.Config) (*accountsRelay, *prekeys.Store) {
	box, store := mailbox.New(mailbox.Config{}), prekeys.New(cfg)
	t.Cleanup(box.Close)
	t.Cleanup(store.Close)
	return startAccounts(t, relay.Config{}, keydir.Config{}, accounts.Config{Mailbox: box, Prekeys: store}), store
}

// testPrekey is a prekey with the structure of docs/e2e.md §9 (the relay checks no more): filler keys and
// a 120-byte "signature".
func testPrekey(id uint32) []byte {
	k := []byte{2, 0, 0, 0, 2, byte(id >> 24), byte(id >> 16), byte(id >> 8), byte(id)}
	k = append(k, bytes.Repeat([]byte{byte(id)}, 32+1184)...)
	k = append(k, 0, 120)
	return append(k, bytes.Repeat([]byte{0x55}, 120)...)
}

func testBundle(keys ...[]byte) []byte {
	b := []byte{byte(len(keys) >> 8), byte(len(keys))}
	for _, k := range keys {
		b = append(b, byte(len(k)>>8), byte(len(k)))
		b = append(b, k...)
	}
	return b
}

func bundleOfIDs(ids ...uint32) []byte {
	var ks [][]byte
	for _, id := range ids {
		ks = append(ks, testPrekey(id))
	}
	return testBundle(ks...)
}

func (u *apiUser) putPrekeys(b []byte) apiResp {
	u.t.Helper()
	return u.do("PUT", "/api/prekeys", b, "Content-Type", "application/octet-stream")
}

func (u *apiUser) prekeysLeft() string {
	u.t.Helper()
	r := u.do("GET", "/api/prekeys", nil)
	u.want(r, http.StatusOK, "")
	return fmt.Sprint(r.body["ids"])
}

// take takes one of peer's prekeys and checks it is the one with id that bob published.
func (u *apiUser) take(peer string, id uint32) {
	u.t.Helper()
	r := u.do("POST", "/api/prekeys/"+peer+"/take", nil)
	u.want(r, http.StatusOK, "")
	got, err := base64.StdEncoding.DecodeString(r.body["prekey"].(string))
	if err != nil || r.body["id"] != float64(id) || !bytes.Equal(got, testPrekey(id)) {
		u.t.Fatalf("took %v (%d bytes, %v), want prekey %d", r.body["id"], len(got), err, id)
	}
}

// TestPrekeysAPI: the owner publishes and sees what is left; senders take each prekey once, with the
// owner's fingerprint; none left and every refusal says why and changes nothing.
func TestPrekeysAPI(t *testing.T) {
	ar, store := startPrekeys(t, prekeys.Config{MaxPerUser: 4})
	alice, bob, carol := ar.keyedUser(t, "alice"), ar.keyedUser(t, "bob"), ar.keyedUser(t, "carol")
	r := bob.putPrekeys(bundleOfIDs(10, 11, 12))
	bob.want(r, http.StatusOK, "")
	if r.body["count"] != 3.0 || r.body["max"] != 4.0 {
		t.Fatalf("put: %s", r.raw)
	}
	if got := bob.prekeysLeft(); got != "[10 11 12]" {
		t.Fatalf("left %s", got)
	}
	r = alice.do("POST", "/api/prekeys/bob/take", nil)
	alice.want(r, http.StatusOK, "")
	if r.body["fingerprint"] != fingerprint(t, alice, "bob") {
		t.Fatalf("take: fingerprint %v", r.body["fingerprint"])
	}
	carol.take("bob", 11)
	alice.take("bob", 12)
	alice.want(alice.do("POST", "/api/prekeys/bob/take", nil), http.StatusConflict, "no_prekeys")
	if got := bob.prekeysLeft(); got != "[]" {
		t.Fatalf("left %s", got)
	}
	if st := store.Stats(); st.Taken != 3 || st.Empty != 1 || st.Held != 0 {
		t.Fatalf("stats %+v", st)
	}

	// A new bundle replaces the old one.
	bob.want(bob.putPrekeys(bundleOfIDs(20, 21)), http.StatusOK, "")
	bob.want(bob.putPrekeys(bundleOfIDs(30)), http.StatusOK, "")
	alice.take("bob", 30)

	// Refusals.
	bob.want(bob.putPrekeys(bundleOfIDs(1, 2, 3, 4, 5)), http.StatusBadRequest, "too_many_prekeys")
	bob.want(bob.putPrekeys(bundleOfIDs(1, 1)), http.StatusBadRequest, "bad_prekeys")
	bob.want(bob.putPrekeys(testBundle(testPrekey(1)[:500])), http.StatusBadRequest, "bad_prekeys")
	bob.want(bob.do("PUT", "/api/prekeys", "text"), http.StatusUnsupportedMediaType, "unsupported_media_type")
	bob.want(bob.putPrekeys(bytes.Repeat([]byte{1}, 100<<10)), http.StatusRequestEntityTooLarge, "body_too_large")
	bob.want(bob.do("POST", "/api/prekeys/bob/take", nil), http.StatusBadRequest, "bad_request")
	alice.want(alice.do("POST", "/api/prekeys/nobody/take", nil), http.StatusNotFound, "not_found")
	keyless := ar.newUser(t, "dave")
	keyless.register()
	keyless.login()
	keyless.want(keyless.putPrekeys(bundleOfIDs(1)), http.StatusConflict, "no_key")
	keyless.want(keyless.do("POST", "/api/prekeys/bob/take", nil), http.StatusConflict, "no_key")
	alice.want(alice.do("POST", "/api/prekeys/dave/take", nil), http.StatusConflict, "no_prekeys")
	anon := ar.newUser(t, "anon")
	anon.want(anon.do("GET", "/api/prekeys", nil), http.StatusUnauthorized, "unauthorized")
	anon.want(anon.do("POST", "/api/prekeys/bob/take", nil), http.StatusUnauthorized, "unauthorized")
	if got := bob.prekeysLeft(); got != "[]" {
		t.Fatalf("a refusal changed the prekeys: %s", got)
	}
	if l := ar.logs.String(); strings.Contains(l, "bob") || strings.Contains(l, "alice") {
		t.Fatalf("the log names a user: %s", l)
	}

	// Off: every route says so.
	ar2 := startAccounts(t, relay.Config{}, keydir.Config{})
	c := ar2.keyedUser(t, "carol")
	c.want(c.do("GET", "/api/prekeys", nil), http.StatusNotFound, "prekeys_off")
	c.want(c.putPrekeys(bundleOfIDs(1)), http.StatusNotFound, "prekeys_off")
	c.want(c.do("POST", "/api/prekeys/carol/take", nil), http.StatusNotFound, "prekeys_off")
}

// TestPrekeysHeldUntilRead: a sender holds at most MaxHeldPerSender of one user's prekeys; when the user
// acknowledges the sender's mailbox items, the sender may take again. Others are not held back.
func TestPrekeysHeldUntilRead(t *testing.T) {
	ar, store := startPrekeys(t, prekeys.Config{MaxHeldPerSender: 2})
	alice, bob, carol := ar.keyedUser(t, "alice"), ar.keyedUser(t, "bob"), ar.keyedUser(t, "carol")
	bob.want(bob.putPrekeys(bundleOfIDs(1, 2, 3, 4, 5)), http.StatusOK, "")
	alice.take("bob", 1)
	alice.take("bob", 2)
	alice.want(alice.do("POST", "/api/prekeys/bob/take", nil), http.StatusTooManyRequests, "prekeys_held")
	carol.take("bob", 3)
	alice.want(alice.put("bob", fingerprint(t, alice, "bob"), []byte("sealed with prekey 1"), ""), http.StatusCreated, "")
	f := bob.fetch("alice")
	// Acknowledging nothing releases nothing.
	bob.want(bob.do("POST", "/api/mailbox/alice/ack", map[string]any{"ids": []string{"unknown"}}), http.StatusOK, "")
	alice.want(alice.do("POST", "/api/prekeys/bob/take", nil), http.StatusTooManyRequests, "prekeys_held")
	bob.want(bob.do("POST", "/api/mailbox/alice/ack", map[string]any{"ids": f.ids}), http.StatusOK, "")
	alice.take("bob", 4)
	if st := store.Stats(); st.Refused != 2 || st.Taken != 4 {
		t.Fatalf("stats %+v", st)
	}
}

// TestPrekeysWiped: a new key, a revoked key and a disabled account overwrite the user's prekeys (signed
// by the key that went); Close overwrites everyone's.
func TestPrekeysWiped(t *testing.T) {
	for _, how := range []string{"key-change", "revoke-key", "disable"} {
		t.Run(how, func(t *testing.T) {
			ar, store := startPrekeys(t, prekeys.Config{})
			alice, bob := ar.keyedUser(t, "alice"), ar.keyedUser(t, "bob")
			bob.want(bob.putPrekeys(bundleOfIDs(1, 2, 3)), http.StatusOK, "")
			alice.want(alice.putPrekeys(bundleOfIDs(7)), http.StatusOK, "")
			if how == "key-change" {
				bob.publishKey(nil)
			} else {
				adminPost(t, ar, "/admin/"+how, `{"username":"bob"}`, 204)
			}
			if st := store.Stats(); st.Held != 1 || st.Wiped != 3 {
				t.Fatalf("stats %+v", st)
			}
			if how == "key-change" {
				alice.want(alice.do("POST", "/api/prekeys/bob/take", nil), http.StatusConflict, "no_prekeys")
				if got := bob.prekeysLeft(); got != "[]" {
					t.Fatalf("left %s", got)
				}
			}
			store.Close()
			if st := store.Stats(); st.Held != 0 || st.Bytes != 0 || st.Wiped != 4 {
				t.Fatalf("after Close: %+v", st)
			}
		})
	}
}
