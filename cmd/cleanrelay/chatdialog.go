package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cleanrelay/cleanrelay/relay/client"
	"github.com/cleanrelay/cleanrelay/relay/client/e2e"
	"github.com/cleanrelay/cleanrelay/relay/client/pgp"
)

// A dialog speaks end-to-end protocol v2 as the browser's dialogs do (docs/e2e.md): the account's OpenPGP key
// signs our key packages and commits, the peer's pinned directory key checks theirs, and nothing is announced
// in the room. Keys come from the directory, never from the room.

// chatDialog is a dialog with one registered user, set up by openChatDialog (chatlogin.go).
type chatDialog struct {
	acct      *client.Account
	room, cap string
	peer      string
	own       *pgp.Key
	dirKey    *pgp.Key // the peer's key as the directory served it last
	pinnedFP  string   // the fingerprint pinned for peer ("" before the first use)
	pins      *chatPins
	mail      *chatMail // prekeys and the mailbox
}

// dialogCrypto is protocol v2 for a session in a dialog, through e2e.Group.
type dialogCrypto struct {
	s       *chatSession
	d       *chatDialog
	g       *e2e.Group
	pinned  *pgp.Key // the trusted key of the peer; nil while only a changed key is known
	offered *pgp.Key // a key the directory serves that differs from the pin: blocks sending until trusted
	peers   map[uint32]bool
	set     map[uint32]*pgp.Key // the key each present member was given as its identity
	refused []e2e.Frame         // key packages that did not verify with the pin while a change waits
	from    []uint32            // their senders
	told    string              // the safety code last told
}

func newDialogCrypto(s *chatSession, d *chatDialog) *dialogCrypto {
	g := e2e.NewDialogGroup(s.room, s.member, d.own)
	g.HoldRestarted = true
	c := &dialogCrypto{s: s, d: d, g: g, peers: map[uint32]bool{}, set: map[uint32]*pgp.Key{}}
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
}

// pinPeers gives every member present the pinned key as its identity (a new pin replaces the old one).
func (c *dialogCrypto) pinPeers(r *e2e.Result) error {
	if c.pinned == nil {
		return nil
	}
	for _, m := range c.members() {
		if m == c.s.member || c.set[m] == c.pinned {
			continue
		}
		c.set[m] = c.pinned
		res, err := c.g.SetPeer(m, c.pinned)
		if err != nil {
			return err
		}
		merge(r, res)
	}
	return nil
}

func merge(a *e2e.Result, b e2e.Result) {
	a.Send = append(a.Send, b.Send...)
	a.Notes = append(a.Notes, b.Notes...)
	a.Messages = append(a.Messages, b.Messages...)
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
	r, err := c.g.SetPresent(present)
	if err == nil {
		err = c.pinPeers(&r)
	}
	if err == nil && len(present) > 0 {
		var h e2e.Result
		h, err = c.g.Hello()
		merge(&r, h)
	}
	if err != nil {
		return err
	}
	if err := c.apply(r, 0); err != nil {
		return err
	}
	c.readMail()
	return nil
}

func (c *dialogCrypto) resumed(present []uint32) error {
	clear(c.peers)
	for _, m := range present {
		c.peers[m] = true
	}
	r, err := c.g.SetPresent(present)
	if err == nil {
		err = c.pinPeers(&r)
	}
	if err != nil {
		return err
	}
	return c.apply(r, 0)
}

func (c *dialogCrypto) presence(event string, member uint32) error {
	if event == "join" {
		// The peer may come back with another key (a new browser, a forgotten passphrase): ask the directory.
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		k, err := c.d.peerKey(ctx)
		cancel()
		if err != nil {
			c.s.emit(chatEvent{Type: "problem", Member: member, Message: "failed to look up " + c.d.peer + "'s key: " + err.Error()})
		} else {
			c.check(k, member)
		}
	}
	if event == "leave" {
		delete(c.peers, member)
		delete(c.set, member)
	} else {
		c.peers[member] = true
	}
	r, err := c.g.OnPresence(event, member)
	if err == nil && event != "leave" {
		err = c.pinPeers(&r)
	}
	if err != nil {
		return err
	}
	return c.apply(r, 0)
}

func (c *dialogCrypto) frame(from uint32, kind byte, body []byte) error {
	if kind == 0x01 || kind == 0x02 {
		c.s.emit(chatEvent{Type: "problem", Member: from, Code: "version", Message: fmt.Sprintf("%s (member %d) runs an older client (protocol v1) that cannot read this dialog: nothing is sent to it; they should reload the page", c.d.peer, from)})
		return nil
	}
	r, err := c.g.OnFrame(from, kind, body)
	if err != nil {
		return err
	}
	if kind == e2e.KindKeyPackage && c.offered != nil && slices.ContainsFunc(r.Notes, func(n e2e.Note) bool { return n.Class == "forged" }) {
		if len(c.refused) >= 4 {
			c.refused, c.from = c.refused[1:], c.from[1:]
		}
		c.refused, c.from = append(c.refused, e2e.Frame{Kind: kind, Body: slices.Clone(body)}), append(c.from, from)
	}
	return c.apply(r, kind)
}

