package cluster

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
