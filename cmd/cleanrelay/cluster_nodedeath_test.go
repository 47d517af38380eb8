package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cleanrelay/cleanrelay/relay/bench"
	"github.com/cleanrelay/cleanrelay/relay/cluster/natsnet"
)

// clusterMetrics is every cleanrelay_cluster_ sample of the node's /metrics, on one line.
func clusterMetrics(t *testing.T, n *clusterNode) string {
	t.Helper()
	_, body := httpGet(t, n.admin+"metrics", "")
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, "cleanrelay_cluster_") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "; ")
}

// The size of TestClusterNodeDeath. CI runs the small default; the measurement in docs/performance.md ran it with
// -cluster-death-rooms 200 (by hand, never in CI).
var (
	clusterDeathRooms  = flag.Int("cluster-death-rooms", 20, "TestClusterNodeDeath: pair rooms with a member on the node that dies")
	clusterDeathRate   = flag.Float64("cluster-death-rate", 10, "TestClusterNodeDeath: frames per second per member")
	clusterDeathBefore = flag.Duration("cluster-death-before", 3*time.Second, "TestClusterNodeDeath: traffic before the kill")
	clusterDeathAfter  = flag.Duration("cluster-death-after", 6*time.Second, "TestClusterNodeDeath: traffic after the kill")
)

// TestClusterNodeDeath runs `cleanrelay bench nodedeath` against three relay nodes on three NATS servers: the
// bench opens pair rooms with one member on node A (half of them made on A, which sequences them), SIGKILLs A
// while they chat, and A's members resume on B or C. The bench's result says that every member of A resumed,
// every room flowed again both ways, the members on B and C kept their sockets, and no frame was lost,
// duplicated or reordered; A's rooms were taken over by B and C (their metrics), and A died of the bench's
// SIGKILL.
func TestClusterNodeDeath(t *testing.T) {
	nc := natsnet.Start(t, natsnet.Options{})
	secret := writeSecret(t)
	rooms := *clusterDeathRooms
	flags := []string{"--log-level", "warn", "--max-conns", fmt.Sprint(4*rooms + 64), "--max-rooms", fmt.Sprint(2*rooms + 64)}
	a := startNode(t, nc, "node-a", 0, secret, flags...)
	b := startNode(t, nc, "node-b", 1, secret, flags...)
	c := startNode(t, nc, "node-c", 2, secret, flags...)
	nodes := []*clusterNode{a, b, c}
	var urls, pids []string
	for _, n := range nodes {
		eventually(t, 10*time.Second, n.name+" sees two peers", func() bool { return n.scrape(t, "cleanrelay_cluster_peers") == 2 })
		urls = append(urls, "ws"+strings.TrimPrefix(n.url, "http")+"ws?anonymous=1")
		pids = append(pids, fmt.Sprint(n.cmd.Process.Pid))
	}
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"bench", "--servers", "relay", "--json", "--url", strings.Join(urls, ","), "--pid", strings.Join(pids, ","),
		"--kill-pid", pids[0], "--death-rooms", fmt.Sprint(rooms), "--death-rate", fmt.Sprint(*clusterDeathRate),
		"--death-before", clusterDeathBefore.String(), "--death-after", clusterDeathAfter.String(), "--size", "256",
		"--death-resume-limit", "20s", "--timeout", "30s", "nodedeath"}
	t.Logf("cleanrelay %s", strings.Join(args, " "))
	// The bench bounds itself (its resumes by --death-resume-limit, the run by --timeout); this is a last guard.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute+*clusterDeathBefore+*clusterDeathAfter)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	line := bytes.TrimSpace(stdout.Bytes())
	if runErr != nil {
		// What the surviving nodes counted, for whoever looks into it.
		for _, n := range []*clusterNode{b, c} {
			t.Logf("%s: %s", n.name, clusterMetrics(t, n))
		}
		t.Fatalf("cleanrelay bench: %v\nstdout:\n%s\nstderr:\n%s", runErr, line, clip(stderr.String(), 3000))
	}
	if err := bench.ValidateJSONLine(line, "nodedeath"); err != nil {
		t.Fatal(err)
	}
	var r bench.Result
	if err := json.Unmarshal(line, &r); err != nil {
		t.Fatal(err)
	}
	d := r.NodeDeath
	if r.Errors != 0 || d.Nodes != 3 || d.Rooms != rooms || d.Affected != rooms || d.Resumed != rooms || d.Flowing != rooms ||
		d.Survivors != rooms || d.SurvivorsKept != rooms {
		t.Errorf("errors %d (%s); nodes %d, rooms %d, affected %d, resumed %d, flowing %d, survivors kept %d of %d; want 0, 3 nodes and %d of each:\n%s",
			r.Errors, r.ErrorKinds, d.Nodes, d.Rooms, d.Affected, d.Resumed, d.Flowing, d.SurvivorsKept, d.Survivors, rooms, line)
	}
	if want := int64(2 * rooms * d.Frames); d.Lost != 0 || d.Duplicated != 0 || d.Reordered != 0 || d.LostNotices != 0 || d.Unsent != 0 || d.Delivered != want {
		t.Errorf("delivered %d of %d frames: %d lost, %d duplicated, %d reordered, %d unsent, %d lost notices (gaps: %s)",
			d.Delivered, want, d.Lost, d.Duplicated, d.Reordered, d.Unsent, d.LostNotices, d.Gaps)
	}
	if !(d.ResumeP50ms <= d.ResumeP99ms && d.ResumeP99ms <= d.ResumeMaxms && d.FlowP50ms <= d.FlowP99ms && d.FlowP99ms <= d.FlowMaxms) {
		t.Errorf("percentiles out of order: %s", line)
	}
	// A died of the bench's SIGKILL, and B and C took over the rooms made on A (0, 2, 4 …).
	werr := a.cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(werr, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("node-a ended with %v, want killed by SIGKILL", werr)
	}
	if got := b.scrape(t, "cleanrelay_cluster_takeovers_total") + c.scrape(t, "cleanrelay_cluster_takeovers_total"); int(got) != d.TakenOver || d.TakenOver != (rooms+1)/2 {
		t.Errorf("B and C took over %v rooms, the bench made %d on A (taken_over %d)", got, (rooms+1)/2, d.TakenOver)
	}
	t.Logf("%d rooms over 3 nodes at %g frames/s per member: %d members of node-a resumed on B or C after the SIGKILL in p50 %.0f ms, p99 %.0f ms, max %.0f ms (%d resumes asked again); rooms flowing both ways again p50 %.0f ms, p99 %.0f ms, max %.0f ms; %d frames delivered, none lost or repeated",
		rooms, d.Rate, d.Resumed, d.ResumeP50ms, d.ResumeP99ms, d.ResumeMaxms, d.ResumeRetries, d.FlowP50ms, d.FlowP99ms, d.FlowMaxms, d.Delivered)
	t.Logf("%s", line)
}
