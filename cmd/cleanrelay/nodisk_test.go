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

	"github.com/cleanrelay/cleanrelay/onion/tornet"
)

var straceFlag = flag.Bool("strace", false, "run the tests that trace the relay process with strace (CI passes it; the Tor variant runs with -tor)")

// The system calls strace records.
const (
	// pathCalls put something on disk or change it, named by path (an open is judged by its flags).
	pathCalls = "open,openat,openat2,creat,mkdir,mkdirat,mknod,mknodat,rename,renameat,renameat2,unlink,unlinkat," +
		"rmdir,truncate,link,linkat,symlink,symlinkat,chmod,fchmodat,fchmodat2,chown,fchownat,lchown,utime,utimes," +
		"utimensat,futimesat,setxattr,lsetxattr,removexattr,lremovexattr"
	// fdCalls change a file through a descriptor.
	fdCalls = "ftruncate,fallocate,fchmod,fchown,fsetxattr,fremovexattr"
	// writeCalls move bytes out of the process; the descriptor says where to.
	writeCalls = "write,writev,pwrite64,pwritev,pwritev2,sendto,sendmsg,sendmmsg,vmsplice"
	// moveCalls move bytes between two descriptors; both must be harmless.
	moveCalls = "sendfile,copy_file_range,splice,tee"
	// otherCalls: bind can make a Unix socket on disk; io_uring would write where strace cannot see; pipes and
	// execve are recorded to tell the processes' own pipes and tor apart.
	otherCalls = "bind,io_uring_setup,pipe,pipe2,execve"
)

// tracedCalls is strace's -e trace= list. The "?" prefix lets strace skip a name this architecture lacks.
func tracedCalls() string {
	var names []string
	for _, list := range []string{pathCalls, fdCalls, writeCalls, moveCalls, otherCalls} {
		for _, n := range strings.Split(list, ",") {
			names = append(names, "?"+n)
		}
	}
	return strings.Join(names, ",")
}

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
		"-e", "trace=" + tracedCalls(), "-e", "signal=none", "-o", r.trace, bin, "serve"}, args...)...)
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

// traceLine is one line of "strace -f" output: "PID name(args…" (the result, if any, is in args).
var traceLine = regexp.MustCompile(`^(\d+) +([a-z0-9_]+)\((.*)$`)

// fdAnnotation finds "-yy" descriptor annotations, "3<…>": what follows "<" is read by describeFD.
var fdAnnotation = regexp.MustCompile(`(?:^|[(\[ ,])(?:\d+|AT_FDCWD)<`)

// describeFD reads the annotation at the start of s (after "<"): a socket ("TCP:[a->b]", "UNIX-STREAM:[…]",
// "socket:[…]"), a pipe ("pipe:[inode]"), an anonymous inode ("anon_inode:[eventfd]") or a path (which may be
// followed by a device note, "/dev/null<char 1:3>").
func describeFD(s string) (kind, what string) {
	if i := strings.Index(s, ":["); i > 0 && !strings.ContainsAny(s[:i], "/<> ") {
		end := strings.Index(s, "]>")
		if end < 0 {
			return "unknown", s
		}
		what = s[:end+1]
		switch s[:i] {
		case "pipe":
			return "pipe", what
		case "anon_inode":
			return "anon", what
		default: // socket, TCP, TCPv6, UDP, UNIX, UNIX-STREAM, NETLINK, …
			return "socket", what
		}
	}
	end := strings.IndexAny(s, "<>")
	if end < 0 {
		return "unknown", s
	}
	return "path", s[:end]
}

// quotedPath finds the quoted path arguments of a call, each with the directory annotation before it, if any.
var quotedPath = regexp.MustCompile(`(?:(?:\d+|AT_FDCWD)<([^<>]*)>, )?"((?:[^"\\]|\\.)*)"`)

// traceVerdict is what judgeTrace found.
type traceVerdict struct {
	bad          []string       // every call that broke the contract
	counts       map[string]int // allowed calls by what they went to
	privateDirs  map[string]bool
	torExec      bool
	torDataFiles int // write-intent opens inside tor's data directory: proof that strace followed tor
}

