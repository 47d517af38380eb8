package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"time"
)

// HTTPConfig holds the limits of the relay's plain HTTP side: every request, and every connection until it
// becomes a WebSocket (WebSockets count under Config.MaxConns). The zero value of a field means its default.
type HTTPConfig struct {
	// MaxConns bounds the plain HTTP connections held at once, so that slow or idle ones cannot use up the
	// process's files. A connection beyond it makes room by closing the oldest one that is idle between
	// requests, else the oldest one still sending a request (headers, or a body not yet read to its end),
	// else itself: a request the relay is working on is never cut. Optional; default 1024.
	MaxConns int

	// HeaderTimeout bounds reading a request's headers. Optional; default 10s.
	HeaderTimeout time.Duration

	// BodyTimeout bounds reading a request's body, after its headers: a body sent slower is cut. Optional;
	// default 20s (the largest API body, 80 KiB, needs 4 KiB/s).
	BodyTimeout time.Duration

	// IdleTimeout closes a kept-alive connection that sends no new request for this long. Optional;
	// default 60s.
	IdleTimeout time.Duration
}

// WithDefaults returns c with every zero field set to its default.
func (c HTTPConfig) WithDefaults() HTTPConfig {
	if c.MaxConns == 0 {
		c.MaxConns = 1024
	}
	if c.HeaderTimeout == 0 {
		c.HeaderTimeout = 10 * time.Second
	}
	if c.BodyTimeout == 0 {
		c.BodyTimeout = 20 * time.Second
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 60 * time.Second
	}
	return c
}

// Validate reports the first limit out of range, naming it, after defaults are applied.
func (c HTTPConfig) Validate() error {
	c = c.WithDefaults()
	switch {
	case c.MaxConns < 1:
		return fmt.Errorf("max HTTP connections must be at least 1, got %d", c.MaxConns)
	case c.HeaderTimeout < 0:
		return errors.New("HTTP header timeout must not be negative")
	case c.BodyTimeout < 0:
		return errors.New("HTTP body timeout must not be negative")
	case c.IdleTimeout < 0:
		return errors.New("HTTP idle timeout must not be negative")
	}
	return nil
}

// NewHTTPServer returns an http.Server that serves h within cfg's limits, for any listener of the relay.
// errorLog receives net/http's own messages (they name client addresses: give it a logger that drops them).
func NewHTTPServer(h http.Handler, cfg HTTPConfig, errorLog *log.Logger) *http.Server {
	cfg = cfg.WithDefaults()
	g := &connGuard{max: cfg.MaxConns, conns: make(map[net.Conn]*guarded)}
	return &http.Server{
		Handler:           g.wrap(h),
		ReadHeaderTimeout: cfg.HeaderTimeout,
		// The whole request, headers and body. A WebSocket is not held to it: hijacking the connection
		// clears the deadline (TestSlowRequestsAreCut).
		ReadTimeout:    cfg.HeaderTimeout + cfg.BodyTimeout,
		IdleTimeout:    cfg.IdleTimeout,
		MaxHeaderBytes: 16 << 10,
		ConnState:      g.track,
		ConnContext:    func(ctx context.Context, c net.Conn) context.Context { return context.WithValue(ctx, guardKey{}, c) },
		ErrorLog:       errorLog,
	}
}

type guardKey struct{}

// connGuard keeps the plain HTTP connections of one server within a bound.
type connGuard struct {
	max int

	mu sync.Mutex
	// Guarded by mu.
	conns map[net.Conn]*guarded
	order uint64
}

// guarded is what the guard knows of one connection. Guarded by connGuard.mu.
type guarded struct {
	state   http.ConnState
	since   uint64 // when it entered its state, in the guard's order
	working bool   // a handler runs for it and has its request whole
}

// evictable ranks a connection for closing: 1 idle or new, 2 still sending its request, 0 never.
func (g *guarded) evictable() int {
	switch {
	case g.state == http.StateNew || g.state == http.StateIdle:
		return 1
	case !g.working:
		return 2
	}
	return 0
}

// track follows each connection's state (http.Server.ConnState).
func (g *connGuard) track(c net.Conn, st http.ConnState) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.order++
	switch st {
	case http.StateNew:
		g.conns[c] = &guarded{state: st, since: g.order}
		if len(g.conns) > g.max {
			g.evictLocked(c)
		}
	case http.StateActive, http.StateIdle:
		if x := g.conns[c]; x != nil {
			x.state, x.since, x.working = st, g.order, false
		}
	case http.StateHijacked, http.StateClosed:
		delete(g.conns, c)
	}
}

// evictLocked closes one connection to make room for the new one, c.
func (g *connGuard) evictLocked(c net.Conn) {
	var victim net.Conn
	best, bestSince := 0, uint64(0)
	for x, s := range g.conns {
		r := s.evictable()
		if x == c || r == 0 {
			continue
		}
		if victim == nil || r < best || (r == best && s.since < bestSince) {
			victim, best, bestSince = x, r, s.since
		}
	}
	if victim == nil {
		victim = c
	}
	delete(g.conns, victim)
	victim.Close()
}

// wrap marks a connection as working once its handler has the whole request: its headers, and its body read
// to the end (or none).
func (g *connGuard) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := r.Context().Value(guardKey{}).(net.Conn)
		if c != nil {
			if r.ContentLength == 0 {
				g.working(c)
			} else {
				r.Body = &bodyWatch{ReadCloser: r.Body, done: func() { g.working(c) }}
			}
		}
		h.ServeHTTP(w, r)
	})
}

func (g *connGuard) working(c net.Conn) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if x := g.conns[c]; x != nil && x.state == http.StateActive {
		x.working = true
	}
}

// bodyWatch calls done once its body has been read to the end.
type bodyWatch struct {
	io.ReadCloser
	done func()
	once sync.Once
}

func (b *bodyWatch) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.once.Do(b.done)
	}
	return n, err
}
