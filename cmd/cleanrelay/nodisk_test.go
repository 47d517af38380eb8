package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cleanrelay/cleanrelay/internal/stracejudge"
	"github.com/cleanrelay/cleanrelay/onion/tornet"
)

var straceFlag = flag.Bool("strace", false, "run the tests that trace the relay process with strace (CI passes it; the Tor variant runs with -tor)")

// TestNoDiskNoLogs runs "cleanrelay serve --local-only" at the most verbose log level under strace through a
// full session (fullSession) and SIGTERM. It checks that the process opened no file for writing, created,
// renamed or removed nothing, wrote bytes only to sockets, its stdout/stderr pipes and the Go runtime's own
// eventfds and pipes, and that nothing it wrote to stdout or stderr carries user data.
func TestNoDiskNoLogs(t *testing.T) {
	if !*straceFlag {
		t.Skip("needs strace; run with -strace (CI does: .ci/test-clean.sh)")
	}
	const grace = 500 * time.Millisecond
	r := startTraced(t, 30*time.Second, "--local-only", "--listen", "127.0.0.1:0", "--log-level", "debug", "--grace", grace.String())
	ud := fullSession(t, relayAccess{url: r.url, http: &http.Client{Timeout: 30 * time.Second}, grace: grace})
	r.stop(t)
	r.checkTrace(t, false)
	checkNoUserData(t, r.stdout.String(), r.relayStderr(t), ud)
}

// TestNoDiskNoLogsTor is TestNoDiskNoLogs for the default onion mode on the private Tor network, with the
// clients going through the client tor's SOCKS port and the onion service. strace follows the tor the relay
// launches: its writes may go only inside its private directory, and that directory (with the temp directory
// around it) must be gone when the relay has exited. tor's log lines reach the relay's stderr and are checked
// with the relay's own.
func TestNoDiskNoLogsTor(t *testing.T) {
	n := tornet.Start(t)
	if _, err := exec.LookPath("strace"); err != nil {
		t.Fatalf("strace is missing (apt-get install strace; .ci/test-tor.sh installs it): %v", err)
	}
	const grace = 5 * time.Second // a resume goes through tor: a new stream and WebSocket handshake
	r := startTraced(t, 3*time.Minute, "--tor-torrc-extra", writeTorrc(t, n), "--log-level", "debug", "--grace", grace.String())
	hc := n.HTTPClient()
	// The descriptor was uploaded before the address was printed, but the client tor may need a few tries.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(500 * time.Millisecond) {
		resp, err := hc.Get(r.url)
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the onion service is not reachable through tor: %v", err)
		}
	}
	ud := fullSession(t, relayAccess{url: r.url, http: hc, dial: n.DialContext, grace: grace})
	r.stop(t)
	r.checkTrace(t, true)
	checkNoUserData(t, r.stdout.String(), r.relayStderr(t), ud)
	// The operator reads the address on stdout; the log is for aggregate facts only.
	if host := strings.TrimSuffix(strings.TrimPrefix(r.url, "http://"), "/"); strings.Contains(r.stderr.String(), host) {
		t.Errorf("the onion address appears in the log")
	}
}

// tracedRelay is "cleanrelay serve" running under "strace -f".
type tracedRelay struct {
	cmd    *exec.Cmd // strace; the relay is its child
	pid    int       // the relay
	url    string    // what it printed: http://HOST/
	stdout *lockedBuffer
	stderr *lockedBuffer
	trace  string          // strace's output file
	tmp    string          // the relay's TMPDIR
	pipes  map[string]bool // the relay's stdout and stderr, as "pipe:[inode]"
	done   chan struct{}   // closed when strace has exited
}

