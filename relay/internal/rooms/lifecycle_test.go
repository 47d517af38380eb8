package rooms

import (
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cleanrelay/cleanrelay/relay/protocol"
)

// TestOrder: frames and presence events reach every other member in the order the room numbered them, each
// once, stamped with their sender; a sender is never handed its own frames.
func TestOrder(t *testing.T) {
	tb := newTable(t, Config{}, 0)
	a, b, c := newFakeConn(t, tb), newFakeConn(t, tb), newFakeConn(t, tb)
	ja := mustCreate(t, tb, a, 1, 3)
	jb := mustJoin(t, tb, b, 4, ja)
	ma, mb := ja.Member, jb.Member
	for i := range 5 {
		if forwardBytes(ma, a, []byte(fmt.Sprint("a", i))) != Forwarded || forwardBytes(mb, b, []byte(fmt.Sprint("b", i))) != Forwarded {
			t.Fatal("frame refused")
		}
	}
	jc := mustJoin(t, tb, c, 2, ja)
	var got []string
	for {
		it, data := next(mb, b, 4)
		if it.Kind == None {
			break
		}
		got = append(got, fmt.Sprintf("%d %v %d %s", it.Seq, it.Kind, it.From, data))
	}
	want := []string{"3 1 1 a0", "5 1 1 a1", "7 1 1 a2", "9 1 1 a3", "11 1 1 a4", fmt.Sprintf("13 2 %d ", jc.ID)}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("b got\n%q\nwant\n%q", got, want)
	}
	if it, _ := next(mb, a, 4); it.Kind != None {
		t.Fatalf("b's entries handed to a's connection: %+v", it)
	}
	if it, _ := next(mb, b, 5); it.Kind != None {
		t.Fatalf("b's entries handed out on another channel: %+v", it)
	}
	if items := drain(jc.Member, c, 2); len(items) != 0 {
		t.Fatalf("c, which joined last, got %+v", items)
	}
	if jc.Seq != 13 || len(jc.Members) != 3 {
		t.Fatalf("c joined at seq %d with members %v", jc.Seq, jc.Members)
	}
}

// TestWakes: a frame wakes every other attached member once, and not its sender; a member that went away is
// not woken.
func TestWakes(t *testing.T) {
	tb := newTable(t, Config{}, 0)
	a, b, c := newFakeConn(t, tb), newFakeConn(t, tb), newFakeConn(t, tb)
	ja := mustCreate(t, tb, a, 1, 3)
	mustJoin(t, tb, b, 1, ja)
	jc := mustJoin(t, tb, c, 1, ja)
	a.woken()
	b.woken()
	tb.Away(c, []*Member{jc.Member})
	if a.woken() != 1 || b.woken() != 1 {
		t.Fatal("c's going away did not wake a and b once each")
	}
	forwardBytes(ja.Member, a, []byte("x"))
	if a.woken() != 0 || b.woken() != 1 || c.woken() != 0 {
		t.Fatal("a frame must wake the other attached members only")
	}
}

// TestAcks: an entry leaves the log once every member acknowledged it (a sender counts as having processed
// its own frames), and not before.
func TestAcks(t *testing.T) {
	g := newForwardRig(t)
	r := g.ma.room
	held := func() int {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.log.n
	}
	for range 3 {
		forwardBytes(g.ma, g.a, []byte("a"))
	}
	forwardBytes(g.mb, g.b, []byte("b"))
	if n := held(); n != 4 {
		t.Fatalf("log holds %d entries, want 4", n)
	}
	items := drain(g.mb, g.b, 1)
	g.mb.Ack(g.b, items[1].Seq) // b processed a's first two frames
	if n := held(); n != 2 {
		t.Fatalf("after b acknowledged two frames the log holds %d, want 2", n)
	}
	g.mb.Ack(g.b, items[2].Seq) // and the third: b's own frame is left, which a has not acknowledged
	if n := held(); n != 1 {
		t.Fatalf("the log holds %d, want b's frame alone", n)
	}
	g.mb.Ack(g.a, 1<<60) // an acknowledgement from a connection m is not attached to counts for nothing
	drain(g.ma, g.a, 1)
	g.ma.Ack(g.a, 1<<60) // beyond the head: taken as the head
	if n := held(); n != 0 {
		t.Fatalf("after both acknowledged everything the log holds %d", n)
	}
}

