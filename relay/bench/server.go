package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Server is a server under measurement: its WebSocket URL and the process whose CPU and memory count.
type Server struct {
	Name string // "relay" or "floor"
	URL  string // ws://127.0.0.1:PORT/ws
	PID  int
	// JoinURL, when set, is where the second member of each pair connects (another node of the same
	// cluster): the pairs are split across two nodes. Optional; default URL.
	JoinURL string

	cmd    *exec.Cmd
	stderr *tailBuffer
}

// startTimeout bounds how long a server may take to print its address (the relay with accounts makes an RSA key).
const startTimeout = 30 * time.Second

// StartProcess runs bin with args, a server that prints "cleanrelay: serving on http://HOST:PORT/" on stdout,
// and returns it once it has. Stop ends it.
func StartProcess(ctx context.Context, name, bin string, args ...string) (*Server, error) {
	cmd := exec.Command(bin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	s := &Server{Name: name, cmd: cmd, stderr: &tailBuffer{max: 8 << 10}}
	cmd.Stderr = s.stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("failed to start the %s: %w", name, err)
	}
	s.PID = cmd.Process.Pid
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sent := false
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "cleanrelay: serving on http://"); ok && !sent {
				found <- strings.TrimSuffix(rest, "/")
				sent = true
			}
		}
		if !sent {
			close(found)
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	select {
	case hostport, ok := <-found:
		if !ok {
			s.Stop()
			return nil, fmt.Errorf("the %s exited without printing its address: %s", name, s.stderr)
		}
		s.URL = "ws://" + hostport + "/ws"
		return s, nil
	case <-ctx.Done():
		s.Stop()
		return nil, fmt.Errorf("the %s did not print its address within %v: %s", name, startTimeout, s.stderr)
	}
}

// Attach describes an already-running server; Stop leaves it running.
func Attach(name, url string, pid int) *Server { return &Server{Name: name, URL: url, PID: pid} }

// stopWait is how long Stop waits after SIGTERM: longer than `cleanrelay serve` may take to close every
// WebSocket cleanly (its shutdown timeout, 10 s), which a loaded machine with many connections can need.
const stopWait = 12 * time.Second

// Stop ends a started server: SIGTERM, then SIGKILL after stopWait. It reports an error when the process did
// not exit cleanly, with the end of its stderr.
func (s *Server) Stop() error {
	if s.cmd == nil {
		return nil
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(stopWait):
		s.cmd.Process.Kill()
		err = errors.Join(fmt.Errorf("did not stop within %v of SIGTERM", stopWait), <-done)
	}
	s.cmd = nil
	if err != nil {
		return fmt.Errorf("the %s ended badly: %w: %s", s.Name, err, s.stderr)
	}
	return nil
}

// tailBuffer keeps the last max bytes written to it, so a failing server's last words can be shown.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   bytes.Buffer
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b.Write(p)
	if over := t.b.Len() - t.max; over > 0 {
		t.b.Next(over)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(t.b.String())
}

var _ io.Writer = (*tailBuffer)(nil)
