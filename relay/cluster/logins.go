package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/cleanrelay/cleanrelay/keydir"
)

// Login failures across nodes (docs/cluster.md §5). One node arbitrates each username: of the nodes this one
// counts live (itself included), the one whose keyed hash of (name, node) is highest. A login on any node asks
// the arbiter to admit the attempt before comparing the password and tells it the outcome after, both as sealed
// request and answer on the arbiter's login subject; the arbiter runs its own failure table (the one a single
// relay runs, with its bound), so attempts in flight on every node count, and a guesser spread over the nodes
// gets exactly the attempts one node would give. After each outcome the arbiter tells every node the name's
// record (count and time of the last failure), so that a node that becomes the arbiter (the old one died, or
// the nodes live changed) goes on from it. A node that cannot reach the arbiter decides on its own copy.

// loginLease is how long an arbiter waits for the outcome of an attempt it admitted for another node; past it
// the attempt counts as failed (the node died while comparing: a login waits at most keydir's MaxHashWait for bcrypt, 2 s by default).
const loginLease = 15 * time.Second

// maxRemoteAttempts bounds the attempts of other nodes an arbiter holds in flight; beyond it, it answers as
// a full failure table does (the attempt is not tracked).
const maxRemoteAttempts = 10000

// The accounts' rate buckets (searches, key lookups, dialogs) are shared the same way: one node, chosen by the
// same keyed hash of the account's id, holds an account's buckets; the others ask it to take an action ("take")
// and decide on their own buckets only when it does not answer. Buckets are not copied: a new arbiter starts
// the account with full buckets.

// loginTable is the failure table of keydir.Directory, which the cluster shares when the directory has one.
type loginTable interface {
	SetLoginGate(keydir.LoginGate)
	StartAttempt(name string) (func(checked, ok bool), error)
	FailureRecord(name string) (int, time.Time)
	SetFailureRecord(name string, count int, last time.Time)
	SetRateGate(keydir.RateGate)
	TakeAction(userID string, act keydir.Action) error
}

// loginMsg is a login request to an arbiter, its answer, or a record told to every node.
type loginMsg struct {
	Op      string `json:"o"`           // "start", "end" (to the arbiter), "rec" (to every node)
	Name    string `json:"u"`           // the normalized username (sealed like every payload)
	ID      uint64 `json:"a,omitempty"` // the attempt, as the arbiter numbered it (answer to start; end)
	Checked bool   `json:"k,omitempty"` // end: the password was compared
	OK      bool   `json:"y,omitempty"` // end: it matched; answer to start: admitted
	Retry   int64  `json:"r,omitempty"` // answer to start: refused, retry after this many milliseconds
	Count   int    `json:"c,omitempty"` // rec: failures
	Last    int64  `json:"t,omitempty"` // rec: the last failure, Unix milliseconds
	Act     int    `json:"x,omitempty"` // take: the keydir.Action (Name is the account's id)
	Err     string `json:"e,omitempty"` // answer to take: "limited" (with the message in Why) or "unknown"
	Why     string `json:"w,omitempty"`
}

// logins is the node's part in the shared login backoff.
type logins struct {
	n      *Node
	table  loginTable
	subRec string // every node's records
	mu     sync.Mutex
	next   uint64                    // guarded by mu: numbers the attempts admitted for other nodes
	remote map[uint64]*remoteAttempt // guarded by mu
}

// remoteAttempt is an attempt this node admitted as arbiter for another node.
type remoteAttempt struct {
	end   func(checked, ok bool)
	name  string
	lease *time.Timer
}

// serveLogins makes the node the directory's login gate, when the directory has a failure table.
func (n *Node) serveLogins() error {
	t, ok := n.dir.(loginTable)
	if !ok {
		return nil
	}
	g := &logins{n: n, table: t, subRec: n.cfg.Keys.Subject("loginrec", nil), remote: make(map[uint64]*remoteAttempt)}
	if _, err := n.nc.Subscribe(n.cfg.Keys.Subject("login", []byte(n.cfg.Node)), g.answer); err != nil {
		return err
	}
	if _, err := n.nc.Subscribe(g.subRec, g.record); err != nil {
		return err
	}
	n.logins = g
	t.SetLoginGate(g)
	t.SetRateGate(g)
	return nil
}

