package e2e

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"slices"
)

// How a Group agrees on epochs (docs/e2e.md §5–6): our key packages, the peers' key packages, the commit
// that one present member makes when the membership changed, and applying a commit.

// Restart marks a member's first key package of a session in its number (docs/e2e.md §5): the member
// holds no epoch keys (a new member, or a client restarted into its old seat) and must get a new epoch.
const Restart = 1 << 31

func (g *Group) rotate() (Frame, error) {
	if g.ownPriv != nil {
		g.ownPriv.Wipe()
	}
	g.kpN++
	n := g.kpN
	if n == 1 {
		n |= Restart
	}
	xs, ks := make([]byte, 32), make([]byte, 64)
	rand.Read(xs)
	rand.Read(ks)
	kp, priv, err := NewKeyPackage(g.id, "keypackage", g.ctx, g.member, n, xs, ks)
	if err != nil {
		return Frame{}, err
	}
	clear(xs)
	clear(ks)
	g.own, g.ownPriv = kp, priv
	return Frame{KindKeyPackage, kp.Bytes()}, nil
}

func (g *Group) onKeyPackage(r *Result, from uint32, body []byte) error {
	p := g.peers[from]
	if p == nil {
		return fmt.Errorf("a key package from a member whose identity we do not have: %w", ErrForged)
	}
	body = bytes.Clone(body)
	kp, err := ParseKeyPackage(body, "keypackage", g.ctx, p.v)
	if err != nil {
		if p.pendingV == nil {
			return err
		}
		if p.stash, err = ParseKeyPackage(body, "keypackage", g.ctx, p.pendingV); err != nil {
			return err
		}
		return nil
	}
	if kp.Member != from {
		return fmt.Errorf("key package names member %d: %w", kp.Member, ErrForged)
	}
	if p.kp != nil && bytes.Equal(kp.Bytes(), p.kp.Bytes()) {
		return nil // sent again for a newcomer
	}
	restart := kp.N&Restart != 0
	if p.kp != nil && !restart && kp.N <= p.kp.N&^Restart {
		return fmt.Errorf("key package %d after %d: %w", kp.N, p.kp.N&^Restart, ErrReplayed)
	}
	known := p.kp != nil
	p.kp, p.kpUsed = kp, false
	// A member of the current epoch that starts over has lost its keys: it needs a new epoch, and our
	// identity and key package again.
	if restart && slices.Contains(g.members, from) {
		p.rekey = true
	}
	if restart && known {
		h, err := g.Hello()
		if err != nil {
			return err
		}
		r.Send = append(r.Send, h.Send...)
	}
	return g.maybeCommit(r)
}

func (g *Group) fresh(m uint32) bool {
	p := g.peers[m]
	return m != g.member && p != nil && p.kp != nil && !p.kpUsed
}

// othersRestarted reports whether every member of P but us has an unused key package that starts a session.
func (g *Group) othersRestarted(P []uint32) bool {
	for _, m := range P {
		if m != g.member && (!g.fresh(m) || g.peers[m].kp.N&Restart == 0) {
			return false
		}
	}
	return true
}

