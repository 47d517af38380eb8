package rooms

import (
	"sync/atomic"
	"time"

	"github.com/cleanrelay/cleanrelay/relay/protocol"
)

// How the relay bounds its memory as a whole (docs/operations.md, "Memory"). What it holds on behalf of
// clients is counted as it is allocated, in buffer capacity rather than payload length: room logs (each
// frame's pooled buffer and the ring of entries), the unfinished messages of readers, and a fixed estimate
// per connection for the rest (Budget.PerConn: its structures, a parked socket's state). Config.ExtraHeld
// adds what other parts of the process hold (the key directory). When the total passes Config.MaxMemory the relay refuses
// new work — new rooms, joins — drops the rooms with nobody attached, sheds from room logs what every
// attached member has already been sent (only a resume needs it), and refuses frames into a room that still
// holds a quarter of its buffer unsent. Clients that follow the protocol keep far less than that unsent, so
// while connected they lose nothing.

// extraRefresh bounds how often Config.ExtraHeld is asked, as frames check the budget.
const extraRefresh = 100 * time.Millisecond

// Refusal says what the budget refused.
type Refusal int

const (
	RefusedCreate Refusal = iota
	RefusedJoin
	RefusedFrame
	NumRefusals
)

// RefusalNames name the refusals in metrics.
var RefusalNames = [NumRefusals]string{
	RefusedCreate: "create", RefusedJoin: "join", RefusedFrame: "frame",
}

// Budget is the relay's memory account. Its counters are atomic: the hot path adds and subtracts.
type Budget struct {
	// Static after construction.
	Max     int64
	Extra   func() int64  // Config.ExtraHeld, or nil
	Conns   *atomic.Int64 // connections open
	PerConn int64         // what one connection costs beyond its counted buffers

	Held      atomic.Int64 // bytes of buffers held for clients (room logs, unfinished messages)
	extraVal  atomic.Int64 // the last answer of Extra
	extraAt   atomic.Int64 // unix ns of that answer
	extraBusy atomic.Bool  // a goroutine of OverNow is asking Extra
	Refused   [NumRefusals]atomic.Uint64
	Shed      atomic.Uint64 // log entries released early under pressure
}

// Total returns the bytes counted against the budget now, asking Extra again first if its last answer is
// older than extraRefresh.
func (b *Budget) Total() int64 { return b.count(true) }

// Over reports whether the relay holds more than its budget. It may wait for Extra: admission (create, join)
// uses it.
func (b *Budget) Over() bool { return b.count(true) > b.Max }

// OverNow is Over for the frame path, which never waits for Extra: that is the key directory's, behind the
// lock that every login, proof and lookup takes, and a frame that waited for it would hold its room (and, for
// a presence event, every room) meanwhile. An answer that is due is asked for on a goroutine of its own, and
// the last one is used.
func (b *Budget) OverNow() bool { return b.count(false) > b.Max }

// count is Total, asking Extra in the caller (wait) or on a goroutine of its own, one at a time.
func (b *Budget) count(wait bool) int64 {
	t := b.Held.Load() + b.Conns.Load()*b.PerConn
	if b.Extra == nil {
		return t
	}
	now := time.Now().UnixNano()
	if at := b.extraAt.Load(); now-at >= int64(extraRefresh) {
		switch {
		case wait:
			b.extraAt.Store(now)
			b.extraVal.Store(b.Extra())
		case b.extraBusy.CompareAndSwap(false, true):
			b.extraAt.Store(now)
			go func() {
				defer b.extraBusy.Store(false)
				b.extraVal.Store(b.Extra())
			}()
		}
	}
	return t + b.extraVal.Load()
}

const overMemoryMsg = "the relay is at its memory budget; try again later"

// Refuse counts a refusal and returns the error for it.
func (b *Budget) Refuse(what Refusal) *Error {
	b.Refused[what].Add(1)
	return Errorf(protocol.CodeOverMemory, overMemoryMsg)
}
