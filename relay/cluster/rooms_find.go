package cluster

// Joins and resumes of rooms held on another node: the find on every node, the answer of the node that holds
// the room (admit), and rooms.Remote's Join and Resume.

import (
	"bytes"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/cleanrelay/cleanrelay/relay/internal/rooms"
	"github.com/cleanrelay/cleanrelay/relay/protocol"
)

// find asks every other node about a room or a token and returns the answer of the node that holds it, or
// found false when none does. complete says every live peer answered (else the time ran out, or a peer that
// did not answer died meanwhile: it may be a sequencer whose mirror takes its rooms over); pending says some
// node holds the room, or the member, only in a mirror copy it has not taken over (yet).
func (l *roomLinks) find(req *roomMsg) (a roomMsg, found, complete, pending bool) {
	inbox := l.n.nc.NewRespInbox()
	answers, err := l.n.nc.SubscribeSync(inbox)
	if err != nil {
		return roomMsg{}, false, false, false
	}
	defer answers.Unsubscribe()
	want := l.n.livePeers()
	l.send(l.subFind, inbox, req)
	deadline := time.Now().Add(findTimeout)
	complete = true
	for len(want) > 0 {
		m, err := answers.NextMsg(min(time.Until(deadline), l.n.cfg.Heartbeat))
		if err != nil && time.Now().Before(deadline) {
			// A peer that died meanwhile will not answer: wait no longer for it (the room it held may be
			// taken over by now; the caller asks again).
			live := l.n.livePeers()
			for node := range want {
				if !live[node] {
					delete(want, node)
					complete = false
				}
			}
			continue
		}
		if err != nil {
			return roomMsg{}, false, false, pending
		}
		var a roomMsg
		if !l.open(inbox, m.Data, &a, &a.From) {
			continue
		}
		if a.Here {
			return a, true, true, false
		}
		pending = pending || a.Pending
		delete(want, a.From)
	}
	return roomMsg{}, false, complete, pending
}

// answerFind answers another node's join or resume: admitted, refused, or not here.
func (l *roomLinks) answerFind(m *nats.Msg) {
	var req roomMsg
	if !l.open(m.Subject, m.Data, &req, &req.From) || m.Reply == "" || req.From == l.n.cfg.Node {
		return
	}
	a, sv, ok := l.admit(&req)
	if !ok {
		return
	}
	l.send(m.Reply, "", &a)
	clear(a.Room)
	clear(a.Token)
	if sv != nil {
		l.n.wg.Add(1)
		go sv.run()
	}
}

