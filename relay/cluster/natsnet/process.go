package natsnet

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cleanrelay/cleanrelay/internal/stracejudge"
)

// process is one run of a server. With strace, cmd is strace and pid its nats-server child; otherwise pid is
// cmd's own. Only pid is ever signalled.
type process struct {
	cmd  *exec.Cmd
	pid  int
	done chan struct{} // closed when cmd has exited and been reaped
}

// launch starts one run of the server (under strace when the cluster is traced) and records its PID.
func (s *Server) launch() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil && !exited(s.proc) {
		return fmt.Errorf("nats-server %s is already running (pid %d)", s.Name, s.proc.pid)
	}
	args := []string{s.c.bin, "-c", s.conf}
	if s.trace {
		trace := filepath.Join(s.c.Dir, fmt.Sprintf("%s.trace.%d", s.Name, len(s.traces)+1))
		s.traces = append(s.traces, trace)
		// -yy names what each descriptor is (path, socket, pipe); --seccomp-bpf stops only at traced calls.
		args = append([]string{"strace", "-f", "-qq", "--seccomp-bpf", "-yy", "-s", "64", "-e", "trace=" + stracejudge.TracedCalls(),
			"-e", "signal=none", "-o", trace}, args...)
	}
	log := &lockedBuffer{}
	s.logs = append(s.logs, log)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("failed to start nats-server %s: %w", s.Name, err)
	}
	p := &process{cmd: cmd, pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	s.proc = p
	if s.trace {
		pid, err := tracedChild(cmd.Process.Pid, s.c.bin, p.done)
		if err != nil {
			cmd.Process.Kill()
			<-p.done
			return fmt.Errorf("nats-server %s under strace: %w", s.Name, err)
		}
		p.pid = pid
		// Its stdout and stderr, which the trace names as "pipe:[inode]": writes to them are its log.
		if s.pipes == nil {
			s.pipes = map[string]bool{}
		}
		for _, fd := range []string{"1", "2"} {
			if l, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/fd/" + fd); err == nil && strings.HasPrefix(l, "pipe:[") {
				s.pipes[l] = true
			}
		}
	}
	return nil
}

// tracedChild finds the PID of the child of strace (tracer) that runs bin. strace forks a short-lived probe of
// its own first, so the child is recognised by its command line.
func tracedChild(tracer int, bin string, done <-chan struct{}) (int, error) {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		select {
		case <-done:
			return 0, fmt.Errorf("strace exited")
		default:
		}
		kids, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", tracer, tracer))
		for _, f := range strings.Fields(string(kids)) {
			cmdline, _ := os.ReadFile("/proc/" + f + "/cmdline")
			if strings.HasPrefix(string(cmdline), bin+"\x00") {
				return strconv.Atoi(f)
			}
		}
	}
	return 0, fmt.Errorf("no child running %s", bin)
}

// exited reports whether the run has ended; its PID may then belong to someone else and is never signalled.
func exited(p *process) bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// PID returns the PID of the server's nats-server process (not strace's), or 0 if it is not running.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil || exited(s.proc) {
		return 0
	}
	return s.proc.pid
}

// Kill ends the server with SIGKILL, as a crash would, and waits until it is gone.
func (s *Server) Kill() { s.end(syscall.SIGKILL) }

// Stop ends the server with SIGTERM (a clean shutdown), then SIGKILL after killAfter, and waits.
func (s *Server) Stop() { s.end(syscall.SIGTERM) }

func (s *Server) end(sig syscall.Signal) {
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p == nil || exited(p) {
		return
	}
	syscall.Kill(p.pid, sig)
	select {
	case <-p.done:
	case <-time.After(killAfter):
		syscall.Kill(p.pid, syscall.SIGKILL)
		<-p.done
	}
}

// stopAll stops every server, in parallel.
func (c *Cluster) stopAll() {
	var wg sync.WaitGroup
	for _, s := range c.servers {
		wg.Go(s.Stop)
	}
	wg.Wait()
}