// TestEviction: a full log pushes its oldest entry out; a connected member that had not been sent it is
// handed lost for the gap, then goes on.
func TestEviction(t *testing.T) {
	g := newForwardRigWith(t, Config{RoomBuffer: 4}, true)
	for i := range 6 {
		if forwardBytes(g.ma, g.a, []byte{byte('0' + i)}) != Forwarded {
			t.Fatal("frame refused")
		}
	}
	it, _ := next(g.mb, g.b, 1)
	if it.Kind != Lost || it.LostFrom != 3 || it.LostTo != 4 {
		t.Fatalf("b got %+v, want lost 3..4", it)
	}
	if it, data := next(g.mb, g.b, 1); it.Kind != Frame || data != "2" {
		t.Fatalf("after lost b got %+v %q, want frame 2", it, data)
	}
	if g.table.stats.Slow.Load() != 2 || g.table.stats.Evicted.Load() != 2 || g.table.stats.Lost.Load() != 1 {
		t.Fatalf("counted %d slow, %d evicted, %d lost; want 2, 2, 1", g.table.stats.Slow.Load(), g.table.stats.Evicted.Load(), g.table.stats.Lost.Load())
	}
}

// TestGrace: a member that went away keeps its place for the grace; its room sees it away, then, when the
// grace runs out, leave with reason timeout, and the last one's room is dropped.
func TestGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tb := newTable(t, Config{Grace: time.Minute}, 0)
		a, b := newFakeConn(t, tb), newFakeConn(t, tb)
		ja := mustCreate(t, tb, a, 1, 2)
		jb := mustJoin(t, tb, b, 1, ja)
		drain(ja.Member, a, 1)
		tb.Away(b, []*Member{jb.Member})
		time.Sleep(time.Minute - time.Second)
		synctest.Wait()
		if items := drain(ja.Member, a, 1); len(items) != 1 || items[0].Event != "away" {
			t.Fatalf("a got %+v before the grace ran out, want away", items)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		items := drain(ja.Member, a, 1)
		if len(items) != 1 || items[0].Event != "leave" || !items[0].Timeout || items[0].From != jb.ID {
			t.Fatalf("a got %+v when the grace ran out, want b's leave with timeout", items)
		}
		if tb.stats.GraceExpired.Load() != 1 {
			t.Fatal("the grace's end was not counted")
		}
		var j Joined
		if err := tb.Resume(Seat{Conn: b, Ch: 1}, &jb.Token, 0, &j); err == nil || err.Code != protocol.CodeBadToken {
			t.Fatalf("resume after the grace: %v, want bad_token", err)
		}
		tb.Away(a, []*Member{ja.Member})
		time.Sleep(time.Minute)
		synctest.Wait()
		if n := tb.stats.Rooms.Load(); n != 0 {
			t.Fatalf("%d rooms after the last member's grace ran out", n)
		}
	})
}

// TestOrphanGrace: a room that only its creator ever joined keeps it for the shorter orphan grace.
func TestOrphanGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tb := newTable(t, Config{Grace: time.Minute, OrphanGrace: 5 * time.Second}, 0)
		a := newFakeConn(t, tb)
		ja := mustCreate(t, tb, a, 1, 2)
		tb.Away(a, []*Member{ja.Member})
		time.Sleep(5*time.Second - time.Millisecond)
		synctest.Wait()
		if tb.stats.Rooms.Load() != 1 {
			t.Fatal("the orphan room was dropped before its grace ran out")
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if tb.stats.Rooms.Load() != 0 {
			t.Fatal("the orphan room outlived its grace")
		}
	})
}