// admit runs a join or resume of a member on node req.From (this node too: a proxy relinking to a room taken
// over here) against this node's table. It returns the answer and, when admitted, the served link to start
// once the answer is on its way; ok is false for a request to ignore (a replay).
func (l *roomLinks) admit(req *roomMsg) (a roomMsg, admitted *served, ok bool) {
	id, ok := toLink(req.Link)
	if !ok {
		l.n.refused.Add(1)
		return a, nil, false
	}
	sv := &served{l: l, node: req.From, inc: req.Inc, id: id, wake: make(chan struct{}, 1), ops: make(chan servedOp, servedQueue),
		done: make(chan struct{}), sub: l.n.cfg.Keys.Subject("room", []byte(req.From))}
	sv.out.init()
	l.mu.Lock()
	if l.served[id] != nil || l.usedLinks[id] {
		l.mu.Unlock()
		l.n.refused.Add(1) // replayed
		return a, nil, false
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
	var found, pending bool
	var perr *rooms.Error
	// A copy is looked at before the table: takeOver puts the room in the table before the copy leaves
	// copyTokens and adopting, so one of the two looks finds it.
	switch {
	case req.Op == "join" && len(req.Room) == rooms.IDLen && len(req.Cap) == rooms.SecretLen:
		var room rooms.RoomID
		var capability rooms.Secret
		copy(room[:], req.Room)
		copy(capability[:], req.Cap)
		pending = l.copyHolds(&room, nil)
		found, perr = l.t.JoinHere(seat, &room, &capability, &j)
		clear(room[:])
		capability.Wipe()
	case req.Op == "resume" && len(req.TokenHash) == 32:
		var th [32]byte
		copy(th[:], req.TokenHash)
		pending = l.copyHolds(nil, th[:])
		found, perr = l.t.ResumeHere(seat, &th, req.Last, &j)
		clear(th[:])
	}
	clear(req.Room)
	clear(req.Cap)
	clear(req.TokenHash)
	a = roomMsg{Op: "found", Here: found, Pending: pending && !found, From: l.n.cfg.Node, Inc: l.n.inc}
	if found && perr != nil {
		a.Code, a.Msg = perr.Code, perr.Msg
	}
	if !found || perr != nil {
		l.forgetServed(id)
		return a, nil, true
	}
	l.mu.Lock()
	sv.m = j.Member
	l.mu.Unlock()
	a.ID, a.Room, a.RoomSeq, a.In, a.Max, a.Members = j.ID, bytes.Clone(j.Room[:]), j.Seq, j.In, j.Max, j.Members
	if req.Op == "join" {
		a.Token = bytes.Clone(j.Token[:])
	}
	return a, sv, true
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

// Answers of a join or resume the cluster cannot give yet (docs/protocol.md §4.3, busy): this node is off NATS
// or has not heard its peers again since, a peer did not answer, a node holds the room or the member only in a
// mirror copy it has not taken over yet, or a node heard within settleTime is unheard now (it may be alive,
// and every live peer answering says nothing of it). Unlike denied and bad_token, which are final, the client
// asks again.
const (
	joinBusy   = "the cluster cannot tell yet whether the room exists; ask again"
	resumeBusy = "the cluster cannot tell yet whether it holds this place; ask again within the grace"
)

// Join implements rooms.Remote.
func (l *roomLinks) Join(id *rooms.RoomID, capability *rooms.Secret, user string, p rooms.Proxy, j *rooms.Joined) (rooms.Link, *rooms.Error) {
	steady := l.waitSteady() && l.n.steady()
	pr, pl := l.newProxy(p, user)
	var a roomMsg
	var ok, sure bool
	if steady {
		var complete, pending bool
		a, ok, complete, pending = l.find(&roomMsg{Op: "join", Link: pl.id[:], Room: id[:], Cap: capability[:], User: user})
		sure = l.settles(complete, pending)
	}
	if !ok || a.Code != "" {
		l.forgetProxy(pl.id)
		switch {
		case !ok && !sure:
			l.busy.Add(1)
			return nil, rooms.Errorf(protocol.CodeBusy, joinBusy)
		case !ok:
			return nil, rooms.Errorf(protocol.CodeDenied, "no such room, or the capability is wrong")
		}
		return nil, &rooms.Error{Code: a.Code, Msg: a.Msg}
	}
	fillJoined(j, &a)
	copy(j.Token[:], a.Token)
	clear(a.Token)
	l.admitted(pr, pl, &a, j.Token.Hash())
	return pr, nil
}

// settles reports whether a find that found nothing is final (denied, bad_token): every live peer answered
// (complete), none holds the room or the member only in a mirror copy (pending), and this node is steady and
// settled. Otherwise the answer is busy, and the client asks again.
func (l *roomLinks) settles(complete, pending bool) bool {
	return complete && !pending && l.n.steady() && l.n.settled()
}

// resumeSettle bounds, in peer timeouts, how long a resume asks the nodes again (every heartbeat) while their
// answers cannot settle it: a sequencer that died is first unheard for takeoverTimeouts, and then its mirror
// takes its rooms over at its next heartbeat.
const resumeSettle = takeoverTimeouts + 2

// Resume implements rooms.Remote.
func (l *roomLinks) Resume(tokenHash *[32]byte, user string, last uint64, p rooms.Proxy, j *rooms.Joined) (rooms.Link, *rooms.Error) {
	steady := l.waitSteady() && l.n.steady()
	pr, pl := l.newProxy(p, user)
	var a roomMsg
	var ok, sure bool
	deadline := time.Now().Add(resumeSettle * l.n.cfg.PeerTimeout)
	for try := 1; steady; try++ {
		if try > 1 {
			// A new link id: the nodes that answered took the last one, and would drop it as a replay.
			l.forgetProxy(pl.id)
			pl = l.newLink(pr)
		}
		var complete, pending bool
		a, ok, complete, pending = l.findAnywhere(&roomMsg{Op: "resume", Link: pl.id[:], TokenHash: tokenHash[:], User: user, Last: last})
		sure = l.settles(complete, pending)
		if ok || sure || time.Now().After(deadline) || !l.pause() {
			break
		}
	}
	if !ok || a.Code != "" {
		l.forgetProxy(pl.id)
		switch {
		case !ok && !sure:
			l.busy.Add(1)
			return nil, rooms.Errorf(protocol.CodeBusy, resumeBusy)
		case !ok:
			return nil, rooms.Errorf(protocol.CodeBadToken, "unknown or expired resume token")
		}
		return nil, &rooms.Error{Code: a.Code, Msg: a.Msg}
	}
	fillJoined(j, &a)
	l.admitted(pr, pl, &a, *tokenHash)
	return pr, nil
}

// pause waits a heartbeat; false: the node is closing.
func (l *roomLinks) pause() bool {
	select {
	case <-l.n.done:
		return false
	case <-time.After(l.n.cfg.Heartbeat):
		return true
	}
}

// findAnywhere is find for a resume, asking this node's table first: the member may be in a room taken over
// here (its proxy then links to this node itself).
func (l *roomLinks) findAnywhere(req *roomMsg) (a roomMsg, found, complete, pending bool) {
	local := *req // admit overwrites what it was given
	local.From, local.Inc = l.n.cfg.Node, l.n.inc
	local.TokenHash = bytes.Clone(req.TokenHash)
	a, sv, ok := l.admit(&local)
	if ok && a.Here {
		if sv != nil {
			l.n.wg.Add(1)
			go sv.run()
		}
		return a, true, true, false
	}
	here := ok && a.Pending
	a, found, complete, pending = l.find(req)
	return a, found, complete, pending || here
}

// admitted records the node that sequences pr's room, which took it on link pl, and starts sending pr's frames
// there.
func (l *roomLinks) admitted(pr *proxied, pl *plink, a *roomMsg, tokenHash [32]byte) {
	subject := l.n.cfg.Keys.Subject("room", []byte(a.From))
	l.mu.Lock()
	pl.node, pl.inc, pl.subject = a.From, a.Inc, subject
	l.mu.Unlock()
	pr.mu.Lock()
	defer pr.mu.Unlock()
	pr.th = tokenHash
	pr.sent = a.In
	pr.cur = pl
}

func fillJoined(j *rooms.Joined, a *roomMsg) {
	j.ID, j.Seq, j.In, j.Max, j.Members = a.ID, a.RoomSeq, a.In, a.Max, a.Members
	copy(j.Room[:], a.Room)
	clear(a.Room)
}
