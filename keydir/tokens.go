package keydir

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TokenType is the value of the typ claim of an access token. Verification
// requires it, so no other kind of JWT signed by the same key can pass as one.
const TokenType = "cleanrelay-access"

// generatedRSABits is the size of the RS256 key New generates when the operator
// supplies none.
const generatedRSABits = 3072

// Claims are the claims of a cleanrelay access token.
type Claims struct {
	Username string `json:"username"`
	FullName string `json:"full_name"`
	Email    string `json:"email,omitempty"`
	Type     string `json:"typ"`
	jwt.RegisteredClaims
}

// Validate is called by the jwt parser after the standard checks.
func (c *Claims) Validate() error {
	switch {
	case c.Type != TokenType:
		return errors.New("wrong token type")
	case c.Subject == "" || c.Username == "" || c.ID == "":
		return errors.New("missing sub, username or jti")
	case c.IssuedAt == nil:
		return errors.New("missing iat")
	}
	return nil
}

// maxIssuedSkew is how far in the future a token's iat may lie: in a cluster (docs/cluster.md) a token made
// on one node is checked on another whose clock may be a little behind, and iat has whole seconds only.
const maxIssuedSkew = 5 * time.Second

// tokenSigner signs and verifies access tokens. Static after construction.
type tokenSigner struct {
	method   jwt.SigningMethod
	signKey  crypto.Signer
	verifyBy crypto.PublicKey
	parser   *jwt.Parser
	issuer   string
	audience string
	lifetime time.Duration
	maxBytes int
	now      func() time.Time

	// Verified tokens, so that a token used again (each WebSocket handshake of a session, every API call)
	// costs a hash, not an RSA verification. Only the signature check is cached: expiry is checked on every
	// use, and Directory.Authenticate checks logout and the account's state on every use.
	mu       sync.Mutex
	verified map[[32]byte]Claims // guarded by mu

	wiped atomic.Bool // set by wipe: issue refuses from then on
}

// maxVerifiedTokens bounds the cache of verified tokens; past it, expired ones go first, then arbitrary ones.
const maxVerifiedTokens = 10000

func newTokenSigner(cfg Config) (*tokenSigner, error) {
	t := &tokenSigner{issuer: cfg.TokenIssuer, audience: cfg.TokenAudience, lifetime: cfg.TokenLifetime,
		maxBytes: cfg.MaxTokenBytes, now: cfg.Now, verified: make(map[[32]byte]Claims)}
	var err error
	if len(cfg.SigningKeyPEM) > 0 {
		t.signKey, err = parseSigningKey(cfg.SigningKeyPEM)
		if err != nil {
			return nil, err
		}
	}
	switch cfg.TokenAlgorithm {
	case "RS256":
		t.method = jwt.SigningMethodRS256
		if t.signKey == nil {
			if t.signKey, err = rsa.GenerateKey(rand.Reader, generatedRSABits); err != nil {
				return nil, fmt.Errorf("failed to generate token signing key: %w", err)
			}
		}
		k, ok := t.signKey.(*rsa.PrivateKey)
		if !ok {
			return nil, errors.New("token signing key is not an RSA key, as RS256 needs")
		}
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("token signing key has %d bits, at least 2048 needed", k.N.BitLen())
		}
	case "EdDSA":
		t.method = jwt.SigningMethodEdDSA
		if t.signKey == nil {
			if _, t.signKey, err = ed25519.GenerateKey(rand.Reader); err != nil {
				return nil, fmt.Errorf("failed to generate token signing key: %w", err)
			}
		}
		if _, ok := t.signKey.(ed25519.PrivateKey); !ok {
			return nil, errors.New("token signing key is not an Ed25519 key, as EdDSA needs")
		}
	}
	t.verifyBy = t.signKey.Public()
	t.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{t.method.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuer(t.issuer),
		jwt.WithAudience(t.audience),
		jwt.WithTimeFunc(cfg.Now),
		jwt.WithStrictDecoding(),
	)
	return t, nil
}