// TestResume: a member that comes back within the grace gets what it missed after last, exactly once, and
// the others see it back; a resume on another connection moves the membership (the old one is told moved),
// and one on the same connection names the channel it replaces.
func TestResume(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tb := newTable(t, Config{}, 0)
		a, b, b2 := newFakeConn(t, tb), newFakeConn(t, tb), newFakeConn(t, tb)
		ja := mustCreate(t, tb, a, 1, 2)
		jb := mustJoin(t, tb, b, 1, ja)
		drain(ja.Member, a, 1)
		forwardBytes(ja.Member, a, []byte("one"))
		it, _ := next(jb.Member, b, 1)
		tb.Away(b, []*Member{jb.Member})
		forwardBytes(ja.Member, a, []byte("two"))
		time.Sleep(time.Minute)
		var j Joined
		if err := tb.Resume(Seat{Conn: b2, Ch: 3}, &jb.Token, it.Seq-1, &j); err != nil {
			t.Fatalf("resume: %v", err)
		}
		if j.Member != jb.Member || j.Replaced != 0 || j.In != 0 {
			t.Fatalf("resume gave %+v", j)
		}
		var got []string
		for _, x := range []Conn{b, b2} {
			for {
				it, data := next(jb.Member, x, 3)
				if it.Kind == None {
					break
				}
				if it.Kind == Frame {
					got = append(got, data)
				}
			}
		}
		if fmt.Sprint(got) != "[one two]" {
			t.Fatalf("after resume b got %q, want one and two on the new connection", got)
		}
		if items := drain(ja.Member, a, 1); len(items) != 2 || items[0].Event != "away" || items[1].Event != "back" {
			t.Fatalf("a got %+v, want away, back", items)
		}
		// Another connection takes the membership over: the old one is told.
		b3 := newFakeConn(t, tb)
		if err := tb.Resume(Seat{Conn: b3, Ch: 1}, &jb.Token, j.Seq, &j); err != nil {
			t.Fatalf("second resume: %v", err)
		}
		if cl := b2.closes(); len(cl) != 1 || cl[0].reason != protocol.ReasonMoved || cl[0].ch != 3 {
			t.Fatalf("the old connection got %+v, want closed moved on 3", cl)
		}
		// The same connection again, on a new channel: no Closed, the channel it replaces instead.
		if err := tb.Resume(Seat{Conn: b3, Ch: 2}, &jb.Token, j.Seq, &j); err != nil {
			t.Fatalf("third resume: %v", err)
		}
		if cl := b3.closes(); len(cl) != 0 || j.Replaced != 1 {
			t.Fatalf("a resume on the same connection: closes %+v, replaced %d; want none and 1", cl, j.Replaced)
		}
		if err := tb.Resume(Seat{Conn: b3, Ch: 4}, &jb.Token, j.Seq+1, &j); err == nil || err.Code != protocol.CodeBadRequest {
			t.Fatalf("resume beyond the head: %v, want bad_request", err)
		}
		if drain(ja.Member, a, 1) != nil {
			t.Fatal("a saw presence for a resume from one connection to another")
		}
	})
}

