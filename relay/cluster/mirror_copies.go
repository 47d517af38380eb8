package cluster

// The mirror's side of a room (docs/cluster.md §2 "Mirror", "Takeover"): the copy requests it takes, the
// copies it holds, and the takeover of the rooms whose sequencer is no longer heard.

import (
	"bytes"
	"encoding/json"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/cleanrelay/cleanrelay/relay/internal/rooms"
)

// answerMirror takes a copy request of another node.
func (l *roomLinks) answerMirror(m *nats.Msg) {
	var req mirrorMsg
	if !l.open(m.Subject, m.Data, &req, &req.From) || req.From == l.n.cfg.Node {
		return
	}
	if m.Reply == "" {
		l.n.refused.Add(1) // a node's requests always have a reply subject
		return
	}
	// Only the live incarnation of a node, and each of its requests once (they come in its order).
	if seen := l.mirrorSeen[req.From]; l.n.liveIncarnations()[req.From] != req.Inc || (seen.inc == req.Inc && req.N <= seen.n) {
		l.n.refused.Add(1)
		return
	}
	l.mirrorSeen[req.From] = seenRequest{req.Inc, req.N}
	var a mirrorMsg
	if req.Op == "claims" {
		a = l.claimsOf(req.Rooms)
	} else {
		a.Op = l.applyMirror(&req)
	}
	clearCopyMsg(&req)
	for i := range req.Entries {
		clear(req.Entries[i].Data)
	}
	clear(req.CapHash)
	clear(req.DialogCap)
	clear(req.Room)
	a.From, a.Inc = l.n.cfg.Node, l.n.inc
	plain, err := json.Marshal(&a)
	if err != nil {
		return
	}
	sealed := l.n.cfg.Keys.Seal(m.Reply, plain, time.Now())
	l.n.nc.Publish(m.Reply, sealed)
}

// applyMirror applies a copy request to the copies held here and returns the answer's op.
func (l *roomLinks) applyMirror(req *mirrorMsg) string {
	var id rooms.RoomID
	if len(req.Room) != len(id) {
		l.n.refused.Add(1)
		return "no"
	}
	copy(id[:], req.Room)
	defer clear(id[:])
	if req.Op == "drop" {
		l.mu.Lock()
		if c := l.mirrors[id]; c != nil && c.node == req.From {
			l.dropCopyLocked(&id, c)
		}
		l.mu.Unlock()
		return "ok"
	}
	if req.Op != "copy" && req.Op != "taken" {
		l.n.refused.Add(1)
		return "no"
	}
	// A newer epoch of a room sequenced here: another node took it over while this one was unheard there (a
	// one-sided peer death, or the end of a cut). The room's next copy request (sent again every heartbeat
	// until answered) is given the room back if nobody came to it there, or answered "stale", and the room
	// ends here, its members resuming there (fence.go).
	l.t.WakeOlder(&id, req.Epoch)
	if req.Op == "taken" {
		return "ok"
	}
	if e, ok := l.t.EpochOf(&id); ok && e >= req.Epoch && !l.t.Unadopt(&id, req.Epoch) {
		// This node sequences the room since a takeover, and members came to it here. (Taken over from a
		// node that was only slow to be heard, and nobody came yet: the room is given back, above.)
		return "stale"
	}
	over := l.t.OverBudget()
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.mirrors[id]
	if c != nil && c.c.Epoch > req.Epoch {
		return "stale"
	}
	if req.Full {
		if c != nil {
			l.dropCopyLocked(&id, c)
		} else if over {
			return "no"
		}
		c = &mirrorCopy{node: req.From, inc: req.Inc}
		c.c.Room = id
		c.c.Head = req.Tail - 1
		l.mirrors[id] = c
	} else if c == nil || c.node != req.From || c.inc != req.Inc || c.c.Epoch != req.Epoch {
		return "full"
	}
	if req.Tail > c.c.Head+1 {
		// Entries every member had processed left the log before they were copied: none is needed.
		l.trimCopyLocked(c, req.Tail)
		c.c.Head = req.Tail - 1
	}
	for _, e := range req.Entries {
		if e.Seq <= c.c.Head {
			continue
		}
		if e.Seq != c.c.Head+1 {
			l.dropCopyLocked(&id, c)
			return "full"
		}
		x := rooms.EntryCopy{Seq: e.Seq, Presence: e.Presence, Event: e.Event, Timeout: e.Timeout, From: e.From, User: e.User}
		if len(e.Data) > 0 {
			x.Data = append([]byte(nil), e.Data...)
			c.bytes += len(x.Data)
			l.t.Hold(int64(len(x.Data)))
			l.mirrorBytes.Add(int64(len(x.Data)))
		}
		c.c.Entries = append(c.c.Entries, x)
		c.c.Head = e.Seq
	}
	if c.c.Head != req.Head {
		l.dropCopyLocked(&id, c)
		return "full"
	}
	l.trimCopyLocked(c, req.Tail)
	c.c.Tail, c.c.Epoch, c.c.Allow, c.c.Max, c.c.NextMember = req.Tail, req.Epoch, req.Allow, req.Max, req.NextMember
	c.gen = req.Gen
	c.c.Expires = time.UnixMilli(req.Expires)
	copy(c.c.CapHash[:], req.CapHash)
	copy(c.c.DialogCap[:], req.DialogCap)
	l.indexCopyLocked(c, -1)
	for i := range c.c.Members {
		clear(c.c.Members[i].TokenHash[:])
	}
	c.c.Members = c.c.Members[:0]
	for _, m := range req.Members {
		x := rooms.MemberCopy{ID: m.ID, User: m.User, Acked: m.Acked, In: m.In, Where: m.Where}
		copy(x.TokenHash[:], m.Token)
		c.c.Members = append(c.c.Members, x)
	}
	l.indexCopyLocked(c, 1)
	return "ok"
}

