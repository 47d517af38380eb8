package pgp

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/pgp/go-messages.txt (and make the go-*.zip keys if missing)")

// vectorPass is the passphrase of every key ZIP in testdata/pgp.
const vectorPass = "cleanrelay-vector-pass1!"

const vectorDir = "../../../testdata/pgp"

// vectorKeys are the key ZIPs: js-* exported by the browser's pgp.mjs (e2e/gen-pgp-vectors.mjs), go-* by this
// package; *-v6 hold RFC 9580 v6 keys.
var vectorKeys = []string{"js-rsa", "js-curve", "js-v6", "go-rsa", "go-curve", "go-v6"}

func loadKeys(t testing.TB) map[string]*Key {
	t.Helper()
	keys := map[string]*Key{}
	for _, name := range vectorKeys {
		b, err := os.ReadFile(filepath.Join(vectorDir, name+".zip"))
		if err != nil {
			t.Fatal(err)
		}
		k, err := ImportZip(b, []byte(vectorPass))
		if err != nil {
			t.Fatalf("%s.zip: %v", name, err)
		}
		if !k.Private() {
			t.Fatalf("%s.zip: imported without its private key", name)
		}
		if _, err := ImportZip(b, []byte("not the passphrase")); !errors.Is(err, ErrWrongPassphrase) {
			t.Fatalf("%s.zip with a wrong passphrase: %v", name, err)
		}
		keys[name] = k
	}
	return keys
}

// vectorMessage is one line "message: FROM TO PLAINTEXT-HEX MESSAGE-HEX" of a *-messages.txt file.
type vectorMessage struct {
	from, to   string
	plain, msg []byte
}

func readMessages(t *testing.T, file string) []vectorMessage {
	t.Helper()
	f, err := os.Open(filepath.Join(vectorDir, file))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []vectorMessage
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<22)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ": ")
		switch {
		case !ok:
			t.Fatalf("%s: line %q is not key: value", file, sc.Text())
		case k == "comment":
		case k == "message":
			p := strings.Fields(v)
			if len(p) != 4 {
				t.Fatalf("%s: message line with %d fields", file, len(p))
			}
			m := vectorMessage{from: p[0], to: p[1]}
			if m.plain, err = hex.DecodeString(p[2]); err != nil {
				t.Fatal(err)
			}
			if m.msg, err = hex.DecodeString(p[3]); err != nil {
				t.Fatal(err)
			}
			out = append(out, m)
		default:
			t.Fatalf("%s: unknown key %q", file, k)
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s: no messages", file)
	}
	return out
}

// TestVectors: the browser's exported ZIPs import here, and messages in both directions open and verify: the
// js-messages were made by OpenPGP.js (pgp.mjs Sender) to this package's keys, the go-messages by Sender to
// the browser's keys (e2e/unit/pgp-vectors.test.mjs opens those in node).
func TestVectors(t *testing.T) {
	if *update {
		makeGoVectors(t)
	}
	keys := loadKeys(t)
	for _, file := range []string{"js-messages.txt", "go-messages.txt"} {
		for i, m := range readMessages(t, file) {
			from, to := keys[m.from], keys[m.to]
			if from == nil || to == nil {
				t.Fatalf("%s #%d: unknown key %s or %s", file, i, m.from, m.to)
			}
			o, err := Decrypt(to, m.msg, from)
			if err != nil {
				t.Fatalf("%s #%d (%s → %s): %v", file, i, m.from, m.to, err)
			}
			if !bytes.Equal(o.Data, m.plain) || o.Signer != 0 {
				t.Fatalf("%s #%d: plaintext %q signer %d", file, i, o.Data, o.Signer)
			}
			// The sender encrypts to itself too, as the browser does.
			if o, err := Decrypt(from, m.msg, from); err != nil || !bytes.Equal(o.Data, m.plain) {
				t.Fatalf("%s #%d: the sender cannot read its own message: %v", file, i, err)
			}
			// Checked against another key than the sender's, the signature does not count.
			other := keys["go-curve"]
			if m.from == "go-curve" {
				other = keys["js-curve"]
			}
			if o, err := Decrypt(to, m.msg, other); err != nil || o.Signer != -1 {
				t.Fatalf("%s #%d: verified against the wrong key: %+v %v", file, i, o, err)
			}
		}
	}
}

