package keydir

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/cleanrelay/cleanrelay/internal/lowcpu"
	"golang.org/x/crypto/bcrypt"
)

// hashSlots bound the bcrypt work. Of Config.MaxConcurrentHashes slots, at most half (at least one) serve
// registrations and logins of names that have no account, so a flood of made-up names, the cheapest flood
// there is, cannot starve the logins of real users. (Which names exist is no secret: any logged-in user can
// search for them.) A flood of real names is held back by their login backoff. Registrations and logins of
// unknown names wait in queues of their own for the guest slots, so a flood of made-up logins, which keeps its
// queue full, does not answer every registration busy: a registration waits its turn beside it.
//
// Every bcrypt computation runs on a worker thread at the lowest CPU priority (package lowcpu): the
// slots bound how much of the machine hashing may take; the priority gives relaying the cores first.
type hashSlots struct {
	all   chan struct{} // every bcrypt computation holds one
	guest chan struct{} // registrations and logins of unknown names hold one too
	// callers waiting for a slot of all, and for one of guest: logins of unknown names, registrations
	waitAll, waitUnknown, waitRegister atomic.Int64
}

// hashKind is who asks for a bcrypt slot.
type hashKind int

const (
	hashKnown    hashKind = iota // a login of an existing account
	hashUnknown                  // a login of a name that has no account
	hashRegister                 // a registration
)

func newHashSlots(n int) hashSlots {
	return hashSlots{all: make(chan struct{}, n), guest: make(chan struct{}, max(1, n/2))}
}

// hashPassword runs bcrypt inside the concurrency bound, at the lowest CPU priority (as Login does).
func (d *Directory) hashPassword(ctx context.Context, p string) ([]byte, error) {
	if err := d.acquire(ctx, hashRegister); err != nil {
		return nil, err
	}
	defer d.release(hashRegister)
	var h []byte
	var err error
	d.lowPriority(func() { h, err = bcrypt.GenerateFromPassword([]byte(p), d.cfg.BcryptCost) })
	if err != nil {
		return nil, fmt.Errorf("failed to hash password: %w", err)
	}
	return h, nil
}

// lowPriority runs one bcrypt computation, f, on a worker thread at the lowest CPU priority.
func (d *Directory) lowPriority(f func()) {
	lowcpu.Run(func() {
		if d.bcryptHook != nil {
			d.bcryptHook()
		}
		f()
	})
}

// acquire takes a bcrypt slot (and a guest slot first, unless it is a login of an existing account), waiting at
// most Config.MaxHashWait in queues of at most Config.MaxHashQueue: under a flood an answer, ErrBusy, comes at
// once instead of after everyone who queued before.
func (d *Directory) acquire(ctx context.Context, kind hashKind) error {
	deadline := time.Now().Add(d.cfg.MaxHashWait)
	if kind != hashKnown {
		waiting := &d.hashes.waitUnknown
		if kind == hashRegister {
			waiting = &d.hashes.waitRegister
		}
		if err := d.take(ctx, d.hashes.guest, waiting, deadline); err != nil {
			return err
		}
	}
	if err := d.take(ctx, d.hashes.all, &d.hashes.waitAll, deadline); err != nil {
		if kind != hashKnown {
			<-d.hashes.guest
		}
		return err
	}
	return nil
}

// take takes a slot of sem, waiting in a queue counted by waiting until deadline.
func (d *Directory) take(ctx context.Context, sem chan struct{}, waiting *atomic.Int64, deadline time.Time) error {
	select {
	case sem <- struct{}{}:
		return nil
	default:
	}
	if waiting.Add(1) > int64(d.cfg.MaxHashQueue) {
		waiting.Add(-1)
		return fmt.Errorf("%w: retry in a second", ErrBusy)
	}
	defer waiting.Add(-1)
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case sem <- struct{}{}:
		return nil
	case <-t.C:
		return fmt.Errorf("%w: retry in a second", ErrBusy)
	case <-ctx.Done():
		return fmt.Errorf("failed to wait for a password hashing slot: %w", ctx.Err())
	}
}

// release gives back what acquire took.
func (d *Directory) release(kind hashKind) {
	<-d.hashes.all
	if kind != hashKnown {
		<-d.hashes.guest
	}
}
