package onion

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cretz/bine/control"
	"github.com/cretz/bine/process"
	"github.com/cretz/bine/tor"
	bineed25519 "github.com/cretz/bine/torutil/ed25519"
)

// Service is a published onion service. Its address stays the same for its whole life, across tor restarts.
type Service struct {
	// Static after Start.
	cfg     Config
	log     *slog.Logger
	torPath string // resolved binary; empty with ControlAddr
	key     bineed25519.KeyPair
	id      string // onion address without ".onion"
	auth    *ClientAuth
	ln      net.Listener
	target  string // where tor forwards streams, in ADD_ONION Port syntax: "unix:/path" or "127.0.0.1:port"
	dir     string // private directory; empty with ControlAddr
	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{} // closed when supervise has returned and the last tor is gone

	restarts  atomic.Int64
	closeOnce sync.Once
	closeErr  error
	// powWarned makes the "tor too old for PoW" warning appear once, not at every restart.
	powWarned atomic.Bool

	// Guarded by mu.
	mu  sync.Mutex
	cur *instance
}

// instance is one tor (launched or external) and the control connection that publishes the service on it.
type instance struct {
	conn    *control.Conn
	netConn net.Conn      // the control connection's socket, for an external tor
	cmd     *exec.Cmd     // the launched tor; nil for an external tor
	exited  chan struct{} // closed once cmd has been reaped (launched tor only)

	dead     chan struct{} // closed when tor exited or the control connection broke
	deadOnce sync.Once

	published chan struct{} // closed at the first successful descriptor upload
	pubOnce   sync.Once
	uploading atomic.Bool
	percent   atomic.Int32

	// Owned by the event goroutine of publish.
	pendingUploads int  // UPLOADs not yet answered by UPLOADED or FAILED
	uploadedAny    bool // at least one UPLOADED
}

func (in *instance) markDead() { in.deadOnce.Do(func() { close(in.dead) }) }

// Start publishes a v3 onion service and returns once its descriptor has been uploaded, i.e. once the address
// is reachable. ctx bounds only this start; the Service runs until Close. log receives progress and tor's own
// output (never stdout); nil discards it.
//
// If tor is not installed, the error says how to install it. On error nothing is left running or on disk
// (except a KeyFile that was created: the address it holds is the one the operator asked to keep).
func Start(ctx context.Context, cfg Config, log *slog.Logger) (*Service, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, log: log, done: make(chan struct{})}
	if cfg.ControlAddr == "" {
		if s.torPath, err = exec.LookPath(cfg.TorPath); err != nil {
			return nil, fmt.Errorf("failed to find tor (%q): install it with `apt-get install tor`, or give its path: %w", cfg.TorPath, err)
		}
	}
	if cfg.KeyFile != "" {
		var created bool
		if s.key, created, err = loadOrCreateKeyFile(cfg.KeyFile); err != nil {
			return nil, err
		}
		if created {
			log.Info("onion: created a new key file; the address stays the same while the file is kept")
		}
	} else if s.key, err = newServiceKey(); err != nil {
		return nil, err
	}
	s.id = serviceID(s.key)
	if cfg.ClientAuth {
		if s.auth, err = newClientAuth(s.id); err != nil {
			wipeKey(s.key)
			return nil, err
		}
	}
	if err := s.prepare(); err != nil {
		s.cleanup()
		wipeKey(s.key)
		return nil, err
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	inst, err := s.startInstance(ctx)
	if err != nil {
		s.cancel()
		s.cleanup()
		wipeKey(s.key)
		return nil, err
	}
	s.cur = inst
	go s.supervise(inst)
	return s, nil
}

