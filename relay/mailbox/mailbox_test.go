package mailbox

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// small is a mailbox with limits a test reaches quickly.
func small() Config {
	return Config{MaxTTL: time.Hour, MaxPerRecipient: 3, MaxItemBytes: 100, MaxBytesPerRecipient: 3*(100+ItemOverhead) + 10, MaxBytes: 5 * (100 + ItemOverhead)}
}

func payload(n int, b byte) []byte { return bytes.Repeat([]byte{b}, n) }

// ids returns the ids and data (copied) of the items from from waiting for to, in order.
func visit(s *Store, to, from string) (ids []string, data [][]byte) {
	s.Visit(to, from, func(id string, _, _ time.Time, d []byte) bool {
		ids = append(ids, id)
		data = append(data, bytes.Clone(d))
		return true
	})
	return ids, data
}

func mustPut(t *testing.T, s *Store, from, to string, d []byte) string {
	t.Helper()
	id, _, err := s.Put(from, to, d, 0, false)
	if err != nil {
		t.Fatalf("Put %s→%s: %v", from, to, err)
	}
	return id
}

// TestFullRefusesNewest: a recipient's full mailbox (by count, then by bytes) refuses the newest item with
// ErrFull, zeroes it, and keeps every item already held, in order.
func TestFullRefusesNewest(t *testing.T) {
	s := New(small())
	defer s.Close()
	for i := range 3 {
		mustPut(t, s, "alice", "bob", payload(10, byte('a'+i)))
	}
	extra := payload(10, 'z')
	if _, _, err := s.Put("carol", "bob", extra, 0, false); !errors.Is(err, ErrFull) {
		t.Fatalf("4th item: err %v, want ErrFull", err)
	}
	if !bytes.Equal(extra, make([]byte, 10)) {
		t.Fatal("a refused item was not overwritten")
	}
	_, data := visit(s, "bob", "alice")
	if len(data) != 3 || data[0][0] != 'a' || data[2][0] != 'c' {
		t.Fatalf("held after refusal: %q", data)
	}
	// By bytes: two large items for dave fill most of its bytes; a third fits by count but not by bytes.
	c := small()
	c.MaxBytesPerRecipient = 2*(100+ItemOverhead) + 50
	s2 := New(c)
	defer s2.Close()
	mustPut(t, s2, "alice", "dave", payload(100, 1))
	mustPut(t, s2, "alice", "dave", payload(100, 2))
	if _, _, err := s2.Put("alice", "dave", payload(100, 3), 0, false); !errors.Is(err, ErrFull) {
		t.Fatalf("over bytes: err %v, want ErrFull", err)
	}
	if _, d := visit(s2, "dave", "alice"); len(d) != 2 {
		t.Fatalf("held %d, want 2", len(d))
	}
}

// TestRelayFull: the bound on all bytes refuses with ErrRelayFull once reached, for any recipient, and
// makes room again when items leave.
func TestRelayFull(t *testing.T) {
	s := New(small())
	defer s.Close()
	var first string
	for i := range 5 {
		id := mustPut(t, s, "alice", fmt.Sprintf("user%d", i), payload(100, 1))
		if i == 0 {
			first = id
		}
	}
	if _, _, err := s.Put("alice", "user9", payload(100, 1), 0, false); !errors.Is(err, ErrRelayFull) {
		t.Fatalf("err %v, want ErrRelayFull", err)
	}
	if got := s.Stats().Held; got != 5 {
		t.Fatalf("held %d, want 5", got)
	}
	if n := s.Ack("user0", "alice", []string{first, "unknown"}); n != 1 {
		t.Fatalf("ack removed %d", n)
	}
	mustPut(t, s, "alice", "user9", payload(100, 1))
	if st := s.Stats(); st.Delivered != 1 || st.Bytes != s.HeldBytes() || st.Bytes != 5*(100+ItemOverhead) {
		t.Fatalf("stats %+v, held bytes %d", st, s.HeldBytes())
	}
}

