// Package prekeys holds the one-time prekeys that users publish for offline delivery (docs/e2e.md §9), in
// memory only, bounded, and hands each one out at most once.
//
// A prekey is public: an X25519 and an ML-KEM-768 public key signed by its owner's OpenPGP key. The store
// checks its structure, not its signature (the sender checks that against the key it pinned). What a
// prekey store must guard against is a stranger draining someone's prekeys, which delays the owner's
// offline messages: a sender may hold at most Config.MaxHeldPerSender of one owner's prekeys until the
// owner reads what that sender left (Release) or Config.HoldFor passes. Nothing here touches a socket or a
// disk; docs/accounts.md (§Prekeys) is the HTTP API on top of it.
package prekeys

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Config holds the store's limits. The zero value of a field means its default.
type Config struct {
	// MaxPerUser bounds the prekeys one user publishes at once (one bundle). Optional; default 32: a bundle
	// of 32 prekeys signed by RSA-4096 keys fits the accounts API's default body limit of 80 KiB.
	MaxPerUser int

	// MaxBytes bounds the bytes the whole store holds (prekeys plus PrekeyOverhead each, and HoldOverhead
	// per sender record). Optional; default 64 MiB. It is also counted against the relay's memory budget.
	MaxBytes int64

	// MaxHeldPerSender bounds the prekeys of one owner that one sender may hold: taken, and not yet
	// released by the owner reading that sender's mailbox items. Optional; default 8.
	MaxHeldPerSender int

	// HoldFor is how long a taken prekey counts against its sender when the owner never reads what it
	// left (the mailbox's longest time to live: after it, the item is gone anyway). Optional; default 168h.
	HoldFor time.Duration

	// MaxSendersPerUser bounds the sender records kept for one owner; a new one beyond it drops the
	// oldest. Optional; default 256.
	MaxSendersPerUser int
}

// Defaults of Config, written once: the flags of cmd/cleanrelay take theirs from WithDefaults.
const (
	defaultMaxPerUser        = 32
	defaultMaxBytes          = 64 << 20
	defaultMaxHeldPerSender  = 8
	defaultHoldFor           = 7 * 24 * time.Hour
	defaultMaxSendersPerUser = 256
)

// The structure of a prekey (docs/e2e.md §9):
//
//	VERSION(1) ‖ u32 member (2) ‖ u32 id ‖ X25519 public(32) ‖ ML-KEM-768 ek(1184) ‖ u16 len ‖ sig(len)
const (
	Version      = 0x02
	Member       = 2
	headSize     = 1 + 4 + 4 + 32 + 1184
	MaxSigBytes  = 1024 // an OpenPGP signature by RSA-4096 is about 540 bytes, by Ed25519 about 120
	MinSigBytes  = 1
	MaxKeyBytes  = headSize + 2 + MaxSigBytes
	minKeyBytes  = headSize + 2 + MinSigBytes
	bundleHeader = 2
)

// PrekeyOverhead is what one prekey costs beyond its bytes; HoldOverhead is one sender record's cost.
const (
	PrekeyOverhead = 64
	HoldOverhead   = 96
)

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.MaxPerUser == 0 {
		c.MaxPerUser = defaultMaxPerUser
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = defaultMaxBytes
	}
	if c.MaxHeldPerSender == 0 {
		c.MaxHeldPerSender = defaultMaxHeldPerSender
	}
	if c.HoldFor == 0 {
		c.HoldFor = defaultHoldFor
	}
	if c.MaxSendersPerUser == 0 {
		c.MaxSendersPerUser = defaultMaxSendersPerUser
	}
	return c
}

