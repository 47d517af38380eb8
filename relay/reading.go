package relay

import (
	"time"

	"github.com/cleanrelay/cleanrelay/relay/internal/ws"
)

// How a connection is read. On Linux, a TCP connection waits in the server's poller while idle and is read by
// one of the server's workers when bytes arrive (poll_linux.go); a TLS connection, or any connection elsewhere,
// is read by a goroutine of its own for its whole life (readBlocking). Both feed the connection's WebSocket
// reader (package ws) through consume, which acts on what it finds: pacing, replies, forwarding, the end.

const (
	// pollReadSize is how many bytes one read system call takes on a readiness-driven connection. The buffer
	// is borrowed from the pool only while the socket has bytes, so it can hold a burst of frames.
	pollReadSize = 16 << 10
	// blockingReadSize is the buffer of a connection read by a goroutine of its own (TLS, or no poller); it is
	// held as long as the connection lives, so it stays as small as gorilla's was.
	blockingReadSize = 1024
)

// minFreeFragment is the smallest fragment of a message that costs nothing against the rate limit: a message
// costs one, and so do each ping, pong and smaller fragment, so that floods of them are paced like messages.
const minFreeFragment = 1024

// Reader states of a connection (conn.readState). Only one reader runs at a time: the poller moves a
// connection from armed to running before it starts a reader (or from running to pending), and kill moves it
// from armed to ended; a running reader moves it back to armed when it parks, or to ended.
const (
	readNotStarted int32 = iota
	readArmed            // waiting in the poller, no goroutine
	readRunning          // a reader owns c.rd
	readPending          // a reader owns c.rd, and the poller reported bytes since it started
	readEnded            // nothing more will be read
)

// startReading begins reading c: through the server's poller where it can, or with a goroutine.
func (c *conn) startReading() {
	if p := c.srv.poller(); p != nil && p.watch(c) {
		// A kill that came before the connection was watched found no reader to end: end reading here, as a
		// reader does when it parks.
		select {
		case <-c.done:
			if c.readState.CompareAndSwap(readArmed, readEnded) {
				c.endReadingOwned(false)
			}
		default:
		}
		return
	}
	c.readState.Store(readRunning)
	go c.readBlocking()
}

// readBlocking reads c until the socket fails or closes, or a frame ends the connection.
func (c *conn) readBlocking() {
	b := ws.GetBuf(blockingReadSize)
	nc := c.ws.NetConn()
	for {
		n, err := nc.Read(b.B)
		if n > 0 && !c.consume(b.B[:n]) {
			break
		}
		if err != nil {
			break
		}
	}
	ws.PutBuf(b)
	c.endReading()
}

// stopReading ends reading on behalf of kill when no reader runs; a running reader ends by itself, as it
// checks c.done once it has parked and its socket is closed by the writer's goodbye.
func (c *conn) stopReading() {
	if c.readState.CompareAndSwap(readArmed, readEnded) {
		c.endReadingOwned(true)
	}
}

// endReading ends reading from the running reader.
func (c *conn) endReading() {
	c.readState.Store(readEnded)
	c.endReadingOwned(false)
}

// endReadingOwned releases what reading holds, once nothing more will be read: a partial message is zeroed
// and returned, and the connection, if it is not yet killed, closes normally. fromKill: the caller may hold
// locks that the connection's teardown takes, so a teardown due now runs on a goroutine of its own.
func (c *conn) endReadingOwned(fromKill bool) {
	c.rd.Release()
	c.kill(closeNormal)
	c.endPart(fromKill)
}

// readerLimits are the bounds of a connection's WebSocket reader under cfg.
func readerLimits(cfg *Config) ws.Limits {
	return ws.Limits{
		MaxMessage: int64(sendHeaderLen + cfg.MaxFrame), MaxText: maxControl, MessageTimeout: cfg.MessageTimeout,
		// The channel byte is kept apart, so that a frame's buffer holds its payload alone, in the payload's
		// size class, and goes into the room's log as it is.
		Head: sendHeaderLen,
	}
}

// consume handles bytes read from the client. It returns false when reading is over: the connection is
// killed with the reason (a close frame, a protocol error, an oversized message, or a kill while waiting for
// the rate limit).
func (c *conn) consume(p []byte) bool {
	for {
		ev, n, err := c.rd.Feed(p)
		p = p[n:]
		if err != nil {
			c.readFailed(err)
			return false
		}
		if ev.Kind == ws.None {
			return true
		}
		c.lastRead.Store(time.Now().UnixNano())
		if !c.handleEvent(&ev) {
			return false
		}
	}
}

// readFailed ends a connection whose client broke the protocol or a limit.
func (c *conn) readFailed(err error) {
	e := err.(*ws.Error)
	switch e {
	case ws.ErrIncomplete:
		c.srv.stats.drop(dropIncomplete)
	case ws.ErrTooBig:
		c.srv.stats.drop(dropOversize)
	}
	c.kill(closeReason{e.Code, e.Reason})
}

// handleEvent acts on one frame the reader completed. It returns false if the connection was killed.
func (c *conn) handleEvent(ev *ws.Event) bool {
	switch ev.Kind {
	case ws.Ping:
		if !c.pace() {
			return false
		}
		c.queuePong(ev.Control) // the writer is the only one that writes
		return true
	case ws.Pong:
		return c.pace() // lastRead, set for every frame, is all a pong is for
	case ws.Close:
		// Answer with the client's code (RFC 6455 §5.5.1); no status code at all gets an empty close frame.
		c.kill(closeReason{ev.Code, ""})
		return false
	case ws.Fragment:
		return ev.Len >= minFreeFragment || c.pace()
	default:
		return c.handleMessage(ev)
	}
}

// pace spends one message of the connection's rate limit, waiting while there is none. It returns false if
// the connection was killed while it waited.
func (c *conn) pace() bool {
	wait := c.limiter.take(time.Now())
	if wait <= 0 {
		return true
	}
	// Waiting here, not reading, is the backpressure: the client's bytes stay in the kernel.
	c.srv.stats.rateLimited.Add(1)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.done:
		return false
	}
}

// handleMessage paces and handles one complete message, and disposes of its payload: a frame's goes to its
// room. It returns false if the connection was killed while it waited for the rate limit.
func (c *conn) handleMessage(ev *ws.Event) bool {
	if !c.pace() {
		ws.PutPayload(ev.Payload)
		return false
	}
	if ev.Binary {
		c.handleFrame(ev.Payload)
		return true
	}
	defer ws.PutPayload(ev.Payload)
	if ev.Len > maxControl {
		c.srv.stats.refusedRequests.Add(1)
		c.sendControl(appendError(nil, 0, errorf(codeControlSize, "control message is %d bytes, the limit is %d", ev.Len, maxControl)))
		return true
	}
	c.handleControl(ev.Payload.Text())
	return true
}
