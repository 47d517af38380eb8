package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cleanrelay/cleanrelay/relay/bench"
)

const benchUsage = `Usage: cleanrelay bench [flags] WORKLOAD...

Measures a relay under load next to a bare forwarder (the floor), speaking the real protocol over loopback.
WORKLOAD is pairs, idle, connect, all (the three), or soak: honest rooms at a fixed rate for a while next to
idle rooms and floods (--floods), on the relay only, with its default limits, RSS and a new user's create sampled;
or nodedeath, alone, against a cluster already running (--url and --pid naming every node, --kill-pid the one to
SIGKILL): pair rooms with a member on that node chat at a fixed rate, the bench kills the node, and its members
resume on the other nodes; it reports how long after the kill they resumed and their rooms flowed again.
Each server runs as its own process, started fresh for each workload (the relay as "cleanrelay serve
--local-only", the floor as "cleanrelay bench-floor"), so its CPU time and memory are its own. One JSON line
per run goes to stdout, a table to stderr at the end; progress on a terminal.
The exit code is 1 when any run had errors, lost, duplicated or reordered frames, or lost notices.

Example: 500 rooms of two sending 1 KiB frames as fast as a window of 32 allows, then 10,000 idle connections:

    $ cleanrelay bench --rooms 500 --frames 2000 pairs idle

Flags:
`

// benchFlags are the flags of "cleanrelay bench".
type benchFlags struct {
	servers string
	bin     string
	url     string
	joinURL string
	pid     int
	pids    string
	// nodes are the relay nodes of an idle or nodedeath run over several nodes (--url and --pid with several
	// entries).
	nodes []*bench.Server
	// killPID is the process id of the node a nodedeath run kills (--kill-pid), kill its index in nodes.
	killPID, kill int
	relayFlags    stringList
	timeout       time.Duration
	json          bool

	pairs   bench.PairsConfig
	idle    bench.IdleConfig
	connect bench.ConnectConfig
	soak    bench.SoakConfig
	death   bench.NodeDeathConfig
	floods  string
	// floodProcess runs the soak's floods in a child process at the lowest CPU priority.
	floodProcess bool

	accounts bool
}

