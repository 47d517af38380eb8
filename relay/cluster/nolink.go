package cluster

import (
	"github.com/cleanrelay/cleanrelay/relay/internal/rooms"
)

// "No such link" (docs/cluster.md §2, "A link one side dropped"). The peer watch is per node: under heavy load
// a node can miss another's heartbeats for the peer timeout while that node still hears it. It then ends its
// side of their links (a served member goes away, a proxy looks for its room again) and the other side, which
// saw nothing wrong, would go on sending into links nobody holds. So a node answers a numbered message for a
// link it does not hold (and did not just end) with opNoLink, unnumbered, on the sender's room subject (the
// message's NATS reply subject); the sender ends its side as if the peer were no longer heard:
//
//   - a proxy links to its room's sequencer again (relink: a resume by the member's token hash from the last
//     entry delivered here, then the kept frames the sequencer lacks, in order), without its client knowing;
//   - a served member goes away on the sequencer (its grace runs; its proxy's relink brings it back), after
//     whatever its proxy sent before (the request goes through the member's queue, in order).
//
// A sequencer that ends a served link because it no longer hears the member's node says so at once, the same
// way (a proxy that only receives would otherwise send nothing that could be answered). While the sequencer
// stays deaf, the relinked member is away again at its next peer watch, and relinks again: it goes on
// talking, and its room's members see it away and back.
//
// The body of opNoLink is one byte of flags: flagToProxy when the link is a proxy's (the message that found no
// link came from a proxy: a frame, an ack or an end), as in opLinkAck.
const opNoLink byte = 17

// noLink answers a numbered message of op on link id that no membership here holds, unless this node ended
// that link itself a moment ago (its last message is still sent again: the peer learns of the end from it).
func (l *roomLinks) noLink(op byte, id *linkID, reply string) {
	if op < opFwd || op > opStamped {
		return
	}
	fromProxy := op == opFwd || op == opAck || op == opEnd
	l.mu.Lock()
	_, ending := l.closing[closingKey{*id, !fromProxy}]
	l.mu.Unlock()
	if ending || reply == "" {
		return
	}
	l.tellNoLink(reply, id, fromProxy)
}

// tellNoLink tells the node whose room subject is subject that this node holds no link id (a proxy's, if
// toProxy) any more.
func (l *roomLinks) tellNoLink(subject string, id *linkID, toProxy bool) {
	var flags byte
	if toProxy {
		flags = flagToProxy
	}
	l.publish(subject, append(appendHeader(nil, opNoLink, id), flags))
}

// lostLink takes a peer's opNoLink: its side of link id is gone, so this side ends too.
func (l *roomLinks) lostLink(id *linkID, toProxy bool) {
	l.mu.Lock()
	var pl *plink
	var sv *served
	if toProxy {
		if pl = l.proxied[*id]; pl != nil && pl.node != "" {
			delete(l.proxied, *id)
		} else {
			pl = nil // not admitted yet: its sequencer has not heard of it
		}
	} else {
		sv = l.served[*id]
	}
	c := l.closing[closingKey{*id, toProxy}]
	if c != nil {
		delete(l.closing, closingKey{*id, toProxy})
	}
	l.mu.Unlock()
	if c != nil {
		c.out.stop(&l.env) // its peer holds nothing to confirm it with
	}
	if sv != nil && sv.m != nil {
		select {
		case sv.ops <- servedOp{op: opEnd, how: rooms.LinkAway}:
		default: // the queue is full: the next message of the link brings another opNoLink
		}
	}
	if pl != nil {
		l.unlinked(pl)
	}
}

// unlinked ends pl, a link of a proxy whose sequencer no longer holds it (or is no longer heard), and starts
// looking for the room's sequencer again if pl was the proxy's current link.
func (l *roomLinks) unlinked(pl *plink) {
	pl.out.stop(&l.env) // a relink starts a new link, its window empty
	pr := pl.pr
	pr.mu.Lock()
	start := pr.cur == pl && !pr.ended
	if pr.cur == pl {
		pr.cur = nil
	}
	pr.mu.Unlock()
	if start {
		l.n.wg.Add(1)
		go l.relink(pr)
	}
}