// prepare makes the private directory, the torrc and the backend listener.
func (s *Service) prepare() error {
	var err error
	if s.cfg.ControlAddr != "" {
		// A system tor runs as another user and cannot reach a socket in our private directory.
		if s.ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return fmt.Errorf("failed to listen for tor: %w", err)
		}
		s.target = s.ln.Addr().String()
		return nil
	}
	parent := s.cfg.TempDir
	if parent == "" {
		parent = os.TempDir()
	}
	if s.dir, err = os.MkdirTemp(parent, "cleanrelay-onion-"); err != nil {
		return fmt.Errorf("failed to create private directory: %w", err)
	}
	if err := os.WriteFile(s.emptyFile(), nil, 0o600); err != nil {
		return fmt.Errorf("failed to write empty defaults torrc: %w", err)
	}
	lines := []string{
		"SocksPort 0",
		// tor's own output goes to our stdout pipe, which feeds the logger.
		"Log notice stdout",
		"AvoidDiskWrites 1",
	}
	lines = append(lines, s.cfg.TorrcLines...)
	if s.cfg.TorrcFile != "" {
		lines = append(lines, "%include "+s.cfg.TorrcFile)
	}
	if err := os.WriteFile(s.torrcFile(), []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		return fmt.Errorf("failed to write torrc: %w", err)
	}
	// A Unix socket in a 0700 directory: only tor (and our own user) can reach the backend. sun_path holds 108
	// bytes and ADD_ONION's Port syntax has no quoting here, so fall back to loopback TCP if the path does not fit.
	sock := filepath.Join(s.dir, "backend.sock")
	if len(sock) < 100 && !strings.ContainsAny(sock, " \t\"\\,") {
		if s.ln, err = net.Listen("unix", sock); err != nil {
			return fmt.Errorf("failed to listen for tor: %w", err)
		}
		s.target = "unix:" + sock
		return nil
	}
	if s.ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return fmt.Errorf("failed to listen for tor: %w", err)
	}
	s.target = s.ln.Addr().String()
	return nil
}

func (s *Service) emptyFile() string { return filepath.Join(s.dir, "empty") }
func (s *Service) torrcFile() string { return filepath.Join(s.dir, "torrc") }

