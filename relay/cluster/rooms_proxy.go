package cluster

// A member here of a room sequenced on another node: its proxy link, the frames kept until the room's mirror
// holds them, and the relink to a new sequencer.

import (
	"crypto/rand"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cleanrelay/cleanrelay/relay/internal/rooms"
	"github.com/cleanrelay/cleanrelay/relay/internal/ws"
	"github.com/cleanrelay/cleanrelay/relay/protocol"
)

// newProxy makes the link of a member here and its first link id.
func (l *roomLinks) newProxy(p rooms.Proxy, user string) (*proxied, *plink) {
	pr := &proxied{l: l, p: p, user: user}
	return pr, l.newLink(pr)
}

// newLink draws a link id for pr and registers it, so that what its sequencer sends is taken from now on.
func (l *roomLinks) newLink(pr *proxied) *plink {
	pl := &plink{pr: pr}
	pl.out.init()
	rand.Read(pl.id[:])
	l.mu.Lock()
	l.proxied[pl.id] = pl
	l.mu.Unlock()
	return pl
}

// plink is one link of a proxied membership to its sequencer: a new one after a takeover, whose window
// (roomlink.go) starts empty, its numbers from 1.
type plink struct {
	// Static after construction.
	pr *proxied
	id linkID
	// Written once, with roomLinks.mu held, when the sequencer admitted the member.
	node    string // the sequencer
	inc     uint64 // its incarnation
	subject string // its room subject

	out outbox // numbers and keeps what goes to the sequencer
	in  inbox  // checked by roomLinks.handle
}

// keptFrame is a frame of the member that its sequencer's mirror may not hold yet: n is its number among the
// member's frames.
type keptFrame struct {
	n uint64
	p *ws.Payload
}

// proxied is a member here of a room another node sequences: the rooms.Link of its proxy. It keeps the
// member's frames until the sequencer says its mirror holds them (opStamped), and sends the ones the room's
// new sequencer lacks again after a takeover.
type proxied struct {
	// Static after construction.
	l    *roomLinks
	p    rooms.Proxy
	user string

	last    atomic.Uint64 // the seq of the last entry delivered here (roomLinks.handle writes it)
	stamped atomic.Uint64 // the member's frames the sequencer's mirror holds

	// handing is held while entries are checked (fresh) and handed to the proxy: they may come from two
	// goroutines, NATS's and the loopback's, when a relink moves the proxy to a room taken over here.
	handing sync.Mutex

	mu        sync.Mutex
	th        [32]byte // guarded by mu: the member's token hash, to find it again after a takeover
	cur       *plink   // guarded by mu: the link to the sequencer; nil while it is found again, or ended
	ended     bool     // guarded by mu
	sent      uint64   // guarded by mu: the member's frames so far (its In)
	kept      []keptFrame
	keptBytes int
}

// fresh reports whether it is an entry not yet handed to the proxy, and trims a lost range to what is new.
// For a moment a proxy's entries may come on two links, the old one's last batch while a relink resumes on
// the new one from the last entry handed here: each is handed on once. (An entry the old sequencer handed
// out was mirrored first, so it has the same seq on the new one.) pr.handing is held.
func (pr *proxied) fresh(it *rooms.Item) bool {
	last := pr.last.Load()
	switch it.Kind {
	case rooms.Refused:
		return true
	case rooms.Lost:
		if it.LostTo <= last {
			return false
		}
		it.LostFrom = max(it.LostFrom, last+1)
		return true
	}
	return it.Seq == 0 || it.Seq > last
}

// delivered records the seq of an entry handed to the proxy.
func (pr *proxied) delivered(it *rooms.Item) {
	if it.Kind == rooms.Refused {
		return
	}
	s := it.Seq
	if it.Kind == rooms.Lost {
		s = it.LostTo
	}
	if s > pr.last.Load() {
		pr.last.Store(s)
	}
}

// refused drops the kept frame number n, which the sequencer refused (its member is told): it is not sent
// again to a new sequencer after a takeover, whose room counts it as taken when the next one comes.
func (pr *proxied) refused(n uint64) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	for i := range pr.kept {
		if pr.kept[i].n == n {
			pr.releaseLocked(&pr.kept[i])
			pr.kept = append(pr.kept[:i], pr.kept[i+1:]...)
			return
		}
	}
}

// pruneLocked releases the kept frames the mirror holds, and those up to in. pr.mu is held.
func (pr *proxied) pruneLocked(in uint64) {
	in = max(in, pr.stamped.Load())
	k := 0
	for k < len(pr.kept) && pr.kept[k].n <= in {
		pr.releaseLocked(&pr.kept[k])
		k++
	}
	pr.kept = pr.kept[k:]
}

func (pr *proxied) releaseLocked(k *keptFrame) {
	pr.keptBytes -= k.p.Cap()
	pr.l.t.Hold(-int64(k.p.Cap()))
	ws.PutPayload(k.p)
	*k = keptFrame{}
}

