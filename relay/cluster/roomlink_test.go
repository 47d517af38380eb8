package cluster

import (
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// lossyLink is one direction of a link over a wire that loses and reorders messages both ways: the outbox
// sends on it, an inbox takes as roomLinks.receive does, and confirmations come back the same lossy way.
type lossyLink struct {
	t        *testing.T
	rnd      *rand.Rand
	loss     float64 // chance that a message (or a confirmation) is lost
	swap     float64 // chance that a message overtakes the one before it
	l        roomLinks
	env      *linkEnv
	held     atomic.Int64
	out      outbox
	in       inbox
	id       linkID
	wire     [][]byte // in flight to the receiver
	acks     [][]byte // in flight to the sender
	taken    []uint32 // the bodies the receiver took, in order
	lostMsgs int
}

func newLossyLink(t *testing.T, seed uint64, loss, swap float64) *lossyLink {
	k := &lossyLink{t: t, rnd: rand.New(rand.NewPCG(seed, 1)), loss: loss, swap: swap}
	k.out.init()
	k.env = &k.l.env
	k.env.held = &k.held
	k.env.publish = func(_ string, b []byte) {
		if k.rnd.Float64() < k.loss {
			k.lostMsgs++
			return
		}
		k.wire = append(k.wire, slices.Clone(b))
		if n := len(k.wire); n > 1 && k.rnd.Float64() < k.swap {
			k.wire[n-1], k.wire[n-2] = k.wire[n-2], k.wire[n-1]
		}
	}
	return k
}

// deliver hands the receiver what is in flight and the sender the confirmations, at time now.
func (k *lossyLink) deliver(now time.Time) {
	for len(k.wire) > 0 {
		b := k.wire[0]
		k.wire = k.wire[1:]
		num := binary.BigEndian.Uint64(b[wireHeader-8 : wireHeader])
		switch k.in.check(num) {
		case takeOld:
			continue
		case takeGap:
			if last, ok := k.in.ask(now); ok {
				k.confirm(linkAck(&k.id, last, true, false))
			}
			continue
		}
		k.taken = append(k.taken, binary.BigEndian.Uint32(b[wireHeader:]))
		if last, ok := k.in.commit(num, false, true, now); ok {
			k.confirm(linkAck(&k.id, last, false, false))
		}
	}
	for len(k.acks) > 0 {
		b := k.acks[0]
		k.acks = k.acks[1:]
		k.out.ack(k.env, binary.BigEndian.Uint64(b[wireHeader-8:wireHeader]), b[wireHeader]&flagAgain != 0)
	}
}

func (k *lossyLink) confirm(b []byte) {
	if k.rnd.Float64() < k.loss {
		return
	}
	k.acks = append(k.acks, b)
}

// tick is roomLinks.tick for this link, at time now.
func (k *lossyLink) tick(now time.Time) {
	if last, ok := k.in.due(now); ok {
		k.confirm(linkAck(&k.id, last, false, false))
	}
	k.out.tick(k.env, now)
}

// TestLinkRecoversLosses: over a wire that loses a fifth of the messages and of the confirmations, and lets
// some overtake others, the receiver takes every message exactly once and in order; the sender never holds
// more than its window (plus the one message a full window still lets through) and, once everything is
// confirmed, holds nothing.
func TestLinkRecoversLosses(t *testing.T) {
	for seed := range uint64(20) {
		k := newLossyLink(t, seed, 0.2, 0.1)
		const total = 3000
		now := time.Now()
		sent := uint32(0)
		for step := 0; len(k.taken) < total; step++ {
			if step > 100000 {
				t.Fatalf("seed %d: the receiver took %d of %d messages after %d steps", seed, len(k.taken), total, step)
			}
			// The sender sends a few while its window has room, as a proxy's reader or a served drain does.
			for range 1 + k.rnd.IntN(8) {
				if sent == total || !k.out.fits() {
					break
				}
				sent++
				b := appendHeader(make([]byte, 0, wireHeader+4), opFwd, &k.id)
				k.out.send(&k.l, "s", binary.BigEndian.AppendUint32(b, sent))
			}
			k.out.mu.Lock()
			if len(k.out.buf) > linkWindow {
				t.Fatalf("seed %d: the sender holds %d messages, over its window of %d", seed, len(k.out.buf), linkWindow)
			}
			k.out.mu.Unlock()
			k.deliver(now)
			if step%4 == 0 {
				now = now.Add(linkTick)
				k.tick(now)
			}
		}
		want := make([]uint32, total)
		for i := range want {
			want[i] = uint32(i + 1)
		}
		if !slices.Equal(k.taken, want) {
			t.Fatalf("seed %d: the receiver took %d messages, not 1..%d in order (the wire lost %d)", seed, len(k.taken), total, k.lostMsgs)
		}
		// Whatever confirmations are lost, the ticks confirm again and the sender lets go of everything.
		for range 2000 {
			if k.out.idle() {
				break
			}
			now = now.Add(linkTick)
			k.tick(now)
			k.deliver(now)
		}
		if !k.out.idle() || k.held.Load() != 0 {
			t.Fatalf("seed %d: the sender still holds %d bytes after everything was taken", seed, k.held.Load())
		}
		if seed == 0 {
			t.Logf("3000 messages over a wire that lost %d of them: all taken once, in order; %d sent again", k.lostMsgs, k.env.resent.Load())
		}
	}
}

// TestLinkStopReleases: a link that ends releases what its outbox held from the memory budget, and a waiting
// sender returns.
func TestLinkStopReleases(t *testing.T) {
	k := newLossyLink(t, 1, 1, 0) // everything is lost: nothing is ever confirmed
	for i := range linkWindow {
		b := appendHeader(make([]byte, 0, wireHeader+4), opFwd, &k.id)
		k.out.send(&k.l, "s", binary.BigEndian.AppendUint32(b, uint32(i)))
	}
	if k.out.fits() || k.held.Load() == 0 {
		t.Fatalf("a full window: fits %v, held %d", k.out.fits(), k.held.Load())
	}
	waited := make(chan struct{})
	go func() {
		k.out.waitRoom(nil)
		close(waited)
	}()
	k.out.stop(k.env)
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		t.Fatal("a sender waiting for room did not return when the link stopped")
	}
	if k.held.Load() != 0 {
		t.Fatalf("a stopped link still counts %d bytes", k.held.Load())
	}
}

