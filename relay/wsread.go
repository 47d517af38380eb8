package relay

import (
	"encoding/binary"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
)

// The relay parses its clients' WebSocket frames itself (RFC 6455 §5) rather than through gorilla's reader,
// which needs a goroutine blocked with a buffer on every connection until a whole message has arrived.
// wsReader takes whatever bytes the socket has, split anywhere, and keeps between reads only the state of the
// frame in progress, so an idle connection holds neither a goroutine nor a read buffer (docs/performance.md).
// The relay writes its frames itself too (wswrite.go): gorilla only does the handshake.

// WebSocket opcodes (RFC 6455 §5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xa
)

const (
	// pollReadSize is how many bytes one read system call takes on a readiness-driven connection. The buffer
	// is borrowed from the pool only while the socket has bytes, so it can hold a burst of frames.
	pollReadSize = 16 << 10
	// blockingReadSize is the buffer of a connection read by a goroutine of its own (TLS, or no poller); it is
	// held as long as the connection lives, so it stays as small as gorilla's was.
	blockingReadSize = 1024
	// maxControlPayload is the longest payload of a ping, pong or close frame (RFC 6455 §5.5).
	maxControlPayload = 125
)

// wsReader is the state of reading one connection's frames. It is owned by whoever reads the connection at
// the moment (one reader at a time, see readState).
type wsReader struct {
	hdr       [14]byte // the frame header read so far
	hdrN      int
	inPayload bool // the header is complete and remain payload bytes follow
	op        byte
	fin       bool
	mask      [4]byte
	maskPos   int
	remain    int64

	frameLen int64 // the payload length of the frame in progress

	msgType  int       // the data message in progress: 0 (none), websocket.TextMessage or BinaryMessage
	msgLen   int64     // its length so far, against the read limit
	msgStart time.Time // when its first frame came
	store    int       // how many of its bytes are kept
	msg      *buf      // its bytes so far, up to store
	ctrl     []byte    // the payload of the control frame in progress

	held *atomic.Int64 // the relay's memory account, which msg is counted in (static)
}

// takeMsg hands over the message buffer and uncounts it.
func (r *wsReader) takeMsg() *buf {
	b := r.msg
	r.msg = nil
	if b != nil {
		r.held.Add(-int64(cap(b.b)))
	}
	return b
}

// headerLen is the length of the header being read, as far as its first two bytes tell.
func (r *wsReader) headerLen() int {
	if r.hdrN < 2 {
		return 2
	}
	n := 2 + 4 // client frames are masked
	switch r.hdr[1] & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	return n
}

// release zeroes and returns the buffers of a message or control frame in progress.
func (r *wsReader) release() {
	putBuf(r.takeMsg())
	clear(r.ctrl)
	r.ctrl = nil
}

// consume handles bytes read from the client. It returns false when reading is over: the connection is
// killed with the reason (a close frame, a protocol error, an oversized message, or a kill while waiting for
// the rate limit).
func (c *conn) consume(p []byte) bool {
	r := &c.rd
	for len(p) > 0 || (r.inPayload && r.remain == 0) {
		if !r.inPayload {
			k := copy(r.hdr[r.hdrN:r.headerLen()], p)
			r.hdrN += k
			p = p[k:]
			if r.hdrN >= 2 && r.hdr[1]&0x80 == 0 {
				return c.protocolError("client frame is not masked")
			}
			if r.hdrN < r.headerLen() {
				continue
			}
			if !c.startFrame() {
				return false
			}
			continue
		}
		k := int(min(int64(len(p)), r.remain))
		chunk := p[:k]
		p = p[k:]
		r.remain -= int64(k)
		// Unmasked as they are copied, with general-purpose registers only (registers.go).
		if r.op >= opClose {
			start := len(r.ctrl)
			r.ctrl = r.ctrl[:start+k] // made with the frame's length as its capacity
			maskCopy(r.ctrl[start:], chunk, r.mask, r.maskPos)
		} else {
			start := len(r.msg.b)
			w := min(k, r.store-start)  // beyond the storage limit, bytes are discarded
			r.msg.b = r.msg.b[:start+w] // growMessage made room for the frame
			maskCopy(r.msg.b[start:], chunk[:w], r.mask, r.maskPos)
		}
		r.maskPos = (r.maskPos + k) & 3
		if r.remain > 0 {
			continue
		}
		r.inPayload = false
		c.lastRead.Store(time.Now().UnixNano())
		if !c.endFrame() {
			return false
		}
	}
	return true
}

