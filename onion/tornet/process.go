// This file: starting, watching and stopping the tor processes of the network.

package tornet

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func (n *Network) startTor(torPath, name, dataDir string, lines []string) error {
	torrc := filepath.Join(n.Dir, name+".torrc")
	if err := os.WriteFile(torrc, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		return fmt.Errorf("failed to write torrc: %w", err)
	}
	out, err := os.Create(filepath.Join(n.Dir, name+".out"))
	if err != nil {
		return fmt.Errorf("failed to create output file: %w", err)
	}
	defer out.Close()
	cmd := exec.Command(torPath, "--defaults-torrc", n.emptyFile, "-f", torrc)
	cmd.Stdout, cmd.Stderr = out, out
	return n.startProcess(name, filepath.Join(dataDir, "notice.log"), cmd)
}

// startProcess starts cmd and records it, so that teardown ends exactly it; log is what dumpLogs shows.
func (n *Network) startProcess(name, log string, cmd *exec.Cmd) error {
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("failed to start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, log: log, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	n.mu.Lock()
	n.procs = append(n.procs, p)
	n.mu.Unlock()
	return nil
}

// Stop ends every tor of the network: SIGTERM, then SIGKILL after 3 s. It is also registered as a cleanup.
func (n *Network) stopAll() {
	n.mu.Lock()
	procs := n.procs
	n.procs = nil
	n.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(func() { stopProcess(p.cmd.Process, p.done) })
	}
	wg.Wait()
}

// stopProcess ends one process by its PID and waits for it.
func stopProcess(p *os.Process, done <-chan struct{}) {
	p.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(killAfter):
		p.Kill()
		<-done
	}
}

// PIDs returns the PIDs of the network's running tors.
func (n *Network) PIDs() []int {
	n.mu.Lock()
	defer n.mu.Unlock()
	var pids []int
	for _, p := range n.procs {
		pids = append(pids, p.cmd.Process.Pid)
	}
	return pids
}

func (n *Network) dumpLogs(t testing.TB) {
	n.mu.Lock()
	procs := slices.Clone(n.procs)
	n.mu.Unlock()
	for _, p := range procs {
		b, _ := os.ReadFile(p.log)
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) > 15 {
			lines = lines[len(lines)-15:]
		}
		t.Logf("tornet: last lines of %s's log:\n%s", p.name, strings.Join(lines, "\n"))
	}
}

// waitConsensus polls an authority until its consensus lists every node as Running.
func (n *Network) waitConsensus(dirPort int, nicks []string) error {
	url := fmt.Sprintf("http://127.0.0.1:%d/tor/status-vote/current/consensus", dirPort)
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(consensusTimeout)
	var last string
	for time.Now().Before(deadline) {
		if err := n.anyExited(); err != nil {
			return err
		}
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		// Otherwise tor answers deflate, which net/http does not decode.
		req.Header.Set("Accept-Encoding", "identity")
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				running := runningNicks(body)
				missing := 0
				for _, nick := range nicks {
					if !running[nick] {
						missing++
					}
				}
				if missing == 0 {
					return nil
				}
				last = fmt.Sprintf("%d of %d relays not yet Running", missing, len(nicks))
			} else {
				last = resp.Status
			}
		} else {
			last = err.Error()
		}
		time.Sleep(500 * time.Millisecond)
	}
	return fmt.Errorf("no complete consensus after %v (last: %s)", consensusTimeout, last)
}

// runningNicks parses a consensus document: each router's "r NICK ..." line is followed by its "s FLAGS" line.
func runningNicks(consensus []byte) map[string]bool {
	running := map[string]bool{}
	var nick string
	sc := bufio.NewScanner(bytes.NewReader(consensus))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) > 1 && f[0] == "r":
			nick = f[1]
		case len(f) > 0 && f[0] == "s" && nick != "":
			if slices.Contains(f[1:], "Running") {
				running[nick] = true
			}
			nick = ""
		}
	}
	return running
}

func (n *Network) anyExited() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, p := range n.procs {
		select {
		case <-p.done:
			return fmt.Errorf("tor %s exited early (%v); see %s", p.name, p.cmd.ProcessState, p.log)
		default:
		}
	}
	return nil
}

// waitLog waits until the file contains want.
func waitLog(path, want string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(path)
		if err == nil && bytes.Contains(b, []byte(want)) {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("%q not in %s after %v", want, path, timeout)
}

// freePorts returns distinct free TCP ports on 127.0.0.1. Holding all listeners until the end keeps them distinct.
func freePorts(count int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range count {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("failed to find a free port: %w", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
