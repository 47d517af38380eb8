package rooms

import (
	"testing"

	"github.com/cleanrelay/cleanrelay/relay/internal/ws"
)

// fakeMirrors records the rooms a table hands to its mirror and the conn each room wakes.
type fakeMirrors struct{ conn *fakeConn }

func (f *fakeMirrors) Track(*Room) Conn { return f.conn }

// TestMirrorHoldsBack: with a mirror, a member is handed an entry only once the mirror holds it (Mirrored);
// the mirror, not the members, is woken by a frame; Stamped counts the sender's frames the mirror holds.
func TestMirrorHoldsBack(t *testing.T) {
	tb := newTable(t, Config{}, 0)
	mc := newFakeConn(t, tb)
	tb.SetMirrors(&fakeMirrors{mc})
	x, y := newFakeConn(t, tb), newFakeConn(t, tb)
	jx := mustCreate(t, tb, x, 1, 2)
	jy := mustJoin(t, tb, y, 1, jx)
	r := jx.Member.room
	r.Mirrored(r.log.head, nil)
	drain(jx.Member, x, 1)
	x.woken()
	y.woken()
	mc.woken()
	if res := jy.Member.Forward(y, ws.PayloadOf([]byte("hello"))); res != Forwarded {
		t.Fatalf("forward: %v", res)
	}
	if n := mc.woken(); n != 1 {
		t.Errorf("the mirror was woken %d times, want 1", n)
	}
	if it, _ := next(jx.Member, x, 1); it.Kind != None || x.woken() != 0 {
		t.Fatalf("x was handed %+v before the mirror held it", it)
	}
	if s := jy.Member.Stamped(y); s != 0 {
		t.Errorf("stamped %d before the mirror held the frame", s)
	}
	var c Copy
	if more, closed := r.CopyFrom(0, 1<<20, func(Conn) string { return "here" }, &c); more || closed || c.Head != r.log.head || len(c.Entries) == 0 {
		t.Fatalf("copy: more %v closed %v head %d/%d entries %d", more, closed, c.Head, r.log.head, len(c.Entries))
	}
	r.Mirrored(c.Head, map[uint32]uint64{jy.ID: 1})
	if x.woken() == 0 {
		t.Error("x was not woken once the mirror held the frame")
	}
	if it, body := next(jx.Member, x, 1); it.Kind != Frame || body != "hello" {
		t.Fatalf("x was handed %+v %q, want the frame", it, body)
	}
	if s := jy.Member.Stamped(y); s != 1 {
		t.Errorf("stamped %d, want 1", s)
	}
}

// TestAdopt: a copy made into a room of another table, one epoch on: the log as the copy has it, the member
// of the dead node away (the others told), the member on a live node detached and back without presence, its
// frames counted (In), and a new frame numbered after the copy's head.
func TestAdopt(t *testing.T) {
	src := newTable(t, Config{}, 0)
	x, y := newFakeConn(t, src), newFakeConn(t, src)
	jx := mustCreate(t, src, x, 1, 2)
	jy := mustJoin(t, src, y, 1, jx)
	jy.Member.Forward(y, ws.PayloadOf([]byte("one")))
	where := map[Conn]string{x: "dead", y: "alive"}
	var c Copy
	jx.Member.room.CopyFrom(0, 1<<20, func(cn Conn) string { return where[cn] }, &c)
	head := c.Head

	dst := newTable(t, Config{}, 0)
	if !dst.Adopt(&c, "dead") || dst.Adopt(&c, "dead") {
		t.Fatal("adopt: the first must take the room, the second must not")
	}
	if e, ok := dst.EpochOf(&jx.Room); !ok || e != 1 {
		t.Fatalf("epoch %d %v, want 1", e, ok)
	}
	// y's proxy comes back on a new conn from the last entry it had; x resumes with its token on another.
	y2, x2 := newFakeConn(t, dst), newFakeConn(t, dst)
	var j Joined
	th := jy.Token.Hash()
	if found, err := dst.ResumeHere(Seat{Conn: y2, Ch: 1}, &th, head, &j); !found || err != nil || j.In != 1 {
		t.Fatalf("y relinks: found %v err %v in %d", found, err, j.In)
	}
	var jx2 Joined
	if err := dst.Resume(Seat{Conn: x2, Ch: 1}, &jx.Token, head, &jx2); err != nil {
		t.Fatalf("x resumes: %v", err)
	}
	var events []string
	for _, it := range drain(j.Member, y2, 1) {
		events = append(events, it.Event)
	}
	if len(events) != 2 || events[0] != "away" || events[1] != "back" {
		t.Errorf("y was told %v after the takeover, want x away and back", events)
	}
	if res := jx2.Member.Forward(x2, ws.PayloadOf([]byte("two"))); res != Forwarded {
		t.Fatalf("forward: %v", res)
	}
	items := drain(j.Member, y2, 1)
	if len(items) != 1 || items[0].Kind != Frame || items[0].Seq != head+3 {
		t.Errorf("y was handed %+v, want x's frame as seq %d", items, head+3)
	}
	for _, it := range drain(jx2.Member, x2, 1) {
		if it.Kind == Presence && it.Event == "back" && it.From == jy.ID {
			t.Error("y's relink was told as back")
		}
	}
	if dst.Unadopt(&jx.Room, 0) {
		t.Error("a room members came to was given back")
	}

	// A room taken over from a sequencer that was only slow, nobody come to it yet: given back.
	other := newTable(t, Config{}, 0)
	var c2 Copy
	jx.Member.room.CopyFrom(0, 1<<20, func(cn Conn) string { return where[cn] }, &c2)
	if !other.Adopt(&c2, "dead") || other.Unadopt(&jx.Room, 1) || !other.Unadopt(&jx.Room, 0) {
		t.Fatal("a room nobody came to was not given back to the epoch it was taken from")
	}
	if _, ok := other.EpochOf(&jx.Room); ok || other.RoomsHere() != 0 {
		t.Error("the room given back is still held")
	}
}

// TestNumberFrom: a proxy's frame number moves the member's In up past frames the room refused, never down,
// and only for the member's own connection.
func TestNumberFrom(t *testing.T) {
	tb := newTable(t, Config{}, 0)
	x, y := newFakeConn(t, tb), newFakeConn(t, tb)
	jx := mustCreate(t, tb, x, 1, 2)
	m := jx.Member
	m.NumberFrom(y, 9) // not m's connection
	if in := m.In(x); in != 0 {
		t.Fatalf("In %d after another connection's number, want 0", in)
	}
	m.NumberFrom(x, 4) // frames 1–3 were refused
	if in := m.In(x); in != 3 {
		t.Fatalf("In %d, want 3", in)
	}
	m.NumberFrom(x, 2)
	if in := m.In(x); in != 3 {
		t.Fatalf("In %d after an older number, want 3", in)
	}
	if res := m.Forward(x, ws.PayloadOf([]byte("four"))); res != Forwarded {
		t.Fatalf("forward: %v", res)
	}
	if in := m.In(x); in != 4 {
		t.Fatalf("In %d after the fourth frame, want 4", in)
	}
}
