package e2e

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/mlkem"
	"encoding/binary"
	"fmt"
)

// Signer signs with a member's identity: the invite-bound one-time Ed25519 key in anonymous rooms, the
// OpenPGP key in dialogs.
type Signer interface {
	Sign(msg []byte) ([]byte, error)
}

// Verifier checks a signature made by a member's identity.
type Verifier interface {
	Verify(msg, sig []byte) bool
}

// Ed25519Identity is a one-time identity of an anonymous room.
type Ed25519Identity ed25519.PrivateKey

// NewEd25519Identity returns the identity with the given 32-byte seed.
func NewEd25519Identity(seed []byte) Ed25519Identity {
	return Ed25519Identity(ed25519.NewKeyFromSeed(seed))
}

func (k Ed25519Identity) Sign(msg []byte) ([]byte, error) {
	return ed25519.Sign(ed25519.PrivateKey(k), msg), nil
}

// Public returns the 32-byte public key.
func (k Ed25519Identity) Public() Ed25519Public {
	return Ed25519Public(ed25519.PrivateKey(k).Public().(ed25519.PublicKey))
}

// Ed25519Public verifies signatures of an Ed25519Identity.
type Ed25519Public ed25519.PublicKey

func (p Ed25519Public) Verify(msg, sig []byte) bool {
	return len(p) == ed25519.PublicKeySize && ed25519.Verify(ed25519.PublicKey(p), msg, sig)
}

// KeyPackage is a member's signed ephemeral X25519 + ML-KEM-768 public keys (docs/e2e.md §5). A prekey
// is the same structure signed under the label "prekey" with the prekey id in Member.
type KeyPackage struct {
	Member uint32
	N      uint32 // key package number: 1, 2, … per member and session
	X      []byte // X25519 public key
	EK     []byte // ML-KEM-768 encapsulation key
	Sig    []byte
	raw    []byte
}

// KeyPackagePrivate holds the private halves; Wipe deletes them.
type KeyPackagePrivate struct {
	x  *ecdh.PrivateKey
	dk *mlkem.DecapsulationKey768
}

// Wipe drops the private keys (Go cannot overwrite them in place; they become unreachable).
func (p *KeyPackagePrivate) Wipe() { p.x, p.dk = nil, nil }

// Wiped reports whether the private keys have been deleted.
func (p *KeyPackagePrivate) Wiped() bool { return p.x == nil }

// NewKeyPackage makes and signs a key package from a 32-byte X25519 seed and a 64-byte ML-KEM seed
// (d ‖ z). kind is "keypackage" or "prekey"; ctx is the room id, or "prekey:" + username.
func NewKeyPackage(id Signer, kind string, ctx []byte, member, n uint32, xSeed, kemSeed []byte) (*KeyPackage, *KeyPackagePrivate, error) {
	x, err := ecdh.X25519().NewPrivateKey(xSeed)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to make key package: %w", err)
	}
	dk, err := mlkem.NewDecapsulationKey768(kemSeed)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to make key package: %w", err)
	}
	kp := &KeyPackage{Member: member, N: n, X: x.PublicKey().Bytes(), EK: dk.EncapsulationKey().Bytes()}
	if kp.Sig, err = id.Sign(append(label(kind, ctx), kp.body()...)); err != nil {
		return nil, nil, fmt.Errorf("failed to sign key package: %w", err)
	}
	kp.raw = kp.marshal()
	return kp, &KeyPackagePrivate{x: x, dk: dk}, nil
}

func (kp *KeyPackage) body() []byte {
	b := []byte{Version}
	b = binary.BigEndian.AppendUint32(b, kp.Member)
	b = binary.BigEndian.AppendUint32(b, kp.N)
	b = append(b, kp.X...)
	return append(b, kp.EK...)
}

func (kp *KeyPackage) marshal() []byte {
	b := kp.body()
	b = binary.BigEndian.AppendUint16(b, uint16(len(kp.Sig)))
	return append(b, kp.Sig...)
}

// Bytes returns the encoded key package.
func (kp *KeyPackage) Bytes() []byte { return kp.raw }

// Hash identifies a key package in commits: SHA-256 of its encoding.
func (kp *KeyPackage) Hash() [HashSize]byte { return sum(kp.raw) }

const kpBody = 1 + 4 + 4 + X25519Size + EKSize

// ParseKeyPackage decodes a key package and checks its signature with the member's identity. It returns
// ErrVersion for another version, ErrMalformed for bad encoding and ErrForged for a bad signature (a key
// the relay or anyone without the identity swapped in).
func ParseKeyPackage(b []byte, kind string, ctx []byte, id Verifier) (*KeyPackage, error) {
	if len(b) < 1 || b[0] != Version {
		return nil, fmt.Errorf("failed to read key package: %w", ErrVersion)
	}
	if len(b) < kpBody+2 {
		return nil, fmt.Errorf("failed to read key package: %d bytes: %w", len(b), ErrMalformed)
	}
	sl := int(binary.BigEndian.Uint16(b[kpBody:]))
	if len(b) != kpBody+2+sl {
		return nil, fmt.Errorf("failed to read key package: length: %w", ErrMalformed)
	}
	kp := &KeyPackage{
		Member: binary.BigEndian.Uint32(b[1:]),
		N:      binary.BigEndian.Uint32(b[5:]),
		X:      b[9 : 9+X25519Size],
		EK:     b[9+X25519Size : kpBody],
		Sig:    b[kpBody+2:],
		raw:    b,
	}
	if _, err := mlkem.NewEncapsulationKey768(kp.EK); err != nil {
		return nil, fmt.Errorf("failed to read key package: %w: %w", ErrMalformed, err)
	}
	if !id.Verify(append(label(kind, ctx), b[:kpBody]...), kp.Sig) {
		return nil, fmt.Errorf("failed to read key package of member %d: %w", kp.Member, ErrForged)
	}
	return kp, nil
}
