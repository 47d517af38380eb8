package cluster

// A room's mirror and its takeover (docs/cluster.md §2 "Mirror", "Takeover"). Every room a node sequences is
// copied to one other node, its mirror: the live peer with the highest rendezvous score for the room (every
// node computes the same from the heartbeats, and when nodes come and go only the rooms whose mirror changed
// move). A goroutine per room (mirrorLink) sends the mirror what is new in the room as a NATS request on the
// mirror's "mirror" subject, and tells the room once the mirror answered: only then are members handed the new
// entries (rooms.Room.Mirrored), so anything a member was given is held by two nodes. When a node is no longer
// heard, each node takes over the rooms it mirrors for it (rooms.Table.Adopt), one epoch on; the proxies of
// the room's members on other nodes find it there (relink, rooms_proxy.go) and send again the frames it lacks.

import (
	"encoding/json"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/cleanrelay/cleanrelay/relay/internal/rooms"
)

// mirrorMsg is a request on a node's mirror subject, or its answer, sealed for the subject or inbox it
// travels on. Op: "copy" (what is new in a room; Full: all of it, replacing what the mirror holds), "drop"
// (the room ended, or its mirror moved), "taken" (the sender took the room over, at Epoch: fence.go),
// "claims" (which copy of the Rooms listed the node holds or took over: mirror_copies.go); answers: "ok"
// (for "claims" with Epochs and Gens, 0 where it holds none), "full" (send all of it), "stale" (a newer epoch of
// the room exists), "no" (the mirror is over its memory budget).
type mirrorMsg struct {
	From       string         `json:"f"`
	Inc        uint64         `json:"n"`
	N          uint64         `json:"k,omitempty"` // the request's number among the node's mirror requests
	Op         string         `json:"o"`
	Room       []byte         `json:"r,omitempty"`
	Epoch      uint64         `json:"e,omitempty"`
	Gen        uint64         `json:"g,omitempty"` // the room's mirror generation on its sequencer (mirrorLink.gen)
	Full       bool           `json:"fu,omitempty"`
	CapHash    []byte         `json:"ch,omitempty"`
	DialogCap  []byte         `json:"dc,omitempty"`
	Allow      []string       `json:"al,omitempty"`
	Max        int            `json:"mx,omitempty"`
	NextMember uint32         `json:"nm,omitempty"`
	Expires    int64          `json:"x,omitempty"`
	Tail       uint64         `json:"t,omitempty"`
	Head       uint64         `json:"h,omitempty"`
	Members    []mirrorMember `json:"ms,omitempty"`
	Entries    []mirrorEntry  `json:"es,omitempty"`
	Rooms      [][]byte       `json:"rs,omitempty"` // "claims": the rooms asked about
	Epochs     []uint64       `json:"eps,omitempty"`
	Gens       []uint64       `json:"gs,omitempty"`
}

type mirrorMember struct {
	ID    uint32 `json:"i"`
	User  string `json:"u,omitempty"`
	Token []byte `json:"t"` // the SHA-256 of its resume token
	Acked uint64 `json:"a,omitempty"`
	In    uint64 `json:"n,omitempty"`
	Where string `json:"w,omitempty"` // the node of its connection; "": away
}

type mirrorEntry struct {
	Seq      uint64 `json:"s"`
	Presence bool   `json:"p,omitempty"`
	Event    uint8  `json:"e,omitempty"`
	Timeout  bool   `json:"to,omitempty"`
	From     uint32 `json:"f,omitempty"`
	User     string `json:"u,omitempty"`
	Data     []byte `json:"d,omitempty"`
}

// mirrorCopy is a room this node mirrors for its sequencer. Guarded by roomLinks.mu.
type mirrorCopy struct {
	node  string // the sequencer
	inc   uint64 // its incarnation
	gen   uint64 // the sequencer's mirror generation of the room when it sent the copy
	c     rooms.Copy
	bytes int // frame bytes held, counted in the memory budget
}

