package main

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cleanrelay/cleanrelay/relay/bench"
)

// TestClusterPausedNode stops (SIGSTOP) the node of the pairs' second members for three seconds, longer than
// the two peer timeouts after which a node takes over the rooms of a node it does not hear, while the pairs
// talk, then lets it run again. A node not running hears nothing, so it must not judge its peers by that
// time (docs/cluster.md §2, "A node only paused"): it takes no room over, the sequencer ends none, and every
// frame arrives once and in order, as a loaded machine's starved node must not stall its rooms either.
// Before, the paused node took every room it mirrored over as soon as it ran again, the sequencer ended
// them and closed its members' sockets (close 1001, resume), and their pairs stalled (TestClusterPairs, about
// one run in 20 under load).
func TestClusterPausedNode(t *testing.T) {
	a, b := pairOfNodes(t)
	ws := func(n *clusterNode) string { return "ws" + strings.TrimPrefix(n.url, "http") + "ws" }
	s := bench.Attach("relay", ws(a), a.cmd.Process.Pid)
	s.JoinURL = ws(b)
	// 20 rooms of a member on A and one on B, 25 frames/s each way for 8 s: the pause falls well inside.
	const rooms, frames = 20, 200
	flowing := make(chan struct{})
	var once bool
	cfg := bench.PairsConfig{Rooms: rooms, Frames: frames, Size: 1024, Rate: 25, Timeout: time.Minute,
		Progress: func(_ string, done, _ int64) {
			if done >= 2*rooms*20 && !once { // every member has had about 20 frames
				once = true
				close(flowing)
			}
		}}
	type result struct {
		r   *bench.Result
		err error
	}
	res := make(chan result, 1)
	go func() {
		r, err := bench.Pairs(context.Background(), s, cfg)
		res <- result{r, err}
	}()
	var got result
	select {
	case <-flowing:
	case got = <-res:
		t.Fatalf("the pairs ended before their frames flowed: %+v, %v", got.r, got.err)
	}
	const pause = 3 * time.Second // above the takeover's two peer timeouts (--cluster-peer-timeout, 1 s)
	if err := b.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	time.Sleep(pause)
	if err := b.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	t.Logf("node-b stopped for %v", time.Since(stopped).Round(time.Millisecond))
	got = <-res
	if got.err != nil {
		t.Fatal(got.err)
	}
	p := got.r.Pairs
	t.Logf("%d frames delivered in %.1f s, p99 %.0f ms, max %.0f ms; node-b relinked %v members", p.Delivered, got.r.Seconds,
		p.LatP99ms, p.LatMaxms, b.scrape(t, "cleanrelay_cluster_relinks_total"))
	if got.r.Errors != 0 || p.Delivered != 2*rooms*frames || p.Lost != 0 || p.Duplicated != 0 || p.Reordered != 0 || p.LostNotices != 0 {
		t.Errorf("%d errors (%s), %d of %d delivered, %d lost, %d duplicated, %d reordered, %d lost notices", got.r.Errors,
			got.r.ErrorKinds, p.Delivered, 2*rooms*frames, p.Lost, p.Duplicated, p.Reordered, p.LostNotices)
	}
	if n := b.scrape(t, "cleanrelay_cluster_takeovers_total"); n != 0 {
		t.Errorf("node-b, only paused, took %v rooms of the live node-a over", n)
	}
	if n := a.scrape(t, "cleanrelay_cluster_rooms_yielded_total"); n != 0 {
		t.Errorf("node-a ended %v of its rooms (another node took them over)", n)
	}
}
