package keydir

import (
	"fmt"
	"time"
)

// Action names a per-account rate limit that Allow applies (searches have their own, inside Search).
type Action int

const (
	// ActionKeyLookup is fetching another user's published key: Config.KeyLookupBurst and
	// Config.KeyLookupInterval.
	ActionKeyLookup Action = iota + 1
	// ActionDialog is opening a dialog with another user (which notifies that user): Config.DialogBurst
	// and Config.DialogInterval.
	ActionDialog
)

// Allow takes one action of kind act from the account's bucket. Errors: ErrRateLimited (the account did
// this too often; the message says how often it may), ErrNotFound (no such account), ErrBadRequest (an
// unknown action).
func (d *Directory) Allow(userID string, act Action) error {
	var burst int
	var every time.Duration
	switch act {
	case ActionKeyLookup:
		burst, every = d.cfg.KeyLookupBurst, d.cfg.KeyLookupInterval
	case ActionDialog:
		burst, every = d.cfg.DialogBurst, d.cfg.DialogInterval
	default:
		return fmt.Errorf("%w: unknown rate-limited action", ErrBadRequest)
	}
	now := d.cfg.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	a := d.byID[userID]
	if a == nil {
		return ErrNotFound
	}
	b := &a.keyLookups
	if act == ActionDialog {
		b = &a.dialogs
	}
	if !b.take(now, burst, every) {
		return fmt.Errorf("%w: at most %d at once, then one every %v", ErrRateLimited, burst, every)
	}
	return nil
}