// startTraced runs "strace -f … cleanrelay serve args..." with its own TMPDIR and waits (up to timeout) for the
// address the relay prints. A cleanup kills both if the test ends without stop.
func startTraced(t *testing.T, timeout time.Duration, args ...string) *tracedRelay {
	t.Helper()
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	r := &tracedRelay{stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, trace: filepath.Join(t.TempDir(), "trace"),
		tmp: t.TempDir(), done: make(chan struct{})}
	// -yy names what each descriptor is (path, socket, pipe); --seccomp-bpf stops the processes only at the
	// traced calls, which keeps the run fast; -s 24 keeps the trace small.
	r.cmd = exec.Command("strace", append([]string{"-f", "-qq", "--seccomp-bpf", "-yy", "-s", "24",
		"-e", "trace=" + stracejudge.TracedCalls(), "-e", "signal=none", "-o", r.trace, bin, "serve"}, args...)...)
	r.cmd.Env = append(os.Environ(), "TMPDIR="+r.tmp)
	// Our own pipes, so that we know their inodes: the trace names them, and writes to them are stdout/stderr.
	r.pipes = map[string]bool{}
	var readers, writers [2]*os.File
	for i, w := range []*io.Writer{&r.cmd.Stdout, &r.cmd.Stderr} {
		if readers[i], writers[i], err = os.Pipe(); err != nil {
			t.Fatal(err)
		}
		var st syscall.Stat_t
		if err := syscall.Fstat(int(readers[i].Fd()), &st); err != nil {
			t.Fatal(err)
		}
		r.pipes[fmt.Sprintf("pipe:[%d]", st.Ino)] = true
		*w = writers[i]
	}
	err = r.cmd.Start()
	// The child has its copies; ours would keep the readers from seeing the end.
	writers[0].Close()
	writers[1].Close()
	if err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	stderrDone := make(chan struct{})
	go func() {
		io.Copy(r.stderr, readers[1])
		readers[1].Close()
		close(stderrDone)
	}()
	go func() {
		sc := bufio.NewScanner(readers[0])
		for sc.Scan() {
			fmt.Fprintln(r.stdout, sc.Text())
			if u, ok := strings.CutPrefix(sc.Text(), "cleanrelay: serving on "); ok {
				select {
				case addr <- u:
				default: // printed once; never block the relay's stdout on a second
				}
			}
		}
		readers[0].Close()
		<-stderrDone
		r.cmd.Wait()
		close(r.done)
	}()
	t.Cleanup(func() {
		select {
		case <-r.done:
			return
		default:
		}
		if r.pid != 0 {
			syscall.Kill(r.pid, syscall.SIGKILL)
		}
		r.cmd.Process.Kill()
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			t.Errorf("strace (pid %d) or the relay (pid %d) outlived SIGKILL", r.cmd.Process.Pid, r.pid)
		}
	})
	// strace forks a short-lived child of its own to probe ptrace before it starts the command: the relay is
	// the child that runs our binary.
	for deadline := time.Now().Add(5 * time.Second); r.pid == 0; time.Sleep(10 * time.Millisecond) {
		kids, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", r.cmd.Process.Pid, r.cmd.Process.Pid))
		for _, f := range strings.Fields(string(kids)) {
			cmdline, _ := os.ReadFile("/proc/" + f + "/cmdline")
			if strings.HasPrefix(string(cmdline), bin+"\x00serve\x00") {
				r.pid, _ = strconv.Atoi(f)
			}
		}
		if r.pid == 0 && time.Now().After(deadline) {
			t.Fatalf("cannot find the relay under strace: children %q; stderr:\n%s", kids, r.stderr)
		}
	}
	select {
	case r.url = <-addr:
		return r
	case <-r.done:
		t.Fatalf("cleanrelay serve ended without printing its address; stderr:\n%s", r.stderr)
	case <-time.After(timeout):
		t.Fatalf("no address printed within %v; stderr:\n%s", timeout, r.stderr)
	}
	return nil
}

// stop sends SIGTERM to the relay (not to strace, which ends when its tracees have) and waits for a clean exit.
func (r *tracedRelay) stop(t *testing.T) {
	t.Helper()
	syscall.Kill(r.pid, syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		ps, _ := exec.Command("ps", "-o", "pid,ppid,stat,cmd", "--ppid", strconv.Itoa(r.cmd.Process.Pid)).CombinedOutput()
		t.Fatalf("the relay (pid %d) did not exit within 30 s of SIGTERM; strace's children:\n%s\nstderr:\n%s", r.pid, ps, clip(r.stderr.String(), 4000))
	}
	// strace exits with its tracee's status.
	if code := r.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("serve under strace exited with %d; stderr:\n%s", code, clip(r.stderr.String(), 4000))
	}
}

// relayStderr is what the relay wrote to stderr: strace shares that pipe, and its own lines ("strace: seccomp
// filter is requested but unavailable" on an older kernel) are logged and left out.
func (r *tracedRelay) relayStderr(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, line := range strings.SplitAfter(r.stderr.String(), "\n") {
		if strings.HasPrefix(line, "strace: ") {
			t.Logf("strace said: %s", strings.TrimSpace(line))
			continue
		}
		b.WriteString(line)
	}
	return b.String()
}

