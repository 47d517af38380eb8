package e2e

import (
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
)

// InviteKey derives the key that seals identity announcements of an anonymous room from the invite
// secret, which travels only in the link's fragment.
func InviteKey(secret []byte, room string) []byte {
	return hkdfKey(secret, []byte("cleanrelay room "+room), identityInfo, 32)
}

// Identity is a member's announcement in an anonymous room: its member id, its one-time Ed25519
// identity and, optionally, a display key (an armored OpenPGP public key the browser shows).
type Identity struct {
	Member  uint32
	Public  Ed25519Public
	Display []byte
}

// SealIdentity returns iv ‖ AES-256-GCM(key, iv, announcement) with the room in the additional data.
func SealIdentity(key []byte, room string, id Identity, iv []byte) []byte {
	pt := []byte{Version}
	pt = binary.BigEndian.AppendUint32(pt, id.Member)
	pt = append(pt, id.Public...)
	pt = binary.BigEndian.AppendUint16(pt, uint16(len(id.Display)))
	pt = append(pt, id.Display...)
	return gcm(key).Seal(append([]byte(nil), iv...), iv, pt, label("identity", []byte(room)))
}

// OpenIdentity opens an announcement and checks that it names the member the relay stamped. It returns
// ErrForged for one not made with this room's invite secret or naming another member.
func OpenIdentity(key []byte, room string, from uint32, b []byte) (Identity, error) {
	if len(b) < 12+16 {
		return Identity{}, fmt.Errorf("failed to open identity: too short: %w", ErrMalformed)
	}
	pt, err := gcm(key).Open(nil, b[:12], b[12:], label("identity", []byte(room)))
	if err != nil {
		return Identity{}, fmt.Errorf("failed to open identity: not made with this invite secret: %w", ErrForged)
	}
	if len(pt) < 1 || pt[0] != Version {
		return Identity{}, fmt.Errorf("failed to open identity: %w", ErrVersion)
	}
	if len(pt) < 1+4+ed25519.PublicKeySize+2 || len(pt) != 1+4+32+2+int(binary.BigEndian.Uint16(pt[37:])) {
		return Identity{}, fmt.Errorf("failed to open identity: length: %w", ErrMalformed)
	}
	id := Identity{Member: binary.BigEndian.Uint32(pt[1:]), Public: Ed25519Public(pt[5:37]), Display: pt[39:]}
	if id.Member != from {
		return Identity{}, fmt.Errorf("failed to open identity: names member %d but came from %d: %w", id.Member, from, ErrForged)
	}
	return id, nil
}
