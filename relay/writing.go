package relay

import (
	"github.com/gorilla/websocket"

	"github.com/cleanrelay/cleanrelay/relay/internal/rooms"
	"github.com/cleanrelay/cleanrelay/relay/internal/ws"
	"github.com/cleanrelay/cleanrelay/relay/protocol"
)

// How a connection is written. A writer runs on one of the server's workers only while there is something to
// write (conn.wakeUp starts one): pongs, control messages, then each room's pending entries, each formatted and
// framed by package ws into one pooled buffer. After kill, the writer says goodbye and closes the socket.

// writeLoop writes control messages, pings and room entries to the socket while there are any, then ends; a
// wakeUp starts it again. After kill it says goodbye (pending notices, a close frame) and closes the socket.
func (c *conn) writeLoop() {
	for {
		// The wake-up first, then c.done: kill closes c.done before its wake-up, so a writer that takes that
		// wake-up here sees c.done closed below. (Looking at c.done first lost a kill that came between the two
		// looks: its wake-up, taken as "something to write", found nothing, and the writer stopped without a
		// goodbye, so the connection never ended.)
		select {
		case <-c.wake: // about to look at everything
		default:
		}
		if h := c.srv.hooks.writerLook; h != nil {
			h(c)
		}
		select {
		case <-c.done:
			c.goodbye()
			return // writing stays true: no writer after the goodbye
		default:
		}
		if c.pingDue.Swap(false) && c.idleCheck() {
			c.sendFrame(ws.PingFrame) // a failed write kills the connection
			continue
		}
		if wrote, ok := c.writePending(); wrote || !ok {
			continue // look again: more may have come meanwhile, or a failed write killed the connection
		}
		// Nothing to write: stop, unless a wakeUp came after the look above and found this writer running.
		c.writing.Store(false)
		select {
		case <-c.wake:
			if c.writing.CompareAndSwap(false, true) {
				continue
			}
		default:
		}
		return
	}
}

// writePending writes a pong that is due, the queued control messages, then up to drainBatch entries of each
// room. It reports whether it wrote anything, and false if a write failed.
func (c *conn) writePending() (wrote, ok bool) {
	c.mu.Lock()
	ctrl := c.ctrl
	c.ctrl = nil
	pong, pongDue := c.pong, c.pongDue
	c.pong, c.pongDue = nil, false
	c.refs = append(c.refs[:0], c.chans...)
	refs := c.refs
	c.mu.Unlock()
	if pongDue {
		if !c.sendMessage(ws.OpPong, pong) {
			wipeAll(ctrl)
			return wrote, false
		}
		wrote = true
	}
	for i, msg := range ctrl {
		ok := c.sendMessage(ws.OpText, msg)
		clear(msg) // replies carry capabilities and resume tokens
		if !ok {
			wipeAll(ctrl[i+1:])
			return wrote, false
		}
		wrote = true
	}
	for _, ref := range refs {
		ok, n := c.drain(ref)
		if !ok {
			return wrote, false
		}
		wrote = wrote || n > 0
	}
	return wrote, true
}

// goodbye ends the connection from the writer's side: what notices are queued, a close frame with the reason
// the connection was killed, then the socket is closed (which also ends a running reader).
func (c *conn) goodbye() {
	c.flushControl()
	c.mu.Lock()
	why := c.why
	c.mu.Unlock()
	ws.WriteMessage(c.ws.NetConn(), ws.OpClose, websocket.FormatCloseMessage(why.code, why.text), closeWait)
	c.ws.Close()
	c.endPart(false)
}

// flushControl writes the control messages still queued (a shutdown or revocation notice) before the
// connection closes. Best effort: a write that fails ends it.
func (c *conn) flushControl() {
	c.mu.Lock()
	ctrl := c.ctrl
	c.ctrl = nil
	slow := c.why == closeSlow
	c.mu.Unlock()
	// Replies carry capabilities and resume tokens: whatever is not written is zeroed all the same.
	defer wipeAll(ctrl)
	if slow {
		return
	}
	for _, msg := range ctrl {
		if err := ws.WriteMessage(c.ws.NetConn(), ws.OpText, msg, closeWait); err != nil {
			return
		}
	}
}