// cleanup releases what prepare made.
func (s *Service) cleanup() error {
	var errs []error
	if s.ln != nil {
		if err := s.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, fmt.Errorf("failed to close backend listener: %w", err))
		}
	}
	if s.dir != "" {
		if err := os.RemoveAll(s.dir); err != nil {
			errs = append(errs, fmt.Errorf("failed to remove private directory: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Listener is what the relay's http.Server serves on: the streams tor forwards from the onion address. It stays
// the same across tor restarts; Close closes it.
func (s *Service) Listener() net.Listener { return s.ln }

// Hostname is the onion address, "<56 characters>.onion".
func (s *Service) Hostname() string { return s.id + ".onion" }

// URL is the address to open in Tor Browser.
func (s *Service) URL() string {
	if s.cfg.VirtualPort == 80 {
		return "http://" + s.Hostname() + "/"
	}
	return "http://" + s.Hostname() + ":" + strconv.Itoa(s.cfg.VirtualPort) + "/"
}

// ClientAuth is the credential a client needs when Config.ClientAuth is on, or nil.
func (s *Service) ClientAuth() *ClientAuth { return s.auth }

// Restarts counts how often tor was restarted (or the control connection re-established) and the address
// published again.
func (s *Service) Restarts() int64 { return s.restarts.Load() }

// Close ends tor (SIGTERM, SIGKILL after KillAfter), closes the listener, removes the private directory with
// tor's data directory in it and overwrites the service key in memory. It is safe to call more than once.
func (s *Service) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		<-s.done
		s.closeErr = s.cleanup()
		wipeKey(s.key) // no tor is left to hand it to again
	})
	return s.closeErr
}

func (s *Service) progress(p Progress) {
	if s.cfg.Progress != nil {
		s.cfg.Progress(p)
	}
}

// supervise restarts tor whenever the current instance dies, until Close.
func (s *Service) supervise(inst *instance) {
	defer close(s.done)
	backoff := s.cfg.RestartBackoff
	for {
		select {
		case <-s.ctx.Done():
			s.stopInstance(inst)
			return
		case <-inst.dead:
		}
		s.stopInstance(inst)
		s.log.Warn("onion: tor stopped unexpectedly; restarting it and publishing the same address")
		s.progress(Progress{Stage: StageRestarting})
		for {
			select {
			case <-s.ctx.Done():
				return
			case <-time.After(backoff):
			}
			next, err := s.startInstance(s.ctx)
			if err == nil {
				inst = next
				backoff = s.cfg.RestartBackoff
				break
			}
			if s.ctx.Err() != nil {
				return
			}
			backoff = min(2*backoff, s.cfg.MaxRestartBackoff)
			s.log.Warn("onion: failed to restart tor; retrying", "err", err, "retry_in", backoff)
		}
		s.mu.Lock()
		s.cur = inst
		s.mu.Unlock()
		s.restarts.Add(1)
	}
}

// startInstance brings up one tor (or control connection), adds the onion service to it and waits until the
// descriptor is uploaded. On error it leaves nothing running.
func (s *Service) startInstance(ctx context.Context) (*instance, error) {
	s.progress(Progress{Stage: StageStarting})
	inst := &instance{dead: make(chan struct{}), published: make(chan struct{})}
	var err error
	if s.cfg.ControlAddr != "" {
		err = s.connect(inst)
	} else {
		err = s.launch(inst)
	}
	if err == nil {
		err = s.publish(ctx, inst)
	}
	if err != nil {
		s.stopInstance(inst)
		return nil, err
	}
	return inst, nil
}

// launch starts tor as our child, with DisableNetwork 1 until the service is added, and takes ownership of it
// so that it exits when our control connection closes (and, through __OwningControllerProcess, when we die).
func (s *Service) launch(inst *instance) error {
	// A restarted tor reuses its predecessor's data directory: its cached consensus makes the restart fast.
	dataDir := filepath.Join(s.dir, "tor")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("failed to create tor's data directory: %w", err)
	}
	creator := process.CmdCreatorFunc(func(ctx context.Context, args ...string) (*exec.Cmd, error) {
		cmd := exec.CommandContext(ctx, s.torPath, args...)
		w := newTorLogWriter(s.log)
		cmd.Stdout, cmd.Stderr = w, w
		cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
		cmd.WaitDelay = KillAfter
		inst.cmd = cmd
		return cmd, nil
	})
	t, err := tor.Start(s.ctx, &tor.StartConf{
		ProcessCreator:  creator,
		DataDir:         dataDir,
		TorrcFile:       s.torrcFile(),
		NoHush:          true,
		NoAutoSocksPort: true,
		ExtraArgs: []string{
			// bine does not pass --defaults-torrc; without it Debian's defaults could load.
			"--defaults-torrc", s.emptyFile(),
			"--__OwningControllerProcess", strconv.Itoa(os.Getpid()),
		},
	})
	if inst.cmd != nil && inst.cmd.Process != nil {
		inst.exited = make(chan struct{})
		if err == nil {
			go func() {
				inst.cmd.Wait()
				close(inst.exited)
				inst.markDead()
			}()
		} else {
			// bine's Close already stopped it and waits in its own goroutine; do not Wait twice.
			close(inst.exited)
			inst.cmd = nil
		}
	}
	if err != nil {
		return fmt.Errorf("failed to start tor: %w", err)
	}
	inst.conn = t.Control
	if err := inst.conn.TakeOwnership(); err != nil {
		return fmt.Errorf("failed to take ownership of tor: %w", err)
	}
	return nil
}

// connect opens and authenticates a control connection to an already-running tor.
func (s *Service) connect(inst *instance) error {
	network, addr := "tcp", s.cfg.ControlAddr
	if p, ok := strings.CutPrefix(addr, "unix:"); ok {
		network, addr = "unix", p
	}
	c, err := net.DialTimeout(network, addr, 10*time.Second)
	if err != nil {
		return fmt.Errorf("failed to connect to tor's control port: %w", err)
	}
	inst.netConn = c
	inst.conn = control.NewConn(textproto.NewConn(c))
	if err := inst.conn.Authenticate(s.cfg.ControlPassword); err != nil {
		return fmt.Errorf("failed to authenticate to tor's control port: %w", err)
	}
	return nil
}