func (c *dialogCrypto) seal(plain []byte) error {
	f, err := c.g.Seal(plain)
	if err != nil {
		return err
	}
	return c.s.send(f.Kind, f.Body)
}

func (c *dialogCrypto) canSend() bool { return c.pinned != nil && c.offered == nil && c.g.CanSend() }

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
	var r e2e.Result
	if err := c.pinPeers(&r); err != nil {
		return err
	}
	// Key packages the new key signed while it waited for the user count now.
	refused, from := c.refused, c.from
	c.refused, c.from = nil, nil
	for i, f := range refused {
		res, err := c.g.OnFrame(from[i], f.Kind, f.Body)
		if err != nil {
			return err
		}
		merge(&r, res)
	}
	if err := c.apply(r, 0); err != nil {
		return err
	}
	c.readMail()
	return nil
}

func (c *dialogCrypto) wipe() { c.g.Wipe() }

// readMail shows what the peer left in the mailbox (docs/e2e.md §9), once the peer's key is trusted, and
// publishes prekeys again for those it used.
func (c *dialogCrypto) readMail() {
	if c.d.mail == nil || c.pinned == nil || c.offered != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), mailTimeout)
	defer cancel()
	if err := c.d.mail.read(ctx, c.d.peer, c.pinned, c.s.emit, func(plain []byte) { c.s.onPlain(0, plain, true) }); err != nil {
		c.s.emit(chatEvent{Type: "problem", Code: "mailbox", Message: "failed to read the mailbox: " + err.Error()})
	}
	if _, err := c.d.mail.topUp(ctx); err != nil {
		c.s.emit(chatEvent{Type: "problem", Code: "prekeys", Message: "failed to publish prekeys for the mailbox: " + err.Error()})
	}
}

// viaMail reports whether a message goes to the mailbox: the peer is not in the dialog and its key is trusted.
func (c *dialogCrypto) viaMail() bool {
	return c.d.mail != nil && c.pinned != nil && c.offered == nil && len(c.peers) == 0
}

// sendMail leaves a message for the absent peer, sealed with one of its one-time prekeys. When none can be had,
// the message waits (as any send waits for the room's keys) and goes into the dialog once the peer is there.
func (c *dialogCrypto) sendMail(cmd chatCommand) error {
	s := c.s
	if len(cmd.Text) > maxText {
		s.emit(chatEvent{Type: "error", Message: fmt.Sprintf("message too long (%d bytes, at most %d)", len(cmd.Text), maxText)})
		return nil
	}
	id, ts := newID(), time.Now().UnixMilli()
	env, err := encodeEnvelope(map[string]any{"k": "msg", "id": id, "text": cmd.Text, "ts": ts, "ttl": max(cmd.TTL, 0)}, nil)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), mailTimeout)
	defer cancel()
	switch err := c.d.mail.send(ctx, c.d.peer, c.pinned, env); {
	case errors.Is(err, errWaitingContact):
		s.queued = append(s.queued, cmd)
		s.emit(chatEvent{Type: "problem", User: c.d.peer, Code: "waiting_contact", Message: fmt.Sprintf("%s has no one-time key left for messages that wait (%v): this one goes when they are in the dialog", c.d.peer, err)})
	case err != nil:
		s.emit(chatEvent{Type: "error", Message: "failed to leave the message in the mailbox: " + err.Error()})
	default:
		s.emit(chatEvent{Type: "sent", From: s.member, ID: id, Text: cmd.Text, TS: ts, TTL: cmd.TTL, Mailbox: true})
		s.expireLater(id, cmd.TTL)
	}
	return nil
}

// apply sends a Group result's frames, tells its notes and handles its plaintexts.
func (c *dialogCrypto) apply(r e2e.Result, kind byte) error {
	s := c.s
	for _, f := range r.Send {
		if err := s.send(f.Kind, f.Body); err != nil {
			return err
		}
	}
	for _, n := range r.Notes {
		switch n.Class {
		case "identity", "epoch":
		case "forged":
			if kind == e2e.KindKeyPackage && c.offered != nil {
				continue // signed by the offered key: taken once the user trusts it
			}
			s.emit(chatEvent{Type: "problem", Member: n.Member, Code: n.Class, Message: n.Text})
		default:
			s.emit(chatEvent{Type: "problem", Member: n.Member, Code: n.Class, Message: n.Text})
		}
	}
	for _, m := range r.Messages {
		s.onPlain(m.From, m.Plaintext, true)
	}
	c.tell()
	return nil
}

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
