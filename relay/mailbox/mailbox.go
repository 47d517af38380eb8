// Package mailbox holds the dialog messages of recipients who are away, in memory only, bounded, and
// overwrites each one when it leaves: acknowledged, expired, wiped or at Close.
//
// An item is opaque ciphertext (exactly the frame payload a client would have sent into the dialog room),
// stamped with its sender by the caller (the relay takes it from the logged-in session, never from the
// client) and kept until its recipient acknowledges it or its time to live runs out. Nothing here touches a
// socket or a disk; docs/accounts.md (§Mailbox) is the HTTP API on top of it.
package mailbox

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Config holds the mailbox's limits. The zero value of a field means its default.
type Config struct {
	// MaxTTL is the longest time to live a sender may ask for; a sender that asks for none gets it. A restart
	// of the relay loses every item whatever its time to live. Optional; default 168h (7 days).
	MaxTTL time.Duration

	// MaxPerRecipient bounds the items waiting for one recipient (from all senders). Optional; default 500.
	MaxPerRecipient int

	// MaxBytesPerRecipient bounds the bytes waiting for one recipient (from all senders), counted by buffer
	// capacity plus ItemOverhead per item. Optional; default 16 MiB.
	MaxBytesPerRecipient int64

	// MaxBytes bounds the bytes the whole mailbox holds, counted like MaxBytesPerRecipient. Optional; default
	// 256 MiB. It is also counted against the relay's memory budget.
	MaxBytes int64

	// MaxItemBytes bounds one item's ciphertext: a dialog frame payload. Optional; default 64 KiB (the
	// relay's default frame limit).
	MaxItemBytes int
}

// Defaults of Config, written once: the flags of cmd/cleanrelay take theirs from WithDefaults.
const (
	defaultMaxTTL               = 7 * 24 * time.Hour
	defaultMaxPerRecipient      = 500
	defaultMaxBytesPerRecipient = 16 << 20
	defaultMaxBytes             = 256 << 20
	defaultMaxItemBytes         = 64 << 10
)

// ItemOverhead is what one item costs beyond its ciphertext (its record, id and names), counted in every
// bound and in HeldBytes.
const ItemOverhead = 160

// sweepEvery is how often expired items are looked for across the whole mailbox; an item is never handed
// out after its expiry, whatever the sweep.
const sweepEvery = time.Minute

// maxTombstonesPerSender bounds the undeliverable reports kept for one sender.
const maxTombstonesPerSender = 256

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.MaxTTL == 0 {
		c.MaxTTL = defaultMaxTTL
	}
	if c.MaxPerRecipient == 0 {
		c.MaxPerRecipient = defaultMaxPerRecipient
	}
	if c.MaxBytesPerRecipient == 0 {
		c.MaxBytesPerRecipient = defaultMaxBytesPerRecipient
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = defaultMaxBytes
	}
	if c.MaxItemBytes == 0 {
		c.MaxItemBytes = defaultMaxItemBytes
	}
	return c
}

// Validate reports a limit out of range, naming its field.
func (c Config) Validate() error {
	c = c.WithDefaults()
	switch {
	case c.MaxTTL < time.Second:
		return fmt.Errorf("mailbox MaxTTL %v: must be at least 1s", c.MaxTTL)
	case c.MaxPerRecipient < 1:
		return fmt.Errorf("mailbox MaxPerRecipient %d: must be at least 1", c.MaxPerRecipient)
	case c.MaxItemBytes < 1:
		return fmt.Errorf("mailbox MaxItemBytes %d: must be at least 1", c.MaxItemBytes)
	case c.MaxBytesPerRecipient < int64(c.MaxItemBytes)+ItemOverhead:
		return fmt.Errorf("mailbox MaxBytesPerRecipient %d: must hold at least one item of MaxItemBytes", c.MaxBytesPerRecipient)
	case c.MaxBytes < c.MaxBytesPerRecipient:
		return fmt.Errorf("mailbox MaxBytes %d: must be at least MaxBytesPerRecipient", c.MaxBytes)
	}
	return nil
}

