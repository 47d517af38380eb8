package keydir

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

func TestPublishKey(t *testing.T) {
	d, clk := newTestDir(t, nil)
	acc := mustRegister(t, d, "alice")
	e := genKey(t, "alice", nil)
	info, err := publish(t, d, acc.ID, e, e)
	if err != nil {
		t.Fatalf("PublishKey: %v", err)
	}
	want := strings.ToUpper(hex.EncodeToString(e.PrimaryKey.Fingerprint))
	if info.Fingerprint != want || len(want) != 40 {
		t.Fatalf("fingerprint %q, want %q", info.Fingerprint, want)
	}
	if info.Algorithm != "ed25519" || len(info.Subkeys) != 1 || info.Subkeys[0] != "cv25519" {
		t.Fatalf("algorithms %q %q", info.Algorithm, info.Subkeys)
	}
	if !info.Published.Equal(clk.Now()) || !info.ChangedAt.IsZero() || info.PreviousFingerprint != "" {
		t.Fatalf("times %+v", info)
	}
	p, err := d.User("ALICE")
	if err != nil || p.Key == nil || p.Key.Fingerprint != want {
		t.Fatalf("User = %+v, %v", p, err)
	}
	// The served armor is the verified key.
	el, err := openpgp.ReadArmoredKeyRing(strings.NewReader(p.Key.Armored))
	if err != nil || len(el) != 1 || !bytes.Equal(el[0].PrimaryKey.Fingerprint, e.PrimaryKey.Fingerprint) || el[0].PrivateKey != nil {
		t.Fatalf("served armor: %v", err)
	}
	if d.Stats().WithKey != 1 {
		t.Fatal("stats do not count the key")
	}
}

