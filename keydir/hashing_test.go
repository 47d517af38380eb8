package keydir

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/cleanrelay/cleanrelay/internal/lowcpu"
)

// Under a login flood the queue for bcrypt is bounded: one caller too many is answered ErrBusy at once, and
// a queued one after MaxHashWait, instead of waiting behind everyone.
func TestHashQueueBounded(t *testing.T) {
	d, _ := newTestDir(t, func(c *Config) { c.MaxConcurrentHashes = 1; c.MaxHashQueue = 1; c.MaxHashWait = 200 * time.Millisecond })
	mustRegister(t, d, "alice")
	d.hashes.all <- struct{}{} // the flood holds the only slot
	queued := make(chan error, 1)
	go func() {
		_, _, err := d.Login(context.Background(), "alice", goodPassword)
		queued <- err
	}()
	for d.hashes.waitAll.Load() != 1 {
		time.Sleep(time.Millisecond)
	}
	if _, _, err := d.Login(context.Background(), "alice", goodPassword); !errors.Is(err, ErrBusy) {
		t.Fatalf("a login beyond the queue: %v, want ErrBusy", err)
	}
	if err := <-queued; !errors.Is(err, ErrBusy) {
		t.Fatalf("a queued login that got no slot: %v, want ErrBusy", err)
	}
	<-d.hashes.all
	if _, _, err := d.Login(context.Background(), "alice", goodPassword); err != nil {
		t.Fatalf("login once the slot is free: %v", err)
	}
	// A busy answer is not a failed attempt.
	if f := d.failures["alice"]; f != nil {
		t.Fatalf("failure record after busy answers: %+v", *f)
	}
}

// Logins of made-up names and registrations use at most half the slots: the rest stay free for real users.
func TestHashSlotsKeepRoomForAccounts(t *testing.T) {
	d, _ := newTestDir(t, func(c *Config) { c.MaxConcurrentHashes = 2; c.MaxHashWait = 100 * time.Millisecond })
	mustRegister(t, d, "alice")
	d.hashes.guest <- struct{}{} // a flood of made-up names holds the guest slot...
	d.hashes.all <- struct{}{}   // ...and the bcrypt slot it came with
	if _, _, err := d.Login(context.Background(), "nobody", "Wrong-h0rse"); !errors.Is(err, ErrBusy) {
		t.Fatalf("a made-up name during the flood: %v, want ErrBusy", err)
	}
	if _, err := d.Register(context.Background(), Registration{Username: "bob", FullName: "Bob", Password: goodPassword}); !errors.Is(err, ErrBusy) {
		t.Fatalf("a registration during the flood: %v, want ErrBusy", err)
	}
	if _, _, err := d.Login(context.Background(), "alice", goodPassword); err != nil {
		t.Fatalf("a real login during the flood: %v", err)
	}
}

// A flood of made-up logins keeps its queue for the guest slot full; a registration still waits its turn in its
// own queue and gets the slot when it comes free, instead of being answered busy at once every time.
func TestRegistrationQueuesBesideLoginFlood(t *testing.T) {
	d, _ := newTestDir(t, func(c *Config) { c.MaxConcurrentHashes = 2; c.MaxHashQueue = 2; c.MaxHashWait = 5 * time.Second })
	d.hashes.guest <- struct{}{} // the flood holds the guest slot
	flood := make(chan error, 2)
	for range 2 {
		go func() {
			_, _, err := d.Login(context.Background(), "nobody", "Wrong-h0rse")
			flood <- err
		}()
	}
	for d.hashes.waitUnknown.Load() != 2 {
		time.Sleep(time.Millisecond)
	}
	if _, _, err := d.Login(context.Background(), "nobody", "Wrong-h0rse"); !errors.Is(err, ErrBusy) {
		t.Fatalf("a made-up login beyond the full queue: %v, want ErrBusy", err)
	}
	registered := make(chan error, 1)
	go func() {
		_, err := d.Register(context.Background(), Registration{Username: "bob", FullName: "Bob", Password: goodPassword})
		registered <- err
	}()
	for d.hashes.waitRegister.Load() != 1 {
		select {
		case err := <-registered:
			t.Fatalf("a registration during a login flood was answered before it queued: %v", err)
		case <-time.After(time.Millisecond):
		}
	}
	<-d.hashes.guest // the flood's slot comes free: the queued logins, then the registration, take it in turn
	if err := <-registered; err != nil {
		t.Fatalf("a registration queued beside a login flood: %v", err)
	}
	for range 2 {
		if err := <-flood; !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("a queued made-up login: %v, want ErrBadCredentials", err)
		}
	}
}

// TestBcryptAtLowestPriority: a login's comparison and a registration's hash run on a thread at the lowest CPU
// priority (package lowcpu), so that a flood of them leaves the cores to relaying first.
func TestBcryptAtLowestPriority(t *testing.T) {
	base, ok := lowcpu.Priority()
	if !ok {
		t.Skip("thread priorities are Linux's")
	}
	if base == lowcpu.Nice {
		t.Skipf("the test runs at nice %d already", base)
	}
	d, _ := newTestDir(t, nil)
	var mu sync.Mutex
	var seen []int
	d.bcryptHook = func() {
		p, _ := lowcpu.Priority()
		mu.Lock()
		seen = append(seen, p)
		mu.Unlock()
	}
	mustRegister(t, d, "alice")
	if _, _, err := d.Login(context.Background(), "alice", "Wrong-h0rse"); err != ErrBadCredentials {
		t.Fatalf("login: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 || seen[0] != lowcpu.Nice || seen[1] != lowcpu.Nice {
		t.Errorf("bcrypt ran at nice %v (registration, login), want %d for both", seen, lowcpu.Nice)
	}
}
