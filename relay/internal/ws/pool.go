package ws

import (
	"math/bits"
	"sync"
)

// Frame payloads live in buffers the relay owns and reuses, in power-of-two size classes from 256 bytes up.
// A buffer is zeroed before it goes back to its pool, so a frame's bytes do not outlive the frame in memory
// the relay controls (clean-server contract, promise 3: docs/threat-model.md §0).
//
// Two kinds of buffer come from the pools. A Buf is scratch space the caller reads and writes directly: a
// socket read, a frame being formatted. A Payload holds a data message's bytes, and its only accessors are
// the register-safe copies (registers.go), so that a stray copy or append of frame bytes does not compile.
const (
	minClassShift = 8  // 256 bytes
	maxClassShift = 25 // 32 MiB, above the relay's largest allowed frame plus headers
)

const classes = maxClassShift - minClassShift + 1

// Buf is a pooled scratch buffer. The pointer travels with the bytes so that returning it to the pool does
// not allocate.
type Buf struct {
	B []byte // len is the bytes in use, cap is the size class
}

// Payload is a pooled buffer holding a data message. Its bytes leave it only through CopyTo, CopyFrom and
// Text, never through Go's copy or append (which move them through the vector registers: registers.go).
type Payload struct {
	b    []byte
	text bool // the bytes of a text message (Text)
	head [MaxHead]byte
	nh   uint8 // bytes in head (Limits.Head)
}

var (
	bufPools     [classes]sync.Pool
	payloadPools [classes]sync.Pool
)

// classOf returns the index of the smallest size class that holds n bytes.
func classOf(n int) int {
	if n <= 1<<minClassShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minClassShift
}

// newBytes makes a buffer of class c holding n bytes.
func newBytes(c, n int) []byte { return make([]byte, n, 1<<(c+minClassShift)) }

// GetBuf returns a buffer of length n from the pools. Its contents are zero.
func GetBuf(n int) *Buf {
	c := classOf(n)
	if b, ok := bufPools[c].Get().(*Buf); ok {
		b.B = b.B[:n]
		return b
	}
	return &Buf{B: newBytes(c, n)}
}

// PutBuf zeroes b.B and returns it to its pool. b must not be used afterwards. Only len(b.B) bytes are
// zeroed, so a user that wrote fewer bytes shortens b.B to them first (zeroing 64 KiB for a 1 KiB frame would
// dominate the hot path), and a user that wrote beyond len(b.B) zeroes that itself.
func PutBuf(b *Buf) {
	if b == nil {
		return
	}
	clear(b.B)
	b.B = b.B[:0]
	bufPools[classOf(cap(b.B))].Put(b)
}

// GetPayload returns a payload of n zero bytes from the pools.
func GetPayload(n int) *Payload {
	c := classOf(n)
	if p, ok := payloadPools[c].Get().(*Payload); ok {
		p.b = p.b[:n]
		return p
	}
	return &Payload{b: newBytes(c, n)}
}

// PutPayload zeroes p and returns it to its pool. p must not be used afterwards.
func PutPayload(p *Payload) {
	if p == nil {
		return
	}
	clear(p.b)
	clear(p.head[:])
	p.b, p.text, p.nh = p.b[:0], false, 0
	payloadPools[classOf(cap(p.b))].Put(p)
}

// PayloadOf returns a pooled payload holding a copy of src.
func PayloadOf(src []byte) *Payload {
	p := GetPayload(len(src))
	copyWords(p.b, src)
	return p
}

// PayloadWithHead returns a pooled payload holding a copy of src, its first head bytes (at most MaxHead) kept
// apart as a reader with Limits.Head would keep them.
func PayloadWithHead(src []byte, head int) *Payload {
	head = min(head, len(src), MaxHead)
	p := PayloadOf(src[head:])
	p.nh = uint8(copy(p.head[:], src[:head]))
	return p
}

// HeadLen is the number of bytes kept apart at the start of a binary message (Limits.Head).
func (p *Payload) HeadLen() int { return int(p.nh) }

// Head returns byte i of the head.
func (p *Payload) Head(i int) byte { return p.head[:p.nh][i] }

// Len is the number of bytes p holds after its head.
func (p *Payload) Len() int { return len(p.b) }

// Cap is the size of p's buffer, which is what it costs in memory.
func (p *Payload) Cap() int { return cap(p.b) }

// At returns byte i of p.
func (p *Payload) At(i int) byte { return p.b[i] }

// CopyTo copies p's bytes from offset from on into dst, like copy, and returns the bytes copied.
func (p *Payload) CopyTo(dst []byte, from int) int { return copyWords(dst, p.b[from:]) }

// CopyFrom copies src's bytes from offset from on into p, like copy, and returns the bytes copied.
func (p *Payload) CopyFrom(src *Payload, from int) int { return copyWords(p.b, src.b[from:]) }

// Text returns the bytes of a text message, which the relay parses as a control message, or nil if p holds a
// binary message: a frame's bytes are never handed out as a slice.
func (p *Payload) Text() []byte {
	if !p.text {
		return nil
	}
	return p.b
}
