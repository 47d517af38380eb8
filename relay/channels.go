package relay

import (
	"time"

	"github.com/cleanrelay/cleanrelay/relay/internal/rooms"
	"github.com/cleanrelay/cleanrelay/relay/internal/ws"
)

// How a connection holds its rooms. Each membership (a rooms.Member) is named by a channel of the connection.
// The connection calls the rooms (package rooms): it forwards frames, acknowledges, takes and leaves places.
// The rooms call back only through rooms.Conn — Wake and Closed — once they have released their locks.

// chanRef is one membership held by a connection, on channel ch. While the request that takes it is under
// way, m is nil (the channel is reserved), and a Closed that comes for it meanwhile waits in closed and why.
type chanRef struct {
	ch     byte
	m      *rooms.Member
	closed bool
	why    string
}

// Sizes of the replies that carry identifiers, generous upper bounds: the fixed part (field names, quotes, an
// id, a room id, a capability and a token as text, numbers at their widest) and each member id.
const (
	replyRoom      = 320
	replyPerMember = 11
)

// writerCatchUp is how often a frame that waits for its sender's own writer (forward) looks again.
const writerCatchUp = time.Millisecond

// Wake implements rooms.Conn.
func (c *conn) Wake() { c.wakeUp() }

// Closed implements rooms.Conn: the room ended the membership m on ch. The channel is released and, unless
// reason is empty, the client is told the room is closed for it; revoked also closes the connection.
func (c *conn) Closed(m *rooms.Member, ch byte, reason string) {
	resume := reason == rooms.ReasonResume // the room goes on elsewhere (a cluster): the client resumes
	if resume {
		reason = ""
	}
	c.mu.Lock()
	if i := c.index(ch); i >= 0 {
		switch ref := &c.chans[i]; ref.m {
		case nil: // the request that takes it is under way: attach tells the client after its reply
			ref.closed, ref.why = true, reason
		case m:
			c.detachLocked(i, reason)
		}
	}
	c.mu.Unlock()
	c.wakeUp()
	switch {
	case reason == reasonRevoked:
		c.kill(closeRevoked)
	case resume:
		c.kill(closeResume)
	}
}

// detachLocked forgets c.chans[i] and, if reason is not empty, queues the closed notice. c.mu is held.
func (c *conn) detachLocked(i int, reason string) {
	ch := c.chans[i].ch
	c.releaseLocked(i)
	if reason != "" && len(c.ctrl) < maxQueuedControl {
		c.ctrl = append(c.ctrl, newObj(nil, "closed").num("ch", uint64(ch)).str("reason", reason).done())
	}
}

// reserve reserves the lowest channel c does not use for a membership being taken, or returns too_many_rooms
// for the rooms to answer with (rooms.Seat.Full). Only the reader goroutine reserves channels.
func (c *conn) reserve() (byte, *protoError) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.chans) >= c.srv.cfg.MaxRoomsPerConn {
		return 0, errorf(codeTooManyRooms, "this connection holds %d rooms, the limit", len(c.chans))
	}
	for ch := 1; ch <= 255; ch++ {
		if c.index(byte(ch)) < 0 {
			c.chans = append(c.chans, chanRef{ch: byte(ch)})
			return byte(ch), nil
		}
	}
	return 0, errorf(codeTooManyRooms, "no free channel")
}

// unreserve gives back a reserved channel whose request was refused. It is not a room left: the idle clock
// (lastRoom) does not restart.
func (c *conn) unreserve(ch byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i := c.index(ch); i >= 0 {
		c.chans = append(c.chans[:i], c.chans[i+1:]...)
	}
}

// index returns the position of channel ch in c.chans, or -1. c.mu is held.
func (c *conn) index(ch byte) int {
	for i, r := range c.chans {
		if r.ch == ch {
			return i
		}
	}
	return -1
}

// find returns the member on channel ch, or nil (none, or one still being taken). c.mu is held.
func (c *conn) find(ch byte) *rooms.Member {
	if i := c.index(ch); i >= 0 {
		return c.chans[i].m
	}
	return nil
}

