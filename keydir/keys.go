package keydir

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
)

// Purpose says what a proof-of-possession challenge may be used for; a challenge
// of one purpose is refused for the other.
type Purpose string

const (
	// PurposePublishKey: proving possession of a key being uploaded.
	PurposePublishKey Purpose = "publish-key"
	// PurposeSession: proving, at the start of a WebSocket session, possession of
	// the key already published.
	PurposeSession Purpose = "session"
)

// ErrKeyReplaced: the session proved possession of a key that its owner has
// since replaced; it must prove the new one.
var ErrKeyReplaced = fmt.Errorf("%w: the key was replaced", ErrNoKey)

// challenge is an outstanding proof-of-possession challenge. Guarded by Directory.mu.
type challenge struct {
	userID  string
	purpose Purpose
	expires time.Time
}

// IssueChallenge returns a fresh challenge text for the user to sign (a detached
// OpenPGP signature over exactly these bytes). It is single use and valid for
// Config.ChallengeLifetime; issuing more than Config.MaxChallengesPerUser drops
// the oldest. Errors: ErrNotFound, ErrAccountDisabled, ErrBadRequest (unknown
// purpose), ErrNoKey (PurposeSession without a published key).
func (d *Directory) IssueChallenge(userID string, p Purpose) (string, error) {
	if p != PurposePublishKey && p != PurposeSession {
		return "", fmt.Errorf("%w: unknown challenge purpose", ErrBadRequest)
	}
	nonce, err := randomID(32)
	if err != nil {
		return "", err
	}
	now := d.cfg.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	a := d.byID[userID]
	switch {
	case a == nil:
		return "", ErrNotFound
	case a.disabled:
		return "", ErrAccountDisabled
	case p == PurposeSession && a.key == nil:
		return "", ErrNoKey
	}
	text := fmt.Sprintf("cleanrelay proof of key possession\npurpose: %s\nuser: %s\nnonce: %s\n", p, a.username, nonce)
	// Forget this user's expired challenges, then the oldest beyond the bound.
	live := a.chals[:0]
	for _, t := range a.chals {
		if c := d.challenges[t]; c != nil && now.Before(c.expires) {
			live = append(live, t)
		} else {
			delete(d.challenges, t)
		}
	}
	a.chals = live
	for len(a.chals) >= d.cfg.MaxChallengesPerUser {
		delete(d.challenges, a.chals[0])
		a.chals = slices.Delete(a.chals, 0, 1)
	}
	d.challenges[text] = &challenge{userID: userID, purpose: p, expires: now.Add(d.cfg.ChallengeLifetime)}
	a.chals = append(a.chals, text)
	return text, nil
}

// consumeChallengeLocked uses up a challenge of userID and purpose p. A
// challenge of another user or purpose is left alone.
func (d *Directory) consumeChallengeLocked(a *account, p Purpose, text string, now time.Time) error {
	c := d.challenges[text]
	if c == nil || c.userID != a.id || c.purpose != p {
		return fmt.Errorf("%w: unknown or already used challenge", ErrBadProof)
	}
	delete(d.challenges, text)
	if i := slices.Index(a.chals, text); i >= 0 {
		a.chals = slices.Delete(a.chals, i, i+1)
	}
	if !now.Before(c.expires) {
		return fmt.Errorf("%w: challenge expired", ErrBadProof)
	}
	return nil
}

