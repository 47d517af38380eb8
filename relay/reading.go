package relay

// How a connection is read. On Linux, a TCP connection waits in the server's poller while idle and is read by
// one of the server's workers when bytes arrive (poll_linux.go); a TLS connection, or any connection elsewhere,
// is read by a goroutine of its own for its whole life (readBlocking). Both feed the same frame parser
// (wsread.go).

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
		return
	}
	c.readState.Store(readRunning)
	go c.readBlocking()
}

// readBlocking reads c until the socket fails or closes, or a frame ends the connection.
func (c *conn) readBlocking() {
	b := getBuf(blockingReadSize)
	nc := c.ws.NetConn()
	for {
		n, err := nc.Read(b.b)
		if n > 0 && !c.consume(b.b[:n]) {
			break
		}
		if err != nil {
			break
		}
	}
	putBuf(b)
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
	c.rd.release()
	c.kill(closeNormal)
	c.endPart(fromKill)
}