// attach binds the membership j took to its reserved channel ch and queues reply, atomically: the writer sees
// the reply no later than the channel, so a client never gets a room's entries before the reply that names
// its channel. A Closed that came while the request was under way is told after the reply, and so is the
// channel a resume on the same connection replaced (moved).
func (c *conn) attach(ch byte, j *rooms.Joined, reply []byte) {
	c.mu.Lock()
	i := c.index(ch)
	ref := &c.chans[i]
	ref.m = j.Member
	c.ctrl = append(c.ctrl, reply)
	if ref.closed {
		c.detachLocked(i, ref.why)
	}
	if j.Replaced != 0 {
		if k := c.index(j.Replaced); k >= 0 {
			c.detachLocked(k, reasonMoved)
		}
	}
	c.mu.Unlock()
	c.wakeUp()
}

// release forgets channel ch.
func (c *conn) release(ch byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i := c.index(ch); i >= 0 {
		c.releaseLocked(i)
	}
}

func (c *conn) releaseLocked(i int) {
	c.chans = append(c.chans[:i], c.chans[i+1:]...)
	if len(c.chans) == 0 {
		c.lastRoom = time.Now()
	}
}

// members returns the memberships c holds.
func (c *conn) members() []*rooms.Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	ms := make([]*rooms.Member, 0, len(c.chans))
	for _, r := range c.chans {
		if r.m != nil {
			ms = append(ms, r.m)
		}
	}
	return ms
}

// take runs a request that takes a place in a room (create, join, resume) for c on a reserved channel, and
// queues its reply, which format makes from what the rooms filled in.
func (c *conn) take(do func(rooms.Seat, *rooms.Joined) *rooms.Error, format func(ch byte, j *rooms.Joined) []byte) *protoError {
	s := rooms.Seat{Conn: c, User: c.identity.User}
	s.Ch, s.Full = c.reserve()
	var j rooms.Joined
	defer j.Wipe()
	if perr := do(s, &j); perr != nil {
		if s.Full == nil {
			c.unreserve(s.Ch)
		}
		return perr
	}
	c.attach(s.Ch, &j, format(s.Ch, &j))
	return nil
}

// joinedReply formats the reply to create (with the capability) and join into a buffer sized for it, so that
// the capability and token it carries exist in exactly one array, which the writer zeroes once it is written.
func joinedReply(id uint64, ch byte, j *rooms.Joined, withCap bool) []byte {
	o := newObj(make([]byte, 0, replyRoom+len(j.Members)*replyPerMember), "joined").id(id).num("ch", uint64(ch)).
		b64("room", j.Room[:])
	if withCap {
		o = o.b64("cap", j.Cap[:])
	}
	return o.num("member", uint64(j.ID)).b64("resume", j.Token[:]).num("seq", j.Seq).
		num("max", uint64(j.Max)).nums("members", j.Members).done()
}

// resumedReply formats the reply to resume.
func resumedReply(id uint64, ch byte, j *rooms.Joined) []byte {
	return newObj(make([]byte, 0, replyRoom+len(j.Members)*replyPerMember), "resumed").id(id).
		num("ch", uint64(ch)).b64("room", j.Room[:]).num("member", uint64(j.ID)).num("seq", j.Seq).
		num("in", j.In).num("max", uint64(j.Max)).nums("members", j.Members).done()
}

// handleFrame forwards one frame the client sent. msg is c's to dispose of: the room takes it if it is
// forwarded, and it is released otherwise.
func (c *conn) handleFrame(msg *ws.Payload) {
	if msg.HeadLen() < sendHeaderLen || msg.Len() < 1 {
		ws.PutPayload(msg)
		c.srv.stats.drop(dropBadFrame)
		c.sendControl(appendError(nil, 0, errorf(codeBadFrame, "a frame needs a channel byte and at least one payload byte")))
		return
	}
	ch, n := msg.Head(0), msg.Len()
	c.mu.Lock()
	m := c.find(ch)
	c.mu.Unlock()
	res, killed := rooms.NotMember, false
	if m != nil {
		res, killed = c.forward(m, msg)
	}
	if res != rooms.Forwarded {
		ws.PutPayload(msg)
	}
	switch {
	case killed:
		return // killed while the frame waited: nothing more is written
	case res == rooms.OverMemory:
		c.srv.stats.drop(dropOverMemory)
		c.sendControl(appendError(nil, 0, c.srv.mem.Refuse(rooms.RefusedFrame)))
		return
	case res == rooms.NotMember:
		c.srv.stats.drop(dropNotMember)
		c.sendControl(appendError(nil, 0, errorf(codeNotMember, "channel %d is not a room of this connection", ch)))
		return
	}
	c.srv.stats.framesIn.Add(1)
	c.srv.stats.bytesIn.Add(uint64(n))
}