// sendFwdLocked sends a kept frame on pl. pr.mu is held.
func (pr *proxied) sendFwdLocked(pl *plink, k *keptFrame) {
	b := binary.AppendUvarint(appendHeader(make([]byte, 0, wireHeader+10+k.p.Len()), opFwd, &pl.id), k.n)
	n := len(b)
	b = b[:n+k.p.Len()]
	k.p.CopyTo(b[n:], 0)
	pl.out.send(pr.l, pl.subject, b)
}

// Forward implements rooms.Link. While the link's window is full (the sequencer has not confirmed what it
// was sent), it waits: the socket is read more slowly, as on one node while a room is crowded.
func (pr *proxied) Forward(data *ws.Payload) bool {
	pr.mu.Lock()
	pl := pr.cur
	pr.mu.Unlock()
	if pl != nil {
		pl.out.waitRoom(pr.l.n.done)
	}
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if pr.ended {
		return true // the membership is handed back; the frame goes nowhere, as on one node
	}
	pr.pruneLocked(0)
	entries, bytes := pr.l.t.Bounds()
	if len(pr.kept) > 0 && (len(pr.kept) >= entries || pr.keptBytes+data.Cap() > bytes) {
		return false
	}
	pr.sent++
	p := ws.GetPayload(data.Len())
	p.CopyFrom(data, 0)
	pr.kept = append(pr.kept, keptFrame{n: pr.sent, p: p})
	pr.keptBytes += p.Cap()
	pr.l.t.Hold(int64(p.Cap()))
	if pr.cur != nil {
		pr.sendFwdLocked(pr.cur, &pr.kept[len(pr.kept)-1])
	}
	return true
}

// Ack implements rooms.Link.
func (pr *proxied) Ack(seq uint64) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if pl := pr.cur; pl != nil {
		pl.out.send(pr.l, pl.subject, binary.AppendUvarint(appendHeader(make([]byte, 0, wireHeader+10), opAck, &pl.id), seq))
	}
}

// End implements rooms.Link.
func (pr *proxied) End(how rooms.LinkEnd) {
	pr.mu.Lock()
	pl := pr.cur
	pr.endLocked()
	pr.mu.Unlock()
	if pl != nil {
		pr.l.forgetProxy(pl.id)
		pl.out.send(pr.l, pl.subject, append(appendHeader(nil, opEnd, &pl.id), byte(how)))
		pr.l.ended(pl.id, true, &pl.out, pl.node, pl.inc)
	}
}

// end marks the membership over here and releases the kept frames.
func (pr *proxied) end() {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	pr.endLocked()
}

func (pr *proxied) endLocked() {
	pr.ended, pr.cur = true, nil
	for i := range pr.kept {
		pr.releaseLocked(&pr.kept[i])
	}
	pr.kept = nil
}

// relinkLimit bounds how long a proxy whose sequencer died looks for the room's new sequencer.
const relinkLimit = 10 * time.Second

// relink finds the new sequencer of pr's room after its sequencer died (the room's mirror took it over):
// a resume by the member's token hash from the last entry delivered here, with no presence; then the frames
// the new sequencer lacks (beyond its In) go again, in order, before any new one. If no node has the member
// within relinkLimit, the member is told its room closed (shutdown).
func (l *roomLinks) relink(pr *proxied) {
	defer l.n.wg.Done()
	deadline := time.Now().Add(relinkLimit)
	for {
		if l.n.cutOff() {
			// The fence (fence.go): the client resumes, on a node that reaches the room.
			pr.end()
			pr.p.Ended(rooms.ReasonResume)
			return
		}
		pl := l.newLink(pr)
		pr.mu.Lock()
		th := pr.th
		pr.mu.Unlock()
		a, ok, complete, pending := l.findAnywhere(&roomMsg{Op: "resume", Link: pl.id[:], TokenHash: th[:], User: pr.user, Last: pr.last.Load()})
		clear(a.Room)
		if ok && a.Code == "" {
			subject := l.n.cfg.Keys.Subject("room", []byte(a.From))
			l.mu.Lock()
			pl.node, pl.inc, pl.subject = a.From, a.Inc, subject
			l.mu.Unlock()
			pr.mu.Lock()
			if pr.ended {
				pr.mu.Unlock()
				l.forgetProxy(pl.id)
				pl.out.send(l, pl.subject, append(appendHeader(nil, opEnd, &pl.id), byte(rooms.LinkAway)))
				l.ended(pl.id, true, &pl.out, pl.node, pl.inc)
				return
			}
			pr.pruneLocked(a.In)
			for i := range pr.kept {
				pr.sendFwdLocked(pl, &pr.kept[i])
			}
			pr.cur = pl
			pr.mu.Unlock()
			l.relinks.Add(1)
			return
		}
		l.forgetProxy(pl.id)
		if (ok && a.Code != "") || time.Now().After(deadline) || !l.pause() {
			pr.end()
			if !ok && !l.settles(complete, pending) {
				// The cluster could not say where the room is: the client resumes (and is answered busy
				// until it can, or bad_token once nobody holds the place).
				pr.p.Ended(rooms.ReasonResume)
				return
			}
			pr.p.Ended(protocol.ReasonShutdown)
			return
		}
	}
}