func TestPublishKeyRefusals(t *testing.T) {
	d, clk := newTestDir(t, func(c *Config) { c.MaxChallengesPerUser = 100 })
	acc := mustRegister(t, d, "alice")
	other := mustRegister(t, d, "bob")
	alice := genKey(t, "alice", nil)
	mallory := genKey(t, "mallory", nil)

	past := clk.Now().Add(-48 * time.Hour)
	expired := genKey(t, "alice", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, Curve: packet.Curve25519,
		Time: func() time.Time { return past }, KeyLifetimeSecs: 86400})
	revoked := genKey(t, "alice", nil)
	if err := revoked.RevokeKey(packet.KeySuperseded, "", nil); err != nil {
		t.Fatal(err)
	}
	rsa2048 := genKey(t, "alice", &packet.Config{Algorithm: packet.PubKeyAlgoRSA, RSABits: 2048})
	p256 := genKey(t, "alice", &packet.Config{Algorithm: packet.PubKeyAlgoECDSA, Curve: packet.CurveNistP256})
	commentID, err := openpgp.NewEntity("Test alice", "alice", "alice@example.org", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := publish(t, d, acc.ID, commentID, commentID); err != nil {
		t.Fatalf("user ID naming alice in its comment: %v", err)
	}

	priv := armorPrivate(t, alice)
	// Secret packets inside armor that claims to be a public key.
	privInPublicArmor := strings.Replace(strings.Replace(priv, "PRIVATE KEY BLOCK", "PUBLIC KEY BLOCK", 2), "PGP PUBLIC", "PGP PUBLIC", 1)
	privInPublicArmor = strings.ReplaceAll(privInPublicArmor, "PRIVATE", "PUBLIC")
	var garbageArmor bytes.Buffer
	w, _ := armor.Encode(&garbageArmor, openpgp.PublicKeyType, nil)
	w.Write([]byte("this is not an OpenPGP packet stream at all"))
	w.Close()
	sigArmor := signText(t, alice, "hello")

	fresh := func() string {
		ch, err := d.IssueChallenge(acc.ID, PurposePublishKey)
		if err != nil {
			t.Fatal(err)
		}
		return ch
	}
	type upload struct{ key, ch, sig string }
	good := func(e *openpgp.Entity) upload {
		ch := fresh()
		var b bytes.Buffer
		// Revoked and expired keys cannot sign; the policy refuses them before
		// the proof is looked at, so an empty proof is fine then.
		if err := openpgp.ArmoredDetachSign(&b, e, strings.NewReader(ch), nil); err != nil {
			b.Reset()
		}
		return upload{armorPublic(t, e), ch, b.String()}
	}
	cases := map[string]struct {
		up   upload
		want error
		says string
	}{
		"garbage":               {upload{"hello world", fresh(), ""}, ErrKeyMalformed, "ASCII-armored"},
		"empty":                 {upload{"", fresh(), ""}, ErrKeyMalformed, "ASCII-armored"},
		"armored garbage":       {upload{garbageArmor.String(), fresh(), ""}, ErrKeyMalformed, ""},
		"signature not key":     {upload{sigArmor, fresh(), ""}, ErrKeyMalformed, "armor type"},
		"two keys":              {upload{twoKeys(t, alice, mallory), fresh(), ""}, ErrKeyMalformed, "exactly one"},
		"too large":             {upload{strings.Repeat("a", 65<<10), fresh(), ""}, ErrKeyMalformed, "larger than"},
		"private key":           {upload{priv, fresh(), ""}, ErrPrivateKey, ""},
		"private in pub armor":  {upload{privInPublicArmor, fresh(), ""}, ErrPrivateKey, ""},
		"RSA-2048":              {good(rsa2048), ErrKeyWeak, "2048 bits, at least 3072"},
		"NIST P-256":            {good(p256), ErrKeyWeak, "P256"},
		"expired":               {good(expired), ErrKeyExpired, ""},
		"revoked":               {good(revoked), ErrKeyRevoked, ""},
		"wrong user ID":         {good(mallory), ErrKeyUserID, "alice"},
		"proof by other key":    {func() upload { ch := fresh(); return upload{armorPublic(t, alice), ch, signText(t, mallory, ch)} }(), ErrBadProof, "not by this key"},
		"proof over other text": {func() upload { ch := fresh(); return upload{armorPublic(t, alice), ch, signText(t, alice, ch+"x")} }(), ErrBadProof, "does not verify"},
		"proof garbage":         {upload{armorPublic(t, alice), fresh(), "not a signature"}, ErrBadProof, "armored"},
		"proof empty":           {upload{armorPublic(t, alice), fresh(), ""}, ErrBadProof, ""},
		"invented challenge":    {upload{armorPublic(t, alice), "cleanrelay proof of key possession\n", signText(t, alice, "cleanrelay proof of key possession\n")}, ErrBadProof, "unknown"},
		"challenge of bob": {func() upload {
			ch, _ := d.IssueChallenge(other.ID, PurposePublishKey)
			return upload{armorPublic(t, alice), ch, signText(t, alice, ch)}
		}(), ErrBadProof, "unknown"},
	}
	before := d.keyOf(acc.ID)
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := d.PublishKey(acc.ID, c.up.key, c.up.ch, c.up.sig)
			if !errors.Is(err, c.want) {
				t.Fatalf("PublishKey = %v, want %v", err, c.want)
			}
			if !strings.Contains(err.Error(), c.says) {
				t.Fatalf("error %q does not say %q", err, c.says)
			}
			if c.want == ErrPrivateKey && err.Error() != ErrPrivateKey.Error() {
				t.Fatalf("private-key refusal says more than the sentinel: %q", err)
			}
			if d.keyOf(acc.ID) != before {
				t.Fatal("a refused upload changed the published key")
			}
		})
	}
	// Each sentinel above is distinct: the refusals can be told apart.
	seen := map[error]bool{}
	for _, e := range []error{ErrKeyMalformed, ErrPrivateKey, ErrKeyWeak, ErrKeyExpired, ErrKeyRevoked, ErrKeyUserID, ErrBadProof} {
		if seen[e] {
			t.Fatalf("duplicate sentinel %v", e)
		}
		seen[e] = true
	}
}

func twoKeys(t *testing.T, a, b *openpgp.Entity) string {
	var buf bytes.Buffer
	w, _ := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	a.Serialize(w)
	b.Serialize(w)
	w.Close()
	return buf.String()
}

