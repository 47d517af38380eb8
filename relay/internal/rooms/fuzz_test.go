package rooms

import (
	"testing"

	"github.com/cleanrelay/cleanrelay/relay/internal/ws"
)

// fuzzSlot is one membership a fuzzed connection holds on one of its channels.
type fuzzSlot struct {
	j    *Joined
	last uint64 // the newest sequence number handed out on this slot
}

// FuzzTable drives the rooms core with any sequence of what connections may do — create, join, forward, take
// the next item, acknowledge, leave, burn, go away and resume — and checks after every step that each room's
// log stays within its bounds, that a member is handed items in increasing order, and that nothing panics.
// The connections are fakes that fail the run if the rooms call them with a lock held.
func FuzzTable(f *testing.F) {
	f.Add([]byte{0, 0, 1, 8, 2, 3, 2, 40, 3, 9, 4, 9, 3, 0, 4, 0, 5, 9})
	f.Add([]byte{0, 0, 1, 8, 2, 200, 2, 200, 2, 200, 2, 200, 2, 200, 3, 9, 6, 0})
	f.Add([]byte{0, 3, 1, 4, 7, 0, 8, 0, 2, 9, 3, 4, 4, 4, 3, 3})
	f.Fuzz(func(t *testing.T, ops []byte) {
		cfg := Config{RoomBuffer: 8, RoomBufferBytes: 1024, MaxMembers: 3, MaxRooms: 4}
		table := newTable(t, cfg, 0)
		defer table.Close("end of the run")
		limits := testConfig(cfg)
		conns := []*fakeConn{newFakeConn(t, table), newFakeConn(t, table), newFakeConn(t, table)}
		var slots [6]fuzzSlot // conn i, channel 1+k: slots[2*i+k]
		var created []*Joined
		body := make([]byte, 64<<10)
		seat := func(s int) Seat { return Seat{Conn: conns[s/2], Ch: byte(1 + s%2)} }
		forget := func() { // memberships the rooms ended are gone from their slots
			for i, c := range conns {
				for _, call := range c.closes() {
					s := 2*i + int(call.ch) - 1
					if s >= 0 && s < len(slots) && slots[s].j != nil && slots[s].j.Member == call.m {
						slots[s] = fuzzSlot{}
					}
				}
			}
		}
		for len(ops) >= 2 {
			op, arg := ops[0]%9, ops[1]
			ops = ops[2:]
			s := int(arg) % len(slots)
			sl := &slots[s]
			switch op {
			case 0: // create
				if sl.j == nil {
					j := new(Joined)
					if table.Create(seat(s), 2+int(arg)%2, j) == nil {
						*sl = fuzzSlot{j: j, last: j.Seq}
						created = append(created, j)
					}
				}
			case 1: // join a room made before
				if sl.j == nil && len(created) > 0 {
					from := created[int(arg)%len(created)]
					j := new(Joined)
					if table.Join(seat(s), &from.Room, &from.Cap, j) == nil {
						*sl = fuzzSlot{j: j, last: j.Seq}
					}
				}
			case 2: // forward a frame of up to 255 bytes
				if sl.j != nil {
					n := 1 + int(arg)
					p := ws.GetPayload(n)
					if sl.j.Member.Forward(seat(s).Conn, p) != Forwarded {
						ws.PutPayload(p)
					}
				}
			case 3: // take the next item
				if sl.j != nil {
					pending := sl.j.Member.Pending(seat(s).Conn, seat(s).Ch)
					it := sl.j.Member.Next(seat(s).Conn, seat(s).Ch, body)
					if !pending && it.Kind != None {
						t.Fatalf("slot %d was handed %v after Pending said nothing", s, it.Kind)
					}
					if it.Kind == Frame || it.Kind == Presence {
						if it.Seq <= sl.last {
							t.Fatalf("slot %d was handed seq %d after %d", s, it.Seq, sl.last)
						}
						sl.last = it.Seq
					}
				}
			case 4: // acknowledge what was handed out
				if sl.j != nil {
					sl.j.Member.Ack(seat(s).Conn, sl.last)
				}
			case 5: // leave
				if sl.j != nil {
					table.Leave(seat(s).Conn, sl.j.Member)
					*sl = fuzzSlot{}
				}
			case 6: // burn
				if sl.j != nil {
					table.Burn(seat(s).Conn, sl.j.Member)
					*sl = fuzzSlot{}
				}
			case 7: // the connection goes away, its memberships wait for a resume
				if sl.j != nil {
					table.Away(seat(s).Conn, []*Member{sl.j.Member})
				}
			case 8: // resume on the same seat with the token
				if sl.j != nil {
					j := new(Joined)
					if table.Resume(seat(s), &sl.j.Token, sl.last, j) == nil {
						j.Token = sl.j.Token
						*sl = fuzzSlot{j: j, last: sl.last}
					}
				}
			}
			forget()
			table.rooms.each(func(r *Room) {
				r.mu.Lock()
				defer r.mu.Unlock()
				if r.log.n > limits.RoomBuffer || r.log.bytes > limits.RoomBufferBytes {
					t.Fatalf("room log over its bounds: %d entries, %d bytes (limits %d, %d)",
						r.log.n, r.log.bytes, limits.RoomBuffer, limits.RoomBufferBytes)
				}
			})
		}
	})
}
