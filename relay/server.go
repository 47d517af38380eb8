package relay

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/gorilla/websocket"

	"github.com/cleanrelay/cleanrelay/relay/internal/rooms"
	wsc "github.com/cleanrelay/cleanrelay/relay/internal/ws"
	"github.com/cleanrelay/cleanrelay/static"
)

// Server is a relay: the WebSocket endpoint, its rooms, and the HTTP side that serves the browser client.
// Create it with New, serve Handler on any listener, and end it with Close.
type Server struct {
	// Static after construction.
	cfg      Config
	log      *slog.Logger
	table    *rooms.Table
	mem      *rooms.Budget
	stats    Stats
	upgrader websocket.Upgrader
	workers  *workers
	hello    []byte
	client   http.Handler

	mu sync.Mutex
	// Guarded by mu.
	hosts   map[string]bool // allowed Host header values, lower-case host:port and host forms
	conns   map[*conn]struct{}
	byUser  map[string]map[*conn]struct{} // the connections of each logged-in user, a subset of conns
	closing bool
	poll    *poller // started with the first connection; nil before, and if it could not start
	pollErr error   // why it could not start

	wg sync.WaitGroup // one per connection

	hooks testHooks // set by tests only, before the server serves
}

// testHooks let a test run code at points where the order of events matters.
type testHooks struct {
	registered func(*conn) // between a connection's registration and its start (serveWS)
	writerLook func(*conn) // in the writer, between its two looks at the top of its loop (writeLoop)
}

// New returns a relay with cfg's limits. It fails only if cfg is invalid, naming the limit.
// The Host/Origin allowlist starts empty: call AllowHost for every address the relay is reached at.
func New(cfg Config, clientFiles fs.FS, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid relay configuration: %w", err)
	}
	cfg = cfg.withDefaults()
	if clientFiles == nil {
		clientFiles = static.Files
	}
	s := &Server{
		cfg:     cfg,
		log:     log,
		hosts:   make(map[string]bool),
		conns:   make(map[*conn]struct{}),
		byUser:  make(map[string]map[*conn]struct{}),
		client:  http.FileServerFS(clientFiles),
		workers: newWorkers(),
	}
	s.mem = &rooms.Budget{Max: cfg.MaxMemory, Extra: cfg.ExtraHeld, Conns: &s.stats.conns, PerConn: connHeldBytes}
	s.table = rooms.New(rooms.Config{
		DefaultMembers: cfg.DefaultMembers, MaxMembers: cfg.MaxMembers, MaxRooms: cfg.MaxRooms,
		RoomBuffer: cfg.RoomBuffer, RoomBufferBytes: cfg.RoomBufferBytes,
		Grace: cfg.Grace, OrphanGrace: cfg.OrphanGrace, MaxRoomLifetime: cfg.MaxRoomLifetime,
	}, &s.stats.room, s.mem, log)
	s.upgrader = websocket.Upgrader{
		HandshakeTimeout: cfg.HandshakeTimeout,
		// The relay reads frames itself (package ws), so gorilla's read buffer is never used: the smallest it
		// allows (a control frame's 125 bytes), rather than the 4 KiB of net/http's that it would keep.
		ReadBufferSize: 1,
		// The relay writes frames itself (package ws); a pool that gorilla never draws from keeps it from
		// allocating a write buffer per connection.
		WriteBufferPool:   &handshakeOnlyPool{},
		Subprotocols:      []string{Subprotocol},
		EnableCompression: false, // ciphertext does not compress
		CheckOrigin:       s.originAllowed,
	}
	s.hello = newObj(nil, "hello").num("v", 1).num("maxFrame", uint64(cfg.MaxFrame)).
		num("maxMembers", uint64(cfg.MaxMembers)).num("maxRooms", uint64(cfg.MaxRoomsPerConn)).
		num("buffer", uint64(cfg.RoomBuffer)).num("bufferBytes", uint64(cfg.RoomBufferBytes)).num("grace", uint64(cfg.Grace.Seconds())).
		num("ackEvery", uint64(cfg.AckEvery)).num("ackDelay", uint64(cfg.AckDelay.Milliseconds())).
		num("idle", uint64(cfg.IdleTimeout.Seconds())).float("rate", cfg.RateFrames).num("burst", uint64(cfg.RateBurst)).
		done()
	return s, nil
}