// PublishKey checks armoredKey against the key policy for this user and the
// proof of possession (signature: an armored detached signature by the key over
// challenge, a text from IssueChallenge with PurposePublishKey), and makes it the
// user's published key, replacing any earlier one. The challenge is used up
// once the key itself passed the policy. Errors wrap one of ErrNotFound,
// ErrAccountDisabled, ErrKeyMalformed, ErrPrivateKey, ErrKeyWeak, ErrKeyExpired,
// ErrKeyRevoked (also: a fingerprint the operator revoked), ErrKeyUserID,
// ErrKeyUnusable, ErrBadProof. On error nothing changes (except the used challenge).
func (d *Directory) PublishKey(userID, armoredKey, challengeText, signature string) (KeyInfo, error) {
	d.mu.RLock()
	a := d.byID[userID]
	var o owner
	if a != nil {
		o = owner{username: a.username, fullName: a.fullName, email: a.email}
	}
	d.mu.RUnlock()
	if a == nil {
		return KeyInfo{}, ErrNotFound
	}
	now := d.cfg.Now()
	at := now.Add(d.cfg.MaxClockSkew) // the time keys and signatures are judged at
	e, info, err := parsePublicKey(armoredKey, o, at, d.cfg)
	if err != nil {
		return KeyInfo{}, err
	}

	d.fetchChallenge(userID, PurposePublishKey, challengeText)
	d.mu.Lock()
	if a.disabled {
		d.mu.Unlock()
		return KeyInfo{}, ErrAccountDisabled
	}
	err = d.consumeChallengeLocked(a, PurposePublishKey, challengeText, now)
	banned := a.banned[info.Fingerprint]
	d.mu.Unlock()
	if err != nil {
		return KeyInfo{}, err
	}
	if banned {
		return KeyInfo{}, fmt.Errorf("%w: the operator revoked this key", ErrKeyRevoked)
	}
	if err := verifyProof(e, challengeText, signature, at); err != nil {
		return KeyInfo{}, err
	}

	d.mu.Lock()
	if a.disabled {
		d.mu.Unlock()
		return KeyInfo{}, ErrAccountDisabled
	}
	if a.banned[info.Fingerprint] {
		d.mu.Unlock()
		return KeyInfo{}, fmt.Errorf("%w: the operator revoked this key", ErrKeyRevoked)
	}
	info.Published = now
	changed := false
	if old := a.key; old != nil {
		if old.Fingerprint == info.Fingerprint {
			info.Published, info.ChangedAt, info.PreviousFingerprint = old.Published, old.ChangedAt, old.PreviousFingerprint
		} else {
			info.ChangedAt, info.PreviousFingerprint = now, old.Fingerprint
			changed = true
		}
	}
	d.held += keyBytes(&info) - keyBytes(a.key)
	a.key = &info
	fns := d.onKey
	c, cfns := d.changeLocked(a)
	d.mu.Unlock()
	emit(cfns, c)
	if changed {
		d.notify(fns, userID)
	}
	return info, nil
}

// VerifySession checks a session proof: signature (armored, detached) by the
// user's published key over challenge, a text from IssueChallenge with
// PurposeSession. It returns the key the session is now bound to. Errors:
// ErrNotFound, ErrAccountDisabled, ErrNoKey, ErrBadProof.
func (d *Directory) VerifySession(userID, challengeText, signature string) (KeyInfo, error) {
	d.fetchChallenge(userID, PurposeSession, challengeText)
	now := d.cfg.Now()
	d.mu.Lock()
	a := d.byID[userID]
	if a == nil {
		d.mu.Unlock()
		return KeyInfo{}, ErrNotFound
	}
	if a.disabled {
		d.mu.Unlock()
		return KeyInfo{}, ErrAccountDisabled
	}
	err := d.consumeChallengeLocked(a, PurposeSession, challengeText, now)
	info := a.key
	d.mu.Unlock()
	if err != nil {
		return KeyInfo{}, err
	}
	if info == nil {
		return KeyInfo{}, ErrNoKey
	}
	// The directory keeps the key as text only (memory.go); a proof, once per session, parses it again.
	e, err := openpgp.ReadArmoredKeyRing(strings.NewReader(info.Armored))
	if err != nil || len(e) != 1 {
		return KeyInfo{}, fmt.Errorf("failed to parse the published key: %v", err)
	}
	if err := verifyProof(e[0], challengeText, signature, now.Add(d.cfg.MaxClockSkew)); err != nil {
		return KeyInfo{}, err
	}
	return *info, nil
}

// CheckSender tells the relay whether a session of userID that proved the key
// with this fingerprint may still send: nil, or ErrAccountDisabled, ErrNotFound,
// ErrNoKey (no key, or the operator revoked it) or ErrKeyReplaced.
func (d *Directory) CheckSender(userID, fingerprint string) error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	a := d.byID[userID]
	switch {
	case a == nil:
		return ErrNotFound
	case a.disabled:
		return ErrAccountDisabled
	case a.key == nil:
		return ErrNoKey
	case a.key.Fingerprint != fingerprint:
		return ErrKeyReplaced
	}
	return nil
}

// RevokeKey is the operator's withdrawal of a user's published key: the key is
// removed, its fingerprint can never be published again for this account, and
// every OnRevoke callback runs. Errors: ErrNotFound, ErrNoKey.
func (d *Directory) RevokeKey(username string) error {
	name, err := NormalizeUsername(username)
	if err != nil {
		return ErrNotFound
	}
	d.mu.Lock()
	a := d.byName[name]
	if a == nil {
		d.mu.Unlock()
		return ErrNotFound
	}
	if a.key == nil {
		d.mu.Unlock()
		return ErrNoKey
	}
	if a.banned == nil {
		a.banned = make(map[string]bool)
	}
	a.banned[a.key.Fingerprint] = true
	d.held += bannedBytes - keyBytes(a.key)
	a.key = nil
	id, fns := a.id, d.onRevoke
	c, cfns := d.changeLocked(a)
	d.mu.Unlock()
	d.notify(fns, id)
	emit(cfns, c)
	return nil
}

