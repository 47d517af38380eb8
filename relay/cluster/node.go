// Package cluster joins a relay node to its cluster over NATS core: it replicates the node's key directory
// (accounts, keys, revocations, disables, logouts) to every other node and catches up from them, with subjects
// and payloads sealed under keys derived from the cluster secret (docs/cluster.md).
package cluster

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/cleanrelay/cleanrelay/keydir"
)

// Directory is what the cluster replicates: keydir.Directory.
type Directory interface {
	OnChange(func(keydir.Change))
	Apply(keydir.Change) (keydir.Applied, error)
	Snapshot() []keydir.Change
}

// noDirectory stands for a relay without accounts: nothing to replicate.
type noDirectory struct{}

func (noDirectory) OnChange(func(keydir.Change))                {}
func (noDirectory) Apply(keydir.Change) (keydir.Applied, error) { return keydir.Applied{}, nil }
func (noDirectory) Snapshot() []keydir.Change                   { return nil }

// Sessions reaches the WebSockets of a login or a user on this node: relay.Server.
type Sessions interface {
	EndSession(user, session string)
	Revoke(user string)
	NotifyRemoteDialog(user, room, capability, from string)
}

// Config describes a node. URLs, Node, Keys and NkeySeed are required; the rest have defaults.
type Config struct {
	// URLs are the NATS servers' client addresses (nats://host:port), tried in order.
	URLs []string
	// Node is this node's name, unique in the cluster: 1 to 32 of a-z, 0-9 and '-'.
	Node string
	// Keys are derived from the cluster secret (DeriveKeys).
	Keys *Keys
	// NkeySeed is the nkey seed ("SU…") the NATS servers know the nodes by. Overwritten by Start.
	NkeySeed []byte
	// Heartbeat is how often the node tells the others it lives and how far it has numbered its changes.
	// Default 250ms.
	Heartbeat time.Duration
	// PeerTimeout: a node unheard for this long is no longer a peer. Default 1s.
	PeerTimeout time.Duration
	// AckTimeout bounds how long a change made here waits for every peer to confirm it applied it. Default 1s.
	AckTimeout time.Duration
	// CatchUp bounds how long Start waits to hear the peers and take their snapshots. Default 5s.
	CatchUp time.Duration
	// SweepAgain is when a logout applied from another node ends the login's sockets a second time (a
	// handshake in flight during the first sweep). Default 6s.
	SweepAgain time.Duration
}

// WithDefaults returns c with every zero duration set to its default (the flags of serve show them).
func (c Config) WithDefaults() Config {
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.Heartbeat, 250*time.Millisecond)
	def(&c.PeerTimeout, time.Second)
	def(&c.AckTimeout, time.Second)
	def(&c.CatchUp, 5*time.Second)
	def(&c.SweepAgain, 6*time.Second)
	return c
}

func (c *Config) defaults() error {
	*c = c.WithDefaults()
	switch {
	case c.Heartbeat < 0 || c.PeerTimeout < 0 || c.AckTimeout < 0 || c.CatchUp < 0 || c.SweepAgain < 0:
		return errors.New("a negative cluster duration")
	case c.PeerTimeout < 2*c.Heartbeat:
		return fmt.Errorf("peer timeout %v is under two heartbeats (%v)", c.PeerTimeout, c.Heartbeat)
	case len(c.URLs) == 0:
		return errors.New("no NATS server given")
	case c.Keys == nil:
		return errors.New("no cluster keys")
	}
	return CheckNodeName(c.Node)
}

// CheckNodeName accepts 1 to 32 characters of a-z, 0-9 and '-'.
func CheckNodeName(name string) error {
	if len(name) == 0 || len(name) > 32 || strings.Trim(name, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
		return fmt.Errorf("node name %q: 1 to 32 characters of a-z, 0-9 and '-'", name)
	}
	return nil
}

// envelope is every message between nodes, sealed for the subject (or inbox) it travels on.
type envelope struct {
	From   string          `json:"f"`
	Inc    uint64          `json:"i"`           // the sender's incarnation: random at each start
	Seq    uint64          `json:"s"`           // the sender's last change number (heartbeat, snapshot) or this one's
	Change *keydir.Change  `json:"c,omitempty"` // a change
	Chunk  []keydir.Change `json:"cs,omitempty"`
	Part   int             `json:"p,omitempty"` // snapshot: this chunk, from 1, of Parts
	Parts  int             `json:"n,omitempty"`
	Sent   int64           `json:"t,omitempty"` // a change: when it was made, Unix milliseconds
	Dialog *dialogNotice   `json:"d,omitempty"`
	Login  *loginMsg       `json:"l,omitempty"`  // logins.go
	Burn   *burnMsg        `json:"b,omitempty"`  // dialog.go
	Chal   *chalMsg        `json:"ch,omitempty"` // challenges.go
}