// AllowHost adds an address clients reach the relay at to the Host/Origin allowlist: "host:port", or a bare
// host for port 80 (an onion service). Loopback addresses also allow their "localhost" form.
func (s *Server) AllowHost(hostport string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	hostport = strings.ToLower(hostport)
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		host, port = strings.Trim(hostport, "[]"), "80"
	}
	names := []string{host}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		names = append(names, "localhost")
	}
	for _, h := range names {
		s.hosts[net.JoinHostPort(h, port)] = true
		if port == "80" {
			s.hosts[h] = true
			if strings.Contains(h, ":") {
				s.hosts["["+h+"]"] = true
			}
		}
	}
}

// HostAllowed reports whether host (a request's Host header) is on the allowlist.
func (s *Server) HostAllowed(host string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hosts[strings.ToLower(host)]
}

// originAllowed accepts a handshake without Origin (not a browser) or with an http(s) Origin on an allowed
// host.
func (s *Server) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	host := u.Host
	if _, _, err := net.SplitHostPort(host); err != nil && u.Scheme == "https" {
		host = net.JoinHostPort(strings.Trim(host, "[]"), "443")
	}
	return s.HostAllowed(host)
}

// Config returns the relay's configuration, with every default filled in.
func (s *Server) Config() Config { return s.cfg }

// Stats returns the relay's aggregate counters.
func (s *Server) Stats() Snapshot {
	snap := s.stats.Snapshot()
	m := s.mem
	snap.MemoryHeld, snap.MemoryBudget, snap.MemoryShed = m.Total(), m.Max, m.Shed.Load()
	snap.MemoryRefusals = make(map[string]uint64)
	for i := range m.Refused {
		snap.MemoryRefusals[rooms.RefusalNames[i]] = m.Refused[i].Load()
	}
	return snap
}

// Handler returns the relay's HTTP handler: the WebSocket endpoint at /ws, a health check at /healthz and the
// browser client at /. Requests for a Host that is not allowed get 421.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws", s.serveWS)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /", s.serveClient)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.HostAllowed(r.Host) {
			s.stats.refusedHandshakes[refusedHost].Add(1)
			http.Error(w, "this relay does not serve that host name", http.StatusMisdirectedRequest)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// serveClient serves the browser client with a strict Content-Security-Policy: our own origin only, and the
// WebSocket of this very host.
func (s *Server) serveClient(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; "+
		"connect-src 'self' ws://"+r.Host+" wss://"+r.Host+"; img-src 'self' blob: data:; worker-src 'self'; "+
		"frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
	h.Set("Cache-Control", "no-store")
	if p := r.URL.Path; p != "/" && strings.HasSuffix(p, "/") {
		// No directory listings: the client's files are reached by name only.
		http.NotFound(w, r)
		return
	}
	s.client.ServeHTTP(w, r)
}

func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	if !offers(r, Subprotocol) {
		s.stats.refusedHandshakes[refusedSubprotocol].Add(1)
		http.Error(w, "websocket subprotocol "+Subprotocol+" required", http.StatusBadRequest)
		return
	}
	if !s.originAllowed(r) {
		s.stats.refusedHandshakes[refusedOrigin].Add(1)
		http.Error(w, "websocket origin not allowed", http.StatusForbidden)
		return
	}
	var id Identity
	if s.cfg.Authenticator != nil && !declaresAnonymous(r) {
		var err error
		if id, err = s.cfg.Authenticator.Authenticate(r); err != nil {
			s.stats.refusedHandshakes[refusedAuth].Add(1)
			http.Error(w, "not logged in", http.StatusUnauthorized)
			return
		}
	}
	running := false // the connection's goroutine calls id.ended once it has run
	defer func() {
		if !running && id.Ended != nil {
			id.Ended()
		}
	}()
	s.mu.Lock()
	full := s.closing || len(s.conns) >= s.cfg.MaxConns
	if !full {
		s.wg.Add(1) // reserve the place before unlocking, so Close waits for it
	}
	s.mu.Unlock()
	if full {
		s.stats.refusedHandshakes[refusedCapacity].Add(1)
		http.Error(w, "the relay is at its connection limit; try again later", http.StatusServiceUnavailable)
		return
	}
	ws, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		s.wg.Done()
		s.stats.refusedHandshakes[refusedUpgrade].Add(1)
		return // the upgrader has answered the client
	}
	c := newConn(s, ws, id)
	s.mu.Lock()
	if s.poll == nil && s.pollErr == nil {
		if s.poll, s.pollErr = newPoller(); s.pollErr != nil {
			s.log.Warn("reading every connection with a goroutine of its own", "err", s.pollErr)
		}
	}
	if s.closing {
		s.mu.Unlock()
		s.wg.Done()
		wsc.WriteMessage(ws.NetConn(), wsc.OpClose, websocket.FormatCloseMessage(closeShutdown.code, closeShutdown.text), closeWait)
		ws.Close()
		return
	}
	s.conns[c] = struct{}{}
	if u := c.identity.User; u != "" {
		if s.byUser[u] == nil {
			s.byUser[u] = make(map[*conn]struct{})
		}
		s.byUser[u][c] = struct{}{}
	}
	s.mu.Unlock()
	s.stats.conns.Add(1)
	s.stats.connsTotal.Add(1)
	s.log.Debug("connection opened", "connections_open", s.stats.conns.Load())
	// The connection runs on its own and the handler returns, so net/http's per-request buffers and its deep
	// handler stack are not kept alive for the connection's lifetime. Server.ended calls id.Ended.
	running = true
	if h := s.hooks.registered; h != nil {
		h(c)
	}
	c.start()
}

