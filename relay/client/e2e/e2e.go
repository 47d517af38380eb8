// Package e2e implements cleanrelay's end-to-end protocol v2 (docs/e2e.md): hybrid X25519 + ML-KEM-768 epochs, per-sender ratchets and padded messages.
package e2e

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// Version is the protocol version byte that opens every v2 structure.
const Version = 2

// Frame payload kinds of v2 (docs/e2e.md §3); v1 used 0x01 (key announcement) and 0x02 (OpenPGP).
const (
	KindIdentity   = 0x10
	KindKeyPackage = 0x11
	KindCommit     = 0x12
	KindMessage    = 0x13
)

// Sizes of the fixed fields.
const (
	X25519Size   = 32
	EKSize       = 1184 // ML-KEM-768 encapsulation key
	CTSize       = 1088 // ML-KEM-768 ciphertext
	HashSize     = 32
	WrappedSize  = 32 + 16
	MessageHead  = 13 // version, epoch, sender, n
	MaxMembers   = 50 // a commit for more would not fit a 64 KiB frame
	MaxSkip      = 256
	labelPrefix  = "cleanrelay-e2e-v2/"
	chainInfo    = "cleanrelay-e2e-v2 chain"
	senderInfo   = "cleanrelay-e2e-v2 sender"
	epochInfo    = "cleanrelay-e2e-v2 epoch"
	wrapInfo     = "cleanrelay-e2e-v2 wrap"
	identityInfo = "cleanrelay-e2e-v2 identity"
)

// Errors a caller branches on. Each is wrapped with detail; test with errors.Is.
var (
	ErrForged    = errors.New("forged: signature or authentication tag does not verify")
	ErrSwapped   = errors.New("swapped key: a key package that its member did not send")
	ErrReplayed  = errors.New("replayed")
	ErrOldEpoch  = errors.New("replayed old epoch")
	ErrFork      = errors.New("commit does not follow the current epoch")
	ErrMissing   = errors.New("messages missing")
	ErrMalformed = errors.New("malformed")
	ErrVersion   = errors.New("unsupported protocol version")
	ErrNotMember = errors.New("not a member of this epoch")
)

// label returns the domain-separated input "cleanrelay-e2e-v2/<name>\0" ‖ u16 len(ctx) ‖ ctx that every
// signature, hash and AEAD additional data starts with.
func label(name string, ctx []byte) []byte {
	b := make([]byte, 0, len(labelPrefix)+len(name)+3+len(ctx))
	b = append(b, labelPrefix...)
	b = append(b, name...)
	b = append(b, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(len(ctx)))
	return append(b, ctx...)
}

func hkdfKey(secret, salt []byte, info string, n int) []byte {
	k, err := hkdf.Key(sha256.New, secret, salt, info, n)
	if err != nil {
		panic(err) // only for n > 255*32, which no caller asks for
	}
	return k
}

func sum(parts ...[]byte) [HashSize]byte {
	h := sha256.New()
	for _, p := range parts {
		h.Write(p)
	}
	var out [HashSize]byte
	h.Sum(out[:0])
	return out
}

func gcm(key []byte) cipher.AEAD {
	b, err := aes.NewCipher(key)
	if err != nil {
		panic(err)
	}
	a, err := cipher.NewGCM(b)
	if err != nil {
		panic(err)
	}
	return a
}

func u32(n uint32) string {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], n)
	return string(b[:])
}

// Buckets are the plaintext sizes a message is padded to: u32 length ‖ data ‖ zeros.
var Buckets = []int{256, 1024, 4096, 16384, 40960}

// Pad returns data padded to the smallest bucket that holds it.
func Pad(data []byte) ([]byte, error) {
	for _, b := range Buckets {
		if 4+len(data) <= b {
			out := make([]byte, b)
			binary.BigEndian.PutUint32(out, uint32(len(data)))
			copy(out[4:], data)
			return out, nil
		}
	}
	return nil, fmt.Errorf("failed to pad: %d bytes is over the %d-byte limit", len(data), Buckets[len(Buckets)-1]-4)
}

// Unpad returns the data inside a padded block; it refuses a size that is not a bucket, a length that
// overruns and padding that is not zero.
func Unpad(block []byte) ([]byte, error) {
	ok := false
	for _, b := range Buckets {
		ok = ok || len(block) == b
	}
	if !ok {
		return nil, fmt.Errorf("failed to unpad: %d bytes is not a bucket size: %w", len(block), ErrMalformed)
	}
	n := binary.BigEndian.Uint32(block)
	if uint64(n)+4 > uint64(len(block)) {
		return nil, fmt.Errorf("failed to unpad: length %d overruns: %w", n, ErrMalformed)
	}
	for _, c := range block[4+n:] {
		if c != 0 {
			return nil, fmt.Errorf("failed to unpad: padding is not zero: %w", ErrMalformed)
		}
	}
	return block[4 : 4+n], nil
}
