package rooms

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testConfig is the relay's default limits, with cfg's non-zero fields instead.
func testConfig(cfg Config) Config {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&cfg.RoomBuffer, 256)
	def(&cfg.RoomBufferBytes, 1<<20)
	def(&cfg.MaxMembers, 8)
	def(&cfg.DefaultMembers, 2)
	def(&cfg.MaxRooms, 10000)
	defDur(&cfg.Grace, 2*time.Minute)
	defDur(&cfg.OrphanGrace, min(15*time.Second, cfg.Grace))
	defDur(&cfg.MaxRoomLifetime, 24*time.Hour)
	return cfg
}

// newTable returns a table with cfg (testConfig) and a memory budget of max bytes (0: 1 GiB).
func newTable(tb testing.TB, cfg Config, max int64) *Table {
	tb.Helper()
	if max == 0 {
		max = 1 << 30
	}
	var conns atomic.Int64
	return New(testConfig(cfg), &Stats{}, &Budget{Max: max, Conns: &conns}, slog.New(slog.DiscardHandler))
}

// fakeConn is a connection without a socket: it records what the rooms tell it, and fails the test if they
// call it while holding one of their locks.
type fakeConn struct {
	tb    testing.TB
	table *Table

	mu     sync.Mutex
	wakes  int
	closed []closedCall
}

type closedCall struct {
	m      *Member
	ch     byte
	reason string
}

func newFakeConn(tb testing.TB, t *Table) *fakeConn { return &fakeConn{tb: tb, table: t} }

// unlocked fails the test if the table's lock or a room's is held: every call into a connection comes after
// the rooms released their locks. r is a room that may have left the table already.
func (f *fakeConn) unlocked(what string, r *Room) {
	if !f.table.mu.TryLock() {
		f.tb.Errorf("%s called with the table locked", what)
		return
	}
	defer f.table.mu.Unlock()
	check := func(r *Room) {
		if !r.mu.TryLock() {
			f.tb.Errorf("%s called with a room locked", what)
			return
		}
		r.mu.Unlock()
	}
	f.table.rooms.each(check)
	if r != nil {
		check(r)
	}
}

func (f *fakeConn) Wake() {
	f.unlocked("Wake", nil)
	f.mu.Lock()
	f.wakes++
	f.mu.Unlock()
}

func (f *fakeConn) Closed(m *Member, ch byte, reason string) {
	f.unlocked("Closed", m.room)
	f.mu.Lock()
	f.closed = append(f.closed, closedCall{m, ch, reason})
	f.mu.Unlock()
}

// woken returns how many times the connection was woken, and starts counting again.
func (f *fakeConn) woken() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.wakes
	f.wakes = 0
	return n
}

// closes returns the Closed calls so far, and forgets them.
func (f *fakeConn) closes() []closedCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.closed
	f.closed = nil
	return c
}

// mustCreate creates a room for max members on c's channel ch.
func mustCreate(tb testing.TB, t *Table, c *fakeConn, ch byte, max int) *Joined {
	tb.Helper()
	j := new(Joined)
	if err := t.Create(Seat{Conn: c, Ch: ch}, max, j); err != nil {
		tb.Fatalf("create: %v", err)
	}
	return j
}

// mustJoin joins c, on channel ch, to the room of created.
func mustJoin(tb testing.TB, t *Table, c *fakeConn, ch byte, created *Joined) *Joined {
	tb.Helper()
	j := new(Joined)
	if err := t.Join(Seat{Conn: c, Ch: ch}, &created.Room, &created.Cap, j); err != nil {
		tb.Fatalf("join: %v", err)
	}
	return j
}

// next returns m's next item on (c, ch), with a frame's bytes as a string.
func next(m *Member, c Conn, ch byte) (Item, string) {
	body := make([]byte, 64<<10)
	it := m.Next(c, ch, body)
	return it, string(body[:it.Len])
}

// drain returns every item pending for m on (c, ch).
func drain(m *Member, c Conn, ch byte) []Item {
	var items []Item
	for {
		it, _ := next(m, c, ch)
		if it.Kind == None {
			return items
		}
		items = append(items, it)
	}
}
