package bench

import (
	"context"

	"github.com/cleanrelay/cleanrelay/relay/client"
)

// benchPassword meets the password policy (upper, lower, digit, special, 8+).
const benchPassword = "Bench-load-1"

// newAuthUser registers name on the relay at wsURL, logs in and publishes a fresh Ed25519 key: what it takes to
// open logged-in WebSocket sessions (docs/accounts.md §7).
func newAuthUser(ctx context.Context, wsURL, name string) (*client.Account, error) {
	return client.NewAccount(ctx, wsURL, client.Registration{Username: name, FullName: "Bench " + name, Password: benchPassword}, nil)
}