// forward hands msg to m's room, waiting while the room says it would crowd out what c's own writer has not
// yet sent (rooms.Crowded). It reports true if c was killed meanwhile.
func (c *conn) forward(m *rooms.Member, msg *ws.Payload) (rooms.ForwardResult, bool) {
	var wait *time.Timer
	for {
		res := m.Forward(c, msg)
		if res != rooms.Crowded {
			return res, false
		}
		if wait == nil {
			c.srv.stats.ownWriterWaits.Add(1)
			wait = time.NewTimer(writerCatchUp)
			defer wait.Stop()
		} else {
			wait.Reset(writerCatchUp)
		}
		select {
		case <-wait.C:
		case <-c.done:
			return rooms.NotMember, true
		}
	}
}

// handleControl handles one control message. msg is the reader's buffer, which it zeroes afterwards; the
// request decoded from it is wiped here.
func (c *conn) handleControl(msg []byte) {
	var req request
	defer req.wipe()
	perr := parseRequest(msg, &req)
	if perr == nil {
		perr = c.dispatch(&req)
	}
	if perr != nil {
		c.srv.stats.refusedRequests.Add(1)
		c.sendControl(appendError(nil, req.ID, perr))
	}
}

func (c *conn) dispatch(req *request) *protoError {
	t := c.srv.table
	switch req.T {
	case "create":
		return c.take(func(s rooms.Seat, j *rooms.Joined) *rooms.Error { return t.Create(s, req.Max, j) },
			func(ch byte, j *rooms.Joined) []byte { return joinedReply(req.ID, ch, j, true) })
	case "join":
		if !req.Room.present() || !req.Cap.present() {
			return errorf(codeBadRequest, "join needs \"room\" and \"cap\"")
		}
		id, _ := req.Room.roomID()
		capability, _ := req.Cap.secret()
		return c.take(func(s rooms.Seat, j *rooms.Joined) *rooms.Error { return t.Join(s, id, capability, j) },
			func(ch byte, j *rooms.Joined) []byte { return joinedReply(req.ID, ch, j, false) })
	case "resume":
		if !req.Resume.present() || req.Last == nil {
			return errorf(codeBadRequest, "resume needs \"resume\" and \"last\"")
		}
		token, _ := req.Resume.secret()
		return c.take(func(s rooms.Seat, j *rooms.Joined) *rooms.Error { return t.Resume(s, token, *req.Last, j) },
			func(ch byte, j *rooms.Joined) []byte { return resumedReply(req.ID, ch, j) })
	case "ack", "leave", "burn":
		ch, perr := req.channel()
		if perr != nil {
			return perr
		}
		c.mu.Lock()
		m := c.find(ch)
		c.mu.Unlock()
		if m == nil {
			return errorf(codeNotMember, "channel %d is not a room of this connection", ch)
		}
		switch req.T {
		case "ack":
			m.Ack(c, req.Seq)
		case "leave":
			if !t.Leave(c, m) {
				return errorf(codeNotMember, "channel %d is not a room of this connection", ch)
			}
			c.release(ch)
			c.sendControl(newObj(nil, "left").id(req.ID).num("ch", uint64(ch)).done())
		case "burn":
			if !t.Burn(c, m) {
				return errorf(codeNotMember, "channel %d is not a room of this connection", ch)
			}
		}
		return nil
	default:
		return errorf(codeUnknownType, "unknown message type; this relay speaks %s", Subprotocol)
	}
}
