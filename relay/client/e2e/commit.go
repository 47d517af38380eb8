package e2e

import (
	"bytes"
	"crypto/ecdh"
	"crypto/mlkem"
	"encoding/binary"
	"fmt"
	"slices"
)

// Entry names one member of an epoch and the key package (or prekey) its secret was wrapped to.
type Entry struct {
	Member uint32
	Hash   [HashSize]byte
}

// Commit starts an epoch (docs/e2e.md §6): the committer's fresh epoch secret, wrapped to every other
// member under both X25519 and ML-KEM-768, signed by the committer.
type Commit struct {
	Epoch     uint32
	Prev      [HashSize]byte // ID of the epoch this one follows; zeros for a first epoch
	Committer uint32
	Members   []Entry // ascending by member id, committer included
	E         []byte  // the commit's ephemeral X25519 public key
	CT        [][]byte
	Wrapped   [][]byte // one per member but the committer, in Members order
	Sig       []byte
	raw       []byte
}

// Encapsulator returns an ML-KEM-768 shared key and ciphertext for ek: ek.Encapsulate in use, a
// derandomized one (crypto/mlkem/mlkemtest) for test vectors.
type Encapsulator func(ek *mlkem.EncapsulationKey768) (shared, ct []byte, err error)

// Encapsulate is the Encapsulator with fresh randomness.
func Encapsulate(ek *mlkem.EncapsulationKey768) ([]byte, []byte, error) {
	s, c := ek.Encapsulate()
	return s, c, nil
}

// CommitParams are the inputs of NewCommit.
type CommitParams struct {
	Ctx           []byte // room id, or "prekey:" + username for an offline message
	Epoch         uint32
	Prev          [HashSize]byte
	Committer     uint32
	CommitterHash [HashSize]byte // the committer's latest key package, zeros if it has none
	To            []*KeyPackage  // every other member's unused key package (or a prekey)
	Secret        []byte         // 32 random bytes: the epoch secret
	EphemeralSeed []byte         // 32 random bytes: the commit's X25519 key
	Encapsulate   Encapsulator
}

// NewCommit builds and signs a commit.
func NewCommit(id Signer, p CommitParams) (*Commit, error) {
	if len(p.To)+1 > MaxMembers {
		return nil, fmt.Errorf("failed to commit: %d members is over %d", len(p.To)+1, MaxMembers)
	}
	if len(p.Secret) != 32 {
		return nil, fmt.Errorf("failed to commit: secret must be 32 bytes")
	}
	e, err := ecdh.X25519().NewPrivateKey(p.EphemeralSeed)
	if err != nil {
		return nil, fmt.Errorf("failed to commit: %w", err)
	}
	to := slices.Clone(p.To)
	slices.SortFunc(to, func(a, b *KeyPackage) int { return int(int64(a.Member) - int64(b.Member)) })
	c := &Commit{Epoch: p.Epoch, Prev: p.Prev, Committer: p.Committer, E: e.PublicKey().Bytes()}
	c.Members = append(c.Members, Entry{p.Committer, p.CommitterHash})
	for _, kp := range to {
		c.Members = append(c.Members, Entry{kp.Member, kp.Hash()})
	}
	slices.SortFunc(c.Members, func(a, b Entry) int { return int(int64(a.Member) - int64(b.Member)) })
	for i := 1; i < len(c.Members); i++ {
		if c.Members[i].Member == c.Members[i-1].Member {
			return nil, fmt.Errorf("failed to commit: member %d twice", c.Members[i].Member)
		}
	}
	for _, kp := range to {
		pub, err := ecdh.X25519().NewPublicKey(kp.X)
		if err != nil {
			return nil, fmt.Errorf("failed to commit: %w", err)
		}
		dh, err := e.ECDH(pub)
		if err != nil {
			return nil, fmt.Errorf("failed to commit: %w", err)
		}
		ek, err := mlkem.NewEncapsulationKey768(kp.EK)
		if err != nil {
			return nil, fmt.Errorf("failed to commit: %w", err)
		}
		ss, ct, err := p.Encapsulate(ek)
		if err != nil {
			return nil, fmt.Errorf("failed to commit: %w", err)
		}
		k := WrapKey(p.Ctx, p.Epoch, kp.Member, kp.Hash(), c.E, ct, dh, ss)
		c.CT = append(c.CT, ct)
		c.Wrapped = append(c.Wrapped, gcm(k[:32]).Seal(nil, k[32:], p.Secret, nil))
	}
	b := c.body()
	if c.Sig, err = id.Sign(append(label("commit", p.Ctx), b...)); err != nil {
		return nil, fmt.Errorf("failed to sign commit: %w", err)
	}
	c.raw = binary.BigEndian.AppendUint16(b, uint16(len(c.Sig)))
	c.raw = append(c.raw, c.Sig...)
	return c, nil
}

// WrapKey derives the 32-byte key and 12-byte nonce that wrap the epoch secret for one member. It needs
// both shared secrets: with one of them known and the other not, the key is unknown.
func WrapKey(ctx []byte, epoch, member uint32, kpHash [HashSize]byte, e, ct, dh, ss []byte) []byte {
	salt := sum(label("wrap", ctx), []byte(u32(epoch)), []byte(u32(member)), kpHash[:], e, ct)
	return hkdfKey(append(slices.Clone(dh), ss...), salt[:], wrapInfo, 44)
}

func (c *Commit) body() []byte {
	b := []byte{Version}
	b = binary.BigEndian.AppendUint32(b, c.Epoch)
	b = append(b, c.Prev[:]...)
	b = binary.BigEndian.AppendUint32(b, c.Committer)
	b = append(b, byte(len(c.Members)))
	for _, m := range c.Members {
		b = binary.BigEndian.AppendUint32(b, m.Member)
		b = append(b, m.Hash[:]...)
	}
	b = append(b, c.E...)
	for i := range c.CT {
		b = append(b, c.CT[i]...)
		b = append(b, c.Wrapped[i]...)
	}
	return b
}