// Validate reports a limit out of range, naming its field.
func (c Config) Validate() error {
	c = c.WithDefaults()
	switch {
	case c.MaxPerUser < 1 || c.MaxPerUser > 1000:
		return fmt.Errorf("prekeys MaxPerUser %d: must be from 1 to 1000", c.MaxPerUser)
	case c.MaxBytes < int64(c.MaxPerUser)*(MaxKeyBytes+PrekeyOverhead):
		return fmt.Errorf("prekeys MaxBytes %d: must hold at least one full bundle", c.MaxBytes)
	case c.MaxHeldPerSender < 1:
		return fmt.Errorf("prekeys MaxHeldPerSender %d: must be at least 1", c.MaxHeldPerSender)
	case c.HoldFor < time.Second:
		return fmt.Errorf("prekeys HoldFor %v: must be at least 1s", c.HoldFor)
	case c.MaxSendersPerUser < 1:
		return fmt.Errorf("prekeys MaxSendersPerUser %d: must be at least 1", c.MaxSendersPerUser)
	}
	return nil
}

// MaxBundleBytes is the largest bundle a store with cfg takes.
func (c Config) MaxBundleBytes() int {
	return bundleHeader + c.WithDefaults().MaxPerUser*(2+MaxKeyBytes)
}

// Errors of Replace and Take. The caller branches on them.
var (
	ErrMalformed = errors.New("the bundle is malformed")
	ErrTooMany   = errors.New("the bundle holds more prekeys than the relay keeps per user")
	ErrRelayFull = errors.New("the relay holds as many prekeys as it may; try again later")
	ErrNone      = errors.New("no prekey is left")
	ErrHeld      = errors.New("the sender holds as many of this user's prekeys as it may until they are read")
	ErrClosed    = errors.New("the prekey store is closed")
)

// Prekey is one prekey as it is handed out. Data is the caller's copy.
type Prekey struct {
	ID          uint32
	Fingerprint string // of the owner's key when the bundle was published
	Data        []byte
}

type prekey struct {
	id   uint32
	data []byte // the store's own buffer, overwritten when it leaves
}

// hold counts the prekeys of one owner that one sender took and the owner has not released.
type hold struct {
	n     int
	since time.Time // the first of them
}

// bundle is what one owner published.
type bundle struct {
	fp    string
	keys  []prekey // in the order published; taken from the front
	holds map[string]*hold
	bytes int64
}

// Store holds every user's prekeys. Its methods are safe for concurrent use.
type Store struct {
	cfg Config           // static after construction
	now func() time.Time // static after construction; tests replace it

	mu sync.Mutex
	// Guarded by mu.
	byUser map[string]*bundle
	bytes  int64
	closed bool

	held      atomic.Int64 // prekeys held now
	heldBytes atomic.Int64 // mirrors bytes, for HeldBytes without the lock
	taken     atomic.Uint64
	empty     atomic.Uint64
	refused   atomic.Uint64
	wiped     atomic.Uint64
}

// New makes an empty store with cfg's limits (defaults filled in). It panics on a config that Validate
// refuses: the caller validates first.
func New(cfg Config) *Store {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	return &Store{cfg: cfg, now: time.Now, byUser: make(map[string]*bundle)}
}

// Config returns the store's limits, defaults filled in.
func (s *Store) Config() Config { return s.cfg }

