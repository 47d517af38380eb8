package relay

import (
	"errors"
	"fmt"
	"time"

	"github.com/cleanrelay/cleanrelay/relay/protocol"
)

// Config holds every limit of the relay. The zero value of a field means "use the default" stated on it, so
// Config{} is a working configuration. Tests shrink the limits; operators change them through cmd/cleanrelay.
type Config struct {
	// MaxFrame is the largest frame payload a client may send, in bytes. Optional; default 65536 (64 KiB).
	// A WebSocket message larger than MaxFrame+1 (the channel byte) closes that connection with 1009.
	MaxFrame int

	// RoomBuffer is how many entries (frames and presence events) a room keeps that some member has not yet
	// acknowledged. It is the per-member bound of protocol §5: a member that falls further behind receives lost.
	// Optional; default 256, at least 8.
	RoomBuffer int

	// RoomBufferBytes caps the payload bytes a room keeps buffered. Optional; default 1 MiB, at least MaxFrame.
	RoomBufferBytes int

	// MaxMembers is the largest room a creator may ask for. Optional; default 8, at least 2, at most 1000.
	MaxMembers int

	// DefaultMembers is the size of a room whose creator does not ask. Optional; default 2.
	DefaultMembers int

	// MaxRoomsPerConn is how many rooms one connection may hold at once. Optional; default 8, at most 255
	// (channels are one byte on the wire).
	MaxRoomsPerConn int

	// MaxRooms is how many rooms the relay holds at once. When it is full, a new room takes the place of the
	// room with nobody attached longest; rooms with a member attached keep theirs. Optional; default
	// MaxConns × MaxRoomsPerConn (80,000), as many as the connections can hold attached, so that a client
	// cannot fill the table before it holds every connection. A smaller table can be held full by one client
	// with MaxRooms/MaxRoomsPerConn connections (docs/operations.md).
	MaxRooms int

	// MaxConns is how many WebSocket connections the relay holds at once. Optional; default 10000.
	MaxConns int

	// Grace is how long a member whose connection dropped keeps its place for a resume. Optional; default 2m.
	Grace time.Duration

	// OrphanGrace replaces Grace for the creator of an anonymous room that nobody else has joined yet, so that
	// rooms created and left behind at once do not hold places in the table for a whole grace. It is long
	// enough for a page reload. Optional; default 15s, at most Grace.
	OrphanGrace time.Duration

	// MaxRoomLifetime ends a room, whatever its activity, this long after it was created. Optional; default 24h.
	MaxRoomLifetime time.Duration

	// IdleTimeout closes a connection that has held no room for this long. Optional; default 2m.
	IdleTimeout time.Duration

	// HandshakeTimeout bounds the WebSocket upgrade. Optional; default 10s.
	HandshakeTimeout time.Duration

	// WriteTimeout is the deadline of every write to a connection; a connection that cannot take a write
	// within it is closed and its memberships become away. Optional; default 10s.
	WriteTimeout time.Duration

	// PongWait is how long the relay waits for any message, pong included, before it closes a connection.
	// Optional; default 60s.
	PongWait time.Duration

	// PingPeriod is how often the relay pings each connection; it must be shorter than PongWait.
	// Optional; default PongWait*5/12 (25s for the default PongWait).
	PingPeriod time.Duration

	// RateFrames is how many messages per second one connection may send on average; a faster sender is read
	// more slowly (TCP backpressure), never dropped. Optional; default 2000.
	RateFrames float64

	// RateBurst is how many messages a connection may send at once above RateFrames. Optional; default
	// RoomBuffer/4 (64). It stays well inside RoomBuffer so that a sender's burst cannot outrun a healthy
	// receiver's writer by a whole room buffer before that writer is even scheduled (protocol §5).
	RateBurst int

	// AckEvery is how often, in entries received, clients are asked to acknowledge (sent in hello). Optional;
	// default RoomBuffer/8, so that the acknowledgment lag of a busy room stays far from RoomBuffer.
	AckEvery int

	// MaxMemory is the relay's memory budget in bytes: past it, it refuses new rooms and joins with
	// over_memory, drops rooms with nobody attached, sheds what room logs keep only for a resume, and refuses
	// frames into rooms that still hold a quarter of their buffer unsent (docs/operations.md, "Memory").
	// Optional; default half of the machine's memory (or of its control group's limit, if lower), 1 GiB where
	// the relay cannot tell; at least 16 MiB.
	MaxMemory int64

	// ExtraHeld, if set, returns bytes held by other parts of the process (the key directory's HeldBytes),
	// counted against MaxMemory with the relay's own. It is called at most every 100 ms, from any goroutine,
	// and must not block. Optional.
	ExtraHeld func() int64

	// Authenticator, if set, establishes who each WebSocket session belongs to from its handshake (the
	// accounts package's, for logged-in sessions). Optional; nil: every session is anonymous.
	Authenticator Authenticator

	// MessageTimeout closes (1008 "incomplete") a connection that keeps a message unfinished for this long,
	// so that a fragment held open by pings does not hold its buffer for ever. Optional; default 30s.
	MessageTimeout time.Duration

	// AckDelay is how long after receiving an entry it has not acknowledged a client is asked to acknowledge
	// at the latest (sent in hello, in milliseconds). Optional; default 100ms, at most Grace.
	AckDelay time.Duration
}

