package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/cleanrelay/cleanrelay/relay/client/pgp"
)

// prekeysIn opens a terminal's prekeys file with the account's key from its ZIP and returns how many private
// halves it keeps.
func prekeysIn(t *testing.T, file, zip, pass string) int {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte(`"kem"`)) {
		t.Fatal("the prekeys file holds its private halves in plaintext")
	}
	z, _ := os.ReadFile(zip)
	k, err := pgp.ImportZip(z, []byte(pass))
	if err != nil {
		t.Fatal(err)
	}
	o, err := pgp.Decrypt(k, data, k)
	if err != nil || o.Signer != 0 {
		t.Fatalf("the prekeys file does not open with the account's key: %v (signer %d)", err, o.Signer)
	}
	var j prekeysFileJSON
	if err := json.Unmarshal(o.Data, &j); err != nil {
		t.Fatal(err)
	}
	return len(j.Keys)
}

// TestChatMailbox: two terminal accounts reach each other through the relay's mailbox while the other is away
// (docs/e2e.md §9): each publishes one-time prekeys at login, kept beside its key's ZIP encrypted to the
// account's key; a message to an absent peer is sealed with one of the peer's prekeys; the peer reads it at
// its next login and deletes that prekey's private half.
func TestChatMailbox(t *testing.T) {
	url := relayWithAccounts(t)
	dir := t.TempDir()
	zipA, zipB := filepath.Join(dir, "alice.zip"), filepath.Join(dir, "bob.zip")
	envA := []string{envPassword + "=Alice-pass1!", envPassphrase + "=Alice-zip-pass1!"}
	envB := []string{envPassword + "=Bob-pass1!", envPassphrase + "=Bob-zip-pass1!"}
	// Alice makes her key (the dialog does not open: bob has none yet), then bob his, with his prekeys.
	a := startChatEnv(t, envA, "--login", "alice", "--key-type", "curve25519", "--export", zipA, url, "@bob")
	a.wait(t, "exported", nil)
	a.exit(t)
	b := startChatEnv(t, envB, "--login", "bob", "--key-type", "curve25519", "--export", zipB, url, "@alice")
	b.wait(t, "exported", nil)
	b.wait(t, "state", nil)
	b.send(t, chatCommand{Cmd: "leave"})
	b.wait(t, "ended", nil)
	b.exit(t)
	if n := prekeysIn(t, zipB+".prekeys", zipB, "Bob-zip-pass1!"); n != 32 {
		t.Fatalf("bob keeps %d prekeys, want 32", n)
	}

	// Bob is away: alice's message goes to the mailbox.
	a = startChatEnv(t, envA, "--login", "alice", "--key", zipA, url, "@bob")
	a.wait(t, "state", nil)
	a.send(t, chatCommand{Cmd: "send", Text: "while you were away"})
	if s := a.wait(t, "sent", nil); !s.Mailbox {
		t.Fatalf("sent %+v, not to the mailbox", s)
	}
	a.send(t, chatCommand{Cmd: "leave"})
	a.wait(t, "ended", nil)
	a.exit(t)

	// Bob reads it at his next login, and answers alice, who is away now.
	b = startChatEnv(t, envB, "--login", "bob", "--key", zipB, url, "@alice")
	if m := b.wait(t, "message", nil); m.Text != "while you were away" || !m.Mailbox || m.Unverified || m.User != "alice" {
		t.Fatalf("bob read %+v", m)
	}
	b.send(t, chatCommand{Cmd: "send", Text: "and back to you"})
	if s := b.wait(t, "sent", nil); !s.Mailbox {
		t.Fatalf("sent %+v, not to the mailbox", s)
	}
	b.send(t, chatCommand{Cmd: "leave"})
	b.wait(t, "ended", nil)
	b.exit(t)
	if n := prekeysIn(t, zipB+".prekeys", zipB, "Bob-zip-pass1!"); n != 31 {
		t.Fatalf("bob keeps %d prekeys after reading one item, want 31 (the used one deleted)", n)
	}

	a = startChatEnv(t, envA, "--login", "alice", "--key", zipA, url, "@bob")
	if m := a.wait(t, "message", nil); m.Text != "and back to you" || !m.Mailbox || m.Unverified {
		t.Fatalf("alice read %+v", m)
	}
	a.send(t, chatCommand{Cmd: "leave"})
	a.wait(t, "ended", nil)
	a.exit(t)
	// Read once: the relay removed what was acknowledged, and nothing shows again.
	b = startChatEnv(t, envB, "--login", "bob", "--key", zipB, url, "@alice")
	b.wait(t, "state", nil)
	b.send(t, chatCommand{Cmd: "leave"})
	for e := range b.events {
		if e.Type == "message" {
			t.Fatalf("shown again: %+v", e)
		}
	}
}
