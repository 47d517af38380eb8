package keydir

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Directory is the in-memory account and public-key directory.
type Directory struct {
	// Static after construction.
	cfg       Config
	tokens    *tokenSigner
	hashes    hashSlots // bounds bcrypt work (hashing.go)
	dummyHash []byte    // compared against for unknown users, so they cost the same

	// bcryptHook, if set (tests only), is called on the thread of each bcrypt computation (a login's
	// comparison, a registration's hash), just before it.
	bcryptHook func()

	mu sync.RWMutex
	// Guarded by mu.
	byName     map[string]*account // normalized username → account
	bySkeleton map[string]*account // Skeleton of the username → account
	held       int64               // accountBytes of every account (memory.go)
	byID       map[string]*account
	names      []string              // sorted normalized usernames, for prefix search
	failures   map[string]*failures  // normalized username → recent login failures
	revoked    map[string]time.Time  // logged-out token id → its expiry
	challenges map[string]*challenge // challenge text → challenge
	onRevoke   []func(userID string)
	onKey      []func(userID string)
	onChange   []func(Change) // replica.go
	gate       LoginGate      // backoff.go; nil: the local failure table
	chalGate   ChallengeGate  // keys.go; nil: only challenges issued here
	rateGate   RateGate       // rates.go; nil: the local buckets
}

// account is one registered user. Guarded by Directory.mu.
type account struct {
	id         string
	username   string // normalized
	fullName   string
	email      string
	created    time.Time
	hash       []byte
	disabled   bool
	notBefore  time.Time // tokens issued at or before this second are invalid
	key        *KeyInfo
	banned     map[string]bool // fingerprints the operator revoked
	chals      []string        // outstanding challenges, oldest first
	search     bucket
	keyLookups bucket
	dialogs    bucket
	version    uint64 // counts the replicated changes (replica.go)
}

// accountView is a copy of an account's public fields, safe to use without the lock.
type accountView struct {
	ID, Username, FullName, Email string
}

func (a *account) view() accountView {
	return accountView{ID: a.id, Username: a.username, FullName: a.fullName, Email: a.email}
}

// Account describes an account to its owner.
type Account struct {
	ID       string    // stable random id; the sub claim of its tokens
	Username string    // normalized
	FullName string    // as given, NFC, trimmed
	Email    string    // empty when not given
	Created  time.Time //
}

// Session is an authenticated access token.
type Session struct {
	UserID   string
	Username string
	FullName string
	Email    string
	TokenID  string    // jti
	Expires  time.Time // exp: the cookie should expire then too
}

// New returns an empty Directory. It fails on a Config value outside its range
// or an unusable signing key.
func New(cfg Config) (*Directory, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("failed to configure key directory: %w", err)
	}
	t, err := newTokenSigner(cfg)
	if err != nil {
		return nil, fmt.Errorf("failed to configure key directory: %w", err)
	}
	// The parsed key is all the directory needs; it keeps no reference to the PEM
	// text (the caller may overwrite it).
	cfg.SigningKeyPEM = nil
	// The dummy password is random, so no password can match it.
	dummyPass, err := randomID(32)
	if err != nil {
		return nil, err
	}
	dummy, err := bcrypt.GenerateFromPassword([]byte(dummyPass), cfg.BcryptCost)
	if err != nil {
		return nil, fmt.Errorf("failed to make dummy hash: %w", err)
	}
	return &Directory{
		cfg:        cfg,
		tokens:     t,
		hashes:     newHashSlots(cfg.MaxConcurrentHashes),
		dummyHash:  dummy,
		byName:     make(map[string]*account),
		bySkeleton: make(map[string]*account),
		byID:       make(map[string]*account),
		failures:   make(map[string]*failures),
		revoked:    make(map[string]time.Time),
		challenges: make(map[string]*challenge),
	}, nil
}

// Close overwrites the token signing key, as far as Go lets it be reached (see
// tokenSigner.wipe), when the relay shuts down. Tokens already issued still
// verify; issuing new ones (Login) fails from then on.
func (d *Directory) Close() {
	d.tokens.wipe()
}

