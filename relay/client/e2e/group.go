package e2e

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
)

// Frame is one v2 frame body with its payload kind.
type Frame struct {
	Kind byte
	Body []byte
}

// Note is something a member should be told: Class is an error class of the vectors ("forged",
// "replayed", …) or "identity", "epoch", "missing", "not-member".
type Note struct {
	Class  string
	Member uint32
	Text   string
	Epoch  uint32
}

// Message is a plaintext that arrived.
type Message struct {
	From      uint32
	Epoch, N  uint32
	Plaintext []byte
}

// Result is what a Group handler asks of its caller: frames to send in order, notes, messages.
type Result struct {
	Send     []Frame
	Notes    []Note
	Messages []Message
}

type peer struct {
	pub, pending  []byte   // announced Ed25519 keys (anonymous rooms), compared for pinning
	v, pendingV   Verifier // what checks the member's signatures
	display       []byte
	kp, stash     *KeyPackage
	kpUsed, rekey bool
}

// Group runs protocol v2 for one member of an anonymous room (docs/e2e.md §6): the same rules as the
// browser's e2e-group.mjs, so a Go member and browser members reach the same epochs.
type Group struct {
	room    string
	ctx     []byte
	member  uint32
	id      Signer
	idPub   []byte // our announced Ed25519 key (anonymous rooms)
	key     []byte // invite key; nil in a dialog
	display []byte
	peers   map[uint32]*peer
	present map[uint32]bool
	history History
	members []uint32 // of the latest accepted commit
	epoch   *Epoch
	prev    *Epoch
	kpN     uint32

	// Restarted says this member came back into its old seat without its state (a resumed seat after a
	// restart); set it before the first Hello.
	Restarted bool
	// HoldRestarted stops sealing while a member of our epoch has restarted and waits for a new one
	// (dialogs: the one reader could not open the message).
	HoldRestarted bool
	own           *KeyPackage
	ownPriv       *KeyPackagePrivate
}

// NewGroup starts a member's state; secret is the invite secret, display an optional key to show.
func NewGroup(room string, member uint32, id Ed25519Identity, secret, display []byte) *Group {
	return &Group{room: room, ctx: []byte(room), member: member, id: id, idPub: id.Public(), key: InviteKey(secret, room), display: display,
		peers: map[uint32]*peer{}, present: map[uint32]bool{}}
}

// NewDialogGroup starts a member's state in a dialog: the identity is the account's OpenPGP key (or any
// Signer), peers' identities come from the directory through SetPeer, and nothing is announced.
func NewDialogGroup(room string, member uint32, id Signer) *Group {
	return &Group{room: room, ctx: []byte(room), member: member, id: id, peers: map[uint32]*peer{}, present: map[uint32]bool{}}
}

// SetPeer pins member's identity from outside the room (a dialog: the directory key the caller checked
// against its pins).
func (g *Group) SetPeer(member uint32, v Verifier) (Result, error) {
	if p := g.peers[member]; p != nil {
		p.v, p.pendingV, p.pending = v, nil, nil
	} else {
		g.peers[member] = &peer{v: v}
	}
	var r Result
	return r, g.maybeCommit(&r)
}

// Hello returns our identity announcement and latest key package (on joining, and when someone joins).
func (g *Group) Hello() (Result, error) {
	var r Result
	if g.key != nil {
		iv := make([]byte, 12)
		rand.Read(iv)
		r.Send = append(r.Send, Frame{KindIdentity, SealIdentity(g.key, g.room, Identity{Member: g.member, Public: Ed25519Public(g.idPub), Display: g.display}, iv)})
	}
	if g.own != nil {
		r.Send = append(r.Send, Frame{KindKeyPackage, g.own.Bytes()})
		return r, nil
	}
	f, err := g.rotate()
	r.Send = append(r.Send, f)
	return r, err
}

// SetPresent replaces the set of other members present.
func (g *Group) SetPresent(list []uint32) (Result, error) {
	clear(g.present)
	for _, m := range list {
		if m != g.member {
			g.present[m] = true
		}
	}
	var r Result
	return r, g.maybeCommit(&r)
}

// OnPresence handles a presence event ("join", "leave", "away", "back").
func (g *Group) OnPresence(event string, member uint32) (Result, error) {
	var r Result
	switch event {
	case "leave":
		delete(g.present, member)
		delete(g.peers, member)
		return r, g.maybeCommit(&r)
	case "join":
		g.present[member] = true
		return g.Hello()
	}
	g.present[member] = true
	return r, nil
}

// OnFrame handles a v2 frame the relay stamped as sent by from. A frame that fails its checks becomes a
// note and changes nothing; the error is only for failures of our own (randomness, encoding).
func (g *Group) OnFrame(from uint32, kind byte, body []byte) (Result, error) {
	var r Result
	var err error
	switch kind {
	case KindIdentity:
		err = g.onIdentity(&r, from, body)
	case KindKeyPackage:
		err = g.onKeyPackage(&r, from, body)
	case KindCommit:
		err = g.onCommit(&r, from, body)
	case KindMessage:
		err = g.onMessage(&r, from, body)
	default:
		err = fmt.Errorf("frame of unknown kind %#x: %w", kind, ErrVersion)
	}
	if c := errClassOf(err); c != "" {
		r.Notes = append(r.Notes, Note{Class: c, Member: from, Text: fmt.Sprintf("member %d: %v", from, err)})
		err = nil
	}
	return r, err
}

