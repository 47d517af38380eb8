package keydir

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors a caller branches on. Every error a Directory returns wraps at
// most one of them (use errors.Is); the wrapping message says what exactly was
// wrong and never contains a password, a token, a private key or key material.
var (
	// ErrUsernameInvalid: the username is empty, too long, or has a character outside
	// the allowed alphabet, an invisible or a control character.
	ErrUsernameInvalid = errors.New("invalid username")
	// ErrUsernameTaken: another account already has this username after normalization.
	ErrUsernameTaken = errors.New("username already taken")
	// ErrUsernameConfusable: the username looks like another account's (they
	// share a Skeleton).
	ErrUsernameConfusable = errors.New("username too much like an existing one")
	// ErrFullNameInvalid: the full name is empty, too long or has control, invisible, unassigned or
	// private-use characters, or stacked combining marks.
	ErrFullNameInvalid = errors.New("invalid full name")
	// ErrEmailInvalid: the e-mail address is malformed, or missing while Config.RequireEmail is set.
	ErrEmailInvalid = errors.New("invalid e-mail address")
	// ErrPasswordPolicy: the password misses a character class or is shorter than the minimum.
	ErrPasswordPolicy = errors.New("password does not meet the policy")
	// ErrPasswordTooLong: the password is longer than bcrypt's 72-byte limit. It is
	// refused rather than silently truncated.
	ErrPasswordTooLong = errors.New("password too long")
	// ErrTooManyAccounts: the directory holds Config.MaxAccounts accounts already.
	ErrTooManyAccounts = errors.New("too many accounts")

	// ErrBadCredentials: login failed. Unknown username and wrong password give this
	// same error after the same amount of bcrypt work.
	ErrBadCredentials = errors.New("wrong username or password")
	// ErrTooManyAttempts: login refused without checking the password because this
	// username failed too often recently. The error is a *BackoffError.
	ErrTooManyAttempts = errors.New("too many failed logins")
	// ErrAccountDisabled: the operator disabled this account.
	ErrAccountDisabled = errors.New("account disabled")
	// ErrNotFound: no such user (lookups by name or id).
	ErrNotFound = errors.New("no such user")

	// ErrBadToken: the access token is malformed, too long, signed with another key
	// or algorithm, expired, not yet valid, for another issuer or audience, logged
	// out, or names an account that no longer exists. The wrapped jwt error, if any,
	// is kept for errors.Is.
	ErrBadToken = errors.New("invalid access token")

	// ErrKeyMalformed: not one ASCII-armored OpenPGP public key (garbage, several
	// keys, broken packets, invalid self-signatures).
	ErrKeyMalformed = errors.New("malformed OpenPGP public key")
	// ErrPrivateKey: the upload contains secret-key material. It is refused and not
	// kept, logged or quoted anywhere.
	ErrPrivateKey = errors.New("this is a private key: upload only the public key")
	// ErrKeyWeak: an algorithm or key size below the policy (RSA under
	// Config.MinRSABits, or any algorithm other than RSA and Ed25519/Curve25519).
	ErrKeyWeak = errors.New("key algorithm or size not allowed")
	// ErrKeyExpired: the primary key has expired (or claims to be created in the future).
	ErrKeyExpired = errors.New("key expired")
	// ErrKeyRevoked: the key carries a revocation signature, or the operator revoked
	// this fingerprint.
	ErrKeyRevoked = errors.New("key revoked")
	// ErrKeyUserID: a user ID of the key does not name this account (docs/accounts.md
	// §5), or no valid, non-revoked one does.
	ErrKeyUserID = errors.New("the key's user IDs must name this account")
	// ErrKeyTooLarge: the key carries more user IDs or subkeys than the directory
	// keeps, or a user ID longer than it keeps (Config.MaxKeyUserIDs,
	// Config.MaxKeySubkeys, MaxUserIDBytes).
	ErrKeyTooLarge = errors.New("key too large")
	// ErrKeyUnusable: the key has no valid signing key or no valid encryption key.
	ErrKeyUnusable = errors.New("key cannot both sign and encrypt")
	// ErrBadProof: the proof of possession failed: unknown, expired, reused or
	// foreign challenge, or a signature that is not by this key over that challenge.
	ErrBadProof = errors.New("proof of key possession failed")
	// ErrNoKey: the account has not published a key (or the operator revoked it).
	ErrNoKey = errors.New("no public key published")

	// ErrBusy: every bcrypt slot is taken and the queue for them is full, or no slot
	// came free within Config.MaxHashWait. Nothing was checked; try again shortly.
	ErrBusy = errors.New("busy: too many logins at once")

	// ErrRateLimited: the caller exceeded a per-user rate (search, challenges).
	ErrRateLimited = errors.New("rate limited")
	// ErrBadRequest: an argument out of range (empty search prefix, unknown purpose).
	ErrBadRequest = errors.New("bad request")
)

// BackoffError is returned (wrapping ErrTooManyAttempts) when a username must wait
// before its next login attempt.
type BackoffError struct {
	RetryAfter time.Duration // how long until the next attempt is checked
}

func (e *BackoffError) Error() string {
	return fmt.Sprintf("%v: retry in %v", ErrTooManyAttempts, e.RetryAfter.Round(time.Second))
}

// Unwrap makes errors.Is(err, ErrTooManyAttempts) true.
func (e *BackoffError) Unwrap() error { return ErrTooManyAttempts }