// TestPutRefusesBadInput: empty, oversize and out-of-range TTL items are refused and hold nothing.
func TestPutRefusesBadInput(t *testing.T) {
	s := New(small())
	defer s.Close()
	for name, tc := range map[string]struct {
		n   int
		ttl time.Duration
		err error
	}{
		"empty":     {0, 0, ErrTooLarge},
		"oversize":  {101, 0, ErrTooLarge},
		"ttl over":  {10, 2 * time.Hour, ErrBadTTL},
		"ttl minus": {10, -time.Second, ErrBadTTL},
	} {
		if _, _, err := s.Put("a", "b", payload(tc.n, 1), tc.ttl, false); !errors.Is(err, tc.err) {
			t.Errorf("%s: err %v, want %v", name, err, tc.err)
		}
	}
	if s.Stats().Held != 0 || s.HeldBytes() != 0 {
		t.Fatalf("refused items held: %+v", s.Stats())
	}
}

// TestTTL: an item lives for the time its sender asked for (the maximum when it asked for none), is never
// handed out after, and is overwritten and counted as expired by the sweep without anyone asking.
func TestTTL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New(small())
		defer s.Close()
		short := payload(10, 's')
		mustPut(t, s, "alice", "bob", payload(10, 'l')) // MaxTTL: 1h
		if _, _, err := s.Put("alice", "bob", short, 10*time.Minute, false); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10*time.Minute - time.Second)
		if _, d := visit(s, "bob", "alice"); len(d) != 2 {
			t.Fatalf("before expiry: %d items", len(d))
		}
		time.Sleep(time.Second)
		if _, d := visit(s, "bob", "alice"); len(d) != 1 || d[0][0] != 'l' {
			t.Fatalf("after the short TTL: %q", d)
		}
		if !bytes.Equal(short, make([]byte, 10)) {
			t.Fatal("an expired item was not overwritten")
		}
		time.Sleep(time.Hour) // nobody asks: the sweep finds it
		synctest.Wait()
		if st := s.Stats(); st.Held != 0 || st.Expired != 2 || st.Bytes != 0 {
			t.Fatalf("after the sweep: %+v", st)
		}
	})
}

// TestAckOnce: acknowledged items leave at once, overwritten; other senders' items and later ones stay,
// and acknowledging again changes nothing.
func TestAckOnce(t *testing.T) {
	s := New(small())
	defer s.Close()
	d1 := payload(10, 1)
	id1 := mustPut(t, s, "alice", "bob", d1)
	mustPut(t, s, "carol", "bob", payload(10, 2))
	id3 := mustPut(t, s, "alice", "bob", payload(10, 3))
	if n := s.Ack("bob", "carol", []string{id1}); n != 0 {
		t.Fatal("an ack by the wrong sender's name removed an item")
	}
	if n := s.Ack("bob", "alice", []string{id1}); n != 1 || !bytes.Equal(d1, make([]byte, 10)) {
		t.Fatalf("ack: %d, data %v", n, d1)
	}
	if n := s.Ack("bob", "alice", []string{id1}); n != 0 {
		t.Fatal("a repeated ack removed something")
	}
	if ids, _ := visit(s, "bob", "alice"); len(ids) != 1 || ids[0] != id3 {
		t.Fatalf("left: %v", ids)
	}
	if w := s.Summary("bob"); len(w) != 2 || w[0].From != "carol" || w[1].From != "alice" { // by oldest waiting item
		t.Fatalf("summary %+v", w)
	}
}

// TestSummaryQuiet: quiet items (file chunks, receipts) wait like others but are not unread messages.
func TestSummaryQuiet(t *testing.T) {
	s := New(Config{})
	defer s.Close()
	mustPut(t, s, "alice", "bob", payload(10, 1))
	if _, _, err := s.Put("alice", "bob", payload(10, 2), 0, true); err != nil {
		t.Fatal(err)
	}
	if w := s.Summary("bob"); len(w) != 1 || w[0].Unread != 1 || w[0].Items != 2 {
		t.Fatalf("summary %+v", w)
	}
}

