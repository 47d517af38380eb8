//go:build linux

package relay

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/cleanrelay/cleanrelay/relay/internal/ws"
)

// poller watches idle connections for bytes to read with an epoll instance of its own, so that an idle
// connection needs no goroutine. Each socket is registered once, edge-triggered: an event hands an idle
// connection to one worker (readReady), which reads until the socket is empty; an event for a connection
// being read tells its worker to look again before it parks (readPending). Neither costs a system call.
//
// The epoll instance is itself a pollable file: the poller's goroutine waits for it in Go's network poller,
// like any socket, instead of blocking an OS thread in epoll_wait.
type poller struct {
	// Static after construction.
	ep   *os.File
	epfd int
	raw  syscall.RawConn

	// life is held (read) while epfd is used, so that close cannot release the number meanwhile.
	life     sync.RWMutex
	isClosed bool // guarded by life

	mu sync.Mutex
	// Guarded by mu. Events carry an id rather than the descriptor, which may be reused as soon as a
	// connection is closed.
	conns  map[uint64]*conn
	nextID uint64
}

// pollEvents is what a connection is watched for: bytes, or the peer closing or resetting it
// (EPOLLERR and EPOLLHUP are always reported).
const pollEvents = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET

// pollBatch is how many events one wait returns at most.
const pollBatch = 128

func newPoller() (*poller, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("failed to create an epoll instance: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("failed to make the epoll instance non-blocking: %w", err)
	}
	ep := os.NewFile(uintptr(fd), "epoll")
	raw, err := ep.SyscallConn()
	if err != nil {
		ep.Close()
		return nil, fmt.Errorf("failed to wait on the epoll instance: %w", err)
	}
	p := &poller{ep: ep, epfd: fd, raw: raw, conns: make(map[uint64]*conn)}
	go p.loop()
	return p, nil
}

// loop hands every readable connection to a reader goroutine until the poller is closed.
func (p *poller) loop() {
	events := make([]unix.EpollEvent, pollBatch)
	var n int
	var werr error
	wait := func(fd uintptr) bool {
		n, werr = unix.EpollWait(int(fd), events, 0)
		if werr == unix.EINTR {
			n, werr = 0, nil
		}
		return n > 0 || werr != nil // nothing ready: Go's poller waits until the instance is readable
	}
	for {
		if err := p.raw.Read(wait); err != nil || werr != nil {
			return // closed
		}
		for i := range events[:n] {
			ev := &events[i]
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			p.mu.Lock()
			c := p.conns[id]
			p.mu.Unlock()
			if c != nil {
				c.readable()
			}
		}
	}
}

// add watches c's socket. c's reader state must be readArmed.
func (p *poller) add(c *conn) error {
	p.mu.Lock()
	p.nextID++
	c.pollID = p.nextID
	p.conns[c.pollID] = c
	p.mu.Unlock()
	if err := p.ctl(c, unix.EPOLL_CTL_ADD); err != nil {
		p.remove(c)
		return err
	}
	return nil
}

// ctl registers c's socket. It runs under the socket's reference (RawConn.Control), so the descriptor cannot
// be closed and reused by another connection meanwhile; a closed socket is an error.
func (p *poller) ctl(c *conn, op int) error {
	ev := unix.EpollEvent{Events: pollEvents, Fd: int32(uint32(c.pollID)), Pad: int32(uint32(c.pollID >> 32))}
	p.life.RLock()
	defer p.life.RUnlock()
	if p.isClosed {
		return errors.New("failed to watch a connection: the poller is closed")
	}
	var cerr error
	if err := c.raw.Control(func(fd uintptr) { cerr = unix.EpollCtl(p.epfd, op, int(fd), &ev) }); err != nil {
		return fmt.Errorf("failed to watch a connection: %w", err)
	}
	if cerr != nil {
		return fmt.Errorf("failed to watch a connection: %w", cerr)
	}
	return nil
}

// remove forgets c. Its socket leaves the epoll instance by itself when it is closed.
func (p *poller) remove(c *conn) {
	p.mu.Lock()
	delete(p.conns, c.pollID)
	p.mu.Unlock()
}

// close stops the poller's goroutine. Connections still registered are never reported again.
func (p *poller) close() {
	p.life.Lock()
	defer p.life.Unlock()
	if !p.isClosed {
		p.isClosed = true
		p.ep.Close()
	}
}

// watch starts readiness-driven reading of c if its socket allows it, and reports whether it did.
func (p *poller) watch(c *conn) bool {
	var sc syscall.Conn
	switch nc := c.ws.NetConn().(type) {
	case *net.TCPConn:
		sc = nc
	case *net.UnixConn:
		sc = nc
	default:
		return false // TLS, or a wrapper whose Read does more than the socket's
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	c.raw, c.poll = raw, p
	c.readState.Store(readArmed)
	if err := p.add(c); err != nil {
		c.raw, c.poll = nil, nil
		return false
	}
	return true
}

// readReady reads what c's socket holds, then re-arms it in the poller, or ends reading. It runs on one of the
// server's workers and borrows its read buffer only for this burst.
func (c *conn) readReady() {
	b := ws.GetBuf(pollReadSize)
	var n, used int
	var rerr error
	read := func(fd uintptr) bool {
		n, rerr = unix.Read(int(fd), b.B)
		return true // never wait here: an empty socket goes back to the poller
	}
	ok := true
	for ok {
		if err := c.raw.Read(read); err != nil {
			ok = false // closed
			break
		}
		if rerr == unix.EINTR {
			continue
		}
		if n > 0 {
			used = max(used, n)
			ok = c.consume(b.B[:n])
			continue
		}
		// EAGAIN: the socket is empty. Anything else is the end: 0 bytes (EOF), a reset, an error.
		ok = errors.Is(rerr, unix.EAGAIN)
		if ok && c.readState.CompareAndSwap(readRunning, readArmed) {
			break
		}
		// An event came while reading (readPending): the edge it reports may be newer than the EAGAIN.
		c.readState.Store(readRunning)
	}
	b.B = b.B[:used] // zero only what was used
	ws.PutBuf(b)
	if !ok {
		c.endReading()
		return
	}
	// Parked. Had kill come before it, it found the reader running and left the end to it.
	select {
	case <-c.done:
		if c.readState.CompareAndSwap(readArmed, readEnded) {
			c.endReadingOwned(false)
		}
	default:
	}
}

// readable is the poller's news that c's socket got bytes (or was closed): an idle connection gets a worker,
// a running reader is told to look again before it parks.
func (c *conn) readable() {
	for {
		switch s := c.readState.Load(); s {
		case readArmed:
			if c.readState.CompareAndSwap(s, readRunning) {
				c.srv.workers.run(task{c: c})
				return
			}
		case readRunning:
			if c.readState.CompareAndSwap(s, readPending) {
				return
			}
		default: // pending already, or ended
			return
		}
	}
}
