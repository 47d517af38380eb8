package rooms

import (
	"sync/atomic"

	"github.com/cleanrelay/cleanrelay/relay/internal/ws"
	"github.com/cleanrelay/cleanrelay/relay/protocol"
)

// How a table takes part in rooms another node sequences (a cluster, docs/cluster.md §2). A join or a resume
// that finds nothing here asks the Remote; a room found elsewhere gets a proxy room here, holding the one
// local member. Its frames, acknowledgements and its end go to the sequencer through a Link; the sequencer's
// entries for that member come back through Proxy.Deliver in seq order, and Proxy.Ended when the sequencer
// ends the membership. A proxy keeps only what its connection's writer has not yet sent, within the room
// bounds: the sequencer keeps the log a resume replays.

// Remote reaches the rooms of other nodes (package cluster implements it). Its calls wait on the network; the
// table makes them with no lock held.
type Remote interface {
	// Join asks the node that holds room id to admit a member of user with capability. On success it fills
	// j (ID, Room, Token, Seq, Max, Members) and returns the membership's link; entries for it go to p, from
	// the moment Join is called.
	Join(id *RoomID, capability *Secret, user string, p Proxy, j *Joined) (Link, *Error)
	// Resume asks the node that holds the member with this token hash to attach it here, from last on. On
	// success it fills j (ID, Room, Seq, In, Max, Members).
	Resume(tokenHash *[32]byte, user string, last uint64, p Proxy, j *Joined) (Link, *Error)
}

// Link carries a proxied membership's requests to the node that sequences its room. Its calls must not block
// for long: they publish and return.
type Link interface {
	// Forward sends a frame the member sent; data stays the caller's. It returns false when the link holds
	// as many of the member's frames as the room buffer (kept until its sequencer's mirror holds them): the
	// caller tries again in a moment.
	Forward(data *ws.Payload) bool
	// Ack says the member's client processed every entry up to seq.
	Ack(seq uint64)
	// End hands the membership back: left, burned, or away (its connection ended: the grace runs there).
	End(how LinkEnd)
}

// LinkEnd says how a proxied membership ended here.
type LinkEnd uint8

const (
	LinkLeave LinkEnd = iota
	LinkBurn
	LinkAway
)

// Proxy is the handle through which a Remote delivers to a proxied membership.
type Proxy struct{ m *Member }

// proxyItem is one item a proxy room holds for its writer.
type proxyItem struct {
	it   Item
	data *ws.Payload // Frame only
}

// SetRemote makes the table ask r for rooms it does not hold. Call it before serving.
func (h *Table) SetRemote(r Remote) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.remote = r
}

// RoomsHere is how many rooms this table sequences (proxy rooms are not counted).
func (h *Table) RoomsHere() int64 { return h.stats.Rooms.Load() }

// JoinHere is Join for this table's rooms only, for a member attached elsewhere (s.Conn is a link): found is
// false when the room is not here at all, and the caller asks no further.
func (h *Table) JoinHere(s Seat, id *RoomID, capability *Secret, j *Joined) (found bool, err *Error) {
	return h.join(s, id, capability, j, false)
}

// ResumeHere is Resume by the token's hash for this table's members only: found is false when no member here
// has that token.
func (h *Table) ResumeHere(s Seat, tokenHash *[32]byte, last uint64, j *Joined) (found bool, err *Error) {
	return h.resume(s, tokenHash, last, j, false)
}

// getRemote returns the remote, or nil.
func (h *Table) getRemote() Remote {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil
	}
	return h.remote
}

// proxyOfLocked reports whether c holds a membership of room id through a proxy. h.mu is held.
func (h *Table) proxyOfLocked(c Conn, id *RoomID) bool {
	for r := range h.proxies {
		if r.id == *id && r.members[0].conn == c {
			return true
		}
	}
	return false
}

// takeRemote makes a proxy room for s, asks the remote for the membership, and attaches it to s.
func (h *Table) takeRemote(s Seat, j *Joined, ask func(Proxy) (Link, *Error)) *Error {
	if s.Full != nil {
		return s.Full
	}
	r := &Room{table: h, proxy: true}
	m := &Member{room: r}
	r.members = []*Member{m}
	link, err := ask(Proxy{m})
	if err != nil {
		return err
	}
	var n notes
	defer n.deliver()
	h.mu.Lock()
	defer h.mu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.link, r.max, m.id, r.id = link, j.Max, j.ID, j.Room
	if h.closed && !r.closed {
		r.closed = true
		r.wipeQueueLocked()
		n.links = append(n.links, linkNote{link, LinkAway})
	}
	if r.closed {
		// The sequencer ended it meanwhile (a burn), or this relay is closing.
		return Errorf(protocol.CodeDenied, "no such room, or the capability is wrong")
	}
	m.conn, m.ch = s.Conn, s.Ch
	j.Member = m
	if h.proxies == nil {
		h.proxies = make(map[*Room]struct{})
	}
	h.proxies[r] = struct{}{}
	h.stats.Proxied.Add(1)
	if len(r.queue) > 0 || r.lostTo != 0 {
		n.wake = append(n.wake, s.Conn)
	}
	return nil
}

// endProxyLocked ends the proxy room of m here and hands the membership back to the sequencer (how), telling
// m's connection reason unless it is empty. h.mu and m.room.mu are held.
func (h *Table) endProxyLocked(m *Member, how LinkEnd, reason string, n *notes) {
	r := m.room
	if reason != "" && m.conn != nil {
		n.close(m.conn, m, m.ch, reason)
	}
	h.dropProxyLocked(r)
	n.links = append(n.links, linkNote{r.link, how})
}