// Errors of Put. The caller branches on them; nothing already held is dropped by a refusal.
var (
	ErrTooLarge  = errors.New("the message is larger than the mailbox takes")
	ErrBadTTL    = errors.New("the time to live is out of range")
	ErrFull      = errors.New("the recipient's mailbox is full; nothing waiting was dropped")
	ErrRelayFull = errors.New("the relay's mailbox is full; try again later")
	ErrClosed    = errors.New("the mailbox is closed")
)

// Why an item was wiped before its recipient read it, as reported to its sender.
const (
	ReasonKeyChanged = "key_changed" // the recipient published a new key: the item was for the old one
	ReasonRevoked    = "revoked"     // the recipient's key was revoked or its account disabled
)

// item is one waiting message. data is the store's own buffer, overwritten when the item leaves.
type item struct {
	id      string
	from    string
	data    []byte
	sent    time.Time
	expires time.Time
	quiet   bool
}

func (it *item) cost() int64 { return int64(cap(it.data)) + ItemOverhead }

// queue is what waits for one recipient, in arrival order.
type queue struct {
	items []*item
	bytes int64
}

// Undeliverable reports to a sender that an item it left was wiped unread.
type Undeliverable struct {
	To, ID, Reason string
	expires        time.Time
}

// Store is the mailbox. Its methods are safe for concurrent use.
type Store struct {
	cfg Config // static after construction

	mu sync.Mutex
	// Guarded by mu.
	byTo   map[string]*queue
	tombs  map[string][]Undeliverable // sender → its undeliverable reports
	bytes  int64
	closed bool
	sweep  *time.Timer

	held      atomic.Int64 // items held now
	heldBytes atomic.Int64 // bytes held now (mirrors bytes, for HeldBytes without the lock)
	delivered atomic.Uint64
	expired   atomic.Uint64
	wiped     atomic.Uint64
}

// New makes an empty mailbox with cfg's limits (defaults filled in). It panics on a config that Validate
// refuses: the caller validates first.
func New(cfg Config) *Store {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	s := &Store{cfg: cfg, byTo: make(map[string]*queue), tombs: make(map[string][]Undeliverable)}
	s.sweep = time.AfterFunc(sweepEvery, s.sweepAll)
	return s
}

// Config returns the mailbox's limits, defaults filled in.
func (s *Store) Config() Config { return s.cfg }

// Put leaves data from sender from for recipient to, for ttl (0: MaxTTL). The store takes data over: it
// is overwritten when the item leaves, and when Put refuses it. quiet marks an item that is no message of
// its own (a file chunk, a receipt): it is not counted as unread. Errors: ErrTooLarge, ErrBadTTL, ErrFull,
// ErrRelayFull, ErrClosed; a refusal drops nothing already held.
func (s *Store) Put(from, to string, data []byte, ttl time.Duration, quiet bool) (id string, expires time.Time, err error) {
	switch {
	case len(data) == 0 || len(data) > s.cfg.MaxItemBytes:
		clear(data)
		return "", time.Time{}, ErrTooLarge
	case ttl < 0 || ttl > s.cfg.MaxTTL:
		clear(data)
		return "", time.Time{}, ErrBadTTL
	case ttl == 0:
		ttl = s.cfg.MaxTTL
	}
	var raw [12]byte
	rand.Read(raw[:])
	now := time.Now()
	it := &item{id: base64.RawURLEncoding.EncodeToString(raw[:]), from: from, data: data, sent: now, expires: now.Add(ttl), quiet: quiet}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		clear(data)
		return "", time.Time{}, ErrClosed
	}
	q := s.byTo[to]
	if q != nil {
		s.expireLocked(to, q, now)
		q = s.byTo[to]
	}
	cost := it.cost()
	switch {
	case q != nil && (len(q.items) >= s.cfg.MaxPerRecipient || q.bytes+cost > s.cfg.MaxBytesPerRecipient):
		clear(data)
		return "", time.Time{}, ErrFull
	case s.bytes+cost > s.cfg.MaxBytes:
		clear(data)
		return "", time.Time{}, ErrRelayFull
	}
	if q == nil {
		q = &queue{}
		s.byTo[to] = q
	}
	q.items = append(q.items, it)
	q.bytes += cost
	s.addLocked(1, cost)
	return it.id, it.expires, nil
}

