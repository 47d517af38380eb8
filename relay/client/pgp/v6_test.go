package pgp

import (
	"archive/zip"
	"bytes"
	"io"
	"strings"
	"testing"
)

// TestV6Keys: RFC 9580 v6 keys, the browser's (js-v6.zip) and this package's, import with their 32-byte
// fingerprints and sign as dialog identities; a v6 key's ZIP does not tell the user to import it into GnuPG.
func TestV6Keys(t *testing.T) {
	keys := loadKeys(t)
	msg := []byte("a key package's signed bytes")
	for _, name := range []string{"js-v6", "go-v6"} {
		k := keys[name]
		if k.Version() != 6 || len(k.Fingerprint()) != 64 || k.Algorithm() != "ed25519" {
			t.Fatalf("%s: version %d, fingerprint %s, %s", name, k.Version(), k.Fingerprint(), k.Algorithm())
		}
		sig, err := k.Sign(msg)
		if err != nil {
			t.Fatal(err)
		}
		pub, err := k.Public()
		if err != nil || !pub.Verify(msg, sig) {
			t.Fatalf("%s: its own signature does not verify (%v)", name, err)
		}
		if keys["go-curve"].Verify(msg, sig) || pub.Verify(append(msg, '!'), sig) {
			t.Fatalf("%s: a signature verifies with another key or over other bytes", name)
		}
	}
	if keys["go-curve"].Version() != 4 {
		t.Fatal("the curve25519 key is not v4")
	}

	k, err := Generate("v6", "dave", "")
	if err != nil {
		t.Fatal(err)
	}
	z, err := ExportZip(k, []byte("Dave-zip-pass1!"))
	if err != nil {
		t.Fatal(err)
	}
	back, err := ImportZip(z, []byte("Dave-zip-pass1!"))
	if err != nil || back.Fingerprint() != k.Fingerprint() || back.Version() != 6 {
		t.Fatalf("imported %v: %v", back, err)
	}
	readme := zipFile(t, z, "README.txt")
	if !strings.Contains(readme, "GnuPG 2.2 and 2.4 cannot import it") || strings.Contains(readme, "gpg --import") {
		t.Fatalf("README of a v6 key: %q", readme)
	}
}

func zipFile(t *testing.T, z []byte, name string) string {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(z), int64(len(z)))
	if err != nil {
		t.Fatal(err)
	}
	f, err := zr.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