// parseSigningKey reads an unencrypted PEM private key. Errors never quote the
// key. The DER it decodes is overwritten once parsed.
func parseSigningKey(b []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("token signing key: no PEM block found")
	}
	defer clear(blk.Bytes)
	if k, err := x509.ParsePKCS8PrivateKey(blk.Bytes); err == nil {
		switch k := k.(type) {
		case *rsa.PrivateKey:
			return k, nil
		case ed25519.PrivateKey:
			return k, nil
		}
		return nil, errors.New("token signing key: only RSA and Ed25519 keys are supported")
	}
	if k, err := x509.ParsePKCS1PrivateKey(blk.Bytes); err == nil {
		return k, nil
	}
	return nil, fmt.Errorf("token signing key: PEM block %q is not an unencrypted PKCS#8 or PKCS#1 private key", blk.Type)
}

// issue signs a token for the account. Called with no lock held.
func (t *tokenSigner) issue(a accountView, now time.Time) (string, Claims, error) {
	if t.wiped.Load() {
		return "", Claims{}, errors.New("failed to sign token: the directory is closed")
	}
	jti, err := randomID(16)
	if err != nil {
		return "", Claims{}, err
	}
	c := Claims{
		Username: a.Username,
		FullName: a.FullName,
		Email:    a.Email,
		Type:     TokenType,
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    t.issuer,
			Subject:   a.ID,
			Audience:  jwt.ClaimStrings{t.audience},
			ExpiresAt: jwt.NewNumericDate(now.Add(t.lifetime)),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        jti,
		},
	}
	s, err := jwt.NewWithClaims(t.method, &c).SignedString(t.signKey)
	if err != nil {
		return "", Claims{}, fmt.Errorf("failed to sign token: %w", err)
	}
	return s, c, nil
}

// verify checks length, signature, algorithm, exp, iat, nbf, iss, aud and typ.
// The error wraps ErrBadToken and, where there is one, the jwt error.
func (t *tokenSigner) verify(s string) (*Claims, error) {
	if len(s) > t.maxBytes {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrBadToken, t.maxBytes)
	}
	if s == "" {
		return nil, fmt.Errorf("%w: empty", ErrBadToken)
	}
	key := sha256.Sum256([]byte(s))
	now := t.now()
	t.mu.Lock()
	c, ok := t.verified[key]
	t.mu.Unlock()
	if ok {
		if !c.ExpiresAt.After(now) {
			return nil, fmt.Errorf("%w: %w", ErrBadToken, jwt.ErrTokenExpired)
		}
		return &c, nil
	}
	_, err := t.parser.ParseWithClaims(s, &c, func(*jwt.Token) (any, error) { return t.verifyBy, nil })
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadToken, err)
	}
	if c.IssuedAt.After(now.Add(maxIssuedSkew)) {
		return nil, fmt.Errorf("%w: %w", ErrBadToken, jwt.ErrTokenUsedBeforeIssued)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.verified) >= maxVerifiedTokens {
		for k, v := range t.verified {
			if !v.ExpiresAt.After(now) || len(t.verified) >= maxVerifiedTokens {
				delete(t.verified, k)
			}
			if len(t.verified) < maxVerifiedTokens*9/10 {
				break
			}
		}
	}
	t.verified[key] = c
	return &c, nil
}

// randomID returns n random bytes in base64url without padding.
func randomID(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("failed to read random bytes: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// wipe overwrites the private parts of the signing key that Go lets a program reach, and makes issue fail
// from then on; verification (by the public key) still works. An RSA key's private values also live, in a
// form crypto/rsa does not export, in its FIPS module's precomputed key: that copy is not overwritten.
func (t *tokenSigner) wipe() {
	t.wiped.Store(true)
	switch k := t.signKey.(type) {
	case ed25519.PrivateKey:
		clear(k)
	case *rsa.PrivateKey:
		ints := append([]*big.Int{k.D, k.Precomputed.Dp, k.Precomputed.Dq, k.Precomputed.Qinv}, k.Primes...)
		//lint:ignore SA1019 deprecated for use, but Precompute still fills them for keys of more than two primes
		for _, v := range k.Precomputed.CRTValues {
			ints = append(ints, v.Exp, v.Coeff, v.R)
		}
		for _, x := range ints {
			if x != nil {
				clear(x.Bits())
				x.SetInt64(0)
			}
		}
	}
}