// Bytes returns the encoded commit.
func (c *Commit) Bytes() []byte { return c.raw }

// ID identifies the epoch the commit starts.
func (c *Commit) ID(ctx []byte) [HashSize]byte { return sum(label("epoch", ctx), c.raw) }

// ParseCommit decodes a commit and checks the committer's signature. It returns ErrVersion,
// ErrMalformed or ErrForged.
func ParseCommit(b []byte, ctx []byte, committer Verifier) (*Commit, error) {
	if len(b) < 1 || b[0] != Version {
		return nil, fmt.Errorf("failed to read commit: %w", ErrVersion)
	}
	const head = 1 + 4 + HashSize + 4 + 1
	if len(b) < head {
		return nil, fmt.Errorf("failed to read commit: too short: %w", ErrMalformed)
	}
	c := &Commit{Epoch: binary.BigEndian.Uint32(b[1:]), Committer: binary.BigEndian.Uint32(b[5+HashSize:])}
	copy(c.Prev[:], b[5:])
	n := int(b[head-1])
	if n < 1 || n > MaxMembers {
		return nil, fmt.Errorf("failed to read commit: %d members: %w", n, ErrMalformed)
	}
	end := head + n*(4+HashSize) + X25519Size + (n-1)*(CTSize+WrappedSize)
	if len(b) < end+2 || len(b) != end+2+int(binary.BigEndian.Uint16(b[end:])) {
		return nil, fmt.Errorf("failed to read commit: length: %w", ErrMalformed)
	}
	off := head
	self := false
	for i := 0; i < n; i++ {
		e := Entry{Member: binary.BigEndian.Uint32(b[off:])}
		copy(e.Hash[:], b[off+4:])
		off += 4 + HashSize
		if i > 0 && e.Member <= c.Members[i-1].Member {
			return nil, fmt.Errorf("failed to read commit: members not ascending: %w", ErrMalformed)
		}
		self = self || e.Member == c.Committer
		c.Members = append(c.Members, e)
	}
	if !self {
		return nil, fmt.Errorf("failed to read commit: committer not listed: %w", ErrMalformed)
	}
	c.E = b[off : off+X25519Size]
	off += X25519Size
	for i := 0; i < n-1; i++ {
		c.CT = append(c.CT, b[off:off+CTSize])
		c.Wrapped = append(c.Wrapped, b[off+CTSize:off+CTSize+WrappedSize])
		off += CTSize + WrappedSize
	}
	c.Sig = b[end+2:]
	c.raw = b
	if !committer.Verify(append(label("commit", ctx), b[:end]...), c.Sig) {
		return nil, fmt.Errorf("failed to read commit of epoch %d: %w", c.Epoch, ErrForged)
	}
	return c, nil
}

// Find returns the index of member among the commit's wrapped secrets, or -1 (the committer, or absent).
func (c *Commit) Find(member uint32) int {
	i := 0
	for _, m := range c.Members {
		if m.Member == c.Committer {
			continue
		}
		if m.Member == member {
			return i
		}
		i++
	}
	return -1
}

// Open unwraps the epoch secret for the holder of kp. It returns ErrNotMember when the commit has no
// secret for kp's member, ErrSwapped when the commit names another key package for that member, and
// ErrForged when the wrap does not open.
func (c *Commit) Open(ctx []byte, kp *KeyPackage, priv *KeyPackagePrivate) ([]byte, error) {
	return c.open(ctx, kp.Member, kp.Hash(), priv)
}

// open is Open for the key package of member with hash h.
func (c *Commit) open(ctx []byte, member uint32, h [HashSize]byte, priv *KeyPackagePrivate) ([]byte, error) {
	i := c.Find(member)
	if i < 0 {
		return nil, fmt.Errorf("failed to open commit of epoch %d: %w", c.Epoch, ErrNotMember)
	}
	var entry Entry
	for _, m := range c.Members {
		if m.Member == member {
			entry = m
		}
	}
	if !bytes.Equal(entry.Hash[:], h[:]) {
		return nil, fmt.Errorf("failed to open commit of epoch %d: it names a key package of member %d that is not ours: %w", c.Epoch, member, ErrSwapped)
	}
	if priv.Wiped() {
		return nil, fmt.Errorf("failed to open commit of epoch %d: its key package was used before: %w", c.Epoch, ErrReplayed)
	}
	pub, err := ecdh.X25519().NewPublicKey(c.E)
	if err != nil {
		return nil, fmt.Errorf("failed to open commit: %w: %w", ErrMalformed, err)
	}
	dh, err := priv.x.ECDH(pub)
	if err != nil {
		return nil, fmt.Errorf("failed to open commit: %w: %w", ErrMalformed, err)
	}
	ss, err := priv.dk.Decapsulate(c.CT[i])
	if err != nil {
		return nil, fmt.Errorf("failed to open commit: %w: %w", ErrMalformed, err)
	}
	return OpenWrapped(WrapKey(ctx, c.Epoch, member, entry.Hash, c.E, c.CT[i], dh, ss), c.Wrapped[i], c.Epoch)
}

// OpenWrapped opens one wrapped epoch secret with the key from WrapKey.
func OpenWrapped(k, wrapped []byte, epoch uint32) ([]byte, error) {
	s, err := gcm(k[:32]).Open(nil, k[32:], wrapped, nil)
	if err != nil {
		return nil, fmt.Errorf("failed to open commit of epoch %d: %w", epoch, ErrForged)
	}
	return s, nil
}
