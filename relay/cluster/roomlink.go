package cluster

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"
)

// The link layer of rooms across nodes (docs/cluster.md §2, "On NATS"): each membership's link carries numbered
// messages both ways, and core NATS may lose some (a NATS server's death, a slow consumer) or, across a
// reconnect, deliver them out of order. So each direction is a go-back-N window:
//
//   - the sender keeps every message it sent until the receiver confirms it (an outbox), at most linkWindow
//     messages and linkWindowBytes bytes, counted in the relay's memory budget; when the window is full the
//     sender waits (a proxy's socket reader is read more slowly, as on one node while a room is crowded; a
//     served link leaves the member's entries in the room's log, where the log's own bounds apply and end in
//     the same lost notice as on one node);
//   - the receiver (an inbox) takes only the next number; it confirms what it took (opLinkAck) every
//     linkAckEvery messages, at once for a link's last message, and otherwise on the first linkTick at least
//     linkAckDelay after it took the oldest message not yet confirmed (a link carrying a few messages a
//     second is confirmed about once per linkAckDelay, not once per message); a number past
//     the next one is a gap: it is dropped, and the receiver asks for everything after its last (opLinkAck
//     with the again flag, at most once per linkResend for one position);
//   - the sender sends everything unconfirmed again when asked; when nothing was confirmed for linkResend (the
//     last messages were lost, or the request was, or the receiver is slow) it sends only the first
//     unconfirmed message again (a probe), and everything still unconfirmed once the answer to the probe
//     confirms some but not all of it; it waits twice as long each time a probe brings nothing, up to
//     linkResendMax, and a receiver asks again for one position at the same growing intervals: a node too
//     busy to confirm in time is not flooded with what it already has;
//   - the last message of a link (opEnd, opEnded) is sent again like the others until confirmed, for at most
//     linkClosing after the link ended, or until the peer is no longer heard.
//
// As long as a link lives (its peer node is heard), nothing it carries is lost or repeated. When the peer is no
// longer heard, the link ends as before: the served member is away (it resumes elsewhere), the proxy is closed.
const (
	linkWindow      = 128
	linkWindowBytes = 1 << 20
	linkAckEvery    = 16
	linkTick        = 50 * time.Millisecond
	linkAckDelay    = 150 * time.Millisecond // well inside linkResend: the sender does not probe a live link
	linkResend      = 500 * time.Millisecond
	linkResendMax   = 4 * time.Second
	linkClosing     = 10 * time.Second
)

// opLinkAck confirms a link's messages: its number is the last one the receiver took in order; its body is one
// byte of flags: flagAgain when the receiver found a gap and asks for everything after that number, flagToProxy
// when it confirms what a proxy sent (the sequencer's served link confirms; a proxy and its served link share
// the link id, on one node too after a takeover). It is not numbered itself: a lost one is made good by the
// next, or by the sender's resend.
const (
	opLinkAck   byte = 16
	flagAgain   byte = 1
	flagToProxy byte = 2
)

// linkEnv is what the link layer needs of its node: a way to publish (seal and send, keeping b), the memory
// budget's account of held bytes, and counters.
type linkEnv struct {
	publish func(subject string, b []byte)
	held    *atomic.Int64
	resent  atomic.Uint64 // messages sent again
	gaps    atomic.Uint64 // gaps found by receivers here (each asked for again)
	dups    atomic.Uint64 // messages that changed nothing: taken before, or confirming nothing new (sent again, or replayed)
}

// pending is a message sent and not yet confirmed.
type pending struct {
	num uint64
	b   []byte
}

// outbox numbers one link's messages in one direction and keeps them until the receiver confirms them.
type outbox struct {
	mu       sync.Mutex
	subject  string        // guarded by mu: where the link's messages go
	n        uint64        // guarded by mu: the last number sent
	acked    uint64        // guarded by mu: the receiver took everything up to this
	buf      []pending     // guarded by mu: sent, unconfirmed, in order
	bytes    int           // guarded by mu: capacity of buf's messages
	progress time.Time     // guarded by mu: when acked last moved, or buf was last empty
	resentAt time.Time     // guarded by mu
	wait     time.Duration // guarded by mu: how long the tick waits for progress before sending again
	probing  bool          // guarded by mu: a probe went out; the next progress sends the rest again
	stopped  bool          // guarded by mu: the link is gone; nothing more is sent
	room     chan struct{}
	done     chan struct{}
	once     sync.Once
}

func (o *outbox) init() {
	o.room, o.done = make(chan struct{}, 1), make(chan struct{})
}

// fitsLocked reports whether the window has room for another message.
func (o *outbox) fitsLocked() bool { return len(o.buf) < linkWindow && o.bytes < linkWindowBytes }

// fits reports whether the window has room for another message.
func (o *outbox) fits() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.fitsLocked() || o.stopped
}

// send numbers b, keeps it, and publishes it on subject. Numbering and publishing happen under one lock, so
// the numbers reach NATS in order. b belongs to the outbox from then on.
func (o *outbox) send(l *roomLinks, subject string, b []byte) {
	e := &l.env
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.stopped {
		clear(b)
		return
	}
	o.n++
	binary.BigEndian.PutUint64(b[wireHeader-8:wireHeader], o.n)
	if len(o.buf) == 0 {
		o.progress = time.Now()
	}
	o.subject = subject
	o.buf = append(o.buf, pending{o.n, b})
	o.bytes += cap(b)
	e.held.Add(int64(cap(b)))
	e.publish(subject, b)
}

// waitRoom waits until the window has room, the link is gone, or quit closes.
func (o *outbox) waitRoom(quit <-chan struct{}) {
	for !o.fits() {
		select {
		case <-o.room:
		case <-o.done:
			return
		case <-quit:
			return
		case <-time.After(linkTick):
		}
	}
}

