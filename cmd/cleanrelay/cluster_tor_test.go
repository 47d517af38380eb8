package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cleanrelay/cleanrelay/onion/tornet"
	"github.com/cleanrelay/cleanrelay/relay/client"
	"github.com/cleanrelay/cleanrelay/relay/cluster/natsnet"
)

// frontLimit bounds the wait for the first answer through the Onionbalance front: onionbalance fetches the
// instances' descriptors on a new consensus (every 20 s on the test network) and publishes on a later check;
// TestOnionbalance measured 25–58 s.
const frontLimit = 5 * time.Minute

// TestOnionbalanceClusterTor runs the cluster behind Onionbalance on the private Tor network (docs/cluster.md
// §7): three NATS servers, three `cleanrelay serve --cluster … --node …` processes, each with its own tor
// publishing an Onionbalance instance service that forwards to the node, its key derived from the cluster secret
// (`cleanrelay cluster hsdir`), and onionbalance publishing one front address over the three, configured by
// `cleanrelay cluster config`. Through the client tor, WebSockets on new circuits reach the front and land on more
// than one node (each node's cleanrelay_connections says which one holds the socket); then two clients on
// different nodes share a room made through the front and exchange frames both ways, each side's arriving once
// and in order, the room's node serving the other node's member over NATS.
//
// It needs -tor and -nats, and runs in .ci/test-tor.sh's loopback-only namespace.
func TestOnionbalanceClusterTor(t *testing.T) {
	tornet.Require(t)
	natsnet.Require(t)
	start := time.Now()
	tn := tornet.StartWith(t, tornet.Options{VotingInterval: 20 * time.Second, Authorities: 7})
	t.Logf("Tor network up in %v", time.Since(start).Round(time.Millisecond))
	ob, err := tn.NewOnionbalance()
	if err != nil {
		t.Fatal(err)
	}

	nc := natsnet.Start(t, natsnet.Options{})
	secret := writeSecret(t)
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"node-a", "node-b", "node-c"}
	var nodes []*clusterNode
	for i, name := range names {
		// The node serves on loopback; its tor's instance service forwards the front's port 80 to it, and the
		// node accepts requests for the front's address. The tor's HiddenServiceDir is on tmpfs, written by
		// `cleanrelay cluster hsdir` from the secret and the node's name, given as §8's compose gives them.
		n := startNode(t, nc, name, i, secret, "--allow-host", ob.Address)
		nodes = append(nodes, n)
		hsDir := filepath.Join(ramTempDir(t), "hs")
		cmd := exec.Command(bin, "cluster", "hsdir", "--front", ob.Address, "--dir", hsDir)
		cmd.Env = append(os.Environ(), envPrefix+"CLUSTER_SECRET_FILE="+secret, envPrefix+"NODE="+name)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("cleanrelay cluster hsdir for %s: %v: %s", name, err, out)
		}
		addr, err := ob.StartInstance(name+"-tor", strings.TrimSuffix(strings.TrimPrefix(n.url, "http://"), "/"), hsDir)
		if err != nil {
			t.Fatal(err)
		}
		// The address the instance's tor publishes is the one derived from the secret and the name.
		if want := wantInstanceAddress(t, secret, name); addr != want {
			t.Fatalf("%s's tor publishes %s, derived: %s", name, addr, want)
		}
	}
	for _, n := range nodes {
		eventually(t, 10*time.Second, n.name+" sees two peers", func() bool { return n.scrape(t, "cleanrelay_cluster_peers") == 2 })
	}
	// Onionbalance's config is what `cleanrelay cluster config` prints: the derived addresses, which it finds
	// only if the instances' tors publish exactly them.
	code, cfg, errOut := runCluster("config", "--cluster-secret-file", secret, "--nodes", strings.Join(names, ","), "--front-key", ob.KeyFile)
	if code != 0 {
		t.Fatalf("cleanrelay cluster config: exit %d: %s", code, errOut)
	}
	if !strings.Contains(cfg, "# front: "+ob.Address+"\n") {
		t.Fatalf("cluster config names another front than %s:\n%s", ob.Address, cfg)
	}
	obStart := time.Now()
	if err := ob.StartConfig(cfg); err != nil {
		t.Fatal(err)
	}
	t.Logf("three nodes and their instance services up at %v", time.Since(start).Round(time.Millisecond))

	// The first answer through the front: retry on fresh circuits until the front's descriptor is out. After a
	// failure the client tor forgets what it learnt (NEWNYM), or it would not ask the HSDirs again for minutes.
	var tries int
	for deadline := time.Now().Add(frontLimit); ; {
		tries++
		err := getIsolated(tn, ob.Address, fmt.Sprintf("first-%d", tries))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no answer through the front %s within %v (%d tries; last: %v)", ob.Address, frontLimit, tries, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := tn.ForgetOnionServices(ctx); err != nil {
			t.Logf("NEWNYM: %v", err)
		}
		cancel()
		time.Sleep(2 * time.Second)
	}
	t.Logf("first answer through the front %v after onionbalance started (%d tries)", time.Since(obStart).Round(time.Millisecond), tries)

	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	wsURL := "ws://" + ob.Address + "/ws?anonymous=1"
	// dial opens a WebSocket through the front on circuits of its own and returns it with the node holding it
	// (the one node whose socket count rose above held, the sockets the test keeps open on that node).
	dial := func(isolation string, held map[*clusterNode]int) (*client.Conn, *clusterNode) {
		t.Helper()
		c, err := client.Dial(ctx, wsURL, &client.Options{NetDialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return tornet.DialSOCKS5Isolated(ctx, tn.SocksAddr, addr, isolation)
		}})
		if err != nil {
			t.Fatalf("WebSocket through the front (%s): %v", isolation, err)
		}
		var on *clusterNode
		eventually(t, 15*time.Second, isolation+"'s socket counted on one node", func() bool {
			on = nil
			for _, n := range nodes {
				switch int(n.scrape(t, "cleanrelay_connections")) - held[n] {
				case 0:
				case 1:
					if on != nil {
						return false
					}
					on = n
				default:
					return false
				}
			}
			return on != nil
		})
		return c, on
	}
	// closeOn closes c and waits until its node no longer counts it.
	closeOn := func(c *client.Conn, on *clusterNode, held map[*clusterNode]int) {
		t.Helper()
		c.Close()
		eventually(t, 15*time.Second, "a closed socket leaves "+on.name, func() bool {
			return int(on.scrape(t, "cleanrelay_connections")) == held[on]
		})
	}

	const probes = 12
	landed := map[string]int{}
	for i := range probes {
		c, on := dial(fmt.Sprintf("probe-%d", i), nil)
		landed[on.name]++
		closeOn(c, on, nil)
	}
	t.Logf("%d WebSockets on new circuits through the front landed on %v", probes, landed)
	if len(landed) < 2 {
		t.Fatalf("every socket through the front landed on %v: the front does not spread over the nodes", landed)
	}

	// Two clients on different nodes: alice where her circuit leads, bob on new circuits until his leads to
	// another node.
	held := map[*clusterNode]int{}
	alice, aliceOn := dial("alice", held)
	defer alice.Close()
	held[aliceOn]++
	var bob *client.Conn
	var bobOn *clusterNode
	for i := 0; bobOn == nil; i++ {
		if i == 20 {
			t.Fatalf("20 circuits of bob all led to %s, alice's node", aliceOn.name)
		}
		c, on := dial(fmt.Sprintf("bob-%d", i), held)
		if on == aliceOn {
			closeOn(c, on, held)
			continue
		}
		bob, bobOn = c, on
	}
	defer bob.Close()
	t.Logf("alice is on %s, bob on %s", aliceOn.name, bobOn.name)

	ra, err := alice.Create(ctx, 2)
	if err != nil {
		t.Fatalf("alice creates a room through the front: %v", err)
	}
	rb, err := joinAsking(ctx, bob, ra.ID, ra.Cap)
	if err != nil {
		t.Fatalf("bob joins alice's room through the front: %v", err)
	}
	// The room is sequenced on alice's node, which serves bob over NATS; bob's node proxies him.
	eventually(t, 10*time.Second, aliceOn.name+" serves one member of another node", func() bool {
		return aliceOn.scrape(t, "cleanrelay_cluster_rooms_sequenced") == 1 && aliceOn.scrape(t, "cleanrelay_cluster_members_served") == 1
	})
	eventually(t, 10*time.Second, bobOn.name+" proxies bob", func() bool {
		return bobOn.scrape(t, "cleanrelay_cluster_members_proxied") == 1
	})

	const frames = 20
	for i := range frames {
		if err := alice.Send(ra.Ch, fmt.Appendf(nil, "alice %d", i)); err != nil {
			t.Fatal(err)
		}
		if err := bob.Send(rb.Ch, fmt.Appendf(nil, "bob %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for _, side := range []struct {
		c    *client.Conn
		ch   byte
		from string
	}{{bob, rb.Ch, "alice"}, {alice, ra.Ch, "bob"}} {
		var got []string
		for len(got) < frames {
			select {
			case ev, ok := <-side.c.Events():
				if !ok {
					t.Fatalf("the socket ended after %d of %s's frames: %v", len(got), side.from, side.c.Err())
				}
				switch ev.Kind {
				case client.KindFrame:
					want := fmt.Sprintf("%s %d", side.from, len(got))
					if string(ev.Payload) != want {
						t.Fatalf("got %q after %q, want %q (lost, reordered or repeated)", ev.Payload, got, want)
					}
					got = append(got, want)
					side.c.Ack(side.ch, ev.Seq)
				case client.KindLost, client.KindClosed, client.KindError:
					t.Fatalf("while waiting for %s's frames: event %+v", side.from, ev)
				}
			case <-ctx.Done():
				t.Fatalf("%d of %s's %d frames arrived before %v", len(got), side.from, frames, ctx.Err())
			}
		}
	}
	t.Logf("alice on %s and bob on %s exchanged %d frames each way through the front; whole test %v", aliceOn.name,
		bobOn.name, frames, time.Since(start).Round(time.Millisecond))
}

// getIsolated GETs http://addr/ through the client tor on circuits of the given isolation and wants 200.
func getIsolated(tn *tornet.Network, addr, isolation string) error {
	hc := &http.Client{
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, a string) (net.Conn, error) {
				return tornet.DialSOCKS5Isolated(ctx, tn.SocksAddr, a, isolation)
			},
			DisableKeepAlives: true,
		},
		Timeout: 30 * time.Second,
	}
	resp, err := hc.Get("http://" + addr + "/")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}