// maybeCommit starts a new epoch when membership changed and we are the committer (docs/e2e.md §6.2).
func (g *Group) maybeCommit(r *Result) error {
	if g.blocked() {
		return nil
	}
	P := []uint32{g.member}
	for m := range g.present {
		if g.peers[m] != nil {
			P = append(P, m)
		}
	}
	slices.Sort(P)
	M := g.members
	need := false
	for _, m := range M {
		need = need || !slices.Contains(P, m)
	}
	for _, m := range P {
		need = need || ((!slices.Contains(M, m) || g.peers[m] != nil && g.peers[m].rekey) && g.fresh(m))
	}
	if !need {
		return nil
	}
	// A member that lost its keys (restart, key change) cannot chain the next epoch: it is skipped, and
	// does not commit itself before it has taken a commit, unless every other member present has started
	// over too (its latest key package opens a session): then nobody holds an epoch, and the lowest member
	// present starts from nothing (docs/e2e.md §6.2: two members of a dialog that reloaded at once).
	if g.Restarted && g.history.Number == 0 && !g.othersRestarted(P) {
		return nil
	}
	committer := P[0]
	for _, m := range P {
		if slices.Contains(M, m) && (g.peers[m] == nil || !g.peers[m].rekey) {
			committer = m
			break
		}
	}
	if committer != g.member {
		return nil
	}
	var to []*KeyPackage
	stays := false
	for _, m := range P {
		if g.fresh(m) {
			to = append(to, g.peers[m].kp)
		}
		stays = stays || m != g.member && slices.Contains(M, m)
	}
	if len(to) == 0 && !stays {
		return nil
	}
	secret, eph := make([]byte, 32), make([]byte, 32)
	rand.Read(secret)
	rand.Read(eph)
	var ch [HashSize]byte
	if g.own != nil {
		ch = g.own.Hash()
	}
	c, err := NewCommit(g.id, CommitParams{Ctx: g.ctx, Epoch: g.history.Number + 1, Prev: g.history.ID, Committer: g.member,
		CommitterHash: ch, To: to, Secret: secret, EphemeralSeed: eph, Encapsulate: Encapsulate})
	clear(eph)
	if err != nil {
		return err
	}
	r.Send = append(r.Send, Frame{KindCommit, c.Bytes()})
	if err := g.history.Check(c); err != nil {
		return err
	}
	g.apply(r, c, secret, g.member)
	return nil
}

func (g *Group) onCommit(r *Result, from uint32, body []byte) error {
	p := g.peers[from]
	if p == nil {
		return fmt.Errorf("a commit from a member whose identity we do not have: %w", ErrForged)
	}
	c, err := ParseCommit(bytes.Clone(body), g.ctx, p.v)
	if err != nil {
		return err
	}
	if c.Committer != from {
		return fmt.Errorf("commit names committer %d: %w", c.Committer, ErrForged)
	}
	mine := c.Find(g.member) >= 0
	if g.history.Number == 0 && !mine {
		return nil
	}
	if c.ID(g.ctx) == g.history.ID {
		return fmt.Errorf("the commit of epoch %d again: %w", c.Epoch, ErrOldEpoch)
	}
	if g.history.Number != 0 && c.Epoch == g.history.Number {
		r.Notes = append(r.Notes, Note{Class: "fork", Member: from, Text: fmt.Sprintf("member %d committed epoch %d too: two committers disagree", from, c.Epoch)})
		return nil
	}
	if err := g.history.Check(c); err != nil {
		return err
	}
	var secret []byte
	if mine {
		if secret, err = c.Open(g.ctx, g.own, g.ownPriv); err != nil {
			return err
		}
	}
	g.apply(r, c, secret, from)
	if mine {
		f, err := g.rotate()
		if err != nil {
			return err
		}
		r.Send = append(r.Send, f)
	}
	return g.maybeCommit(r)
}

func (g *Group) apply(r *Result, c *Commit, secret []byte, from uint32) {
	g.history.Accept(g.ctx, c)
	g.members = g.members[:0]
	for _, m := range c.Members {
		g.members = append(g.members, m.Member)
		if q := g.peers[m.Member]; q != nil && q.kp != nil && m.Member != c.Committer && m.Hash == q.kp.Hash() {
			q.kpUsed, q.rekey = true, false
		}
	}
	if g.prev != nil {
		g.prev.Wipe()
	}
	g.prev, g.epoch = g.epoch, nil
	if secret != nil {
		g.epoch = NewEpoch(c.Epoch, g.history.ID, secret, g.members)
		clear(secret)
	}
	r.Notes = append(r.Notes, Note{Class: "epoch", Member: from, Epoch: c.Epoch})
}
