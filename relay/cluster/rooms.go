package cluster

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/cleanrelay/cleanrelay/relay/internal/rooms"
	"github.com/cleanrelay/cleanrelay/relay/internal/ws"
	"github.com/cleanrelay/cleanrelay/relay/protocol"
)

// Rooms across nodes (docs/cluster.md §2). The node where a room is created sequences it: its table holds the
// room's log, numbers every entry, stamps senders and keeps presence, acknowledgements, grace and lifetime,
// exactly as one relay does. A member on another node is, on the sequencer, a member like any other, attached
// to a served link (a rooms.Conn) instead of a socket; on its own node it is a proxy (rooms.Proxy) that the
// table there attaches to the socket. Between them, on NATS:
//
//   - proxy → sequencer, on the sequencer's "room" subject: fwd (a frame), ack, end (leave, burn, away);
//   - sequencer → proxy, on the proxy's node's "room" subject: items (what the member's writer would have
//     sent it, in seq order, a batch at a time) and ended (the sequencer ended the membership, with why);
//   - a join or resume that finds nothing on its node asks every node on the "find" subject; the node that
//     holds the room (or the token's member) admits a served link for the asker, the others say not here.
//
// Subjects are keyed hashes of the node's name (or of nothing, for find): no room id, token or user is in a
// subject, and every payload is sealed. A membership is named on the wire by a link id the proxy draws at
// random.

// Limits of the rooms traffic.
const (
	// findTimeout bounds how long a join or resume waits for the node that holds the room.
	findTimeout = 2 * time.Second
	// servedQueue bounds the requests (frames, acks) queued for one served membership: twice its proxy's
	// window (roomlink.go). When it is full anyway (the room has been crowded for long), a request is not
	// taken: the receiving goroutine never waits for one link, and the proxy sends it again.
	servedQueue = 2 * linkWindow
	// itemsBatch and itemsBatchBytes bound one items message (under NATS's default 1 MiB payload once base64
	// and sealed).
	itemsBatch      = 64
	itemsBatchBytes = 256 << 10
)

type linkID [16]byte

// roomMsg is a find request or its answer (the room subject's messages are binary: roomwire.go), sealed for the subject or inbox it travels on.
type roomMsg struct {
	From string `json:"f"`
	Inc  uint64 `json:"n"` // the sender's incarnation: a node that restarted holds none of its links
	Op   string `json:"o"`
	Link []byte `json:"l,omitempty"`

	// find: join
	Room []byte `json:"r,omitempty"`
	Cap  []byte `json:"c,omitempty"`
	User string `json:"u,omitempty"`
	// find: resume
	TokenHash []byte `json:"th,omitempty"`
	Last      uint64 `json:"la,omitempty"`

	// the answer to find
	Here    bool     `json:"here,omitempty"`
	Code    string   `json:"code,omitempty"`
	Msg     string   `json:"msg,omitempty"`
	ID      uint32   `json:"id,omitempty"`
	Token   []byte   `json:"tok,omitempty"`
	RoomSeq uint64   `json:"rs,omitempty"`
	In      uint64   `json:"in,omitempty"`
	Max     int      `json:"max,omitempty"`
	Members []uint32 `json:"ms,omitempty"`
}

// roomLinks is the node's part in rooms across nodes.
type roomLinks struct {
	// Static after ServeRooms.
	n        *Node
	t        *rooms.Table
	maxFrame int
	subOwn   string // this node's room subject
	subFind  string

	mu     sync.Mutex
	served map[linkID]*served // guarded by mu: members of rooms here, on other nodes
	// usedLinks are the link ids of the finds answered within the sealing window (maxAge): a replayed find
	// admits nobody. Guarded by mu.
	usedLinks map[linkID]bool
	proxied   map[linkID]*proxied // guarded by mu: members here of rooms on other nodes
	closing   map[linkID]*closing // guarded by mu: ended links whose last message is not confirmed yet

	env     linkEnv       // the link layer's (roomlink.go)
	dropped atomic.Uint64 // rooms messages for no known membership, or frames the room refused
}

// closing is an ended link whose last messages are sent again until the peer confirms them (roomlink.go).
type closing struct {
	out   *outbox
	node  string
	inc   uint64
	until time.Time
}