// OnRevoke registers fn to be called with the user id whenever the operator
// disables an account or revokes its key. Callbacks run synchronously in the
// operator's call, after the change and without the directory's lock, so when
// RevokeKey or DisableAccount returns they have all run. The relay uses it to
// close the user's sessions before its next frame.
func (d *Directory) OnRevoke(fn func(userID string)) {
	d.mu.Lock()
	d.onRevoke = append(d.onRevoke, fn)
	d.mu.Unlock()
}

// OnKeyChange registers fn to be called (like OnRevoke's callbacks) with the user
// id whenever a user replaces its published key by a different one. Sessions that
// proved possession of the old key should end.
func (d *Directory) OnKeyChange(fn func(userID string)) {
	d.mu.Lock()
	d.onKey = append(d.onKey, fn)
	d.mu.Unlock()
}

func (d *Directory) notify(fns []func(string), userID string) {
	for _, fn := range fns {
		fn(userID)
	}
}

// Registration is what a new user submits.
type Registration struct {
	Username string
	FullName string
	Email    string // optional unless Config.RequireEmail
	Password string
}

// Register validates r and creates an account. Errors wrap ErrUsernameInvalid,
// ErrFullNameInvalid, ErrEmailInvalid, ErrPasswordPolicy, ErrPasswordTooLong,
// ErrUsernameTaken, ErrUsernameConfusable or ErrTooManyAccounts, ErrBusy when no bcrypt slot came free
// in time, or ctx's error while waiting for one. Of several concurrent registrations of one normalized name exactly
// one succeeds.
func (d *Directory) Register(ctx context.Context, r Registration) (Account, error) {
	name, err := NormalizeUsername(r.Username)
	if err != nil {
		return Account{}, err
	}
	full, err := normalizeFullName(r.FullName)
	if err != nil {
		return Account{}, err
	}
	email, err := normalizeEmail(r.Email, d.cfg.RequireEmail)
	if err != nil {
		return Account{}, err
	}
	if err := CheckPassword(r.Password); err != nil {
		return Account{}, err
	}
	// Refuse early what would be refused after hashing, to spare the bcrypt work.
	d.mu.RLock()
	err = d.canAddLocked(name)
	d.mu.RUnlock()
	if err != nil {
		return Account{}, err
	}
	hash, err := d.hashPassword(ctx, r.Password)
	if err != nil {
		return Account{}, err
	}
	id, err := randomID(16)
	if err != nil {
		return Account{}, err
	}
	a := &account{id: id, username: name, fullName: full, email: email, created: d.cfg.Now(), hash: hash}

	d.mu.Lock()
	if err := d.canAddLocked(name); err != nil {
		d.mu.Unlock()
		return Account{}, err
	}
	d.byName[name] = a
	d.bySkeleton[Skeleton(name)] = a
	d.byID[id] = a
	d.held += accountBytes(a)
	i, _ := slices.BinarySearch(d.names, name)
	d.names = slices.Insert(d.names, i, name)
	pub := a.public()
	c, fns := d.changeLocked(a)
	d.mu.Unlock()
	emit(fns, c)
	return pub, nil
}

func (d *Directory) canAddLocked(name string) error {
	if _, ok := d.byName[name]; ok {
		return ErrUsernameTaken
	}
	if _, ok := d.bySkeleton[Skeleton(name)]; ok {
		return fmt.Errorf("%w: 0 and o, 1 and l, rn and m, vv and w, cl and d read alike", ErrUsernameConfusable)
	}
	if len(d.byName) >= d.cfg.MaxAccounts {
		return fmt.Errorf("%w: the relay holds %d accounts", ErrTooManyAccounts, d.cfg.MaxAccounts)
	}
	return nil
}

func (a *account) public() Account {
	return Account{ID: a.id, Username: a.username, FullName: a.fullName, Email: a.email, Created: a.created}
}

