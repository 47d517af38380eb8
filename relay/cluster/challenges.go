package cluster

import (
	"encoding/json"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/cleanrelay/cleanrelay/keydir"
)

// Proof-of-possession challenges across nodes (docs/cluster.md §5). A challenge stays on the node that issued
// it. A proof that reaches another node asks every node for it (a sealed request on the challenge subject);
// the node that holds it gives it up, under its directory's lock, and only that one answers, so a challenge is
// used once in the whole cluster even when two nodes are asked for it at once.

// challengeTable is what keydir.Directory offers for it.
type challengeTable interface {
	SetChallengeGate(keydir.ChallengeGate)
	TakeChallenge(text, userID string, p keydir.Purpose) (time.Time, bool)
}

// chalMsg asks for a challenge (Text, User, Purpose) or answers with its expiry (Until).
type chalMsg struct {
	Text    string `json:"x,omitempty"`
	User    string `json:"u,omitempty"`
	Purpose string `json:"p,omitempty"`
	Until   int64  `json:"t,omitempty"` // Unix milliseconds
}

// challenges is the node's part in the challenges of the cluster.
type challenges struct {
	n     *Node
	table challengeTable
	sub   string
}

// serveChallenges makes the node the directory's challenge gate, when the directory issues challenges.
func (n *Node) serveChallenges() error {
	t, ok := n.dir.(challengeTable)
	if !ok {
		return nil
	}
	g := &challenges{n: n, table: t, sub: n.cfg.Keys.Subject("challenge", nil)}
	if _, err := n.nc.Subscribe(g.sub, g.answer); err != nil {
		return err
	}
	t.SetChallengeGate(g)
	return nil
}

// TakeChallenge is keydir.ChallengeGate: it asks the other nodes for the challenge; the one that holds it
// answers within AckTimeout, or nobody does.
func (g *challenges) TakeChallenge(text, userID string, p keydir.Purpose) (time.Time, bool) {
	if !g.n.nc.IsConnected() {
		return time.Time{}, false
	}
	env := envelope{From: g.n.cfg.Node, Inc: g.n.inc, Chal: &chalMsg{Text: text, User: userID, Purpose: string(p)}}
	plain, err := json.Marshal(&env)
	if err != nil {
		return time.Time{}, false
	}
	sealed := g.n.cfg.Keys.Seal(g.sub, plain, time.Now())
	clear(plain)
	resp, err := g.n.nc.Request(g.sub, sealed, g.n.cfg.AckTimeout)
	if err != nil {
		return time.Time{}, false
	}
	var a envelope
	if g.n.open(resp.Subject, resp.Data, &a) != nil || a.Chal == nil || a.Chal.Until == 0 {
		return time.Time{}, false
	}
	return time.UnixMilli(a.Chal.Until), true
}

// answer gives up a challenge this node holds to the node that asks for it; a node that does not hold it
// stays silent.
func (g *challenges) answer(m *nats.Msg) {
	var req envelope
	if m.Reply == "" || g.n.open(m.Subject, m.Data, &req) != nil || req.Chal == nil || req.From == g.n.cfg.Node {
		return
	}
	c := req.Chal
	until, ok := g.table.TakeChallenge(c.Text, c.User, keydir.Purpose(c.Purpose))
	if !ok {
		return
	}
	g.n.send(m.Reply, "", &envelope{From: g.n.cfg.Node, Inc: g.n.inc, Chal: &chalMsg{Until: until.UnixMilli()}})
}
