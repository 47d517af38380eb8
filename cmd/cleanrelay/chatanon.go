package main

import (
	"crypto/rand"
	"fmt"

	"github.com/cleanrelay/cleanrelay/relay/client/e2e"
)

// chatCrypto is a room's end-to-end protocol as a session sees it: v2 in anonymous rooms (anonCrypto, below)
// and in dialogs (dialogCrypto, chatdialog.go). Its methods run on the session's goroutine; they send
// through s.send, tell the user through s.emit and hand plaintexts to s.onPlain. An error they return ends
// the session; what the user should merely know is an event.
type chatCrypto interface {
	enter(present []uint32) error   // the room was entered; present are the other members in it
	resumed(present []uint32) error // a resume's reply named these other members
	presence(event string, member uint32) error
	frame(from uint32, kind byte, body []byte) error
	seal(plain []byte) error
	canSend() bool
	blocked() bool // a changed key waits for the user's trust
	trust(member uint32) error
	wipe()
}

// anonCrypto is protocol v2 (docs/e2e.md) through e2e.Group, with a one-time Ed25519 identity bound to the
// invite secret.
type anonCrypto struct {
	s     *chatSession
	g     *e2e.Group
	shown map[uint32]string // member → safety code last told
}

func newAnonCrypto(s *chatSession, room string, member uint32, secret []byte) *anonCrypto {
	seed := make([]byte, 32)
	rand.Read(seed)
	defer clear(seed)
	return &anonCrypto{s: s, g: e2e.NewGroup(room, member, e2e.NewEd25519Identity(seed), secret, nil), shown: map[uint32]string{}}
}

func (a *anonCrypto) enter(present []uint32) error {
	res, err := a.g.SetPresent(present)
	if err == nil && len(present) > 0 {
		var h e2e.Result
		h, err = a.g.Hello()
		res.Send = append(res.Send, h.Send...)
	}
	if err != nil {
		return err
	}
	return a.apply(res, 0)
}

func (a *anonCrypto) resumed(present []uint32) error {
	res, err := a.g.SetPresent(present)
	if err != nil {
		return err
	}
	return a.apply(res, 0)
}

func (a *anonCrypto) presence(event string, member uint32) error {
	if event == "leave" {
		delete(a.shown, member)
	}
	res, err := a.g.OnPresence(event, member)
	if err != nil {
		return err
	}
	return a.apply(res, 0)
}

func (a *anonCrypto) frame(from uint32, kind byte, body []byte) error {
	if kind == 0x01 || kind == 0x02 {
		a.s.emit(chatEvent{Type: "problem", Member: from, Code: "version", Message: fmt.Sprintf("member %d runs an older client that cannot read this room: they should reload the page", from)})
		return nil
	}
	res, err := a.g.OnFrame(from, kind, body)
	if err != nil {
		return err
	}
	return a.apply(res, kind)
}

func (a *anonCrypto) seal(plain []byte) error {
	f, err := a.g.Seal(plain)
	if err != nil {
		return err
	}
	return a.s.send(f.Kind, f.Body)
}

func (a *anonCrypto) canSend() bool { return a.g.CanSend() }

func (a *anonCrypto) blocked() bool {
	for m := range a.s.present {
		if _, pending := a.g.PeerIdentity(m); pending != nil {
			return true
		}
	}
	return false
}

func (a *anonCrypto) trust(member uint32) error {
	// Our identity and key package go out again first: whoever holds the new key may be a client that never
	// saw them (a repeat is ignored by one that did).
	res, err := a.g.Hello()
	if err != nil {
		return err
	}
	tr, err := a.g.Trust(member)
	if err != nil {
		a.s.emit(chatEvent{Type: "error", Message: err.Error()})
		return nil
	}
	res.Send = append(res.Send, tr.Send...)
	res.Notes = append(res.Notes, tr.Notes...)
	delete(a.shown, member)
	return a.apply(res, 0)
}

func (a *anonCrypto) wipe() { a.g.Wipe() }

// apply sends a Group result's frames, tells its notes and handles its plaintexts.
func (a *anonCrypto) apply(r e2e.Result, kind byte) error {
	s := a.s
	for _, f := range r.Send {
		if err := s.send(f.Kind, f.Body); err != nil {
			return err
		}
	}
	for _, n := range r.Notes {
		switch n.Class {
		case "identity":
			pinned, pending := a.g.PeerIdentity(n.Member)
			if n.Text == "changed" {
				s.emit(chatEvent{Type: "keychange", Member: n.Member, Safety: safetyCode(a.g.Identity(), pinned), Offered: safetyCode(a.g.Identity(), pending),
					Message: fmt.Sprintf("member %d announced a different key: nothing is sent until you compare the new safety code and trust it", n.Member)})
			}
		case "epoch":
			a.tellSafety()
		default:
			if n.Class == "forged" && kind == e2e.KindIdentity && len(a.shown) == 0 && a.g.Epoch() == 0 {
				pinned, _ := a.g.PeerIdentity(n.Member)
				if pinned == nil {
					return &chatError{"the invite link's secret does not fit this room (member " + fmt.Sprint(n.Member) + "'s key announcement did not open with it): check the link"}
				}
			}
			s.emit(chatEvent{Type: "problem", Member: n.Member, Code: n.Class, Message: n.Text})
		}
	}
	for _, m := range r.Messages {
		s.onPlain(m.From, m.Plaintext, true)
	}
	s.flushQueued()
	return nil
}

// tellSafety shows each member of our epoch once with its safety code (again after a key change).
func (a *anonCrypto) tellSafety() {
	if !a.g.CanSend() {
		return
	}
	for _, m := range a.g.Members() {
		pinned, _ := a.g.PeerIdentity(m)
		if m == a.s.member || pinned == nil {
			continue
		}
		code := safetyCode(a.g.Identity(), pinned)
		if a.shown[m] != code {
			a.shown[m] = code
			a.s.emit(chatEvent{Type: "safety", Member: m, Safety: code})
		}
	}
	a.s.emit(chatEvent{Type: "state", Online: boolp(a.s.events != nil), Ready: boolp(true), Members: a.g.Members()})
}