func TestChallengeRules(t *testing.T) {
	d, clk := newTestDir(t, func(c *Config) { c.MaxChallengesPerUser = 2; c.ChallengeLifetime = time.Minute })
	acc := mustRegister(t, d, "alice")
	e := genKey(t, "alice", nil)
	key := armorPublic(t, e)

	ch, _ := d.IssueChallenge(acc.ID, PurposePublishKey)
	sig := signText(t, e, ch)
	if _, err := d.PublishKey(acc.ID, key, ch, sig); err != nil {
		t.Fatal(err)
	}
	if _, err := d.PublishKey(acc.ID, key, ch, sig); !errors.Is(err, ErrBadProof) {
		t.Fatalf("replayed challenge: %v", err)
	}

	ch, _ = d.IssueChallenge(acc.ID, PurposePublishKey)
	clk.Advance(time.Minute)
	if _, err := d.PublishKey(acc.ID, key, ch, signText(t, e, ch)); !errors.Is(err, ErrBadProof) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired challenge: %v", err)
	}

	c1, _ := d.IssueChallenge(acc.ID, PurposePublishKey)
	c2, _ := d.IssueChallenge(acc.ID, PurposePublishKey)
	c3, _ := d.IssueChallenge(acc.ID, PurposePublishKey)
	if c1 == c2 || c2 == c3 {
		t.Fatal("challenges repeat")
	}
	if _, err := d.PublishKey(acc.ID, key, c1, signText(t, e, c1)); !errors.Is(err, ErrBadProof) {
		t.Fatalf("challenge dropped by the per-user bound: %v", err)
	}
	if _, err := d.PublishKey(acc.ID, key, c3, signText(t, e, c3)); err != nil {
		t.Fatalf("newest challenge: %v", err)
	}
	if n := d.Stats().PendingChallenges; n != 1 {
		t.Fatalf("%d pending challenges, want 1 (c2)", n)
	}

	sc, _ := d.IssueChallenge(acc.ID, PurposeSession)
	if _, err := d.PublishKey(acc.ID, key, sc, signText(t, e, sc)); !errors.Is(err, ErrBadProof) {
		t.Fatalf("session challenge used for upload: %v", err)
	}
	if _, err := d.IssueChallenge(acc.ID, "other"); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("unknown purpose: %v", err)
	}
	if _, err := d.IssueChallenge("nobody", PurposePublishKey); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown user: %v", err)
	}
}

func TestKeyReplaceAndSession(t *testing.T) {
	d, clk := newTestDir(t, nil)
	acc := mustRegister(t, d, "alice")
	var mu sync.Mutex
	var changed []string
	d.OnKeyChange(func(id string) { mu.Lock(); changed = append(changed, id); mu.Unlock() })

	if _, err := d.IssueChallenge(acc.ID, PurposeSession); !errors.Is(err, ErrNoKey) {
		t.Fatalf("session challenge without key: %v", err)
	}
	k1, k2 := genKey(t, "alice", nil), genKey(t, "alice", nil)
	i1, err := publish(t, d, acc.ID, k1, k1)
	if err != nil {
		t.Fatal(err)
	}
	ch, _ := d.IssueChallenge(acc.ID, PurposeSession)
	if _, err := d.VerifySession(acc.ID, ch, signText(t, k2, ch)); !errors.Is(err, ErrBadProof) {
		t.Fatalf("session proof by another key: %v", err)
	}
	ch, _ = d.IssueChallenge(acc.ID, PurposeSession)
	got, err := d.VerifySession(acc.ID, ch, signText(t, k1, ch))
	if err != nil || got.Fingerprint != i1.Fingerprint {
		t.Fatalf("VerifySession = %+v, %v", got, err)
	}
	if _, err := d.VerifySession(acc.ID, ch, signText(t, k1, ch)); !errors.Is(err, ErrBadProof) {
		t.Fatalf("replayed session proof: %v", err)
	}
	if err := d.CheckSender(acc.ID, i1.Fingerprint); err != nil {
		t.Fatalf("CheckSender: %v", err)
	}

	clk.Advance(time.Minute)
	if _, err := publish(t, d, acc.ID, k1, k1); err != nil {
		t.Fatal(err)
	}
	if len(changed) != 0 {
		t.Fatal("re-publishing the same key counted as a change")
	}
	clk.Advance(time.Minute)
	i2, err := publish(t, d, acc.ID, k2, k2)
	if err != nil {
		t.Fatal(err)
	}
	if !i2.ChangedAt.Equal(clk.Now()) || i2.PreviousFingerprint != i1.Fingerprint {
		t.Fatalf("replacement info %+v", i2)
	}
	mu.Lock()
	if len(changed) != 1 || changed[0] != acc.ID {
		t.Fatalf("OnKeyChange calls %v", changed)
	}
	mu.Unlock()
	if err := d.CheckSender(acc.ID, i1.Fingerprint); !errors.Is(err, ErrKeyReplaced) || !errors.Is(err, ErrNoKey) {
		t.Fatalf("CheckSender with the old key: %v", err)
	}
	p, _ := d.User("alice")
	if p.Key.ChangedAt.IsZero() {
		t.Fatal("profile does not say the key changed")
	}
}

