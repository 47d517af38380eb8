package relay

import (
	"math/bits"
	"sync"
	"sync/atomic"
)

// Frame payloads live in buffers the relay owns and reuses, in power-of-two size classes from 256 bytes up.
// A buffer is zeroed before it goes back to its pool, so a frame's bytes do not outlive the frame in memory
// the relay controls (clean-server contract, promise 3: docs/threat-model.md §0).
const (
	minClassShift = 8  // 256 bytes
	maxClassShift = 25 // 32 MiB, above Config.MaxFrame's largest allowed value plus headers
)

// buf is a pooled byte buffer. The pointer travels with the bytes so that returning it to the pool does not
// allocate.
type buf struct {
	b []byte // len is the bytes in use, cap is the size class
}

var bufPools [maxClassShift - minClassShift + 1]sync.Pool

// classOf returns the index of the smallest size class that holds n bytes.
func classOf(n int) int {
	if n <= 1<<minClassShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minClassShift
}

// getBuf returns a buffer of length n from the pools. Its contents are zero.
func getBuf(n int) *buf {
	c := classOf(n)
	if b, ok := bufPools[c].Get().(*buf); ok {
		b.b = b.b[:n]
		return b
	}
	return &buf{b: make([]byte, n, 1<<(c+minClassShift))}
}

// putBuf zeroes b.b and returns it to its pool. b must not be used afterwards. Only len(b.b) bytes are
// zeroed, so a user that wrote fewer bytes shortens b.b to them first (zeroing 64 KiB for a 1 KiB frame would
// dominate the hot path), and a user that wrote beyond len(b.b) zeroes that itself.
func putBuf(b *buf) {
	if b == nil {
		return
	}
	clear(b.b)
	b.b = b.b[:0]
	bufPools[classOf(cap(b.b))].Put(b)
}

// handshakeOnlyPool is the write buffer pool of the relay's upgrader. The relay writes its frames itself
// (wswrite.go), so gorilla/websocket never draws from it; having a pool at all keeps gorilla from allocating a
// write buffer for every connection. gets counts the draws, which a test holds at zero.
type handshakeOnlyPool struct{ gets atomic.Int64 }

func (p *handshakeOnlyPool) Get() any {
	p.gets.Add(1)
	return nil // gorilla then allocates a buffer of its own, should it ever write
}

func (p *handshakeOnlyPool) Put(any) {}
