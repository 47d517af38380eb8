package keydir

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"golang.org/x/crypto/bcrypt"
)

const goodPassword = "Correct-h0rse"

// fakeClock is a settable clock for Config.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Now().Truncate(time.Second)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// newTestDir returns a Directory on a fake clock. Tokens are EdDSA unless the
// caller says otherwise, because generating an RSA-3072 key per test is slow.
func newTestDir(t testing.TB, mod func(*Config)) (*Directory, *fakeClock) {
	t.Helper()
	clk := newClock()
	cfg := Config{Now: clk.Now, TokenAlgorithm: "EdDSA", testBcryptCost: bcrypt.MinCost}
	if mod != nil {
		mod(&cfg)
	}
	d, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return d, clk
}

func mustRegister(t testing.TB, d *Directory, name string) Account {
	t.Helper()
	a, err := d.Register(context.Background(), Registration{Username: name, FullName: "Test " + name,
		Email: name + "@example.org", Password: goodPassword})
	if err != nil {
		t.Fatalf("Register(%q): %v", name, err)
	}
	return a
}

// genKey makes an OpenPGP key with one user ID "name <name@example.org>".
func genKey(t testing.TB, name string, cfg *packet.Config) *openpgp.Entity {
	t.Helper()
	if cfg == nil {
		cfg = &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, Curve: packet.Curve25519}
	}
	e, err := openpgp.NewEntity(name, "", name+"@example.org", cfg)
	if err != nil {
		t.Fatalf("NewEntity: %v", err)
	}
	return e
}

func armorPublic(t testing.TB, e *openpgp.Entity) string {
	t.Helper()
	var b bytes.Buffer
	w, err := armor.Encode(&b, openpgp.PublicKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Serialize(w); err != nil {
		t.Fatal(err)
	}
	w.Close()
	return b.String()
}

func armorPrivate(t testing.TB, e *openpgp.Entity) string {
	t.Helper()
	var b bytes.Buffer
	w, err := armor.Encode(&b, openpgp.PrivateKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.SerializePrivate(w, nil); err != nil {
		t.Fatal(err)
	}
	w.Close()
	return b.String()
}

func signText(t testing.TB, e *openpgp.Entity, text string) string {
	t.Helper()
	var b bytes.Buffer
	if err := openpgp.ArmoredDetachSign(&b, e, strings.NewReader(text), nil); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// publish runs the whole upload: challenge, signature by signer, PublishKey.
func publish(t testing.TB, d *Directory, userID string, key, signer *openpgp.Entity) (KeyInfo, error) {
	t.Helper()
	ch, err := d.IssueChallenge(userID, PurposePublishKey)
	if err != nil {
		t.Fatalf("IssueChallenge: %v", err)
	}
	return d.PublishKey(userID, armorPublic(t, key), ch, signText(t, signer, ch))
}

// keyOf returns the key an account has published, or nil.
func (d *Directory) keyOf(userID string) *KeyInfo {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if a := d.byID[userID]; a != nil {
		return a.key
	}
	return nil
}
