package onion

import (
	"context"
	"fmt"
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
)

// How one tor runs under a Service: launched (or reached through its control port), supervised and restarted, and stopped.

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
