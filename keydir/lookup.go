package keydir

import (
	"sort"
	"strings"
	"time"
)

// Account returns the account with this id, for its owner (GET /api/me).
func (d *Directory) Account(userID string) (Account, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	a := d.byID[userID]
	if a == nil {
		return Account{}, ErrNotFound
	}
	return a.public(), nil
}

// Stats are aggregate counters, safe to show an operator.
type Stats struct {
	Accounts          int
	Disabled          int
	WithKey           int
	RevokedTokens     int
	PendingChallenges int
	TrackedFailures   int
}

// Stats returns counts, never names.
func (d *Directory) Stats() Stats {
	d.mu.RLock()
	defer d.mu.RUnlock()
	s := Stats{Accounts: len(d.byID), RevokedTokens: len(d.revoked),
		PendingChallenges: len(d.challenges), TrackedFailures: len(d.failures)}
	for _, a := range d.byID {
		if a.disabled {
			s.Disabled++
		}
		if a.key != nil {
			s.WithKey++
		}
	}
	return s
}

// Profile is what any logged-in user may see about another.
type Profile struct {
	Username string
	FullName string
	Key      *KeyInfo // nil when no key is published
	Disabled bool
}

func (a *account) profile() Profile {
	p := Profile{Username: a.username, FullName: a.fullName, Disabled: a.disabled}
	if a.key != nil {
		k := *a.key
		p.Key = &k
	}
	return p
}

// User returns the profile of the user with this name (normalized first). Error:
// ErrNotFound (also for a name that cannot be valid).
func (d *Directory) User(username string) (Profile, error) {
	name, err := NormalizeUsername(username)
	if err != nil {
		return Profile{}, ErrNotFound
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	a := d.byName[name]
	if a == nil {
		return Profile{}, ErrNotFound
	}
	return a.profile(), nil
}

// UserID returns the account id of a username. Error: ErrNotFound.
func (d *Directory) UserID(username string) (string, error) {
	name, err := NormalizeUsername(username)
	if err != nil {
		return "", ErrNotFound
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	a := d.byName[name]
	if a == nil {
		return "", ErrNotFound
	}
	return a.id, nil
}

// Search returns up to limit profiles (at most Config.MaxSearchResults) whose
// username starts with prefix, in name order, for the user requesterID. Errors:
// ErrBadRequest for an empty or impossible prefix, ErrRateLimited when the
// requester searched too often, ErrNotFound for an unknown requester.
func (d *Directory) Search(requesterID, prefix string, limit int) ([]Profile, error) {
	p, err := normalizePrefix(prefix)
	if err != nil {
		return nil, err
	}
	if limit <= 0 || limit > d.cfg.MaxSearchResults {
		limit = d.cfg.MaxSearchResults
	}
	if err := d.Allow(requesterID, ActionSearch); err != nil {
		return nil, err
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.byID[requesterID] == nil {
		return nil, ErrNotFound
	}
	i := sort.SearchStrings(d.names, p)
	out := []Profile{}
	for ; i < len(d.names) && len(out) < limit && strings.HasPrefix(d.names[i], p); i++ {
		a := d.byName[d.names[i]]
		if a.disabled {
			continue
		}
		out = append(out, a.profile())
	}
	return out, nil
}

// bucket is a token bucket. Guarded by Directory.mu.
type bucket struct {
	tokens float64
	last   time.Time
}

func (b *bucket) take(now time.Time, burst int, every time.Duration) bool {
	if b.last.IsZero() {
		b.tokens = float64(burst)
	} else if every > 0 {
		b.tokens += float64(now.Sub(b.last)) / float64(every)
		if b.tokens > float64(burst) {
			b.tokens = float64(burst)
		}
	} else {
		b.tokens = float64(burst)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
