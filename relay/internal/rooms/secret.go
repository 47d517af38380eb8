package rooms

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
)

// Room ids, capabilities and resume tokens are raw bytes the relay owns and overwrites when they are no longer
// needed, never Go strings: a string cannot be overwritten (docs/threat-model.md §0).

const (
	IDLen     = 16 // a room id: bytes from the CSPRNG, 128 bits
	SecretLen = 32 // capabilities and resume tokens, 256 bits
)

// RoomID is a room's id, raw.
type RoomID [IDLen]byte

// Secret is a capability or a resume token, raw.
type Secret [SecretLen]byte

// Fill draws fresh random bytes. crypto/rand.Read never fails on supported platforms.
func (s *Secret) Fill() { rand.Read(s[:]) }

// Hash is how the relay keeps a secret: only its SHA-256, so that a dump of its tables hands out no working
// capability or token.
func (s *Secret) Hash() [32]byte { return sha256.Sum256(s[:]) }

// Wipe overwrites the secret.
func (s *Secret) Wipe() { clear(s[:]) }

// hashEqual compares two secret hashes in time that does not depend on where they differ.
func hashEqual(a, b *[32]byte) bool { return subtle.ConstantTimeCompare(a[:], b[:]) == 1 }
