package keydir

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// rsaDir is shared by the RS256 tests: generating an RSA-3072 key is slow.
func rsaDir(t *testing.T) (*Directory, *fakeClock, Account) {
	t.Helper()
	d, clk := newTestDir(t, func(c *Config) { c.TokenAlgorithm = "RS256" })
	return d, clk, mustRegister(t, d, "alice")
}

func TestTokenRefusals(t *testing.T) {
	d, clk, acc := rsaDir(t)
	ctx := context.Background()
	good, sess, err := d.Login(ctx, "alice", goodPassword)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Authenticate(good); err != nil {
		t.Fatalf("valid token refused: %v", err)
	}
	if sess.Expires.Sub(clk.Now()) != 7*24*time.Hour {
		t.Fatalf("lifetime %v, want 7 days", sess.Expires.Sub(clk.Now()))
	}

	now := clk.Now()
	claims := func(f func(*Claims)) *Claims {
		c := &Claims{Username: "alice", FullName: "Test alice", Type: TokenType, RegisteredClaims: jwt.RegisteredClaims{
			Issuer: "cleanrelay", Subject: acc.ID, Audience: jwt.ClaimStrings{"cleanrelay"},
			ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)), IssuedAt: jwt.NewNumericDate(now), ID: "jti-" + t.Name(),
		}}
		if f != nil {
			f(c)
		}
		return c
	}
	sign := func(m jwt.SigningMethod, key any, c *Claims) string {
		s, err := jwt.NewWithClaims(m, c).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	own := d.tokens.signKey
	// Control: a hand-made token with the real key passes, so the refusals below
	// are refused for the one thing each changes.
	if _, err := d.Authenticate(sign(jwt.SigningMethodRS256, own, claims(nil))); err != nil {
		t.Fatalf("hand-made valid token refused: %v", err)
	}

	pubDER, _ := x509.MarshalPKIXPublicKey(own.Public())
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	otherRSA, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, otherEd, _ := ed25519.GenerateKey(rand.Reader)
	noneTok := sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(nil))
	parts := strings.Split(good, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(payload), `"alice"`, `"admin"`, 1))) + "." + parts[2]

	other, _ := newTestDir(t, func(c *Config) { c.TokenAlgorithm = "RS256" })
	otherAcc := mustRegister(t, other, "alice")
	beforeRestart, _, err := other.Login(ctx, "alice", goodPassword)
	if err != nil {
		t.Fatal(err)
	}
	_ = otherAcc

	loggedOut, _, err := d.Login(ctx, "alice", goodPassword)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Logout(loggedOut); err != nil {
		t.Fatalf("Logout: %v", err)
	}

	cases := map[string]struct {
		tok string
		is  error // a more precise error the refusal must also wrap, if any
	}{
		"alg none":           {noneTok, jwt.ErrTokenSignatureInvalid},
		"HS256 with pub key": {sign(jwt.SigningMethodHS256, pubPEM, claims(nil)), jwt.ErrTokenSignatureInvalid},
		"HS256 with pub DER": {sign(jwt.SigningMethodHS256, pubDER, claims(nil)), jwt.ErrTokenSignatureInvalid},
		"other RSA key":      {sign(jwt.SigningMethodRS256, otherRSA, claims(nil)), jwt.ErrTokenSignatureInvalid},
		"RS512 same key":     {sign(jwt.SigningMethodRS512, own, claims(nil)), jwt.ErrTokenSignatureInvalid},
		"PS256 same key":     {sign(jwt.SigningMethodPS256, own, claims(nil)), jwt.ErrTokenSignatureInvalid},
		"EdDSA other key":    {sign(jwt.SigningMethodEdDSA, otherEd, claims(nil)), jwt.ErrTokenSignatureInvalid},
		"expired": {sign(jwt.SigningMethodRS256, own, claims(func(c *Claims) {
			c.ExpiresAt = jwt.NewNumericDate(now.Add(-time.Minute))
		})), jwt.ErrTokenExpired},
		"not yet valid": {sign(jwt.SigningMethodRS256, own, claims(func(c *Claims) {
			c.NotBefore = jwt.NewNumericDate(now.Add(time.Hour))
		})), jwt.ErrTokenNotValidYet},
		"issued in the future": {sign(jwt.SigningMethodRS256, own, claims(func(c *Claims) {
			c.IssuedAt = jwt.NewNumericDate(now.Add(maxIssuedSkew + time.Second))
		})), jwt.ErrTokenUsedBeforeIssued},
		"wrong iss": {sign(jwt.SigningMethodRS256, own, claims(func(c *Claims) { c.Issuer = "evil" })), jwt.ErrTokenInvalidIssuer},
		"no iss":    {sign(jwt.SigningMethodRS256, own, claims(func(c *Claims) { c.Issuer = "" })), jwt.ErrTokenRequiredClaimMissing},
		"wrong aud": {sign(jwt.SigningMethodRS256, own, claims(func(c *Claims) {
			c.Audience = jwt.ClaimStrings{"other"}
		})), jwt.ErrTokenInvalidAudience},
		"missing exp": {sign(jwt.SigningMethodRS256, own, claims(func(c *Claims) { c.ExpiresAt = nil })), jwt.ErrTokenRequiredClaimMissing},
		"missing iat": {sign(jwt.SigningMethodRS256, own, claims(func(c *Claims) { c.IssuedAt = nil })), nil},
		"wrong typ":   {sign(jwt.SigningMethodRS256, own, claims(func(c *Claims) { c.Type = "refresh" })), nil},
		"no typ":      {sign(jwt.SigningMethodRS256, own, claims(func(c *Claims) { c.Type = "" })), nil},
		"unknown sub": {sign(jwt.SigningMethodRS256, own, claims(func(c *Claims) { c.Subject = "someone" })), nil},
		"sub/username mismatch": {sign(jwt.SigningMethodRS256, own, claims(func(c *Claims) {
			c.Username = "bob"
		})), nil},
		"tampered payload":   {tampered, jwt.ErrTokenSignatureInvalid},
		"1 MB token":         {strings.Repeat("a", 1<<20), nil},
		"4097 bytes":         {good + "." + strings.Repeat("a", 4097-len(good)-1), nil},
		"empty":              {"", nil},
		"garbage":            {"not.a.token", jwt.ErrTokenMalformed},
		"logged out":         {loggedOut, nil},
		"before restart":     {beforeRestart, jwt.ErrTokenSignatureInvalid},
		"two dots appended":  {good + "..", jwt.ErrTokenMalformed},
		"signature stripped": {parts[0] + "." + parts[1] + ".", jwt.ErrTokenSignatureInvalid},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			s, err := d.Authenticate(c.tok)
			if !errors.Is(err, ErrBadToken) {
				t.Fatalf("Authenticate = %+v, %v; want ErrBadToken", s, err)
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Fatalf("error %v does not wrap %v", err, c.is)
			}
			if len(c.tok) > 20 && strings.Contains(err.Error(), c.tok) {
				t.Fatalf("error quotes the token")
			}
		})
	}
	// A token from another node whose clock is a few seconds ahead (a cluster) is good.
	ahead := sign(jwt.SigningMethodRS256, own, claims(func(c *Claims) { c.IssuedAt = jwt.NewNumericDate(now.Add(maxIssuedSkew)) }))
	if _, err := d.Authenticate(ahead); err != nil {
		t.Fatalf("token issued %v ahead: %v", maxIssuedSkew, err)
	}
	// Logging out one token left the other valid.
	if _, err := d.Authenticate(good); err != nil {
		t.Fatalf("other token after logout: %v", err)
	}
	// The real token expires after its lifetime.
	clk.Advance(7*24*time.Hour + time.Second)
	if _, err := d.Authenticate(good); !errors.Is(err, jwt.ErrTokenExpired) {
		t.Fatalf("token after 7 days: %v", err)
	}
}