// origin is what the node knows of another node's numbering. Guarded by Node.mu.
type origin struct {
	inc      uint64
	seq      uint64 // changes up to this number are applied
	synced   bool   // a snapshot from this incarnation was applied
	syncing  bool
	lastSeen time.Time
	pausedAt time.Duration // the node's own pauses up to lastSeen (pause.go)
}

// Node is a running cluster member.
type Node struct {
	// Static after Start.
	cfg                               Config
	dir                               Directory
	sessions                          Sessions
	log                               *slog.Logger
	nc                                *nats.Conn
	inc                               uint64
	subDir, subHB, subSnap, subDialog string
	subBurn                           string
	in                                chan *nats.Msg
	done                              chan struct{}
	wg                                sync.WaitGroup

	pubMu sync.Mutex // orders change numbers with their publication, and heartbeats after both
	seq   uint64     // guarded by pubMu

	mu      sync.Mutex
	origins map[string]*origin // guarded by mu
	caught  bool               // guarded by mu: the first catch-up is over

	sent, applied, refused, resyncs atomic.Uint64
	lagMillis                       atomic.Int64

	rooms  atomic.Pointer[roomLinks]                         // set by ServeRooms (rooms.go)
	logins *logins                                           // static after Start; nil when the directory has no failure table (logins.go)
	onBurn atomic.Pointer[func(h [32]byte, until time.Time)] // set by OnTicketBurned (dialog.go)

	// deafTo, in tests only, names a node whose heartbeats this node ignores (as a node too loaded to take
	// them in time would): this node stops counting it live while it still hears this one.
	deafTo atomic.Pointer[string]

	// offAt is when the node lost its NATS server (Unix nanoseconds; 0 while connected), onAt when it last
	// connected: the fence (fence.go).
	offAt, onAt atomic.Int64

	pauses pauses // how long the node was itself not running (pause.go)
}

// Start connects to NATS with the nkey, subscribes, hooks dir's changes, and waits (up to Config.CatchUp) until
// it has heard the peers and applied a snapshot from each. dir may be nil (a relay without accounts). It fails
// when no NATS server accepts the node.
func Start(ctx context.Context, cfg Config, dir Directory, sessions Sessions, log *slog.Logger) (*Node, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if dir == nil {
		dir = noDirectory{}
	}
	kp, err := nkeys.FromSeed(cfg.NkeySeed)
	clear(cfg.NkeySeed)
	if err != nil {
		return nil, fmt.Errorf("the NATS nkey seed is not a valid user seed: %w", err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("the NATS nkey seed: %w", err)
	}
	var b [8]byte
	rand.Read(b[:])
	n := &Node{cfg: cfg, dir: dir, sessions: sessions, log: log, inc: binary.BigEndian.Uint64(b[:]),
		subDir: cfg.Keys.Subject("dir", nil), subHB: cfg.Keys.Subject("hb", nil),
		subSnap: cfg.Keys.Subject("snap", []byte(cfg.Node)), subDialog: cfg.Keys.Subject("dialog", nil),
		subBurn: cfg.Keys.Subject("burn", nil),
		in:      make(chan *nats.Msg, 8192),
		done:    make(chan struct{}), origins: make(map[string]*origin)}
	n.nc, err = nats.Connect(strings.Join(cfg.URLs, ","),
		nats.Nkey(pub, kp.Sign), nats.NoEcho(), nats.DontRandomize(), nats.IgnoreDiscoveredServers(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond),
		nats.Timeout(5*time.Second), nats.RetryOnFailedConnect(false),
		nats.DisconnectErrHandler(func(*nats.Conn, error) {
			n.offAt.CompareAndSwap(0, time.Now().UnixNano())
			log.Warn("cluster: lost the NATS server; reconnecting")
		}),
		nats.ReconnectHandler(func(*nats.Conn) {
			n.onAt.Store(time.Now().UnixNano())
			n.offAt.Store(0)
			// Core NATS may have dropped messages meanwhile: take every peer's snapshot again.
			log.Info("cluster: reconnected to NATS")
			n.forgetOrigins()
		}))
	if err != nil {
		return nil, fmt.Errorf("failed to connect to NATS: %w", err)
	}
	n.onAt.Store(time.Now().UnixNano())
	for _, s := range []string{n.subDir, n.subHB, n.subDialog, n.subBurn} {
		if _, err := n.nc.ChanSubscribe(s, n.in); err != nil {
			n.nc.Close()
			return nil, fmt.Errorf("failed to subscribe: %w", err)
		}
	}
	if _, err := n.nc.Subscribe(n.subSnap, n.answerSnapshot); err != nil {
		n.nc.Close()
		return nil, fmt.Errorf("failed to subscribe: %w", err)
	}
	if err := n.nc.Flush(); err != nil {
		n.nc.Close()
		return nil, fmt.Errorf("failed to reach NATS: %w", err)
	}
	if err := errors.Join(n.serveLogins(), n.serveChallenges()); err != nil {
		n.nc.Close()
		return nil, fmt.Errorf("failed to subscribe: %w", err)
	}
	dir.OnChange(n.publish)
	n.pauses.start(time.Now())
	n.wg.Add(3)
	go n.every(pauseTick, n.pauses.tickNow)
	go n.receive()
	go n.every(n.cfg.Heartbeat, n.heartbeat)
	n.catchUp(ctx)
	return n, nil
}

// catchUp waits for the peers' heartbeats (three periods) and then for their snapshots, within Config.CatchUp.
func (n *Node) catchUp(ctx context.Context) {
	start := time.Now()
	deadline := start.Add(n.cfg.CatchUp)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if time.Since(start) >= 3*n.cfg.Heartbeat && n.allSynced() {
			break
		}
		time.Sleep(n.cfg.Heartbeat / 5)
	}
	n.mu.Lock()
	n.caught = true
	peers := len(n.origins)
	n.mu.Unlock()
	n.log.Info("cluster: joined", "node", n.cfg.Node, "peers", peers, "synced", n.allSynced(), "took", time.Since(start).Round(time.Millisecond))
}

