package cluster

// The receive path of the room links: every message on this node's room subject, opened and handed to the
// link it belongs to (a served member's ops, a proxy's items, a link's acknowledgement, "no such link").

import (
	"encoding/binary"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/cleanrelay/cleanrelay/relay/internal/rooms"
	"github.com/cleanrelay/cleanrelay/relay/internal/ws"
)

// receive handles what comes on this node's room subject, in order.
func (l *roomLinks) receive(m *nats.Msg) {
	plain, err := l.n.cfg.Keys.Open(m.Subject, m.Data, time.Now())
	if err != nil {
		l.n.refused.Add(1)
		return
	}
	defer clear(plain)
	l.handle(plain, m.Reply)
}

// handle handles one opened message of a room subject; reply is its sender's room subject.
func (l *roomLinks) handle(plain []byte, reply string) {
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
	sv, pl := l.served[id], l.proxied[id]
	var plSubject string
	if pl != nil {
		plSubject = pl.subject
	}
	var svm *rooms.Member
	if sv != nil {
		svm = sv.m
	}
	l.mu.Unlock()
	if op == opLinkAck {
		// Which direction it confirms: a proxy and its served link share the link id, on one node when a room
		// was taken over by the node its proxy is on.
		var flags byte
		if len(r.b) == 1 {
			flags = r.b[0]
		}
		again, toProxy := flags&flagAgain != 0, flags&flagToProxy != 0
		l.mu.Lock()
		cl := l.closing[closingKey{id, toProxy}]
		l.mu.Unlock()
		switch {
		case !toProxy && sv != nil:
			if sv.out.ack(&l.env, num, again) {
				sv.Wake()
			}
		case toProxy && pl != nil:
			pl.out.ack(&l.env, num, again)
		case cl != nil:
			cl.out.ack(&l.env, num, again)
			if cl.out.idle() {
				l.mu.Lock()
				delete(l.closing, closingKey{id, toProxy})
				l.mu.Unlock()
				cl.out.stop(&l.env)
			}
		default:
			l.dropped.Add(1)
		}
		return
	}
	if op == opNoLink {
		l.lostLink(&id, len(r.b) == 1 && r.b[0]&flagToProxy != 0)
		return
	}
	var in *inbox
	var ackTo string
	toProxy := false
	switch {
	case pl != nil && (op == opItems || op == opEnded || op == opStamped):
		in, ackTo = &pl.in, plSubject
	case sv != nil && (op == opFwd || op == opAck || op == opEnd):
		in, ackTo, toProxy = &sv.in, sv.sub, true
	default:
		l.dropped.Add(1)
		l.noLink(op, &id, reply)
		return
	}
	switch in.check(num) {
	case takeOld:
		l.env.dups.Add(1) // sent again (or replayed): the tick confirms it once more
		return
	case takeGap:
		if last, ok := in.ask(time.Now()); ok && ackTo != "" {
			l.env.gaps.Add(1)
			l.publish(ackTo, linkAck(&id, last, true, toProxy))
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
		l.confirm(in, num, final, ackTo, &id, toProxy)
		pl.pr.handing.Lock()
		for i := range items {
			if !pl.pr.fresh(&items[i]) {
				l.env.dups.Add(1) // handed here already, on the link before a relink
				continue
			}
			if items[i].Kind == rooms.Refused {
				pl.pr.refused(items[i].Seq)
				items[i].Seq = 0
			}
			pl.pr.delivered(&items[i])
			pl.pr.p.Deliver(items[i], datas[i])
		}
		pl.pr.handing.Unlock()
	case opStamped:
		l.confirm(in, num, final, ackTo, &id, toProxy)
		if n := r.uvarint(); !r.err {
			pl.pr.stamped.Store(max(pl.pr.stamped.Load(), n))
		}
	case opEnded:
		l.confirm(in, num, final, ackTo, &id, toProxy)
		l.forgetProxy(id)
		pl.out.stop(&l.env)
		pl.pr.end()
		pl.pr.p.Ended(string(r.b))
	default:
		o := servedOp{op: op}
		switch op {
		case opFwd:
			o.n = r.uvarint()
			o.p = ws.PayloadOf(r.b)
		case opAck:
			o.seq = r.uvarint()
		case opEnd:
			o.how = rooms.LinkEnd(r.byte1())
		}
		if r.err {
			ws.PutPayload(o.p)
			l.n.refused.Add(1)
			l.confirm(in, num, final, ackTo, &id, toProxy)
			return
		}
		if sv.applyNow(svm, &o) {
			l.confirm(in, num, final, ackTo, &id, toProxy)
			return
		}
		sv.queued.Add(1)
		select {
		case sv.ops <- o:
			l.confirm(in, num, final, ackTo, &id, toProxy)
		default:
			// Not taken: the proxy sends it again (this goroutine serves every link; it does not wait for one).
			sv.queued.Add(-1)
			ws.PutPayload(o.p)
		}
	}
}

// confirm commits message num of in and confirms it to the sender at once when it is due.
func (l *roomLinks) confirm(in *inbox, num uint64, final bool, ackTo string, id *linkID, toProxy bool) {
	if last, now := in.commit(num, final, ackTo != "", time.Now()); now {
		l.publish(ackTo, linkAck(id, last, false, toProxy))
	}
}