// clip shortens s for a test message.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + fmt.Sprintf("… (%d more bytes)", len(s)-n)
}

// checkTrace judges every recorded call (stracejudge.Judge), checks the trace saw what it must have (else it proves
// nothing), and that tor's private directory is gone.
func (r *tracedRelay) checkTrace(t *testing.T, onion bool) {
	t.Helper()
	data, err := os.ReadFile(r.trace)
	if err != nil {
		t.Fatal(err)
	}
	var private *regexp.Regexp
	if onion {
		private = regexp.MustCompile(`^` + regexp.QuoteMeta(r.tmp) + `/cleanrelay-onion-[^/]+(/|$)`)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	v := stracejudge.Judge(lines, stracejudge.Options{StdPipes: r.pipes, Private: private})
	if len(v.Bad) > 0 {
		shown := v.Bad[:min(len(v.Bad), 30)]
		for i, l := range shown {
			shown[i] = clip(l, 300)
		}
		t.Errorf("the relay wrote where it must not (%d calls), e.g.:\n%s\nthe first one's thread before it:\n%s",
			len(v.Bad), strings.Join(shown, "\n"), strings.Join(threadBefore(lines, v.Bad[0], 12), "\n"))
	}
	if v.Counts["socket"] == 0 || v.Counts["stdout/stderr"] == 0 || v.Counts["read-only open"] == 0 {
		t.Errorf("the trace lacks socket writes, stdout/stderr writes or read-only opens (%v): it cannot be right", v.Counts)
	}
	if onion {
		if !v.TorExec || v.TorDataFiles == 0 || len(v.PrivateDirs) == 0 {
			t.Errorf("strace did not follow tor into its private directory (tor started: %v, files it wrote: %d, private directories: %d)",
				v.TorExec, v.TorDataFiles, len(v.PrivateDirs))
		}
	} else if v.TorExec || len(v.PrivateDirs) > 0 {
		t.Errorf("--local-only started tor or made a private directory")
	}
	for dir := range v.PrivateDirs {
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("tor's private directory %s is still there after exit (%v)", dir, err)
		}
	}
	if entries, _ := os.ReadDir(r.tmp); len(entries) > 0 {
		t.Errorf("the relay left %d entries in its TMPDIR (first: %s)", len(entries), entries[0].Name())
	}
	t.Logf("%d trace lines: %v; tor's private directories: %d, files tor wrote there: %d",
		len(lines), v.Counts, len(v.PrivateDirs), v.TorDataFiles)
}

// TestParseLogLine checks the reader of slog's text format that the log checks stand on.
func TestParseLogLine(t *testing.T) {
	tests := map[string]struct {
		line string
		want map[string]string // nil: not a log record
	}{
		"plain":   {`time=2026-11-23T09:04:10.000Z level=INFO msg="relay started"`, map[string]string{"time": "2026-11-23T09:04:10.000Z", "level": "INFO", "msg": "relay started"}},
		"quoted":  {`time=t level=DEBUG msg="a \"b\" c=d" why=eof n=3`, map[string]string{"time": "t", "level": "DEBUG", "msg": `a "b" c=d`, "why": "eof", "n": "3"}},
		"empty":   {`time=t level=INFO msg=""`, map[string]string{"time": "t", "level": "INFO", "msg": ""}},
		"text":    {`cleanrelay: failed to listen`, nil},
		"no time": {`level=INFO msg=x`, nil},
		"panic":   {`panic: runtime error: index out of range`, nil},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := parseLogLine(tc.line)
			if tc.want == nil {
				if err == nil {
					t.Fatalf("parsed %v, want an error", got)
				}
				return
			}
			if err != nil || !maps.Equal(got, tc.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

// threadBefore returns up to n trace lines of line's thread (its first field, the pid) before line, and line:
// what the thread did just before a call the judge refused, for a failure that is hard to reproduce.
func threadBefore(lines []string, line string, n int) []string {
	pid, _, _ := strings.Cut(line, " ")
	var out []string
	for _, l := range lines {
		if l == line {
			return append(out, clip(l, 300))
		}
		if p, _, _ := strings.Cut(l, " "); p == pid {
			out = append(out, clip(l, 300))
			if len(out) > n {
				out = out[1:]
			}
		}
	}
	return out
}
