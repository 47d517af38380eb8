package e2e

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// genMailItem: a mailbox item from member 1 to user bob through bob's prekey 5, delivered twice; the
// second is refused because the prekey's private half was deleted when the first opened.
func genMailItem(t *testing.T) {
	w := newVec("mail-item", "replayed", "member 1 leaves a message for user bob, who is away, sealed with bob's prekey 5; the relay delivers it again")
	w.add("user", "bob")
	ctx := PrekeyCtx("bob")
	ms := map[uint32]*genMember{}
	for _, id := range []uint32{1, 2} {
		m := &genMember{id: id, idSeed: seed(fmt.Sprintf("mail id %d", id), 32), xSeed: seed(fmt.Sprintf("mail x %d", id), 32), kSeed: seed(fmt.Sprintf("mail kem %d", id), 64)}
		m.sig = NewEd25519Identity(m.idSeed)
		m.kp, m.priv, _ = NewKeyPackage(m.sig, "prekey", ctx, id, 5, m.xSeed, m.kSeed)
		w.add("member", "%d %x %x %x 5", id, m.idSeed, m.xSeed, m.kSeed)
		ms[id] = m
	}
	c := genCommit(t, w, "mail", ctx, 1, [HashSize]byte{}, ms[1], [HashSize]byte{}, ms[2].kp)
	pt := []byte("\x00\x19{\"k\":\"msg\",\"id\":\"m1\"}hello bob, from the mailbox")
	e := NewEpoch(1, c.ID(ctx), seed("mail secret", 32), []uint32{1, 2})
	msg, err := e.Seal(1, pt)
	if err != nil {
		t.Fatal(err)
	}
	item := append(append([]byte{byte(len(c.Bytes()) >> 8), byte(len(c.Bytes()))}, c.Bytes()...), msg...)
	w.add("plaintext", "%x", pt)
	w.add("item", "%x", item)
	w.add("item", "%x", item)
	w.write(t, "go-mail-item-replayed.txt")
}

// runMailItem rebuilds the first item from the inputs and compares bytes, then opens the items in order as
// the prekey's owner (member 2), deleting the prekey on first use; the last gives the expected result.
func runMailItem(t *testing.T, v vector) {
	user := v.one["user"]
	ms := members(t, v, "prekey", PrekeyCtx(user))
	sender, owner := ms[MailSender], ms[PrekeyOwner]
	pt := unhex(t, v.one["plaintext"])
	items := v.many["item"]
	got, err := SealMailItem(sender.sig, user, owner.kp, pt, MailSealParams{Secret: unhex(t, v.one["secret"]),
		EphemeralSeed: unhex(t, v.one["ephemeral"]), Encapsulate: replay(t, v, ms)})
	if err != nil {
		t.Fatal(err)
	}
	checkBytes(t, "item", got, unhex(t, items[0]))
	for i, hx := range items {
		m, err := ParseMailItem(unhex(t, hx), user, sender.sig.Public())
		var out []byte
		if err == nil {
			if m.Prekey != owner.kp.Hash() {
				t.Fatalf("item %d names another prekey", i)
			}
			out, err = m.Open(user, owner.kp, owner.priv)
		}
		want := "ok"
		if i == len(items)-1 {
			want = v.one["expect"]
		}
		checkClass(t, fmt.Sprintf("item %d", i), err, want)
		if err == nil {
			checkBytes(t, "plaintext", out, pt)
		}
	}
	if !owner.priv.Wiped() {
		t.Fatal("the prekey's private half was kept after use")
	}
	// The terminal's path: an owner that keeps only the prekey's seeds (and its hash) opens the first item
	// with the private half rebuilt from them (PrekeyPrivate, OpenHeld), and then not again.
	var xSeed, kemSeed []byte
	for _, l := range v.many["member"] {
		if f := strings.Fields(l); num(t, f[0]) == PrekeyOwner {
			xSeed, kemSeed = unhex(t, f[2]), unhex(t, f[3])
		}
	}
	priv, err := PrekeyPrivate(xSeed, kemSeed)
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseMailItem(unhex(t, items[0]), user, sender.sig.Public())
	if err != nil {
		t.Fatal(err)
	}
	out, err := m.OpenHeld(user, priv)
	if err != nil {
		t.Fatalf("OpenHeld: %v", err)
	}
	checkBytes(t, "plaintext (OpenHeld)", out, pt)
	if _, err := m.OpenHeld(user, priv); !errors.Is(err, ErrReplayed) {
		t.Fatalf("OpenHeld a second time: %v, want replayed", err)
	}
}

// TestMailItemRefuses: an item signed by another identity, for another user, or with its message altered or
// numbered other than 0 is refused; a refused commit keeps the prekey, an item whose commit opened does not.
func TestMailItemRefuses(t *testing.T) {
	mk := func() (*member, *member) {
		s := &member{id: 1, sig: NewEd25519Identity(random(32))}
		o := &member{id: 2, sig: NewEd25519Identity(random(32))}
		var err error
		if o.kp, o.priv, err = NewKeyPackage(o.sig, "prekey", PrekeyCtx("bob"), 2, 9, random(32), random(64)); err != nil {
			t.Fatal(err)
		}
		return s, o
	}
	for name, tc := range map[string]struct {
		alter      func(item []byte) []byte
		user       string
		otherKey   bool
		want       error
		keepPrekey bool
	}{
		"another signer":  {otherKey: true, want: ErrForged, keepPrekey: true},
		"another user":    {user: "carol", want: ErrForged, keepPrekey: true},
		"message altered": {alter: func(b []byte) []byte { b[len(b)-1] ^= 1; return b }, want: ErrForged},
		"truncated":       {alter: func(b []byte) []byte { return b[:100] }, want: ErrMalformed, keepPrekey: true},
	} {
		t.Run(name, func(t *testing.T) {
			s, o := mk()
			item, err := SealMailItem(s.sig, "bob", o.kp, []byte("hi"), MailSealParams{})
			if err != nil {
				t.Fatal(err)
			}
			if tc.alter != nil {
				item = tc.alter(item)
			}
			v := s.sig.Public()
			if tc.otherKey {
				v = NewEd25519Identity(random(32)).Public()
			}
			user := "bob"
			if tc.user != "" {
				user = tc.user
			}
			m, err := ParseMailItem(item, user, v)
			if err == nil {
				_, err = m.Open(user, o.kp, o.priv)
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if o.priv.Wiped() == tc.keepPrekey {
				t.Fatalf("prekey wiped: %v, want %v", o.priv.Wiped(), !tc.keepPrekey)
			}
		})
	}
}
