package e2e

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
)

// KindMailItem is the frame payload kind of a mailbox item (docs/e2e.md §9): a message to a contact who is
// away, sealed with one of its one-time prekeys.
const KindMailItem = 0x14

// Prekey members: the sender of a mailbox item is member 1, the prekey's owner member 2.
const (
	MailSender    = 1
	PrekeyOwner   = 2
	mailItemEpoch = 1
)

// PrekeyCtx is the ctx of user's prekeys and of the mailbox items sealed with them.
func PrekeyCtx(user string) []byte { return []byte("prekey:" + user) }

// MailSealParams are the random inputs of SealMailItem; tests and vectors set them, a client leaves the
// zero value (fresh randomness).
type MailSealParams struct {
	Secret        []byte // 32 bytes: the epoch secret
	EphemeralSeed []byte // 32 bytes: the commit's X25519 key
	Encapsulate   Encapsulator
}

// SealMailItem seals plaintext for user with prekey (checked by the caller against user's pinned key), as
// member 1 signing with id. It returns the item's body (docs/e2e.md §9):
//
//	u16 len ‖ commit (epoch 1, prev zeros, committer 1: members 1 with hash zeros, 2 with H(prekey)) ‖ message 0 of member 1
func SealMailItem(id Signer, user string, prekey *KeyPackage, plaintext []byte, p MailSealParams) ([]byte, error) {
	if prekey.Member != PrekeyOwner {
		return nil, fmt.Errorf("failed to seal mail item: prekey of member %d: %w", prekey.Member, ErrMalformed)
	}
	if p.Secret == nil {
		p.Secret = random(32)
		defer clear(p.Secret)
	}
	if p.EphemeralSeed == nil {
		p.EphemeralSeed = random(32)
		defer clear(p.EphemeralSeed)
	}
	if p.Encapsulate == nil {
		p.Encapsulate = Encapsulate
	}
	ctx := PrekeyCtx(user)
	c, err := NewCommit(id, CommitParams{Ctx: ctx, Epoch: mailItemEpoch, Committer: MailSender, To: []*KeyPackage{prekey},
		Secret: p.Secret, EphemeralSeed: p.EphemeralSeed, Encapsulate: p.Encapsulate})
	if err != nil {
		return nil, err
	}
	e := NewEpoch(mailItemEpoch, c.ID(ctx), p.Secret, []uint32{MailSender, PrekeyOwner})
	defer e.Wipe()
	msg, err := e.Seal(MailSender, plaintext)
	if err != nil {
		return nil, err
	}
	raw := c.Bytes()
	out := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(raw)+len(msg)), uint16(len(raw)))
	return append(append(out, raw...), msg...), nil
}

// MailItem is a mailbox item split into its commit (signature checked) and its message.
type MailItem struct {
	Commit  *Commit
	Message []byte
	Prekey  [HashSize]byte // the hash of the prekey it was sealed with: which private half opens it
}

// ParseMailItem splits an item's body and checks the commit's form and signature with the sender's pinned
// identity. Errors: ErrMalformed (not the commit of §9), ErrVersion, ErrForged.
func ParseMailItem(body []byte, user string, sender Verifier) (*MailItem, error) {
	if len(body) < 2 || len(body) < 2+int(binary.BigEndian.Uint16(body)) {
		return nil, fmt.Errorf("failed to read mail item: %w", ErrMalformed)
	}
	n := int(binary.BigEndian.Uint16(body))
	c, err := ParseCommit(body[2:2+n], PrekeyCtx(user), sender)
	if err != nil {
		return nil, err
	}
	if c.Epoch != mailItemEpoch || c.Prev != [HashSize]byte{} || c.Committer != MailSender || len(c.Members) != 2 ||
		c.Members[0] != (Entry{MailSender, [HashSize]byte{}}) || c.Members[1].Member != PrekeyOwner {
		return nil, fmt.Errorf("failed to read mail item: not a prekey commit: %w", ErrMalformed)
	}
	return &MailItem{Commit: c, Message: body[2+n:], Prekey: c.Members[1].Hash}, nil
}

// Open opens the item with the prekey it names and its private half, which it deletes (priv.Wipe) once the
// commit has opened: a prekey serves one item. Errors: ErrReplayed (the private half was deleted: a second
// item with the same prekey), ErrSwapped (another prekey), ErrForged, ErrMalformed.
func (m *MailItem) Open(user string, prekey *KeyPackage, priv *KeyPackagePrivate) ([]byte, error) {
	return m.open(user, prekey.Hash(), priv)
}

// OpenHeld is Open for an owner that keeps a prekey's hash and private half, not the prekey itself: priv is
// the private half of the prekey whose hash the item names (m.Prekey).
func (m *MailItem) OpenHeld(user string, priv *KeyPackagePrivate) ([]byte, error) {
	return m.open(user, m.Prekey, priv)
}

func (m *MailItem) open(user string, prekey [HashSize]byte, priv *KeyPackagePrivate) ([]byte, error) {
	ctx := PrekeyCtx(user)
	secret, err := m.Commit.open(ctx, PrekeyOwner, prekey, priv)
	if err != nil {
		return nil, err
	}
	priv.Wipe()
	e := NewEpoch(mailItemEpoch, m.Commit.ID(ctx), secret, []uint32{MailSender, PrekeyOwner})
	clear(secret)
	defer e.Wipe()
	if _, _, n, err := MessageEpoch(m.Message); err == nil && n != 0 {
		return nil, fmt.Errorf("failed to open mail item: message %d, not 0: %w", n, ErrMalformed)
	}
	pt, _, err := e.Open(MailSender, m.Message)
	return pt, err
}

func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}
