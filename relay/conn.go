package relay

import (
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"github.com/cleanrelay/cleanrelay/relay/internal/ws"
	"github.com/cleanrelay/cleanrelay/relay/protocol"
)

// closeReason is a WebSocket close code and its reason text (docs/protocol.md §7).
type closeReason struct {
	code int
	text string
}

var (
	closeNormal   = closeReason{protocol.CloseNormal, ""}
	closeShutdown = closeReason{protocol.CloseGoingAway, protocol.ReasonShutdown}
	closeSlow     = closeReason{protocol.ClosePolicyViolation, protocol.CloseSlow}
	closeIdle     = closeReason{protocol.ClosePolicyViolation, protocol.CloseIdle}
	closeRevoked  = closeReason{protocol.ClosePolicyViolation, protocol.CloseRevoked}
	// closeResume ends a connection one of whose rooms is sequenced on another cluster node now
	// (rooms.ReasonResume): its client resumes, as after any dropped connection.
	closeResume = closeReason{protocol.CloseGoingAway, ""}
)

// Closed reasons of docs/protocol.md §4.1.
const (
	reasonBurned   = protocol.ReasonBurned
	reasonShutdown = protocol.ReasonShutdown
	reasonRevoked  = protocol.ReasonRevoked
	reasonMoved    = protocol.ReasonMoved
)

// closeWait bounds the polite close frame at the end of a connection.
const closeWait = time.Second

// maxQueuedControl bounds the control messages (replies, errors, notices) waiting for one connection's
// writer. A client that provokes more than this without reading is disconnected as slow.
const maxQueuedControl = 64

// conn is one client's WebSocket. Its reader (reading.go) handles what the client sends; its writer
// (writeLoop, a pass run on a shared worker) is the only one that writes to the socket. Neither holds a
// goroutine while the connection is idle.
// The connection ends when both are over (endPart).
type conn struct {
	// Static after construction.
	srv      *Server
	ws       *websocket.Conn
	identity Identity
	wake     chan struct{} // capacity 1: "there may be something to write"
	done     chan struct{} // closed by kill: the writer says goodbye and stops

	// Static once reading started: the socket and the poller watching it, for readiness-driven reads.
	raw    syscall.RawConn
	poll   *poller
	pollID uint64

	// A writer runs (on a worker) only while there is something to write, and a reader only while there is
	// something to read (readState), so an idle connection costs no goroutine. writing is true while a
	// writer runs (and forever after the goodbye).
	writing   atomic.Bool
	pingDue   atomic.Bool
	pingTimer *time.Timer
	nextPing  atomic.Int64 // unix ns; owned by pingTick
	lastRead  atomic.Int64 // unix ns of the last complete frame read, pong included
	readState atomic.Int32
	parts     atomic.Int32 // reader and writer not yet ended; the last one to end tears the connection down

	// Owned by the running writer.
	refs []chanRef

	mu sync.Mutex
	// Guarded by mu.
	chans    []chanRef
	ctrl     [][]byte // queued control messages, written before any entry
	pong     []byte   // the payload of the ping to answer (only the latest is, RFC 6455 §5.5.3)
	pongDue  bool
	killed   bool
	gone     bool // the writer has said goodbye: nothing queued from now on would be written
	why      closeReason
	lastRoom time.Time // when the connection last held a room (or started)

	// Owned by the running reader.
	limiter tokenBucket
	rd      ws.Reader
}

func newConn(s *Server, wc *websocket.Conn, id Identity) *conn {
	now := time.Now()
	c := &conn{
		srv: s, ws: wc, identity: id,
		wake: make(chan struct{}, 1), done: make(chan struct{}),
		lastRoom: now,
		limiter:  tokenBucket{rate: s.cfg.RateFrames, burst: float64(s.cfg.RateBurst), tokens: float64(s.cfg.RateBurst), last: now},
		rd:       ws.NewReader(readerLimits(&s.cfg), &s.mem.Held),
	}
	// Both parts from the start: Close may kill a connection between its registration and its start, and the
	// writer's goodbye then ends its part before the connection has started.
	c.parts.Store(2)
	return c
}

// wakeUp tells the writer there may be something new to write, starting one if none runs. It never blocks.
func (c *conn) wakeUp() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
	if c.writing.CompareAndSwap(false, true) {
		c.srv.workers.run(task{c: c, write: true})
	}
}