// startFrame checks a complete frame header and prepares for its payload.
func (c *conn) startFrame() bool {
	r := &c.rd
	b0, b1 := r.hdr[0], r.hdr[1]
	r.hdrN = 0
	if b0&0x70 != 0 {
		return c.protocolError("reserved bits set without an extension")
	}
	if r.msgType != 0 && time.Since(r.msgStart) > c.srv.cfg.MessageTimeout {
		c.srv.stats.drop(dropIncomplete)
		c.kill(closeIncomplete)
		return false
	}
	op, fin := b0&0x0f, b0&0x80 != 0
	length, off := int64(b1&0x7f), 2
	switch length {
	case 126:
		length, off = int64(binary.BigEndian.Uint16(r.hdr[2:])), 4
	case 127:
		u := binary.BigEndian.Uint64(r.hdr[2:])
		if u>>63 != 0 {
			return c.protocolError("frame length has the high bit set")
		}
		length, off = int64(u), 10
	}
	copy(r.mask[:], r.hdr[off:off+4])
	switch op {
	case opClose, opPing, opPong:
		if !fin || length > maxControlPayload {
			return c.protocolError("control frame fragmented or longer than 125 bytes")
		}
		if length > 0 {
			r.ctrl = make([]byte, 0, length)
		}
	case opText, opBinary, opContinuation:
		if op == opContinuation && r.msgType == 0 {
			return c.protocolError("continuation frame without a message")
		}
		if op != opContinuation {
			if r.msgType != 0 {
				return c.protocolError("new message before the last one ended")
			}
			r.msgType, r.msgLen, r.msgStart = int(op), 0, time.Now()
		}
		r.msgLen += length
		limit := int64(sendHeaderLen + c.srv.cfg.MaxFrame)
		if r.msgLen > limit {
			c.srv.stats.drop(dropOversize)
			c.kill(closeReason{websocket.CloseMessageTooBig, ""})
			return false
		}
		// A text message longer than a control message may be is kept only as far as parseRequest needs to
		// refuse it; the rest is read and discarded so that the connection stays usable.
		r.store = int(limit)
		if r.msgType == websocket.TextMessage {
			r.store = maxControl + 1
		}
		r.growMessage(int(min(r.msgLen, int64(r.store))))
	default:
		return c.protocolError("unknown opcode")
	}
	r.op, r.fin, r.remain, r.frameLen, r.maskPos, r.inPayload = op, fin, length, length, 0, true
	return true
}

// minFreeFragment is the smallest fragment of a message that costs nothing against the rate limit: a message
// costs one, and so do each ping, pong and smaller fragment, so that floods of them are paced like messages.
const minFreeFragment = 1024

// growMessage makes room for n bytes of the message in progress, in a pooled buffer sized to what the frame
// headers announced (not to the largest message allowed: a connection may hold a partial message while idle).
func (r *wsReader) growMessage(n int) {
	if r.msg != nil && cap(r.msg.b) >= n {
		return
	}
	b := getBuf(n)
	b.b = b.b[:0]
	if old := r.takeMsg(); old != nil {
		b.b = b.b[:copyWords(b.b[:n], old.b)]
		putBuf(old)
	}
	r.msg = b
	r.held.Add(int64(cap(b.b)))
}

// endFrame acts on a frame whose payload is complete.
func (c *conn) endFrame() bool {
	r := &c.rd
	switch r.op {
	case opPing:
		if !c.pace() {
			return false
		}
		c.queuePong(r.ctrl) // the writer is the only one that writes
		clear(r.ctrl)
		r.ctrl = nil
	case opPong:
		r.ctrl = nil // lastRead, set for every frame, is all a pong is for
		return c.pace()
	case opClose:
		code := websocket.CloseNoStatusReceived
		if len(r.ctrl) == 1 {
			return c.protocolError("close frame with a one-byte payload")
		}
		if len(r.ctrl) >= 2 {
			code = int(binary.BigEndian.Uint16(r.ctrl))
			if !validCloseCode(code) || !utf8.Valid(r.ctrl[2:]) {
				return c.protocolError("invalid close code or reason")
			}
		}
		r.ctrl = nil
		// Answer with the client's code (RFC 6455 §5.5.1); no status code at all gets an empty close frame.
		c.kill(closeReason{code, ""})
		return false
	default:
		if !r.fin {
			return r.frameLen >= minFreeFragment || c.pace()
		}
		typ, msg, n := r.msgType, r.takeMsg(), r.msgLen
		r.msgType = 0
		ok := c.handleMessage(typ, msg.b, n)
		putBuf(msg)
		return ok
	}
	return true
}

// pace spends one message of the connection's rate limit, waiting while there is none. It returns false if
// the connection was killed while it waited.
func (c *conn) pace() bool {
	wait := c.limiter.take(time.Now())
	if wait <= 0 {
		return true
	}
	// Waiting here, not reading, is the backpressure: the client's bytes stay in the kernel.
	c.srv.stats.rateLimited.Add(1)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.done:
		return false
	}
}

// handleMessage paces and handles one complete message of n bytes (of which msg holds those kept). It returns
// false if the connection was killed, while it waited for the rate limit or for invalid UTF-8 in a text
// message (1007, RFC 6455 §8.1).
func (c *conn) handleMessage(typ int, msg []byte, n int64) bool {
	if !c.pace() {
		return false
	}
	if typ == websocket.TextMessage {
		if n > maxControl {
			c.srv.stats.refusedRequests.Add(1)
			c.sendControl(appendError(nil, 0, errorf(codeControlSize, "control message is %d bytes, the limit is %d", n, maxControl)))
			return true
		}
		if !utf8.Valid(msg) {
			c.kill(closeReason{websocket.CloseInvalidFramePayloadData, "invalid UTF-8"})
			return false
		}
		c.handleControl(msg)
	} else {
		c.handleFrame(msg)
	}
	return true
}

// protocolError closes the connection with 1002 and reason. It returns false, for consume.
func (c *conn) protocolError(reason string) bool {
	c.kill(closeReason{websocket.CloseProtocolError, reason})
	return false
}

// validCloseCode reports whether a client may send code in a close frame (RFC 6455 §7.4).
func validCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	default:
		return code >= 3000 && code <= 4999
	}
}
