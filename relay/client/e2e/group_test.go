package e2e

import (
	"crypto/rand"
	"fmt"
	"slices"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// simRelay delivers each entry to every present member but its sender, in one order; hook may drop,
// change or repeat an entry for one receiver.
type simRelay struct {
	t      *testing.T
	room   string
	secret []byte
	groups map[uint32]*Group
	notes  map[uint32][]Note
	texts  map[uint32][]string
	log    []simEntry
	next   uint32
	hook   func(to uint32, e simEntry) []simEntry
	// Dialogs: each member's Group, made by dialog, pins the others' keys from pins on their join.
	dialog func(id uint32) *Group
	pins   map[uint32]Verifier
}

type simEntry struct {
	from     uint32
	presence string
	member   uint32
	frame    Frame
}

func newSimRelay(t *testing.T) *simRelay {
	s := make([]byte, 32)
	rand.Read(s)
	return &simRelay{t: t, room: "GoGroupRoomAAAAAAAAAAA", secret: s, groups: map[uint32]*Group{}, notes: map[uint32][]Note{}, texts: map[uint32][]string{}, next: 1}
}

func (s *simRelay) take(id uint32, r Result, err error) {
	s.t.Helper()
	if err != nil {
		s.t.Fatal(err)
	}
	for _, f := range r.Send {
		s.log = append(s.log, simEntry{from: id, frame: f})
	}
	s.notes[id] = append(s.notes[id], r.Notes...)
	for _, m := range r.Messages {
		s.texts[id] = append(s.texts[id], string(m.Plaintext))
	}
}

func (s *simRelay) join() uint32 {
	id := s.next
	s.next++
	seed := make([]byte, 32)
	rand.Read(seed)
	g := NewGroup(s.room, id, NewEd25519Identity(seed), s.secret, nil)
	if s.dialog != nil {
		g = s.dialog(id)
	}
	var others []uint32
	for m := range s.groups {
		others = append(others, m)
	}
	s.groups[id] = g
	s.log = append(s.log, simEntry{presence: "join", member: id})
	r, err := g.SetPresent(others)
	s.take(id, r, err)
	for _, m := range others {
		if s.pins != nil {
			r, err = g.SetPeer(m, s.pins[m])
			s.take(id, r, err)
		}
	}
	if len(others) > 0 {
		r, err = g.Hello()
		s.take(id, r, err)
	}
	s.run()
	return id
}

func (s *simRelay) leave(id uint32) {
	delete(s.groups, id)
	s.log = append(s.log, simEntry{presence: "leave", member: id})
	s.run()
}

func (s *simRelay) run() {
	for len(s.log) > 0 {
		e := s.log[0]
		s.log = s.log[1:]
		ids := make([]uint32, 0, len(s.groups))
		for id := range s.groups {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		for _, id := range ids {
			if id == e.from || id == e.member {
				continue
			}
			ds := []simEntry{e}
			if s.hook != nil {
				ds = s.hook(id, e)
			}
			for _, d := range ds {
				var r Result
				var err error
				if d.presence == "join" && s.pins != nil {
					r, err = s.groups[id].SetPeer(d.member, s.pins[d.member])
					s.take(id, r, err)
				}
				if d.presence != "" {
					r, err = s.groups[id].OnPresence(d.presence, d.member)
				} else {
					r, err = s.groups[id].OnFrame(d.from, d.frame.Kind, d.frame.Body)
				}
				s.take(id, r, err)
			}
		}
	}
}

func (s *simRelay) say(id uint32, text string) {
	s.t.Helper()
	f, err := s.groups[id].Seal([]byte(text))
	if err != nil {
		s.t.Fatal(err)
	}
	s.log = append(s.log, simEntry{from: id, frame: f})
	s.run()
}

func (s *simRelay) problems(id uint32) []string {
	var out []string
	for _, n := range s.notes[id] {
		if n.Class != "identity" && n.Class != "epoch" {
			out = append(out, n.Class)
		}
	}
	return out
}

func TestGroupEpochsFollowMembership(t *testing.T) {
	s := newSimRelay(t)
	a, b := s.join(), s.join()
	if s.groups[a].Epoch() != 1 || s.groups[b].Epoch() != 1 {
		t.Fatalf("epochs %d, %d; want 1, 1", s.groups[a].Epoch(), s.groups[b].Epoch())
	}
	s.say(a, "hi b")
	s.say(b, "hi a")
	c := s.join()
	for _, id := range []uint32{a, b, c} {
		if s.groups[id].Epoch() != 2 {
			t.Fatalf("member %d at epoch %d, want 2", id, s.groups[id].Epoch())
		}
	}
	s.say(a, "welcome")
	if got := s.texts[c]; !slices.Equal(got, []string{"welcome"}) {
		t.Fatalf("newcomer read %q", got)
	}
	s.leave(b)
	if s.groups[a].Epoch() != 3 || !slices.Equal(s.groups[c].members, []uint32{a, c}) {
		t.Fatalf("after a leave: epoch %d, members %v", s.groups[a].Epoch(), s.groups[c].members)
	}
	s.say(c, "b is gone")
	if got := s.texts[a]; got[len(got)-1] != "b is gone" {
		t.Fatalf("a read %q", got)
	}
	for _, id := range []uint32{a, c} {
		if p := s.problems(id); len(p) > 0 {
			t.Fatalf("member %d noted %v", id, p)
		}
	}
}

func TestGroupCatchesTheRelay(t *testing.T) {
	t.Run("replayed commit", func(t *testing.T) {
		s := newSimRelay(t)
		var first *simEntry
		s.hook = func(to uint32, e simEntry) []simEntry {
			if e.frame.Kind == KindCommit && first == nil {
				first = &e
			}
			return []simEntry{e}
		}
		s.join()
		b := s.join()
		s.join()
		s.hook = nil
		s.log = append(s.log, *first)
		s.run()
		if !slices.Contains(s.problems(b), "old-epoch") || s.groups[b].Epoch() != 2 {
			t.Fatalf("b noted %v at epoch %d", s.problems(b), s.groups[b].Epoch())
		}
	})
	t.Run("commit naming another committer than its sender", func(t *testing.T) {
		s := newSimRelay(t)
		a, b := s.join(), s.join()
		ga := s.groups[a]
		c, err := NewCommit(ga.id, CommitParams{Ctx: ga.ctx, Epoch: 2, Prev: ga.history.ID, Committer: b,
			Secret: seed("x", 32), EphemeralSeed: seed("y", 32), Encapsulate: Encapsulate})
		if err != nil {
			t.Fatal(err)
		}
		s.log = append(s.log, simEntry{from: a, frame: Frame{KindCommit, c.Bytes()}})
		s.run()
		if !slices.Equal(s.problems(b), []string{"forged"}) || s.groups[b].Epoch() != 1 {
			t.Fatalf("b noted %v at epoch %d", s.problems(b), s.groups[b].Epoch())
		}
	})
	t.Run("swapped key package", func(t *testing.T) {
		s := newSimRelay(t)
		a := s.join()
		s.hook = func(to uint32, e simEntry) []simEntry {
			if e.frame.Kind == KindKeyPackage {
				b := slices.Clone(e.frame.Body)
				b[20] ^= 1
				e.frame.Body = b
			}
			return []simEntry{e}
		}
		s.join()
		if !slices.Contains(s.problems(a), "forged") || s.groups[a].Epoch() != 0 {
			t.Fatalf("a noted %v at epoch %d", s.problems(a), s.groups[a].Epoch())
		}
	})
	t.Run("dropped, reordered, replayed", func(t *testing.T) {
		s := newSimRelay(t)
		a, b := s.join(), s.join()
		var held []simEntry
		s.hook = func(to uint32, e simEntry) []simEntry {
			if e.frame.Kind != KindMessage {
				return []simEntry{e}
			}
			held = append(held, e)
			switch len(held) {
			case 1, 3:
				return nil
			case 2:
				return []simEntry{e, e}
			}
			return []simEntry{e, held[0]}
		}
		for _, m := range []string{"one", "two", "three", "four"} {
			s.say(a, m)
		}
		if got := s.texts[b]; !slices.Equal(got, []string{"two", "four", "one"}) {
			t.Fatalf("b read %q", got)
		}
		if got := s.problems(b); !slices.Equal(got, []string{"missing", "replayed", "missing"}) {
			t.Fatalf("b noted %v", got)
		}
	})
}

func TestGroupKeyChangeBlocksUntilTrusted(t *testing.T) {
	s := newSimRelay(t)
	a, b := s.join(), s.join()
	seed := make([]byte, 32)
	rand.Read(seed)
	gb := s.groups[b]
	id := NewEd25519Identity(seed)
	gb.id, gb.idPub, gb.own, gb.ownPriv = id, id.Public(), nil, nil // b came back with new keys in its seat
	r, err := gb.Hello()
	s.take(b, r, err)
	s.run()
	if _, err := s.groups[a].Seal([]byte("x")); err == nil {
		t.Fatal("a sealed a message while b's identity change waits")
	}
	r, err = s.groups[a].Trust(b)
	s.take(a, r, err)
	s.run()
	if s.groups[a].Epoch() != 2 || gb.Epoch() != 2 {
		t.Fatalf("after trust: epochs %d, %d; want 2, 2", s.groups[a].Epoch(), gb.Epoch())
	}
	s.say(a, "after the change")
	if got := s.texts[b]; got[len(got)-1] != "after the change" {
		t.Fatalf("b read %q", got)
	}
}

// A member back in its old seat without its state (same identity, no keys) gets a new epoch; when it is
// the oldest member, the next oldest commits instead of it.
func TestGroupRestartedMemberGetsNewEpoch(t *testing.T) {
	for _, oldest := range []bool{false, true} {
		t.Run(fmt.Sprintf("oldest=%v", oldest), func(t *testing.T) {
			s := newSimRelay(t)
			a, b := s.join(), s.join()
			s.say(a, "before the restart")
			back, other := b, a
			if oldest {
				back, other = a, b
			}
			g := NewGroup(s.room, back, s.groups[back].id.(Ed25519Identity), s.secret, nil)
			g.Restarted = true
			s.groups[back] = g
			r, err := g.SetPresent([]uint32{other})
			s.take(back, r, err)
			r, err = g.Hello()
			s.take(back, r, err)
			s.run()
			if s.groups[other].Epoch() != 2 || g.Epoch() != 2 {
				t.Fatalf("epochs %d, %d; want 2, 2 (noted %v)", s.groups[other].Epoch(), g.Epoch(), s.problems(other))
			}
			s.say(other, "after the restart")
			s.say(back, "back")
			if got := s.texts[back]; got[len(got)-1] != "after the restart" {
				t.Fatalf("the restarted member read %q", got)
			}
			if got := s.texts[other]; got[len(got)-1] != "back" {
				t.Fatalf("the other member read %q", got)
			}
		})
	}
}

func TestGroupDialogWithOpenPGPIdentities(t *testing.T) {
	s := newSimRelay(t)
	s.pins = map[uint32]Verifier{}
	keys := map[uint32]*openpgp.Entity{}
	s.dialog = func(id uint32) *Group {
		e, err := openpgp.NewEntity(fmt.Sprintf("user%d", id), "", "", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
		if err != nil {
			t.Fatal(err)
		}
		keys[id], s.pins[id] = e, PGPPublic{e}
		return NewDialogGroup(s.room, id, PGPIdentity{e})
	}
	a, b := s.join(), s.join()
	if s.groups[a].Epoch() != 1 || s.groups[b].Epoch() != 1 {
		t.Fatalf("epochs %d, %d; want 1, 1", s.groups[a].Epoch(), s.groups[b].Epoch())
	}
	s.say(a, "signed with openpgp")
	s.say(b, "and back")
	if !slices.Equal(s.texts[b], []string{"signed with openpgp"}) || !slices.Equal(s.texts[a], []string{"and back"}) {
		t.Fatalf("a read %q, b read %q", s.texts[a], s.texts[b])
	}
	// A tab of b's reloaded into its seat: same account key, no epoch keys.
	g := NewDialogGroup(s.room, b, PGPIdentity{keys[b]})
	s.groups[b] = g
	r, err := g.SetPresent([]uint32{a})
	s.take(b, r, err)
	r, err = g.SetPeer(a, s.pins[a])
	s.take(b, r, err)
	r, err = g.Hello()
	s.take(b, r, err)
	s.run()
	s.say(a, "after the reload")
	if got := s.texts[b]; got[len(got)-1] != "after the reload" || g.Epoch() != 2 {
		t.Fatalf("b read %q at epoch %d", got, g.Epoch())
	}
	if p := s.problems(a); len(p) > 0 {
		t.Fatalf("a noted %v", p)
	}
}

// Both members of a pair back in their seats at once, without their state: nobody holds an epoch, so the
// lower member commits from nothing instead of both waiting for the other (docs/e2e.md §6.2).
func TestGroupBothRestarted(t *testing.T) {
	for _, dialog := range []bool{false, true} {
		t.Run(fmt.Sprintf("dialog=%v", dialog), func(t *testing.T) {
			s := newSimRelay(t)
			fresh := func(id uint32) *Group {
				g := NewGroup(s.room, id, s.groups[id].id.(Ed25519Identity), s.secret, nil)
				g.Restarted = true
				return g
			}
			if dialog {
				s.pins = map[uint32]Verifier{}
				keys := map[uint32]*openpgp.Entity{}
				s.dialog = func(id uint32) *Group {
					e, err := openpgp.NewEntity(fmt.Sprintf("user%d", id), "", "", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
					if err != nil {
						t.Fatal(err)
					}
					keys[id], s.pins[id] = e, PGPPublic{e}
					return NewDialogGroup(s.room, id, PGPIdentity{e})
				}
				fresh = func(id uint32) *Group {
					g := NewDialogGroup(s.room, id, PGPIdentity{keys[id]})
					g.Restarted = true
					return g
				}
			}
			a, b := s.join(), s.join()
			s.say(a, "before the reloads")
			ga, gb := fresh(a), fresh(b)
			s.groups[a], s.groups[b] = ga, gb
			for _, x := range []struct {
				id, other uint32
				g         *Group
			}{{a, b, ga}, {b, a, gb}} {
				r, err := x.g.SetPresent([]uint32{x.other})
				s.take(x.id, r, err)
				if dialog {
					r, err = x.g.SetPeer(x.other, s.pins[x.other])
					s.take(x.id, r, err)
				}
				r, err = x.g.Hello()
				s.take(x.id, r, err)
			}
			s.run()
			if ga.Epoch() == 0 || ga.Epoch() != gb.Epoch() {
				t.Fatalf("epochs %d, %d; want one shared epoch (noted %v, %v)", ga.Epoch(), gb.Epoch(), s.problems(a), s.problems(b))
			}
			s.say(a, "both back")
			s.say(b, "yes")
			if got := s.texts[b]; got[len(got)-1] != "both back" {
				t.Fatalf("b read %q", got)
			}
			if got := s.texts[a]; got[len(got)-1] != "yes" {
				t.Fatalf("a read %q", got)
			}
			if p := append(s.problems(a), s.problems(b)...); len(p) > 0 {
				t.Fatalf("noted %v", p)
			}
		})
	}
}

// TestGroupHoldRestarted: with HoldRestarted (dialogs), a member whose epoch holds a member that restarted
// seals nothing until the commit that takes that member in arrives; without it (anonymous rooms) it could.
func TestGroupHoldRestarted(t *testing.T) {
	s := newSimRelay(t)
	a, b, c := s.join(), s.join(), s.join()
	gb := s.groups[b]
	gb.HoldRestarted = true
	// c restarts: its restart key package reaches b; a (the committer) commits, and that commit and all after
	// it are held back from b, to be delivered later in the relay's order.
	gc := NewGroup(s.room, c, s.groups[c].id.(Ed25519Identity), s.secret, nil)
	gc.Restarted = true
	s.groups[c] = gc
	var held []simEntry
	s.hook = func(to uint32, e simEntry) []simEntry {
		if to == b && (len(held) > 0 || e.frame.Kind == KindCommit) {
			held = append(held, e)
			return nil
		}
		return []simEntry{e}
	}
	r, err := gc.SetPresent([]uint32{a, b})
	s.take(c, r, err)
	r, err = gc.Hello()
	s.take(c, r, err)
	s.run()
	if len(held) == 0 || held[0].frame.Kind != KindCommit {
		t.Fatal("no commit was held back from b")
	}
	if gb.Epoch() != 2 || gc.Epoch() != 3 {
		t.Fatalf("epochs: b %d, c %d; want 2 and 3", gb.Epoch(), gc.Epoch())
	}
	if gb.CanSend() {
		t.Fatal("b may seal in an epoch whose member c cannot read it")
	}
	if _, err := gb.Seal([]byte("into the old epoch")); err == nil {
		t.Fatal("b sealed in the old epoch")
	}
	gb.HoldRestarted = false
	if !gb.CanSend() {
		t.Fatal("without the hold, b cannot send either: the test cannot tell")
	}
	gb.HoldRestarted = true
	s.hook = nil
	for _, e := range held {
		var r Result
		var err error
		if e.presence != "" {
			r, err = gb.OnPresence(e.presence, e.member)
		} else {
			r, err = gb.OnFrame(e.from, e.frame.Kind, e.frame.Body)
		}
		s.take(b, r, err)
	}
	s.run()
	if gb.Epoch() != 3 || !gb.CanSend() {
		t.Fatalf("after the commit: b in epoch %d, can send %v", gb.Epoch(), gb.CanSend())
	}
	s.say(b, "after the new epoch")
	if got := s.texts[c]; len(got) == 0 || got[len(got)-1] != "after the new epoch" {
		t.Fatalf("c read %q", got)
	}
	for _, id := range []uint32{a, b, c} {
		if p := s.problems(id); len(p) > 0 {
			t.Fatalf("member %d noted %v", id, p)
		}
	}
}
