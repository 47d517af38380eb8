// Package pgp is end-to-end protocol v1, what dialogs speak (docs/e2e.md §15): OpenPGP keys, the key-pair ZIP
// the browser exports, and messages signed by the sender and encrypted to the peer's pinned key and the
// sender's own, as the browser's static/js/pgp.mjs makes them.
package pgp

import (
	"bytes"
	"crypto"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/ProtonMail/go-crypto/openpgp/s2k"
	openpgp "github.com/ProtonMail/go-crypto/openpgp/v2"
)

// config is the browser's OpenPGP profile (docs/client.md, "OpenPGP profile"): v4 keys, AES-256, SHA-256,
// no compression, no AEAD (SEIPD v1), the iterated-and-salted S2K for passphrases.
func config() *packet.Config {
	return &packet.Config{
		DefaultCipher:          packet.CipherAES256,
		DefaultHash:            crypto.SHA256,
		DefaultCompressionAlgo: packet.CompressionNone,
		S2KConfig:              &s2k.Config{S2KMode: s2k.IteratedSaltedS2K, Hash: crypto.SHA256, S2KCount: 65011712},
	}
}

// Key is an OpenPGP key: a private one (Generate, ImportZip) or a peer's public one (ReadPublic).
type Key struct{ e *openpgp.Entity }

// Generate makes a key for name <email> (email may be empty): kind "rsa" (RSA-4096), "curve25519" (EdDSA and
// ECDH on Curve25519 in the legacy v4 encoding GnuPG 2.2 reads, the browser's default) or "v6" (an RFC 9580 v6
// key with Ed25519 and X25519, as the browser's "v6" key type; GnuPG 2.2 and 2.4 cannot import it).
func Generate(kind, name, email string) (*Key, error) {
	cfg := config()
	switch kind {
	case "rsa":
		cfg.Algorithm, cfg.RSABits = packet.PubKeyAlgoRSA, 4096
	case "curve25519":
		cfg.Algorithm, cfg.Curve = packet.PubKeyAlgoEdDSA, packet.Curve25519
	case "v6":
		cfg.Algorithm, cfg.V6Keys = packet.PubKeyAlgoEd25519, true
	default:
		return nil, fmt.Errorf("failed to make a key: unknown key type %q (rsa, curve25519 or v6)", kind)
	}
	e, err := openpgp.NewEntity(name, "", email, cfg)
	if err != nil {
		return nil, fmt.Errorf("failed to make a key: %w", err)
	}
	return &Key{e}, nil
}

// ReadPublic reads one armored public key (a directory key).
func ReadPublic(armored string) (*Key, error) {
	el, err := openpgp.ReadArmoredKeyRing(strings.NewReader(armored))
	if err != nil {
		return nil, fmt.Errorf("failed to read the key: %w", err)
	}
	if len(el) != 1 {
		return nil, fmt.Errorf("failed to read the key: %d keys where one was expected", len(el))
	}
	if el[0].PrivateKey != nil {
		return nil, errors.New("failed to read the key: it holds a private key")
	}
	return &Key{el[0]}, nil
}

// Fingerprint is the key's fingerprint, upper-case hex without spaces (what the directory and gpg show): 40
// digits for a v4 key, 64 for v6.
func (k *Key) Fingerprint() string {
	return strings.ToUpper(hex.EncodeToString(k.e.PrimaryKey.Fingerprint))
}

// Version is the OpenPGP key version: 4, or 6 (RFC 9580; a 32-byte fingerprint).
func (k *Key) Version() int { return k.e.PrimaryKey.Version }

// FingerprintBytes is the fingerprint as bytes.
func (k *Key) FingerprintBytes() []byte { return append([]byte{}, k.e.PrimaryKey.Fingerprint...) }

// Private reports whether the key holds its (unlocked) private half.
func (k *Key) Private() bool { return k.e.PrivateKey != nil && !k.e.PrivateKey.Encrypted }

// Algorithm names the primary key's algorithm as the directory does: rsa4096, ed25519.
func (k *Key) Algorithm() string {
	p := k.e.PrimaryKey
	if bits, err := p.BitLength(); err == nil && (p.PubKeyAlgo == packet.PubKeyAlgoRSA || p.PubKeyAlgo == packet.PubKeyAlgoRSAEncryptOnly) {
		return fmt.Sprintf("rsa%d", bits)
	}
	if p.PubKeyAlgo == packet.PubKeyAlgoEdDSA || p.PubKeyAlgo == packet.PubKeyAlgoEd25519 {
		return "ed25519"
	}
	return fmt.Sprintf("algorithm %d", p.PubKeyAlgo)
}