// drainBatch bounds how many entries of one room the writer writes before it looks at the others.
const drainBatch = 32

// drain writes up to drainBatch pending entries of one membership. It reports false if the connection failed.
func (c *conn) drain(ref chanRef) (ok bool, n int) {
	if ref.m == nil || !ref.m.Pending(c, ref.ch) {
		return true, 0 // still being taken, or nothing to write: no buffer taken
	}
	out := ws.GetBuf(ws.HeaderRoom + deliverHeaderLen + c.srv.cfg.MaxFrame)
	defer func() {
		out.B = out.B[:0] // every frame written was zeroed below
		ws.PutBuf(out)
	}()
	for n < drainBatch {
		msg, binary := formatItem(out.B[ws.HeaderRoom:], ref.ch, ref.m.Next(c, ref.ch, out.B[ws.HeaderRoom+deliverHeaderLen:]))
		if msg == nil {
			return true, n
		}
		op := byte(ws.OpText)
		if binary {
			op = ws.OpBinary
		}
		frame := ws.FrameMessage(op, out.B[:ws.HeaderRoom+len(msg)])
		ok := c.sendFrame(frame)
		clear(frame)
		if !ok {
			return false, n
		}
		if binary {
			c.srv.stats.framesOut.Add(1)
			c.srv.stats.bytesOut.Add(uint64(len(msg) - deliverHeaderLen))
		}
		n++
	}
	return true, n
}

// formatItem formats what the room handed out for channel ch at the start of out, whose bytes from
// deliverHeaderLen on already hold a frame's payload, and says whether it is a frame (else a text notice).
// It returns nil for nothing.
func formatItem(out []byte, ch byte, it rooms.Item) (msg []byte, binary bool) {
	switch it.Kind {
	case rooms.Frame:
		msg = out[:deliverHeaderLen+it.Len]
		protocol.PutDeliverHeader(msg, ch, it.Seq, it.From)
		return msg, true
	case rooms.Refused:
		return appendError(out[:0], 0, rooms.RefusedError(&it)), false
	case rooms.Lost:
		return newObj(out[:0], "lost").num("ch", uint64(ch)).num("from", it.LostFrom).num("to", it.LostTo).done(), false
	case rooms.Presence:
		o := newObj(out[:0], "presence").num("ch", uint64(ch)).num("seq", it.Seq).num("member", uint64(it.From)).
			str("event", it.Event)
		if it.Timeout {
			o = o.str("reason", "timeout")
		}
		if it.User != "" {
			o = o.strEsc("user", it.User)
		}
		return o.done(), false
	}
	return nil, false
}

// sendFrame writes a frame (ws.FrameMessage) within the write timeout. A failed write kills the connection.
func (c *conn) sendFrame(frame []byte) bool {
	return c.written(ws.WriteFrame(c.ws.NetConn(), frame, c.srv.cfg.WriteTimeout))
}

// sendMessage writes msg as one message of opcode op, like sendFrame. msg is the caller's to zero.
func (c *conn) sendMessage(op byte, msg []byte) bool {
	return c.written(ws.WriteMessage(c.ws.NetConn(), op, msg, c.srv.cfg.WriteTimeout))
}

// written reports whether a write succeeded, and kills the connection if it did not.
func (c *conn) written(err error) bool {
	if err != nil {
		c.srv.stats.drop(dropWriteFailed)
		c.kill(closeNormal)
		return false
	}
	return true
}

// wipeAll zeroes control messages that will not be written (or were): replies carry capabilities and resume
// tokens.
func wipeAll(msgs [][]byte) {
	for _, msg := range msgs {
		clear(msg)
	}
}

// queuePong asks the writer to answer a ping with payload p (copied).
func (c *conn) queuePong(p []byte) {
	c.mu.Lock()
	if !c.gone {
		c.pong, c.pongDue = append([]byte(nil), p...), true
	}
	c.mu.Unlock()
	c.wakeUp()
}
