package pgp

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	openpgp "github.com/ProtonMail/go-crypto/openpgp/v2"

	"github.com/cleanrelay/cleanrelay/relay/client/e2e"
)

// Sender encrypts and signs messages to the peers and to its own key, as the browser's Sender: one session key
// is reused until the recipient set changes, so that the browser's Receiver decrypts the next messages with
// its cached session key instead of a private-key operation. Each message is still a complete OpenPGP
// message with a key packet for every recipient. Not safe for concurrent use.
type Sender struct {
	own   *Key
	to    []*openpgp.Entity
	setID string
	sk    []byte // the reused session key; nil: a fresh one per message
}

// NewSender sends as own (an unlocked private key), to own alone until SetRecipients.
func NewSender(own *Key) *Sender {
	s := &Sender{own: own}
	s.SetRecipients(nil)
	return s
}

// SetRecipients sets the peers' keys (the sender's own key is always added). A changed set rotates the
// session key.
func (s *Sender) SetRecipients(peers []*Key) {
	all := []*openpgp.Entity{s.own.e}
	fps := []string{s.own.Fingerprint()}
	for _, p := range peers {
		all = append(all, p.e)
		fps = append(fps, p.Fingerprint())
	}
	sort.Strings(fps)
	if id := strings.Join(fps, ","); id != s.setID || s.to == nil {
		clear(s.sk)
		s.to, s.setID, s.sk = all, id, nil
	}
}

// Encrypt pads data to its plaintext bucket (docs/e2e.md §3), signs it and encrypts it: the binary OpenPGP
// message that is the body of a kind 0x02 frame.
func (s *Sender) Encrypt(data []byte) ([]byte, error) {
	padded, err := e2e.Pad(data)
	if err != nil {
		return nil, err
	}
	if s.sk == nil && reusable(s.to) {
		s.sk = make([]byte, packet.CipherAES256.KeySize())
		rand.Read(s.sk)
	}
	var out bytes.Buffer
	params := &openpgp.EncryptParams{Signers: []*openpgp.Entity{s.own.e}, Config: config()}
	if s.sk != nil {
		params.SessionKey = slices.Clone(s.sk) // the library wipes what it was given
	}
	w, err := openpgp.EncryptWithParams(&out, s.to, nil, params)
	if err != nil {
		return nil, fmt.Errorf("failed to encrypt: %w", err)
	}
	if _, err := w.Write(padded); err != nil {
		return nil, fmt.Errorf("failed to encrypt: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("failed to encrypt: %w", err)
	}
	return out.Bytes(), nil
}

// reusable reports whether the library will pick AES-256 in SEIPD v1 for these recipients, the only case in
// which a kept 32-byte session key fits.
func reusable(to []*openpgp.Entity) bool {
	aead := true
	for _, e := range to {
		sig, err := e.PrimarySelfSignature(config().Now(), config())
		if err != nil || !slices.Contains(sig.PreferredSymmetric, uint8(packet.CipherAES256)) {
			return false
		}
		aead = aead && sig.SEIPDv2
	}
	return !aead
}

// Opened is a decrypted message.
type Opened struct {
	Data []byte // the unpadded plaintext
	// Signer is the index in the keys given to Decrypt of the key whose signature verified, or -1 when
	// none did (no signature, another key's, or a bad one): the caller must show that.
	Signer int
}

// ErrUndecryptable is returned by Decrypt for a message not encrypted to own.
var ErrUndecryptable = errors.New("the message is not encrypted to this key")

// Decrypt opens a message with own's private key and checks its signature against signers (the peer's pinned
// key, and optionally a changed key not trusted yet). A message that does not decrypt, whose integrity check
// fails or whose padding is malformed is an error; one that decrypts but verifies with none of signers is
// Opened with Signer -1.
func Decrypt(own *Key, msg []byte, signers ...*Key) (*Opened, error) {
	ring := openpgp.EntityList{own.e}
	for _, k := range signers {
		if k.Private() { // only own may decrypt
			p, err := k.Public()
			if err != nil {
				return nil, err
			}
			k = p
		}
		ring = append(ring, k.e)
	}
	md, err := openpgp.ReadMessage(bytes.NewReader(msg), ring, nil, config())
	if err != nil {
		if errors.Is(err, pgperrors.ErrKeyIncorrect) {
			return nil, ErrUndecryptable
		}
		return nil, fmt.Errorf("failed to decrypt: %w", err)
	}
	if !md.IsEncrypted {
		return nil, errors.New("failed to decrypt: the message is not encrypted")
	}
	plain, err := io.ReadAll(io.LimitReader(md.UnverifiedBody, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("failed to decrypt: %w", err)
	}
	data, err := e2e.Unpad(plain)
	if err != nil {
		return nil, err
	}
	o := &Opened{Data: slices.Clone(data), Signer: -1}
	if md.IsSigned && md.SignatureError == nil && md.SignedBy != nil {
		for i, k := range signers {
			if bytes.Equal(md.SignedBy.Entity.PrimaryKey.Fingerprint, k.e.PrimaryKey.Fingerprint) {
				o.Signer = i
			}
		}
	}
	return o, nil
}
