package cluster

import (
	"sync"
	"time"
)

// A node judges its peers by how long it has not heard them, and it can hear nothing while it is itself not
// running: its process stopped, or starved of CPU on a loaded machine. Measured by wall time alone, a node that
// was paused for two peer timeouts would, as soon as it runs again and before it reads the heartbeats waiting
// on its socket, find every peer unheard for that long: it made their members away, moved its mirrors, and took
// the rooms it mirrors over, whose sequencer then ended them there and closed their members' sockets (the
// fence's stale answer), although that sequencer never stopped (docs/cluster.md §2, "A node only paused").
// So a peer's silence is counted in the node's own running time: a pause watch ticks every pauseTick, and
// whatever a tick comes later than pauseSlack after it was due counts as a pause of this node, which no
// peer's silence includes. A peer that is really gone is still found gone after the peer timeout of running
// time, however often the node pauses.
const (
	pauseTick  = 50 * time.Millisecond
	pauseSlack = 100 * time.Millisecond
)

// pauses counts how long a node was not running, as its pause watch saw it.
type pauses struct {
	mu    sync.Mutex
	total time.Duration // guarded by mu: the pauses the watch saw
	beat  time.Time     // guarded by mu: the watch's last tick
}

// start sets the watch's first tick.
func (p *pauses) start(now time.Time) {
	p.mu.Lock()
	p.beat = now
	p.mu.Unlock()
}

// tick records the watch's tick at now: whatever it came later than pauseTick+pauseSlack after the last one
// counts as a pause (the part beyond pauseTick).
func (p *pauses) tick(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.total = p.upToLocked(now)
	p.beat = now
}

// upTo is how long the node was paused until now, the pause going on now included (a tick overdue: another
// goroutine may run before the watch after a pause, and must not judge a peer by it either). It never goes
// down.
func (p *pauses) upTo(now time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.upToLocked(now)
}

func (p *pauses) upToLocked(now time.Time) time.Duration {
	if late := now.Sub(p.beat); !p.beat.IsZero() && late > pauseTick+pauseSlack {
		return p.total + late - pauseTick
	}
	return p.total
}

// tickNow is the pause watch's tick, every pauseTick (Node.every): at the time this goroutine runs, not the
// time the tick was due.
func (p *pauses) tickNow() {
	p.tick(time.Now())
}

// silenceLocked is how long the node has been running without hearing o, at now. n.mu is held.
func (n *Node) silenceLocked(o *origin, now time.Time) time.Duration {
	return now.Sub(o.lastSeen) - (n.pauses.upTo(now) - o.pausedAt)
}
