package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/cleanrelay/cleanrelay/keydir"
	"github.com/cleanrelay/cleanrelay/relay/cluster/natsnet"
)

// endedSessions records what a node asked the relay to end.
type endedSessions struct {
	mu    sync.Mutex
	ended []string
}

func (e *endedSessions) EndSession(user, session string) {
	e.mu.Lock()
	e.ended = append(e.ended, user+"/"+session)
	e.mu.Unlock()
}

func (e *endedSessions) NotifyRemoteDialog(user, room, capability, from string) {
	e.mu.Lock()
	e.ended = append(e.ended, "dialog "+user+" from "+from)
	e.mu.Unlock()
}

func (e *endedSessions) Revoke(user string) {
	e.mu.Lock()
	e.ended = append(e.ended, user)
	e.mu.Unlock()
}

// testNode starts a node named name on a fresh directory, through the cluster's server first (then the others).
func testNode(t *testing.T, nc *natsnet.Cluster, name string, first int, keys *Keys) (*Node, *keydir.Directory, *endedSessions) {
	t.Helper()
	urls := nc.URLs()
	return testNodeOn(t, nc, name, append(urls[first:], urls[:first]...), keys)
}

// testNodeOn starts a node that connects to the NATS servers urls only.
func testNodeOn(t *testing.T, nc *natsnet.Cluster, name string, urls []string, keys *Keys) (*Node, *keydir.Directory, *endedSessions) {
	t.Helper()
	pem, err := keys.TokenKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := keydir.New(keydir.Config{TokenAlgorithm: "EdDSA", SigningKeyPEM: pem})
	if err != nil {
		t.Fatal(err)
	}
	ended := &endedSessions{}
	n, err := Start(context.Background(), Config{URLs: urls, Node: name, Keys: keys,
		NkeySeed: nc.NodeSeed(), CatchUp: 3 * time.Second}, dir, ended, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	return n, dir, ended
}

func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(limit); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, limit)
		}
	}
}

// TestNodeCatchesUpAfterLoss: changes made while a node's only NATS server was dead (core NATS drops them for
// it) reach it once the server is back, through the snapshot it takes on reconnecting (or on hearing that a
// peer has numbered more changes than it applied); a logout applied from another node ends that login's
// sockets here.
func TestNodeCatchesUpAfterLoss(t *testing.T) {
	nc := natsnet.Start(t, natsnet.Options{})
	keys := testKeys(t, secretA)
	a, dirA, _ := testNode(t, nc, "a", 0, keys)
	b, dirB, endedB := testNodeOn(t, nc, "b", nc.URLs()[1:2], keys)
	waitFor(t, 5*time.Second, "peers", func() bool { return a.Stats().Peers == 1 && b.Stats().Peers == 1 })
	ctx := context.Background()
	reg := func(name string) {
		t.Helper()
		if _, err := dirA.Register(ctx, keydir.Registration{Username: name, FullName: name, Password: "Correct-h0rse"}); err != nil {
			t.Fatal(err)
		}
	}
	reg("before")
	if dirB.Stats().Accounts != 1 {
		t.Fatalf("b holds %d accounts once a's registration returned, want 1", dirB.Stats().Accounts)
	}

	nc.Servers()[1].Kill()
	waitFor(t, 5*time.Second, "b off NATS", func() bool { return b.Healthy() != nil })
	for i := range 3 {
		reg(fmt.Sprintf("while-%d", i))
	}
	if dirB.Stats().Accounts != 1 {
		t.Fatalf("b, off NATS, holds %d accounts", dirB.Stats().Accounts)
	}
	if err := nc.Servers()[1].Restart(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "b caught up after reconnecting", func() bool { return dirB.Stats().Accounts == 4 })
	if b.Healthy() != nil {
		t.Fatalf("b unhealthy after reconnecting: %v", b.Healthy())
	}

	tok, s, err := dirA.Login(ctx, "before", "Correct-h0rse")
	if err != nil {
		t.Fatal(err)
	}
	if err := dirA.Logout(tok); err != nil {
		t.Fatal(err)
	}
	if _, err := dirB.Authenticate(tok); err == nil {
		t.Fatal("the token logged out on a still works on b")
	}
	endedB.mu.Lock()
	defer endedB.mu.Unlock()
	if len(endedB.ended) != 1 || endedB.ended[0] != "before/"+s.TokenID {
		t.Fatalf("b ended %q, want the logged-out login", endedB.ended)
	}
}

// TestNodeOtherSecret: a node with another cluster secret shares the NATS servers but not the directory: its
// subjects are others, so it neither hears the nodes with the cluster's secret nor is heard by them, while a
// second node with the secret does both.
func TestNodeOtherSecret(t *testing.T) {
	nc := natsnet.Start(t, natsnet.Options{})
	a, dirA, _ := testNode(t, nc, "a", 0, testKeys(t, secretA))
	a2, dirA2, _ := testNode(t, nc, "a2", 1, testKeys(t, secretA))
	x, dirX, _ := testNode(t, nc, "x", 2, testKeys(t, secretB))
	waitFor(t, 5*time.Second, "a and a2 hear each other", func() bool { return a.Stats().Peers == 1 && a2.Stats().Peers == 1 })
	if _, err := dirA.Register(context.Background(), keydir.Registration{Username: "alice", FullName: "A", Password: "Correct-h0rse"}); err != nil {
		t.Fatal(err)
	}
	if dirA2.Stats().Accounts != 1 {
		t.Fatal("a2, with the secret, does not hold a's registration")
	}
	if dirX.Stats().Accounts != 0 || x.Stats().Peers != 0 || a.Stats().Peers != 1 {
		t.Fatalf("a node with another secret takes part: it holds %d accounts and hears %d peers; a hears %d",
			dirX.Stats().Accounts, x.Stats().Peers, a.Stats().Peers)
	}
}
