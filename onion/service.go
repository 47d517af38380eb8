package onion

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

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
