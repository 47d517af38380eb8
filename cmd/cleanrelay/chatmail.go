package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/cleanrelay/cleanrelay/relay/client"
	"github.com/cleanrelay/cleanrelay/relay/client/e2e"
	"github.com/cleanrelay/cleanrelay/relay/client/pgp"
)

// The terminal's side of the mailbox (docs/e2e.md §9): it publishes this account's one-time prekeys, reads
// the items the dialog's peer left while the terminal was away, deleting each prekey's private half on its
// first use, and leaves items for a peer who is not in the dialog.
//
// The private halves live in memory and in the prekeys file (--prekeys; by default beside the key's ZIP):
// one OpenPGP message encrypted to the account's own key, as the ZIP holds the key itself under its
// passphrase. Without such a file no prekeys are published: their private halves would die with this
// process while the relay still handed the prekeys out.

const (
	prekeysTopUpBelow = 16 // fewer of ours left at the relay, and a full bundle is published again
	prekeysKeep       = 3  // at most keep × the relay's maximum private halves are kept; the oldest go
)

type prekeyHalf struct {
	hash          [e2e.HashSize]byte
	xSeed, kemKey []byte
}

// chatMail is one login's prekeys and mailbox.
type chatMail struct {
	acct *client.Account
	own  *pgp.Key
	user string // the account's name as the relay spells it: the prekeys' ctx
	file string // the prekeys file; "" publishes none
	next uint32
	keys map[uint32]*prekeyHalf
	told map[string]bool // items this terminal cannot open, told once
}

// prekeysFileJSON is the prekeys file's plaintext.
type prekeysFileJSON struct {
	V    int    `json:"v"`
	User string `json:"user"`
	Next uint32 `json:"next"`
	Keys []struct {
		ID   uint32 `json:"id"`
		Hash []byte `json:"hash"`
		X    []byte `json:"x"`
		KEM  []byte `json:"kem"`
	} `json:"keys"`
}

// newChatMail loads the prekeys file (a file that does not open with own, another account's or a damaged
// one, is started afresh and said so through emit).
func newChatMail(acct *client.Account, own *pgp.Key, file string, emit func(chatEvent)) (*chatMail, error) {
	m := &chatMail{acct: acct, own: own, user: acct.Name, file: file, keys: map[uint32]*prekeyHalf{}, told: map[string]bool{}}
	// The browser counts its prekey ids up from 1; a terminal starts at a random point far above, so the ids
	// of the two do not meet (an id is unique among a user's prekeys, docs/e2e.md §9).
	var b [4]byte
	rand.Read(b[:])
	m.next = 1<<30 + binary.BigEndian.Uint32(b[:])%(1<<29)
	if file == "" {
		return m, nil
	}
	data, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return nil, fmt.Errorf("failed to read the prekeys file: %w", err)
	}
	o, err := pgp.Decrypt(own, data, own)
	var j prekeysFileJSON
	if err == nil && o.Signer != 0 {
		err = errors.New("not signed by this key")
	}
	if err == nil {
		err = json.Unmarshal(o.Data, &j)
		clear(o.Data)
	}
	if err == nil && (j.V != 1 || j.User != m.user) {
		err = fmt.Errorf("it is for %q", j.User)
	}
	if err != nil {
		emit(chatEvent{Type: "problem", Code: "prekeys", Message: "the prekeys file " + file + " does not open with this account's key (" + err.Error() + "): it is started afresh; mailbox items sealed with its prekeys cannot be read here"})
		return m, nil
	}
	for _, k := range j.Keys {
		if len(k.Hash) == e2e.HashSize && len(k.X) == 32 && len(k.KEM) == 64 {
			m.keys[k.ID] = &prekeyHalf{hash: [e2e.HashSize]byte(k.Hash), xSeed: k.X, kemKey: k.KEM}
		}
	}
	m.next = max(m.next, j.Next)
	return m, nil
}

// save writes the prekeys file again: a new file renamed over the old one.
func (m *chatMail) save() error {
	if m.file == "" {
		return nil
	}
	j := prekeysFileJSON{V: 1, User: m.user, Next: m.next}
	for _, id := range slices.Sorted(maps.Keys(m.keys)) {
		k := m.keys[id]
		j.Keys = append(j.Keys, struct {
			ID   uint32 `json:"id"`
			Hash []byte `json:"hash"`
			X    []byte `json:"x"`
			KEM  []byte `json:"kem"`
		}{id, k.hash[:], k.xSeed, k.kemKey})
	}
	plain, _ := json.Marshal(j)
	msg, err := pgp.NewSender(m.own).Encrypt(plain)
	clear(plain)
	if err != nil {
		return fmt.Errorf("failed to save the prekeys: %w", err)
	}
	tmp := m.file + ".tmp"
	if err := os.WriteFile(tmp, msg, 0o600); err != nil {
		return fmt.Errorf("failed to save the prekeys: %w", err)
	}
	if err := os.Rename(tmp, m.file); err != nil {
		return fmt.Errorf("failed to save the prekeys: %w", err)
	}
	return nil
}

// forget deletes a prekey's private half.
func (m *chatMail) forget(id uint32) {
	if k := m.keys[id]; k != nil {
		clear(k.xSeed)
		clear(k.kemKey)
		delete(m.keys, id)
	}
}

