package cluster

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"strings"
	"testing"
)

// TestOnionInstanceSeed: one seed per secret and node name, HKDF-SHA-256 with the node's name bound into the
// info after the label and a zero byte.
func TestOnionInstanceSeed(t *testing.T) {
	secret := bytes.Repeat([]byte("s"), MinSecretBytes)
	other := bytes.Repeat([]byte("t"), MinSecretBytes)
	seed := func(secret []byte, node string) []byte {
		t.Helper()
		s, err := OnionInstanceSeed(secret, node)
		if err != nil {
			t.Fatal(err)
		}
		if len(s) != 32 {
			t.Fatalf("seed of %d bytes, want 32", len(s))
		}
		return s
	}
	a := seed(secret, "node-a")
	if !bytes.Equal(a, seed(secret, "node-a")) {
		t.Fatal("the same secret and name gave two seeds")
	}
	for _, c := range []struct {
		what   string
		secret []byte
		node   string
	}{{"another name", secret, "node-b"}, {"a longer name", secret, "node-aa"}, {"another secret", other, "node-a"}} {
		if bytes.Equal(a, seed(c.secret, c.node)) {
			t.Errorf("%s gave the same seed", c.what)
		}
	}
	// The derivation itself, as docs/cluster.md §4 states it: a change of label, separator or hash breaks it.
	want, _ := hkdf.Key(sha256.New, secret, nil, "cleanrelay cluster onion instance v1\x00node-a", 32)
	if !bytes.Equal(a, want) {
		t.Fatalf("seed %x, want HKDF-SHA-256(secret, info \"cleanrelay cluster onion instance v1\" 0 \"node-a\") = %x", a, want)
	}
	// Not any key DeriveKeys makes: the token key's seed has its own label.
	k, err := DeriveKeys(secret)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a, k.token.Seed()) {
		t.Fatal("the instance seed is the token key's")
	}

	for _, c := range []struct {
		secret []byte
		node   string
		want   string
	}{{secret[:MinSecretBytes-1], "node-a", "at least 32"}, {secret, "Node_A", "node name"}, {secret, "", "node name"}} {
		if _, err := OnionInstanceSeed(c.secret, c.node); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("OnionInstanceSeed(%d bytes, %q): %v, want an error saying %q", len(c.secret), c.node, err, c.want)
		}
	}
}