// arbiter names the node that arbitrates name among the live nodes.
func (g *logins) arbiter(name string) string {
	best, bestScore := g.n.cfg.Node, g.score(name, g.n.cfg.Node)
	for node := range g.n.livePeers() {
		if s := g.score(name, node); s > bestScore {
			best, bestScore = node, s
		}
	}
	return best
}

// TakeAction is keydir.RateGate: the account's arbiter (by its id) takes the action from its bucket.
func (g *logins) TakeAction(userID string, act keydir.Action) error {
	key := "id\x00" + userID
	if arb := g.arbiter(key); arb != g.n.cfg.Node {
		a, err := g.ask(arb, &loginMsg{Op: "take", Name: key, Act: int(act)})
		if err == nil {
			switch a.Err {
			case "":
				return nil
			case "limited":
				return fmt.Errorf("%w: %s", keydir.ErrRateLimited, a.Why)
			case "unknown":
				return keydir.ErrNotFound
			}
		}
		g.n.log.Warn("cluster: an account's rate arbiter did not answer; deciding here")
	}
	return g.table.TakeAction(userID, act)
}

func (g *logins) score(name, node string) string {
	return g.n.cfg.Keys.Subject("arbiter", []byte(name+"\x00"+node))
}

// StartAttempt is keydir.LoginGate: it asks the name's arbiter, or decides here when this node is the arbiter
// or the arbiter does not answer in time.
func (g *logins) StartAttempt(name string) (func(checked, ok bool), error) {
	arb := g.arbiter(name)
	if arb != g.n.cfg.Node {
		a, err := g.ask(arb, &loginMsg{Op: "start", Name: name})
		if err == nil {
			switch {
			case a.Retry > 0:
				return nil, &keydir.BackoffError{RetryAfter: time.Duration(a.Retry) * time.Millisecond}
			case !a.OK:
				return nil, nil // the arbiter's table is full of live records
			}
			id := a.ID
			return func(checked, ok bool) {
				if a, err := g.ask(arb, &loginMsg{Op: "end", Name: name, ID: id, Checked: checked, OK: ok}); err != nil || a.Err != "" {
					// The arbiter is gone (its successor takes this node's copy), or it restarted and does not
					// know the attempt (it takes the record this node tells).
					g.local(name, checked, ok)
				}
			}, nil
		}
		g.n.log.Warn("cluster: a login's arbiter did not answer; deciding here")
	}
	end, err := g.table.StartAttempt(name)
	if end == nil {
		return nil, err
	}
	return g.telling(name, end), nil
}

// telling wraps the end of an attempt decided here: after it, every node is told the name's record (unless
// there was none before and is none after: a login with no failures behind it).
func (g *logins) telling(name string, end func(checked, ok bool)) func(checked, ok bool) {
	return func(checked, ok bool) {
		before, _ := g.table.FailureRecord(name)
		end(checked, ok)
		g.tell(name, before)
	}
}

// local records an outcome on this node's copy when the arbiter that admitted the attempt is gone.
func (g *logins) local(name string, checked, ok bool) {
	before, _ := g.table.FailureRecord(name)
	switch {
	case ok:
		g.table.SetFailureRecord(name, 0, time.Time{})
	case checked:
		g.table.SetFailureRecord(name, before+1, time.Now())
	}
	g.tell(name, before)
}

// tell sends every node this node's record of name, unless it had none before and has none now.
func (g *logins) tell(name string, before int) {
	c, last := g.table.FailureRecord(name)
	if c == 0 && before == 0 {
		return
	}
	m := loginMsg{Op: "rec", Name: name, Count: c}
	if c > 0 {
		m.Last = last.UnixMilli()
	}
	if err := g.n.send(g.subRec, "", &envelope{From: g.n.cfg.Node, Inc: g.n.inc, Login: &m}); err != nil {
		g.n.log.Warn("cluster: failed to tell a login record", "err", err)
	}
}