// DefaultConfig returns the configuration Config{} stands for: every field at its default.
func DefaultConfig() Config { return Config{}.withDefaults() }

// DefaultMaxMemory is MaxMemory's default on this machine: half of its memory (or of its control group's
// limit), 1 GiB if it cannot tell.
func DefaultMaxMemory() int64 {
	if m := machineMemory(); m > 0 {
		return m / 2
	}
	return 1 << 30
}

// maxControl is the largest text (control) message a client may send. It is part of the protocol, not a knob.
const maxControl = protocol.MaxControl

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.MaxFrame, 64<<10)
	def(&c.RoomBuffer, 256)
	def(&c.RoomBufferBytes, 1<<20)
	def(&c.MaxMembers, 8)
	def(&c.DefaultMembers, 2)
	def(&c.MaxRoomsPerConn, 8)
	def(&c.MaxConns, 10000)
	def(&c.MaxRooms, c.MaxConns*c.MaxRoomsPerConn)
	defDur(&c.Grace, 2*time.Minute)
	defDur(&c.OrphanGrace, min(15*time.Second, c.Grace))
	defDur(&c.MaxRoomLifetime, 24*time.Hour)
	defDur(&c.IdleTimeout, 2*time.Minute)
	defDur(&c.HandshakeTimeout, 10*time.Second)
	defDur(&c.WriteTimeout, 10*time.Second)
	defDur(&c.PongWait, 60*time.Second)
	defDur(&c.PingPeriod, c.PongWait*5/12)
	if c.RateFrames == 0 {
		c.RateFrames = 2000
	}
	def(&c.RateBurst, c.RoomBuffer/4)
	def(&c.AckEvery, c.RoomBuffer/8)
	defDur(&c.AckDelay, min(100*time.Millisecond, c.Grace))
	defDur(&c.MessageTimeout, 30*time.Second)
	if c.MaxMemory == 0 {
		c.MaxMemory = DefaultMaxMemory()
	}
	return c
}

// Validate reports the first limit that is out of range, naming it, after defaults are applied.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(c.MaxFrame >= 1 && c.MaxFrame <= protocol.MaxFrameLimit, "max frame must be 1..%d bytes, got %d", protocol.MaxFrameLimit, c.MaxFrame)
	check(c.RoomBuffer >= 8, "room buffer must be at least 8 entries, got %d", c.RoomBuffer)
	check(c.RoomBufferBytes >= c.MaxFrame, "room buffer bytes (%d) must be at least max frame (%d)", c.RoomBufferBytes, c.MaxFrame)
	check(c.MaxMembers >= 2 && c.MaxMembers <= 1000, "max members must be 2..1000, got %d", c.MaxMembers)
	check(c.DefaultMembers >= 2 && c.DefaultMembers <= c.MaxMembers, "default members must be 2..max members (%d), got %d", c.MaxMembers, c.DefaultMembers)
	check(c.MaxRoomsPerConn >= 1 && c.MaxRoomsPerConn <= 255, "max rooms per connection must be 1..255, got %d", c.MaxRoomsPerConn)
	check(c.MaxRooms >= 1, "max rooms must be at least 1, got %d", c.MaxRooms)
	check(c.MaxConns >= 1, "max connections must be at least 1, got %d", c.MaxConns)
	check(c.Grace > 0, "grace must be positive, got %v", c.Grace)
	check(c.OrphanGrace > 0 && c.OrphanGrace <= c.Grace, "orphan grace must be positive and at most grace (%v), got %v", c.Grace, c.OrphanGrace)
	check(c.MaxRoomLifetime > 0, "max room lifetime must be positive, got %v", c.MaxRoomLifetime)
	check(c.PingPeriod > 0 && c.PingPeriod < c.PongWait, "ping period (%v) must be positive and shorter than pong wait (%v)", c.PingPeriod, c.PongWait)
	check(c.WriteTimeout > 0, "write timeout must be positive, got %v", c.WriteTimeout)
	check(c.RateFrames > 0, "rate must be positive, got %v", c.RateFrames)
	check(c.RateBurst >= 1, "rate burst must be at least 1, got %d", c.RateBurst)
	check(c.AckEvery >= 1 && c.AckEvery <= c.RoomBuffer, "ack interval must be 1..room buffer (%d), got %d", c.RoomBuffer, c.AckEvery)
	check(c.MaxMemory >= 16<<20, "max memory must be at least 16 MiB, got %d bytes", c.MaxMemory)
	check(c.MessageTimeout > 0, "message timeout must be positive, got %v", c.MessageTimeout)
	check(c.AckDelay >= time.Millisecond && c.AckDelay <= c.Grace, "ack delay must be 1ms..grace (%v), got %v", c.Grace, c.AckDelay)
	return errors.Join(errs...)
}
