package cluster

import (
	"encoding/json"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/cleanrelay/cleanrelay/relay/internal/rooms"
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
	// loopQueue bounds the rooms messages of links from this node to itself (a proxy here of a room taken over
	// here), waiting for the goroutine that handles them; one that does not fit is dropped, and its link sends
	// it again, as for a message core NATS lost.
	loopQueue = 4 * linkWindow
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
	Here bool `json:"here,omitempty"`
	// Pending: not here, but this node holds a mirror copy of the room (join) or of a room with the member
	// (resume) that it has not taken over (yet): the asker cannot say "no such room" or "unknown token".
	Pending bool     `json:"pend,omitempty"`
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
	proxied   map[linkID]*plink            // guarded by mu: members here of rooms on other nodes, by their current link
	mirrors   map[rooms.RoomID]*mirrorCopy // guarded by mu: copies of rooms other nodes sequence (mirror.go)
	// copyTokens counts, by token hash, the members of the copies here: a resume's find is answered "pending"
	// for a member held only in a copy (not taken over yet). A copy leaves it only once its room is in the
	// table (takeOver). Guarded by mu.
	copyTokens map[[32]byte]int
	adopting   map[rooms.RoomID]bool      // guarded by mu: copies takeOver is making rooms of the table
	claims     map[rooms.RoomID]copyClaim // guarded by mu: copies taken over here lately (takeOver, claimsOf)

	closing map[closingKey]*closing // guarded by mu: ended links whose last message is not confirmed yet

	env     linkEnv       // the link layer's (roomlink.go)
	loop    chan []byte   // messages of links from this node to itself, for loopback to handle
	dropped atomic.Uint64 // rooms messages for no known membership

	subMirror          string        // this node's mirror subject (mirror.go)
	mirrorBytes        atomic.Int64  // bytes of frames the copies hold
	takeovers, relinks atomic.Uint64 // rooms taken over here, proxies linked to a new sequencer
	declined           atomic.Uint64 // copies not taken over here: a peer held a later one (takeOver)
	yielded            atomic.Uint64 // rooms sequenced here that the fence (or a stale answer) ended here
	busy               atomic.Uint64 // joins and resumes answered busy
	lagMicros          atomic.Int64  // the last mirror round trip
	// loseDrops, in tests only, is how many drop requests (mirror.go) to lose rather than publish.
	loseDrops atomic.Int64

	// Mirror requests of this node (mirror.go): numbered, their answers on replyPrefix and the number.
	reqMu       sync.Mutex
	reqN        uint64                    // guarded by reqMu
	waiting     map[uint64]chan *nats.Msg // guarded by reqMu
	replyPrefix string                    // static
	mirrorSeen  map[string]seenRequest    // only answerMirror (the mirror subject's goroutine) uses it

	linksMu  sync.Mutex
	links    map[*mirrorLink]struct{} // guarded by linksMu: the mirror links of rooms sequenced here
	lastLive map[string]uint64        // the live nodes at watchPeers' last look; only watchPeers uses it
}

// closingKey names an ended link's direction: a proxy's (toward the sequencer) or its served link's.
type closingKey struct {
	id    linkID
	proxy bool
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
		served: make(map[linkID]*served), proxied: make(map[linkID]*plink), usedLinks: make(map[linkID]bool),
		mirrors: make(map[rooms.RoomID]*mirrorCopy), copyTokens: make(map[[32]byte]int), adopting: make(map[rooms.RoomID]bool), claims: make(map[rooms.RoomID]copyClaim), links: make(map[*mirrorLink]struct{}), subMirror: n.cfg.Keys.Subject("mirror", []byte(n.cfg.Node)),
		closing: make(map[closingKey]*closing), loop: make(chan []byte, loopQueue)}
	l.env.publish, l.env.held = l.publish, t.Held()
	if _, err := n.nc.Subscribe(l.subOwn, l.receive); err != nil {
		return err
	}
	if _, err := n.nc.Subscribe(l.subMirror, l.answerMirror); err != nil {
		return err
	}
	l.replyPrefix, l.waiting, l.mirrorSeen = n.nc.NewInbox()+".", make(map[uint64]chan *nats.Msg), make(map[string]seenRequest)
	if _, err := n.nc.Subscribe(l.replyPrefix+"*", l.mirrorAnswer); err != nil {
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
	t.SetMirrors(l)
	n.wg.Add(3)
	go n.every(n.cfg.Heartbeat, l.watchPeers)
	go l.tick()
	go l.loopback()
	return nil
}

// liveIncarnations are the incarnations of the nodes heard within PeerTimeout.
func (n *Node) liveIncarnations() map[string]uint64 {
	return n.incarnationsWithin(n.cfg.PeerTimeout)
}

// incarnationsWithin are the incarnations of the nodes heard within d of this node's running time (pause.go).
func (n *Node) incarnationsWithin(d time.Duration) map[string]uint64 {
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	out := map[string]uint64{}
	for name, o := range n.origins {
		if n.silenceLocked(o, now) < d {
			out[name] = o.inc
		}
	}
	return out
}

