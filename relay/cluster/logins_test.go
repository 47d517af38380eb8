package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/cleanrelay/cleanrelay/keydir"
	"github.com/cleanrelay/cleanrelay/relay/cluster/natsnet"
)

// TestLoginArbiterDeath: the nodes agree on a name's arbiter; failures counted on other nodes through it are
// in every node's copy, so when the arbiter leaves, the node that takes its place goes on backing the name off
// (1 min after the fifth failure here) instead of granting five free attempts again.
func TestLoginArbiterDeath(t *testing.T) {
	nc := natsnet.Start(t, natsnet.Options{})
	keys := testKeys(t, "the login arbiter test's cluster secret, 32+ bytes")
	var nodes []*Node
	var dirs []*keydir.Directory
	for i, name := range []string{"node-a", "node-b", "node-c"} {
		pem, err := keys.TokenKeyPEM()
		if err != nil {
			t.Fatal(err)
		}
		dir, err := keydir.New(keydir.Config{TokenAlgorithm: "EdDSA", SigningKeyPEM: pem, LoginBackoffBase: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		urls := nc.URLs()
		n, err := Start(context.Background(), Config{URLs: append(urls[i:], urls[:i]...), Node: name, Keys: keys,
			NkeySeed: nc.NodeSeed(), CatchUp: 3 * time.Second}, dir, &endedSessions{}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(n.Close)
		nodes, dirs = append(nodes, n), append(dirs, dir)
	}
	for _, n := range nodes {
		waitFor(t, 5*time.Second, n.cfg.Node+" hears two peers", func() bool { return len(n.livePeers()) == 2 })
	}
	// A name node-c arbitrates, as every node sees it.
	var name string
	for i := 0; name == ""; i++ {
		cand := fmt.Sprintf("guessed-%d", i)
		if nodes[0].logins.arbiter(cand) == "node-c" && nodes[1].logins.arbiter(cand) == "node-c" && nodes[2].logins.arbiter(cand) == "node-c" {
			name = cand
		}
	}
	ctx := context.Background()
	for i := range 5 {
		if _, _, err := dirs[i%2].Login(ctx, name, "wrong password"); !errors.Is(err, keydir.ErrBadCredentials) {
			t.Fatalf("failure %d on %s: %v", i+1, nodes[i%2].cfg.Node, err)
		}
	}
	var be *keydir.BackoffError
	if _, _, err := dirs[0].Login(ctx, name, "wrong password"); !errors.As(err, &be) {
		t.Fatalf("a sixth attempt on node-a: %v, want a backoff", err)
	}
	for i := range 2 {
		waitFor(t, 5*time.Second, nodes[i].cfg.Node+" holds the arbiter's record", func() bool {
			c, _ := dirs[i].FailureRecord(name)
			return c == 5
		})
	}
	if c, _ := dirs[2].FailureRecord(name); c != 5 {
		t.Fatalf("the arbiter's table holds %d failures, want 5", c)
	}

	nodes[2].Close()
	for i := range 2 {
		waitFor(t, 5*time.Second, nodes[i].cfg.Node+" no longer counts node-c live", func() bool { return len(nodes[i].livePeers()) == 1 })
	}
	for i := range 2 {
		if _, _, err := dirs[i].Login(ctx, name, "wrong password"); !errors.As(err, &be) || be.RetryAfter < 30*time.Second {
			t.Fatalf("after the arbiter left, an attempt on %s: %v, want the minute's backoff", nodes[i].cfg.Node, err)
		}
	}
}
