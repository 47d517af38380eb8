package client

import "fmt"

// Outbox remembers the most recent frames a program sent into one room, so that after a resume it can send
// again the ones the relay never received: those beyond the resumed reply's In (docs/protocol.md §4.2).
type Outbox struct {
	max    int
	sent   uint64   // frames ever added
	frames [][]byte // the last min(sent, max), oldest first, in a ring starting at sent%max
}

// NewOutbox keeps the last max frames.
func NewOutbox(max int) *Outbox { return &Outbox{max: max, frames: make([][]byte, 0, max)} }

// Add records a copy of a frame that is about to be sent.
func (o *Outbox) Add(payload []byte) {
	p := append([]byte(nil), payload...)
	if len(o.frames) < o.max {
		o.frames = append(o.frames, p)
	} else {
		o.frames[o.sent%uint64(o.max)] = p
	}
	o.sent++
}

// Sent returns how many frames were added.
func (o *Outbox) Sent() uint64 { return o.sent }

// Since returns, oldest first, the frames numbered in+1 … Sent(): what to send again after a resume whose reply
// said the relay had accepted in frames. It fails if some of them are no longer remembered.
func (o *Outbox) Since(in uint64) ([][]byte, error) {
	if in > o.sent {
		return nil, fmt.Errorf("the relay accepted %d frames but only %d were sent", in, o.sent)
	}
	missing := o.sent - in
	if missing > uint64(len(o.frames)) {
		return nil, fmt.Errorf("%d frames need sending again but only the last %d are remembered", missing, len(o.frames))
	}
	out := make([][]byte, 0, missing)
	for n := in; n < o.sent; n++ {
		out = append(out, o.frames[n%uint64(o.max)])
	}
	return out, nil
}