func (n *Node) allSynced() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, o := range n.origins {
		if !o.synced {
			return false
		}
	}
	return true
}

func (n *Node) forgetOrigins() {
	n.mu.Lock()
	for _, o := range n.origins {
		if !o.syncing {
			o.synced = false
		}
	}
	n.mu.Unlock()
}

// Close leaves the cluster: no more changes go out or come in.
func (n *Node) Close() {
	select {
	case <-n.done:
		return
	default:
	}
	close(n.done)
	n.nc.Close()
	if n.logins != nil {
		n.logins.stop()
	}
	n.wg.Wait()
}

// publish numbers a change made here, sends it to every node, and waits (up to AckTimeout) until every peer
// has confirmed it: so when a revocation or a logout returns, every live node enforces it.
func (n *Node) publish(c keydir.Change) {
	inbox := n.nc.NewRespInbox()
	acks, err := n.nc.SubscribeSync(inbox)
	if err != nil {
		n.log.Warn("cluster: failed to publish a change", "err", err)
		return
	}
	defer acks.Unsubscribe()
	want := n.livePeers()
	n.pubMu.Lock()
	n.seq++
	env := envelope{From: n.cfg.Node, Inc: n.inc, Seq: n.seq, Change: &c, Sent: time.Now().UnixMilli()}
	err = n.send(n.subDir, inbox, &env)
	n.pubMu.Unlock()
	if err != nil {
		n.log.Warn("cluster: failed to publish a change", "err", err)
		return
	}
	n.sent.Add(1)
	deadline := time.Now().Add(n.cfg.AckTimeout)
	for len(want) > 0 {
		m, err := acks.NextMsg(time.Until(deadline))
		if err != nil {
			n.log.Warn("cluster: peers did not confirm a change in time", "missing", len(want))
			return
		}
		var ack envelope
		if n.open(inbox, m.Data, &ack) == nil {
			delete(want, ack.From)
		}
	}
}

// send seals env for subject and publishes it (with a reply inbox, if given).
func (n *Node) send(subject, reply string, env *envelope) error {
	plain, err := json.Marshal(env)
	if err != nil {
		return err
	}
	sealed := n.cfg.Keys.Seal(subject, plain, time.Now())
	clear(plain)
	return n.nc.PublishMsg(&nats.Msg{Subject: subject, Reply: reply, Data: sealed})
}

// open unseals a message sent on subject into env.
func (n *Node) open(subject string, data []byte, env *envelope) error {
	plain, err := n.cfg.Keys.Open(subject, data, time.Now())
	if err != nil {
		n.refused.Add(1)
		return err
	}
	defer clear(plain)
	if err := json.Unmarshal(plain, env); err != nil || CheckNodeName(env.From) != nil {
		n.refused.Add(1)
		return fmt.Errorf("%w: malformed", ErrSealed)
	}
	return nil
}

// livePeers are the nodes heard within PeerTimeout.
func (n *Node) livePeers() map[string]bool {
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	out := map[string]bool{}
	for name, o := range n.origins {
		if n.silenceLocked(o, now) < n.cfg.PeerTimeout {
			out[name] = true
		}
	}
	return out
}