// kill makes the writer close the connection with why (the first reason given wins), and ends reading. It
// never blocks.
func (c *conn) kill(why closeReason) {
	c.mu.Lock()
	if c.killed {
		c.mu.Unlock()
		return
	}
	c.killed, c.why = true, why
	close(c.done)
	if why == closeSlow && c.ws != nil { // (the fuzz test drives conns without a socket)
		// Unblock a write stuck on a peer that stopped reading, so the writer ends at once; and should the
		// writer have armed a fresh deadline just after this one, cut the socket a moment later.
		c.ws.NetConn().SetWriteDeadline(time.Now())
		time.AfterFunc(closeWait, func() { c.ws.NetConn().Close() })
	}
	c.wakeUp() // a writer must say goodbye
	c.mu.Unlock()
	c.stopReading()
}

// sendControl queues a control message for the writer. A connection that lets too many pile up is slow.
func (c *conn) sendControl(msg []byte) {
	c.mu.Lock()
	gone := c.gone
	full := len(c.ctrl) >= maxQueuedControl
	if !full && !gone {
		c.ctrl = append(c.ctrl, msg)
	}
	c.mu.Unlock()
	if gone {
		clear(msg)
		return
	}
	if full {
		clear(msg) // it may carry a capability (a dialog notice)
		c.srv.stats.drop(dropSlow)
		c.kill(closeSlow)
		return
	}
	c.wakeUp()
}

// start says hello and starts the keepalive and reading. From then on the connection runs on its own until
// both its reader and its writer have ended; then teardown makes every membership away.
func (c *conn) start() {
	now := time.Now()
	c.lastRead.Store(now.UnixNano())
	c.nextPing.Store(now.Add(c.srv.cfg.PingPeriod).UnixNano())
	// The timer is armed only once it is stored, so that pingTick always finds it.
	c.pingTimer = time.AfterFunc(time.Hour, c.pingTick)
	c.pingTimer.Reset(c.srv.cfg.PingPeriod)
	c.sendControl(append([]byte(nil), c.srv.hello...)) // a copy: the writer zeroes what it wrote
	c.startReading()
}

// endPart records that the reader or the writer has ended; after both, the connection is torn down.
// async: the caller may hold locks the teardown takes.
func (c *conn) endPart(async bool) {
	if c.parts.Add(-1) != 0 {
		return
	}
	if async {
		go c.teardown()
		return
	}
	c.teardown()
}

func (c *conn) teardown() {
	c.dropControl()
	c.pingTimer.Stop()
	c.srv.table.Away(c, c.members())
	c.srv.ended(c)
}

// dropControl zeroes the control messages queued after the writer's goodbye (a reply to a request handled
// while the connection was being killed: it may carry a capability or a resume token) and refuses new ones.
func (c *conn) dropControl() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gone = true
	wipeAll(c.ctrl)
	c.ctrl = nil
}

// pingTick asks the writer for a ping (and an idle check) every PingPeriod, and closes a connection from which
// nothing was read for PongWait (no reader waits with a deadline). It re-arms itself until the connection
// ends.
func (c *conn) pingTick() {
	select {
	case <-c.done:
		return
	default:
	}
	cfg := &c.srv.cfg
	now := time.Now().UnixNano()
	deadline := c.lastRead.Load() + int64(cfg.PongWait)
	if now >= deadline {
		c.kill(closeNormal)
		return
	}
	next := c.nextPing.Load()
	if now >= next {
		c.pingDue.Store(true)
		c.wakeUp()
		next = now + int64(cfg.PingPeriod)
		c.nextPing.Store(next)
	}
	c.pingTimer.Reset(time.Duration(min(next, deadline) - now))
}

// idleCheck closes a connection that has held no room for the idle timeout. It reports false if it did.
func (c *conn) idleCheck() bool {
	c.mu.Lock()
	idle := len(c.chans) == 0 && time.Since(c.lastRoom) > c.srv.cfg.IdleTimeout
	c.mu.Unlock()
	if idle {
		c.srv.stats.drop(dropIdle)
		c.kill(closeIdle)
		return false
	}
	return true
}

// tokenBucket paces a connection's reads to rate messages per second with a burst.
type tokenBucket struct {
	rate, burst, tokens float64
	last                time.Time
}

// take spends one token and returns how long the caller must wait before it may go on.
func (b *tokenBucket) take(now time.Time) time.Duration {
	b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	b.tokens--
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(-b.tokens / b.rate * float64(time.Second))
}