// indexCopyLocked adds (by 1) or removes (by -1) the token hashes of c's members in copyTokens. l.mu is held.
func (l *roomLinks) indexCopyLocked(c *mirrorCopy, by int) {
	for i := range c.c.Members {
		th := c.c.Members[i].TokenHash
		if n := l.copyTokens[th] + by; n > 0 {
			l.copyTokens[th] = n
		} else {
			delete(l.copyTokens, th)
		}
		clear(th[:])
	}
}

// copyHolds reports whether a copy here holds room id (join) or the member with token hash th (resume): a
// room not taken over (yet) from its sequencer.
func (l *roomLinks) copyHolds(id *rooms.RoomID, th []byte) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if id != nil {
		return l.mirrors[*id] != nil || l.adopting[*id]
	}
	var k [32]byte
	copy(k[:], th)
	defer clear(k[:])
	return len(th) == len(k) && l.copyTokens[k] > 0
}

// trimCopyLocked releases the copy's entries before seq tail. l.mu is held.
func (l *roomLinks) trimCopyLocked(c *mirrorCopy, tail uint64) {
	k := 0
	for k < len(c.c.Entries) && c.c.Entries[k].Seq < tail {
		l.releaseEntry(c, &c.c.Entries[k])
		k++
	}
	c.c.Entries = c.c.Entries[k:]
}

func (l *roomLinks) releaseEntry(c *mirrorCopy, e *rooms.EntryCopy) {
	if n := len(e.Data); n > 0 {
		clear(e.Data)
		c.bytes -= n
		l.t.Hold(-int64(n))
		l.mirrorBytes.Add(-int64(n))
	}
	*e = rooms.EntryCopy{}
}

// dropCopyLocked forgets a copy and overwrites it. l.mu is held.
func (l *roomLinks) dropCopyLocked(id *rooms.RoomID, c *mirrorCopy) {
	delete(l.mirrors, *id)
	l.wipeCopyLocked(c)
}

func (l *roomLinks) wipeCopyLocked(c *mirrorCopy) {
	l.indexCopyLocked(c, -1)
	for i := range c.c.Entries {
		l.releaseEntry(c, &c.c.Entries[i])
	}
	c.c.Entries = nil
	for i := range c.c.Members {
		clear(c.c.Members[i].TokenHash[:])
	}
	c.c.Members = nil
	clear(c.c.Room[:])
	clear(c.c.CapHash[:])
	c.c.DialogCap.Wipe()
}

// copyClaim is the epoch and mirror generation of a copy this node takes over, or took over within claimKeep.
type copyClaim struct {
	epoch, gen uint64
	until      time.Time
}

// claimKeep is how long a node answers for a copy it took over: longer than its peers' takeovers of the same
// node's rooms can lag behind its own.
const claimKeep = 30 * time.Second

// claimsMaxRooms bounds the rooms of one "claims" request (each about 50 bytes of JSON).
const claimsMaxRooms = 4096

