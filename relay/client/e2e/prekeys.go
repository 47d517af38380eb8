package e2e

import (
	"crypto/ecdh"
	"crypto/mlkem"
	"encoding/binary"
	"fmt"
)

// NewPrekey makes prekey n of user, signed by id (docs/e2e.md §9), from fresh seeds. It returns the prekey
// and its private half as seeds (32-byte X25519, 64-byte ML-KEM d ‖ z): what the owner keeps until the
// prekey's first use, and rebuilds the keys from with PrekeyPrivate.
func NewPrekey(id Signer, user string, n uint32) (kp *KeyPackage, xSeed, kemSeed []byte, err error) {
	xSeed, kemSeed = random(X25519Size), random(64)
	kp, _, err = NewKeyPackage(id, "prekey", PrekeyCtx(user), PrekeyOwner, n, xSeed, kemSeed)
	if err != nil {
		return nil, nil, nil, err
	}
	return kp, xSeed, kemSeed, nil
}

// PrekeyPrivate rebuilds a prekey's private keys from its seeds.
func PrekeyPrivate(xSeed, kemSeed []byte) (*KeyPackagePrivate, error) {
	x, err := ecdh.X25519().NewPrivateKey(xSeed)
	if err != nil {
		return nil, fmt.Errorf("failed to rebuild prekey: %w", err)
	}
	dk, err := mlkem.NewDecapsulationKey768(kemSeed)
	if err != nil {
		return nil, fmt.Errorf("failed to rebuild prekey: %w", err)
	}
	return &KeyPackagePrivate{x: x, dk: dk}, nil
}

// ParsePrekey checks a prekey of user (as the relay handed it out, or as its owner stored it) with the
// owner's pinned identity. Errors: ErrVersion, ErrMalformed (also for a member other than 2), ErrForged.
func ParsePrekey(raw []byte, user string, owner Verifier) (*KeyPackage, error) {
	kp, err := ParseKeyPackage(raw, "prekey", PrekeyCtx(user), owner)
	if err != nil {
		return nil, err
	}
	if kp.Member != PrekeyOwner {
		return nil, fmt.Errorf("failed to read prekey: member %d: %w", kp.Member, ErrMalformed)
	}
	return kp, nil
}

// EncodeBundle is what PUT /api/prekeys takes: u16 count ‖ count × (u16 len ‖ prekey).
func EncodeBundle(prekeys [][]byte) []byte {
	out := binary.BigEndian.AppendUint16(nil, uint16(len(prekeys)))
	for _, p := range prekeys {
		out = binary.BigEndian.AppendUint16(out, uint16(len(p)))
		out = append(out, p...)
	}
	return out
}