// seenRequest is the last mirror request taken from a node's incarnation.
type seenRequest struct{ inc, n uint64 }

// mirrorBatchBytes bounds the frame bytes of one copy request (under NATS's 1 MiB payload once JSON and
// sealed).
const mirrorBatchBytes = 256 << 10

// Track implements rooms.Mirrors: it starts the room's mirror link.
func (l *roomLinks) Track(r *rooms.Room) rooms.Conn {
	ml := &mirrorLink{l: l, r: r, wake: make(chan struct{}, 1), scores: make(map[string]string)}
	ml.wake <- struct{}{}
	l.linksMu.Lock()
	l.links[ml] = struct{}{}
	l.linksMu.Unlock()
	l.n.wg.Add(1)
	go ml.run()
	return ml
}

// where names the node of a member's connection: the node of a served link, or this one.
func (l *roomLinks) where(c rooms.Conn) string {
	if sv, ok := c.(*served); ok {
		return sv.node
	}
	return l.n.cfg.Node
}

// mirrorFor picks the room's mirror among the live peers: the highest keyed hash of room id and node name.
// scores (node → its hash for this room; nil: none) keeps the hashes from one call to the next: a room's mirror
// link asks before every copy, and a hash costs more than the rest of the choice.
func (l *roomLinks) mirrorFor(id *rooms.RoomID, live map[string]uint64, scores map[string]string) (string, uint64) {
	best, bestScore := "", ""
	for node := range live {
		s, ok := scores[node]
		if !ok {
			b := make([]byte, 0, len(id)+1+len(node))
			b = append(append(append(b, id[:]...), 0), node...)
			s = l.n.cfg.Keys.Subject("rank", b)
			clear(b)
			if scores != nil {
				scores[node] = s
			}
		}
		if s > bestScore {
			best, bestScore = node, s
		}
	}
	return best, live[best]
}

// mirrorLink copies one room sequenced here to its mirror. It is the rooms.Conn the room wakes.
type mirrorLink struct {
	l    *roomLinks
	r    *rooms.Room
	wake chan struct{}

	retry atomic.Bool // the last request failed: watchPeers wakes it every heartbeat
	held  atomic.Bool // a mirror holds a copy of the room: the fence yields it (fence.go)

	// Only run uses these.
	id   rooms.RoomID
	node string // the mirror; "": none (no live peer)
	inc  uint64
	sent uint64 // the mirror holds the entries up to this seq
	full bool   // the next copy replaces the mirror's
	// gen counts the room's mirrors here: one more each time the mirror moves. Of two copies of the room left
	// when this node dies (a drop not confirmed yet), the one of the higher generation is the room.
	gen uint64
	c   rooms.Copy
	// scores are the rendezvous hashes of the room with the nodes seen so far (mirrorFor).
	scores map[string]string
	// drops are the nodes that held a copy of the room (the mirror moved, or the room ended) and have not
	// confirmed its drop yet, by node (dropLater, sendDrops).
	drops map[string]*pendingDrop
}

// pendingDrop is a drop of a room's copy on a node (of incarnation inc) not confirmed yet: asked again every
// heartbeat while the node is heard, for up to dropKeep. A copy left behind would be taken over too if the
// sequencer died: two sequencers for one room.
type pendingDrop struct {
	inc    uint64
	since  time.Time
	n      uint64         // the request in flight (mirrorPost); 0: none
	answer chan *nats.Msg // its answer
	sent   time.Time
}

// dropKeep bounds how long a drop is asked again (a node unheard that long is dead, or restarted).
const dropKeep = 10 * time.Second

// Wake implements rooms.Conn.
func (ml *mirrorLink) Wake() {
	select {
	case ml.wake <- struct{}{}:
	default:
	}
}

// Closed implements rooms.Conn (a mirror is no member).
func (ml *mirrorLink) Closed(*rooms.Member, byte, string) {}

