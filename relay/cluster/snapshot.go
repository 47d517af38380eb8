package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/cleanrelay/cleanrelay/keydir"
)

// A node that joins, reconnects, or finds a gap in another node's numbering takes that node's whole directory:
// a request on the node's snapshot subject, answered in sealed chunks on the asker's inbox.

// maxChunk bounds the changes of one snapshot message (NATS refuses payloads over 1 MiB by default).
const maxChunk = 256 << 10

// resync takes the whole directory of node name, in the background.
func (n *Node) resync(name string) {
	n.mu.Lock()
	o := n.origins[name]
	if o == nil || o.syncing {
		n.mu.Unlock()
		return
	}
	o.syncing = true
	n.mu.Unlock()
	n.resyncs.Add(1)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		inc, seq, err := n.fetchSnapshot(name)
		n.mu.Lock()
		defer n.mu.Unlock()
		o := n.origins[name]
		if o == nil {
			return
		}
		o.syncing = false
		if err != nil {
			if n.caught {
				n.log.Warn("cluster: failed to take a peer's snapshot", "peer", name, "err", err)
			}
			return
		}
		if o.inc == inc {
			o.synced, o.seq = true, max(o.seq, seq)
		}
	}()
}

// fetchSnapshot asks node name for its whole directory and applies it. It returns the incarnation and change
// number the snapshot was taken at.
func (n *Node) fetchSnapshot(name string) (inc, seq uint64, err error) {
	inbox := n.nc.NewRespInbox()
	sub, err := n.nc.SubscribeSync(inbox)
	if err != nil {
		return 0, 0, err
	}
	defer sub.Unsubscribe()
	if err := n.send(n.cfg.Keys.Subject("snap", []byte(name)), inbox, &envelope{From: n.cfg.Node, Inc: n.inc}); err != nil {
		return 0, 0, err
	}
	deadline := time.Now().Add(n.cfg.CatchUp)
	for part, parts := 0, 1; part < parts; {
		m, err := sub.NextMsg(time.Until(deadline))
		if err != nil {
			return 0, 0, fmt.Errorf("snapshot part %d of %d: %w", part+1, parts, err)
		}
		var env envelope
		if err := n.open(inbox, m.Data, &env); err != nil {
			continue
		}
		if env.From != name || env.Part != part+1 || (part > 0 && (env.Inc != inc || env.Seq != seq)) {
			return 0, 0, errors.New("snapshot parts out of order")
		}
		part, parts, inc, seq = env.Part, env.Parts, env.Inc, env.Seq
		for _, c := range env.Chunk {
			n.apply(c)
		}
	}
	return inc, seq, nil
}

// answerSnapshot sends this node's whole directory to the asking node's inbox, in chunks.
func (n *Node) answerSnapshot(m *nats.Msg) {
	var req envelope
	if m.Reply == "" || n.open(m.Subject, m.Data, &req) != nil {
		return
	}
	// The number first, then the directory: every change up to it is in what follows.
	n.pubMu.Lock()
	seq := n.seq
	n.pubMu.Unlock()
	all := n.dir.Snapshot()
	var chunks [][]keydir.Change
	size, start := 0, 0
	for i, c := range all {
		b, _ := json.Marshal(c)
		if size+len(b) > maxChunk && i > start {
			chunks = append(chunks, all[start:i])
			start, size = i, 0
		}
		size += len(b)
	}
	chunks = append(chunks, all[start:])
	for i, c := range chunks {
		env := envelope{From: n.cfg.Node, Inc: n.inc, Seq: seq, Chunk: c, Part: i + 1, Parts: len(chunks)}
		if err := n.send(m.Reply, "", &env); err != nil {
			return
		}
	}
}
