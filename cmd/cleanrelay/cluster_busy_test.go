package main

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/cleanrelay/cleanrelay/relay/client"
	"github.com/cleanrelay/cleanrelay/relay/cluster/natsnet"
)

// TestClusterResumeBusy cuts node A, which sequences a room, off NATS in the middle of a conversation between a
// member on A and one on B, as TestClusterFence does, but the member of A resumes on A itself while A is still
// cut off (a client whose circuit leads back to the same node). A cannot tell whether the cluster holds the
// place: it answers busy, not bad_token, and the client asks again on the same socket. Once A's NATS server is
// back and A has heard B again, the resume finds the room on B, which took it over. Both members are given
// every frame of the other once and in order. On the code before busy, A answered bad_token (a client gives
// the place up) once its wait for NATS ran out.
func TestClusterResumeBusy(t *testing.T) {
	nc := natsnet.Start(t, natsnet.Options{})
	secret := writeSecret(t)
	flags := []string{"--grace", "60s", "--room-buffer", "4096", "--room-buffer-bytes", "33554432"}
	// A reaches one NATS server only (the last --cluster flag wins); B reaches the two others.
	a := startNode(t, nc, "node-a", 0, secret, append(flags, "--cluster", nc.URLs()[0])...)
	b := startNode(t, nc, "node-b", 1, secret, flags...)
	for _, n := range []*clusterNode{a, b} {
		eventually(t, 10*time.Second, n.name+" sees its peer", func() bool { return n.scrape(t, "cleanrelay_cluster_peers") == 1 })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	x := createOn(ctx, t, "r-1", a.url, 2)
	y := joinOn(ctx, t, "r-2", b.url, x)
	all := []*talker{
		{name: "r-1", room: "r", url: a.url, c: x.c, r: x.room, token: x.room.Resume},
		{name: "r-2", room: "r", url: b.url, c: y.c, r: y.room, token: y.room.Resume},
	}
	all[0].peers = map[uint32]string{y.room.Member: "r-2"}
	all[1].peers = map[uint32]string{x.room.Member: "r-1"}
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
		// Each resumes on its own node: A's member on A, cut off.
		go func() { errs <- m.talk(ctx, &sentEnough, killedCh, &killed, m.url) }()
	}
	sentEnough.Wait()
	killed = time.Now()
	nc.Servers()[0].Kill()
	close(killedCh)
	eventually(t, 10*time.Second, "B took the room over", func() bool { return b.scrape(t, "cleanrelay_cluster_takeovers_total") == 1 })
	// A ends its member's socket (the fence), the member resumes on A, and A, still cut off when its wait for
	// NATS (10 s) runs out, answers busy.
	eventually(t, 30*time.Second, "A answered a resume busy", func() bool { return a.scrape(t, "cleanrelay_cluster_busy_total") >= 1 })
	if err := nc.Servers()[0].Restart(); err != nil {
		t.Fatal(err)
	}
	for range all {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if t.Failed() {
		return
	}
	checkTalkers(t, all)
	if all[0].busy == 0 {
		t.Errorf("A's member was never answered busy")
	}
	if n := b.scrape(t, "cleanrelay_cluster_rooms_sequenced"); n != 1 {
		t.Errorf("B sequences %v rooms, want 1", n)
	}
	t.Logf("A cut off from NATS: its member, resuming on A, was answered busy %d times and resumed %v after the kill; %d frames each way, none lost or repeated, one order",
		all[0].busy, all[0].resumed, takeoverFrames)
}
