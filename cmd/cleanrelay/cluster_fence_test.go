package main

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/cleanrelay/cleanrelay/relay/client"
	"github.com/cleanrelay/cleanrelay/relay/cluster/natsnet"
)

// TestClusterFence cuts node A, which sequences a room, off NATS in the middle of a conversation between a
// member on A and one on B: A's only NATS server is SIGKILLed. B takes the room over from its mirror copy; A,
// cut off for the peer timeout, stops sequencing the room and ends its member's socket (the fence), and that
// member resumes on B with its token and sends again what the reply's In does not count. The NATS server comes
// back meanwhile: A is healthy again and sequences nothing. Both members are given every frame of the other
// once, in order, each frame with one seq, and nobody is told lost or closed. On the code before the fence, A's
// member keeps its socket and talks into A's room alone: its frames never reach B's member.
func TestClusterFence(t *testing.T) {
	cp := cutOffMidway(t, "f", "30s", false)
	nc, a, all := cp.nc, cp.a, cp.all
	// The fence: A, still off NATS, ends its member's socket (the only one on A).
	eventually(t, 10*time.Second, "A ended its member's socket while off NATS", func() bool {
		return !a.healthy(t) && a.scrape(t, "cleanrelay_connections") == 0
	})
	if err := nc.Servers()[0].Restart(); err != nil {
		t.Fatal(err)
	}
	cp.wait()
	eventually(t, 10*time.Second, "A healthy again", func() bool { return a.healthy(t) })
	if t.Failed() {
		return
	}
	checkTalkers(t, all)
	if n, y := a.scrape(t, "cleanrelay_cluster_rooms_sequenced"), a.scrape(t, "cleanrelay_cluster_rooms_yielded_total"); n != 0 || y != 1 {
		t.Errorf("A sequences %v rooms after the fence, and yielded %v", n, y)
	}
	t.Logf("A cut off from NATS: its member resumed on B %v after the kill; %d frames each way, none lost or repeated, one order",
		all[0].resumed, takeoverFrames)
}

// cutOff is a conversation cut midway by the loss of its sequencer's NATS server: nodes A (on one NATS server
// only) and B (on the two others), a room made on A with member 1 on A and member 2 on B, mirrored on B. Each
// member talks until it has sent enough; then A's NATS server is SIGKILLed and B takes the room over.
type cutOff struct {
	t      *testing.T
	nc     *natsnet.Cluster
	a, b   *clusterNode
	all    []*talker
	errs   chan error
	killed time.Time
}

// cutOffMidway runs a cutOff with the room's members named prefix-1 and prefix-2 and the nodes' grace; a member
// resumes on its own node if resumeOwn, else on B.
func cutOffMidway(t *testing.T, prefix, grace string, resumeOwn bool) *cutOff {
	t.Helper()
	cp := &cutOff{t: t, nc: natsnet.Start(t, natsnet.Options{})}
	secret := writeSecret(t)
	flags := []string{"--grace", grace, "--room-buffer", "4096", "--room-buffer-bytes", "33554432"}
	// A reaches one NATS server only (the last --cluster flag wins); B reaches the two others.
	cp.a = startNode(t, cp.nc, "node-a", 0, secret, append(flags, "--cluster", cp.nc.URLs()[0])...)
	cp.b = startNode(t, cp.nc, "node-b", 1, secret, flags...)
	a, b := cp.a, cp.b
	for _, n := range []*clusterNode{a, b} {
		eventually(t, 10*time.Second, n.name+" sees its peer", func() bool { return n.scrape(t, "cleanrelay_cluster_peers") == 1 })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	x := createOn(ctx, t, prefix+"-1", a.url, 2)
	y := joinOn(ctx, t, prefix+"-2", b.url, x)
	cp.all = []*talker{
		{name: prefix + "-1", room: prefix, url: a.url, c: x.c, r: x.room, token: x.room.Resume},
		{name: prefix + "-2", room: prefix, url: b.url, c: y.c, r: y.room, token: y.room.Resume},
	}
	cp.all[0].peers = map[uint32]string{y.room.Member: prefix + "-2"}
	cp.all[1].peers = map[uint32]string{x.room.Member: prefix + "-1"}
	for _, m := range cp.all {
		m.out = client.NewOutbox(4 * takeoverFrames)
	}
	eventually(t, 10*time.Second, "B mirrors the room", func() bool { return b.scrape(t, "cleanrelay_cluster_rooms_mirrored") == 1 })

	var sentEnough sync.WaitGroup
	sentEnough.Add(len(cp.all))
	killedCh := make(chan struct{})
	cp.errs = make(chan error, len(cp.all))
	for _, m := range cp.all {
		at := b.url
		if resumeOwn {
			at = m.url
		}
		go func() { cp.errs <- m.talk(ctx, &sentEnough, killedCh, &cp.killed, at) }()
	}
	sentEnough.Wait()
	cp.killed = time.Now()
	cp.nc.Servers()[0].Kill()
	close(killedCh)
	eventually(t, 10*time.Second, "B took the room over", func() bool { return b.scrape(t, "cleanrelay_cluster_takeovers_total") == 1 })
	return cp
}

// wait waits for every member's talk to end, and reports its error.
func (cp *cutOff) wait() {
	for range cp.all {
		if err := <-cp.errs; err != nil {
			cp.t.Error(err)
		}
	}
}
