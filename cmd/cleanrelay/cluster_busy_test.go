package main

import (
	"testing"
	"time"
)

// TestClusterResumeBusy cuts node A, which sequences a room, off NATS in the middle of a conversation between a
// member on A and one on B, as TestClusterFence does, but the member of A resumes on A itself while A is still
// cut off (a client whose circuit leads back to the same node). A cannot tell whether the cluster holds the
// place: it answers busy, not bad_token, and the client asks again on the same socket. Once A's NATS server is
// back and A has heard B again, the resume finds the room on B, which took it over. Both members are given
// every frame of the other once and in order. On the code before busy, A answered bad_token (a client gives
// the place up) once its wait for NATS ran out.
func TestClusterResumeBusy(t *testing.T) {
	// Each resumes on its own node: A's member on A, cut off.
	cp := cutOffMidway(t, "r", "60s", true)
	nc, a, b, all := cp.nc, cp.a, cp.b, cp.all
	// A ends its member's socket (the fence), the member resumes on A, and A, still cut off when its wait for
	// NATS (10 s) runs out, answers busy.
	eventually(t, 30*time.Second, "A answered a resume busy", func() bool { return a.scrape(t, "cleanrelay_cluster_busy_total") >= 1 })
	if err := nc.Servers()[0].Restart(); err != nil {
		t.Fatal(err)
	}
	cp.wait()
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