// run copies the room whenever it has something new, the live nodes changed (watchPeers: the mirror may be
// another one now), or the last request failed, until the room is gone.
func (ml *mirrorLink) run() {
	defer ml.l.n.wg.Done()
	defer ml.wipe()
	defer func() {
		ml.l.linksMu.Lock()
		delete(ml.l.links, ml)
		ml.l.linksMu.Unlock()
	}()
	for {
		select {
		case <-ml.l.n.done:
			return
		case <-ml.wake:
		}
		alive := ml.sync()
		ml.sendDrops()
		if !alive {
			// The room is gone: its drops are asked again until confirmed (or dropKeep).
			for len(ml.drops) > 0 {
				select {
				case <-ml.l.n.done:
					return
				case <-ml.wake:
				case <-time.After(ml.l.n.cfg.Heartbeat):
				}
				ml.sendDrops()
			}
			return
		}
	}
}

// dropLater asks node (of incarnation inc) to drop its copy of the room: at once if try and the node is heard
// (waiting for its answer), and again every heartbeat until it confirms, for up to dropKeep (sendDrops).
// Only run uses it.
func (ml *mirrorLink) dropLater(node string, inc uint64, live map[string]uint64, try bool) {
	l := ml.l
	if at, ok := live[node]; ok && at != inc {
		return // restarted: it holds nothing
	} else if ok && try {
		if a, ok := l.mirrorRequest(node, &mirrorMsg{Op: "drop", Room: ml.id[:]}); ok && a.Op == "ok" {
			return
		}
	}
	if ml.drops == nil {
		ml.drops = make(map[string]*pendingDrop)
	}
	if d := ml.drops[node]; d != nil && d.n != 0 {
		l.mirrorDone(d.n)
	}
	ml.drops[node] = &pendingDrop{inc: inc, since: time.Now()}
}

// sendDrops asks again the drops not confirmed yet. Only run uses it.
func (ml *mirrorLink) sendDrops() {
	if len(ml.drops) == 0 {
		return
	}
	l := ml.l
	live := l.n.liveIncarnations()
	for node, d := range ml.drops {
		if d.n != 0 {
			select {
			case m := <-d.answer:
				var a mirrorMsg
				l.mirrorDone(d.n)
				d.n = 0
				if l.open(m.Subject, m.Data, &a, &a.From) && a.Op == "ok" {
					delete(ml.drops, node)
					continue
				}
			default:
				if time.Since(d.sent) < l.n.cfg.PeerTimeout {
					continue // its answer may come yet
				}
				l.mirrorDone(d.n)
				d.n = 0
			}
		}
		inc, heard := live[node]
		if (heard && inc != d.inc) || time.Since(d.since) > dropKeep {
			delete(ml.drops, node) // restarted (it holds nothing), or given up
			continue
		}
		if heard {
			d.n, d.answer, _ = l.mirrorPost(node, &mirrorMsg{Op: "drop", Room: ml.id[:]})
			d.sent = time.Now()
		}
	}
	if len(ml.drops) > 0 {
		ml.retry.Store(true) // watchPeers wakes the link every heartbeat
	}
}

// wakeMirrorLinks wakes the mirror links of the rooms sequenced here: all of them when the live nodes
// changed, else those whose last request failed.
func (l *roomLinks) wakeMirrorLinks(live map[string]uint64) {
	changed := len(live) != len(l.lastLive)
	for node, inc := range live {
		if l.lastLive[node] != inc {
			changed = true
		}
	}
	l.lastLive = live
	l.linksMu.Lock()
	defer l.linksMu.Unlock()
	for ml := range l.links {
		if changed || ml.retry.Load() {
			ml.Wake()
		}
	}
}

func (ml *mirrorLink) wipe() {
	clear(ml.id[:])
	clear(ml.scores)
	ml.c.DialogCap.Wipe()
	clear(ml.c.Room[:])
	clear(ml.c.CapHash[:])
	for i := range ml.c.Entries {
		clear(ml.c.Entries[i].Data)
	}
	ml.c.Entries, ml.c.Members = nil, nil
}