// ServeRooms makes rooms span the nodes: t's rooms are open to members on other nodes, and t's joins and
// resumes reach rooms on other nodes. maxFrame is the relay's largest frame. Call it once, before serving.
func (n *Node) ServeRooms(t *rooms.Table, maxFrame int) error {
	l := &roomLinks{n: n, t: t, maxFrame: maxFrame,
		subOwn: n.cfg.Keys.Subject("room", []byte(n.cfg.Node)), subFind: n.cfg.Keys.Subject("find", nil),
		served: make(map[linkID]*served), proxied: make(map[linkID]*proxied), usedLinks: make(map[linkID]bool),
		closing: make(map[linkID]*closing)}
	l.env.publish, l.env.held = l.publish, t.Held()
	if _, err := n.nc.Subscribe(l.subOwn, l.receive); err != nil {
		return err
	}
	if _, err := n.nc.Subscribe(l.subFind, l.answerFind); err != nil {
		return err
	}
	if err := n.nc.Flush(); err != nil {
		return err
	}
	n.rooms.Store(l)
	t.SetRemote(l)
	n.wg.Add(2)
	go l.watchPeers()
	go l.tick()
	return nil
}

// liveIncarnations are the incarnations of the nodes heard within PeerTimeout.
func (n *Node) liveIncarnations() map[string]uint64 {
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	out := map[string]uint64{}
	for name, o := range n.origins {
		if now.Sub(o.lastSeen) < n.cfg.PeerTimeout {
			out[name] = o.inc
		}
	}
	return out
}

// watchPeers ends, every heartbeat, the links to nodes no longer heard (or heard again as a new incarnation,
// which holds none of them): a served member whose node is gone is
// away (its grace runs here, and it may resume on any node), and a proxied member whose sequencer is gone is
// told its room closed (shutdown): no other node holds the room.
func (l *roomLinks) watchPeers() {
	defer l.n.wg.Done()
	tick := time.NewTicker(l.n.cfg.Heartbeat)
	defer tick.Stop()
	for {
		select {
		case <-l.n.done:
			return
		case <-tick.C:
		}
		live := l.n.liveIncarnations()
		var away []*served
		var gone []*proxied
		var unheard []*outbox
		l.mu.Lock()
		for _, sv := range l.served {
			if inc, ok := live[sv.node]; sv.m != nil && (!ok || inc != sv.inc) {
				away = append(away, sv)
			}
		}
		for id, pr := range l.proxied {
			if inc, ok := live[pr.node]; pr.node != "" && (!ok || inc != pr.inc) {
				gone = append(gone, pr)
				delete(l.proxied, id)
			}
		}
		for id, c := range l.closing {
			if inc, ok := live[c.node]; !ok || inc != c.inc {
				unheard = append(unheard, c.out)
				delete(l.closing, id)
			}
		}
		l.mu.Unlock()
		for _, sv := range away {
			sv.stop()
			sv.out.stop(&l.env)
			l.t.Away(sv, []*rooms.Member{sv.m})
		}
		for _, pr := range gone {
			pr.out.stop(&l.env)
			pr.p.Ended(protocol.ReasonShutdown)
		}
		for _, o := range unheard {
			o.stop(&l.env)
		}
	}
}

// send seals msg for subject and publishes it.
func (l *roomLinks) send(subject, reply string, msg *roomMsg) {
	msg.From, msg.Inc = l.n.cfg.Node, l.n.inc
	plain, err := json.Marshal(msg)
	if err != nil {
		return
	}
	sealed := l.n.cfg.Keys.Seal(subject, plain, time.Now())
	clear(plain)
	l.n.nc.PublishMsg(&nats.Msg{Subject: subject, Reply: reply, Data: sealed})
}

// publish seals a message of roomwire.go for subject and publishes it; b stays the caller's.
func (l *roomLinks) publish(subject string, b []byte) {
	l.n.nc.Publish(subject, l.n.cfg.Keys.Seal(subject, b, time.Now()))
}

// tick confirms, every linkTick, what each link's inbox took since it last did, sends again what a link's
// outbox holds unconfirmed for too long, and gives up on ended links whose last messages were never
// confirmed (roomlink.go).
func (l *roomLinks) tick() {
	defer l.n.wg.Done()
	t := time.NewTicker(linkTick)
	defer t.Stop()
	type ackTo struct {
		in      *inbox
		id      linkID
		subject string
	}
	var acks []ackTo
	var outs []*outbox
	for {
		select {
		case <-l.n.done:
			return
		case <-t.C:
		}
		now := time.Now()
		acks, outs = acks[:0], outs[:0]
		var expired []*outbox
		l.mu.Lock()
		for id, sv := range l.served {
			acks = append(acks, ackTo{&sv.in, id, sv.sub})
			outs = append(outs, &sv.out)
		}
		for id, pr := range l.proxied {
			if pr.subject != "" {
				acks = append(acks, ackTo{&pr.in, id, pr.subject})
			}
			outs = append(outs, &pr.out)
		}
		for id, c := range l.closing {
			if now.After(c.until) {
				expired = append(expired, c.out)
				delete(l.closing, id)
			} else {
				outs = append(outs, c.out)
			}
		}
		l.mu.Unlock()
		for _, a := range acks {
			if last, ok := a.in.due(); ok {
				l.publish(a.subject, linkAck(&a.id, last, false))
			}
		}
		for _, o := range outs {
			o.tick(&l.env, now)
		}
		for _, o := range expired {
			o.stop(&l.env)
		}
		clear(acks)
		clear(outs)
	}
}