// ask sends m to node's login subject and returns its answer.
func (g *logins) ask(node string, m *loginMsg) (loginMsg, error) {
	if !g.n.nc.IsConnected() {
		return loginMsg{}, nats.ErrConnectionClosed
	}
	subject := g.n.cfg.Keys.Subject("login", []byte(node))
	env := envelope{From: g.n.cfg.Node, Inc: g.n.inc, Login: m}
	plain, err := json.Marshal(&env)
	if err != nil {
		return loginMsg{}, err
	}
	sealed := g.n.cfg.Keys.Seal(subject, plain, time.Now())
	clear(plain)
	resp, err := g.n.nc.Request(subject, sealed, g.n.cfg.AckTimeout)
	if err != nil {
		return loginMsg{}, err
	}
	var a envelope
	if err := g.n.open(resp.Subject, resp.Data, &a); err != nil {
		return loginMsg{}, err
	}
	if a.Login == nil || a.From != node {
		return loginMsg{}, errors.New("not a login answer")
	}
	return *a.Login, nil
}

// answer serves another node's request as the arbiter of its name.
func (g *logins) answer(m *nats.Msg) {
	var req envelope
	if m.Reply == "" || g.n.open(m.Subject, m.Data, &req) != nil || req.Login == nil || req.Login.Name == "" {
		return
	}
	r := req.Login
	var out loginMsg
	switch r.Op {
	case "start":
		out = g.admit(r.Name)
	case "take":
		userID, ok := strings.CutPrefix(r.Name, "id\x00")
		if !ok {
			return
		}
		out = loginMsg{Op: "take"}
		switch err := g.table.TakeAction(userID, keydir.Action(r.Act)); {
		case errors.Is(err, keydir.ErrRateLimited):
			out.Err, out.Why = "limited", strings.TrimPrefix(err.Error(), keydir.ErrRateLimited.Error()+": ")
		case err != nil:
			out.Err = "unknown"
		}
	case "end":
		g.mu.Lock()
		a := g.remote[r.ID]
		if a != nil && a.name == r.Name {
			delete(g.remote, r.ID)
			a.lease.Stop()
		} else {
			a = nil // ended already (by its lease), or a replay
		}
		g.mu.Unlock()
		out = loginMsg{Op: "end", OK: true}
		if a != nil {
			a.end(r.Checked, r.OK)
		} else {
			out.Err = "unknown"
		}
	default:
		return
	}
	g.n.send(m.Reply, "", &envelope{From: g.n.cfg.Node, Inc: g.n.inc, Login: &out})
}

// admit starts an attempt for another node in this node's table.
func (g *logins) admit(name string) loginMsg {
	g.mu.Lock()
	full := len(g.remote) >= maxRemoteAttempts
	g.mu.Unlock()
	if full {
		return loginMsg{Op: "start"}
	}
	end, err := g.table.StartAttempt(name)
	var be *keydir.BackoffError
	switch {
	case errors.As(err, &be):
		return loginMsg{Op: "start", Retry: max(be.RetryAfter.Milliseconds(), 1)}
	case err != nil, end == nil:
		return loginMsg{Op: "start"}
	}
	a := &remoteAttempt{end: g.telling(name, end), name: name}
	g.mu.Lock()
	g.next++
	id := g.next
	g.remote[id] = a
	a.lease = time.AfterFunc(loginLease, func() {
		g.mu.Lock()
		mine := g.remote[id] == a
		delete(g.remote, id)
		g.mu.Unlock()
		if mine {
			a.end(true, false)
		}
	})
	g.mu.Unlock()
	return loginMsg{Op: "start", OK: true, ID: id}
}

// record takes another node's record of a name into this node's copy.
func (g *logins) record(m *nats.Msg) {
	var env envelope
	if g.n.open(m.Subject, m.Data, &env) != nil || env.From == g.n.cfg.Node || env.Login == nil || env.Login.Op != "rec" || env.Login.Name == "" {
		return
	}
	r := env.Login
	g.table.SetFailureRecord(r.Name, r.Count, time.UnixMilli(r.Last))
}

// stop ends the leases of attempts held for other nodes (the node leaves the cluster).
func (g *logins) stop() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for id, a := range g.remote {
		a.lease.Stop()
		delete(g.remote, id)
	}
}
