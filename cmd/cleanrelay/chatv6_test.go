package main

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cleanrelay/cleanrelay/relay/client/pgp"
)

// TestChatDialogV6: a terminal holding an RFC 9580 v6 key (32-byte fingerprint) and one holding a v4 key open a
// dialog (the v6 side from its exported ZIP): the same safety code, computed over both fingerprints, and
// messages both ways. Then the v4 side comes back with a new v6 key: the other sees the key change and is blocked
// until it trusts it.
func TestChatDialogV6(t *testing.T) {
	url := relayWithAccounts(t)
	dir := t.TempDir()
	zipPath := filepath.Join(dir, "alice.zip")
	envA := []string{envPassword + "=Alice-pass1!", envPassphrase + "=Alice-zip-pass1!"}
	envB := []string{envPassword + "=Bob-pass1!"}
	// Alice makes, exports and publishes a v6 key, and stops: bob has no key yet. She comes back with its ZIP.
	a := startChatEnv(t, envA, "--login", "alice", "--key-type", "v6", "--export", zipPath, url, "@bob")
	ka := a.wait(t, "key", nil)
	if c := a.exit(t); c != 1 {
		t.Fatalf("exit %d, stderr %q", c, a.stderr)
	}
	b := startChatEnv(t, envB, "--login", "bob", "--key-type", "curve25519", url, "@alice")
	kb := b.wait(t, "key", nil)
	a = startChatEnv(t, envA, "--login", "alice", "--key", zipPath, url, "@bob")
	if len(ka.Text) != 64 || !strings.Contains(ka.Name, "v6") || len(kb.Text) != 40 {
		t.Fatalf("keys: alice %s %s, bob %s %s", ka.Name, ka.Text, kb.Name, kb.Text)
	}
	sa, sb := a.wait(t, "safety", nil), b.wait(t, "safety", nil)
	fa, _ := hex.DecodeString(ka.Text)
	fb, _ := hex.DecodeString(kb.Text)
	if sa.Safety != sb.Safety || sa.Safety != safetyCode(fb, fa) {
		t.Fatalf("safety %q and %q, want %q", sa.Safety, sb.Safety, safetyCode(fa, fb))
	}
	a.send(t, chatCommand{Cmd: "send", Text: "from a v6 key"})
	if m := b.wait(t, "message", nil); m.Text != "from a v6 key" || m.Unverified {
		t.Fatalf("bob got %+v", m)
	}
	b.send(t, chatCommand{Cmd: "send", Text: "to a v6 key"})
	if m := a.wait(t, "message", nil); m.Text != "to a v6 key" || m.Unverified {
		t.Fatalf("alice got %+v", m)
	}
	z, err := os.ReadFile(zipPath)
	if err != nil {
		t.Fatal(err)
	}
	if k, err := pgp.ImportZip(z, []byte("Alice-zip-pass1!")); err != nil || k.Version() != 6 || k.Fingerprint() != ka.Text {
		t.Fatalf("the exported v6 key: %v", err)
	}

	// Bob replaces his v4 key with a v6 one.
	b.send(t, chatCommand{Cmd: "leave"})
	b.wait(t, "ended", nil)
	b.exit(t)
	b = startChatEnv(t, envB, "--login", "bob", "--new-key", "--key-type", "v6", url, "@alice")
	kb6 := b.wait(t, "key", nil)
	kc := a.wait(t, "keychange", nil)
	fb6, _ := hex.DecodeString(kb6.Text)
	if len(kb6.Text) != 64 || kc.Safety != sa.Safety || kc.Offered != safetyCode(fa, fb6) {
		t.Fatalf("keychange %+v for bob's new key %s", kc, kb6.Text)
	}
	a.send(t, chatCommand{Cmd: "trust"})
	if s := b.wait(t, "safety", nil); s.Safety != kc.Offered {
		t.Fatalf("bob's safety %s, want %s", s.Safety, kc.Offered)
	}
	a.send(t, chatCommand{Cmd: "send", Text: "v6 to v6"})
	if m := b.wait(t, "message", nil); m.Text != "v6 to v6" || m.Unverified {
		t.Fatalf("bob's v6 key read %+v", m)
	}
	b.send(t, chatCommand{Cmd: "burn"})
	a.wait(t, "ended", nil)
}
