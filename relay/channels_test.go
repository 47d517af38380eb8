package relay

import (
	"encoding/json"
	"log/slog"
	"testing"
	"testing/synctest"

	"github.com/cleanrelay/cleanrelay/relay/internal/rooms"
	"github.com/cleanrelay/cleanrelay/relay/internal/ws"
)

// socketless returns a connection of srv with no socket and no writer: the test plays the writer.
func socketless(srv *Server) *conn {
	c := newConn(srv, nil, Identity{})
	c.writing.Store(true)
	return c
}

// replies takes the control messages queued for c.
func replies(t testing.TB, c *conn) []map[string]any {
	t.Helper()
	c.mu.Lock()
	ctrl := c.ctrl
	c.ctrl = nil
	c.mu.Unlock()
	var out []map[string]any
	for _, msg := range ctrl {
		var m map[string]any
		if err := json.Unmarshal(msg, &m); err != nil {
			t.Fatalf("malformed control message %q", msg)
		}
		out = append(out, m)
	}
	return out
}

// writeOne plays c's writer for one item of channel ch and returns it formatted, or nil.
func writeOne(c *conn, ch byte) []byte {
	c.mu.Lock()
	m := c.find(ch)
	c.mu.Unlock()
	out := make([]byte, deliverHeaderLen+c.srv.cfg.MaxFrame)
	msg, _ := formatItem(out, ch, m.Next(c, ch, out[deliverHeaderLen:]))
	return msg
}

// TestOwnFramesWaitForOwnWriter: a member whose own writer is behind (its client reads slowly) while it keeps
// sending must not push out of the room buffer the entries it has not been sent yet: its reader waits for its
// writer, and it loses nothing.
func TestOwnFramesWaitForOwnWriter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv, err := New(Config{RoomBuffer: 16}, nil, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		a, b := socketless(srv), socketless(srv)
		a.handleControl([]byte(`{"t":"create"}`))
		created := replies(t, a)[0]
		b.handleControl([]byte(`{"t":"join","room":"` + created["room"].(string) + `","cap":"` + created["cap"].(string) + `"}`))
		replies(t, b)
		if msg := writeOne(a, 1); msg == nil { // b's join
			t.Fatal("a was not sent b's join")
		}
		a.handleControl([]byte(`{"t":"ack","ch":1,"seq":2}`))
		frame := func(s string) *ws.Payload { return ws.PayloadWithHead([]byte("\x01"+s), sendHeaderLen) }
		b.handleFrame(frame("from b")) // a's writer has not run: a has not been sent it
		const n = 20                   // more than the buffer holds
		done := make(chan struct{})
		go func() {
			defer close(done)
			for range n {
				a.handleFrame(frame("from a"))
			}
		}()
		synctest.Wait()
		select {
		case <-done:
			t.Fatal("a sent a whole buffer past the frame it had not been sent, without waiting for its writer")
		default:
		}
		if srv.stats.ownWriterWaits.Load() != 1 {
			t.Fatalf("%d waits counted, want 1", srv.stats.ownWriterWaits.Load())
		}
		if msg := writeOne(a, 1); len(msg) != deliverHeaderLen+6 || string(msg[deliverHeaderLen:]) != "from b" {
			t.Fatalf("a's writer wrote %q, want b's frame", msg)
		}
		<-done
		if s := srv.Stats(); s.Lost != 0 || s.FramesIn != n+1 || len(replies(t, a)) != 0 {
			t.Fatalf("%d lost, %d frames in, want 0 and %d, and no error", s.Lost, s.FramesIn, n+1)
		}
	})
}

// TestClosedWhileTaking: a room closed for a membership while the request that takes it is still under way is
// told to the client after the reply that names the channel, and the channel is free again.
func TestClosedWhileTaking(t *testing.T) {
	srv, err := New(Config{}, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	a, b := socketless(srv), socketless(srv)
	a.handleControl([]byte(`{"t":"create"}`))
	created := replies(t, a)[0]
	ch, perr := b.reserve()
	if perr != nil {
		t.Fatal(perr)
	}
	var room, capability wireSecret
	json.Unmarshal([]byte(`"`+created["room"].(string)+`"`), &room)
	json.Unmarshal([]byte(`"`+created["cap"].(string)+`"`), &capability)
	id, _ := room.roomID()
	cp, _ := capability.secret()
	var j rooms.Joined
	if err := srv.table.Join(rooms.Seat{Conn: b, Ch: ch}, id, cp, &j); err != nil {
		t.Fatal(err)
	}
	a.mu.Lock()
	ma := a.find(1)
	a.mu.Unlock()
	srv.table.Burn(a, ma) // before b's reply is queued
	b.attach(ch, &j, joinedReply(0, ch, &j, false))
	got := replies(t, b)
	if len(got) != 2 || got[0]["t"] != "joined" || got[1]["t"] != "closed" || got[1]["reason"] != "burned" {
		t.Fatalf("b got %v, want joined then closed burned", got)
	}
	if ms := b.members(); len(ms) != 0 || b.index(ch) >= 0 {
		t.Fatalf("b still holds %d memberships, channel %d reserved", len(ms), ch)
	}
}

// TestResumeOnTheSameConnection: a connection that resumes its own membership gets the reply on the new
// channel, then closed moved for the old one.
func TestResumeOnTheSameConnection(t *testing.T) {
	srv, err := New(Config{}, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	a := socketless(srv)
	a.handleControl([]byte(`{"t":"create"}`))
	created := replies(t, a)[0]
	a.handleControl([]byte(`{"t":"resume","resume":"` + created["resume"].(string) + `","last":1}`))
	got := replies(t, a)
	if len(got) != 2 || got[0]["t"] != "resumed" || got[0]["ch"] != 2.0 || got[1]["t"] != "closed" || got[1]["ch"] != 1.0 || got[1]["reason"] != "moved" {
		t.Fatalf("got %v, want resumed on 2, then closed moved on 1", got)
	}
	if ms := a.members(); len(ms) != 1 || a.find(2) == nil {
		t.Fatalf("a holds %d memberships, want the one on channel 2", len(ms))
	}
}