// sync sends the mirror what it lacks, until it holds the whole room. It returns false once the room is gone.
func (ml *mirrorLink) sync() bool {
	l, c := ml.l, &ml.c
	ml.retry.Store(false)
	for {
		more, closed := ml.r.CopyFrom(ml.sent, mirrorBatchBytes, l.where, c)
		if closed {
			// A room that ended is dropped by its mirror too; a yielded one goes on there (fence.go).
			if ml.node != "" && !ml.r.Yielded() {
				ml.dropLater(ml.node, ml.inc, l.n.liveIncarnations(), false)
			}
			return false
		}
		if ml.id != c.Room {
			ml.id = c.Room
			clear(ml.scores)
		}
		live := l.n.liveIncarnations()
		node, inc := l.mirrorFor(&ml.id, live, ml.scores)
		if node != ml.node || inc != ml.inc {
			if ml.node != "" {
				// The old mirror drops its copy before the new one takes the room (two copies could
				// both be taken over); a drop not confirmed is asked again (sendDrops).
				ml.dropLater(ml.node, ml.inc, live, true)
			}
			if d := ml.drops[node]; d != nil {
				// The mirror moved back: the full copy below replaces what it holds.
				if d.n != 0 {
					l.mirrorDone(d.n)
				}
				delete(ml.drops, node)
			}
			ml.node, ml.inc, ml.sent, ml.full = node, inc, 0, true
			ml.gen++
			if node != "" && c.Tail > 1 {
				more, closed = ml.r.CopyFrom(0, mirrorBatchBytes, l.where, c)
				if closed {
					return false
				}
			}
		}
		var ins map[uint32]uint64
		if !more {
			ins = make(map[uint32]uint64, len(c.Members))
			for _, m := range c.Members {
				ins[m.ID] = m.In
			}
		}
		if node == "" && !l.n.steady() {
			// Off NATS, or not yet heard the peers again: they may live, and the room waits (fence.go).
			ml.retry.Store(true)
			return true
		}
		if node == "" {
			// No other node lives: nothing can hold a copy, and the room goes on without one.
			ml.held.Store(false)
			ml.r.Mirrored(c.Head, ins)
			ml.sent = c.Head
		} else {
			start := time.Now()
			msg := copyMsg(c, ml.full)
			msg.Gen = ml.gen
			a, ok := l.mirrorRequest(node, msg)
			clearCopyMsg(msg)
			switch {
			case !ok:
				ml.retry.Store(true)
				ml.full, ml.sent = true, 0
				return true
			case a.Op == "full":
				ml.full, ml.sent = true, 0
				continue
			case a.Op == "ok":
				ml.held.Store(true)
				l.lagMicros.Store(time.Since(start).Microseconds())
				ml.full, ml.sent = false, c.Head
				ml.r.Mirrored(c.Head, ins)
			case a.Op == "stale":
				// A newer epoch of the room lives elsewhere, and members came to it there (this node was
				// cut off, or only slow to be heard): the room ends here, its members resume there.
				if l.t.Yield(ml.r) {
					l.yielded.Add(1)
				}
				return true
			default:
				// "no": the mirror is over its memory budget. Members here are handed nothing more until
				// a mirror holds it; the next heartbeat tries again.
				ml.retry.Store(true)
				return true
			}
		}
		for i := range c.Entries {
			clear(c.Entries[i].Data)
		}
		if !more {
			return true
		}
	}
}

