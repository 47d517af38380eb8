package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/cleanrelay/cleanrelay/keydir"
	"github.com/cleanrelay/cleanrelay/relay"
	"github.com/cleanrelay/cleanrelay/relay/cluster"
)

// Secrets a node may take from its environment instead of a file. They have no flag: a command line is
// visible to every user of the machine (ps).
const (
	envClusterSecret = envPrefix + "CLUSTER_SECRET"
	envNkeySeed      = envPrefix + "NATS_NKEY_SEED"
)

// clusterFlags join the relay to a cluster of nodes over NATS (docs/cluster.md). Without --cluster, none of
// it is used.
type clusterFlags struct {
	urls       string
	node       string
	secretFile string
	seedFile   string
	cfg        cluster.Config // the timing flags

	keys *cluster.Keys // made by prepare
	run  *cluster.Node // started by start; closed by close
}

func (c *clusterFlags) register(fs *flag.FlagSet) {
	d := cluster.Config{}.WithDefaults()
	fs.StringVar(&c.urls, "cluster", "", "join a cluster of relay nodes through these NATS `servers` (nats://host:port, comma-separated); empty: one process, no NATS")
	fs.StringVar(&c.node, "node", "", "with --cluster: this node's `name`, unique in the cluster (a-z, 0-9, '-')")
	fs.StringVar(&c.secretFile, "cluster-secret-file", "", "with --cluster: `file` holding the cluster secret (32+ bytes, the same on every node; or set "+envClusterSecret+")")
	fs.StringVar(&c.seedFile, "nats-nkey-seed-file", "", "with --cluster: `file` holding the nkey seed the NATS servers know the nodes by (SU…; or set "+envNkeySeed+")")
	fs.DurationVar(&c.cfg.Heartbeat, "cluster-heartbeat", d.Heartbeat, "with --cluster: how often the node tells the others it lives")
	fs.DurationVar(&c.cfg.PeerTimeout, "cluster-peer-timeout", d.PeerTimeout, "with --cluster: a node unheard for this long is no longer a peer")
	fs.DurationVar(&c.cfg.CatchUp, "cluster-catch-up", d.CatchUp, "with --cluster: how long a starting node waits to take the other nodes' directories")
}

// validate checks the cluster flags against each other and against the accounts flags.
func (c *clusterFlags) validate(acc *accountFlags, set map[string]bool) error {
	if c.urls == "" {
		for _, name := range []string{"node", "cluster-secret-file", "nats-nkey-seed-file"} {
			if set[name] {
				return fmt.Errorf("--%s needs --cluster", name)
			}
		}
		return nil
	}
	for _, u := range strings.Split(c.urls, ",") {
		p, err := url.Parse(strings.TrimSpace(u))
		if err != nil || (p.Scheme != "nats" && p.Scheme != "tls") || p.Host == "" || p.User != nil {
			return fmt.Errorf("--cluster %q: each server is nats://host:port (or tls://host:port), without credentials", u)
		}
	}
	if err := cluster.CheckNodeName(c.node); err != nil {
		return fmt.Errorf("--node: %w", err)
	}
	if c.secretFile == "" && os.Getenv(envClusterSecret) == "" {
		return fmt.Errorf("--cluster needs the cluster secret: --cluster-secret-file or %s", envClusterSecret)
	}
	if c.seedFile == "" && os.Getenv(envNkeySeed) == "" {
		return fmt.Errorf("--cluster needs the nodes' nkey seed: --nats-nkey-seed-file or %s", envNkeySeed)
	}
	if acc.tokenKeyFile != "" {
		return errors.New("--token-key and --cluster exclude each other: the nodes derive their token key from the cluster secret")
	}
	if set["token-alg"] && acc.tokenAlg != "EdDSA" {
		return errors.New("--cluster signs tokens with EdDSA (a key derived from the cluster secret): leave --token-alg out")
	}
	return nil
}

// secretInput reads a secret from file, else from the environment variable; surrounding white space is cut.
func secretInput(file, env string) ([]byte, error) {
	if file == "" {
		return bytes.TrimSpace([]byte(os.Getenv(env))), nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	t := bytes.TrimSpace(b)
	out := bytes.Clone(t)
	clear(b)
	return out, nil
}

// prepare derives the cluster keys and, when accounts are on, has the directory sign tokens with the shared
// key. It is called before the directory is made; nothing happens without --cluster.
func (c *clusterFlags) prepare(acc *accountFlags) error {
	if c.urls == "" {
		return nil
	}
	secret, err := secretInput(c.secretFile, envClusterSecret)
	if err != nil {
		return fmt.Errorf("--cluster-secret-file: %w", err)
	}
	defer clear(secret)
	if c.keys, err = cluster.DeriveKeys(secret); err != nil {
		return fmt.Errorf("the cluster secret: %w", err)
	}
	if acc.tokenKey, err = c.keys.TokenKeyPEM(); err != nil {
		return err
	}
	acc.tokenAlg = "EdDSA"
	return nil
}

// start joins the cluster once the relay and its directory exist (dir nil: accounts off).
func (c *clusterFlags) start(ctx context.Context, dir *keydir.Directory, srv *relay.Server, log *slog.Logger) error {
	if c.urls == "" {
		return nil
	}
	seed, err := secretInput(c.seedFile, envNkeySeed)
	if err != nil {
		return fmt.Errorf("--nats-nkey-seed-file: %w", err)
	}
	cfg := c.cfg
	cfg.URLs = strings.Split(c.urls, ",")
	cfg.Node, cfg.Keys, cfg.NkeySeed = c.node, c.keys, seed
	cfg.SweepAgain = srv.Config().HandshakeTimeout + time.Second // as relay/accounts' second sweep
	var d cluster.Directory
	if dir != nil {
		d = dir
	}
	if c.run, err = cluster.Start(ctx, cfg, d, srv, log); err != nil {
		return err
	}
	if err := c.run.ServeRooms(srv.Rooms(), srv.Config().MaxFrame); err != nil {
		c.run.Close()
		return fmt.Errorf("failed to serve rooms across nodes: %w", err)
	}
	return nil
}

// close leaves the cluster and overwrites its keys.
func (c *clusterFlags) close() {
	if c.run != nil {
		c.run.Close()
	}
	if c.keys != nil {
		c.keys.Wipe()
	}
}
