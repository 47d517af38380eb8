package keydir

// What the directory holds, as the relay-wide memory budget counts it. The figures per item are what Go
// really allocates for them (struct, map entries, string and slice backing arrays, rounded up to allocation
// size classes), measured by TestHeldBytesTracksHeap; variable parts add their lengths.
const (
	accountOverhead = 640 // an account: struct, three map entries, a names entry, its id, skeleton and hash
	keyOverhead     = 384 // a published key: KeyInfo and its slices
	perString       = 24  // a string header in a slice, plus rounding
	bannedBytes     = 160 // a fingerprint the operator revoked
	failureBytes    = 176 // a username in the login failure table
	revokedBytes    = 128 // a logged-out token id
	challengeBytes  = 384 // an outstanding challenge, its text and its place in the user's list
	verifiedBytes   = 640 // a verified token in the token cache
)

// accountBytes estimates what an account holds, its key included. d.mu is held.
func accountBytes(a *account) int64 {
	return accountOverhead + int64(len(a.username)+len(a.fullName)+len(a.email)) + keyBytes(a.key)
}

// keyBytes estimates what a published key holds; 0 for none.
func keyBytes(k *KeyInfo) int64 {
	if k == nil {
		return 0
	}
	n := keyOverhead + len(k.Armored) + len(k.Fingerprint) + len(k.PreviousFingerprint) + len(k.Algorithm)
	for _, s := range k.UserIDs {
		n += perString + len(s)
	}
	for _, s := range k.Subkeys {
		n += perString + len(s)
	}
	return int64(n)
}

// HeldBytes reports roughly how many bytes of memory the directory holds: accounts, published keys, the
// login failure table, the logout denylist, outstanding challenges and the token cache. It is an estimate
// from the lengths of what is held plus measured per-item overheads, within a factor of two of the Go heap
// the directory really uses (a test keeps it so); it does not count the fixed cost of an empty directory
// (a few KiB, and the token signing key). It takes the directory's read lock and costs O(1), so a memory
// budget may call it on every admission decision. Safe for concurrent use.
func (d *Directory) HeldBytes() int64 {
	d.mu.RLock()
	n := d.held + int64(len(d.failures))*failureBytes + int64(len(d.revoked))*revokedBytes +
		int64(len(d.challenges))*challengeBytes
	d.mu.RUnlock()
	return n + int64(d.tokens.cached())*verifiedBytes
}

// cached counts the verified tokens the signer keeps.
func (t *tokenSigner) cached() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.verified)
}