// copyMsg is the copy request of c.
func copyMsg(c *rooms.Copy, full bool) *mirrorMsg {
	m := &mirrorMsg{Op: "copy", Room: c.Room[:], Epoch: c.Epoch, Full: full, CapHash: c.CapHash[:], Allow: c.Allow,
		Max: c.Max, NextMember: c.NextMember, Expires: c.Expires.UnixMilli(), Tail: c.Tail, Head: c.Head}
	if c.DialogCap != (rooms.Secret{}) {
		m.DialogCap = c.DialogCap[:]
	}
	for _, x := range c.Members {
		m.Members = append(m.Members, mirrorMember{ID: x.ID, User: x.User, Token: append([]byte(nil), x.TokenHash[:]...),
			Acked: x.Acked, In: x.In, Where: x.Where})
	}
	for _, x := range c.Entries {
		m.Entries = append(m.Entries, mirrorEntry{Seq: x.Seq, Presence: x.Presence, Event: x.Event, Timeout: x.Timeout,
			From: x.From, User: x.User, Data: x.Data})
	}
	return m
}

func clearCopyMsg(m *mirrorMsg) {
	for _, x := range m.Members {
		clear(x.Token)
	}
}

// mirrorRequest sends msg to node's mirror subject and returns its answer; false if none came in time.
func (l *roomLinks) mirrorRequest(node string, msg *mirrorMsg) (mirrorMsg, bool) {
	n, answer, ok := l.mirrorPost(node, msg)
	if !ok {
		return mirrorMsg{}, false
	}
	defer l.mirrorDone(n)
	select {
	case resp := <-answer:
		var a mirrorMsg
		if !l.open(resp.Subject, resp.Data, &a, &a.From) {
			return mirrorMsg{}, false
		}
		return a, true
	case <-time.After(l.n.cfg.PeerTimeout):
		return mirrorMsg{}, false
	case <-l.n.done:
		return mirrorMsg{}, false
	}
}

// mirrorPost sends msg to node's mirror subject; its answer comes on answer, until mirrorDone(n). The node's
// mirror requests are numbered in the order they are published (NATS keeps one publisher's order), so a mirror
// drops a replayed one. false: not sent (off NATS: nothing is kept for the reconnect, fence.go).
func (l *roomLinks) mirrorPost(node string, msg *mirrorMsg) (n uint64, answer chan *nats.Msg, ok bool) {
	if !l.n.nc.IsConnected() {
		return 0, nil, false
	}
	subject := l.n.cfg.Keys.Subject("mirror", []byte(node))
	msg.From, msg.Inc = l.n.cfg.Node, l.n.inc
	answer = make(chan *nats.Msg, 1)
	l.reqMu.Lock()
	l.reqN++
	msg.N = l.reqN
	n = msg.N
	reply := l.replyPrefix + strconv.FormatUint(n, 10)
	l.waiting[n] = answer
	plain, err := json.Marshal(msg)
	if err == nil {
		sealed := l.n.cfg.Keys.Seal(subject, plain, time.Now())
		clear(plain)
		if msg.Op == "drop" && l.loseDrops.Load() > 0 {
			l.loseDrops.Add(-1) // a test's lost drop
		} else {
			err = l.n.nc.PublishRequest(subject, reply, sealed)
		}
	}
	l.reqMu.Unlock()
	if err != nil {
		l.mirrorDone(n)
		return 0, nil, false
	}
	return n, answer, true
}

// mirrorDone forgets the answer of request n.
func (l *roomLinks) mirrorDone(n uint64) {
	l.reqMu.Lock()
	delete(l.waiting, n)
	l.reqMu.Unlock()
}

// mirrorAnswer hands an answer to the request waiting for it.
func (l *roomLinks) mirrorAnswer(m *nats.Msg) {
	n, err := strconv.ParseUint(strings.TrimPrefix(m.Subject, l.replyPrefix), 10, 64)
	if err != nil {
		return
	}
	l.reqMu.Lock()
	ch := l.waiting[n]
	l.reqMu.Unlock()
	if ch != nil {
		select {
		case ch <- m:
		default:
		}
	}
}

// mirrorStats returns the rooms mirrored here.
func (l *roomLinks) mirrorStats() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.mirrors)
}