// TestLifetime: a room ends when its lifetime is over, whoever is in it: attached members are told expired.
func TestLifetime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tb := newTable(t, Config{MaxRoomLifetime: time.Hour}, 0)
		a, b := newFakeConn(t, tb), newFakeConn(t, tb)
		ja := mustCreate(t, tb, a, 1, 2)
		jb := mustJoin(t, tb, b, 7, ja)
		time.Sleep(time.Hour - time.Nanosecond)
		synctest.Wait()
		if len(a.closes()) != 0 {
			t.Fatal("the room ended before its lifetime")
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		for _, x := range []struct {
			c  *fakeConn
			m  *Member
			ch byte
		}{{a, ja.Member, 1}, {b, jb.Member, 7}} {
			if cl := x.c.closes(); len(cl) != 1 || cl[0] != (closedCall{x.m, x.ch, protocol.ReasonExpired}) {
				t.Fatalf("got %+v, want closed expired on %d", cl, x.ch)
			}
		}
		if tb.stats.Rooms.Load() != 0 {
			t.Fatal("the expired room is still counted")
		}
		if forwardBytes(ja.Member, a, []byte("late")) != NotMember {
			t.Fatal("a frame into an expired room was taken")
		}
	})
}

// TestBurn: a burn ends the room for everyone at once: attached members are told burned, away ones lose
// their place, the log is wiped, and only a member attached to the connection that asks may burn.
func TestBurn(t *testing.T) {
	tb := newTable(t, Config{}, 0)
	a, b, c := newFakeConn(t, tb), newFakeConn(t, tb), newFakeConn(t, tb)
	ja := mustCreate(t, tb, a, 1, 3)
	jb := mustJoin(t, tb, b, 1, ja)
	jc := mustJoin(t, tb, c, 1, ja)
	tb.Away(c, []*Member{jc.Member})
	forwardBytes(ja.Member, a, []byte("x"))
	if tb.Burn(b, ja.Member) {
		t.Fatal("b burned with a's membership")
	}
	if !tb.Burn(b, jb.Member) {
		t.Fatal("b could not burn its room")
	}
	if cl := a.closes(); len(cl) != 1 || cl[0].reason != protocol.ReasonBurned {
		t.Fatalf("a got %+v, want closed burned", cl)
	}
	if cl := b.closes(); len(cl) != 1 || cl[0].reason != protocol.ReasonBurned {
		t.Fatalf("b got %+v, want closed burned", cl)
	}
	if len(c.closes()) != 0 {
		t.Fatal("c, away, was called")
	}
	var j Joined
	if err := tb.Resume(Seat{Conn: c, Ch: 1}, &jc.Token, 0, &j); err == nil {
		t.Fatal("an away member resumed into a burned room")
	}
	if err := tb.Join(Seat{Conn: c, Ch: 1}, &ja.Room, &ja.Cap, &j); err == nil || err.Code != protocol.CodeDenied {
		t.Fatalf("join of a burned room: %v, want denied", err)
	}
	r := ja.Member.room
	if r.log.n != 0 || r.log.ring != nil || r.id != (RoomID{}) || r.capHash != [32]byte{} {
		t.Fatal("the burned room kept its log or its identifiers")
	}
	if tb.stats.Burned.Load() != 1 {
		t.Fatal("the burn was not counted")
	}
}

// TestLeave: a member that leaves is gone for good: the others see it leave, its token opens nothing, and its
// connection is not called (it released the channel itself).
func TestLeave(t *testing.T) {
	tb := newTable(t, Config{}, 0)
	a, b := newFakeConn(t, tb), newFakeConn(t, tb)
	ja := mustCreate(t, tb, a, 1, 2)
	jb := mustJoin(t, tb, b, 1, ja)
	drain(ja.Member, a, 1)
	if tb.Leave(a, jb.Member) {
		t.Fatal("a left with b's membership")
	}
	if !tb.Leave(b, jb.Member) {
		t.Fatal("b could not leave")
	}
	if items := drain(ja.Member, a, 1); len(items) != 1 || items[0].Event != "leave" || items[0].Timeout {
		t.Fatalf("a got %+v, want b's leave", items)
	}
	if len(b.closes()) != 0 {
		t.Fatal("the leaving connection was told closed")
	}
	var j Joined
	if err := tb.Resume(Seat{Conn: b, Ch: 1}, &jb.Token, 0, &j); err == nil {
		t.Fatal("a left member resumed")
	}
}