// publish adds the onion service to inst's tor, enables the network and waits for the first upload.
func (s *Service) publish(ctx context.Context, inst *instance) error {
	events := make(chan control.Event, 256)
	// bine delivers events synchronously from its reader; this goroutine keeps the channel drained so the
	// reader never blocks while holding the connection's read lock.
	go func() {
		for {
			select {
			case ev := <-events:
				s.handleEvent(inst, ev)
			case <-inst.dead:
				return
			}
		}
	}()
	if err := inst.conn.AddEventListener(events, control.EventCodeStatusClient, control.EventCodeHSDesc); err != nil {
		return fmt.Errorf("failed to subscribe to tor events: %w", err)
	}
	pow := false
	if !s.cfg.DisablePoW {
		version, err := torVersion(inst.conn)
		if err != nil {
			return err
		}
		pow = versionAtLeast(version, [4]int{0, 4, 9, 2})
		if !pow && !s.powWarned.Swap(true) {
			s.log.Warn("onion: this tor is too old for the proof-of-work DoS defence (needs 0.4.9.2 or newer); going on without it", "tor_version", version)
		}
	}
	err := s.addOnion(inst.conn, pow)
	if err != nil && pow {
		// A tor built without the PoW module refuses the option; an onion without PoW beats no onion.
		s.log.Warn("onion: tor refused the proof-of-work DoS defence; going on without it", "err", err)
		err = s.addOnion(inst.conn, false)
	}
	if err != nil {
		return err
	}
	if s.cfg.ControlAddr == "" {
		if err := inst.conn.SetConf(control.KeyVals("DisableNetwork", "0")...); err != nil {
			return fmt.Errorf("failed to enable tor's network: %w", err)
		}
	}
	// From here on only this goroutine reads the connection; it ends when the connection breaks.
	go func() {
		inst.conn.HandleEvents(s.ctx)
		inst.markDead()
	}()
	timer := time.NewTimer(s.cfg.PublishTimeout)
	defer timer.Stop()
	select {
	case <-inst.published:
		return nil
	case <-inst.dead:
		return errors.New("failed to publish the onion service: tor stopped")
	case <-timer.C:
		return fmt.Errorf("failed to publish the onion service: no descriptor upload within %v (bootstrap at %d%%)", s.cfg.PublishTimeout, inst.percent.Load())
	case <-ctx.Done():
		return fmt.Errorf("failed to publish the onion service: %w", ctx.Err())
	}
}

// addOnion sends ADD_ONION with our own key. It is written out rather than taken from bine's Listen because
// Listen has no PoW parameters and would create its own TCP listener.
func (s *Service) addOnion(conn *control.Conn, pow bool) error {
	var b strings.Builder
	b.WriteString("ADD_ONION ED25519-V3:")
	b.WriteString(base64.StdEncoding.EncodeToString(s.key.PrivateKey()))
	b.WriteString(" Flags=DiscardPK")
	if s.auth != nil {
		b.WriteString(",V3Auth")
	}
	if s.cfg.MaxStreams > 0 {
		fmt.Fprintf(&b, " MaxStreams=%d", s.cfg.MaxStreams)
	}
	if pow {
		b.WriteString(" PoWDefensesEnabled=1")
	}
	fmt.Fprintf(&b, " Port=%d,%s", s.cfg.VirtualPort, s.target)
	if s.auth != nil {
		b.WriteString(" ClientAuthV3=" + s.auth.PublicKey)
	}
	resp, err := conn.SendRequest("%s", b.String())
	if err != nil {
		// The command holds the private key: never put it in an error or a log line.
		return fmt.Errorf("failed to add the onion service: tor said %w", err)
	}
	for _, line := range resp.Data {
		if id, ok := strings.CutPrefix(line, "ServiceID="); ok && id != s.id {
			return fmt.Errorf("failed to add the onion service: tor published a different address than our key's")
		}
	}
	return nil
}

