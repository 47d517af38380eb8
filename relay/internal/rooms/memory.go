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

	Held     atomic.Int64 // bytes of buffers held for clients (room logs, unfinished messages)
	extraVal atomic.Int64 // the last answer of Extra
	extraAt  atomic.Int64 // unix ns of that answer
	Refused  [NumRefusals]atomic.Uint64
	Shed     atomic.Uint64 // log entries released early under pressure
}

// Total returns the bytes counted against the budget now.
func (b *Budget) Total() int64 {
	t := b.Held.Load() + b.Conns.Load()*b.PerConn
	if b.Extra != nil {
		now := time.Now().UnixNano()
		if now-b.extraAt.Load() >= int64(extraRefresh) {
			b.extraAt.Store(now)
			b.extraVal.Store(b.Extra())
		}
		t += b.extraVal.Load()
	}
	return t
}

// Over reports whether the relay holds more than its budget.
func (b *Budget) Over() bool { return b.Total() > b.Max }

// Refuse counts a refusal and returns the error for it.
func (b *Budget) Refuse(what Refusal) *Error {
	b.Refused[what].Add(1)
	return Errorf(protocol.CodeOverMemory, "the relay is at its memory budget; try again later")
}