func TestOperatorRevocation(t *testing.T) {
	d, _ := newTestDir(t, nil)
	acc := mustRegister(t, d, "alice")
	bob := mustRegister(t, d, "bob")
	var mu sync.Mutex
	var revoked []string
	d.OnRevoke(func(id string) { mu.Lock(); revoked = append(revoked, id); mu.Unlock() })
	k := genKey(t, "alice", nil)
	info, err := publish(t, d, acc.ID, k, k)
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := d.Login(context.Background(), "alice", goodPassword)
	if err != nil {
		t.Fatal(err)
	}

	if err := d.RevokeKey("bob"); !errors.Is(err, ErrNoKey) {
		t.Fatalf("revoke without key: %v", err)
	}
	if err := d.RevokeKey("nobody"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoke unknown: %v", err)
	}
	if err := d.RevokeKey("Alice"); err != nil {
		t.Fatal(err)
	}
	if err := d.CheckSender(acc.ID, info.Fingerprint); !errors.Is(err, ErrNoKey) {
		t.Fatalf("CheckSender after revoke: %v", err)
	}
	if p, _ := d.User("alice"); p.Key != nil {
		t.Fatal("revoked key still served")
	}
	if _, err := publish(t, d, acc.ID, k, k); !errors.Is(err, ErrKeyRevoked) {
		t.Fatalf("re-publishing the revoked key: %v", err)
	}
	if _, err := d.Authenticate(tok); err != nil {
		t.Fatalf("key revocation ended the login: %v", err)
	}
	k2 := genKey(t, "alice", nil)
	if _, err := publish(t, d, acc.ID, k2, k2); err != nil {
		t.Fatalf("a new key after revocation: %v", err)
	}

	if err := d.DisableAccount("ALICE"); err != nil {
		t.Fatal(err)
	}
	if err := d.DisableAccount("alice"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if len(revoked) != 2 || revoked[0] != acc.ID || revoked[1] != acc.ID {
		t.Fatalf("OnRevoke calls %v, want alice twice (key, account)", revoked)
	}
	mu.Unlock()
	if _, err := d.Authenticate(tok); !errors.Is(err, ErrAccountDisabled) {
		t.Fatalf("token of a disabled account: %v", err)
	}
	if _, _, err := d.Login(context.Background(), "alice", goodPassword); !errors.Is(err, ErrAccountDisabled) {
		t.Fatalf("login of a disabled account: %v", err)
	}
	if err := d.CheckSender(acc.ID, info.Fingerprint); !errors.Is(err, ErrAccountDisabled) {
		t.Fatalf("CheckSender of a disabled account: %v", err)
	}
	if _, err := d.IssueChallenge(acc.ID, PurposeSession); !errors.Is(err, ErrAccountDisabled) {
		t.Fatalf("challenge for a disabled account: %v", err)
	}
	if res, _ := d.Search(bob.ID, "a", 5); len(res) != 0 {
		t.Fatalf("disabled account found by search: %+v", res)
	}
	s := d.Stats()
	if s.Accounts != 2 || s.Disabled != 1 {
		t.Fatalf("stats %+v", s)
	}
	l := d.ListAccounts()
	if len(l) != 2 || l[0].Username != "alice" || !l[0].Disabled || l[1].HasKey {
		t.Fatalf("list %+v", l)
	}
}

// OpenPGP.js signs a text message in text mode (signature type 0x01, line
// endings canonicalized); such a proof is accepted like a binary one.
func TestTextModeProof(t *testing.T) {
	d, _ := newTestDir(t, nil)
	acc := mustRegister(t, d, "alice")
	e := genKey(t, "alice", nil)
	ch, _ := d.IssueChallenge(acc.ID, PurposePublishKey)
	var b bytes.Buffer
	if err := openpgp.ArmoredDetachSignText(&b, e, strings.NewReader(ch), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := d.PublishKey(acc.ID, armorPublic(t, e), ch, b.String()); err != nil {
		t.Fatalf("text-mode proof: %v", err)
	}
}
