package cluster

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"
)

func testKeys(t *testing.T, secret string) *Keys {
	t.Helper()
	k, err := DeriveKeys([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

const (
	secretA = "0123456789abcdef0123456789abcdef-a"
	secretB = "0123456789abcdef0123456789abcdef-b"
)

func TestDeriveKeysRefusesShortSecret(t *testing.T) {
	if _, err := DeriveKeys(make([]byte, MinSecretBytes-1)); err == nil || !strings.Contains(err.Error(), "at least 32") {
		t.Fatalf("a 31-byte secret: %v", err)
	}
}

// TestSubject: a subject is a keyed hash of its kind and id: the same on every node with the secret, different
// for another kind, id or secret, in NATS's alphabet, and with neither the kind nor the id in it.
func TestSubject(t *testing.T) {
	a, a2, b := testKeys(t, secretA), testKeys(t, secretA), testKeys(t, secretB)
	s := a.Subject("room", []byte("alice-room-id"))
	if s != a2.Subject("room", []byte("alice-room-id")) {
		t.Fatal("two nodes with one secret derive different subjects")
	}
	if !regexp.MustCompile(`^cr\.[a-z2-7]{26}$`).MatchString(s) {
		t.Fatalf("subject %q is not cr. and 26 base32 characters", s)
	}
	for name, other := range map[string]string{
		"other id":     a.Subject("room", []byte("alice-room-iD")),
		"other kind":   a.Subject("token", []byte("alice-room-id")),
		"other secret": b.Subject("room", []byte("alice-room-id")),
		"kind/id seam": a.Subject("roo", []byte("malice-room-id")),
		"no id":        a.Subject("room", nil),
	} {
		if other == s {
			t.Errorf("%s: same subject %q", name, s)
		}
	}
	for _, leak := range []string{"alice", "room"} {
		if strings.Contains(s[3:], leak) {
			t.Errorf("subject %q carries %q", s, leak)
		}
	}
}

// TestSealOpen: a sealed payload opens with the same secret on the same subject, and on nothing else: another
// secret, another subject, a flipped bit, a cut, or an old one.
func TestSealOpen(t *testing.T) {
	a, a2, b := testKeys(t, secretA), testKeys(t, secretA), testKeys(t, secretB)
	now := time.Now()
	msg := []byte(`{"username":"alice","hash":"$2a$10$..."}`)
	sealed := a.Seal("cr.x", msg, now)
	if bytes.Contains(sealed, []byte("alice")) {
		t.Fatal("the sealed payload carries the plaintext")
	}
	if again := a.Seal("cr.x", msg, now); bytes.Equal(again, sealed) {
		t.Fatal("two seals of one message are equal: the nonce is not random")
	}
	got, err := a2.Open("cr.x", sealed, now.Add(time.Second))
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("open: %q, %v", got, err)
	}
	flipped := bytes.Clone(sealed)
	flipped[len(flipped)/2] ^= 1
	for name, tc := range map[string]struct {
		k       *Keys
		subject string
		data    []byte
		at      time.Time
	}{
		"other secret":  {b, "cr.x", sealed, now},
		"other subject": {a, "cr.y", sealed, now},
		"flipped bit":   {a, "cr.x", flipped, now},
		"cut":           {a, "cr.x", sealed[:len(sealed)-1], now},
		"empty":         {a, "cr.x", nil, now},
		"replayed late": {a, "cr.x", sealed, now.Add(maxAge + time.Second)},
		"from future":   {a, "cr.x", sealed, now.Add(-maxAge - time.Second)},
	} {
		if _, err := tc.k.Open(tc.subject, tc.data, tc.at); !errors.Is(err, ErrSealed) {
			t.Errorf("%s: %v, want ErrSealed", name, err)
		}
	}
}

// TestTokenKey: every node derives one Ed25519 token key from the secret, as PKCS#8 PEM; another secret gives
// another key.
func TestTokenKey(t *testing.T) {
	pemOf := func(k *Keys) ed25519.PrivateKey {
		p, err := k.TokenKeyPEM()
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(p)
		key, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return key.(ed25519.PrivateKey)
	}
	a, a2, b := pemOf(testKeys(t, secretA)), pemOf(testKeys(t, secretA)), pemOf(testKeys(t, secretB))
	if !a.Equal(a2) || a.Equal(b) {
		t.Fatal("token keys: same secret must give the same key, another secret another key")
	}
}

// BenchmarkSealOpen: sealing and opening a 1 KiB payload, what every change and (next) every room entry costs.
func BenchmarkSealOpen(b *testing.B) {
	k, err := DeriveKeys([]byte(secretA))
	if err != nil {
		b.Fatal(err)
	}
	msg := make([]byte, 1024)
	now := time.Now()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if _, err := k.Open("cr.x", k.Seal("cr.x", msg, now), now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSubject: one keyed-hash subject.
func BenchmarkSubject(b *testing.B) {
	k, err := DeriveKeys([]byte(secretA))
	if err != nil {
		b.Fatal(err)
	}
	id := make([]byte, 16)
	for b.Loop() {
		k.Subject("e", id)
	}
}