// checkTrace judges every recorded call (judgeTrace), checks the trace saw what it must have (else it proves
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
	v := judgeTrace(lines, r.pipes, private)
	if len(v.bad) > 0 {
		shown := v.bad[:min(len(v.bad), 30)]
		for i, l := range shown {
			shown[i] = clip(l, 300)
		}
		t.Errorf("the relay wrote where it must not (%d calls), e.g.:\n%s", len(v.bad), strings.Join(shown, "\n"))
	}
	if v.counts["socket"] == 0 || v.counts["stdout/stderr"] == 0 || v.counts["read-only open"] == 0 {
		t.Errorf("the trace lacks socket writes, stdout/stderr writes or read-only opens (%v): it cannot be right", v.counts)
	}
	if onion {
		if !v.torExec || v.torDataFiles == 0 || len(v.privateDirs) == 0 {
			t.Errorf("strace did not follow tor into its private directory (tor started: %v, files it wrote: %d, private directories: %d)",
				v.torExec, v.torDataFiles, len(v.privateDirs))
		}
	} else if v.torExec || len(v.privateDirs) > 0 {
		t.Errorf("--local-only started tor or made a private directory")
	}
	for dir := range v.privateDirs {
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("tor's private directory %s is still there after exit (%v)", dir, err)
		}
	}
	if entries, _ := os.ReadDir(r.tmp); len(entries) > 0 {
		t.Errorf("the relay left %d entries in its TMPDIR (first: %s)", len(entries), entries[0].Name())
	}
	t.Logf("%d trace lines: %v; tor's private directories: %d, files tor wrote there: %d",
		len(lines), v.counts, len(v.privateDirs), v.torDataFiles)
}

// judgeTrace checks each call of a "strace -f -yy" trace. Allowed: read-only opens; writes to sockets, to the
// relay's stdout/stderr (stdPipes), to pipes the traced processes made themselves (Go's and tor's wake-ups,
// tor's log pipe to the relay) and to eventfds; anything inside a directory that private matches (tor's private
// directory; nil: none). Everything else that writes, creates, renames, removes or changes a file is bad.
func judgeTrace(lines []string, stdPipes map[string]bool, private *regexp.Regexp) *traceVerdict {
	v := &traceVerdict{counts: map[string]int{}, privateDirs: map[string]bool{}}
	ownPipes := map[string]bool{}
	inPrivate := func(path string) bool {
		if private == nil {
			return false
		}
		m := private.FindString(path)
		if m == "" {
			return false
		}
		v.privateDirs[strings.TrimSuffix(m, "/")] = true
		return true
	}
	// fdOK judges a descriptor that bytes go to, and counts it.
	fdOK := func(annotation string) bool {
		kind, what := describeFD(annotation)
		switch {
		case kind == "socket":
			v.counts["socket"]++
		case kind == "pipe" && stdPipes[what]:
			v.counts["stdout/stderr"]++
		case kind == "pipe" && ownPipes[what]:
			v.counts["own pipe"]++
		case kind == "anon" && what == "anon_inode:[eventfd]":
			v.counts["eventfd"]++
		case kind == "path" && inPrivate(what):
			v.counts["tor's private directory"]++
		default:
			return false
		}
		return true
	}
	fds := func(args string) []string {
		var out []string
		for _, loc := range fdAnnotation.FindAllStringIndex(args, -1) {
			out = append(out, args[loc[1]:])
		}
		return out
	}
	pipeName := regexp.MustCompile(`pipe:\[\d+\]`)
	resumedPipe := regexp.MustCompile(`<\.\.\. pipe2? resumed>`)
	sunPath := regexp.MustCompile(`sun_path="([^"]*)"`)
	writeIntent := regexp.MustCompile(`O_WRONLY|O_RDWR|O_CREAT|O_TRUNC|O_APPEND|O_TMPFILE`)
	is := func(list, name string) bool { return strings.Contains(","+list+",", ","+name+",") }
	for _, line := range lines {
		m := traceLine.FindStringSubmatch(line)
		if m == nil {
			// "+++ exited", and with -f a call's "<... resumed>" half, which carries only its result: the
			// arguments are on its "<unfinished ...>" line, judged below. A pipe's descriptors are its result:
			// a pipe call cut in two by another thread's call names them in its resumed half.
			if resumedPipe.MatchString(line) {
				for _, p := range pipeName.FindAllString(line, -1) {
					ownPipes[p] = true
				}
			}
			continue
		}
		name, args := m[2], m[3]
		// What a call returned is no part of what it was asked to do ("= 3</etc/hosts>" is the opened file).
		if i := strings.LastIndex(args, ") = "); i >= 0 {
			args = args[:i]
		}
		ok := true
		switch {
		case name == "execve":
			if q := strings.SplitN(args, `"`, 3); len(q) == 3 && strings.HasSuffix(q[1], "/tor") {
				v.torExec = true
			}
		case name == "pipe" || name == "pipe2":
			for _, p := range pipeName.FindAllString(args, -1) {
				ownPipes[p] = true
			}
		case is(writeCalls, name) || is(fdCalls, name):
			f := fds(args)
			ok = len(f) > 0 && fdOK(f[0])
		case is(moveCalls, name):
			f := fds(args)
			ok = len(f) >= 2
			for _, a := range f {
				ok = ok && fdOK(a)
			}
		case name == "bind":
			if sp := sunPath.FindStringSubmatch(args); sp != nil {
				ok = inPrivate(sp[1]) // an abstract socket shows as sun_path=@"…" and makes nothing on disk
			}
		case is(pathCalls, name):
			paths := quotedPath.FindAllStringSubmatch(args, -1)
			inside, torData := len(paths) > 0, false
			for _, p := range paths {
				path := p[2]
				if !filepath.IsAbs(path) {
					path = filepath.Join(p[1], path)
				}
				inside = inside && inPrivate(path)
				torData = torData || strings.Contains(path, "/tor/")
			}
			opens := strings.HasPrefix(name, "open")
			write := !opens || writeIntent.MatchString(args)
			switch {
			case inside:
				v.counts["tor's private directory"]++
				if opens && write && torData {
					v.torDataFiles++
				}
			case !write:
				v.counts["read-only open"]++
			default:
				ok = false
			}
		default: // io_uring_setup, or a call this switch forgot
			ok = false
		}
		if !ok {
			v.bad = append(v.bad, line)
		}
	}
	return v
}