// TestWipes: a recipient's key change wipes what waits for it and reports it to each sender; a revoked or
// disabled sender's items are wiped too; everything else stays.
func TestWipes(t *testing.T) {
	s := New(Config{})
	defer s.Close()
	toBob := payload(10, 1)
	id := mustPut(t, s, "alice", "bob", toBob)
	if _, _, err := s.Put("alice", "bob", payload(10, 9), 0, true); err != nil { // a receipt: no report
		t.Fatal(err)
	}
	mustPut(t, s, "carol", "bob", payload(10, 2))
	fromBob := payload(10, 3)
	mustPut(t, s, "bob", "dave", fromBob)
	keep := payload(10, 4)
	mustPut(t, s, "alice", "dave", keep)
	if p := s.Peers("bob"); len(p) != 3 {
		t.Fatalf("peers of bob %v", p)
	}
	senders := s.WipeTo("bob", ReasonKeyChanged)
	if len(senders) != 2 || !bytes.Equal(toBob, make([]byte, 10)) {
		t.Fatalf("senders %v, data %v", senders, toBob)
	}
	u := s.Undeliverables("alice")
	if len(u) != 1 || u[0].ID != id || u[0].To != "bob" || u[0].Reason != ReasonKeyChanged {
		t.Fatalf("alice's reports %+v", u)
	}
	if to := s.WipeFrom("bob"); len(to) != 1 || to[0] != "dave" || !bytes.Equal(fromBob, make([]byte, 10)) {
		t.Fatalf("WipeFrom: %v, %v", to, fromBob)
	}
	if _, d := visit(s, "dave", "alice"); len(d) != 1 || !bytes.Equal(d[0], keep) {
		t.Fatalf("dave's other item: %v", d)
	}
	if st := s.Stats(); st.Held != 1 || st.Wiped != 4 {
		t.Fatalf("stats %+v", st)
	}
}

// TestCloseWipes: Close overwrites every item, refuses new ones, and leaves nothing counted.
func TestCloseWipes(t *testing.T) {
	s := New(Config{})
	var held [][]byte
	for i := range 20 {
		d := payload(50, byte(i+1))
		held = append(held, d)
		mustPut(t, s, "alice", fmt.Sprintf("u%d", i%4), d)
	}
	s.Close()
	for _, d := range held {
		if !bytes.Equal(d, make([]byte, 50)) {
			t.Fatal("an item survived Close")
		}
	}
	if _, _, err := s.Put("a", "b", payload(1, 1), 0, false); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
	if st := s.Stats(); st.Held != 0 || st.Bytes != 0 || st.Wiped != 20 {
		t.Fatalf("stats %+v", st)
	}
	s.Close()
}

// TestConcurrentSenders: many senders at once never pass a bound, and every accepted item is there once,
// in each sender's order.
func TestConcurrentSenders(t *testing.T) {
	c := Config{MaxPerRecipient: 150, MaxItemBytes: 64}
	s := New(c)
	defer s.Close()
	var wg sync.WaitGroup
	accepted := make([][]string, 8)
	for w := range 8 {
		wg.Go(func() {
			for i := range 40 {
				id, _, err := s.Put(fmt.Sprintf("s%d", w), "bob", payload(64, byte(i)), 0, false)
				if err == nil {
					accepted[w] = append(accepted[w], id)
				} else if !errors.Is(err, ErrFull) {
					t.Error(err)
				}
				s.Summary("bob")
			}
		})
	}
	wg.Wait()
	total := 0
	for w, ids := range accepted {
		got, _ := visit(s, "bob", fmt.Sprintf("s%d", w))
		if fmt.Sprint(got) != fmt.Sprint(ids) {
			t.Fatalf("sender %d: held %v, accepted %v", w, got, ids)
		}
		total += len(ids)
	}
	if total != 150 || s.Stats().Held != 150 {
		t.Fatalf("accepted %d, held %d; want 150", total, s.Stats().Held)
	}
}

func TestValidate(t *testing.T) {
	for name, c := range map[string]Config{
		"ttl":       {MaxTTL: time.Millisecond},
		"count":     {MaxPerRecipient: -1},
		"recipient": {MaxBytesPerRecipient: 10},
		"all":       {MaxBytes: 1 << 20, MaxBytesPerRecipient: 2 << 20},
	} {
		if c.Validate() == nil {
			t.Errorf("%s: %+v accepted", name, c)
		}
	}
	if err := (Config{}).Validate(); err != nil {
		t.Fatal(err)
	}
}
