package e2e

import (
	"bytes"
	"fmt"

	"github.com/ProtonMail/go-crypto/openpgp"
)

// PGPIdentity signs with an unlocked OpenPGP key: the identity of a dialog (docs/e2e.md §4.1), whose
// signatures are OpenPGP detached binary signatures over the same bytes as Ed25519's.
type PGPIdentity struct{ Entity *openpgp.Entity }

func (p PGPIdentity) Sign(msg []byte) ([]byte, error) {
	var b bytes.Buffer
	if err := openpgp.DetachSign(&b, p.Entity, bytes.NewReader(msg), nil); err != nil {
		return nil, fmt.Errorf("failed to make OpenPGP signature: %w", err)
	}
	return b.Bytes(), nil
}

// PGPPublic verifies signatures of one pinned OpenPGP key.
type PGPPublic struct{ Entity *openpgp.Entity }

func (p PGPPublic) Verify(msg, sig []byte) bool {
	_, err := openpgp.CheckDetachedSignature(openpgp.EntityList{p.Entity}, bytes.NewReader(msg), bytes.NewReader(sig), nil)
	return err == nil
}