// ended keeps o, the outbox of a link that ended here after sending its last message, until the peer
// confirms it (or linkClosing, or the peer is no longer heard).
func (l *roomLinks) ended(id linkID, o *outbox, node string, inc uint64) {
	if o.idle() {
		o.stop(&l.env)
		return
	}
	l.mu.Lock()
	l.closing[id] = &closing{out: o, node: node, inc: inc, until: time.Now().Add(linkClosing)}
	l.mu.Unlock()
}

// open unseals a rooms message.
func (l *roomLinks) open(subject string, data []byte, msg *roomMsg) bool {
	plain, err := l.n.cfg.Keys.Open(subject, data, time.Now())
	if err != nil {
		l.n.refused.Add(1)
		return false
	}
	defer clear(plain)
	if json.Unmarshal(plain, msg) != nil || CheckNodeName(msg.From) != nil {
		l.n.refused.Add(1)
		return false
	}
	return true
}

func toLink(b []byte) (linkID, bool) {
	var id linkID
	return id, copy(id[:], b) == len(id) && len(b) == len(id)
}

// receive handles what comes on this node's room subject, in order.
func (l *roomLinks) receive(m *nats.Msg) {
	plain, err := l.n.cfg.Keys.Open(m.Subject, m.Data, time.Now())
	if err != nil {
		l.n.refused.Add(1)
		return
	}
	defer clear(plain)
	if len(plain) < wireHeader {
		l.n.refused.Add(1)
		return
	}
	op := plain[0]
	var id linkID
	copy(id[:], plain[1:])
	num := binary.BigEndian.Uint64(plain[wireHeader-8 : wireHeader])
	r := wireReader{b: plain[wireHeader:]}
	l.mu.Lock()
	sv, pr, cl := l.served[id], l.proxied[id], l.closing[id]
	var prSubject string
	if pr != nil {
		prSubject = pr.subject
	}
	l.mu.Unlock()
	if op == opLinkAck {
		again := len(r.b) == 1 && r.b[0]&flagAgain != 0
		switch {
		case sv != nil:
			if sv.out.ack(&l.env, num, again) {
				sv.Wake()
			}
		case pr != nil:
			pr.out.ack(&l.env, num, again)
		case cl != nil:
			cl.out.ack(&l.env, num, again)
			if cl.out.idle() {
				l.mu.Lock()
				delete(l.closing, id)
				l.mu.Unlock()
				cl.out.stop(&l.env)
			}
		default:
			l.dropped.Add(1)
		}
		return
	}
	var in *inbox
	var ackTo string
	switch {
	case pr != nil && (op == opItems || op == opEnded):
		in, ackTo = &pr.in, prSubject
	case sv != nil && (op == opFwd || op == opAck || op == opEnd):
		in, ackTo = &sv.in, sv.sub
	default:
		l.dropped.Add(1)
		return
	}
	switch in.check(num) {
	case takeOld:
		l.env.dups.Add(1) // sent again (or replayed): the tick confirms it once more
		return
	case takeGap:
		if last, ok := in.ask(time.Now()); ok && ackTo != "" {
			l.env.gaps.Add(1)
			l.publish(ackTo, linkAck(&id, last, true))
		}
		return
	}
	final := op == opEnded || op == opEnd
	switch op {
	case opItems:
		var items []rooms.Item
		var datas [][]byte
		for len(r.b) > 0 {
			it, data, err := r.nextItem()
			if err != nil {
				l.n.refused.Add(1)
				items = nil
				break
			}
			items, datas = append(items, it), append(datas, data)
		}
		l.confirm(in, num, final, ackTo, &id)
		for i := range items {
			pr.p.Deliver(items[i], datas[i])
		}
	case opEnded:
		l.confirm(in, num, final, ackTo, &id)
		l.forgetProxy(id)
		pr.out.stop(&l.env)
		pr.p.Ended(string(r.b))
	default:
		o := servedOp{op: op}
		switch op {
		case opFwd:
			o.p = ws.PayloadOf(r.b)
		case opAck:
			o.seq = r.uvarint()
		case opEnd:
			o.how = rooms.LinkEnd(r.byte1())
		}
		if r.err {
			l.n.refused.Add(1)
			l.confirm(in, num, final, ackTo, &id)
			return
		}
		select {
		case sv.ops <- o:
			l.confirm(in, num, final, ackTo, &id)
		default:
			// Not taken: the proxy sends it again (this goroutine serves every link; it does not wait for one).
			ws.PutPayload(o.p)
		}
	}
}

