// Package onion publishes cleanrelay as a Tor v3 onion service; it is the only importer of bine.
//
// Start launches the system tor as a child process (or uses an already-running tor through its control port),
// publishes a v3 onion service whose backend is a listener only tor reaches, and keeps it published: if tor dies,
// it is restarted and the same address is published again from the key held in memory. Close ends tor and
// removes every file the service created, tor's data directory included.
//
// bine is pinned to its master pseudo-version v0.2.1-0.20221201125941-b9d31d9c7866, which is v3-only; its newest
// tag (v0.2.0) still defaults to v2 onions. This package never relies on that default anyway: it always hands tor
// an ED25519-V3 key of its own.
package onion
