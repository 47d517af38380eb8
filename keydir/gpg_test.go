package keydir

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The tests in this file run the real GnuPG. They are gated by -gpg because
// they need gpg installed; .ci/test-keydir.sh installs it and passes the flag.
// With -gpg and no gpg the tests fail, they do not skip.
var gpgFlag = flag.Bool("gpg", false, "run the tests against real gpg keys")

// gpgHome is the temporary GNUPGHOME holding the keys TestMain generated once.
var gpgHome string

// gpgKeys maps a test name to the fingerprint gpg reported for it.
var gpgKeys = map[string]string{}

func TestMain(m *testing.M) {
	flag.Parse()
	code := 0
	if *gpgFlag {
		if err := setupGPG(); err != nil {
			fmt.Fprintf(os.Stderr, "gpg setup failed: %v\n", err)
			code = 1
		}
	}
	if code == 0 {
		code = m.Run()
	}
	if gpgHome != "" {
		// Stop the gpg-agent that gpg started for this home, then remove it.
		exec.Command("gpgconf", "--homedir", gpgHome, "--kill", "all").Run()
		os.RemoveAll(gpgHome)
	}
	os.Exit(code)
}

func gpg(args ...string) ([]byte, error) {
	cmd := exec.Command("gpg", append([]string{"--homedir", gpgHome, "--batch", "--no-tty",
		"--pinentry-mode", "loopback", "--passphrase", ""}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("gpg %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return out, nil
}

// gpgFingerprint returns the fingerprint of the only key matching uid, from
// gpg's machine-readable listing.
func gpgFingerprint(uid string) (string, error) {
	out, err := gpg("--with-colons", "--fingerprint", "="+uid)
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Split(line, ":"); len(f) > 9 && f[0] == "fpr" {
			return f[9], nil
		}
	}
	return "", fmt.Errorf("no fingerprint for %q", uid)
}

// setupGPG generates every key once: RSA-4096 takes a while.
func setupGPG() error {
	var err error
	if gpgHome, err = os.MkdirTemp("", "kdgpg"); err != nil {
		return err
	}
	type spec struct {
		name, uid, algo, sub, expire string
		past                         bool // generate in 2020, so a 1-day key has expired
	}
	for _, s := range []spec{
		{"rsa4096", "alice <alice@example.org>", "rsa4096", "rsa4096", "never", false},
		{"ed25519", "bob <bob@example.org>", "ed25519", "cv25519", "never", false},
		{"rsa1024", "carol <carol@example.org>", "rsa1024", "rsa1024", "never", false},
		{"expired", "dave <dave@example.org>", "ed25519", "cv25519", "1d", true},
		{"revoked", "erin <erin@example.org>", "ed25519", "cv25519", "never", false},
		{"comment", "Test frank (frank) <frank@example.org>", "ed25519", "cv25519", "never", false},
	} {
		args := []string{"--quick-gen-key", s.uid, s.algo, "sign,cert", s.expire}
		sub := []string{"--quick-add-key", "", s.sub, "encr", s.expire}
		if s.past {
			args = append([]string{"--faked-system-time", "20200101T000000!"}, args...)
			sub = append([]string{"--faked-system-time", "20200101T000000!"}, sub...)
		}
		if _, err := gpg(args...); err != nil {
			return err
		}
		fpr, err := gpgFingerprint(s.uid)
		if err != nil {
			return err
		}
		if s.past {
			sub[3] = fpr
		} else {
			sub[1] = fpr
		}
		if _, err := gpg(sub...); err != nil {
			return err
		}
		gpgKeys[s.name] = fpr
	}
	// gpg wrote a revocation certificate for every key; importing erin's revokes it.
	rev, err := os.ReadFile(filepath.Join(gpgHome, "openpgp-revocs.d", gpgKeys["revoked"]+".rev"))
	if err != nil {
		return err
	}
	revFile := filepath.Join(gpgHome, "erin.rev")
	if err := os.WriteFile(revFile, bytes.ReplaceAll(rev, []byte(":-----BEGIN"), []byte("-----BEGIN")), 0o600); err != nil {
		return err
	}
	_, err = gpg("--import", revFile)
	return err
}

func needGPG(t *testing.T) {
	t.Helper()
	if !*gpgFlag {
		t.Skip("needs real gpg: run with -gpg (the CI script does)")
	}
}

func gpgExport(t *testing.T, name string) string {
	t.Helper()
	out, err := gpg("--armor", "--export", gpgKeys[name])
	if err != nil || len(out) == 0 {
		t.Fatalf("export %s: %v", name, err)
	}
	return string(out)
}

// gpgSign makes an armored detached signature over text with the primary key
// of name (or a subkey; gpg picks).
func gpgSign(t *testing.T, name, text string, extra ...string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "challenge")
	if err := os.WriteFile(f, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"--armor", "--detach-sign", "--local-user", gpgKeys[name], "--output", "-"}, extra...)
	out, err := gpg(append(args, f)...)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func TestGPGKeysAccepted(t *testing.T) {
	needGPG(t)
	d, _ := newTestDir(t, nil)
	for _, c := range []struct{ key, user, algo, sub string }{
		{"rsa4096", "alice", "rsa4096", "rsa4096"},
		{"ed25519", "bob", "ed25519", "cv25519"},
		{"comment", "frank", "ed25519", "cv25519"},
	} {
		t.Run(c.key, func(t *testing.T) {
			acc := mustRegister(t, d, c.user)
			ch, err := d.IssueChallenge(acc.ID, PurposePublishKey)
			if err != nil {
				t.Fatal(err)
			}
			info, err := d.PublishKey(acc.ID, gpgExport(t, c.key), ch, gpgSign(t, c.key, ch))
			if err != nil {
				t.Fatalf("PublishKey: %v", err)
			}
			if info.Fingerprint != gpgKeys[c.key] {
				t.Fatalf("fingerprint %s, gpg says %s", info.Fingerprint, gpgKeys[c.key])
			}
			// The human-readable `gpg --fingerprint` shows the same, in groups.
			out, err := gpg("--fingerprint", gpgKeys[c.key])
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(string(out), "\n")
			if len(lines) < 2 || strings.ReplaceAll(strings.TrimSpace(lines[1]), " ", "") != info.Fingerprint {
				t.Fatalf("gpg --fingerprint shows %q, API shows %s", lines[1], info.Fingerprint)
			}
			p, err := d.User(c.user)
			if err != nil || p.Key == nil || p.Key.Fingerprint != gpgKeys[c.key] {
				t.Fatalf("User(%s) = %+v, %v", c.user, p, err)
			}
			if info.Algorithm != c.algo || len(info.Subkeys) != 1 || info.Subkeys[0] != c.sub {
				t.Fatalf("algorithms %s %v, want %s %s", info.Algorithm, info.Subkeys, c.algo, c.sub)
			}
			// What the directory serves imports into a fresh gpg with the same fingerprint.
			home := t.TempDir()
			imp := exec.Command("gpg", "--homedir", home, "--batch", "--import")
			imp.Stdin = strings.NewReader(p.Key.Armored)
			if out, err := imp.CombinedOutput(); err != nil {
				t.Fatalf("gpg --import of the served key: %v: %s", err, out)
			}
			list, _ := exec.Command("gpg", "--homedir", home, "--batch", "--with-colons", "--fingerprint").Output()
			exec.Command("gpgconf", "--homedir", home, "--kill", "all").Run()
			if !strings.Contains(string(list), ":"+gpgKeys[c.key]+":") {
				t.Fatalf("served key imports as %s", list)
			}

			// A session proof signed by gpg binds the session to this key.
			sc, err := d.IssueChallenge(acc.ID, PurposeSession)
			if err != nil {
				t.Fatal(err)
			}
			got, err := d.VerifySession(acc.ID, sc, gpgSign(t, c.key, sc))
			if err != nil || got.Fingerprint != gpgKeys[c.key] {
				t.Fatalf("VerifySession = %+v, %v", got, err)
			}
		})
	}
}

func TestGPGKeysRefused(t *testing.T) {
	needGPG(t)
	d, _ := newTestDir(t, func(c *Config) { c.MaxChallengesPerUser = 100 })
	users := map[string]Account{}
	for _, u := range []string{"alice", "bob", "carol", "dave", "erin", "mallory"} {
		users[u] = mustRegister(t, d, u)
	}
	secret, err := gpg("--armor", "--export-secret-keys", gpgKeys["ed25519"])
	if err != nil || !strings.Contains(string(secret), "PRIVATE KEY BLOCK") {
		t.Fatalf("export secret: %v", err)
	}
	// Secret-key packets under a public-key armor header: refused all the same.
	disguised := strings.ReplaceAll(string(secret), "PRIVATE KEY BLOCK", "PUBLIC KEY BLOCK")

	cases := []struct {
		name, user, key, signer string
		signArgs                []string
		keyText                 string // instead of exporting key
		want                    error
		says                    string
	}{
		{name: "RSA-1024", user: "carol", key: "rsa1024", want: ErrKeyWeak, says: "1024 bits"},
		{name: "expired", user: "dave", key: "expired", want: ErrKeyExpired},
		{name: "revoked", user: "erin", key: "revoked", want: ErrKeyRevoked},
		{name: "wrong user ID", user: "mallory", key: "ed25519", want: ErrKeyUserID, says: "mallory"},
		{name: "garbage", user: "bob", keyText: "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nbm90IGEga2V5\n=AAAA\n-----END PGP PUBLIC KEY BLOCK-----\n", want: ErrKeyMalformed},
		{name: "private key", user: "bob", keyText: string(secret), want: ErrPrivateKey},
		{name: "private key disguised", user: "bob", keyText: disguised, want: ErrPrivateKey},
		{name: "proof by another key", user: "bob", key: "ed25519", signer: "rsa4096", want: ErrBadProof, says: "not by this key"},
		{name: "proof with SHA-1", user: "alice", key: "rsa4096", signArgs: []string{"--digest-algo", "SHA1"}, want: ErrBadProof, says: "weak hash"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			acc := users[c.user]
			ch, err := d.IssueChallenge(acc.ID, PurposePublishKey)
			if err != nil {
				t.Fatal(err)
			}
			key := c.keyText
			if key == "" {
				key = gpgExport(t, c.key)
			}
			var sig string
			if c.key != "" && c.key != "expired" && c.key != "revoked" {
				signer := c.signer
				if signer == "" {
					signer = c.key
				}
				sig = gpgSign(t, signer, ch, c.signArgs...)
			}
			_, err = d.PublishKey(acc.ID, key, ch, sig)
			if !errors.Is(err, c.want) {
				t.Fatalf("PublishKey = %v, want %v", err, c.want)
			}
			if !strings.Contains(err.Error(), c.says) {
				t.Fatalf("error %q does not say %q", err, c.says)
			}
			if c.want == ErrPrivateKey && err.Error() != ErrPrivateKey.Error() {
				t.Fatalf("private-key refusal carries more than the sentinel: %q", err)
			}
		})
	}
	if s := d.Stats(); s.WithKey != 0 {
		t.Fatalf("%d keys published by refused uploads", s.WithKey)
	}
}

// The expired gpg key really is expired for gpg too, so the test above tests
// what it claims.
func TestGPGExpiredKeyIsExpired(t *testing.T) {
	needGPG(t)
	out, err := gpg("--with-colons", "--list-keys", gpgKeys["expired"])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "\npub:e:") {
		t.Fatalf("gpg does not list the key as expired: %s", out)
	}
	out, err = gpg("--with-colons", "--list-keys", gpgKeys["revoked"])
	if err != nil || !strings.Contains(string(out), "\npub:r:") {
		t.Fatalf("gpg does not list the key as revoked: %s %v", out, err)
	}
}