// confirm commits message num of in and confirms it to the sender at once when it is due.
func (l *roomLinks) confirm(in *inbox, num uint64, final bool, ackTo string, id *linkID) {
	if last, now := in.commit(num, final, ackTo != ""); now {
		l.publish(ackTo, linkAck(id, last, false))
	}
}

// find asks every other node about a room or a token and returns the answer of the node that holds it, or
// false when none does (every live peer said not here, or the time ran out).
func (l *roomLinks) find(req *roomMsg) (roomMsg, bool) {
	inbox := l.n.nc.NewRespInbox()
	answers, err := l.n.nc.SubscribeSync(inbox)
	if err != nil {
		return roomMsg{}, false
	}
	defer answers.Unsubscribe()
	want := l.n.livePeers()
	l.send(l.subFind, inbox, req)
	deadline := time.Now().Add(findTimeout)
	for len(want) > 0 {
		m, err := answers.NextMsg(time.Until(deadline))
		if err != nil {
			return roomMsg{}, false
		}
		var a roomMsg
		if !l.open(inbox, m.Data, &a) {
			continue
		}
		if a.Here {
			return a, true
		}
		delete(want, a.From)
	}
	return roomMsg{}, false
}

// answerFind answers another node's join or resume: admitted, refused, or not here.
func (l *roomLinks) answerFind(m *nats.Msg) {
	var req roomMsg
	if !l.open(m.Subject, m.Data, &req) || m.Reply == "" || req.From == l.n.cfg.Node {
		return
	}
	id, ok := toLink(req.Link)
	if !ok {
		l.n.refused.Add(1)
		return
	}
	sv := &served{l: l, node: req.From, inc: req.Inc, id: id, wake: make(chan struct{}, 1), ops: make(chan servedOp, servedQueue),
		done: make(chan struct{}), sub: l.n.cfg.Keys.Subject("room", []byte(req.From))}
	sv.out.init()
	l.mu.Lock()
	if l.served[id] != nil || l.usedLinks[id] {
		l.mu.Unlock()
		l.n.refused.Add(1) // replayed
		return
	}
	l.served[id] = sv
	l.usedLinks[id] = true
	l.mu.Unlock()
	time.AfterFunc(maxAge, func() {
		l.mu.Lock()
		delete(l.usedLinks, id)
		l.mu.Unlock()
	})
	seat := rooms.Seat{Conn: sv, Ch: 1, User: req.User}
	var j rooms.Joined
	defer j.Wipe()
	var found bool
	var perr *rooms.Error
	switch {
	case req.Op == "join" && len(req.Room) == rooms.IDLen && len(req.Cap) == rooms.SecretLen:
		var room rooms.RoomID
		var capability rooms.Secret
		copy(room[:], req.Room)
		copy(capability[:], req.Cap)
		found, perr = l.t.JoinHere(seat, &room, &capability, &j)
		clear(room[:])
		capability.Wipe()
	case req.Op == "resume" && len(req.TokenHash) == 32:
		var th [32]byte
		copy(th[:], req.TokenHash)
		found, perr = l.t.ResumeHere(seat, &th, req.Last, &j)
		clear(th[:])
	}
	clear(req.Room)
	clear(req.Cap)
	clear(req.TokenHash)
	a := roomMsg{Op: "found", Here: found}
	if found && perr != nil {
		a.Code, a.Msg = perr.Code, perr.Msg
	}
	if !found || perr != nil {
		l.forgetServed(id)
		l.send(m.Reply, "", &a)
		return
	}
	l.mu.Lock()
	sv.m = j.Member
	l.mu.Unlock()
	a.ID, a.Room, a.RoomSeq, a.In, a.Max, a.Members = j.ID, j.Room[:], j.Seq, j.In, j.Max, j.Members
	if req.Op == "join" {
		a.Token = j.Token[:]
	}
	l.send(m.Reply, "", &a)
	l.n.wg.Add(1)
	go sv.run()
}

