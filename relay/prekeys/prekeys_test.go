package prekeys

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// key makes a prekey with id and a signature of sigLen bytes; the public keys are filler.
func key(id uint32, sigLen int) []byte {
	k := make([]byte, 0, headSize+2+sigLen)
	k = append(k, Version, 0, 0, 0, Member, byte(id>>24), byte(id>>16), byte(id>>8), byte(id))
	k = append(k, bytes.Repeat([]byte{0xaa}, 32+1184)...)
	k = append(k, byte(sigLen>>8), byte(sigLen))
	return append(k, bytes.Repeat([]byte{0x55}, sigLen)...)
}

// bundleOf encodes keys as a bundle.
func bundleOf(keys ...[]byte) []byte {
	b := []byte{byte(len(keys) >> 8), byte(len(keys))}
	for _, k := range keys {
		b = append(b, byte(len(k)>>8), byte(len(k)))
		b = append(b, k...)
	}
	return b
}

// ids makes a bundle of prekeys with ids from..to.
func ids(from, to uint32) []byte {
	var ks [][]byte
	for id := from; id <= to; id++ {
		ks = append(ks, key(id, 120))
	}
	return bundleOf(ks...)
}

func TestParseRefuses(t *testing.T) {
	bad := func(f func(k []byte) []byte) []byte { return bundleOf(f(key(1, 120))) }
	for name, tc := range map[string]struct {
		data []byte
		want error
	}{
		"empty":          {nil, ErrMalformed},
		"no prekey":      {[]byte{0, 0}, ErrMalformed},
		"count too high": {append([]byte{0, 2}, ids(1, 1)[2:]...), ErrMalformed},
		"trailing bytes": {append(ids(1, 2), 0), ErrMalformed},
		"version 1":      {bad(func(k []byte) []byte { k[0] = 1; return k }), ErrMalformed},
		"member 1":       {bad(func(k []byte) []byte { k[4] = 1; return k }), ErrMalformed},
		"short key":      {bad(func(k []byte) []byte { return k[:headSize] }), ErrMalformed},
		"no signature":   {bundleOf(key(1, 0)), ErrMalformed},
		"long signature": {bundleOf(key(1, MaxSigBytes+1)), ErrMalformed},
		"sig len lies":   {bad(func(k []byte) []byte { k[headSize+1]--; return k }), ErrMalformed},
		"same id twice":  {bundleOf(key(7, 120), key(7, 121)), ErrMalformed},
		"too many":       {ids(1, 33), ErrTooMany},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := parse(tc.data, defaultMaxPerUser); !errors.Is(err, tc.want) {
				t.Fatalf("parse: %v, want %v", err, tc.want)
			}
		})
	}
	if ks, err := parse(bundleOf(key(1, MaxSigBytes), key(2, 1)), defaultMaxPerUser); err != nil || len(ks) != 2 {
		t.Fatalf("parse of the largest and smallest signatures: %d keys, %v", len(ks), err)
	}
}

