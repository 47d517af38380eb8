package relay

import (
	"sync/atomic"
	"time"
)

// How the relay bounds its memory as a whole (docs/operations.md, "Memory"). What it holds on behalf of
// clients is counted as it is allocated, in buffer capacity rather than payload length: room logs (each
// frame's pooled buffer and the ring of entries), the unfinished messages of readers, and a fixed estimate
// per connection for the rest (its structures, a parked socket's state). Config.ExtraHeld adds what other
// parts of the process hold (the key directory). When the total passes Config.MaxMemory the relay refuses
// new work — new rooms, joins — drops the rooms with nobody attached, sheds from room logs what every
// attached member has already been sent (only a resume needs it), and refuses frames into a room that still
// holds a quarter of its buffer unsent. Clients that follow the protocol keep far less than that unsent, so
// while connected they lose nothing.

// connHeldBytes is what one connection costs beyond its counted buffers: about 16 KB measured per idle
// connection (docs/performance.md), rounded up.
const connHeldBytes = 16 << 10

// extraRefresh bounds how often Config.ExtraHeld is asked, as frames check the budget.
const extraRefresh = 100 * time.Millisecond

// memoryRefusal says what the budget refused.
type memoryRefusal int

const (
	refusedMemCreate memoryRefusal = iota
	refusedMemJoin
	refusedMemFrame
	numMemoryRefusals
)

var memoryRefusalNames = [numMemoryRefusals]string{
	refusedMemCreate: "create", refusedMemJoin: "join", refusedMemFrame: "frame",
}

// budget is the relay's memory account. Its counters are atomic: the hot path adds and subtracts.
type budget struct {
	// Static after construction.
	max   int64
	extra func() int64
	conns *atomic.Int64

	held      atomic.Int64 // bytes of buffers held for clients (room logs, unfinished messages)
	extraVal  atomic.Int64 // the last answer of extra
	extraAt   atomic.Int64 // unix ns of that answer
	extraBusy atomic.Bool  // a goroutine of overNow is asking extra
	refused   [numMemoryRefusals]atomic.Uint64
	shed      atomic.Uint64 // log entries released early under pressure
}

// total returns the bytes counted against the budget now, asking Config.ExtraHeld again first if its last
// answer is older than extraRefresh.
func (b *budget) total() int64 { return b.count(true) }

// over reports whether the relay holds more than its budget. It may wait for Config.ExtraHeld: admission
// (create, join) uses it.
func (b *budget) over() bool { return b.count(true) > b.max }

// overNow is over for the frame path, which never waits for Config.ExtraHeld: that is the key directory's,
// behind the lock that every login, proof and lookup takes, and a frame that waited for it would hold its
// room (and, for a presence event, every room) meanwhile. An answer that is due is asked for on a goroutine
// of its own, and the last one is used.
func (b *budget) overNow() bool { return b.count(false) > b.max }

// count is total, asking ExtraHeld in the caller (wait) or on a goroutine of its own, one at a time.
func (b *budget) count(wait bool) int64 {
	t := b.held.Load() + b.conns.Load()*connHeldBytes
	if b.extra == nil {
		return t
	}
	now := time.Now().UnixNano()
	if at := b.extraAt.Load(); now-at >= int64(extraRefresh) {
		switch {
		case wait:
			b.extraAt.Store(now)
			b.extraVal.Store(b.extra())
		case b.extraBusy.CompareAndSwap(false, true):
			b.extraAt.Store(now)
			go func() {
				defer b.extraBusy.Store(false)
				b.extraVal.Store(b.extra())
			}()
		}
	}
	return t + b.extraVal.Load()
}

// refuse counts a refusal and returns the error for it.
func (b *budget) refuse(what memoryRefusal) *protoError {
	b.refused[what].Add(1)
	return errorf(codeOverMemory, "the relay is at its memory budget; try again later")
}
