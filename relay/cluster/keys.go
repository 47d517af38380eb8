package cluster

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base32"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
)

// MinSecretBytes is the shortest cluster secret accepted: 32 bytes (e.g. `openssl rand -base64 32`).
const MinSecretBytes = 32

// Labels of the keys derived from the cluster secret (HKDF-SHA-256, no salt). Changing one changes every key
// of that use: it is the version of the derivation.
const (
	labelSubject = "cleanrelay cluster subject key v1"
	labelPayload = "cleanrelay cluster payload key v1"
	labelToken   = "cleanrelay cluster token key v1"
	labelTicket  = "cleanrelay cluster ticket key v1"
)

// subjectChars is how many base32 characters of HMAC-SHA-256 a subject carries: 26 characters, 130 bits.
const subjectChars = 26

// sealVersion is the first byte of a sealed payload.
const sealVersion = 1

// maxAge bounds how old (or how far in the future) a sealed payload may be when opened: an old one replayed
// by someone who can publish but lacks the secret is refused past it.
const maxAge = 2 * time.Minute

// Keys are what the cluster secret gives every node alike. The secret itself is not kept.
type Keys struct {
	subject [32]byte
	aead    cipherAEAD
	token   ed25519.PrivateKey
	ticket  [32]byte
}

// cipherAEAD is the XChaCha20-Poly1305 instance (an interface only to keep the field's type short).
type cipherAEAD interface {
	Seal(dst, nonce, plaintext, additionalData []byte) []byte
	Open(dst, nonce, ciphertext, additionalData []byte) ([]byte, error)
	NonceSize() int
	Overhead() int
}

// ErrSealed: a payload that does not open under the cluster's payload key (another secret, tampered with, for
// another subject) or is older than maxAge.
var ErrSealed = errors.New("cluster payload does not open")

// DeriveKeys derives the subject, payload and token keys from the cluster secret, which must be at least
// MinSecretBytes long. The caller may overwrite secret afterwards.
func DeriveKeys(secret []byte) (*Keys, error) {
	if len(secret) < MinSecretBytes {
		return nil, fmt.Errorf("the cluster secret has %d bytes, at least %d needed (hint: openssl rand -base64 32)", len(secret), MinSecretBytes)
	}
	k := &Keys{}
	derive := func(label string, n int) ([]byte, error) {
		b, err := hkdf.Key(sha256.New, secret, nil, label, n)
		if err != nil {
			return nil, fmt.Errorf("failed to derive a cluster key: %w", err)
		}
		return b, nil
	}
	sub, err := derive(labelSubject, 32)
	if err != nil {
		return nil, err
	}
	copy(k.subject[:], sub)
	clear(sub)
	pay, err := derive(labelPayload, chacha20poly1305.KeySize)
	if err != nil {
		return nil, err
	}
	defer clear(pay)
	if k.aead, err = chacha20poly1305.NewX(pay); err != nil {
		return nil, fmt.Errorf("failed to make the payload cipher: %w", err)
	}
	tk, err := derive(labelTicket, 32)
	if err != nil {
		return nil, err
	}
	copy(k.ticket[:], tk)
	clear(tk)
	seed, err := derive(labelToken, ed25519.SeedSize)
	if err != nil {
		return nil, err
	}
	defer clear(seed)
	k.token = ed25519.NewKeyFromSeed(seed)
	return k, nil
}

// Subject is the NATS subject of one kind of cluster traffic about id (empty for traffic about no one):
// "cr." and 26 characters of base32(HMAC-SHA-256(subject key, kind ‖ 0 ‖ id)). It names no user, room or
// kind in the clear, and whoever lacks the secret cannot tell which subject is which.
func (k *Keys) Subject(kind string, id []byte) string {
	m := hmac.New(sha256.New, k.subject[:])
	m.Write([]byte(kind))
	m.Write([]byte{0})
	m.Write(id)
	sum := m.Sum(nil)
	return "cr." + subjectEncoding.EncodeToString(sum)[:subjectChars]
}

// subjectEncoding is lower-case base32 without padding: only characters NATS subjects allow in a token.
var subjectEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// Seal encrypts plaintext for subject: version ‖ 24-byte random nonce ‖ XChaCha20-Poly1305(time ‖ plaintext)
// with the subject as associated data, so a payload moved to another subject does not open.
func (k *Keys) Seal(subject string, plaintext []byte, now time.Time) []byte {
	ns := k.aead.NonceSize()
	out := make([]byte, 1+ns, 1+ns+8+len(plaintext)+k.aead.Overhead())
	out[0] = sealVersion
	rand.Read(out[1 : 1+ns])
	inner := make([]byte, 8+len(plaintext))
	binary.BigEndian.PutUint64(inner, uint64(now.UnixMilli()))
	copy(inner[8:], plaintext)
	out = k.aead.Seal(out, out[1:1+ns], inner, []byte(subject))
	clear(inner)
	return out
}

// Open decrypts what Seal made for subject. Error: ErrSealed (wrapped, with why).
func (k *Keys) Open(subject string, sealed []byte, now time.Time) ([]byte, error) {
	ns := k.aead.NonceSize()
	if len(sealed) < 1+ns+8+k.aead.Overhead() || sealed[0] != sealVersion {
		return nil, fmt.Errorf("%w: too short or unknown version", ErrSealed)
	}
	inner, err := k.aead.Open(nil, sealed[1:1+ns], sealed[1+ns:], []byte(subject))
	if err != nil {
		return nil, fmt.Errorf("%w: authentication failed", ErrSealed)
	}
	at := time.UnixMilli(int64(binary.BigEndian.Uint64(inner)))
	if d := now.Sub(at); d > maxAge || d < -maxAge {
		clear(inner)
		return nil, fmt.Errorf("%w: sealed %v from now", ErrSealed, d.Round(time.Second))
	}
	return inner[8:], nil
}

// TokenKeyPEM is the Ed25519 access-token signing key every node derives alike, as PKCS#8 PEM for
// keydir.Config.SigningKeyPEM (with TokenAlgorithm "EdDSA"). The caller overwrites it once the directory has
// parsed it.
func (k *Keys) TokenKeyPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k.token)
	if err != nil {
		return nil, fmt.Errorf("failed to encode the token key: %w", err)
	}
	defer clear(der)
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// TicketKey is the key every node MACs its WebSocket tickets with (relay/accounts' ShareTickets), a copy
// the caller keeps.
func (k *Keys) TicketKey() []byte { return bytes.Clone(k.ticket[:]) }

// Wipe overwrites the keys this value holds that Go lets a program reach (the cipher's expanded key is not).
func (k *Keys) Wipe() {
	clear(k.subject[:])
	clear(k.ticket[:])
	clear(k.token)
}