// Waiting is what waits for a recipient from one sender.
type Waiting struct {
	From   string
	Unread int // items that are messages of their own (not quiet)
	Items  int // every item, quiet ones too
}

// Summary returns, per sender in order of their oldest waiting item, what waits for to.
func (s *Store) Summary(to string) []Waiting {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.byTo[to]
	if q == nil {
		return nil
	}
	s.expireLocked(to, q, time.Now())
	var out []Waiting
	at := map[string]int{}
	for _, it := range q.items {
		i, ok := at[it.from]
		if !ok {
			i = len(out)
			at[it.from] = i
			out = append(out, Waiting{From: it.from})
		}
		out[i].Items++
		if !it.quiet {
			out[i].Unread++
		}
	}
	return out
}

// Visit calls fn, in arrival order, for the items from sender from waiting for to, until fn returns false.
// fn runs under the store's lock and must not keep data: it is overwritten when the item leaves.
func (s *Store) Visit(to, from string, fn func(id string, sent, expires time.Time, data []byte) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.byTo[to]
	if q == nil {
		return
	}
	s.expireLocked(to, q, time.Now())
	for _, it := range q.items {
		if it.from == from && !fn(it.id, it.sent, it.expires, it.data) {
			return
		}
	}
}

// Ack removes and overwrites the items with the given ids from sender from waiting for to, and returns how
// many it removed. Unknown ids (already acknowledged, expired or wiped) are no error: Ack may be repeated.
func (s *Store) Ack(to, from string, ids []string) int {
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.byTo[to]
	if q == nil {
		return 0
	}
	n := s.removeLocked(to, q, func(it *item) bool { return it.from == from && want[it.id] })
	s.delivered.Add(uint64(n))
	return n
}

// WipeTo overwrites everything waiting for to (its key changed, or was revoked) and leaves each sender an
// Undeliverable report with reason. It returns the senders, each once.
func (s *Store) WipeTo(to, reason string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.byTo[to]
	if q == nil {
		return nil
	}
	var senders []string
	seen := map[string]bool{}
	n := s.removeLocked(to, q, func(it *item) bool {
		if !seen[it.from] {
			seen[it.from] = true
			senders = append(senders, it.from)
		}
		if !it.quiet {
			s.tombLocked(it.from, Undeliverable{To: to, ID: it.id, Reason: reason, expires: it.expires})
		}
		return true
	})
	s.wiped.Add(uint64(n))
	return senders
}

// WipeFrom overwrites everything user left for others (its account was disabled or its key revoked) and
// returns the recipients, each once.
func (s *Store) WipeFrom(user string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var to []string
	for r, q := range s.byTo {
		if n := s.removeLocked(r, q, func(it *item) bool { return it.from == user }); n > 0 {
			s.wiped.Add(uint64(n))
			to = append(to, r)
		}
	}
	delete(s.tombs, user)
	return to
}

// Undeliverables returns the reports of items sender left that were wiped unread. A report is kept until
// the item would have expired, so that a sender who was away learns it too; reading does not remove it.
func (s *Store) Undeliverables(sender string) []Undeliverable {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	t := s.tombs[sender][:0]
	for _, u := range s.tombs[sender] {
		if now.Before(u.expires) {
			t = append(t, u)
		}
	}
	if len(t) == 0 {
		delete(s.tombs, sender)
		return nil
	}
	s.tombs[sender] = t
	return append([]Undeliverable(nil), t...)
}

