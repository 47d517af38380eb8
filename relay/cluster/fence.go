package cluster

import (
	"time"

	"github.com/cleanrelay/cleanrelay/relay/internal/rooms"
)

// The fence (docs/cluster.md §2, "Takeover"). A node cut off from every NATS server cannot tell whether the
// others died or it is alone: the others see it unheard after the peer timeout, and the mirrors of its rooms
// take them over. So once it has been cut off for the peer timeout itself, it stops sequencing every room a
// mirror holds a copy of (rooms.Table.Yield): its members there are told rooms.ReasonResume (the relay ends
// their sockets, and their clients resume with their token, on whatever node they reach, which finds the new
// sequencer once NATS is reachable from it), and the proxies here of rooms elsewhere end the same way. Rooms
// no other node holds go on here. Meanwhile:
//
//   - a room's entries are handed to its members only once its mirror holds them, and while the node is cut
//     off (or has reconnected less than a peer timeout ago, before it has heard its peers again) no room goes
//     on unmirrored for want of a live peer: members are handed nothing new;
//   - the node takes no room over: the nodes it no longer hears may be alive;
//   - a copy request is not published while the node is off NATS (nats.go would send it on reconnecting, and a
//     mirror that took the room over and saw nobody come to it would give the room back);
//   - a join or resume waits (up to fenceWait) for the node to be steady again before it asks the others.
//
// A copy request answered "stale" (the room was taken over and members came to it there: the node was only
// slow to be heard) ends the room here the same way.

// fenceWait bounds how long a join or resume on a node off NATS waits for it to be steady again.
const fenceWait = 10 * time.Second

// cutOff reports whether the node has been off NATS for the peer timeout: the fence is up.
func (n *Node) cutOff() bool {
	off := n.offAt.Load()
	return off != 0 && !n.nc.IsConnected() && time.Since(time.Unix(0, off)) >= n.cfg.PeerTimeout
}

// steady reports whether the node has been on NATS for the peer timeout: the nodes it does not hear are dead.
func (n *Node) steady() bool {
	return n.offAt.Load() == 0 && n.nc.IsConnected() && time.Since(time.Unix(0, n.onAt.Load())) >= n.cfg.PeerTimeout
}

// settleTime is how long after a node was last heard the cluster is not taken as settled: that node may be
// only slow (a loaded machine misses heartbeats) or dead with its rooms being taken over, so a find that no
// node answered "here" cannot say the room or the place does not exist.
const settleTime = 10 * time.Second

// settled reports whether every node heard within settleTime is live (heard within the peer timeout).
func (n *Node) settled() bool {
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, o := range n.origins {
		if d := n.silenceLocked(o, now); d >= n.cfg.PeerTimeout && d < settleTime {
			return false
		}
	}
	return true
}

// waitSteady waits until the node is steady, up to fenceWait; false: the node is closing.
func (l *roomLinks) waitSteady() bool {
	for deadline := time.Now().Add(fenceWait); !l.n.steady() && time.Now().Before(deadline); {
		select {
		case <-l.n.done:
			return false
		case <-time.After(l.n.cfg.Heartbeat / 5):
		}
	}
	return true
}

// fence stops sequencing here the rooms a mirror holds a copy of.
func (l *roomLinks) fence() {
	var yield []*rooms.Room
	l.linksMu.Lock()
	for ml := range l.links {
		if ml.held.Load() {
			yield = append(yield, ml.r)
		}
	}
	l.linksMu.Unlock()
	for _, r := range yield {
		if l.t.Yield(r) {
			l.yielded.Add(1)
		}
	}
}
