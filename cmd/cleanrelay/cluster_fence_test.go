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
	nc := natsnet.Start(t, natsnet.Options{})
	secret := writeSecret(t)
	flags := []string{"--grace", "30s", "--room-buffer", "4096", "--room-buffer-bytes", "33554432"}
	// A reaches one NATS server only (the last --cluster flag wins); B reaches the two others.
	a := startNode(t, nc, "node-a", 0, secret, append(flags, "--cluster", nc.URLs()[0])...)
	b := startNode(t, nc, "node-b", 1, secret, flags...)
	for _, n := range []*clusterNode{a, b} {
		eventually(t, 10*time.Second, n.name+" sees its peer", func() bool { return n.scrape(t, "cleanrelay_cluster_peers") == 1 })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	x := createOn(ctx, t, "f-1", a.url, 2)
	y := joinOn(ctx, t, "f-2", b.url, x)
	all := []*talker{
		{name: "f-1", room: "f", url: a.url, c: x.c, r: x.room, token: x.room.Resume},
		{name: "f-2", room: "f", url: b.url, c: y.c, r: y.room, token: y.room.Resume},
	}
	all[0].peers = map[uint32]string{y.room.Member: "f-2"}
	all[1].peers = map[uint32]string{x.room.Member: "f-1"}
	for _, m := range all {
		m.out = client.NewOutbox(4 * takeoverFrames)
	}
	eventually(t, 10*time.Second, "B mirrors the room", func() bool { return b.scrape(t, "cleanrelay_cluster_rooms_mirrored") == 1 })

	var sentEnough sync.WaitGroup
	sentEnough.Add(len(all))
	var killed time.Time
	killedCh := make(chan struct{})
	errs := make(chan error, len(all))
	for _, m := range all {
		go func() { errs <- m.talk(ctx, &sentEnough, killedCh, &killed, b.url) }()
	}
	sentEnough.Wait()
	killed = time.Now()
	nc.Servers()[0].Kill()
	close(killedCh)
	eventually(t, 10*time.Second, "B took the room over", func() bool { return b.scrape(t, "cleanrelay_cluster_takeovers_total") == 1 })
	// The fence: A, still off NATS, ends its member's socket (the only one on A).
	eventually(t, 10*time.Second, "A ended its member's socket while off NATS", func() bool {
		return !a.healthy(t) && a.scrape(t, "cleanrelay_connections") == 0
	})
	if err := nc.Servers()[0].Restart(); err != nil {
		t.Fatal(err)
	}
	for range all {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
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