// Peers returns the users with whom user has something in the mailbox, either way.
func (s *Store) Peers(user string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	var out []string
	add := func(u string) {
		if u != user && !seen[u] {
			seen[u] = true
			out = append(out, u)
		}
	}
	if q := s.byTo[user]; q != nil {
		for _, it := range q.items {
			add(it.from)
		}
	}
	for r, q := range s.byTo {
		for _, it := range q.items {
			if it.from == user {
				add(r)
				break
			}
		}
	}
	return out
}

// Close overwrites every item and refuses new ones. It is safe to call more than once.
func (s *Store) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.sweep.Stop()
	for to, q := range s.byTo {
		s.wiped.Add(uint64(s.removeLocked(to, q, func(*item) bool { return true })))
	}
	clear(s.tombs)
}

// HeldBytes is what the mailbox holds now, in the bytes its bounds count. It does not block: the relay's
// memory budget asks it (relay.Config.ExtraHeld).
func (s *Store) HeldBytes() int64 { return s.heldBytes.Load() }

// Stats are the mailbox's aggregate counters: no user, no id.
type Stats struct {
	Held      int64  // items waiting now
	Bytes     int64  // bytes held now (HeldBytes)
	Delivered uint64 // items acknowledged by their recipient since start
	Expired   uint64 // items whose time to live ran out since start
	Wiped     uint64 // items wiped unread since start: key change, revocation, disabled account, Close
}

// Stats returns the counters.
func (s *Store) Stats() Stats {
	return Stats{Held: s.held.Load(), Bytes: s.heldBytes.Load(), Delivered: s.delivered.Load(),
		Expired: s.expired.Load(), Wiped: s.wiped.Load()}
}

// sweepAll drops the expired items of every recipient, then runs again after sweepEvery.
func (s *Store) sweepAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	now := time.Now()
	for to, q := range s.byTo {
		s.expireLocked(to, q, now)
	}
	for u, t := range s.tombs {
		keep := t[:0]
		for _, x := range t {
			if now.Before(x.expires) {
				keep = append(keep, x)
			}
		}
		if len(keep) == 0 {
			delete(s.tombs, u)
		} else {
			s.tombs[u] = keep
		}
	}
	s.sweep.Reset(sweepEvery)
}

// expireLocked drops and overwrites q's items whose time is up.
func (s *Store) expireLocked(to string, q *queue, now time.Time) {
	s.expired.Add(uint64(s.removeLocked(to, q, func(it *item) bool { return !now.Before(it.expires) })))
}

// removeLocked overwrites and removes q's items that gone selects, keeping the others in order, drops q when
// it is empty, and returns how many it removed.
func (s *Store) removeLocked(to string, q *queue, gone func(*item) bool) int {
	keep, n := q.items[:0], 0
	for _, it := range q.items {
		if !gone(it) {
			keep = append(keep, it)
			continue
		}
		clear(it.data)
		cost := it.cost()
		it.data = nil
		q.bytes -= cost
		s.addLocked(-1, -cost)
		n++
	}
	clear(q.items[len(keep):]) // no pointer to a removed item stays behind the slice's end
	q.items = keep
	if len(q.items) == 0 {
		delete(s.byTo, to)
	}
	return n
}

func (s *Store) addLocked(items, bytes int64) {
	s.bytes += bytes
	s.held.Add(items)
	s.heldBytes.Add(bytes)
}

// tombLocked keeps an undeliverable report for sender, dropping its oldest beyond the bound.
func (s *Store) tombLocked(sender string, u Undeliverable) {
	t := append(s.tombs[sender], u)
	if len(t) > maxTombstonesPerSender {
		t = append(t[:0], t[len(t)-maxTombstonesPerSender:]...)
	}
	s.tombs[sender] = t
}
