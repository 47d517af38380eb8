package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/cleanrelay/cleanrelay/relay"
	"github.com/cleanrelay/cleanrelay/relay/mailbox"
	"github.com/cleanrelay/cleanrelay/relay/prekeys"
)

// shutdownTimeout bounds a clean shutdown: closing every WebSocket and waiting for its goroutines.
const shutdownTimeout = 10 * time.Second

// serveFlags are the flags of "cleanrelay serve".
type serveFlags struct {
	localOnly  bool
	listen     string
	allowHosts stringList
	logLevel   slog.Level
	cfg        relay.Config
	accounts   accountFlags
	harden     hardenFlags
	onion      onionFlags   // onion.go
	ops        opsFlags     // admin listener and HTTPS: config.go
	cluster    clusterFlags // cluster.go
}

// stringList is a flag that may be given several times.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(s string) error { *l = append(*l, s); return nil }

func parseServeFlags(args []string, stderr io.Writer) (*serveFlags, error) {
	f := &serveFlags{}
	fs := flag.NewFlagSet("cleanrelay serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&f.localOnly, "local-only", false, "serve on a loopback address without Tor (for trying it out and for tests)")
	fs.StringVar(&f.listen, "listen", "127.0.0.1:8080", "with --local-only: the loopback `address` to listen on (port 0 picks a free one)")
	fs.Var(&f.allowHosts, "allow-host", "also accept requests for this `host[:port]` (e.g. behind a reverse proxy); may be repeated")
	fs.TextVar(&f.logLevel, "log-level", slog.LevelInfo, "log `level`: debug, info, warn or error (no level logs user data)")
	addOnionFlags(fs, &f.onion)
	c := &f.cfg
	d := relay.DefaultConfig() // the flags' defaults are the relay's
	fs.IntVar(&c.MaxFrame, "max-frame", d.MaxFrame, "largest frame payload in `bytes`")
	fs.IntVar(&c.RoomBuffer, "room-buffer", d.RoomBuffer, "entries a room keeps that some member still needs (its buffer; protocol §5)")
	fs.IntVar(&c.RoomBufferBytes, "room-buffer-bytes", d.RoomBufferBytes, "`bytes` of frame buffers a room keeps at most (counted by buffer capacity)")
	fs.IntVar(&c.MaxMembers, "max-members", d.MaxMembers, "largest room a creator may ask for")
	fs.IntVar(&c.DefaultMembers, "default-members", d.DefaultMembers, "room size when the creator does not ask")
	fs.IntVar(&c.MaxRoomsPerConn, "max-rooms-per-conn", d.MaxRoomsPerConn, "rooms one connection may hold (at most 255)")
	fs.IntVar(&c.MaxRooms, "max-rooms", 0, "rooms the relay holds at once (0: --max-conns × --max-rooms-per-conn, all they can hold); a full table makes way by dropping the room with nobody attached longest")
	fs.IntVar(&c.MaxConns, "max-conns", d.MaxConns, "WebSocket connections the relay holds at once")
	fs.DurationVar(&c.Grace, "grace", d.Grace, "how long a dropped member may come back and resume")
	fs.DurationVar(&c.OrphanGrace, "orphan-grace", d.OrphanGrace, "the grace of a room's creator while nobody else has joined it (at most --grace)")
	fs.DurationVar(&c.MaxRoomLifetime, "room-lifetime", d.MaxRoomLifetime, "a room ends this long after it was created")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", d.IdleTimeout, "close a connection that holds no room for this long")
	fs.DurationVar(&c.WriteTimeout, "write-timeout", d.WriteTimeout, "deadline of every write to a client")
	fs.DurationVar(&c.PongWait, "pong-wait", d.PongWait, "close a connection silent for this long (pings go out at 5/12 of it)")
	fs.DurationVar(&c.MessageTimeout, "message-timeout", d.MessageTimeout, "close a connection that keeps one message unfinished for this long")
	fs.DurationVar(&c.AckDelay, "ack-delay", d.AckDelay, "how soon clients are asked to acknowledge what they received (sent in hello)")
	fs.Float64Var(&c.RateFrames, "rate", d.RateFrames, "messages per second one connection may send on average (faster ones are read more slowly); pings, pongs and fragments under 1 KiB count too")
	fs.IntVar(&c.RateBurst, "rate-burst", 0, "messages one connection may send at once above --rate (0: a quarter of --room-buffer)")
	c.MaxMemory = d.MaxMemory
	fs.Var((*byteSize)(&c.MaxMemory), "max-memory", "memory budget in `bytes` (suffixes KiB, MiB, GiB): past it new rooms and joins are refused (default: half of this machine's memory, or of its cgroup limit)")
	f.accounts.register(fs)
	f.harden.register(fs)
	f.ops.register(fs)
	f.cluster.register(fs)
	fromEnv, err := parseWithEnv(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		printServeUsage(stderr, fs)
	}
	if err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	if !set["orphan-grace"] && !fromEnv["orphan-grace"] {
		// The default orphan grace is 15 s or --grace, whichever is shorter, as in relay.Config: a shorter
		// --grace alone must not be refused for a flag the operator never set.
		c.OrphanGrace = min(c.OrphanGrace, c.Grace)
	}
	if err := validateServeFlags(fs, f, fromEnv); err != nil {
		return nil, err
	}
	for name := range fromEnv {
		set[name] = true
	}
	if err := f.cluster.validate(&f.accounts, set); err != nil {
		return nil, err
	}
	// The mailbox is one node's memory: a message left on one node would never reach a recipient who connects to
	// another. In a cluster it is off until it is shared (docs/operations.md, The mailbox).
	if f.cluster.urls != "" {
		if set["mailbox"] && f.accounts.mailbox {
			return nil, errors.New("--mailbox and --cluster exclude each other: the mailbox is not shared between nodes yet (hint: --mailbox=false)")
		}
		f.accounts.mailbox = false
	}
	return f, nil
}

func serve(args []string, stdout, stderr io.Writer) int {
	f, err := parseServeFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "cleanrelay: %v\n", err)
		return 2
	}
	if err := f.harden.apply(); err != nil {
		fmt.Fprintf(stderr, "cleanrelay: %v\n", err)
		return 1
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: f.logLevel}))
	// Every connection is a file descriptor (tor's child too, in onion mode), WebSockets and plain HTTP ones.
	files := uint64(f.cfg.MaxConns) + uint64(f.ops.http.WithDefaults().MaxConns)
	if n, err := raiseFileLimit(files + 1024); err != nil {
		log.Warn("failed to raise the open-file limit", "err", err)
	} else if n < files+64 {
		log.Warn("the open-file limit is below --max-conns; raise the hard limit (ulimit -Hn, LimitNOFILE=)", "limit", n)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	serveMode := serveLocal
	if !f.localOnly {
		serveMode = serveOnion
	}
	err = serveMode(ctx, f, stdout, log)
	f.cluster.close()
	f.accounts.close()
	if err != nil {
		fmt.Fprintf(stderr, "cleanrelay: %v\n", err)
		return 1
	}
	return 0
}

