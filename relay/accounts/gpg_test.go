package accounts_test

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cleanrelay/cleanrelay/keydir"
	"github.com/cleanrelay/cleanrelay/relay"
	"github.com/cleanrelay/cleanrelay/relay/internal/relaytest"
)

// -gpg runs the accounts flow with keys and signatures made by the real GnuPG (.ci/test-keydir.sh passes
// it; without gpg installed the test then fails rather than skips).
var gpgFlag = flag.Bool("gpg", false, "run the accounts tests against real gpg")

// gpgUser drives one user's own GnuPG home.
type gpgUser struct {
	t    *testing.T
	home string
	fpr  string
}

func newGPGUser(t *testing.T, uid, algo, sub string) *gpgUser {
	t.Helper()
	home, err := os.MkdirTemp("", "rgpg")
	if err != nil {
		t.Fatal(err)
	}
	g := &gpgUser{t: t, home: home}
	t.Cleanup(func() {
		exec.Command("gpgconf", "--homedir", home, "--kill", "all").Run()
		os.RemoveAll(home)
	})
	g.run(nil, "--quick-gen-key", uid, algo, "sign,cert", "never")
	out := g.run(nil, "--with-colons", "--fingerprint", "="+uid)
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Split(line, ":"); len(f) > 9 && f[0] == "fpr" {
			g.fpr = f[9]
			break
		}
	}
	g.run(nil, "--quick-add-key", g.fpr, sub, "encr", "never")
	return g
}

func (g *gpgUser) run(stdin []byte, args ...string) []byte {
	g.t.Helper()
	cmd := exec.Command("gpg", append([]string{"--homedir", g.home, "--batch", "--no-tty", "--pinentry-mode", "loopback", "--passphrase", ""}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		g.t.Fatalf("gpg %v: %v: %s", args, err, stderr.String())
	}
	return out
}

func (g *gpgUser) sign(text string) string {
	f := filepath.Join(g.t.TempDir(), "challenge")
	os.WriteFile(f, []byte(text), 0o600)
	return string(g.run(nil, "--armor", "--detach-sign", "--local-user", g.fpr, "--output", "-", f))
}

// publishGPG publishes the user's gpg key through the API, proving possession with a gpg signature.
func (u *apiUser) publishGPG(g *gpgUser) {
	u.t.Helper()
	r := u.do("POST", "/api/key/challenge", nil)
	u.want(r, 200, "")
	ch := r.body["challenge"].(string)
	key := string(g.run(nil, "--armor", "--export", g.fpr))
	r = u.do("PUT", "/api/key", map[string]string{"key": key, "challenge": ch, "signature": g.sign(ch)})
	u.want(r, 200, "")
}

func (u *apiUser) ticketGPG(g *gpgUser) {
	u.t.Helper()
	r := u.do("POST", "/api/session/challenge", nil)
	u.want(r, 200, "")
	ch := r.body["challenge"].(string)
	u.want(u.do("POST", "/api/session/proof", map[string]string{"challenge": ch, "signature": g.sign(ch)}), 200, "")
}

func TestAccountsGPG(t *testing.T) {
	if !*gpgFlag {
		t.Skip("needs real gpg: run with -gpg (the CI script does)")
	}
	ar := startAccounts(t, relay.Config{}, keydir.Config{})
	ga := newGPGUser(t, "alice <alice@example.org>", "rsa4096", "rsa4096")
	gb := newGPGUser(t, "Test bob (bob)", "ed25519", "cv25519")
	alice, bob := ar.newUser(t, "alice"), ar.newUser(t, "bob")
	for _, u := range []*apiUser{alice, bob} {
		u.register()
		u.login()
	}
	alice.publishGPG(ga)
	bob.publishGPG(gb)

	// The fingerprint the API shows is gpg's, and the served key is what gpg exported.
	for _, c := range []struct {
		name string
		g    *gpgUser
	}{{"alice", ga}, {"bob", gb}} {
		r := bob.do("GET", "/api/users/"+c.name+"/key", nil)
		bob.want(r, 200, "")
		k := r.body["key"].(map[string]any)
		if k["fingerprint"] != c.g.fpr {
			t.Fatalf("%s: API fingerprint %v, gpg %s", c.name, k["fingerprint"], c.g.fpr)
		}
		other := ga
		if c.g == ga {
			other = gb
		}
		other.run([]byte(k["armored"].(string)), "--import")
		if out := other.run(nil, "--with-colons", "--fingerprint", c.g.fpr); !strings.Contains(string(out), ":"+c.g.fpr+":") {
			t.Fatalf("served key of %s does not import into gpg: %s", c.name, out)
		}
	}

	room, capability := alice.dialog("bob")
	alice.ticketGPG(ga)
	ca, err := alice.dial()
	if err != nil {
		t.Fatal(err)
	}
	bob.ticketGPG(gb)
	cb, err := bob.dial()
	if err != nil {
		t.Fatal(err)
	}
	ra := relaytest.MustJoin(t, ca, room, capability)
	relaytest.MustJoin(t, cb, room, capability)
	if ev := relaytest.NextEvent(t, ca); ev.User != "bob" {
		t.Fatalf("join of %q, want bob", ev.User)
	}
	// A real OpenPGP message from alice to bob passes the relay untouched and decrypts with bob's gpg.
	msgFile := filepath.Join(t.TempDir(), "m")
	os.WriteFile(msgFile, []byte("hello bob"), 0o600)
	ga.run(nil, "--import-options", "import-minimal", "--import", exportFile(t, gb))
	ct := ga.run(nil, "--trust-model", "always", "--encrypt", "--sign", "--local-user", ga.fpr, "--recipient", gb.fpr, "--output", "-", msgFile)
	if err := ca.Send(ra.Ch, ct); err != nil {
		t.Fatal(err)
	}
	f := relaytest.NextFrame(t, cb)
	if !bytes.Equal(f.Payload, ct) {
		t.Fatal("the relay changed the ciphertext")
	}
	if pt := gb.run(f.Payload, "--decrypt"); string(pt) != "hello bob" {
		t.Fatalf("bob decrypted %q", pt)
	}
}

func exportFile(t *testing.T, g *gpgUser) string {
	f := filepath.Join(t.TempDir(), "key.asc")
	os.WriteFile(f, g.run(nil, "--armor", "--export", g.fpr), 0o600)
	return f
}