// TestJudgeTrace checks the trace judge on lines as strace 6 prints them, without running strace.
func TestJudgeTrace(t *testing.T) {
	std := map[string]bool{"pipe:[100]": true, "pipe:[101]": true}
	private := regexp.MustCompile(`^/tmp/T/cleanrelay-onion-[^/]+(/|$)`)
	tests := map[string]struct {
		line    string
		onion   bool // judge with the private directory allowed
		ok      bool
		counted string // the count an allowed call adds to
	}{
		"socket write":                 {`7 write(9<TCP:[127.0.0.1:44755->127.0.0.1:54460]>, "hello", 5) = 5`, false, true, "socket"},
		"unix socket sendmsg":          {`7 sendmsg(9<UNIX-STREAM:[1584329->1584330]>, {msg_name=NULL, msg_iov=[{iov_base="x", iov_len=1}]}, 0) = 1`, false, true, "socket"},
		"unfinished write":             {`7 write(9<TCPv6:[::1:80->::1:5000]>, "hello", 5 <unfinished ...>`, false, true, "socket"},
		"stdout":                       {`7 write(1<pipe:[100]>, "cleanrelay: serving on h"..., 47) = 47`, false, true, "stdout/stderr"},
		"eventfd":                      {`7 write(5<anon_inode:[eventfd]>, "\1\0\0\0\0\0\0\0", 8) = 8`, false, true, "eventfd"},
		"foreign pipe":                 {`7 write(6<pipe:[999]>, "x", 1) = 1`, false, false, ""},
		"file write":                   {`7 write(11</tmp/x/file>, "hi", 2) = 2`, false, false, ""},
		"dev null write":               {`7 write(1</dev/null<char 1:3>>, "child\n", 6) = 6`, false, false, ""},
		"read-only open":               {`7 openat(AT_FDCWD</w>, "/etc/hosts", O_RDONLY|O_CLOEXEC) = 3</etc/hosts>`, false, true, "read-only open"},
		"open for writing":             {`7 openat(AT_FDCWD</w>, "/tmp/x", O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC, 0600) = 11</tmp/x>`, false, false, ""},
		"open for writing, unfinished": {`7 openat(AT_FDCWD</w>, "/tmp/x", O_RDWR|O_CREAT, 0600 <unfinished ...>`, false, false, ""},
		"relative unlink":              {`7 unlinkat(11</tmp/stx>, "d", AT_REMOVEDIR) = 0`, false, false, ""},
		"rename":                       {`7 renameat(AT_FDCWD</w>, "/tmp/a", AT_FDCWD</w>, "/tmp/b") = 0`, false, false, ""},
		"unix socket on disk":          {`7 bind(11<UNIX-STREAM:[1]>, {sa_family=AF_UNIX, sun_path="/tmp/stx/sock"}, 16) = 0`, false, false, ""},
		"tcp bind":                     {`7 bind(5<socket:[1]>, {sa_family=AF_INET, sin_port=htons(0), sin_addr=inet_addr("127.0.0.1")}, 16) = 0`, false, true, ""},
		"ftruncate":                    {`7 ftruncate(11</tmp/x>, 0) = 0`, false, false, ""},
		"splice to a file":             {`7 splice(9<TCP:[1->2]>, NULL, 11</tmp/x>, NULL, 4096, 0) = 10`, false, false, ""},
		"io_uring":                     {`7 io_uring_setup(8, {flags=0}) = 3<anon_inode:[io_uring]>`, false, false, ""},
		"private dir open":             {`8 openat(AT_FDCWD</w>, "/tmp/T/cleanrelay-onion-1/tor/state.tmp", O_WRONLY|O_CREAT|O_TRUNC, 0600) = 8</tmp/T/cleanrelay-onion-1/tor/state.tmp>`, true, true, "tor's private directory"},
		"private dir write":            {`8 write(8</tmp/T/cleanrelay-onion-1/tor/state.tmp>, "# Tor state", 11) = 11`, true, true, "tor's private directory"},
		"private dir rename":           {`8 rename("/tmp/T/cleanrelay-onion-1/tor/a.tmp", "/tmp/T/cleanrelay-onion-1/tor/a") = 0`, true, true, "tor's private directory"},
		"out of private dir":           {`8 rename("/tmp/T/cleanrelay-onion-1/tor/a", "/tmp/T/a") = 0`, true, false, ""},
		"private dir, local":           {`8 mkdirat(AT_FDCWD</w>, "/tmp/T/cleanrelay-onion-1", 0700) = 0`, false, false, ""},
		"resumed half":                 {`7 <... write resumed>) = 5`, false, true, ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var p *regexp.Regexp
			if tc.onion {
				p = private
			}
			v := judgeTrace([]string{tc.line}, std, p)
			if ok := len(v.bad) == 0; ok != tc.ok {
				t.Fatalf("judged ok=%v, want %v", ok, tc.ok)
			}
			if tc.counted != "" && v.counts[tc.counted] != 1 {
				t.Errorf("counts %v, want one %q", v.counts, tc.counted)
			}
		})
	}
	// A pipe the traced processes made is theirs to write to.
	v := judgeTrace([]string{`7 pipe2([14<pipe:[55]>, 15<pipe:[55]>], O_CLOEXEC) = 0`, `7 write(15<pipe:[55]>, "x", 1) = 1`}, std, nil)
	if len(v.bad) != 0 || v.counts["own pipe"] != 1 {
		t.Errorf("own pipe: bad %q, counts %v", v.bad, v.counts)
	}
	// With -f another thread's call can cut the pipe call in two; its descriptors are in the resumed half.
	v = judgeTrace([]string{`7 pipe2( <unfinished ...>`, `8 write(3<socket:[9]>, "x", 1) = 1`,
		`7 <... pipe2 resumed>[5<pipe:[56]>, 6<pipe:[56]>], O_CLOEXEC) = 0`, `7 write(6<pipe:[56]>, "\17", 1) = 1`}, std, nil)
	if len(v.bad) != 0 || v.counts["own pipe"] != 1 {
		t.Errorf("own pipe made in two halves: bad %q, counts %v", v.bad, v.counts)
	}
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
