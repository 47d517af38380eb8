package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cleanrelay/cleanrelay/relay/client"
	"github.com/cleanrelay/cleanrelay/relay/client/pgp"
)

// A dialog speaks end-to-end protocol v1 as the browser's dialogs do (docs/e2e.md §15): every message a complete
// OpenPGP message (kind 0x02) signed by the sender and encrypted to the peer's pinned directory key and the
// sender's own. Keys come from the directory, never from the room.

const kindPGP = 0x02 // a binary OpenPGP message (docs/client.md, "What goes on the wire")

// chatDialog is a dialog with one registered user, set up by openChatDialog (chatlogin.go).
type chatDialog struct {
	acct      *client.Account
	room, cap string
	peer      string
	own       *pgp.Key
	dirKey    *pgp.Key // the peer's key as the directory served it last
	pinnedFP  string   // the fingerprint pinned for peer ("" before the first use)
	pins      *chatPins
}

// dialogCrypto is protocol v1 for a session in a dialog.
type dialogCrypto struct {
	s       *chatSession
	d       *chatDialog
	sender  *pgp.Sender
	pinned  *pgp.Key // the trusted key of the peer; nil while only a changed key is known
	offered *pgp.Key // a key the directory serves that differs from the pin: blocks sending until trusted
	peers   map[uint32]bool
	told    string // the safety code last told
}

func newDialogCrypto(s *chatSession, d *chatDialog) *dialogCrypto {
	c := &dialogCrypto{s: s, d: d, sender: pgp.NewSender(d.own), peers: map[uint32]bool{}}
	c.check(d.dirKey, 0)
	return c
}

// check compares the directory's key of the peer with the pin: the first key is pinned (in memory, and in the
// pins file when one was named); another one is offered and blocks sending until the user trusts it.
func (c *dialogCrypto) check(k *pgp.Key, member uint32) {
	fp := k.Fingerprint()
	switch {
	case c.d.pinnedFP == "":
		c.d.pinnedFP, c.pinned = fp, k
		if err := c.d.pins.set(c.d.peer, fp); err != nil {
			c.s.emit(chatEvent{Type: "problem", Message: err.Error()})
		}
	case c.d.pinnedFP == fp:
		c.pinned, c.offered = k, nil
	case c.offered == nil || c.offered.Fingerprint() != fp:
		c.offered = k
		old, _ := hex.DecodeString(c.d.pinnedFP)
		c.s.emit(chatEvent{Type: "keychange", Member: member, User: c.d.peer, Safety: safetyCode(c.d.own.FingerprintBytes(), old), Offered: safetyCode(c.d.own.FingerprintBytes(), k.FingerprintBytes()),
			Message: fmt.Sprintf("%s's key in the directory changed (pinned %s, now %s): nothing is sent until you compare the new safety code and trust it", c.d.peer, c.d.pinnedFP, fp)})
	}
	c.recipients()
}

func (c *dialogCrypto) recipients() {
	if c.pinned != nil && len(c.peers) > 0 && c.offered == nil {
		c.sender.SetRecipients([]*pgp.Key{c.pinned})
	} else {
		c.sender.SetRecipients(nil)
	}
}

// tell shows the safety code once the peer is there and trusted, and the state.
func (c *dialogCrypto) tell() {
	if c.canSend() {
		if code := safetyCode(c.d.own.FingerprintBytes(), c.pinned.FingerprintBytes()); code != c.told {
			c.told = code
			for m := range c.peers {
				c.s.emit(chatEvent{Type: "safety", Member: m, User: c.d.peer, Safety: code})
			}
		}
	}
	c.s.emit(chatEvent{Type: "state", Online: boolp(c.s.events != nil), Ready: boolp(c.canSend()), Members: c.members()})
	c.s.flushQueued()
}

func (c *dialogCrypto) members() []uint32 {
	out := []uint32{c.s.member}
	for m := range c.peers {
		out = append(out, m)
	}
	slices.Sort(out)
	return out
}

func (c *dialogCrypto) enter(present []uint32) error {
	for _, m := range present {
		c.peers[m] = true
	}
	c.recipients()
	c.tell()
	return nil
}

