package keydir

import (
	"context"
	"errors"
	"testing"
	"time"
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
