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
	// ActionSearch is a search (Search takes it itself): Config.SearchBurst and Config.SearchInterval.
	ActionSearch
)

// RateGate takes actions from the accounts' buckets in place of this directory, so that several nodes can
// share one bucket per account (docs/cluster.md §5). TakeAction answers as TakeAction of a Directory does.
type RateGate interface {
	TakeAction(userID string, act Action) error
}

// SetRateGate makes Allow and Search ask g instead of this directory's own buckets. Call it once, before
// serving.
func (d *Directory) SetRateGate(g RateGate) {
	d.mu.Lock()
	d.rateGate = g
	d.mu.Unlock()
}

// Allow takes one action of kind act from the account's bucket. Errors: ErrRateLimited (the account did
// this too often; the message says how often it may), ErrNotFound (no such account), ErrBadRequest (an
// unknown action).
func (d *Directory) Allow(userID string, act Action) error {
	d.mu.RLock()
	g := d.rateGate
	d.mu.RUnlock()
	if g != nil {
		return g.TakeAction(userID, act)
	}
	return d.TakeAction(userID, act)
}

// TakeAction takes one action of kind act from the account's bucket in this directory (what a RateGate that
// decides here calls). Errors as Allow's.
func (d *Directory) TakeAction(userID string, act Action) error {
	var burst int
	var every time.Duration
	switch act {
	case ActionKeyLookup:
		burst, every = d.cfg.KeyLookupBurst, d.cfg.KeyLookupInterval
	case ActionDialog:
		burst, every = d.cfg.DialogBurst, d.cfg.DialogInterval
	case ActionSearch:
		burst, every = d.cfg.SearchBurst, d.cfg.SearchInterval
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
	switch act {
	case ActionDialog:
		b = &a.dialogs
	case ActionSearch:
		b = &a.search
	}
	if !b.take(now, burst, every) {
		if act == ActionSearch {
			return fmt.Errorf("%w: at most one search every %v", ErrRateLimited, every)
		}
		return fmt.Errorf("%w: at most %d at once, then one every %v", ErrRateLimited, burst, every)
	}
	return nil
}