func (c *dialogCrypto) resumed(present []uint32) error {
	clear(c.peers)
	return c.enter(present)
}

func (c *dialogCrypto) presence(event string, member uint32) error {
	switch event {
	case "join":
		// The peer may come back with another key (a new browser, a forgotten passphrase): ask the directory.
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		k, err := c.d.peerKey(ctx)
		cancel()
		if err != nil {
			c.s.emit(chatEvent{Type: "problem", Member: member, Message: "failed to look up " + c.d.peer + "'s key: " + err.Error()})
		} else {
			c.check(k, member)
		}
		c.peers[member] = true
	case "back", "away":
		c.peers[member] = true
	case "leave":
		delete(c.peers, member)
	}
	c.recipients()
	c.tell()
	return nil
}

func (c *dialogCrypto) frame(from uint32, kind byte, body []byte) error {
	if kind != kindPGP {
		msg := fmt.Sprintf("member %d sent a frame of kind %d, which dialogs do not use here (protocol v1: OpenPGP messages)", from, kind)
		c.s.emit(chatEvent{Type: "problem", Member: from, Code: "kind", Message: msg})
		return nil
	}
	signers := []*pgp.Key{}
	if c.pinned != nil {
		signers = append(signers, c.pinned)
	}
	if c.offered != nil {
		signers = append(signers, c.offered)
	}
	o, err := pgp.Decrypt(c.d.own, body, signers...)
	switch {
	case errors.Is(err, pgp.ErrUndecryptable):
		c.s.emit(chatEvent{Type: "problem", Member: from, Code: "undecryptable", Message: fmt.Sprintf("member %d's message is encrypted to another key than yours (%s may still hold your previous key: they should open the dialog again)", from, c.d.peer)})
		return nil
	case err != nil:
		c.s.emit(chatEvent{Type: "problem", Member: from, Code: "malformed", Message: err.Error()})
		return nil
	}
	verified := o.Signer >= 0 && signers[o.Signer] == c.pinned
	if !verified {
		why := "its signature is not by " + c.d.peer + "'s pinned key"
		if o.Signer >= 0 {
			why = "it is signed by " + c.d.peer + "'s new key, which you have not trusted yet"
		}
		c.s.emit(chatEvent{Type: "problem", Member: from, Code: "unverified", Message: fmt.Sprintf("member %d's message is NOT verified: %s", from, why)})
	}
	c.s.onPlain(from, o.Data, verified)
	return nil
}

func (c *dialogCrypto) seal(plain []byte) error {
	msg, err := c.sender.Encrypt(plain)
	if err != nil {
		return err
	}
	return c.s.send(kindPGP, msg)
}

func (c *dialogCrypto) canSend() bool { return c.pinned != nil && c.offered == nil && len(c.peers) > 0 }

func (c *dialogCrypto) blocked() bool { return c.offered != nil }

func (c *dialogCrypto) trust(uint32) error {
	if c.offered == nil {
		c.s.emit(chatEvent{Type: "error", Message: "no key change waits for your trust"})
		return nil
	}
	c.pinned, c.offered = c.offered, nil
	c.d.pinnedFP = c.pinned.Fingerprint()
	if err := c.d.pins.set(c.d.peer, c.d.pinnedFP); err != nil {
		c.s.emit(chatEvent{Type: "problem", Message: err.Error()})
	}
	c.told = ""
	c.recipients()
	c.tell()
	return nil
}

func (c *dialogCrypto) wipe() {}

// peerKey asks the directory for the peer's key.
func (d *chatDialog) peerKey(ctx context.Context) (*pgp.Key, error) {
	dk, err := d.acct.UserKey(ctx, d.peer)
	if err != nil {
		return nil, err
	}
	k, err := pgp.ReadPublic(dk.Armored)
	if err != nil {
		return nil, err
	}
	if k.Fingerprint() != dk.Fingerprint {
		return nil, fmt.Errorf("the directory describes %s's key as %s but serves %s", d.peer, dk.Fingerprint, k.Fingerprint())
	}
	return k, nil
}
