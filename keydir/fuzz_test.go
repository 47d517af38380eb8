package keydir

import (
	"strings"
	"testing"
	"time"
)

// A normalized username is a fixed point, in the documented alphabet.
func FuzzNormalizeUsername(f *testing.F) {
	for _, s := range []string{"alice", "ALICE", "ａｌｉｃｅ", "a.b_c-d", "ali\u200bce", "\u212Aate", "al..ice", "İstanbul", "ß", "ﬁx"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := NormalizeUsername(s)
		if err != nil {
			return
		}
		if err := checkUsernameAlphabet(n); err != nil {
			t.Fatalf("NormalizeUsername(%q) = %q outside the alphabet: %v", s, n, err)
		}
		again, err := NormalizeUsername(n)
		if err != nil || again != n {
			t.Fatalf("not idempotent: %q → %q → %q, %v", s, n, again, err)
		}
	})
}

var fuzzOwner = owner{username: "alice", fullName: "Test alice", email: "alice@example.org"}

// Parsing a key and parsing what we re-armored from it gives the same key and
// the same bytes; nothing panics on garbage.
func FuzzParsePublicKey(f *testing.F) {
	e := genKey(f, "alice", nil)
	f.Add(armorPublic(f, e))
	f.Add("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nxsBNBF\n-----END PGP PUBLIC KEY BLOCK-----\n")
	f.Add("garbage")
	cfg, _ := Config{}.withDefaults()
	now := time.Now().Add(time.Hour)
	f.Fuzz(func(t *testing.T, s string) {
		_, info, err := parsePublicKey(s, fuzzOwner, now, cfg)
		if err != nil {
			if strings.Contains(s, "PRIVATE KEY") && err != ErrPrivateKey {
				t.Fatalf("input naming a private key got %v", err)
			}
			return
		}
		_, again, err := parsePublicKey(info.Armored, fuzzOwner, now, cfg)
		if err != nil {
			t.Fatalf("re-parsing our own armor: %v", err)
		}
		if again.Fingerprint != info.Fingerprint || again.Armored != info.Armored {
			t.Fatalf("parse → armor → parse changed the key")
		}
	})
}