// makeGoVectors writes go-messages.txt: one message from each go key to each js key, two of them in a row with
// the same reused session key.
func makeGoVectors(t *testing.T) {
	for _, kind := range []string{"rsa", "curve25519", "v6"} {
		name := "go-" + strings.TrimSuffix(kind, "25519")
		path := filepath.Join(vectorDir, name+".zip")
		if _, err := os.Stat(path); err == nil {
			continue
		}
		k, err := Generate(kind, "vector-"+name, "")
		if err != nil {
			t.Fatal(err)
		}
		z, err := ExportZip(k, []byte(vectorPass))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, z, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(vectorDir, "js-rsa.zip")); err != nil {
		t.Fatal("no browser keys yet: run node e2e/gen-pgp-vectors.mjs, then -update again")
	}
	keys := loadKeys(t)
	var b strings.Builder
	b.WriteString("comment: made by go test ./relay/client/pgp -run TestVectors -update; opened by e2e/unit/pgp-vectors.test.mjs\n")
	for _, from := range []string{"go-rsa", "go-curve"} {
		for _, to := range []string{"js-rsa", "js-curve"} {
			s := NewSender(keys[from])
			s.SetRecipients([]*Key{keys[to]})
			for _, text := range []string{`{"k":"msg","id":"go","text":"привет from ` + from + `"}`, fmt.Sprintf(`{"k":"msg","id":"go%d","text":"second, same session key"}`, 2)} {
				plain := append([]byte{0, byte(len(text))}, text...)
				msg, err := s.Encrypt(plain)
				if err != nil {
					t.Fatal(err)
				}
				fmt.Fprintf(&b, "message: %s %s %x %x\n", from, to, plain, msg)
			}
		}
	}
	if err := os.WriteFile(filepath.Join(vectorDir, "go-messages.txt"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestMessageFaults: a tampered message is an error, one for another key is ErrUndecryptable, and a changed
// recipient set rotates the reused session key.
func TestMessageFaults(t *testing.T) {
	keys := loadKeys(t)
	a, b, c := keys["go-curve"], keys["js-curve"], keys["js-rsa"]
	s := NewSender(a)
	s.SetRecipients([]*Key{b})
	msg, err := s.Encrypt([]byte("\x00\x02{}"))
	if err != nil {
		t.Fatal(err)
	}
	first := slices.Clone(s.sk)
	if _, err := Decrypt(c, msg, a); !errors.Is(err, ErrUndecryptable) {
		t.Fatalf("a message to another key: %v", err)
	}
	bad := slices.Clone(msg)
	bad[len(bad)-30] ^= 1
	if o, err := Decrypt(b, bad, a); err == nil && o.Signer == 0 {
		t.Fatal("a tampered message opened as verified")
	}
	s.SetRecipients([]*Key{b})
	if !bytes.Equal(first, s.sk) {
		t.Fatal("the same recipients rotated the session key")
	}
	s.SetRecipients([]*Key{c})
	if _, err := s.Encrypt([]byte("x")); err != nil || bytes.Equal(first, s.sk) {
		t.Fatalf("a new recipient set kept the session key (%v)", err)
	}
}

// TestExportImport: a made key survives the ZIP; the public key in it is the key's.
func TestExportImport(t *testing.T) {
	k, err := Generate("curve25519", "dave", "dave@example.org")
	if err != nil {
		t.Fatal(err)
	}
	z, err := ExportZip(k, []byte("Dave-zip-pass1!"))
	if err != nil {
		t.Fatal(err)
	}
	back, err := ImportZip(z, []byte("Dave-zip-pass1!"))
	if err != nil || back.Fingerprint() != k.Fingerprint() || !back.Private() {
		t.Fatalf("imported %v: %v", back, err)
	}
	if _, err := ImportZip([]byte("PK not a zip"), nil); err == nil || !strings.Contains(err.Error(), "not a zip") {
		t.Fatalf("garbage: %v", err)
	}
}