// ack takes the receiver's confirmation of everything up to n, and sends the rest again if it asks. It
// reports whether the window has room.
func (o *outbox) ack(e *linkEnv, n uint64, again bool) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.stopped || n > o.n {
		return false
	}
	if n <= o.acked && !again {
		e.dups.Add(1)
	}
	if n > o.acked {
		o.acked = n
		o.progress = time.Now()
		o.wait = 0
		k := 0
		for k < len(o.buf) && o.buf[k].num <= n {
			o.releaseLocked(e, k)
			k++
		}
		o.buf = o.buf[k:]
		select {
		case o.room <- struct{}{}:
		default:
		}
		if o.probing && len(o.buf) > 0 {
			again = true // the probe was taken and more is missing
		}
		o.probing = false
	}
	if again {
		o.resendLocked(e, time.Now())
	}
	return o.fitsLocked()
}

// tick sends everything unconfirmed again when nothing was confirmed for linkResend. It reports whether
// nothing is left unconfirmed.
func (o *outbox) tick(e *linkEnv, now time.Time) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.wait == 0 {
		o.wait = linkResend
	}
	if len(o.buf) > 0 && now.Sub(o.progress) >= o.wait && now.Sub(o.resentAt) >= o.wait {
		o.resentAt, o.probing = now, true
		e.publish(o.subject, o.buf[0].b)
		e.resent.Add(1)
		o.wait = min(2*o.wait, linkResendMax)
	}
	return len(o.buf) == 0
}

func (o *outbox) resendLocked(e *linkEnv, now time.Time) {
	o.resentAt = now
	for _, p := range o.buf {
		e.publish(o.subject, p.b)
	}
	e.resent.Add(uint64(len(o.buf)))
}

func (o *outbox) releaseLocked(e *linkEnv, k int) {
	e.held.Add(-int64(cap(o.buf[k].b)))
	o.bytes -= cap(o.buf[k].b)
	clear(o.buf[k].b)
	o.buf[k] = pending{}
}

// idle reports whether the receiver confirmed everything sent.
func (o *outbox) idle() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.buf) == 0
}

// stop ends the outbox: what it holds is released, and nothing more is sent.
func (o *outbox) stop(e *linkEnv) {
	o.mu.Lock()
	for k := range o.buf {
		o.releaseLocked(e, k)
	}
	o.buf, o.stopped = nil, true
	o.mu.Unlock()
	o.once.Do(func() { close(o.done) })
}

// Results of inbox.check.
const (
	takeNext = iota // the next number: take it
	takeOld         // taken before (sent again, or replayed): drop it
	takeGap         // numbers before it are missing: drop it and ask again
)

// inbox checks the numbers of one link's messages in one direction. The subscription's goroutine checks and
// commits; the tick reads.
type inbox struct {
	mu     sync.Mutex
	last   uint64    // guarded by mu: taken in order up to this
	told   uint64    // guarded by mu: the last number confirmed to the sender
	since  int       // guarded by mu: taken since the last confirmation
	first  time.Time // guarded by mu: when the oldest of those was taken
	askAt  time.Time // guarded by mu: when a gap was last asked for
	askFor uint64    // guarded by mu: at which last
	asks   int       // guarded by mu: how often at that position
	dirty  bool      // guarded by mu: an old one came: confirm again
}

// check says what to do with message number n.
func (in *inbox) check(n uint64) int {
	in.mu.Lock()
	defer in.mu.Unlock()
	switch {
	case n == in.last+1:
		return takeNext
	case n <= in.last:
		in.dirty = true
		return takeOld
	}
	return takeGap
}

// commit takes message number n (check said takeNext) at time now. It reports whether to confirm now, and
// what; with canAck false (the sender's subject is not known yet) the tick confirms later.
func (in *inbox) commit(n uint64, final, canAck bool, now time.Time) (uint64, bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.last = n
	if in.since == 0 {
		in.first = now
	}
	in.since++
	if canAck && (final || in.since >= linkAckEvery) {
		in.told, in.since, in.dirty = n, 0, false
		return n, true
	}
	return 0, false
}

// ask reports whether to ask again for what follows last (a gap was found), at most once per linkResend for
// one position, and from where.
func (in *inbox) ask(now time.Time) (uint64, bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.askFor == in.last && !in.askAt.IsZero() {
		if now.Sub(in.askAt) < min(linkResend<<min(in.asks, 3), linkResendMax) {
			return 0, false
		}
		in.asks++
	} else {
		in.asks = 0
	}
	in.askFor, in.askAt = in.last, now
	in.told, in.since, in.dirty = in.last, 0, false
	return in.last, true
}

// due reports whether the tick at time now should confirm, and what: a message sent again (dirty) is
// confirmed at once, what was taken once the oldest unconfirmed message is linkAckDelay old.
func (in *inbox) due(now time.Time) (uint64, bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.last == in.told && !in.dirty {
		return 0, false
	}
	if !in.dirty && in.last != in.told && now.Sub(in.first) < linkAckDelay {
		return 0, false
	}
	in.told, in.since, in.dirty = in.last, 0, false
	return in.last, true
}

// linkAck is the confirmation message of link id: last taken, whether to send the rest again, and whether it
// confirms a proxy's messages.
func linkAck(id *linkID, last uint64, again, toProxy bool) []byte {
	b := appendHeader(make([]byte, 0, wireHeader+1), opLinkAck, id)
	binary.BigEndian.PutUint64(b[wireHeader-8:wireHeader], last)
	var flags byte
	if again {
		flags |= flagAgain
	}
	if toProxy {
		flags |= flagToProxy
	}
	return append(b, flags)
}