// TestJoinRefusals: the answers to a join, in the order the relay checks.
func TestJoinRefusals(t *testing.T) {
	tb := newTable(t, Config{}, 0)
	a, b, c := newFakeConn(t, tb), newFakeConn(t, tb), newFakeConn(t, tb)
	ja := mustCreate(t, tb, a, 1, 2)
	full := Errorf(protocol.CodeTooManyRooms, "no free channel")
	var wrong Secret
	wrong.Fill()
	var j Joined
	for _, tt := range []struct {
		name string
		s    Seat
		id   *RoomID
		cap  *Secret
		want string
	}{
		{"wrong capability", Seat{Conn: b, Full: full}, &ja.Room, &wrong, protocol.CodeDenied},
		{"malformed id", Seat{Conn: b}, nil, &ja.Cap, protocol.CodeDenied},
		{"already in", Seat{Conn: a, Ch: 2}, &ja.Room, &ja.Cap, protocol.CodeAlreadyIn},
		{"no channel", Seat{Conn: b, Full: full}, &ja.Room, &ja.Cap, protocol.CodeTooManyRooms},
	} {
		if err := tb.Join(tt.s, tt.id, tt.cap, &j); err == nil || err.Code != tt.want {
			t.Errorf("%s: %v, want %s", tt.name, err, tt.want)
		}
	}
	mustJoin(t, tb, b, 1, ja)
	if err := tb.Join(Seat{Conn: c, Ch: 1}, &ja.Room, &ja.Cap, &j); err == nil || err.Code != protocol.CodeRoomFull {
		t.Errorf("join of a full room: %v, want room_full", err)
	}
}

// TestDialogRoom: a room opened for two users admits only them, and is dropped if nobody joins it within the
// grace.
func TestDialogRoom(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tb := newTable(t, Config{Grace: time.Minute}, 0)
		r, err := tb.OpenRoom(2, []string{"ann", "bob"})
		if err != nil {
			t.Fatal(err)
		}
		var id RoomID
		var capability Secret
		r.Secrets(func(i *RoomID, c *Secret) { id, capability = *i, *c })
		a, x := newFakeConn(t, tb), newFakeConn(t, tb)
		var j Joined
		if err := tb.Join(Seat{Conn: x, Ch: 1, User: "eve"}, &id, &capability, &j); err == nil || err.Code != protocol.CodeDenied {
			t.Fatalf("eve's join: %v, want denied", err)
		}
		if err := tb.Join(Seat{Conn: a, Ch: 1, User: "ann"}, &id, &capability, &j); err != nil {
			t.Fatalf("ann's join: %v", err)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		if !r.Alive() {
			t.Fatal("a dialog room someone joined was dropped")
		}
		empty, err := tb.OpenRoom(2, []string{"ann", "bob"})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		if empty.Alive() || empty.Secrets(func(*RoomID, *Secret) { t.Fatal("secrets of a dropped room") }) {
			t.Fatal("a dialog room nobody joined outlived the grace")
		}
	})
}

// TestCloseTellsEveryone: closing the table tells every attached member shutdown, and refuses new rooms.
func TestCloseTellsEveryone(t *testing.T) {
	tb := newTable(t, Config{}, 0)
	a, b := newFakeConn(t, tb), newFakeConn(t, tb)
	ja := mustCreate(t, tb, a, 1, 2)
	mustJoin(t, tb, b, 1, ja)
	tb.Close(protocol.ReasonShutdown)
	for _, c := range []*fakeConn{a, b} {
		if cl := c.closes(); len(cl) != 1 || cl[0].reason != protocol.ReasonShutdown {
			t.Fatalf("got %+v, want closed shutdown", cl)
		}
	}
	var j Joined
	if err := tb.Create(Seat{Conn: a, Ch: 1}, 2, &j); err == nil || err.Code != protocol.CodeBusy {
		t.Fatalf("create after close: %v, want busy", err)
	}
}
