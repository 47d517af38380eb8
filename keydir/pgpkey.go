package keydir

import (
	"bytes"
	"crypto"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// KeyInfo describes a published public key.
type KeyInfo struct {
	Fingerprint string    // upper-case hex of the primary key fingerprint, as gpg shows it without spaces: 40 digits for a v4 key, 64 for v6
	Version     int       // the OpenPGP key version: 4, or 6 (RFC 9580)
	Algorithm   string    // primary key, gpg style: "rsa4096", "ed25519"
	Subkeys     []string  // valid subkeys, gpg style: "rsa4096", "cv25519"
	UserIDs     []string  // valid user IDs
	Created     time.Time // the key's own creation time
	Expires     time.Time // zero when it does not expire
	Published   time.Time // when this key was published here
	// ChangedAt is when this key replaced a different earlier key of the account
	// (zero for an account's first key); PreviousFingerprint names that key.
	ChangedAt           time.Time
	PreviousFingerprint string
	Armored             string // the public key, re-armored from the verified packets
}

// Packet tags of secret-key material (RFC 9580 §5).
const (
	tagSecretKey    = 5
	tagSecretSubkey = 7
)

// maxSignatureBytes caps an armored proof signature.
const maxSignatureBytes = 16 << 10

// parsePublicKey parses and checks one armored public key for the account o
// against the policy. Error contract: see the Err* sentinels of the key directory; the
// error never quotes the input.
func parsePublicKey(armored string, o owner, now time.Time, cfg Config) (*openpgp.Entity, KeyInfo, error) {
	if len(armored) > cfg.MaxKeyBytes {
		return nil, KeyInfo{}, fmt.Errorf("%w: larger than %d bytes", ErrKeyMalformed, cfg.MaxKeyBytes)
	}
	// Look for secret material before anything else, so that no later error path
	// (or library error text) ever handles it.
	if strings.Contains(armored, "PRIVATE KEY BLOCK") {
		return nil, KeyInfo{}, ErrPrivateKey
	}
	blk, err := armor.Decode(strings.NewReader(armored))
	if err != nil {
		return nil, KeyInfo{}, fmt.Errorf("%w: not an ASCII-armored OpenPGP public key block", ErrKeyMalformed)
	}
	if blk.Type != openpgp.PublicKeyType {
		return nil, KeyInfo{}, fmt.Errorf("%w: armor type %q, want %q", ErrKeyMalformed, limitString(blk.Type, 40), openpgp.PublicKeyType)
	}
	body, err := io.ReadAll(io.LimitReader(blk.Body, int64(cfg.MaxKeyBytes)))
	defer clear(body)
	if err != nil {
		return nil, KeyInfo{}, fmt.Errorf("%w: broken armor (bad base64 or checksum)", ErrKeyMalformed)
	}
	if err := scanPackets(body, cfg); err != nil {
		return nil, KeyInfo{}, err
	}

	pr := packet.NewReader(bytes.NewReader(body))
	e, err := openpgp.ReadEntity(pr)
	if err != nil {
		return nil, KeyInfo{}, fmt.Errorf("%w: %v", ErrKeyMalformed, err)
	}
	if _, err := pr.Next(); err != io.EOF {
		return nil, KeyInfo{}, fmt.Errorf("%w: expected exactly one public key", ErrKeyMalformed)
	}
	info, err := checkEntity(e, o, now, cfg.MinRSABits)
	if err != nil {
		return nil, KeyInfo{}, err
	}
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	if err == nil {
		err = e.Serialize(w)
	}
	if err == nil {
		err = w.Close()
	}
	if err != nil {
		return nil, KeyInfo{}, fmt.Errorf("failed to re-armor public key: %w", err)
	}
	info.Armored = buf.String()
	return e, info, nil
}

// checkEntity applies the key policy to a parsed entity whose self-signatures
// the parser has already verified.
func checkEntity(e *openpgp.Entity, o owner, now time.Time, minRSA int) (KeyInfo, error) {
	if e.Revoked(now) {
		return KeyInfo{}, fmt.Errorf("%w: the key carries a revocation signature", ErrKeyRevoked)
	}
	self, _ := e.PrimarySelfSignature()
	if self == nil {
		return KeyInfo{}, fmt.Errorf("%w: no valid self-signature", ErrKeyMalformed)
	}
	if e.PrimaryKey.CreationTime.After(now) {
		return KeyInfo{}, fmt.Errorf("%w: created in the future", ErrKeyExpired)
	}
	if e.PrimaryKey.KeyExpired(self, now) || self.SigExpired(now) {
		return KeyInfo{}, ErrKeyExpired
	}
	info := KeyInfo{
		Fingerprint: strings.ToUpper(hex.EncodeToString(e.PrimaryKey.Fingerprint)),
		Version:     e.PrimaryKey.Version,
		Created:     e.PrimaryKey.CreationTime,
	}
	if info.Version != 4 && info.Version != 6 {
		return KeyInfo{}, fmt.Errorf("%w: an OpenPGP v%d key, use v4 or v6 (RFC 9580)", ErrKeyMalformed, info.Version)
	}
	if self.KeyLifetimeSecs != nil && *self.KeyLifetimeSecs != 0 {
		info.Expires = e.PrimaryKey.CreationTime.Add(time.Duration(*self.KeyLifetimeSecs) * time.Second)
	}
	var err error
	if info.Algorithm, err = algorithmName(e.PrimaryKey, minRSA); err != nil {
		return KeyInfo{}, err
	}
	for _, sk := range e.Subkeys {
		if sk.Revoked(now) || sk.Sig == nil || sk.PublicKey.KeyExpired(sk.Sig, now) {
			continue
		}
		name, err := algorithmName(sk.PublicKey, minRSA)
		if err != nil {
			return KeyInfo{}, fmt.Errorf("subkey: %w", err)
		}
		info.Subkeys = append(info.Subkeys, name)
	}
	for _, id := range e.Identities {
		// Every user ID, valid or not: the served key carries them all.
		if !namesOwner(id.UserId, o) {
			return KeyInfo{}, fmt.Errorf("%w: every user ID must be the username %q (or the full name with the username as comment), with no e-mail or the account's own", ErrKeyUserID, o.username)
		}
		if id.SelfSignature == nil || id.Revoked(now) || id.SelfSignature.SigExpired(now) {
			continue
		}
		info.UserIDs = append(info.UserIDs, id.Name)
	}
	if len(info.UserIDs) == 0 {
		return KeyInfo{}, fmt.Errorf("%w: no valid user ID names %q", ErrKeyUserID, o.username)
	}
	if _, ok := e.SigningKey(now); !ok {
		return KeyInfo{}, fmt.Errorf("%w: no valid signing key", ErrKeyUnusable)
	}
	if _, ok := e.EncryptionKey(now); !ok {
		return KeyInfo{}, fmt.Errorf("%w: no valid encryption key", ErrKeyUnusable)
	}
	return info, nil
}

// algorithmName names an allowed key gpg style, or returns an error wrapping
// ErrKeyWeak.
func algorithmName(pk *packet.PublicKey, minRSA int) (string, error) {
	switch pk.PubKeyAlgo {
	case packet.PubKeyAlgoRSA, packet.PubKeyAlgoRSASignOnly, packet.PubKeyAlgoRSAEncryptOnly:
		bits, err := pk.BitLength()
		if err != nil {
			return "", fmt.Errorf("%w: unreadable RSA key", ErrKeyWeak)
		}
		if int(bits) < minRSA {
			return "", fmt.Errorf("%w: RSA key of %d bits, at least %d required (4096 recommended)", ErrKeyWeak, bits, minRSA)
		}
		return fmt.Sprintf("rsa%d", bits), nil
	case packet.PubKeyAlgoEdDSA, packet.PubKeyAlgoECDH:
		c, err := pk.Curve()
		if err != nil || c != packet.Curve25519 {
			return "", fmt.Errorf("%w: elliptic curve %q, only Ed25519/Curve25519 is allowed", ErrKeyWeak, c)
		}
		if pk.PubKeyAlgo == packet.PubKeyAlgoEdDSA {
			return "ed25519", nil
		}
		return "cv25519", nil
	case packet.PubKeyAlgoECDSA:
		c, _ := pk.Curve()
		return "", fmt.Errorf("%w: ECDSA on curve %q, only Ed25519/Curve25519 is allowed", ErrKeyWeak, c)
	case packet.PubKeyAlgoEd25519:
		return "ed25519", nil
	case packet.PubKeyAlgoX25519:
		return "cv25519", nil
	case packet.PubKeyAlgoMlkem768X25519, packet.PubKeyAlgoMlkem1024X448, packet.PubKeyAlgoMldsa65Ed25519, packet.PubKeyAlgoMldsa87Ed448,
		packet.PubKeyAlgoSlhdsaShake128s, packet.PubKeyAlgoSlhdsaShake128f, packet.PubKeyAlgoSlhdsaShake256s:
		return "", fmt.Errorf("%w: a post-quantum OpenPGP key (RFC 9980, algorithm %d): not yet, the browser's OpenPGP library cannot use it", ErrKeyWeak, pk.PubKeyAlgo)
	}
	return "", fmt.Errorf("%w: public-key algorithm %d, use RSA (%d bits or more) or Ed25519/Curve25519", ErrKeyWeak, pk.PubKeyAlgo, minRSA)
}

// strongHashes are the hashes a proof signature may use.
var strongHashes = map[crypto.Hash]bool{
	crypto.SHA256: true, crypto.SHA384: true, crypto.SHA512: true,
	crypto.SHA3_256: true, crypto.SHA3_512: true,
}

// verifyProof checks that signature (armored, detached) is a valid signature by
// a signing key of e over exactly challenge. The error wraps ErrBadProof.
func verifyProof(e *openpgp.Entity, challenge, signature string, now time.Time) error {
	if len(signature) > maxSignatureBytes {
		return fmt.Errorf("%w: signature larger than %d bytes", ErrBadProof, maxSignatureBytes)
	}
	blk, err := armor.Decode(strings.NewReader(signature))
	if err != nil || blk.Type != openpgp.SignatureType {
		return fmt.Errorf("%w: not an ASCII-armored OpenPGP signature", ErrBadProof)
	}
	cfg := &packet.Config{Time: func() time.Time { return now }}
	sig, _, err := openpgp.VerifyDetachedSignature(openpgp.EntityList{e}, strings.NewReader(challenge), blk.Body, cfg)
	switch {
	case errors.Is(err, pgperrors.ErrUnknownIssuer):
		return fmt.Errorf("%w: the signature is not by this key", ErrBadProof)
	case errors.Is(err, pgperrors.ErrKeyExpired), errors.Is(err, pgperrors.ErrKeyRevoked), errors.Is(err, pgperrors.ErrSignatureExpired):
		return fmt.Errorf("%w: %v", ErrBadProof, err)
	case err != nil:
		return fmt.Errorf("%w: the signature does not verify over the challenge", ErrBadProof)
	}
	if sig.SigType != packet.SigTypeBinary && sig.SigType != packet.SigTypeText {
		return fmt.Errorf("%w: not a document signature", ErrBadProof)
	}
	if !strongHashes[sig.Hash] {
		return fmt.Errorf("%w: weak hash algorithm, use SHA-256 or better", ErrBadProof)
	}
	return nil
}

func limitString(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