func (s *Service) handleEvent(inst *instance, ev control.Event) {
	switch ev := ev.(type) {
	case *control.StatusEvent:
		if ev.Action != "BOOTSTRAP" {
			return
		}
		if ev.Severity == "WARN" || ev.Severity == "ERR" {
			s.log.Warn("onion: tor bootstrap problem", "warning", ev.Arguments["WARNING"], "reason", ev.Arguments["REASON"])
			return
		}
		pct, _ := strconv.Atoi(ev.Arguments["PROGRESS"])
		if int32(pct) == inst.percent.Swap(int32(pct)) {
			return
		}
		s.log.Info("onion: tor bootstrapping", "percent", pct, "step", ev.Arguments["TAG"])
		s.progress(Progress{Stage: StageBootstrap, Percent: pct, Summary: ev.Arguments["SUMMARY"]})
	case *control.HSDescEvent:
		if ev.Address != s.id {
			return
		}
		switch ev.Action {
		case "UPLOAD":
			inst.pendingUploads++
			if !inst.uploading.Swap(true) {
				s.log.Info("onion: uploading the service descriptor")
				s.progress(Progress{Stage: StageUploading})
			}
		case "UPLOADED":
			inst.pendingUploads--
			if !inst.uploadedAny {
				inst.uploadedAny = true
				// Give the other HSDirs' uploads a moment, but do not wait on a slow one for ever.
				time.AfterFunc(uploadSettle, func() { s.markPublished(inst) })
			}
		case "FAILED":
			inst.pendingUploads--
			s.log.Debug("onion: a descriptor upload failed; tor retries", "reason", ev.Reason)
		}
		// Published once every upload started so far has been answered, not at the first: then every HSDir a
		// client may ask has the descriptor when Start returns.
		if inst.uploadedAny && inst.pendingUploads <= 0 {
			s.markPublished(inst)
		}
	}
}

// uploadSettle bounds the wait for the remaining HSDir uploads after the first one succeeded.
const uploadSettle = 5 * time.Second

func (s *Service) markPublished(inst *instance) {
	inst.pubOnce.Do(func() {
		close(inst.published)
		s.log.Info("onion: service descriptor published")
		s.progress(Progress{Stage: StagePublished})
	})
}

// stopInstance ends inst's tor (launched: SIGTERM, then SIGKILL after KillAfter) and control connection.
func (s *Service) stopInstance(inst *instance) {
	inst.markDead()
	if inst.cmd != nil {
		inst.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-inst.exited:
		case <-time.After(KillAfter):
			inst.cmd.Process.Kill()
			<-inst.exited
		}
	}
	if inst.netConn != nil {
		// Closing the socket is enough: tor removes a non-detached onion service with its controller.
		inst.netConn.Close()
	} else if inst.conn != nil {
		inst.conn.Close()
	}
}

// torPID is the PID of the running launched tor, or 0 (tests kill it to exercise restarts).
func (s *Service) torPID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil || s.cur.cmd == nil || s.cur.cmd.Process == nil {
		return 0
	}
	return s.cur.cmd.Process.Pid
}

func torVersion(conn *control.Conn) (string, error) {
	kvs, err := conn.GetInfo("version")
	if err != nil {
		return "", fmt.Errorf("failed to ask tor its version: %w", err)
	}
	for _, kv := range kvs {
		if kv.Key == "version" {
			return kv.Val, nil
		}
	}
	return "", errors.New("failed to ask tor its version: no answer")
}

// versionAtLeast compares a tor version such as "0.4.9.11" or "0.4.8.10 (git-…)" or "0.4.9.1-alpha" with min.
func versionAtLeast(version string, min [4]int) bool {
	v, _, _ := strings.Cut(version, " ")
	v, _, _ = strings.Cut(v, "-")
	parts := strings.Split(v, ".")
	for i := range 4 {
		n := 0
		if i < len(parts) {
			var err error
			if n, err = strconv.Atoi(parts[i]); err != nil {
				return false
			}
		}
		if n != min[i] {
			return n > min[i]
		}
	}
	return true
}
