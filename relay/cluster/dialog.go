package cluster

import "time"

// dialogNotice tells a user's sessions on every node that a dialog was opened with them (docs/cluster.md §5).
type dialogNotice struct {
	User string `json:"u"`
	Room string `json:"r"`
	Cap  string `json:"c"`
	From string `json:"f"`
}

// NotifyDialog tells the sessions of user on the other nodes that from opened a dialog with them, in the room
// (and with the capability) the dialog's node holds: relay/accounts' OnDialogNotice hook.
func (n *Node) NotifyDialog(user, room, capability, from string) {
	env := envelope{From: n.cfg.Node, Inc: n.inc, Dialog: &dialogNotice{User: user, Room: room, Cap: capability, From: from}}
	if err := n.send(n.subDialog, "", &env); err != nil {
		n.log.Warn("cluster: failed to publish a dialog notice", "err", err)
	}
}

// burnMsg tells every node of a WebSocket ticket burned on one (docs/cluster.md §5): the ticket's SHA-256
// (never the ticket) and until when it would be taken.
type burnMsg struct {
	Hash  []byte `json:"h"`
	Until int64  `json:"u"` // Unix milliseconds
}

// BurnTicket tells the other nodes that the ticket with this SHA-256 was burned here: relay/accounts'
// ShareTickets hook.
func (n *Node) BurnTicket(h [32]byte, until time.Time) {
	env := envelope{From: n.cfg.Node, Inc: n.inc, Burn: &burnMsg{Hash: h[:], Until: until.UnixMilli()}}
	if err := n.send(n.subBurn, "", &env); err != nil {
		n.log.Warn("cluster: failed to publish a burned ticket", "err", err)
	}
}

// OnTicketBurned registers fn to be called with each ticket another node burned (relay/accounts'
// TicketBurned). Call it once, before serving.
func (n *Node) OnTicketBurned(fn func(h [32]byte, until time.Time)) { n.onBurn.Store(&fn) }
