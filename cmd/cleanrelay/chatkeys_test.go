package main

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/cleanrelay/cleanrelay/relay/client"
	"github.com/cleanrelay/cleanrelay/relay/client/e2e"
)

// goMember is a member of a room run in the test with relay/client and e2e.Group: it can announce another
// identity with the invite secret, which only a holder of the link can do.
type goMember struct {
	t    *testing.T
	c    *client.Conn
	room *client.Room
	g    *e2e.Group
	msgs chan string
}

func (m *goMember) apply(r e2e.Result, err error) {
	if err != nil {
		m.t.Error(err) // Error, not Fatal: this runs on the pump's goroutine too
		return
	}
	for _, f := range r.Send {
		p, err := padFrame(f.Kind, f.Body)
		if err != nil {
			m.t.Error(err)
			return
		}
		m.c.Send(m.room.Ch, p)
	}
	for _, n := range r.Notes {
		m.t.Logf("go member note: %+v", n)
	}
	for _, msg := range r.Messages {
		if h, _, err := decodeEnvelope(msg.Plaintext); err == nil && h.K == "msg" {
			m.msgs <- h.Text
		}
	}
}

// pump feeds relay events to the current group until the connection ends.
func (m *goMember) pump(groups chan *e2e.Group) {
	for ev := range m.c.Events() {
		select {
		case g := <-groups:
			m.g = g
		default:
		}
		switch ev.Kind {
		case client.KindFrame:
			kind, body, err := unpadFrame(ev.Payload)
			if err == nil {
				r, err := m.g.OnFrame(ev.From, kind, body)
				m.apply(r, err)
			}
		case client.KindPresence:
			m.apply(m.g.OnPresence(ev.Event, ev.Member))
		}
	}
}

func newIdentity() e2e.Ed25519Identity {
	seed := make([]byte, 32)
	rand.Read(seed)
	return e2e.NewEd25519Identity(seed)
}

// TestChatKeyChangeBlocks: a member announces a different identity (made with the invite secret); the terminal
// client reports the key change with the new safety code, refuses to send, and after trust talks to the new key.
func TestChatKeyChangeBlocks(t *testing.T) {
	_, url, _ := startServe(t, "--local-only", "--listen", "127.0.0.1:0")
	term := startChat(t, "--create", url)
	inv, err := parseInviteLink(term.wait(t, "invite", nil).Link)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := client.Dial(ctx, "ws://"+inv.base.Host+"/ws?anonymous=1", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	room, err := c.Join(ctx, inv.room, inv.cap)
	if err != nil {
		t.Fatal(err)
	}
	idA, idB := newIdentity(), newIdentity()
	m := &goMember{t: t, c: c, room: room, g: e2e.NewGroup(room.ID, room.Member, idA, inv.secret, nil), msgs: make(chan string, 16)}
	groups := make(chan *e2e.Group, 1)
	r, err := m.g.SetPresent([]uint32{1})
	m.apply(r, err)
	m.apply(m.g.Hello())
	go m.pump(groups)

	first := term.wait(t, "safety", nil)
	if first.Member != 2 || len(first.Safety) != 35 {
		t.Fatalf("safety %+v", first)
	}
	term.send(t, chatCommand{Cmd: "send", Text: "to the first key"})
	if got := <-m.msgs; got != "to the first key" {
		t.Fatalf("got %q", got)
	}

	// The same member now announces identity B, as a reloaded browser tab or an attacker with the link would.
	gB := e2e.NewGroup(room.ID, room.Member, idB, inv.secret, nil)
	r, err = gB.SetPresent([]uint32{1})
	if err != nil {
		t.Fatal(err)
	}
	h, err := gB.Hello()
	if err != nil {
		t.Fatal(err)
	}
	groups <- gB
	m.apply(r, nil)
	m.apply(h, nil)
	kc := term.wait(t, "keychange", nil)
	if kc.Member != 2 || kc.Safety != first.Safety || kc.Offered == first.Safety || len(kc.Offered) != 35 {
		t.Fatalf("keychange %+v (before: %s)", kc, first.Safety)
	}
	term.send(t, chatCommand{Cmd: "send", Text: "must not go out"})
	e := <-term.events
	for e.Type != "error" {
		if e.Type == "sent" {
			t.Fatalf("sent while a key change waits: %+v", e)
		}
		e = <-term.events
	}
	term.send(t, chatCommand{Cmd: "trust", Member: 2})
	if s := term.wait(t, "safety", nil); s.Safety != kc.Offered {
		t.Fatalf("after trust, safety %s, want the offered %s", s.Safety, kc.Offered)
	}
	term.send(t, chatCommand{Cmd: "send", Text: "to the new key"})
	select {
	case got := <-m.msgs:
		if got != "to the new key" {
			t.Fatalf("the new key read %q (the blocked message went out?)", got)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the new key never read the message sent after trust")
	}
}
