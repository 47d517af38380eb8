// Package ws is the relay's WebSocket codec (RFC 6455): it parses client frames from bytes split anywhere,
// formats server frames, and owns the pooled, register-safe buffers frame payloads live in.
package ws

import (
	"encoding/binary"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// The relay parses its clients' WebSocket frames itself rather than through gorilla's reader, which needs a
// goroutine blocked with a buffer on every connection until a whole message has arrived. A Reader takes
// whatever bytes the socket has, split anywhere, and keeps between reads only the state of the frame in
// progress, so an idle connection holds neither a goroutine nor a read buffer (docs/performance.md). It never
// touches a connection: what it finds it returns, as events and errors, and the caller acts on them.

// WebSocket opcodes (RFC 6455 §5.2).
const (
	OpContinuation = 0x0
	OpText         = 0x1
	OpBinary       = 0x2
	OpClose        = 0x8
	OpPing         = 0x9
	OpPong         = 0xa
)

// WebSocket close codes (RFC 6455 §7.4.1) the codec itself gives or reports.
const (
	CloseProtocolError    = 1002
	CloseNoStatusReceived = 1005
	CloseInvalidPayload   = 1007
	ClosePolicyViolation  = 1008
	CloseMessageTooBig    = 1009
)

// MaxControlPayload is the longest payload of a ping, pong or close frame (RFC 6455 §5.5).
const MaxControlPayload = 125

// Limits bound what a Reader accepts.
type Limits struct {
	// MaxMessage is the longest data message, in bytes; a longer one is ErrTooBig.
	MaxMessage int64
	// MaxText is the longest text message kept whole. A longer one is kept only to MaxText+1 bytes and not
	// checked for UTF-8 (the caller refuses it as too long), and the rest is read and discarded, so that the
	// connection stays usable.
	MaxText int
	// MessageTimeout is how long a fragmented message may take from its first frame to the start of its last;
	// a slower one is ErrIncomplete.
	MessageTimeout time.Duration
	// Head is how many bytes at the start of a binary message are kept apart from its buffer (Payload.Head),
	// at most MaxHead: a header the caller reads, so that the buffer holds exactly the rest, in the size
	// class of the rest, and can be handed on as it is.
	Head int
}

// MaxHead is the most bytes Limits.Head keeps apart.
const MaxHead = 8

// Kind is what an Event reports.
type Kind int

const (
	None     Kind = iota // the bytes given ran out
	Fragment             // a data frame of a message not yet complete
	Message              // a complete data message
	Ping                 // a ping
	Pong                 // a pong
	Close                // a valid close frame: the end of reading
)

// Event is one complete frame the Reader found.
type Event struct {
	Kind Kind
	// Len: Fragment, the frame's payload length; Message, the message's whole length (of which Payload
	// holds at most MaxText+1 bytes of a text message).
	Len int64
	// Payload is a Message's bytes; the caller owns it from now on and returns it with PutPayload.
	Payload *Payload
	// Binary says whether a Message is binary (else text).
	Binary bool
	// Control is a Ping's payload. It is the Reader's, and zeroed at the next Feed.
	Control []byte
	// Code is a Close's status code: CloseNoStatusReceived if the frame had none.
	Code int
}

// Error is a reason to end reading: the close code and reason to answer with.
type Error struct {
	Code   int
	Reason string
}

func (e *Error) Error() string { return e.Reason }

// Errors a Reader returns besides protocol errors (CloseProtocolError with a reason).
var (
	ErrTooBig      = &Error{CloseMessageTooBig, ""}
	ErrIncomplete  = &Error{ClosePolicyViolation, "incomplete"}
	ErrInvalidUTF8 = &Error{CloseInvalidPayload, "invalid UTF-8"}
)

func protocolError(reason string) *Error { return &Error{CloseProtocolError, reason} }

// Reader is the state of reading one connection's client frames. It is owned by one reader at a time.
type Reader struct {
	hdr       [14]byte // the frame header read so far
	hdrN      int
	inPayload bool // the header is complete and remain payload bytes follow
	op        byte
	fin       bool
	mask      [4]byte
	maskPos   int
	remain    int64

	frameLen int64 // the payload length of the frame in progress

	msgOp    byte      // the data message in progress: 0 (none), OpText or OpBinary
	msgLen   int64     // its length so far, against the limit
	msgStart time.Time // when its first frame came
	store    int       // how many of its bytes are kept
	msg      *Payload  // its bytes so far, up to store, after the head
	head     [MaxHead]byte
	headN    int    // bytes of head so far
	ctrl     []byte // the payload of the control frame in progress
	pinged   []byte // the payload of the ping the last Feed reported

	lim  Limits        // static
	held *atomic.Int64 // the memory account msg is counted in (static)
}

// NewReader returns a reader that enforces lim and counts the buffer of a message in progress in held.
func NewReader(lim Limits, held *atomic.Int64) Reader {
	return Reader{lim: lim, held: held}
}

// Feed parses p, from where the last call left off. It returns at the end of the first frame it completes,
// with the event and the bytes of p it used; or with a None event once p is used up. After an error the
// stream is broken: the caller ends reading and answers with the error's close code.
func (r *Reader) Feed(p []byte) (ev Event, used int, err error) {
	clear(r.pinged) // handed out by the last call
	r.pinged = nil
	total := len(p)
	for len(p) > 0 || (r.inPayload && r.remain == 0) {
		if !r.inPayload {
			k := copy(r.hdr[r.hdrN:r.headerLen()], p)
			r.hdrN += k
			p = p[k:]
			if r.hdrN >= 2 && r.hdr[1]&0x80 == 0 {
				return Event{}, total - len(p), protocolError("client frame is not masked")
			}
			if r.hdrN < r.headerLen() {
				continue
			}
			if err := r.startFrame(); err != nil {
				return Event{}, total - len(p), err
			}
			continue
		}
		k := int(min(int64(len(p)), r.remain))
		chunk := p[:k]
		p = p[k:]
		r.remain -= int64(k)
		// Unmasked as they are copied, with general-purpose registers only (registers.go).
		if r.op >= OpClose {
			start := len(r.ctrl)
			r.ctrl = r.ctrl[:start+k] // made with the frame's length as its capacity
			maskCopy(r.ctrl[start:], chunk, r.mask, r.maskPos)
		} else {
			start := len(r.msg.b)
			data, pos := chunk[:min(k, r.store-r.headN-start)], r.maskPos // beyond the storage limit, bytes are discarded
			if h := min(len(data), r.headWant()-r.headN); h > 0 {
				for i := range h {
					r.head[r.headN+i] = data[i] ^ r.mask[(pos+i)&3]
				}
				r.headN += h
				data, pos = data[h:], (pos+h)&3
			}
			r.msg.b = r.msg.b[:start+len(data)] // growMessage made room for the frame
			maskCopy(r.msg.b[start:], data, r.mask, pos)
		}
		r.maskPos = (r.maskPos + k) & 3
		if r.remain > 0 {
			continue
		}
		r.inPayload = false
		ev, err := r.endFrame()
		if err != nil {
			return Event{}, total - len(p), err
		}
		return ev, total - len(p), nil
	}
	return Event{}, total, nil
}

// headerLen is the length of the header being read, as far as its first two bytes tell.
func (r *Reader) headerLen() int {
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

// startFrame checks a complete frame header and prepares for its payload.
func (r *Reader) startFrame() *Error {
	b0, b1 := r.hdr[0], r.hdr[1]
	r.hdrN = 0
	if b0&0x70 != 0 {
		return protocolError("reserved bits set without an extension")
	}
	if r.msgOp != 0 && time.Since(r.msgStart) > r.lim.MessageTimeout {
		return ErrIncomplete
	}
	op, fin := b0&0x0f, b0&0x80 != 0
	length, off := int64(b1&0x7f), 2
	switch length {
	case 126:
		length, off = int64(binary.BigEndian.Uint16(r.hdr[2:])), 4
	case 127:
		u := binary.BigEndian.Uint64(r.hdr[2:])
		if u>>63 != 0 {
			return protocolError("frame length has the high bit set")
		}
		length, off = int64(u), 10
	}
	copy(r.mask[:], r.hdr[off:off+4])
	switch op {
	case OpClose, OpPing, OpPong:
		if !fin || length > MaxControlPayload {
			return protocolError("control frame fragmented or longer than 125 bytes")
		}
		if length > 0 {
			r.ctrl = make([]byte, 0, length)
		}
	case OpText, OpBinary, OpContinuation:
		if op == OpContinuation && r.msgOp == 0 {
			return protocolError("continuation frame without a message")
		}
		if op != OpContinuation {
			if r.msgOp != 0 {
				return protocolError("new message before the last one ended")
			}
			r.msgOp, r.msgLen, r.msgStart = op, 0, time.Now()
		}
		r.msgLen += length
		if r.msgLen > r.lim.MaxMessage {
			return ErrTooBig
		}
		r.store = int(r.lim.MaxMessage)
		if r.msgOp == OpText {
			r.store = r.lim.MaxText + 1
		}
		r.growMessage(max(0, int(min(r.msgLen, int64(r.store)))-r.headWant()))
	default:
		return protocolError("unknown opcode")
	}
	r.op, r.fin, r.remain, r.frameLen, r.maskPos, r.inPayload = op, fin, length, length, 0, true
	return nil
}

// headWant is how many bytes of the message in progress go to its head.
func (r *Reader) headWant() int {
	if r.msgOp != OpBinary {
		return 0
	}
	return min(r.lim.Head, MaxHead)
}

// growMessage makes room for n bytes of the message in progress, in a pooled buffer sized to what the frame
// headers announced (not to the largest message allowed: a connection may hold a partial message while idle).
func (r *Reader) growMessage(n int) {
	if r.msg != nil && cap(r.msg.b) >= n {
		return
	}
	p := GetPayload(n)
	p.b = p.b[:0]
	if old := r.msg; old != nil { // the head stays in r until the message ends
		r.held.Add(-int64(cap(old.b)))
		p.b = p.b[:copyWords(p.b[:n], old.b)]
		PutPayload(old)
	}
	r.msg = p
	r.held.Add(int64(cap(p.b)))
}

// takeMsg hands over the message buffer, with its head, and uncounts it.
func (r *Reader) takeMsg() *Payload {
	p := r.msg
	r.msg = nil
	if p != nil {
		r.held.Add(-int64(cap(p.b)))
		p.head, p.nh = r.head, uint8(r.headN)
	}
	clear(r.head[:])
	r.headN = 0
	return p
}

// endFrame reports a frame whose payload is complete.
func (r *Reader) endFrame() (Event, *Error) {
	switch r.op {
	case OpPing:
		r.pinged, r.ctrl = r.ctrl, nil
		return Event{Kind: Ping, Control: r.pinged}, nil // zeroed at the next Feed
	case OpPong:
		clear(r.ctrl)
		r.ctrl = nil
		return Event{Kind: Pong}, nil
	case OpClose:
		ctrl := r.ctrl
		r.ctrl = nil
		code := CloseNoStatusReceived
		if len(ctrl) == 1 {
			return Event{}, protocolError("close frame with a one-byte payload")
		}
		if len(ctrl) >= 2 {
			code = int(binary.BigEndian.Uint16(ctrl))
			if !validCloseCode(code) || !utf8.Valid(ctrl[2:]) {
				return Event{}, protocolError("invalid close code or reason")
			}
		}
		return Event{Kind: Close, Code: code}, nil
	default:
		if !r.fin {
			return Event{Kind: Fragment, Len: r.frameLen}, nil
		}
		op, n, msg := r.msgOp, r.msgLen, r.takeMsg()
		r.msgOp = 0
		if op == OpText {
			msg.text = true
			if n <= int64(r.lim.MaxText) && !utf8.Valid(msg.b) {
				PutPayload(msg)
				return Event{}, ErrInvalidUTF8
			}
		}
		return Event{Kind: Message, Len: n, Payload: msg, Binary: op == OpBinary}, nil
	}
}

// Release zeroes and returns the buffers of a message or control frame in progress, once reading is over.
func (r *Reader) Release() {
	PutPayload(r.takeMsg())
	clear(r.ctrl)
	clear(r.pinged)
	r.ctrl, r.pinged = nil, nil
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
