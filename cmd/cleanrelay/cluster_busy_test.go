package main

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cleanrelay/cleanrelay/relay/client"
)

// TestClusterResumeBusy cuts node A, which sequences a room, off NATS in the middle of a conversation between a
// member on A and one on B, as TestClusterFence does, but the member of A resumes on A itself while A is still
// cut off (a client whose circuit leads back to the same node). A cannot tell whether the cluster holds the
// place: it answers busy, not bad_token, and the client asks again on the same socket. Once A's NATS server is
// back and A has heard B again, the resume finds the room on B, which took it over. Both members are given
// every frame of the other once and in order. On the code before busy, A answered bad_token (a client gives
// the place up) once its wait for NATS ran out. A join on A, cut off, of a room made on B is answered busy too,
// and the same join asked again (JoinUntil) gets in once A is back.
func TestClusterResumeBusy(t *testing.T) {
	// Each resumes on its own node: A's member on A, cut off.
	cp := cutOffMidway(t, "r", "60s", true)
	nc, a, b, all := cp.nc, cp.a, cp.b, cp.all
	// A ends its member's socket (the fence), the member resumes on A, and A, still cut off when its wait for
	// NATS (10 s) runs out, answers busy.
	// Meanwhile a join on A of a room made on B: answered busy too (A's wait for NATS runs out at about the
	// time the resume's does), then asked again until A is back.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	host := createOn(ctx, t, "j-1", b.url, 2)
	firstJoin, joined := make(chan error, 1), make(chan error, 1)
	go func() {
		_, err := dialAnon(ctx, t, a.url).Join(ctx, host.room.ID, host.room.Cap)
		firstJoin <- err
		_, _, err = dialAnon(ctx, t, a.url).JoinUntil(ctx, host.room.ID, host.room.Cap, time.Now().Add(time.Minute))
		joined <- err
	}()
	eventually(t, 30*time.Second, "A answered a resume busy", func() bool { return a.scrape(t, "cleanrelay_cluster_busy_total") >= 1 })
	var re *client.Error
	if err := <-firstJoin; !errors.As(err, &re) || re.Code != "busy" {
		t.Errorf("a join on A, cut off, of a room on B: %v, want busy", err)
	}
	if err := nc.Servers()[0].Restart(); err != nil {
		t.Fatal(err)
	}
	if err := <-joined; err != nil {
		t.Errorf("the join asked again on A after A is back: %v", err)
	}
	cp.wait()
	if t.Failed() {
		return
	}
	checkTalkers(t, all)
	if all[0].busy == 0 {
		t.Errorf("A's member was never answered busy")
	}
	// The conversation's room, taken over, and the one made on B.
	if n := b.scrape(t, "cleanrelay_cluster_rooms_sequenced"); n != 2 {
		t.Errorf("B sequences %v rooms, want 2", n)
	}
	t.Logf("A cut off from NATS: its member, resuming on A, was answered busy %d times and resumed %v after the kill; %d frames each way, none lost or repeated, one order",
		all[0].busy, all[0].resumed, takeoverFrames)
}