// DisableAccount is the operator's suspension of an account: it can no longer
// log in, its tokens stop working, it disappears from search, and every OnRevoke
// callback runs. Disabling a disabled account changes nothing. Error: ErrNotFound.
func (d *Directory) DisableAccount(username string) error {
	name, err := NormalizeUsername(username)
	if err != nil {
		return ErrNotFound
	}
	now := d.cfg.Now()
	d.mu.Lock()
	a := d.byName[name]
	if a == nil {
		d.mu.Unlock()
		return ErrNotFound
	}
	if a.disabled {
		d.mu.Unlock()
		return nil
	}
	a.disabled = true
	a.notBefore = now.Truncate(time.Second)
	for _, t := range a.chals {
		delete(d.challenges, t)
	}
	a.chals = nil
	id, fns := a.id, d.onRevoke
	c, cfns := d.changeLocked(a)
	d.mu.Unlock()
	d.notify(fns, id)
	emit(cfns, c)
	return nil
}

// AccountSummary is one line of the operator's account listing.
type AccountSummary struct {
	Username    string
	HasKey      bool
	Fingerprint string
	Disabled    bool
}

// ListAccounts returns every account in name order, for the operator's admin
// interface when it explicitly asks for names (the default listing is Stats).
func (d *Directory) ListAccounts() []AccountSummary {
	d.mu.RLock()
	defer d.mu.RUnlock()
	out := make([]AccountSummary, 0, len(d.names))
	for _, n := range d.names {
		a := d.byName[n]
		s := AccountSummary{Username: n, Disabled: a.disabled, HasKey: a.key != nil}
		if a.key != nil {
			s.Fingerprint = a.key.Fingerprint
		}
		out = append(out, s)
	}
	return out
}

// ChallengeGate finds a challenge another node issued (docs/cluster.md §5): it asks the nodes, and the one that
// holds the challenge gives it up (TakeChallenge there) if it is userID's and for purpose p, with its expiry.
type ChallengeGate interface {
	TakeChallenge(text, userID string, p Purpose) (expires time.Time, ok bool)
}

// SetChallengeGate makes a proof whose challenge this directory does not hold ask g for it. Call it once,
// before serving.
func (d *Directory) SetChallengeGate(g ChallengeGate) {
	d.mu.Lock()
	d.chalGate = g
	d.mu.Unlock()
}

// TakeChallenge gives up, for another node, a challenge this directory issued: if it is held, userID's and for
// purpose p, it is removed here and its expiry returned. Only one node holds a challenge, and it gives it up
// once, so a challenge is used once in the whole cluster.
func (d *Directory) TakeChallenge(text, userID string, p Purpose) (time.Time, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.challenges[text]
	a := d.byID[userID]
	if c == nil || a == nil || c.userID != userID || c.purpose != p {
		return time.Time{}, false
	}
	delete(d.challenges, text)
	if i := slices.Index(a.chals, text); i >= 0 {
		a.chals = slices.Delete(a.chals, i, i+1)
	}
	return c.expires, true
}

// fetchChallenge takes a challenge of userID and purpose p that this directory does not hold from the node
// that issued it, through the ChallengeGate, and holds it here as if issued here. Only a text in the form
// IssueChallenge makes, for this user, is asked for.
func (d *Directory) fetchChallenge(userID string, p Purpose, text string) {
	d.mu.RLock()
	_, held := d.challenges[text]
	g := d.chalGate
	a := d.byID[userID]
	var prefix string
	if a != nil {
		prefix = fmt.Sprintf("cleanrelay proof of key possession\npurpose: %s\nuser: %s\nnonce: ", p, a.username)
	}
	d.mu.RUnlock()
	if held || g == nil || a == nil || !strings.HasPrefix(text, prefix) || len(text) > len(prefix)+64 {
		return
	}
	expires, ok := g.TakeChallenge(text, userID, p)
	if !ok {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.byID[userID] != a || d.challenges[text] != nil {
		return
	}
	for len(a.chals) >= d.cfg.MaxChallengesPerUser {
		delete(d.challenges, a.chals[0])
		a.chals = slices.Delete(a.chals, 0, 1)
	}
	d.challenges[text] = &challenge{userID: userID, purpose: p, expires: expires}
	a.chals = append(a.chals, text)
}