// ArmoredPublic is the public key, armored (what PUT /api/key publishes).
func (k *Key) ArmoredPublic() (string, error) {
	var b bytes.Buffer
	w, err := armor.Encode(&b, "PGP PUBLIC KEY BLOCK", nil)
	if err != nil {
		return "", err
	}
	if err := k.e.Serialize(w); err != nil {
		return "", fmt.Errorf("failed to write the public key: %w", err)
	}
	if err := w.Close(); err != nil {
		return "", err
	}
	return b.String(), nil
}

// Sign returns a binary detached signature over msg: k as a protocol v2 identity of a dialog (docs/e2e.md §4.1,
// an e2e.Signer).
func (k *Key) Sign(msg []byte) ([]byte, error) {
	var b bytes.Buffer
	if err := openpgp.DetachSign(&b, []*openpgp.Entity{k.e}, bytes.NewReader(msg), config()); err != nil {
		return nil, fmt.Errorf("failed to make OpenPGP signature: %w", err)
	}
	return b.Bytes(), nil
}

// Verify reports whether sig is a binary detached signature over msg by k (an e2e.Verifier).
func (k *Key) Verify(msg, sig []byte) bool {
	_, signer, err := openpgp.VerifyDetachedSignature(openpgp.EntityList{k.e}, bytes.NewReader(msg), bytes.NewReader(sig), config())
	return err == nil && signer == k.e
}

// Public returns the public half of k.
func (k *Key) Public() (*Key, error) {
	a, err := k.ArmoredPublic()
	if err != nil {
		return nil, err
	}
	return ReadPublic(a)
}

// SignDetached returns an armored detached signature over text's bytes: the proof of possession the accounts
// API asks for (docs/accounts.md §5).
func (k *Key) SignDetached(text string) (string, error) {
	if !k.Private() {
		return "", errors.New("failed to sign: no unlocked private key")
	}
	var b bytes.Buffer
	if err := openpgp.ArmoredDetachSign(&b, []*openpgp.Entity{k.e}, strings.NewReader(text), &openpgp.SignParams{Config: config()}); err != nil {
		return "", fmt.Errorf("failed to sign: %w", err)
	}
	return b.String(), nil
}

// lockedArmored returns the private key armored and encrypted with passphrase; k stays unlocked.
func (k *Key) lockedArmored(passphrase []byte) (string, error) {
	if !k.Private() {
		return "", errors.New("failed to export: no unlocked private key")
	}
	if len(passphrase) == 0 {
		return "", errors.New("failed to protect the key: empty passphrase")
	}
	var raw bytes.Buffer
	if err := k.e.SerializePrivateWithoutSigning(&raw, nil); err != nil {
		return "", fmt.Errorf("failed to export: %w", err)
	}
	el, err := openpgp.ReadKeyRing(&raw)
	if err != nil || len(el) != 1 {
		return "", fmt.Errorf("failed to export: copying the key: %v", err)
	}
	cp := el[0]
	if err := cp.EncryptPrivateKeys(passphrase, config()); err != nil {
		return "", fmt.Errorf("failed to protect the key: %w", err)
	}
	var b bytes.Buffer
	w, err := armor.Encode(&b, "PGP PRIVATE KEY BLOCK", nil)
	if err != nil {
		return "", err
	}
	if err := cp.SerializePrivateWithoutSigning(w, nil); err != nil {
		return "", fmt.Errorf("failed to export: %w", err)
	}
	if err := w.Close(); err != nil {
		return "", err
	}
	return b.String(), nil
}

// ErrWrongPassphrase is returned by ImportZip when the passphrase does not unlock the key.
var ErrWrongPassphrase = errors.New("wrong passphrase: it does not unlock the key")

// unlock reads an armored private key and decrypts it with passphrase.
func unlock(armored string, passphrase []byte) (*Key, error) {
	el, err := openpgp.ReadArmoredKeyRing(strings.NewReader(armored))
	if err != nil {
		return nil, fmt.Errorf("failed to read the private key: %w", err)
	}
	if len(el) != 1 || el[0].PrivateKey == nil {
		return nil, errors.New("failed to read the private key: not exactly one private key")
	}
	e := el[0]
	if e.PrivateKey.Encrypted {
		if err := e.DecryptPrivateKeys(passphrase); err != nil {
			return nil, ErrWrongPassphrase
		}
	}
	return &Key{e}, nil
}
