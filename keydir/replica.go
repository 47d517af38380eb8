package keydir

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"
)

// A Directory replicates through Changes: OnChange hands out every change made here, Apply takes in those
// made on another node, Snapshot gives all of them at once to a node that joins. Login failures, challenges
// and rate-limit buckets are not replicated: a cluster shares them through LoginGate, ChallengeGate and
// RateGate instead (docs/cluster.md §5).

// Change is one change of the directory, in a form another node applies: the whole state of one account after
// it changed (registered, key published or revoked, disabled, every token logged out), or one logged-out token.
// Exactly one field is set.
type Change struct {
	Account *AccountRecord `json:"a,omitempty"`
	Logout  *LoggedOut     `json:"l,omitempty"`
}

// AccountRecord is an account's replicated state. Version counts the account's changes (a Lamport clock: a
// node that applies a record moves its own count up to it), so a newer record replaces an older one; the
// withdrawals (Disabled, NotBefore, Banned) are kept from either side whatever the order.
type AccountRecord struct {
	ID        string    `json:"id"`
	Username  string    `json:"u"`
	FullName  string    `json:"n"`
	Email     string    `json:"e,omitempty"`
	Created   time.Time `json:"c"`
	Hash      []byte    `json:"h"`
	Disabled  bool      `json:"d,omitempty"`
	NotBefore time.Time `json:"nb,omitzero"`
	Key       *KeyInfo  `json:"k,omitempty"`
	Banned    []string  `json:"b,omitempty"`
	Version   uint64    `json:"v"`
}

// LoggedOut is one logged-out access token, denied until it expires.
type LoggedOut struct {
	TokenID  string    `json:"t"`
	UserID   string    `json:"id"`
	Username string    `json:"u"`
	Expires  time.Time `json:"x"`
}

// Applied says what Apply did.
type Applied struct {
	// Changed is false when the change was already known (or older than what is held).
	Changed bool
	// Dropped names an account of this node that lost its username to the change's account (two nodes
	// registered one name at once; the earlier registration wins everywhere). Its sessions should end.
	Dropped string
}

// ErrBadChange: a change from another node breaks the directory's rules (a malformed record, an account id
// that changed its username). Nothing was applied.
var ErrBadChange = errors.New("invalid replicated change")

// OnChange registers fn to be called with every change made on this node (not those applied from others).
// It runs synchronously in the call that made the change, after it and without the directory's lock.
func (d *Directory) OnChange(fn func(Change)) {
	d.mu.Lock()
	d.onChange = append(d.onChange, fn)
	d.mu.Unlock()
}

// changeLocked counts a change of a and returns it as a Change, with the callbacks to hand it to. d.mu is held.
func (d *Directory) changeLocked(a *account) (Change, []func(Change)) {
	a.version++
	return Change{Account: a.record()}, d.onChange
}

func emit(fns []func(Change), c Change) {
	for _, fn := range fns {
		fn(c)
	}
}

// record copies a's replicated state. d.mu is held.
func (a *account) record() *AccountRecord {
	r := &AccountRecord{ID: a.id, Username: a.username, FullName: a.fullName, Email: a.email, Created: a.created,
		Hash: bytes.Clone(a.hash), Disabled: a.disabled, NotBefore: a.notBefore, Version: a.version}
	if a.key != nil {
		k := *a.key
		r.Key = &k
	}
	for fp := range a.banned {
		r.Banned = append(r.Banned, fp)
	}
	sort.Strings(r.Banned)
	return r
}

// Snapshot returns the whole replicated state: every account and every live logged-out token.
func (d *Directory) Snapshot() []Change {
	now := d.cfg.Now()
	d.mu.RLock()
	defer d.mu.RUnlock()
	out := make([]Change, 0, len(d.byID)+len(d.revoked))
	for _, n := range d.names {
		out = append(out, Change{Account: d.byName[n].record()})
	}
	for id, exp := range d.revoked {
		if exp.After(now) {
			out = append(out, Change{Logout: &LoggedOut{TokenID: id, Expires: exp}})
		}
	}
	return out
}

// Apply applies a change made on another node. Withdrawals run the OnRevoke callbacks and key replacements
// the OnKeyChange ones, as when they are made here; OnChange callbacks do not run. Errors: ErrBadChange,
// ErrTooManyAccounts (a new account beyond Config.MaxAccounts: not applied).
func (d *Directory) Apply(c Change) (Applied, error) {
	switch {
	case c.Account != nil && c.Logout == nil:
		return d.applyAccount(c.Account)
	case c.Logout != nil && c.Account == nil:
		return Applied{Changed: d.applyLogout(c.Logout)}, nil
	}
	return Applied{}, fmt.Errorf("%w: not exactly one of account and logout", ErrBadChange)
}