// above reports whether the copy (epoch, gen) of node is later than (e, g) of other: the higher epoch, then
// the higher generation, then (two copies of one generation cannot be, but the choice must be the same on
// every node) the higher node name.
func above(epoch, gen uint64, node string, e, g uint64, other string) bool {
	if epoch != e {
		return epoch > e
	}
	if gen != g {
		return gen > g
	}
	return node > other
}

// claimsOf answers a "claims" request: for each room, the epoch and generation of the copy held here, or
// taken over here within claimKeep; zeros for none.
func (l *roomLinks) claimsOf(ids [][]byte) mirrorMsg {
	a := mirrorMsg{Op: "ok", Epochs: make([]uint64, len(ids)), Gens: make([]uint64, len(ids))}
	var id rooms.RoomID
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, b := range ids {
		if len(b) != len(id) {
			continue
		}
		copy(id[:], b)
		if c := l.mirrors[id]; c != nil {
			a.Epochs[i], a.Gens[i] = c.c.Epoch, c.gen
		} else if cl, ok := l.claims[id]; ok {
			a.Epochs[i], a.Gens[i] = cl.epoch, cl.gen
		}
		clear(b)
	}
	clear(id[:])
	return a
}

// takeOver makes the rooms this node mirrors for nodes no longer live (or restarted: a new incarnation holds
// none of them) rooms of this node's table. A room can have a second copy for a while after its mirror moved
// (a drop not confirmed when its sequencer died): each node taking over asks its live peers for their copies
// of the same rooms first, and a room is taken over only by the node with the later copy (above).
func (l *roomLinks) takeOver(live map[string]uint64) {
	var adopt []*mirrorCopy
	now := time.Now()
	l.mu.Lock()
	for id, cl := range l.claims {
		if now.After(cl.until) {
			delete(l.claims, id)
		}
	}
	for id, c := range l.mirrors {
		if inc, ok := live[c.node]; !ok || inc != c.inc {
			adopt = append(adopt, c)
			delete(l.mirrors, id)
			l.adopting[id] = true // a find still says "pending" until the room is in the table
			l.claims[id] = copyClaim{epoch: c.c.Epoch, gen: c.gen, until: now.Add(claimKeep)}
		}
	}
	l.mu.Unlock()
	if len(adopt) == 0 {
		return
	}
	// Asked off watchPeers' goroutine: a peer that does not answer costs a peer timeout.
	l.n.wg.Add(1)
	go func() {
		defer l.n.wg.Done()
		later := l.laterCopies(adopt)
		for i, c := range adopt {
			if later[i] {
				l.declined.Add(1)
			} else if l.t.Adopt(&c.c, c.node) {
				l.takeovers.Add(1)
				// Its sequencer may only be unheard here: tell it (fence.go). Nobody answers a dead one.
				taken := &mirrorMsg{Op: "taken", Room: bytes.Clone(c.c.Room[:]), Epoch: c.c.Epoch + 1}
				l.n.wg.Add(1)
				go func(node string) {
					defer l.n.wg.Done()
					l.mirrorRequest(node, taken)
					clear(taken.Room)
				}(c.node)
			}
			l.mu.Lock()
			delete(l.adopting, c.c.Room)
			if later[i] {
				delete(l.claims, c.c.Room)
			}
			l.wipeCopyLocked(c)
			l.mu.Unlock()
		}
	}()
}

// laterCopies asks the live peers for their copies of the rooms of adopt, and reports for each whether a peer
// holds (or took over) a later one. A peer that does not answer holds none, as far as this node can tell.
func (l *roomLinks) laterCopies(adopt []*mirrorCopy) []bool {
	later := make([]bool, len(adopt))
	for node := range l.n.liveIncarnations() {
		for start := 0; start < len(adopt); start += claimsMaxRooms {
			part := adopt[start:min(start+claimsMaxRooms, len(adopt))]
			req := &mirrorMsg{Op: "claims", Rooms: make([][]byte, len(part))}
			for i, c := range part {
				req.Rooms[i] = bytes.Clone(c.c.Room[:])
			}
			a, ok := l.mirrorRequest(node, req)
			for _, b := range req.Rooms {
				clear(b)
			}
			if !ok || len(a.Epochs) != len(part) || len(a.Gens) != len(part) {
				continue
			}
			for i, c := range part {
				if a.Epochs[i] != 0 || a.Gens[i] != 0 {
					later[start+i] = later[start+i] || above(a.Epochs[i], a.Gens[i], node, c.c.Epoch, c.gen, l.n.cfg.Node)
				}
			}
		}
	}
	return later
}
