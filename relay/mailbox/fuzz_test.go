package mailbox

import (
	"testing"
	"time"
)

// FuzzStore runs sequences of puts, acks, fetches and wipes from the fuzzer's bytes and checks after each step
// that every bound holds and that the counters agree with what is held.
func FuzzStore(f *testing.F) {
	f.Add([]byte{0, 1, 2, 50, 0, 0, 1, 2, 60, 1, 3, 1, 2, 0, 0, 4, 2})
	f.Add([]byte{0, 0, 0, 255, 255, 0, 0, 0, 255, 255, 0, 0, 0, 255, 255, 5, 0})
	f.Fuzz(func(t *testing.T, ops []byte) {
		cfg := Config{MaxTTL: time.Hour, MaxPerRecipient: 4, MaxItemBytes: 300, MaxBytesPerRecipient: 4*(300+ItemOverhead) - 100, MaxBytes: 10 * (300 + ItemOverhead)}
		s := New(cfg)
		defer s.Close()
		users := []string{"a", "b", "c", "d"}
		var ids []string
		next := func() byte {
			if len(ops) == 0 {
				return 0
			}
			b := ops[0]
			ops = ops[1:]
			return b
		}
		for len(ops) > 0 {
			switch next() % 6 {
			case 0:
				from, to, size, ttl := users[next()%4], users[next()%4], int(next())*2, time.Duration(next())*time.Minute/4
				if id, _, err := s.Put(from, to, make([]byte, size), ttl, next()%2 == 0); err == nil {
					ids = append(ids, id)
				}
			case 1:
				to, from := users[next()%4], users[next()%4]
				var some []string
				for i, id := range ids {
					if int(next())%2 == 0 || i > 8 {
						some = append(some, id)
					}
				}
				s.Ack(to, from, some)
			case 2:
				s.Visit(users[next()%4], users[next()%4], func(string, time.Time, time.Time, []byte) bool { return next()%4 != 0 })
			case 3:
				s.WipeTo(users[next()%4], ReasonKeyChanged)
			case 4:
				s.WipeFrom(users[next()%4])
			case 5:
				s.Summary(users[next()%4])
				s.Undeliverables(users[next()%4])
			}
			checkInvariants(t, s)
		}
	})
}

func checkInvariants(t *testing.T, s *Store) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var items, bytes int64
	for to, q := range s.byTo {
		var qb int64
		if len(q.items) == 0 {
			t.Fatalf("an empty queue for %s is kept", to)
		}
		if len(q.items) > s.cfg.MaxPerRecipient {
			t.Fatalf("%s holds %d items, over %d", to, len(q.items), s.cfg.MaxPerRecipient)
		}
		for _, it := range q.items {
			qb += it.cost()
		}
		if qb != q.bytes || qb > s.cfg.MaxBytesPerRecipient {
			t.Fatalf("%s: counted %d bytes, holds %d (bound %d)", to, q.bytes, qb, s.cfg.MaxBytesPerRecipient)
		}
		items += int64(len(q.items))
		bytes += qb
	}
	if st := s.Stats(); st.Held != items || st.Bytes != bytes || bytes != s.bytes || bytes > s.cfg.MaxBytes {
		t.Fatalf("stats %+v, counted %d bytes; hold %d items, %d bytes", st, s.bytes, items, bytes)
	}
}
