// Package keydir keeps cleanrelay's accounts and public-key directory in memory.
//
// It owns everything the relay needs to know about a logged-in user and nothing
// else: normalized usernames, bcrypt password hashes, JWT access tokens and their
// logout denylist, one verified OpenPGP public key per account, proof-of-possession
// challenges, and operator revocation. Nothing is written to disk: a restart
// forgets every account, and (with a generated signing key) invalidates every
// token.
//
// OpenPGP keys are parsed with the v1 API of github.com/ProtonMail/go-crypto/openpgp
// (the v1 API is enough for public-key validation and detached-signature checks and
// is the one OpenPGP.js-produced v4 keys are tested against here).
//
// A Directory is safe for concurrent use.
package keydir