func errClassOf(err error) string {
	for _, c := range []struct {
		err  error
		name string
	}{{ErrForged, "forged"}, {ErrSwapped, "swapped"}, {ErrReplayed, "replayed"}, {ErrOldEpoch, "old-epoch"},
		{ErrFork, "fork"}, {ErrMissing, "missing"}, {ErrMalformed, "malformed"}, {ErrVersion, "version"}, {ErrNotMember, "not-member"}} {
		if errors.Is(err, c.err) {
			return c.name
		}
	}
	return ""
}

func (g *Group) onIdentity(r *Result, from uint32, body []byte) error {
	id, err := OpenIdentity(g.key, g.room, from, body)
	if err != nil {
		return err
	}
	if bytes.Equal(id.Public, g.idPub) {
		return fmt.Errorf("an identity announcement carries our own key: %w", ErrForged)
	}
	pub := bytes.Clone(id.Public)
	p := g.peers[from]
	switch {
	case p == nil:
		g.peers[from] = &peer{pub: pub, v: Ed25519Public(pub), display: bytes.Clone(id.Display)}
		r.Notes = append(r.Notes, Note{Class: "identity", Member: from, Text: "new"})
	case bytes.Equal(p.pub, pub):
	default:
		p.pending, p.pendingV = pub, Ed25519Public(pub)
		r.Notes = append(r.Notes, Note{Class: "identity", Member: from, Text: "changed"})
	}
	return nil
}

// Trust makes member's pending identity the pinned one; it gets a new epoch.
func (g *Group) Trust(member uint32) (Result, error) {
	var r Result
	p := g.peers[member]
	if p == nil || p.pendingV == nil {
		return r, errors.New("no pending key change for that member")
	}
	p.pub, p.v, p.pending, p.pendingV, p.kp, p.stash, p.kpUsed, p.rekey = p.pending, p.pendingV, nil, nil, p.stash, nil, false, true
	return r, g.maybeCommit(&r)
}

func (g *Group) blocked() bool {
	for _, p := range g.peers {
		if p.pendingV != nil {
			return true
		}
	}
	return false
}

func (g *Group) onMessage(r *Result, from uint32, body []byte) error {
	epoch, _, n, err := MessageEpoch(body)
	if err != nil {
		return err
	}
	var e *Epoch
	for _, x := range []*Epoch{g.epoch, g.prev} {
		if x != nil && x.Number == epoch {
			e = x
		}
	}
	if e == nil {
		if epoch > g.history.Number || g.history.Number == 0 {
			r.Notes = append(r.Notes, Note{Class: "not-member", Member: from, Text: fmt.Sprintf("member %d wrote in epoch %d, which does not include us", from, epoch)})
			return nil
		}
		return fmt.Errorf("message from epoch %d, whose keys are deleted: %w", epoch, ErrOldEpoch)
	}
	pt, missing, err := e.Open(from, body)
	if err != nil {
		return err
	}
	if missing > 0 {
		r.Notes = append(r.Notes, Note{Class: "missing", Member: from, Text: fmt.Sprintf("%d message(s) from member %d did not arrive", missing, from)})
	}
	if e == g.prev && g.epoch != nil && g.epoch.chains[from] != nil {
		delete(g.prev.chains, from)
	}
	r.Messages = append(r.Messages, Message{From: from, Epoch: epoch, N: n, Plaintext: pt})
	return nil
}

// CanSend reports whether a message can be sealed now.
func (g *Group) CanSend() bool {
	return g.epoch != nil && len(g.members) > 1 && !g.blocked() && !(g.HoldRestarted && g.restartedPeer())
}

// restartedPeer reports whether a member of our epoch has started over and waits for a new one.
func (g *Group) restartedPeer() bool {
	for _, m := range g.members {
		if p := g.peers[m]; m != g.member && p != nil && p.rekey {
			return true
		}
	}
	return false
}

// Seal returns our next message frame.
func (g *Group) Seal(plaintext []byte) (Frame, error) {
	if g.blocked() {
		return Frame{}, errors.New("blocked: a member's key changed; compare the safety code first")
	}
	if !g.CanSend() {
		return Frame{}, errors.New("cannot send yet: waiting for the end-to-end keys of this room")
	}
	b, err := g.epoch.Seal(g.member, plaintext)
	return Frame{KindMessage, b}, err
}

// Epoch returns the current epoch number we hold keys for, or 0.
func (g *Group) Epoch() uint32 {
	if g.epoch == nil {
		return 0
	}
	return g.epoch.Number
}

// Wipe deletes every key.
func (g *Group) Wipe() {
	for _, e := range []*Epoch{g.epoch, g.prev} {
		if e != nil {
			e.Wipe()
		}
	}
	if g.ownPriv != nil {
		g.ownPriv.Wipe()
	}
	g.epoch, g.prev, g.own, g.ownPriv = nil, nil, nil, nil
}

// Identity returns our announced Ed25519 key (anonymous rooms; nil in a dialog).
func (g *Group) Identity() []byte { return g.idPub }

// PeerIdentity returns member's pinned Ed25519 key and the different one it announced that waits for Trust
// (nil when none), for safety codes and key-change warnings.
func (g *Group) PeerIdentity(member uint32) (pinned, pending []byte) {
	if p := g.peers[member]; p != nil {
		return p.pub, p.pending
	}
	return nil, nil
}

// Members returns the member list of the latest accepted commit.
func (g *Group) Members() []uint32 { return slices.Clone(g.members) }