func parseBenchFlags(args []string, stderr io.Writer) (*benchFlags, []string, error) {
	f := &benchFlags{}
	fs := flag.NewFlagSet("cleanrelay bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, benchUsage); fs.PrintDefaults() }
	fs.StringVar(&f.servers, "servers", "floor,relay", "which servers to measure, in order: floor, relay or both")
	fs.StringVar(&f.bin, "bin", "", "the cleanrelay `binary` to start the servers from (default: this one)")
	fs.StringVar(&f.url, "url", "", "measure the relay already running at this ws://HOST/ws `URL` instead of starting one (needs --pid); idle: several nodes' URLs, comma-separated, the connections spread evenly over them; nodedeath: every node of the cluster")
	fs.StringVar(&f.joinURL, "join-url", "", "with --url: the pairs' second members connect to this ws://HOST/ws `URL`, another node of the same cluster (split pairs)")
	fs.StringVar(&f.pids, "pid", "", "with --url: the relay's process `id`, for its CPU time and memory (several nodes: their ids, comma-separated, in --url's order)")
	fs.Var(&f.relayFlags, "relay-flag", "an extra `flag` for the relay's serve command, e.g. --relay-flag=--room-buffer=512; may be repeated")
	fs.DurationVar(&f.timeout, "timeout", 5*time.Minute, "give up on one run after this long (nodedeath: this long after its traffic should have ended)")
	fs.BoolVar(&f.json, "json", false, "print only the JSON lines, no table")
	fs.IntVar(&f.pairs.Rooms, "rooms", 500, "pairs: rooms of two members")
	fs.IntVar(&f.pairs.Frames, "frames", 2000, "pairs: frames each member sends")
	fs.IntVar(&f.pairs.Size, "size", 1024, "pairs and nodedeath: frame payload `bytes` (at least 16: frame number and send time)")
	fs.IntVar(&f.pairs.Window, "window", 32, "pairs: frames a member may have sent but its peer not yet received (unthrottled mode)")
	fs.Float64Var(&f.pairs.Rate, "rate", 0, "pairs: frames per second per member instead of a window (0: unthrottled)")
	fs.IntVar(&f.idle.Conns, "conns", 10000, "idle: connections, in rooms of two")
	fs.DurationVar(&f.idle.Hold, "hold", 3*time.Second, "idle: how long to hold them before measuring memory")
	fs.IntVar(&f.idle.ClientProcs, "client-procs", 0, "idle over several nodes: client processes (\"cleanrelay bench-hold\") holding the connections, rounded up to a multiple of the nodes (0: one per node); each process may hold fewer open files than the whole run needs")
	fs.IntVar(&f.connect.Conns, "connects", 5000, "connect: connections to open, one after another per worker")
	fs.IntVar(&f.connect.Concurrency, "concurrency", 32, "connect: connections being opened at once")
	fs.IntVar(&f.soak.Idle, "soak-idle", 10000, "soak: idle connections, in rooms of two")
	fs.IntVar(&f.soak.Rooms, "soak-rooms", 1000, "soak: honest pair rooms")
	fs.Float64Var(&f.soak.Rate, "soak-rate", 10, "soak: frames per second per honest member")
	fs.DurationVar(&f.soak.Duration, "soak-duration", 10*time.Minute, "soak: how long the honest rooms chat")
	fs.DurationVar(&f.soak.Sample, "soak-sample", 10*time.Second, "soak: how often the relay's RSS and a new user's create are sampled")
	fs.IntVar(&f.killPID, "kill-pid", 0, "nodedeath: the process `id` of the node to SIGKILL, one of --pid (a node the caller started; the bench kills nothing else)")
	fs.IntVar(&f.death.Rooms, "death-rooms", 100, "nodedeath: pair rooms, each with one member on the node that dies (half of them made there, so sequenced by it)")
	fs.Float64Var(&f.death.Rate, "death-rate", 10, "nodedeath: frames per second per member")
	fs.DurationVar(&f.death.Before, "death-before", 3*time.Second, "nodedeath: how long the rooms chat before the kill")
	fs.DurationVar(&f.death.After, "death-after", 10*time.Second, "nodedeath: how long they chat after it (at the rate: each member sends rate × (before + after) frames)")
	fs.DurationVar(&f.death.ResumeLimit, "death-resume-limit", 30*time.Second, "nodedeath: how long after the kill a member of the dead node keeps asking to resume before the run fails")
	fs.StringVar(&f.floods, "floods", strings.Join(bench.FloodNames(), ","), "soak: floods to run alongside, comma-separated (none: no flood)")
	fs.BoolVar(&f.floodProcess, "flood-process", true, "soak: run the floods in a process of their own (\"cleanrelay bench-flood\") at the lowest CPU priority, SCHED_IDLE at nice 19, so that they get only the CPU the relay and the honest clients leave; false: in the bench's process, beside the honest clients")
	fs.BoolVar(&f.accounts, "accounts", true, "connect: run the relay with accounts on (its serve default)")
	fs.BoolVar(&f.connect.Auth, "auth", true, "connect: every relay connection is a logged-in session (its handshake carries a WebSocket ticket); needs --accounts")
	fs.BoolVar(&f.connect.ProofEach, "proof-each", false, "connect: with --auth, prove the key for a fresh ticket before every connection (a new page) instead of once per worker (a reconnect)")
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	if fs.NArg() == 0 {
		return nil, nil, errors.New("no workload given (hint: cleanrelay bench pairs)")
	}
	var workloads []string
	for _, w := range fs.Args() {
		switch w {
		case "pairs", "idle", "connect", "soak", "nodedeath":
			workloads = append(workloads, w)
		case "all":
			workloads = append(workloads, "pairs", "idle", "connect")
		default:
			return nil, nil, fmt.Errorf("unknown workload %q (hint: pairs, idle, connect, all, soak or nodedeath)", w)
		}
	}
	death := slices.Contains(workloads, "nodedeath")
	if death && len(workloads) > 1 {
		return nil, nil, errors.New("nodedeath kills a node: it runs alone")
	}
	if death != (f.killPID != 0) {
		return nil, nil, errors.New("nodedeath and --kill-pid go together")
	}
	for _, s := range strings.Split(f.servers, ",") {
		if s != "relay" && s != "floor" {
			return nil, nil, fmt.Errorf("--servers: unknown server %q (hint: floor,relay)", s)
		}
	}
	if (f.url == "") != (f.pids == "") {
		return nil, nil, errors.New("--url and --pid go together")
	}
	if f.url != "" {
		urls, pids := strings.Split(f.url, ","), strings.Split(f.pids, ",")
		if len(urls) != len(pids) {
			return nil, nil, fmt.Errorf("--url names %d relays and --pid %d process ids", len(urls), len(pids))
		}
		for i, u := range urls {
			pid, err := strconv.Atoi(pids[i])
			if err != nil || pid <= 0 {
				return nil, nil, fmt.Errorf("--pid %q is not a process id", pids[i])
			}
			f.nodes = append(f.nodes, bench.Attach("relay", u, pid))
		}
		f.url, f.pid = urls[0], f.nodes[0].PID
		if len(f.nodes) > 1 && (f.joinURL != "" || slices.ContainsFunc(workloads, func(w string) bool { return w != "idle" && w != "nodedeath" })) {
			return nil, nil, errors.New("several relays in --url: only the idle and nodedeath workloads spread over nodes (hint: --join-url for split pairs)")
		}
		if len(f.nodes) > 1 && f.servers != "relay" {
			return nil, nil, errors.New("several relays in --url need --servers relay (one floor process cannot hold their connections)")
		}
	}
	if death {
		f.kill = slices.IndexFunc(f.nodes, func(s *bench.Server) bool { return s.PID == f.killPID })
		if len(f.nodes) < 2 || f.kill < 0 || f.servers != "relay" {
			return nil, nil, errors.New("nodedeath needs --servers relay, every node of a running cluster in --url and --pid (two at least), and --kill-pid one of them")
		}
	}
	if f.joinURL != "" && f.url == "" {
		return nil, nil, errors.New("--join-url needs --url")
	}
	if f.pairs.Size < 16 {
		return nil, nil, fmt.Errorf("--size %d is below 16 bytes (frame number and send time)", f.pairs.Size)
	}
	if f.connect.Auth && !f.accounts {
		return nil, nil, errors.New("--auth needs --accounts (hint: --auth=false for anonymous connections)")
	}
	if f.floods != "none" {
		for _, name := range strings.Split(f.floods, ",") {
			fl, ok := bench.Floods[name]
			if !ok {
				return nil, nil, fmt.Errorf("--floods: unknown flood %q (hint: %s or none)", name, strings.Join(bench.FloodNames(), ","))
			}
			f.soak.Floods = append(f.soak.Floods, fl)
		}
	}
	f.pairs.Timeout, f.idle.Timeout, f.connect.Timeout = f.timeout, f.timeout, f.timeout
	f.soak.Timeout = f.soak.Duration + f.timeout
	f.death.Size, f.death.Timeout = f.pairs.Size, f.death.Before+f.death.After+f.timeout
	return f, workloads, nil
}

func benchCmd(args []string, stdout, stderr io.Writer) int {
	f, workloads, err := parseBenchFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "cleanrelay: %v\n", err)
		return 2
	}
	if f.bin == "" {
		if f.bin, err = os.Executable(); err != nil {
			fmt.Fprintf(stderr, "cleanrelay: failed to find this binary: %v (hint: --bin)\n", err)
			return 1
		}
	}
	// The tool holds every client connection, and the servers it starts inherit its limit.
	idleHere := f.idle.Conns
	if len(f.nodes) > 1 {
		idleHere = 0 // held by the client processes
	}
	need := uint64(max(idleHere, 2*f.pairs.Rooms, f.soak.Idle+2*f.soak.Rooms, 3*f.death.Rooms) + 1024)
	if got, err := raiseFileLimit(need); err != nil || got < need {
		fmt.Fprintf(stderr, "cleanrelay: warning: open-file limit is %d, below the %d this run may need (%v)\n", got, need, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var progress bench.Progress
	if isTerminal(stderr) {
		progress = func(name string, done, total int64) {
			fmt.Fprintf(stderr, "\r\033[K%s: %d/%d", name, done, total)
		}
	}
	var results []*bench.Result
	failed := false
	for _, w := range workloads {
		var floor *bench.Result
		for _, name := range strings.Split(f.servers, ",") {
			if w == "soak" && name == "floor" {
				continue // the floor has no limits to defend
			}
			r, err := f.runOne(ctx, w, name, progress)
			if progress != nil {
				fmt.Fprint(stderr, "\r\033[K")
			}
			if err != nil {
				fmt.Fprintf(stderr, "cleanrelay: %s on the %s: %v\n", w, name, err)
				failed = true
				continue
			}
			if name == "floor" {
				floor = r
			} else if floor != nil {
				r.Compare(floor)
			}
			if r.Errors != 0 || (r.Pairs != nil && (r.Pairs.Lost != 0 || r.Pairs.Duplicated != 0 || r.Pairs.Reordered != 0 || r.Pairs.LostNotices != 0)) {
				failed = true
			}
			if k := r.Soak; k != nil && k.FloodStarved != "none" {
				fmt.Fprintf(stderr, "cleanrelay: warning: starved floods (operations in %.0f s): %s\n", k.FloodSeconds, k.FloodStarved)
			}
			if d := r.NodeDeath; d != nil && (d.Lost != 0 || d.Duplicated != 0 || d.Reordered != 0 || d.LostNotices != 0) {
				failed = true
			}
			if k := r.Soak; k != nil && (k.Lost != 0 || k.Duplicated != 0 || k.Reordered != 0 || k.LostNotices != 0 || k.CreateFailed != 0) {
				failed = true
			}
			r.WriteJSON(stdout)
			results = append(results, r)
		}
	}
	if !f.json {
		fmt.Fprintln(stderr)
		bench.WriteTable(stderr, results)
	}
	if failed {
		return 1
	}
	return 0
}

// runOne starts the server (or attaches to --url), runs one workload on it and stops it.
func (f *benchFlags) runOne(ctx context.Context, workload, name string, progress bench.Progress) (*bench.Result, error) {
	var s *bench.Server
	var err error
	if name == "relay" && f.url != "" {
		s = bench.Attach("relay", f.url, f.pid)
		s.JoinURL = f.joinURL
	} else {
		s, err = bench.StartProcess(ctx, name, f.bin, f.serverArgs(workload, name)...)
		if err != nil {
			return nil, err
		}
	}
	var r *bench.Result
	switch workload {
	case "nodedeath":
		cfg := f.death
		cfg.Progress = progress
		return bench.NodeDeath(ctx, f.nodes, f.kill, cfg)
	case "pairs":
		cfg := f.pairs
		cfg.Progress = progress
		r, err = bench.Pairs(ctx, s, cfg)
	case "idle":
		cfg := f.idle
		cfg.Progress = progress
		if len(f.nodes) > 1 && name == "relay" {
			self, err := os.Executable() // the client processes are this bench's
			if err != nil {
				return nil, fmt.Errorf("failed to find this binary for the client processes: %w", err)
			}
			r, err = bench.IdleNodes(ctx, f.nodes, cfg, bench.HoldCmd{Bin: self, Args: []string{"bench-hold"}})
			return r, err
		}
		r, err = bench.Idle(ctx, s, cfg)
	case "connect":
		cfg := f.connect
		cfg.Progress = progress
		cfg.Auth = cfg.Auth && name == "relay" // the floor has no accounts: its connections are plain
		r, err = bench.Connect(ctx, s, cfg)
	case "soak":
		cfg := f.soak
		cfg.Progress = progress
		cfg.Accounts = true // serverArgs starts the soak's relay with accounts
		if f.floodProcess {
			self, err := os.Executable() // the floods are this bench's, whichever binary serves
			if err != nil {
				return nil, errors.Join(fmt.Errorf("failed to find this binary for the flood process: %w", err), s.Stop())
			}
			cfg.FloodCmd = &bench.FloodCmd{Bin: self, Args: []string{"bench-flood"}}
		}
		r, err = bench.Soak(ctx, s, cfg)
	}
	return r, errors.Join(err, s.Stop())
}

// serverArgs are the command-line arguments that start server name with the limits workload needs.
func (f *benchFlags) serverArgs(workload, name string) []string {
	if name == "floor" {
		return []string{"bench-floor", "--listen", "127.0.0.1:0"}
	}
	conns, accounts := 0, false
	switch workload {
	case "pairs":
		conns = 2 * f.pairs.Rooms
	case "idle":
		conns = f.idle.Conns + 1
	case "connect":
		conns, accounts = f.connect.Concurrency, f.accounts
	case "soak":
		// The relay's own limits (rate included) are what the soak measures; only the connection table is
		// sized for the honest and idle clients, with room for the floods' and the probes', and the room table
		// follows it as by default. Accounts are on: half the floods and one of the probes are theirs.
		return append([]string{"serve", "--local-only", "--listen", "127.0.0.1:0", "--log-level", "warn", "--accounts=true",
			"--max-conns", strconv.Itoa(f.soak.Idle + 2*f.soak.Rooms + 256)},
			f.relayFlags...)
	}
	args := []string{"serve", "--local-only", "--listen", "127.0.0.1:0", "--log-level", "warn",
		"--accounts=" + strconv.FormatBool(accounts),
		// The default of 2000 messages/s per connection would make "unthrottled" mean "at the rate limit".
		"--rate", "1e9",
		"--max-conns", strconv.Itoa(conns + 64), "--max-rooms", strconv.Itoa(conns/2 + 64)}
	return append(args, f.relayFlags...)
}

// benchHold is the hidden "cleanrelay bench-hold" command: one client process of an idle run over several
// nodes (bench.HoldIdle), holding --conns connections to --url from the loopback address --source until its
// stdin ends.
func benchHold(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cleanrelay bench-hold", flag.ContinueOnError)
	fs.SetOutput(stderr)
	wsURL := fs.String("url", "", "the relay's ws://127.0.0.1:PORT/ws `URL`")
	source := fs.String("source", "127.0.0.1", "the loopback `address` to connect from")
	conns := fs.Int("conns", 2, "connections to hold, in rooms of two")
	timeout := fs.Duration("timeout", 30*time.Minute, "give up after this long")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	u, err := url.Parse(*wsURL)
	if ip := net.ParseIP(u.Hostname()); err != nil || ip == nil || !ip.IsLoopback() {
		fmt.Fprintf(stderr, "cleanrelay: --url %q is not a loopback ws:// URL\n", *wsURL)
		return 2
	}
	if _, err := raiseFileLimit(uint64(*conns) + 256); err != nil {
		fmt.Fprintf(stderr, "cleanrelay: %v\n", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if err := bench.HoldIdle(ctx, *wsURL, *source, *conns, stdin, stdout); err != nil {
		fmt.Fprintf(stderr, "cleanrelay: %v\n", err)
		return 1
	}
	return 0
}

// isTerminal reports whether w is a terminal, where progress lines make sense.
func isTerminal(w io.Writer) bool {
	file, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := file.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// benchFloor is the hidden "cleanrelay bench-floor" command: the bare forwarder that bench measures the relay
// against (package bench, type Floor), in its own process.
func benchFloor(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cleanrelay bench-floor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "the loopback `address` to listen on")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile to this `file` when stopped")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	host, _, err := net.SplitHostPort(*listen)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		fmt.Fprintf(stderr, "cleanrelay: --listen %q is not a loopback host:port (hint: 127.0.0.1:0)\n", *listen)
		return 2
	}
	if _, err := raiseFileLimit(1 << 20); err != nil {
		fmt.Fprintf(stderr, "cleanrelay: %v\n", err)
	}
	if *cpuprofile != "" {
		pf, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintf(stderr, "cleanrelay: failed to create the profile: %v\n", err)
			return 1
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			fmt.Fprintf(stderr, "cleanrelay: failed to start the profile: %v\n", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(stderr, "cleanrelay: failed to listen: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hs := &http.Server{Handler: bench.NewFloor().Handler(), ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(stdout, "cleanrelay: serving on http://%s/\n", ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		fmt.Fprintf(stderr, "cleanrelay: failed to serve: %v\n", err)
		return 1
	case <-ctx.Done():
	}
	// The floor's hijacked WebSockets are not tracked: closing the listener and exiting ends them.
	hs.Close()
	return 0
}
