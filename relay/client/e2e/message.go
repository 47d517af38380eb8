package e2e

import (
	"encoding/binary"
	"fmt"
)

// Epoch holds the per-sender chains of one epoch. The epoch secret itself is not kept: NewEpoch derives
// the chains and the caller drops the secret.
type Epoch struct {
	Number uint32
	ID     [HashSize]byte
	chains map[uint32]*chain
}

type chain struct {
	ck      []byte
	next    uint32
	skipped map[uint32][]byte // n -> key ‖ nonce of a message not yet received
}

// NewEpoch derives the sender chains of members from the epoch secret.
func NewEpoch(number uint32, id [HashSize]byte, secret []byte, members []uint32) *Epoch {
	es := hkdfKey(secret, id[:], epochInfo, 32)
	e := &Epoch{Number: number, ID: id, chains: map[uint32]*chain{}}
	for _, m := range members {
		e.chains[m] = &chain{ck: hkdfKey(es, nil, senderInfo+u32(m), 32), skipped: map[uint32][]byte{}}
	}
	clear(es)
	return e
}

// step advances a chain key: it returns the next chain key and this step's key ‖ nonce.
func step(ck []byte) (next, keyNonce []byte) {
	out := hkdfKey(ck, nil, chainInfo, 76)
	return out[:32], out[32:]
}

// ChainKey returns member's current chain key and next message number (for tests and the
// forward-secrecy test's key capture).
func (e *Epoch) ChainKey(member uint32) ([]byte, uint32) {
	c := e.chains[member]
	if c == nil {
		return nil, 0
	}
	return c.ck, c.next
}

func messageHeader(epoch, sender, n uint32) []byte {
	h := []byte{Version}
	h = binary.BigEndian.AppendUint32(h, epoch)
	h = binary.BigEndian.AppendUint32(h, sender)
	return binary.BigEndian.AppendUint32(h, n)
}

// Seal encrypts plaintext as sender's next message; the message key is deleted once used.
func (e *Epoch) Seal(sender uint32, plaintext []byte) ([]byte, error) {
	c := e.chains[sender]
	if c == nil {
		return nil, fmt.Errorf("failed to seal: %w", ErrNotMember)
	}
	padded, err := Pad(plaintext)
	if err != nil {
		return nil, err
	}
	next, kn := step(c.ck)
	clear(c.ck)
	c.ck = next
	h := messageHeader(e.Number, sender, c.next)
	c.next++
	out := gcm(kn[:32]).Seal(h, kn[32:], padded, append(h[:MessageHead:MessageHead], e.ID[:]...))
	clear(kn)
	return out, nil
}

// MessageEpoch reads the epoch number and sender of a message without opening it.
func MessageEpoch(b []byte) (epoch, sender, n uint32, err error) {
	if len(b) < 1 || b[0] != Version {
		return 0, 0, 0, fmt.Errorf("failed to read message: %w", ErrVersion)
	}
	if len(b) < MessageHead+16 {
		return 0, 0, 0, fmt.Errorf("failed to read message: too short: %w", ErrMalformed)
	}
	return binary.BigEndian.Uint32(b[1:]), binary.BigEndian.Uint32(b[5:]), binary.BigEndian.Uint32(b[9:]), nil
}

// Open decrypts a message the relay stamped as sent by from. It returns the plaintext and how many
// earlier messages of that sender are missing (skipped over and kept for later, at most MaxSkip).
// Errors: ErrForged (sender claim differs from the stamp, or tampering), ErrReplayed (a message number
// already read), ErrMissing (a gap over MaxSkip).
func (e *Epoch) Open(from uint32, b []byte) (plaintext []byte, missing uint32, err error) {
	epoch, sender, n, err := MessageEpoch(b)
	if err != nil {
		return nil, 0, err
	}
	if epoch != e.Number {
		return nil, 0, fmt.Errorf("failed to open message: epoch %d, not %d: %w", epoch, e.Number, ErrMalformed)
	}
	if sender != from {
		return nil, 0, fmt.Errorf("failed to open message: names sender %d but came from %d: %w", sender, from, ErrForged)
	}
	c := e.chains[sender]
	if c == nil {
		return nil, 0, fmt.Errorf("failed to open message from %d: %w", sender, ErrNotMember)
	}
	var kn []byte
	switch {
	case n < c.next:
		kn = c.skipped[n]
		if kn == nil {
			return nil, 0, fmt.Errorf("failed to open message %d from %d: %w", n, sender, ErrReplayed)
		}
	case n-c.next > MaxSkip || len(c.skipped)+int(n-c.next) > MaxSkip:
		return nil, 0, fmt.Errorf("failed to open message %d from %d: %d skipped: %w", n, sender, n-c.next, ErrMissing)
	}
	ck := c.ck
	var skipped [][2]any
	if kn == nil {
		for i := c.next; i < n; i++ {
			var k []byte
			ck, k = step(ck)
			skipped = append(skipped, [2]any{i, k})
		}
		ck, kn = step(ck)
	}
	padded, err := gcm(kn[:32]).Open(nil, kn[32:], b[MessageHead:], append(b[:MessageHead:MessageHead], e.ID[:]...))
	if err != nil {
		return nil, 0, fmt.Errorf("failed to open message %d from %d: %w", n, sender, ErrForged)
	}
	pt, err := Unpad(padded)
	if err != nil {
		return nil, 0, err
	}
	// Only an authentic message moves the chain, so a forged one cannot make us skip or delete keys.
	if n < c.next {
		delete(c.skipped, n)
	} else {
		for _, s := range skipped {
			c.skipped[s[0].(uint32)] = s[1].([]byte)
		}
		missing = n - c.next
		clear(c.ck)
		c.ck, c.next = ck, n+1
	}
	clear(kn)
	return pt, missing, nil
}

// Skipped returns how many message keys of member are kept for messages not yet received.
func (e *Epoch) Skipped(member uint32) int {
	if c := e.chains[member]; c != nil {
		return len(c.skipped)
	}
	return 0
}

// Wipe deletes every key of the epoch.
func (e *Epoch) Wipe() {
	for m, c := range e.chains {
		clear(c.ck)
		for _, k := range c.skipped {
			clear(k)
		}
		delete(e.chains, m)
	}
}