// poller returns the server's poller, or nil if there is none.
func (s *Server) poller() *poller {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.poll
}

// ended forgets a connection whose reader and writer have both ended.
func (s *Server) ended(c *conn) {
	defer s.wg.Done()
	// The identity's hold (a user's session slot) is released before the connection stops being counted, so that
	// whoever sees the count drop can open a new session at once.
	if c.identity.Ended != nil {
		c.identity.Ended()
	}
	if c.poll != nil {
		c.poll.remove(c)
	}
	s.stats.conns.Add(-1)
	c.mu.Lock()
	why := c.why.text
	c.mu.Unlock()
	if why == "" {
		why = "closed"
	}
	s.log.Debug("connection ended", "why", why, "connections_open", s.stats.conns.Load())
	s.mu.Lock()
	delete(s.conns, c)
	if u := c.identity.User; u != "" {
		delete(s.byUser[u], c)
		if len(s.byUser[u]) == 0 {
			delete(s.byUser, u)
		}
	}
	s.mu.Unlock()
}

// declaresAnonymous reports whether a handshake asks for an anonymous session (/ws?anonymous=1): the relay
// then ignores its cookies, so that no account can reach the session, and a stale ticket cannot refuse it.
func declaresAnonymous(r *http.Request) bool {
	return r.URL.Query().Get("anonymous") == "1"
}

// offers reports whether the handshake offers subprotocol p.
func offers(r *http.Request, p string) bool {
	for _, q := range websocket.Subprotocols(r) {
		if q == p {
			return true
		}
	}
	return false
}

// Revoke ends every membership of a logged-in user at once: each of the user's connections gets closed
// "revoked" for its rooms and is then closed with 1008. Used when an account or its key is withdrawn.
func (s *Server) Revoke(user string) {
	if user == "" {
		return
	}
	s.table.Revoke(user)
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.byUser[user] {
		c.kill(closeRevoked)
	}
}

// Close ends the relay: it refuses new connections, tells every member its room is closed (shutdown),
// overwrites every buffered frame, closes every WebSocket with 1001 and waits until every connection's
// goroutines have ended, or ctx is done. http.Server.Shutdown does not do this for hijacked connections.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	s.table.Close(reasonShutdown)
	for _, c := range conns {
		c.kill(closeShutdown)
	}
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("failed to close every connection: %w", ctx.Err())
	}
	s.mu.Lock()
	if s.poll != nil {
		s.poll.close() // a connection still watched ends by kill, which needs no poller
	}
	s.mu.Unlock()
	s.workers.stop()
	return err
}

// connHeldBytes is what one connection costs beyond its counted buffers (rooms.Budget.PerConn): about 16 KB
// measured per idle connection (docs/performance.md), rounded up.
const connHeldBytes = 16 << 10

// handshakeOnlyPool is the write buffer pool of the relay's upgrader. The relay writes its frames itself
// (package ws), so gorilla/websocket never draws from it; having a pool at all keeps gorilla from allocating a
// write buffer for every connection. gets counts the draws, which a test holds at zero.
type handshakeOnlyPool struct{ gets atomic.Int64 }

func (p *handshakeOnlyPool) Get() any {
	p.gets.Add(1)
	return nil // gorilla then allocates a buffer of its own, should it ever write
}

func (p *handshakeOnlyPool) Put(any) {}