func TestTokenClaims(t *testing.T) {
	d, _ := newTestDir(t, func(c *Config) { c.TokenLifetime = time.Hour })
	_, err := d.Register(context.Background(), Registration{Username: "Alice", FullName: "Alice Liddell", Email: "alice@example.org", Password: goodPassword})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Register(context.Background(), Registration{Username: "bob", FullName: "Bob", Password: goodPassword}); err != nil {
		t.Fatal(err)
	}
	tokA, sA, err := d.Login(context.Background(), "alice", goodPassword)
	if err != nil {
		t.Fatal(err)
	}
	tokB, _, err := d.Login(context.Background(), "bob", goodPassword)
	if err != nil {
		t.Fatal(err)
	}
	payload := func(tok string) map[string]any {
		c := jwt.MapClaims{}
		if _, _, err := jwt.NewParser().ParseUnverified(tok, c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	a := payload(tokA)
	for _, k := range []string{"sub", "username", "full_name", "email", "iat", "exp", "iss", "aud", "jti", "typ"} {
		if _, ok := a[k]; !ok {
			t.Errorf("claim %q missing: %v", k, a)
		}
	}
	if a["typ"] != TokenType || a["username"] != "alice" || a["email"] != "alice@example.org" || a["sub"] != sA.UserID {
		t.Errorf("claims %v", a)
	}
	if exp, iat := a["exp"].(float64), a["iat"].(float64); exp-iat != 3600 {
		t.Errorf("exp-iat = %v, want 3600", exp-iat)
	}
	if _, ok := payload(tokB)["email"]; ok {
		t.Errorf("email claim present for an account without e-mail")
	}
	hdr := strings.Split(tokA, ".")[0]
	h, _ := base64.RawURLEncoding.DecodeString(hdr)
	if !strings.Contains(string(h), `"alg":"EdDSA"`) {
		t.Errorf("header %s", h)
	}
}

func TestSigningKeyPEM(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)})
	der8, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	pkcs8 := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der8})
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	edDER, _ := x509.MarshalPKCS8PrivateKey(edKey)
	edPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: edDER})
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	smallPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(small)})

	for name, c := range map[string]struct {
		alg string
		pem []byte
		ok  bool
	}{
		"rsa pkcs1":        {"RS256", pkcs1, true},
		"rsa pkcs8":        {"RS256", pkcs8, true},
		"ed25519":          {"EdDSA", edPEM, true},
		"ed25519 as RS256": {"RS256", edPEM, false},
		"rsa as EdDSA":     {"EdDSA", pkcs8, false},
		"rsa 1024":         {"RS256", smallPEM, false},
		"garbage":          {"RS256", []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), false},
		"no pem":           {"RS256", []byte("hello"), false},
	} {
		t.Run(name, func(t *testing.T) {
			clk := newClock()
			d, err := New(Config{TokenAlgorithm: c.alg, SigningKeyPEM: c.pem, Now: clk.Now, testBcryptCost: 4})
			if !c.ok {
				if err == nil {
					t.Fatal("New accepted the key")
				}
				if len(c.pem) > 40 && strings.Contains(err.Error(), string(c.pem[len(c.pem)/2:len(c.pem)/2+8])) {
					t.Fatalf("error quotes the key: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// Two directories with the same key accept each other's tokens: an
			// operator-supplied key survives a restart.
			d2, err := New(Config{TokenAlgorithm: c.alg, SigningKeyPEM: c.pem, Now: clk.Now, testBcryptCost: 4})
			if err != nil {
				t.Fatal(err)
			}
			tok, _, err := d.tokens.issue(accountView{ID: "u1", Username: "alice"}, clk.Now())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := d2.tokens.verify(tok); err != nil {
				t.Fatalf("same key, other directory: %v", err)
			}
		})
	}
}

// When the denylist is full, logout still works, by ending all of the
// account's current tokens.
func TestLogoutDenylistFull(t *testing.T) {
	d, clk := newTestDir(t, func(c *Config) { c.MaxRevokedTokens = 1 })
	mustRegister(t, d, "alice")
	ctx := context.Background()
	t1, _, _ := d.Login(ctx, "alice", goodPassword)
	t2, _, _ := d.Login(ctx, "alice", goodPassword)
	t3, _, _ := d.Login(ctx, "alice", goodPassword)
	if err := d.Logout(t1); err != nil {
		t.Fatal(err)
	}
	if err := d.Logout(t2); err != nil {
		t.Fatal(err)
	}
	for i, tok := range []string{t1, t2, t3} {
		if _, err := d.Authenticate(tok); !errors.Is(err, ErrBadToken) {
			t.Errorf("token %d after logout with a full denylist: %v", i+1, err)
		}
	}
	if err := d.Logout(t1); !errors.Is(err, ErrBadToken) {
		t.Errorf("second logout of one token: %v", err)
	}
	clk.Advance(2 * time.Second)
	t4, _, err := d.Login(ctx, "alice", goodPassword)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Authenticate(t4); err != nil {
		t.Fatalf("new login after fallback logout: %v", err)
	}
	if n := d.Stats().RevokedTokens; n != 1 {
		t.Fatalf("denylist holds %d, bound 1", n)
	}
}

// TestVerifiedTokenCacheKeepsEveryCheck: a token verified once is not verified again, but its expiry, a
// logout and the account's state still apply on every use.
func TestVerifiedTokenCacheKeepsEveryCheck(t *testing.T) {
	d, clk := newTestDir(t, func(c *Config) { c.TokenAlgorithm = "RS256" })
	mustRegister(t, d, "alice")
	mustRegister(t, d, "bob")
	ctx := context.Background()
	alice, _, err := d.Login(ctx, "alice", goodPassword)
	if err != nil {
		t.Fatal(err)
	}
	bob, _, err := d.Login(ctx, "bob", goodPassword)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 { // the second and third uses come from the cache
		if _, err := d.Authenticate(alice); err != nil {
			t.Fatalf("cached token refused: %v", err)
		}
	}
	if n := len(d.tokens.verified); n != 1 {
		t.Fatalf("%d tokens cached, want 1", n)
	}
	if err := d.Logout(alice); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Authenticate(alice); !errors.Is(err, ErrBadToken) {
		t.Fatalf("logged-out cached token: %v, want ErrBadToken", err)
	}
	if _, err := d.Authenticate(bob); err != nil {
		t.Fatal(err)
	}
	clk.Advance(8 * 24 * time.Hour)
	if _, err := d.Authenticate(bob); !errors.Is(err, ErrBadToken) {
		t.Fatalf("expired cached token: %v, want ErrBadToken", err)
	}
	// A token that differs in one byte is not the cached one.
	tampered := bob[:len(bob)-2] + "AA"
	if _, err := d.Authenticate(tampered); !errors.Is(err, ErrBadToken) {
		t.Fatalf("tampered token: %v", err)
	}
}

// TestCloseWipesSigningKey: Close overwrites the private key material Go lets
// the directory reach; issuing fails afterwards, and tokens issued before
// still verify.
func TestCloseWipesSigningKey(t *testing.T) {
	for _, alg := range []string{"RS256", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			clk := newClock()
			d, err := New(Config{TokenAlgorithm: alg, Now: clk.Now, testBcryptCost: 4})
			if err != nil {
				t.Fatal(err)
			}
			tok, _, err := d.tokens.issue(accountView{ID: "u1", Username: "alice"}, clk.Now())
			if err != nil {
				t.Fatal(err)
			}
			d.Close()
			switch k := d.tokens.signKey.(type) {
			case ed25519.PrivateKey:
				if !bytes.Equal(k, make([]byte, len(k))) {
					t.Fatal("the Ed25519 key was not overwritten")
				}
			case *rsa.PrivateKey:
				for _, x := range append([]*big.Int{k.D, k.Precomputed.Dp, k.Precomputed.Dq, k.Precomputed.Qinv}, k.Primes...) {
					if x.Sign() != 0 || !slices.Equal(x.Bits()[:cap(x.Bits())], make([]big.Word, cap(x.Bits()))) {
						t.Fatal("a private RSA value was not overwritten")
					}
				}
			default:
				t.Fatalf("unexpected key type %T", k)
			}
			if _, _, err := d.tokens.issue(accountView{ID: "u1", Username: "alice"}, clk.Now()); err == nil {
				t.Fatal("a closed directory issued a token")
			}
			if _, err := d.tokens.verify(tok); err != nil {
				t.Fatalf("a token issued before Close no longer verifies: %v", err)
			}
		})
	}
}
