package keydir

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"sync"
	"testing"
)

// replicaPair returns two directories with one token key whose changes reach each other through JSON, as
// relay/cluster carries them, and a counter of the OnRevoke calls on b.
func replicaPair(t *testing.T) (a, b *Directory, revokedOnB func() int) {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	mk := func() *Directory {
		d, _ := newTestDir(t, func(c *Config) { c.SigningKeyPEM = keyPEM })
		return d
	}
	a, b = mk(), mk()
	link := func(from, to *Directory) {
		from.OnChange(func(c Change) {
			wire, err := json.Marshal(c)
			if err != nil {
				t.Errorf("marshal: %v", err)
				return
			}
			var got Change
			if err := json.Unmarshal(wire, &got); err != nil {
				t.Errorf("unmarshal: %v", err)
				return
			}
			if _, err := to.Apply(got); err != nil {
				t.Errorf("Apply: %v", err)
			}
		})
	}
	link(a, b)
	link(b, a)
	var mu sync.Mutex
	n := 0
	b.OnRevoke(func(string) { mu.Lock(); n++; mu.Unlock() })
	return a, b, func() int { mu.Lock(); defer mu.Unlock(); return n }
}

// TestReplicaAccountLifecycle: what is done on one directory is in force on the other: registration, login,
// key, revocation, logout, disabling.
func TestReplicaAccountLifecycle(t *testing.T) {
	a, b, revokedOnB := replicaPair(t)
	ctx := context.Background()
	acc := mustRegister(t, a, "alice")
	tok, _, err := b.Login(ctx, "alice", goodPassword)
	if err != nil {
		t.Fatalf("login on b after registering on a: %v", err)
	}
	if _, err := a.Authenticate(tok); err != nil {
		t.Fatalf("b's token on a: %v", err)
	}
	key := genKey(t, "alice", nil)
	info, err := publish(t, a, acc.ID, key, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.CheckSender(acc.ID, info.Fingerprint); err != nil {
		t.Fatalf("b does not know the key published on a: %v", err)
	}
	if err := a.RevokeKey("alice"); err != nil {
		t.Fatal(err)
	}
	if err := b.CheckSender(acc.ID, info.Fingerprint); !errors.Is(err, ErrNoKey) {
		t.Fatalf("after a revoke on a, b's CheckSender: %v, want ErrNoKey", err)
	}
	if revokedOnB() != 1 {
		t.Fatalf("b ran OnRevoke %d times, want 1", revokedOnB())
	}
	if _, err := publish(t, b, acc.ID, key, key); !errors.Is(err, ErrKeyRevoked) {
		t.Fatalf("republishing the revoked key on b: %v, want ErrKeyRevoked", err)
	}
	if err := b.Logout(tok); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(tok); !errors.Is(err, ErrBadToken) {
		t.Fatalf("token logged out on b, on a: %v", err)
	}
	if err := b.DisableAccount("alice"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Login(ctx, "alice", goodPassword); !errors.Is(err, ErrAccountDisabled) {
		t.Fatalf("login on a after disabling on b: %v", err)
	}
	if sa, sb := a.Stats(), b.Stats(); sa != sb {
		t.Fatalf("stats differ: %+v and %+v", sa, sb)
	}
}

// TestReplicaSnapshot: a directory that applies another's snapshot holds the same accounts, keys, withdrawals
// and logged-out tokens.
func TestReplicaSnapshot(t *testing.T) {
	a, b, _ := replicaPair(t)
	acc := mustRegister(t, a, "bob")
	mustRegister(t, a, "carol")
	key := genKey(t, "bob", nil)
	if _, err := publish(t, a, acc.ID, key, key); err != nil {
		t.Fatal(err)
	}
	tok, _, err := a.Login(context.Background(), "bob", goodPassword)
	if err != nil {
		t.Fatal(err)
	}
	a.Logout(tok)
	a.DisableAccount("carol")

	late, _ := newTestDir(t, func(c *Config) { c.SigningKeyPEM = nil })
	for _, c := range b.Snapshot() {
		if _, err := late.Apply(c); err != nil {
			t.Fatal(err)
		}
	}
	if sa, sl := a.Stats(), late.Stats(); sa.Accounts != sl.Accounts || sa.Disabled != sl.Disabled || sa.WithKey != sl.WithKey || sa.RevokedTokens != sl.RevokedTokens {
		t.Fatalf("after the snapshot: %+v, want %+v", sl, sa)
	}
	if late.HeldBytes() != a.HeldBytes()-int64(a.tokens.cached())*verifiedBytes {
		t.Errorf("held bytes %d, want %d", late.HeldBytes(), a.HeldBytes()-int64(a.tokens.cached())*verifiedBytes)
	}
	// Applying it again changes nothing.
	for _, c := range a.Snapshot() {
		if r, err := late.Apply(c); err != nil || r.Changed {
			t.Fatalf("a snapshot applied twice: %+v, %v", r, err)
		}
	}
}

// TestReplicaNameConflict: two directories that registered one name at once, before hearing of each other,
// keep the same account once they have: the earlier registration.
func TestReplicaNameConflict(t *testing.T) {
	a, _ := newTestDir(t, nil)
	b, clk := newTestDir(t, nil)
	clk.Advance(1) // b's registration is the later one, whatever the clocks
	var fromA, fromB []Change
	a.OnChange(func(c Change) { fromA = append(fromA, c) })
	b.OnChange(func(c Change) { fromB = append(fromB, c) })
	first := mustRegister(t, a, "dave")
	mustRegister(t, b, "dave")
	for _, c := range fromB {
		if r, err := a.Apply(c); err != nil || r.Changed || r.Dropped != "" {
			t.Fatalf("a applied b's later registration: %+v, %v", r, err)
		}
	}
	for _, c := range fromA {
		if r, err := b.Apply(c); err != nil || !r.Changed || r.Dropped != "dave" {
			t.Fatalf("b applied a's earlier registration: %+v, %v", r, err)
		}
	}
	for _, d := range []*Directory{a, b} {
		if id, err := d.UserID("dave"); err != nil || id != first.ID {
			t.Fatalf("dave is %q (%v), want the first registration %q", id, err, first.ID)
		}
		if d.Stats().Accounts != 1 {
			t.Fatalf("%d accounts", d.Stats().Accounts)
		}
	}
}

// TestReplicaOldRecord: a record older than what is held does not bring back a revoked key or an enabled account.
func TestReplicaOldRecord(t *testing.T) {
	a, _ := newTestDir(t, nil)
	var changes []Change
	a.OnChange(func(c Change) { changes = append(changes, c) })
	acc := mustRegister(t, a, "erin")
	key := genKey(t, "erin", nil)
	info, err := publish(t, a, acc.ID, key, key)
	if err != nil {
		t.Fatal(err)
	}
	a.RevokeKey("erin")
	a.DisableAccount("erin")
	b, _ := newTestDir(t, nil)
	for i := len(changes) - 1; i >= 0; i-- { // newest first
		if _, err := b.Apply(changes[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.CheckSender(acc.ID, info.Fingerprint); !errors.Is(err, ErrAccountDisabled) {
		t.Fatalf("after older records: %v, want ErrAccountDisabled", err)
	}
	if k := b.keyOf(acc.ID); k != nil {
		t.Fatalf("an older record brought back key %s", k.Fingerprint)
	}
}

// TestReplicaBadChange: a malformed change is refused and changes nothing.
func TestReplicaBadChange(t *testing.T) {
	d, _ := newTestDir(t, nil)
	acc := mustRegister(t, d, "frank")
	for name, c := range map[string]Change{
		"empty":           {},
		"both":            {Account: &AccountRecord{}, Logout: &LoggedOut{}},
		"raw username":    {Account: &AccountRecord{ID: "x", Username: "Frank2", Hash: []byte("h")}},
		"no hash":         {Account: &AccountRecord{ID: "x", Username: "grace"}},
		"renamed account": {Account: &AccountRecord{ID: acc.ID, Username: "frank2", Hash: []byte("h"), Version: 9}},
	} {
		if _, err := d.Apply(c); !errors.Is(err, ErrBadChange) {
			t.Errorf("%s: %v, want ErrBadChange", name, err)
		}
	}
	if d.Stats().Accounts != 1 {
		t.Fatalf("%d accounts after bad changes", d.Stats().Accounts)
	}
}
