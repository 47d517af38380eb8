package cluster

import (
	"testing"
	"time"
)

// TestPauses: the pause watch's ticks that come late count as the node's own pauses, the one going on now
// too (before the watch runs again), and the count never goes down; on-time ticks count nothing.
func TestPauses(t *testing.T) {
	n := &Node{}
	p := &n.pauses
	t0 := time.Now()
	p.start(t0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	for i := 1; i <= 10; i++ {
		p.tick(at(time.Duration(i) * pauseTick))
	}
	if got := p.upTo(at(10 * pauseTick)); got != 0 {
		t.Fatalf("ticks on time: paused %v, want 0", got)
	}
	// The node stops for 2.5 s after its tick at 500 ms: another goroutine that runs first sees the pause.
	var last time.Duration
	for _, d := range []time.Duration{600 * time.Millisecond, 700 * time.Millisecond, 2 * time.Second, 3 * time.Second} {
		got := p.upTo(at(d))
		if got < last {
			t.Fatalf("paused %v at %v, less than %v before", got, d, last)
		}
		last = got
	}
	if want := 3*time.Second - 500*time.Millisecond - pauseTick; last != want {
		t.Errorf("paused %v at 3 s, want %v", last, want)
	}
	p.tick(at(3 * time.Second)) // the watch runs again
	if got := p.upTo(at(3 * time.Second)); got != last {
		t.Errorf("after the watch's tick: paused %v, want %v", got, last)
	}
	p.tick(at(3*time.Second + pauseTick))
	if got := p.upTo(at(3*time.Second + pauseTick)); got != last {
		t.Errorf("a tick on time after the pause: paused %v, want %v", got, last)
	}
	// A peer last heard just before the pause, at 450 ms, has been silent 150 ms of running time at 3.05 s:
	// until the tick due at 550 ms, and from 3 s on.
	o := &origin{lastSeen: at(450 * time.Millisecond), pausedAt: 0}
	if got := n.silenceLocked(o, at(3*time.Second+pauseTick)); got != 150*time.Millisecond {
		t.Errorf("silence %v, want 150ms", got)
	}
}