func (l *roomLinks) forgetServed(id linkID) {
	l.mu.Lock()
	delete(l.served, id)
	l.mu.Unlock()
}

func (l *roomLinks) forgetProxy(id linkID) {
	l.mu.Lock()
	delete(l.proxied, id)
	l.mu.Unlock()
}

// Join implements rooms.Remote.
func (l *roomLinks) Join(id *rooms.RoomID, capability *rooms.Secret, user string, p rooms.Proxy, j *rooms.Joined) (rooms.Link, *rooms.Error) {
	pr := l.newProxy(p)
	a, ok := l.find(&roomMsg{Op: "join", Link: pr.id[:], Room: id[:], Cap: capability[:], User: user})
	if !ok || a.Code != "" {
		l.forgetProxy(pr.id)
		if !ok {
			return nil, rooms.Errorf(protocol.CodeDenied, "no such room, or the capability is wrong")
		}
		return nil, &rooms.Error{Code: a.Code, Msg: a.Msg}
	}
	l.admitted(pr, a.From, a.Inc)
	fillJoined(j, &a)
	copy(j.Token[:], a.Token)
	clear(a.Token)
	return pr, nil
}

// Resume implements rooms.Remote.
func (l *roomLinks) Resume(tokenHash *[32]byte, user string, last uint64, p rooms.Proxy, j *rooms.Joined) (rooms.Link, *rooms.Error) {
	pr := l.newProxy(p)
	a, ok := l.find(&roomMsg{Op: "resume", Link: pr.id[:], TokenHash: tokenHash[:], User: user, Last: last})
	if !ok || a.Code != "" {
		l.forgetProxy(pr.id)
		if !ok {
			return nil, rooms.Errorf(protocol.CodeBadToken, "unknown or expired resume token")
		}
		return nil, &rooms.Error{Code: a.Code, Msg: a.Msg}
	}
	l.admitted(pr, a.From, a.Inc)
	fillJoined(j, &a)
	return pr, nil
}

// admitted records the node that sequences pr's room.
func (l *roomLinks) admitted(pr *proxied, node string, inc uint64) {
	subject := l.n.cfg.Keys.Subject("room", []byte(node))
	l.mu.Lock()
	pr.node, pr.inc, pr.subject = node, inc, subject
	l.mu.Unlock()
}

func fillJoined(j *rooms.Joined, a *roomMsg) {
	j.ID, j.Seq, j.In, j.Max, j.Members = a.ID, a.RoomSeq, a.In, a.Max, a.Members
	copy(j.Room[:], a.Room)
	clear(a.Room)
}

func (l *roomLinks) newProxy(p rooms.Proxy) *proxied {
	pr := &proxied{l: l, p: p}
	pr.out.init()
	rand.Read(pr.id[:])
	l.mu.Lock()
	l.proxied[pr.id] = pr
	l.mu.Unlock()
	return pr
}

// proxied is a member here of a room another node sequences: the rooms.Link of its proxy.
type proxied struct {
	// Static after construction.
	l  *roomLinks
	p  rooms.Proxy
	id linkID
	// Written once, with l.mu held, when the sequencer admitted the member (before any Link call).
	node    string // the sequencer
	inc     uint64 // its incarnation
	subject string // its room subject

	out outbox // numbers and keeps what goes to the sequencer
	in  inbox  // checked by roomLinks.receive
}

// Forward implements rooms.Link. While the link's window is full (the sequencer has not confirmed what it
// was sent), it waits: the socket is read more slowly, as on one node while a room is crowded.
func (pr *proxied) Forward(data *ws.Payload) {
	pr.out.waitRoom(pr.l.n.done)
	b := make([]byte, wireHeader+data.Len())
	appendHeader(b[:0], opFwd, &pr.id)
	data.CopyTo(b[wireHeader:], 0)
	pr.out.send(pr.l, pr.subject, b)
}

// Ack implements rooms.Link.
func (pr *proxied) Ack(seq uint64) {
	pr.out.send(pr.l, pr.subject, binary.AppendUvarint(appendHeader(make([]byte, 0, wireHeader+10), opAck, &pr.id), seq))
}

// End implements rooms.Link.
func (pr *proxied) End(how rooms.LinkEnd) {
	pr.l.forgetProxy(pr.id)
	pr.out.send(pr.l, pr.subject, append(appendHeader(nil, opEnd, &pr.id), byte(how)))
	pr.l.ended(pr.id, &pr.out, pr.node, pr.inc)
}

// stats returns the rooms gauges of the node.
func (l *roomLinks) stats() (served, proxied int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.served), len(l.proxied)
}