// topUp publishes a full bundle when fewer than prekeysTopUpBelow of the prekeys the relay holds are this
// terminal's (another device's login replaces them with its own: the last one to log in holds the mailbox).
// It returns how many it published (0: none needed).
func (m *chatMail) topUp(ctx context.Context) (int, error) {
	if m.file == "" {
		return 0, nil
	}
	left, most, err := m.acct.PrekeysLeft(ctx)
	if err != nil {
		return 0, err
	}
	var at []uint32
	for _, id := range left {
		if m.keys[id] != nil {
			at = append(at, id)
		}
	}
	if len(at) >= min(prekeysTopUpBelow, most) {
		return 0, nil
	}
	// The file keeps no prekey's bytes, only its hash: a full bundle is all new. The halves of those it replaces
	// stay (one may have been taken just now) until the oldest go below.
	var raws [][]byte
	for len(raws) < most {
		kp, x, kem, err := e2e.NewPrekey(m.own, m.user, m.next)
		if err != nil {
			return 0, err
		}
		m.keys[m.next] = &prekeyHalf{hash: kp.Hash(), xSeed: x, kemKey: kem}
		m.next++
		raws = append(raws, kp.Bytes())
	}
	// Beyond keep × most, the oldest private halves go: their prekeys were taken long ago, or replaced.
	ids := slices.Sorted(maps.Keys(m.keys))
	for _, id := range ids[:max(0, len(ids)-prekeysKeep*most)] {
		m.forget(id)
	}
	if err := m.save(); err != nil { // the halves are on disk before anyone can take their prekeys
		return 0, err
	}
	if err := m.acct.PublishPrekeys(ctx, e2e.EncodeBundle(raws)); err != nil {
		return 0, err
	}
	return len(raws), nil
}

// read fetches what peer left, opens each item with the prekey it names (pinned: the peer's pinned key),
// deletes that prekey's private half, and hands the envelope to show. Items this terminal cannot open because
// it never held their prekey (another device of this account's, or read before) are told once and left at the
// relay for the device that can; everything else is acknowledged.
func (m *chatMail) read(ctx context.Context, peer string, pinned *pgp.Key, emit func(chatEvent), show func(plain []byte)) error {
	for round := 0; round < 64; round++ {
		items, more, err := m.acct.FetchMail(ctx, peer)
		if err != nil || len(items) == 0 {
			return err
		}
		var ack []string
		used := false
		for _, it := range items {
			plain, keep, problem := m.open(it, peer, pinned, &used)
			if problem != "" && !m.told[it.ID] {
				emit(chatEvent{Type: "problem", User: peer, Code: "mailbox", Message: problem})
			}
			if keep {
				m.told[it.ID] = true
				continue
			}
			ack = append(ack, it.ID)
			if plain != nil {
				show(plain)
				clear(plain)
			}
		}
		if used {
			if err := m.save(); err != nil {
				emit(chatEvent{Type: "problem", Code: "prekeys", Message: err.Error()})
			}
		}
		if len(ack) > 0 {
			if err := m.acct.AckMail(ctx, peer, ack); err != nil {
				return err
			}
		}
		if !more || len(ack) == 0 {
			return nil
		}
	}
	return nil
}

// open opens one item. keep: leave it at the relay (not this terminal's to read).
func (m *chatMail) open(it client.MailItem, peer string, pinned *pgp.Key, used *bool) (plain []byte, keep bool, problem string) {
	kind, body, err := unpadFrame(it.Data)
	if err != nil {
		return nil, false, fmt.Sprintf("a mailbox item from %s is unreadable: %v", peer, err)
	}
	if kind != e2e.KindMailItem {
		return nil, false, fmt.Sprintf("a mailbox item from %s is in an old format (protocol v1) that this client does not read", peer)
	}
	item, err := e2e.ParseMailItem(body, m.user, pinned)
	if err != nil {
		return nil, false, fmt.Sprintf("a mailbox item from %s does not verify with %s's pinned key: %v", peer, peer, err)
	}
	var id uint32
	var half *prekeyHalf
	for i, k := range m.keys {
		if k.hash == item.Prekey {
			id, half = i, k
		}
	}
	if half == nil {
		return nil, true, fmt.Sprintf("a message from %s waits in the mailbox sealed with a one-time key this terminal does not hold: another device of yours (the browser) reads it, or it was read before", peer)
	}
	priv, err := e2e.PrekeyPrivate(half.xSeed, half.kemKey)
	if err != nil {
		return nil, false, err.Error()
	}
	plain, err = item.OpenHeld(m.user, priv)
	if priv.Wiped() { // the commit opened: the prekey has served its one item
		m.forget(id)
		*used = true
	}
	if err != nil {
		return nil, false, fmt.Sprintf("a mailbox item from %s does not open: %v", peer, err)
	}
	return plain, false, ""
}

// errWaitingContact: no prekey of the peer can be had; the message waits for the peer.
var errWaitingContact = errors.New("waiting for the contact")

// send seals envelope for peer (pinned: its pinned key) with one of its prekeys and leaves it in the mailbox.
func (m *chatMail) send(ctx context.Context, peer string, pinned *pgp.Key, envelope []byte) error {
	p, err := m.acct.TakePrekey(ctx, peer)
	if err != nil {
		for _, code := range []string{`"no_prekeys"`, `"prekeys_held"`, `"prekeys_off"`} {
			if strings.Contains(err.Error(), code) {
				return fmt.Errorf("%w: %s", errWaitingContact, strings.Trim(code, `"`))
			}
		}
		return err
	}
	kp, err := e2e.ParsePrekey(p.Prekey, peer, pinned)
	if err != nil {
		return fmt.Errorf("%s's prekey from the relay does not verify with the pinned key: %w", peer, err)
	}
	body, err := e2e.SealMailItem(m.own, peer, kp, envelope, e2e.MailSealParams{})
	if err != nil {
		return err
	}
	payload, err := padFrame(e2e.KindMailItem, body)
	if err != nil {
		return err
	}
	_, err = m.acct.PutMail(ctx, peer, p.Fingerprint, payload, 0)
	return err
}

// mailTimeout bounds one round of mailbox requests.
const mailTimeout = 90 * time.Second
