package keydir

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// hashSlots bound the bcrypt work. Of Config.MaxConcurrentHashes slots, at most half (at least one) serve
// registrations and logins of names that have no account, so a flood of made-up names, the cheapest flood
// there is, cannot starve the logins of real users. (Which names exist is no secret: any logged-in user can
// search for them.) A flood of real names is held back by their login backoff.
type hashSlots struct {
	all   chan struct{} // every bcrypt computation holds one
	guest chan struct{} // registrations and logins of unknown names hold one too
	// callers waiting for a slot of all, and of guest
	waitAll, waitGuest atomic.Int64
}

func newHashSlots(n int) hashSlots {
	return hashSlots{all: make(chan struct{}, n), guest: make(chan struct{}, max(1, n/2))}
}

// hashPassword runs bcrypt inside the concurrency bound.
func (d *Directory) hashPassword(ctx context.Context, p string) ([]byte, error) {
	if err := d.acquire(ctx, false); err != nil {
		return nil, err
	}
	defer d.release(false)
	h, err := bcrypt.GenerateFromPassword([]byte(p), d.cfg.BcryptCost)
	if err != nil {
		return nil, fmt.Errorf("failed to hash password: %w", err)
	}
	return h, nil
}

// acquire takes a bcrypt slot (and a guest slot first, unless known is set: a login of an existing account),
// waiting at most Config.MaxHashWait in queues of at most Config.MaxHashQueue: under a flood an answer,
// ErrBusy, comes at once instead of after everyone who queued before.
func (d *Directory) acquire(ctx context.Context, known bool) error {
	deadline := time.Now().Add(d.cfg.MaxHashWait)
	if !known {
		if err := d.take(ctx, d.hashes.guest, &d.hashes.waitGuest, deadline); err != nil {
			return err
		}
	}
	if err := d.take(ctx, d.hashes.all, &d.hashes.waitAll, deadline); err != nil {
		if !known {
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
func (d *Directory) release(known bool) {
	<-d.hashes.all
	if !known {
		<-d.hashes.guest
	}
}