func (d *Directory) applyLogout(l *LoggedOut) bool {
	now := d.cfg.Now()
	if l.TokenID == "" || !l.Expires.After(now) {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.revoked[l.TokenID]; ok {
		return false
	}
	d.revokeTokenLocked(l.TokenID, l.UserID, l.Expires, now)
	return true
}

// revokeTokenLocked denies a token until it expires. When the denylist is full of live entries it logs the
// whole account out instead (no per-token memory) and reports true. d.mu is held.
func (d *Directory) revokeTokenLocked(tokenID, userID string, expires, now time.Time) (wholeAccount bool) {
	if len(d.revoked) >= d.cfg.MaxRevokedTokens {
		for id, exp := range d.revoked {
			if !exp.After(now) {
				delete(d.revoked, id)
			}
		}
	}
	if len(d.revoked) < d.cfg.MaxRevokedTokens {
		d.revoked[tokenID] = expires
		return false
	}
	if a := d.byID[userID]; a != nil {
		a.notBefore = now.Truncate(time.Second)
	}
	return true
}

func checkRecord(r *AccountRecord) error {
	name, err := NormalizeUsername(r.Username)
	switch {
	case err != nil || name != r.Username:
		return fmt.Errorf("%w: username not in normal form", ErrBadChange)
	case r.ID == "" || len(r.ID) > 64:
		return fmt.Errorf("%w: account id", ErrBadChange)
	case len(r.Hash) == 0 || len(r.Hash) > 128:
		return fmt.Errorf("%w: password hash", ErrBadChange)
	case r.Key != nil && r.Key.Fingerprint == "":
		return fmt.Errorf("%w: key without fingerprint", ErrBadChange)
	}
	return nil
}

// wins reports whether registration r keeps a username (or its Skeleton) that account a also holds: the
// earlier registration, and of two at the same instant the smaller id, so every node picks the same one.
func wins(r *AccountRecord, a *account) bool {
	if !r.Created.Equal(a.created) {
		return r.Created.Before(a.created)
	}
	return r.ID < a.id
}

// keyAfter orders key states so that nodes holding two records of one version pick the same: no key first,
// then by publication time, then by fingerprint.
func keyAfter(x, y *KeyInfo) bool {
	switch {
	case x == nil:
		return false
	case y == nil:
		return true
	case !x.Published.Equal(y.Published):
		return x.Published.After(y.Published)
	}
	return x.Fingerprint > y.Fingerprint
}

func (d *Directory) applyAccount(r *AccountRecord) (Applied, error) {
	if err := checkRecord(r); err != nil {
		return Applied{}, err
	}
	var res Applied
	d.mu.Lock()
	a := d.byID[r.ID]
	if a == nil {
		if other := d.holderLocked(r.Username); other != nil {
			if !wins(r, other) {
				d.mu.Unlock()
				return res, nil
			}
			d.removeLocked(other)
			res.Dropped = other.username
		}
		if len(d.byID) >= d.cfg.MaxAccounts {
			d.mu.Unlock()
			return res, fmt.Errorf("%w: the relay holds %d accounts", ErrTooManyAccounts, d.cfg.MaxAccounts)
		}
		a = &account{id: r.ID, username: r.Username, fullName: r.FullName, email: r.Email, created: r.Created,
			hash: bytes.Clone(r.Hash)}
		d.byName[a.username] = a
		d.bySkeleton[Skeleton(a.username)] = a
		d.byID[a.id] = a
		d.held += accountBytes(a)
		i, _ := slices.BinarySearch(d.names, a.username)
		d.names = slices.Insert(d.names, i, a.username)
		res.Changed = true
	} else if a.username != r.Username {
		d.mu.Unlock()
		return Applied{}, fmt.Errorf("%w: an account id changed its username", ErrBadChange)
	}
	before := accountBytes(a) + int64(len(a.banned))*bannedBytes
	wasDisabled, oldKey, oldNotBefore := a.disabled, a.key, a.notBefore
	if r.Version > a.version || r.Version == a.version && keyAfter(r.Key, a.key) {
		a.key = nil
		if r.Key != nil {
			k := *r.Key
			a.key = &k
		}
		a.hash = bytes.Clone(r.Hash)
	}
	a.version = max(a.version, r.Version)
	a.disabled = a.disabled || r.Disabled
	if r.NotBefore.After(a.notBefore) {
		a.notBefore = r.NotBefore
	}
	for _, fp := range r.Banned {
		if a.banned == nil {
			a.banned = make(map[string]bool)
		}
		a.banned[fp] = true
	}
	if a.key != nil && a.banned[a.key.Fingerprint] {
		a.key = nil
	}
	if a.disabled && !wasDisabled {
		for _, t := range a.chals {
			delete(d.challenges, t)
		}
		a.chals = nil
	}
	d.held += accountBytes(a) + int64(len(a.banned))*bannedBytes - before
	withdrawn := a.disabled && !wasDisabled || oldKey != nil && a.key == nil || a.notBefore.After(oldNotBefore)
	replaced := oldKey != nil && a.key != nil && oldKey.Fingerprint != a.key.Fingerprint
	res.Changed = res.Changed || withdrawn || replaced || oldKey == nil && a.key != nil
	onRevoke, onKey, id := d.onRevoke, d.onKey, a.id
	d.mu.Unlock()
	if withdrawn {
		d.notify(onRevoke, id)
	} else if replaced {
		d.notify(onKey, id)
	}
	return res, nil
}

// holderLocked returns the account that holds name or a name that looks like it. d.mu is held.
func (d *Directory) holderLocked(name string) *account {
	if a := d.byName[name]; a != nil {
		return a
	}
	return d.bySkeleton[Skeleton(name)]
}

// removeLocked forgets account a entirely. d.mu is held.
func (d *Directory) removeLocked(a *account) {
	delete(d.byName, a.username)
	delete(d.bySkeleton, Skeleton(a.username))
	delete(d.byID, a.id)
	if i, ok := slices.BinarySearch(d.names, a.username); ok {
		d.names = slices.Delete(d.names, i, i+1)
	}
	for _, t := range a.chals {
		delete(d.challenges, t)
	}
	d.held -= accountBytes(a) + int64(len(a.banned))*bannedBytes
}
