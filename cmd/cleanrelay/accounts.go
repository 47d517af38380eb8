package main

import (
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"time"

	"github.com/cleanrelay/cleanrelay/internal/lowcpu"
	"github.com/cleanrelay/cleanrelay/keydir"
	"github.com/cleanrelay/cleanrelay/relay"
	"github.com/cleanrelay/cleanrelay/relay/accounts"
	"github.com/cleanrelay/cleanrelay/relay/mailbox"
	"github.com/cleanrelay/cleanrelay/relay/prekeys"
)

// accountFlags configure accounts and the public-key directory (docs/accounts.md).
type accountFlags struct {
	enabled       bool
	requireEmail  bool
	tokenAlg      string
	tokenKeyFile  string
	tokenLifetime time.Duration
	tokenKey      []byte          // PEM token key from the cluster secret (cluster.go); nil without --cluster
	dirLimits     keydir.Config   // the directory limits set by flags
	apiLimits     accounts.Config // the API limits set by flags
	mailbox       bool            // keep dialog messages for absent contacts
	boxLimits     mailbox.Config  // the mailbox limits set by flags
	keyLimits     prekeys.Config  // the prekey limits set by flags

	dir *keydir.Directory // made by directory; close overwrites its signing key
	box *mailbox.Store    // made by api when the mailbox is on; close overwrites what it holds
	pre *prekeys.Store    // made with box; close overwrites it too
}

// close overwrites the token signing key and every message in the mailbox once the relay has stopped.
func (a *accountFlags) close() {
	if a.dir != nil {
		a.dir.Close()
	}
	if a.box != nil {
		a.box.Close()
	}
	if a.pre != nil {
		a.pre.Close()
	}
}

func (a *accountFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&a.enabled, "accounts", true, "offer accounts, the public-key directory and dialogs (anonymous rooms work either way)")
	fs.BoolVar(&a.requireEmail, "require-email", false, "make the e-mail address mandatory at registration")
	fs.StringVar(&a.tokenAlg, "token-alg", "RS256", "access token signature `algorithm`: RS256 or EdDSA")
	fs.StringVar(&a.tokenKeyFile, "token-key", "", "PEM `file` with the token signing key (default: a key made at start, so a restart logs everyone out)")
	fs.DurationVar(&a.tokenLifetime, "token-lifetime", 7*24*time.Hour, "access token lifetime, 1h to 720h")
	kd, ad := keydir.Config{}.Defaults(), accounts.Config{}.WithDefaults()
	fs.IntVar(&a.dirLimits.MaxHashQueue, "max-hash-queue", kd.MaxHashQueue, "logins and registrations that may wait for a password-hashing slot; more are answered busy at once")
	fs.DurationVar(&a.dirLimits.MaxHashWait, "max-hash-wait", kd.MaxHashWait, "how long a login waits for a password-hashing slot before it is answered busy")
	fs.IntVar(&a.dirLimits.MaxKeyUserIDs, "max-key-user-ids", kd.MaxKeyUserIDs, "user IDs a published key may carry")
	fs.IntVar(&a.apiLimits.MaxTicketsPerUser, "max-tickets-per-user", ad.MaxTicketsPerUser, "WebSocket tickets (session proofs) one account holds at once")
	md := mailbox.Config{}.WithDefaults()
	fs.BoolVar(&a.mailbox, "mailbox", true, "keep dialog messages for contacts who are away, in memory only, until read or expired (a restart loses them)")
	fs.DurationVar(&a.boxLimits.MaxTTL, "mailbox-ttl-max", md.MaxTTL, "longest time a message may wait in the mailbox (the sender picks up to this)")
	fs.IntVar(&a.boxLimits.MaxPerRecipient, "mailbox-max-per-user", md.MaxPerRecipient, "messages that may wait for one user; a full mailbox refuses the newest")
	a.boxLimits.MaxBytesPerRecipient, a.boxLimits.MaxBytes = md.MaxBytesPerRecipient, md.MaxBytes
	fs.Var((*byteSize)(&a.boxLimits.MaxBytesPerRecipient), "mailbox-max-bytes-per-user", "`bytes` that may wait for one user (suffixes KiB, MiB, GiB)")
	fs.Var((*byteSize)(&a.boxLimits.MaxBytes), "mailbox-max-bytes", "`bytes` the whole mailbox may hold, counted against --max-memory too")
	pd := prekeys.Config{}.WithDefaults()
	fs.IntVar(&a.keyLimits.MaxPerUser, "prekeys-max-per-user", pd.MaxPerUser, "one-time prekeys one user may publish for the mailbox")
	fs.IntVar(&a.keyLimits.MaxHeldPerSender, "prekeys-max-held", pd.MaxHeldPerSender, "prekeys of one user that one sender may take before that user reads its messages")
	a.keyLimits.MaxBytes = pd.MaxBytes
	fs.Var((*byteSize)(&a.keyLimits.MaxBytes), "prekeys-max-bytes", "`bytes` all published prekeys may take, counted against --max-memory too")
}

// directory makes the key directory the flags describe (nil when accounts are off). It is made before the
// relay, so that the relay's memory budget counts what the directory holds.
func (a *accountFlags) directory() (*keydir.Directory, error) {
	if !a.enabled {
		return nil, nil
	}
	cfg := a.dirLimits
	// Password hashing runs on threads of its own at the lowest CPU priority (package lowcpu), one hash per
	// core at once; each holds a scheduler slot while it works, so there are as many slots more, and relaying
	// keeps every core under a login flood.
	cfg.MaxConcurrentHashes = lowcpu.Reserve(runtime.GOMAXPROCS(0))
	cfg.RequireEmail, cfg.TokenAlgorithm, cfg.TokenLifetime = a.requireEmail, a.tokenAlg, a.tokenLifetime
	if a.tokenKeyFile != "" {
		pem, err := os.ReadFile(a.tokenKeyFile)
		if err != nil {
			return nil, fmt.Errorf("--token-key: %w", err)
		}
		cfg.SigningKeyPEM = pem
		defer clear(pem) // keydir keeps the parsed key only
	}
	if a.tokenKey != nil {
		cfg.SigningKeyPEM = a.tokenKey
		defer clear(a.tokenKey)
	}
	dir, err := keydir.New(cfg)
	if err != nil {
		return nil, err
	}
	a.dir = dir
	return dir, nil
}

// api makes the accounts API on dir, the relay's Authenticator of logged-in sessions; nil when dir is nil
// (accounts off).
func (a *accountFlags) api(dir *keydir.Directory, log *slog.Logger) *accounts.Accounts {
	if dir == nil {
		return nil
	}
	cfg := a.apiLimits
	if a.mailbox {
		a.box = mailbox.New(a.boxLimits)
		a.keyLimits.HoldFor = a.boxLimits.WithDefaults().MaxTTL // after it, what the sender left is gone anyway
		a.pre = prekeys.New(a.keyLimits)
		cfg.Mailbox, cfg.Prekeys = a.box, a.pre
	}
	return accounts.New(dir, cfg, log)
}

// withAccounts attaches acc to srv and returns the relay's handler with the accounts API in front, and the
// operator's handler for the admin listener (list counts, revoke a key, disable an account). Without acc
// (accounts off) it is the relay's own handler, and no operator handler.
func withAccounts(srv *relay.Server, acc *accounts.Accounts) (http.Handler, http.Handler) {
	if acc == nil {
		return srv.Handler(), nil
	}
	acc.Attach(srv)
	return acc.Handler(srv.Handler()), acc.AdminHandler()
}