// parse checks a bundle's structure and returns its prekeys, each in a fresh buffer:
//
//	bundle = u16 count ‖ count × (u16 len ‖ prekey)
//
// Every prekey must have version 2, member 2, a signature of 1 to MaxSigBytes bytes, and an id no other
// prekey of the bundle has. It returns an error wrapping ErrMalformed or ErrTooMany.
func parse(b []byte, max int) ([]prekey, error) {
	if len(b) < bundleHeader {
		return nil, fmt.Errorf("%w: shorter than its count", ErrMalformed)
	}
	count := int(b[0])<<8 | int(b[1])
	if count < 1 {
		return nil, fmt.Errorf("%w: no prekey", ErrMalformed)
	}
	if count > max {
		return nil, fmt.Errorf("%w: %d, at most %d", ErrTooMany, count, max)
	}
	keys := make([]prekey, 0, count)
	seen := make(map[uint32]bool, count)
	fail := func(format string, args ...any) ([]prekey, error) {
		for _, k := range keys {
			clear(k.data)
		}
		return nil, fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
	}
	rest := b[bundleHeader:]
	for i := range count {
		if len(rest) < 2 {
			return fail("prekey %d: missing", i)
		}
		n := int(rest[0])<<8 | int(rest[1])
		rest = rest[2:]
		if n < minKeyBytes || n > MaxKeyBytes || n > len(rest) {
			return fail("prekey %d: %d bytes", i, n)
		}
		k := rest[:n]
		rest = rest[n:]
		if k[0] != Version {
			return fail("prekey %d: version %d", i, k[0])
		}
		if m := be32(k[1:]); m != Member {
			return fail("prekey %d: member %d", i, m)
		}
		if sl := int(k[headSize])<<8 | int(k[headSize+1]); sl < MinSigBytes || headSize+2+sl != n {
			return fail("prekey %d: signature length %d", i, sl)
		}
		id := be32(k[5:])
		if seen[id] {
			return fail("prekey %d: id %d twice", i, id)
		}
		seen[id] = true
		data := make([]byte, n)
		copy(data, k)
		keys = append(keys, prekey{id: id, data: data})
	}
	if len(rest) != 0 {
		return fail("%d bytes after the last prekey", len(rest))
	}
	return keys, nil
}

func be32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func (k prekey) cost() int64 { return int64(cap(k.data)) + PrekeyOverhead }

// Replace checks data (a bundle, see parse) and makes it owner's prekeys, published under the key with
// fingerprint fp, in place of any it had. The senders' holds on owner stay. data stays the caller's. It
// returns the number of prekeys, or an error wrapping ErrMalformed, ErrTooMany, ErrRelayFull or ErrClosed;
// a refusal leaves the old bundle as it was.
func (s *Store) Replace(owner, fp string, data []byte) (int, error) {
	keys, err := parse(data, s.cfg.MaxPerUser)
	if err != nil {
		return 0, err
	}
	var cost int64
	for _, k := range keys {
		cost += k.cost()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.byUser[owner]
	var oldCost int64
	if old != nil {
		oldCost = keysCost(old.keys)
	}
	switch {
	case s.closed:
		err = ErrClosed
	case s.bytes-oldCost+cost > s.cfg.MaxBytes:
		err = ErrRelayFull
	}
	if err != nil {
		for _, k := range keys {
			clear(k.data)
		}
		return 0, err
	}
	if old == nil {
		old = &bundle{holds: make(map[string]*hold)}
		s.byUser[owner] = old
	}
	s.dropKeysLocked(old)
	old.fp, old.keys = fp, keys
	old.bytes += cost
	s.addLocked(int64(len(keys)), cost)
	return len(keys), nil
}

func keysCost(keys []prekey) int64 {
	var c int64
	for _, k := range keys {
		c += k.cost()
	}
	return c
}

// IDs returns the ids of owner's prekeys not yet taken, in the order they will be handed out.
func (s *Store) IDs(owner string) []uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []uint32{}
	if b := s.byUser[owner]; b != nil {
		for _, k := range b.keys {
			out = append(out, k.id)
		}
	}
	return out
}