// TestLinkConfirmsQuietLinkLater: a link carrying a message now and then is confirmed once the oldest message
// not yet confirmed is linkAckDelay old, not on every tick (one confirmation per message at a few messages a
// second); every linkAckEvery messages at once; and a message sent again at the next tick.
func TestLinkConfirmsQuietLinkLater(t *testing.T) {
	var in inbox
	start := time.Now()
	if _, now := in.commit(1, false, true, start); now {
		t.Fatal("one message confirmed at once")
	}
	for tick := start.Add(linkTick); tick.Sub(start) < linkAckDelay; tick = tick.Add(linkTick) {
		if _, ok := in.due(tick); ok {
			t.Fatalf("confirmed %v after the message was taken, before linkAckDelay (%v)", tick.Sub(start), linkAckDelay)
		}
		// more messages on the quiet link do not push the confirmation back
		in.commit(in.last+1, false, true, tick)
	}
	if last, ok := in.due(start.Add(linkAckDelay)); !ok || last != in.last {
		t.Fatalf("not confirmed once the oldest is linkAckDelay old: %d, %v (took %d)", last, ok, in.last)
	}
	if _, ok := in.due(start.Add(linkAckDelay + linkTick)); ok {
		t.Fatal("confirmed again with nothing new")
	}
	// a busy link: every linkAckEvery messages at once
	now := start.Add(time.Second)
	for i := 1; i <= linkAckEvery; i++ {
		last, ok := in.commit(in.last+1, false, true, now)
		if ok != (i == linkAckEvery) || (ok && last != in.last) {
			t.Fatalf("message %d of a busy link: confirmed %v (%d)", i, ok, last)
		}
	}
	// a message taken before (sent again): confirmed at the next tick, whatever its age
	if in.check(in.last) != takeOld {
		t.Fatal("an old number not seen as old")
	}
	if last, ok := in.due(now.Add(linkTick)); !ok || last != in.last {
		t.Fatalf("a message sent again not confirmed at the next tick: %d, %v", last, ok)
	}
}