// takeoverTimeouts is how many peer timeouts a node is unheard before its mirrors take its rooms over. The other
// effects of an unheard node (its members away here, proxies looking for their rooms, mirrors moving) come
// after one: they are undone when it is heard again. A takeover is not: a node only slow to be heard (a loaded
// machine misses heartbeats for a second) would have its rooms sequenced twice until the fence ends them on
// one side, and members' sockets with them. The price is that much longer before a dead node's rooms resume.
const takeoverTimeouts = 2

// watchPeers, called every heartbeat, ends the links to nodes no longer heard (or heard again as a new
// incarnation, which holds none of them): a served member whose node is gone is away (its grace runs here, and
// it may resume on any node), a proxied member whose sequencer is gone is linked to the room's new sequencer
// (relink), and the rooms this node mirrors for a node that is gone are taken over (mirror.go).
func (l *roomLinks) watchPeers() {
	live := l.n.liveIncarnations()
	self := l.n.cfg.Node
	var away []*served
	var gone []*plink
	var unheard []*outbox
	l.mu.Lock()
	for _, sv := range l.served {
		if inc, ok := live[sv.node]; sv.m != nil && sv.node != self && (!ok || inc != sv.inc) {
			away = append(away, sv)
		}
	}
	for id, pl := range l.proxied {
		if inc, ok := live[pl.node]; pl.node != "" && pl.node != self && (!ok || inc != pl.inc) {
			gone = append(gone, pl)
			delete(l.proxied, id)
		}
	}
	for id, c := range l.closing {
		if inc, ok := live[c.node]; c.node != self && (!ok || inc != c.inc) {
			unheard = append(unheard, c.out)
			delete(l.closing, id)
		}
	}
	l.mu.Unlock()
	for _, sv := range away {
		sv.stop()
		sv.out.stop(&l.env)
		l.t.Away(sv, []*rooms.Member{sv.m})
		l.tellNoLink(sv.sub, &sv.id, true) // in case its node still hears this one (nolink.go)
	}
	for _, o := range unheard {
		o.stop(&l.env)
	}
	if l.n.cutOff() {
		l.fence()
	}
	if l.n.steady() {
		// A node off NATS, or not yet hearing its peers again, takes nothing over.
		l.takeOver(l.n.incarnationsWithin(takeoverTimeouts * l.n.cfg.PeerTimeout))
	}
	l.wakeMirrorLinks(live)
	for _, pl := range gone {
		l.unlinked(pl)
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

// publish seals a message of roomwire.go for subject and publishes it; b stays the caller's. A message for
// this node itself (a link of a proxy here to a room taken over here) goes to loopback: NATS does not echo,
// and handling it at once could come back to the sending link's lock.
func (l *roomLinks) publish(subject string, b []byte) {
	if subject == l.subOwn {
		select {
		case l.loop <- append([]byte(nil), b...):
		default: // the link sends it again
		}
		return
	}
	// The reply subject is this node's room subject: where a node that holds no such link answers (nolink.go).
	l.n.nc.PublishMsg(&nats.Msg{Subject: subject, Reply: l.subOwn, Data: l.n.cfg.Keys.Seal(subject, b, time.Now())})
}

// loopback handles the messages of links from this node to itself, in order.
func (l *roomLinks) loopback() {
	defer l.n.wg.Done()
	for {
		select {
		case <-l.n.done:
			return
		case b := <-l.loop:
			l.handle(b, l.subOwn)
			clear(b)
		}
	}
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
		toProxy bool
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
			acks = append(acks, ackTo{&sv.in, id, sv.sub, true})
			outs = append(outs, &sv.out)
		}
		for id, pl := range l.proxied {
			if pl.subject != "" {
				acks = append(acks, ackTo{&pl.in, id, pl.subject, false})
			}
			outs = append(outs, &pl.out)
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
			if last, ok := a.in.due(now); ok {
				l.publish(a.subject, linkAck(&a.id, last, false, a.toProxy))
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
func (l *roomLinks) ended(id linkID, proxy bool, o *outbox, node string, inc uint64) {
	if o.idle() {
		o.stop(&l.env)
		return
	}
	l.mu.Lock()
	l.closing[closingKey{id, proxy}] = &closing{out: o, node: node, inc: inc, until: time.Now().Add(linkClosing)}
	l.mu.Unlock()
}

// open unseals a JSON message of the rooms (a find or its answer: roomMsg; a mirror request or its answer:
// mirrorMsg) into msg, whose sender's name, from, must be a node name.
func (l *roomLinks) open(subject string, data []byte, msg any, from *string) bool {
	plain, err := l.n.cfg.Keys.Open(subject, data, time.Now())
	if err != nil {
		l.n.refused.Add(1)
		return false
	}
	defer clear(plain)
	if json.Unmarshal(plain, msg) != nil || CheckNodeName(*from) != nil {
		l.n.refused.Add(1)
		return false
	}
	return true
}

func toLink(b []byte) (linkID, bool) {
	var id linkID
	return id, copy(id[:], b) == len(id) && len(b) == len(id)
}

// stats returns the rooms gauges of the node.
func (l *roomLinks) stats() (served, proxied int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.served), len(l.proxied)
}
