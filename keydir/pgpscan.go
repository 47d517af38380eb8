package keydir

import (
	"bytes"
	"fmt"
	"io"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"golang.org/x/text/unicode/norm"
)

// Packet tags a transferable public key may hold (RFC 9580 §10.1), and the compressed-data packet, which it
// may not but which could hide anything.
const (
	tagSignature    = 2
	tagPublicKey    = 6
	tagCompressed   = 8
	tagMarker       = 10
	tagTrust        = 12
	tagUserID       = 13
	tagPublicSubkey = 14
)

// MaxUserIDBytes is the longest user ID the directory keeps.
const MaxUserIDBytes = 256

// scanPackets checks the packet stream of an upload before it is parsed: secret-key material anywhere, even
// inside compressed data, is ErrPrivateKey; a packet that does not belong in a public key (compressed data,
// literal data, photo IDs…) is ErrKeyMalformed; more user IDs or subkeys than cfg keeps, or a longer user ID,
// is ErrKeyTooLarge.
func scanPackets(body []byte, cfg Config) error {
	if hasSecret(body, cfg.MaxKeyBytes, 0) {
		return ErrPrivateKey
	}
	ops := packet.NewOpaqueReader(bytes.NewReader(body))
	uids, subkeys := 0, 0
	for {
		op, err := ops.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: broken packet structure", ErrKeyMalformed)
		}
		switch op.Tag {
		case tagSignature, tagPublicKey, tagMarker, tagTrust:
		case tagPublicSubkey:
			subkeys++
		case tagUserID:
			uids++
			if len(op.Contents) > MaxUserIDBytes {
				return fmt.Errorf("%w: a user ID longer than %d bytes", ErrKeyTooLarge, MaxUserIDBytes)
			}
		default:
			return fmt.Errorf("%w: a packet of type %d does not belong in a public key", ErrKeyMalformed, op.Tag)
		}
	}
	switch {
	case uids > cfg.MaxKeyUserIDs:
		return fmt.Errorf("%w: %d user IDs, at most %d are kept", ErrKeyTooLarge, uids, cfg.MaxKeyUserIDs)
	case subkeys > cfg.MaxKeySubkeys:
		return fmt.Errorf("%w: %d subkeys, at most %d are kept", ErrKeyTooLarge, subkeys, cfg.MaxKeySubkeys)
	}
	return nil
}

// hasSecret reports whether a packet stream holds a secret key or subkey packet, looking into compressed
// data (at most limit bytes of it, two levels deep). What it decompressed is overwritten.
func hasSecret(body []byte, limit, depth int) bool {
	ops := packet.NewOpaqueReader(bytes.NewReader(body))
	for {
		op, err := ops.Next()
		if err != nil {
			return false // the end, or broken structure, which the caller refuses on its own
		}
		switch op.Tag {
		case tagSecretKey, tagSecretSubkey:
			clear(op.Contents)
			return true
		case tagCompressed:
			if depth >= 2 {
				continue
			}
			inner := decompress(op, limit)
			found := hasSecret(inner, limit, depth+1)
			clear(inner)
			if found {
				return true
			}
		}
	}
}

// decompress returns up to limit bytes of a compressed-data packet's contents; as much as could be read if
// it is broken.
func decompress(op *packet.OpaquePacket, limit int) []byte {
	var raw bytes.Buffer
	if op.Serialize(&raw) != nil {
		return nil
	}
	p, err := packet.Read(&raw)
	c, ok := p.(*packet.Compressed)
	if err != nil || !ok {
		return nil
	}
	out, _ := io.ReadAll(io.LimitReader(c.Body, int64(limit)))
	return out
}

// owner is the account a key is published for.
type owner struct {
	username string // normalized
	fullName string // as registered
	email    string // as registered; empty when none
}

// namesOwner reports whether a user ID names the account and nobody else: its name is the username, or the
// full name with the username as its comment ("alice <alice@example.org>", "Alice Liddell (alice)"); its
// comment, if any, is the username; its e-mail, if any, is the account's.
func namesOwner(u *packet.UserId, o owner) bool {
	name, comment := strings.TrimSpace(u.Name), strings.TrimSpace(u.Comment)
	isUser := func(s string) bool {
		n, err := NormalizeUsername(s)
		return err == nil && n == o.username
	}
	switch {
	case comment != "" && !isUser(comment):
		return false
	case isUser(name):
	case comment != "" && name != "" && norm.NFC.String(name) == o.fullName:
	default:
		return false
	}
	if u.Email == "" {
		return true
	}
	e, err := normalizeEmail(u.Email, false)
	return err == nil && o.email != "" && e == o.email
}