// Take hands sender one of owner's prekeys and removes it at once, so that no prekey is handed out twice.
// It returns ErrNone when owner has none left, ErrHeld when sender holds MaxHeldPerSender of owner's
// prekeys already, or ErrClosed.
func (s *Store) Take(owner, sender string) (Prekey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return Prekey{}, ErrClosed
	}
	b := s.byUser[owner]
	if b == nil || len(b.keys) == 0 {
		s.empty.Add(1)
		return Prekey{}, ErrNone
	}
	now := s.now()
	h := b.holds[sender]
	if h != nil && now.Sub(h.since) >= s.cfg.HoldFor {
		h.n, h.since = 0, now
	}
	if h != nil && h.n >= s.cfg.MaxHeldPerSender {
		s.refused.Add(1)
		return Prekey{}, ErrHeld
	}
	if h == nil {
		if len(b.holds) >= s.cfg.MaxSendersPerUser {
			s.dropOldestHoldLocked(b)
		}
		h = &hold{since: now}
		b.holds[sender] = h
		b.bytes += HoldOverhead
		s.addLocked(0, HoldOverhead)
	}
	if h.n == 0 {
		h.since = now
	}
	h.n++
	k := b.keys[0]
	b.keys[0] = prekey{}
	b.keys = b.keys[1:]
	out := Prekey{ID: k.id, Fingerprint: b.fp, Data: append([]byte(nil), k.data...)}
	c := k.cost()
	clear(k.data)
	b.bytes -= c
	s.addLocked(-1, -c)
	s.taken.Add(1)
	return out, nil
}

// Release ends sender's hold on owner's prekeys: owner has read what sender left.
func (s *Store) Release(owner, sender string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.byUser[owner]
	if b == nil || b.holds[sender] == nil {
		return
	}
	delete(b.holds, sender)
	b.bytes -= HoldOverhead
	s.addLocked(0, -HoldOverhead)
	s.forgetIfEmptyLocked(owner, b)
}

// Wipe overwrites owner's prekeys and forgets its sender records: its key changed or went.
func (s *Store) Wipe(owner string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.wipeLocked(owner)
}

// Close overwrites every prekey and refuses new ones. It is safe to call more than once.
func (s *Store) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for owner := range s.byUser {
		s.wipeLocked(owner)
	}
}

// HeldBytes is what the store holds now, in the bytes its bounds count. It does not block: the relay's
// memory budget asks it (relay.Config.ExtraHeld).
func (s *Store) HeldBytes() int64 { return s.heldBytes.Load() }

// Stats are the store's aggregate counters: no user, no id.
type Stats struct {
	Held    int64  // prekeys waiting to be taken now
	Bytes   int64  // bytes held now (HeldBytes)
	Taken   uint64 // prekeys handed out since start
	Empty   uint64 // takes answered "none left" since start
	Refused uint64 // takes refused because the sender held too many since start
	Wiped   uint64 // prekeys overwritten untaken since start: replaced, key change, revocation, Close
}

// Stats returns the counters.
func (s *Store) Stats() Stats {
	return Stats{Held: s.held.Load(), Bytes: s.heldBytes.Load(), Taken: s.taken.Load(), Empty: s.empty.Load(),
		Refused: s.refused.Load(), Wiped: s.wiped.Load()}
}

func (s *Store) wipeLocked(owner string) {
	b := s.byUser[owner]
	if b == nil {
		return
	}
	s.dropKeysLocked(b)
	s.addLocked(0, -int64(len(b.holds))*HoldOverhead)
	delete(s.byUser, owner)
}

// dropKeysLocked overwrites b's prekeys and takes them out of the counts.
func (s *Store) dropKeysLocked(b *bundle) {
	c := keysCost(b.keys)
	for i := range b.keys {
		clear(b.keys[i].data)
	}
	s.wiped.Add(uint64(len(b.keys)))
	s.addLocked(-int64(len(b.keys)), -c)
	b.bytes -= c
	b.keys = nil
}

func (s *Store) dropOldestHoldLocked(b *bundle) {
	var oldest string
	var at time.Time
	for who, h := range b.holds {
		if oldest == "" || h.since.Before(at) {
			oldest, at = who, h.since
		}
	}
	delete(b.holds, oldest)
	b.bytes -= HoldOverhead
	s.addLocked(0, -HoldOverhead)
}

func (s *Store) forgetIfEmptyLocked(owner string, b *bundle) {
	if len(b.keys) == 0 && len(b.holds) == 0 {
		delete(s.byUser, owner)
	}
}

func (s *Store) addLocked(keys, bytes int64) {
	s.bytes += bytes
	s.held.Add(keys)
	s.heldBytes.Store(s.bytes)
}
