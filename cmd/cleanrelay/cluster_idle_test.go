package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cleanrelay/cleanrelay/relay/bench"
	"github.com/cleanrelay/cleanrelay/relay/cluster/natsnet"
)

// The size of TestClusterIdle. CI runs the small default; the measurement in docs/performance.md ran it with
// -cluster-idle-conns 99900 -cluster-idle-procs 10 -cluster-idle-hold 30s (by hand, never in CI).
var (
	clusterIdleConns = flag.Int("cluster-idle-conns", 1000, "TestClusterIdle: idle connections over the five nodes")
	clusterIdleProcs = flag.Int("cluster-idle-procs", 5, "TestClusterIdle: client processes holding them")
	clusterIdleHold  = flag.Duration("cluster-idle-hold", 2*time.Second, "TestClusterIdle: how long they are held before memory is measured")
)

// TestClusterIdle runs `cleanrelay bench idle` over five relay nodes of a cluster on three NATS servers, its
// connections held by several client processes ("cleanrelay bench-hold"): every connection is made and still
// open after the hold, on every node, and the bench reports each node's RSS per connection and the setup time.
func TestClusterIdle(t *testing.T) {
	nc := natsnet.Start(t, natsnet.Options{})
	secret := writeSecret(t)
	const nodes = 5
	perNode := (*clusterIdleConns/nodes + 1) / 2 * 2
	var urls, pids []string
	var all []*clusterNode
	for i := range nodes {
		n := startNode(t, nc, fmt.Sprintf("node-%d", i+1), i%3, secret, "--log-level", "warn",
			"--max-conns", fmt.Sprint(perNode+16), "--max-rooms", fmt.Sprint(perNode/2+16))
		all = append(all, n)
		urls = append(urls, "ws"+strings.TrimPrefix(n.url, "http")+"ws?anonymous=1")
		pids = append(pids, fmt.Sprint(n.cmd.Process.Pid))
	}
	for _, n := range all {
		eventually(t, 10*time.Second, n.name+" sees the other nodes", func() bool { return n.scrape(t, "cleanrelay_cluster_peers") == nodes-1 })
	}
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "bench", "--servers", "relay", "--json", "--url", strings.Join(urls, ","), "--pid", strings.Join(pids, ","),
		"--conns", fmt.Sprint(*clusterIdleConns), "--client-procs", fmt.Sprint(*clusterIdleProcs), "--hold", clusterIdleHold.String(),
		"--timeout", "20m", "idle")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// While the bench runs, each node's own count of connections is sampled: each must reach its share.
	done := make(chan error, 1)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	most := make([]float64, nodes)
	for running := true; running; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("cleanrelay bench: %v\n%s\n%s", err, stdout.String(), stderr.String())
			}
			running = false
		case <-time.After(200 * time.Millisecond):
			for k, n := range all {
				most[k] = max(most[k], n.scrape(t, "cleanrelay_connections"))
			}
		}
	}
	for k, n := range all {
		if int(most[k]) != perNode {
			t.Errorf("%s held at most %v connections, want its share %d", n.name, most[k], perNode)
		}
	}
	line := bytes.TrimSpace(stdout.Bytes())
	if err := bench.ValidateJSONLine(line, "idle"); err != nil {
		t.Fatal(err)
	}
	var r bench.Result
	if err := json.Unmarshal(line, &r); err != nil {
		t.Fatal(err)
	}
	i := r.Idle
	if i.Nodes != nodes || i.Conns != nodes*perNode || i.Alive != i.Conns || r.Errors != 0 || i.ClientProcs < *clusterIdleProcs {
		t.Fatalf("nodes %d, conns %d, alive %d, errors %d, client processes %d; want %d, %d, all, 0, at least %d:\n%s",
			i.Nodes, i.Conns, i.Alive, r.Errors, i.ClientProcs, nodes, nodes*perNode, *clusterIdleProcs, line)
	}
	if by := strings.Fields(i.ByNode); len(by) != nodes {
		t.Fatalf("by_node %q has not %d nodes", i.ByNode, nodes)
	}
	// After the bench, every node let its connections go.
	for _, n := range all {
		eventually(t, time.Minute, n.name+" holds no connection after the bench", func() bool { return n.scrape(t, "cleanrelay_connections") == 0 })
	}
	t.Logf("%d idle connections over %d nodes held by %d client processes: setup %.1f s, RSS per connection %.0f B (nodes: %s), client processes %.0f B per connection; whole run %v",
		i.Alive, i.Nodes, i.ClientProcs, i.SetupSeconds, i.ServerPerConn, i.ByNode, i.ToolPerConn, time.Since(start).Round(time.Second))
}
