package rooms

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

	held     atomic.Int64 // bytes of buffers held for clients (room logs, unfinished messages)
	extraVal atomic.Int64 // the last answer of extra
	extraAt  atomic.Int64 // unix ns of that answer
	refused  [numMemoryRefusals]atomic.Uint64
	shed     atomic.Uint64 // log entries released early under pressure
}

// total returns the bytes counted against the budget now.
func (b *budget) total() int64 {
	t := b.held.Load() + b.conns.Load()*connHeldBytes
	if b.extra != nil {
		now := time.Now().UnixNano()
		if now-b.extraAt.Load() >= int64(extraRefresh) {
			b.extraAt.Store(now)
			b.extraVal.Store(b.extra())
		}
		t += b.extraVal.Load()
	}
	return t
}

// over reports whether the relay holds more than its budget.
func (b *budget) over() bool { return b.total() > b.max }

// refuse counts a refusal and returns the error for it.
func (b *budget) refuse(what memoryRefusal) *protoError {
	b.refused[what].Add(1)
	return errorf(codeOverMemory, "the relay is at its memory budget; try again later")
}