// serveLocal serves on a loopback address until ctx is done.
func serveLocal(ctx context.Context, f *serveFlags, stdout io.Writer, log *slog.Logger) error {
	host, _, err := net.SplitHostPort(f.listen)
	if err != nil {
		return fmt.Errorf("--listen %q is not host:port: %w", f.listen, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("--listen %q is not a loopback address; --local-only serves this machine only (hint: 127.0.0.1:8080)", f.listen)
	}
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("failed to listen: %w", err)
	}
	srv, handler, admin, err := newRelay(f, log)
	if err != nil {
		ln.Close()
		return err
	}
	srv.AllowHost(ln.Addr().String())
	ops, err := startOps(&f.ops, srv, handler, admin, log)
	if err != nil {
		ln.Close()
		return err
	}
	fmt.Fprintf(stdout, "cleanrelay: serving on http://%s/\n", ln.Addr())
	ops.announce(stdout)
	err = serveOn(ctx, srv, handler, f.ops.http, ln, log)
	return errors.Join(err, ops.shutdown())
}

// newRelay makes the relay, the HTTP handler that serves it (with accounts, unless they are off), and the
// operator's handler for the admin listener (nil without accounts).
func newRelay(f *serveFlags, log *slog.Logger) (srv *relay.Server, handler, admin http.Handler, err error) {
	if err := f.cluster.prepare(&f.accounts); err != nil {
		return nil, nil, nil, err
	}
	dir, err := f.accounts.directory()
	if err != nil {
		return nil, nil, nil, flagError(err)
	}
	cfg := f.cfg
	acc := f.accounts.api(dir, log)
	if acc != nil {
		cfg.ExtraHeld = dir.HeldBytes // one memory budget for rooms and the directory
		if box := f.accounts.box; box != nil {
			pre := f.accounts.pre
			cfg.ExtraHeld = func() int64 { return dir.HeldBytes() + box.HeldBytes() + pre.HeldBytes() } // and the mailbox with its prekeys
			f.ops.collectors = append(f.ops.collectors, mailbox.NewMetrics(box), prekeys.NewMetrics(pre))
		}
		cfg.Authenticator = acc
	}
	srv, err = relay.New(cfg, nil, log)
	if err != nil {
		return nil, nil, nil, err
	}
	for _, h := range f.allowHosts {
		srv.AllowHost(h)
	}
	handler, admin = withAccounts(srv, acc)
	// The node joins once the accounts are attached: a withdrawal applied from another node ends sessions here.
	if err := f.cluster.start(context.Background(), dir, srv, log); err != nil {
		srv.Close(context.Background())
		return nil, nil, nil, err
	}
	f.ops.cluster = f.cluster.run
	if acc != nil && f.cluster.run != nil {
		acc.OnDialogNotice(f.cluster.run.NotifyDialog)
		acc.ShareTickets(f.cluster.keys.TicketKey(), f.cluster.run.BurnTicket)
		f.cluster.run.OnTicketBurned(acc.TicketBurned)
	}
	return srv, handler, admin, nil
}

// serveOn serves handler on ln until ctx is done, then shuts down: the listener first, then every WebSocket.
func serveOn(ctx context.Context, srv *relay.Server, handler http.Handler, httpCfg relay.HTTPConfig, ln net.Listener, log *slog.Logger) error {
	hs := newHTTPServer(handler, httpCfg)
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	log.Info("relay started")
	select {
	case err := <-errc:
		return fmt.Errorf("failed to serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err := errors.Join(hs.Shutdown(sctx), srv.Close(sctx))
	snap := srv.Stats()
	log.Info("relay stopped", "connections_served", snap.ConnsTotal, "rooms_created", snap.RoomsCreated, "frames_forwarded", snap.FramesOut)
	if err != nil {
		return fmt.Errorf("failed to shut down cleanly: %w", err)
	}
	return nil
}

// discardHandler drops what net/http would log: its messages name client addresses.
type discardHandler struct{}

func (discardHandler) Enabled(context.Context, slog.Level) bool  { return false }
func (discardHandler) Handle(context.Context, slog.Record) error { return nil }
func (d discardHandler) WithAttrs([]slog.Attr) slog.Handler      { return d }
func (d discardHandler) WithGroup(string) slog.Handler           { return d }