// Login checks a username and password and returns a signed access token and its
// session. Errors: ErrBadCredentials for an unknown user or a wrong password (the
// same error after the same bcrypt work), a *BackoffError (ErrTooManyAttempts)
// while the username must wait, ErrAccountDisabled for a disabled account with the
// right password, ErrBusy when no bcrypt slot came free in time, or ctx's error
// while waiting for one.
func (d *Directory) Login(ctx context.Context, username, password string) (string, Session, error) {
	name, nameErr := NormalizeUsername(username)
	var end func(checked, ok bool) // nil: the attempt is not tracked
	if nameErr == nil {
		d.mu.RLock()
		gate := d.gate
		d.mu.RUnlock()
		if gate == nil {
			gate = d
		}
		var err error
		if end, err = gate.StartAttempt(name); err != nil {
			return "", Session{}, err
		}
	}
	d.mu.RLock()
	a := d.byName[name]
	hash := d.dummyHash
	if a != nil && nameErr == nil {
		hash = a.hash
	}
	d.mu.RUnlock()

	kind := hashUnknown
	if a != nil && nameErr == nil {
		kind = hashKnown
	}
	if err := d.acquire(ctx, kind); err != nil {
		if end != nil {
			end(false, false)
		}
		return "", Session{}, err
	}
	// A password over 72 bytes is compared too (its first 72 bytes), so that it
	// costs what any other attempt costs; it never logs in, whatever the result.
	p := []byte(password)
	tooLong := len(p) > MaxPasswordBytes
	if tooLong {
		p = p[:MaxPasswordBytes]
	}
	var cmpErr error
	d.lowPriority(func() { cmpErr = bcrypt.CompareHashAndPassword(hash, p) })
	d.release(kind)

	ok := cmpErr == nil && a != nil && nameErr == nil && !tooLong
	if end != nil {
		end(true, ok)
	}
	if !ok {
		return "", Session{}, ErrBadCredentials
	}

	d.mu.RLock()
	disabled, v := a.disabled, a.view()
	d.mu.RUnlock()
	if disabled {
		return "", Session{}, ErrAccountDisabled
	}
	tok, c, err := d.tokens.issue(v, d.cfg.Now())
	if err != nil {
		return "", Session{}, err
	}
	return tok, sessionOf(v, &c), nil
}

func sessionOf(v accountView, c *Claims) Session {
	return Session{UserID: v.ID, Username: v.Username, FullName: v.FullName, Email: v.Email,
		TokenID: c.ID, Expires: c.ExpiresAt.Time}
}

// Authenticate verifies an access token and returns its session. Errors wrap
// ErrBadToken (see its doc; also for a logged-out token or a vanished account) or
// are ErrAccountDisabled.
func (d *Directory) Authenticate(token string) (Session, error) {
	c, err := d.tokens.verify(token)
	if err != nil {
		return Session{}, err
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	if _, out := d.revoked[c.ID]; out {
		return Session{}, fmt.Errorf("%w: logged out", ErrBadToken)
	}
	a := d.byID[c.Subject]
	if a == nil || a.username != c.Username {
		return Session{}, fmt.Errorf("%w: unknown account", ErrBadToken)
	}
	if a.disabled {
		return Session{}, ErrAccountDisabled
	}
	if !c.IssuedAt.After(a.notBefore) {
		return Session{}, fmt.Errorf("%w: logged out", ErrBadToken)
	}
	return sessionOf(a.view(), c), nil
}

// Logout revokes a token until its expiry. It returns the token's verification
// error (wrapping ErrBadToken) if it was not valid to begin with; a caller clears
// the cookie either way.
func (d *Directory) Logout(token string) error {
	s, err := d.Authenticate(token)
	if err != nil {
		return err
	}
	now := d.cfg.Now()
	d.mu.Lock()
	c, fns := Change{Logout: &LoggedOut{TokenID: s.TokenID, UserID: s.UserID, Username: s.Username, Expires: s.Expires}}, d.onChange
	// A full denylist logs the whole account out instead, which needs no per-token memory.
	if d.revokeTokenLocked(s.TokenID, s.UserID, s.Expires, now) {
		if a := d.byID[s.UserID]; a != nil {
			c, fns = d.changeLocked(a)
		}
	}
	d.mu.Unlock()
	emit(fns, c)
	return nil
}
