package main

import (
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/cleanrelay/cleanrelay/keydir"
	"github.com/cleanrelay/cleanrelay/relay"
)

// accountFlags configure accounts and the public-key directory (docs/accounts.md).
type accountFlags struct {
	enabled       bool
	requireEmail  bool
	tokenAlg      string
	tokenKeyFile  string
	tokenLifetime time.Duration
	dirLimits     keydir.Config        // the directory limits set by flags
	apiLimits     relay.AccountsConfig // the API limits set by flags

	dir *keydir.Directory // made by handler; close overwrites its signing key
}

// close overwrites the token signing key once the relay has stopped.
func (a *accountFlags) close() {
	if a.dir != nil {
		a.dir.Close()
	}
}

func (a *accountFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&a.enabled, "accounts", true, "offer accounts, the public-key directory and dialogs (anonymous rooms work either way)")
	fs.BoolVar(&a.requireEmail, "require-email", false, "make the e-mail address mandatory at registration")
	fs.StringVar(&a.tokenAlg, "token-alg", "RS256", "access token signature `algorithm`: RS256 or EdDSA")
	fs.StringVar(&a.tokenKeyFile, "token-key", "", "PEM `file` with the token signing key (default: a key made at start, so a restart logs everyone out)")
	fs.DurationVar(&a.tokenLifetime, "token-lifetime", 7*24*time.Hour, "access token lifetime, 1h to 720h")
	kd, ad := keydir.Config{}.Defaults(), relay.AccountsConfig{}.WithDefaults()
	fs.IntVar(&a.dirLimits.MaxHashQueue, "max-hash-queue", kd.MaxHashQueue, "logins and registrations that may wait for a password-hashing slot; more are answered busy at once")
	fs.DurationVar(&a.dirLimits.MaxHashWait, "max-hash-wait", kd.MaxHashWait, "how long a login waits for a password-hashing slot before it is answered busy")
	fs.IntVar(&a.dirLimits.MaxKeyUserIDs, "max-key-user-ids", kd.MaxKeyUserIDs, "user IDs a published key may carry")
	fs.IntVar(&a.apiLimits.MaxTicketsPerUser, "max-tickets-per-user", ad.MaxTicketsPerUser, "WebSocket tickets (session proofs) one account holds at once")
}

// handler wraps the relay's handler with the accounts API, or returns it as it is when accounts are off. The
// second handler is the operator's (list counts, revoke a key, disable an account), for the admin listener;
// nil when accounts are off.
func (a *accountFlags) handler(srv *relay.Server, log *slog.Logger) (http.Handler, http.Handler, error) {
	if !a.enabled {
		return srv.Handler(), nil, nil
	}
	cfg := a.dirLimits
	cfg.RequireEmail, cfg.TokenAlgorithm, cfg.TokenLifetime = a.requireEmail, a.tokenAlg, a.tokenLifetime
	if a.tokenKeyFile != "" {
		pem, err := os.ReadFile(a.tokenKeyFile)
		if err != nil {
			return nil, nil, fmt.Errorf("--token-key: %w", err)
		}
		cfg.SigningKeyPEM = pem
		defer clear(pem) // keydir keeps the parsed key only
	}
	dir, err := keydir.New(cfg)
	if err != nil {
		return nil, nil, err
	}
	a.dir = dir
	acc := relay.NewAccounts(srv, dir, a.apiLimits, log)
	return acc.Handler(), acc.AdminHandler(), nil
}