// dropProxyLocked closes the proxy room r and releases what it holds. h.mu and r.mu are held.
func (h *Table) dropProxyLocked(r *Room) {
	r.closed = true
	clear(r.id[:])
	r.members[0].conn = nil
	if _, ok := h.proxies[r]; ok {
		delete(h.proxies, r)
		h.stats.Proxied.Add(-1)
	}
	r.wipeQueueLocked()
}

// Deliver queues an entry of the sequencer for the member's writer: it. data holds a frame's bytes (copied).
// Entries come in seq order. When the queue is full, the oldest goes, and the writer sends lost for it.
func (p Proxy) Deliver(it Item, data []byte) {
	r := p.m.room
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	cfg := &r.table.cfg
	var x proxyItem
	x.it = it
	size := 0
	if it.Kind == Frame {
		x.data = ws.PayloadOf(data)
		x.it.Len = len(data)
		size = x.data.Cap()
	}
	for len(r.queue) > 0 && (len(r.queue) >= cfg.RoomBuffer || r.qbytes+size > cfg.RoomBufferBytes) {
		r.dropOldestLocked()
	}
	r.queue = append(r.queue, x)
	r.qbytes += size
	r.table.mem.Held.Add(int64(size))
	c := p.m.conn
	r.mu.Unlock()
	if c != nil {
		c.Wake()
	}
}

// Ended ends the membership here because the sequencer ended it, telling the connection reason.
func (p Proxy) Ended(reason string) {
	m := p.m
	r := m.room
	h := r.table
	var n notes
	defer n.deliver()
	h.mu.Lock()
	defer h.mu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	if m.conn != nil {
		n.close(m.conn, m, m.ch, reason)
	}
	h.dropProxyLocked(r)
}

// dropOldestLocked drops the oldest queued item, which becomes part of the lost range the writer reports (a
// refusal is only dropped: it has no seq).
func (r *Room) dropOldestLocked() {
	x := r.queue[0]
	r.queue[0] = proxyItem{}
	r.queue = r.queue[1:]
	if x.it.Kind == Refused {
		return
	}
	from, to := x.it.Seq, x.it.Seq
	if x.it.Kind == Lost {
		from, to = x.it.LostFrom, x.it.LostTo
	}
	if r.lostTo == 0 {
		r.lostFrom = from
	}
	r.lostTo = to
	r.releaseLocked(x.data)
	r.table.stats.Slow.Add(1)
	r.table.stats.Evicted.Add(1)
}

// releaseLocked returns a queued frame's buffer. r.mu is held.
func (r *Room) releaseLocked(p *ws.Payload) {
	if p == nil {
		return
	}
	r.qbytes -= p.Cap()
	r.table.mem.Held.Add(-int64(p.Cap()))
	ws.PutPayload(p)
}

// wipeQueueLocked releases everything the proxy room holds. r.mu is held.
func (r *Room) wipeQueueLocked() {
	for i := range r.queue {
		r.releaseLocked(r.queue[i].data)
		r.queue[i] = proxyItem{}
	}
	r.queue = nil
	r.lostFrom, r.lostTo = 0, 0
}

// nextProxyLocked is Member.Next for a proxy room. r.mu is held.
func (m *Member) nextProxyLocked(c Conn, ch byte, body []byte) Item {
	r := m.room
	if r.closed || m.conn != c || m.ch != ch {
		return Item{}
	}
	if r.lostTo != 0 {
		it := Item{Kind: Lost, LostFrom: r.lostFrom, LostTo: r.lostTo}
		r.lostFrom, r.lostTo = 0, 0
		r.table.stats.Lost.Add(1)
		return it
	}
	if len(r.queue) == 0 {
		return Item{}
	}
	x := r.queue[0]
	r.queue[0] = proxyItem{}
	r.queue = r.queue[1:]
	if x.data != nil {
		if len(body) < x.data.Len() {
			r.releaseLocked(x.data)
			return Item{}
		}
		x.it.Len = x.data.CopyTo(body, 0)
		r.releaseLocked(x.data)
	}
	if x.it.Kind == Lost {
		r.table.stats.Lost.Add(1)
	}
	return x.it
}

// forwardProxy is Member.Forward for a proxy room: the frame goes to the sequencer.
func (m *Member) forwardProxy(c Conn, data *ws.Payload) ForwardResult {
	r := m.room
	r.mu.Lock()
	ok := !r.closed && m.conn == c
	link := r.link
	r.mu.Unlock()
	if !ok {
		return NotMember
	}
	if !link.Forward(data) {
		return Crowded
	}
	r.mu.Lock()
	m.in++
	r.mu.Unlock()
	ws.PutPayload(data)
	return Forwarded
}

// ackProxy is Member.Ack for a proxy room.
func (m *Member) ackProxy(c Conn, seq uint64) {
	r := m.room
	r.mu.Lock()
	ok := !r.closed && m.conn == c
	link := r.link
	r.mu.Unlock()
	if ok {
		link.Ack(seq)
	}
}

// Held is the relay's memory account of held bytes, for what a Remote holds on the table's behalf (a
// cluster link's unconfirmed messages).
func (h *Table) Held() *atomic.Int64 { return &h.mem.Held }

// RefusedError is the error a member's connection is told for a Refused item: what a frame refused on one node
// is answered with.
func RefusedError(it *Item) *Error {
	if it.Code == protocol.CodeOverMemory {
		return Errorf(it.Code, overMemoryMsg)
	}
	return Errorf(it.Code, "the frame was refused")
}