// every calls f every d until the node closes. It is one of the node's goroutines (wg).
func (n *Node) every(d time.Duration, f func()) {
	defer n.wg.Done()
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-n.done:
			return
		case <-t.C:
			f()
		}
	}
}

// heartbeat tells the others, every Heartbeat, that this node lives and how far it has numbered its changes.
func (n *Node) heartbeat() {
	n.pubMu.Lock()
	n.send(n.subHB, "", &envelope{From: n.cfg.Node, Inc: n.inc, Seq: n.seq})
	n.pubMu.Unlock()
}

// receive handles changes and heartbeats in the order they arrive.
func (n *Node) receive() {
	defer n.wg.Done()
	for {
		select {
		case <-n.done:
			return
		case m := <-n.in:
			var env envelope
			if n.open(m.Subject, m.Data, &env) != nil || env.From == n.cfg.Node {
				continue
			}
			if m.Subject == n.subHB {
				if d := n.deafTo.Load(); d == nil || *d != env.From {
					n.heard(&env)
				}
				continue
			}
			if m.Subject == n.subDialog {
				if d := env.Dialog; d != nil {
					n.sessions.NotifyRemoteDialog(d.User, d.Room, d.Cap, d.From)
				}
				continue
			}
			if m.Subject == n.subBurn {
				if b, fn := env.Burn, n.onBurn.Load(); b != nil && len(b.Hash) == 32 && fn != nil {
					(*fn)([32]byte(b.Hash), time.UnixMilli(b.Until))
				}
				continue
			}
			if env.Change == nil || n.duplicate(&env) {
				n.refused.Add(1)
				continue
			}
			n.apply(*env.Change)
			n.lagMillis.Store(time.Now().UnixMilli() - env.Sent)
			n.advance(&env)
			if m.Reply != "" {
				n.send(m.Reply, "", &envelope{From: n.cfg.Node})
			}
		}
	}
}

// duplicate reports a change already applied: a number this node has passed for the sender's incarnation (a
// replay by someone who can publish on NATS but lacks the secret).
func (n *Node) duplicate(env *envelope) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	o := n.origins[env.From]
	return o != nil && o.inc == env.Inc && o.synced && env.Seq <= o.seq
}

// apply applies one change from another node and ends what it withdrew.
func (n *Node) apply(c keydir.Change) {
	res, err := n.dir.Apply(c)
	if err != nil {
		n.refused.Add(1)
		n.log.Warn("cluster: refused a change from another node", "err", err)
		return
	}
	if res.Changed {
		n.applied.Add(1)
	}
	if res.Dropped != "" {
		n.sessions.Revoke(res.Dropped)
	}
	if l := c.Logout; l != nil && res.Changed && l.Username != "" {
		n.sessions.EndSession(l.Username, l.TokenID)
		time.AfterFunc(n.cfg.SweepAgain, func() { n.sessions.EndSession(l.Username, l.TokenID) })
	}
}

// advance records a change's number; a gap means core NATS lost one, and the origin's snapshot fills it.
func (n *Node) advance(env *envelope) {
	n.mu.Lock()
	o := n.originLocked(env)
	gap := o.synced && !o.syncing && env.Seq > o.seq+1
	o.seq = max(o.seq, env.Seq)
	n.mu.Unlock()
	if gap {
		n.resync(env.From)
	}
}

// heard records a heartbeat: a new node (or a new incarnation) is synced with, and one whose numbering is
// ahead of what was applied (its last change was lost) is synced with again.
func (n *Node) heard(env *envelope) {
	n.mu.Lock()
	o := n.originLocked(env)
	need := !o.syncing && (!o.synced || env.Seq > o.seq)
	n.mu.Unlock()
	if need {
		n.resync(env.From)
	}
}

// originLocked returns the record of env's sender, starting afresh for a new incarnation. n.mu is held.
func (n *Node) originLocked(env *envelope) *origin {
	o := n.origins[env.From]
	if o == nil || o.inc != env.Inc {
		o = &origin{inc: env.Inc}
		n.origins[env.From] = o
	}
	o.lastSeen = time.Now()
	o.pausedAt = n.pauses.upTo(o.lastSeen)
	return o
}

// Healthy is nil while the node is connected to a NATS server and has caught up with its peers.
func (n *Node) Healthy() error {
	if !n.nc.IsConnected() {
		return errors.New("not connected to any NATS server")
	}
	n.mu.Lock()
	caught := n.caught
	n.mu.Unlock()
	if !caught {
		return errors.New("catching up with the cluster")
	}
	return nil
}