func TestTakeOnce(t *testing.T) {
	s := New(Config{MaxHeldPerSender: 1000})
	data := ids(1, 32)
	if n, err := s.Replace("bob", "FP", data); n != 32 || err != nil {
		t.Fatalf("Replace: %d, %v", n, err)
	}
	var mu sync.Mutex
	got := map[uint32]int{}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for {
				k, err := s.Take("bob", fmt.Sprintf("sender%d", w%3))
				if errors.Is(err, ErrNone) {
					return
				}
				if err != nil || k.Fingerprint != "FP" || !bytes.Equal(k.Data, key(k.ID, 120)) {
					t.Errorf("Take: %v (id %d, fp %q)", err, k.ID, k.Fingerprint)
					return
				}
				mu.Lock()
				got[k.ID]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(got) != 32 {
		t.Fatalf("%d distinct prekeys handed out, want 32", len(got))
	}
	for id, n := range got {
		if n != 1 {
			t.Errorf("prekey %d handed out %d times", id, n)
		}
	}
	if left := s.IDs("bob"); len(left) != 0 {
		t.Fatalf("IDs after all were taken: %v", left)
	}
	if st := s.Stats(); st.Held != 0 || st.Taken != 32 || st.Empty < 8 {
		t.Fatalf("stats %+v", st)
	}
}

func TestHeldPerSender(t *testing.T) {
	s := New(Config{MaxHeldPerSender: 2, HoldFor: time.Hour})
	now := time.Unix(1e9, 0)
	s.now = func() time.Time { return now }
	s.Replace("bob", "FP", ids(1, 10))
	for range 2 {
		if _, err := s.Take("bob", "mallory"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Take("bob", "mallory"); !errors.Is(err, ErrHeld) {
		t.Fatalf("third take: %v, want ErrHeld", err)
	}
	if _, err := s.Take("bob", "alice"); err != nil {
		t.Fatalf("another sender: %v", err)
	}
	if _, err := s.Take("carol", "mallory"); !errors.Is(err, ErrNone) {
		t.Fatalf("a user without prekeys: %v, want ErrNone", err)
	}
	s.Release("bob", "alice") // alice's items read: mallory's hold stays
	if _, err := s.Take("bob", "mallory"); !errors.Is(err, ErrHeld) {
		t.Fatalf("after another sender's release: %v, want ErrHeld", err)
	}
	s.Release("bob", "mallory")
	if _, err := s.Take("bob", "mallory"); err != nil {
		t.Fatalf("after release: %v", err)
	}
	s.Take("bob", "mallory")
	now = now.Add(time.Hour)
	if _, err := s.Take("bob", "mallory"); err != nil {
		t.Fatalf("after HoldFor: %v", err)
	}
	if got, want := fmt.Sprint(s.IDs("bob")), "[7 8 9 10]"; got != want {
		t.Fatalf("IDs %s, want %s", got, want)
	}
	if st := s.Stats(); st.Refused != 2 {
		t.Fatalf("refused %d, want 2", st.Refused)
	}
}

func TestSenderRecordsBounded(t *testing.T) {
	s := New(Config{MaxSendersPerUser: 3, MaxPerUser: 10})
	s.Replace("bob", "FP", ids(1, 10))
	for i := range 10 {
		if _, err := s.Take("bob", fmt.Sprint("s", i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(s.byUser["bob"].holds); n != 3 {
		t.Fatalf("%d sender records, want 3", n)
	}
	if got, want := s.HeldBytes(), int64(3*HoldOverhead); got != want {
		t.Fatalf("HeldBytes %d, want %d", got, want)
	}
}

func TestReplaceAndBytes(t *testing.T) {
	s := New(Config{MaxPerUser: 4, MaxBytes: 5 * (MaxKeyBytes + PrekeyOverhead)})
	if _, err := s.Replace("bob", "FP", ids(1, 4)); err != nil {
		t.Fatal(err)
	}
	one := int64(len(key(1, 120)) + PrekeyOverhead)
	if got := s.HeldBytes(); got != 4*one {
		t.Fatalf("HeldBytes %d, want %d", got, 4*one)
	}
	// alice's bundle would pass MaxBytes; bob's replacement frees what it replaces.
	big := key(1, MaxSigBytes)
	if _, err := s.Replace("alice", "FA", bundleOf(big, big[:0:0], big, big)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("alice, malformed: %v", err)
	}
	if _, err := s.Replace("alice", "FA", bundleOf(key(1, MaxSigBytes), key(2, MaxSigBytes), key(3, MaxSigBytes), key(4, MaxSigBytes))); !errors.Is(err, ErrRelayFull) {
		t.Fatalf("alice: %v, want ErrRelayFull", err)
	}
	old := s.byUser["bob"].keys[3].data
	if _, err := s.Replace("bob", "FP2", ids(11, 14)); err != nil {
		t.Fatal(err)
	}
	if !allZero(old) {
		t.Fatal("a replaced prekey was not overwritten")
	}
	if got := fmt.Sprint(s.IDs("bob")); got != "[11 12 13 14]" {
		t.Fatalf("IDs %s", got)
	}
	if _, err := s.Replace("bob", "FP", ids(1, 5)); !errors.Is(err, ErrTooMany) {
		t.Fatalf("5 prekeys: %v, want ErrTooMany", err)
	}
	if got := fmt.Sprint(s.IDs("bob")); got != "[11 12 13 14]" {
		t.Fatalf("a refused bundle changed the old one: %s", got)
	}
	if got := s.HeldBytes(); got != 4*one {
		t.Fatalf("HeldBytes %d, want %d", got, 4*one)
	}
}

func TestWipeAndClose(t *testing.T) {
	s := New(Config{})
	s.Replace("bob", "FP", ids(1, 3))
	s.Replace("alice", "FA", ids(1, 3))
	s.Take("bob", "alice")
	bobs, alices := s.byUser["bob"].keys[0].data, s.byUser["alice"].keys[0].data
	s.Wipe("bob")
	if !allZero(bobs) || len(s.IDs("bob")) != 0 {
		t.Fatal("Wipe left bob's prekeys")
	}
	if allZero(alices) {
		t.Fatal("Wipe of bob touched alice's prekeys")
	}
	s.Close()
	if !allZero(alices) {
		t.Fatal("Close left a prekey")
	}
	if s.HeldBytes() != 0 || s.Stats().Held != 0 {
		t.Fatalf("after Close: %+v", s.Stats())
	}
	if _, err := s.Replace("bob", "FP", ids(1, 3)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Replace after Close: %v", err)
	}
	if _, err := s.Take("bob", "alice"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Take after Close: %v", err)
	}
	s.Close()
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return len(b) > 0
}

func TestConfigValidate(t *testing.T) {
	for name, c := range map[string]Config{
		"MaxPerUser":        {MaxPerUser: -1},
		"MaxBytes":          {MaxBytes: 100},
		"MaxHeldPerSender":  {MaxHeldPerSender: -1},
		"HoldFor":           {HoldFor: time.Millisecond},
		"MaxSendersPerUser": {MaxSendersPerUser: -1},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate accepted %+v", name, c)
		}
	}
	if err := (Config{}).Validate(); err != nil {
		t.Fatal(err)
	}
	if n := (Config{}).MaxBundleBytes(); n > 80<<10 {
		t.Fatalf("the default bundle (%d bytes) does not fit the accounts API's default body limit", n)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(ids(1, 2))
	f.Add(bundleOf(key(1, 1), key(1, 2)))
	f.Fuzz(func(t *testing.T, b []byte) {
		keys, err := parse(b, 1000)
		if err != nil {
			return
		}
		var ks [][]byte
		for _, k := range keys {
			ks = append(ks, k.data)
		}
		if !bytes.Equal(bundleOf(ks...), b) {
			t.Fatal("parse then encode changed the bundle")
		}
	})
}
