package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The soak's floods in a process of their own. On one machine the flooders, the honest clients and the relay
// share the cores; flooders inside the bench's process steal the CPU of the honest clients whose latency it
// times, whatever the relay does (docs/performance.md, "The soak's floods one at a time"). A real attacker's CPU
// is not on the relay's machine. So the soak runs its floods in a child process (the same binary, "cleanrelay
// bench-flood") whose every thread runs under SCHED_IDLE at nice 19: it gets only CPU that the relay and the
// honest clients leave over, and its operation counts, reported back, show how much flooding that was. A flood
// that got (almost) no CPU is named in the result, not hidden.
//
// The protocol, one JSON object a line on the child's stdout: floodHello once the floods are prepared (they
// start right after it), a FloodReport so far every --every, then the final FloodReport when they end. They end when the child's stdin is closed (the parent
// is done, or died), on SIGTERM or SIGINT, or at --limit, whichever comes first.

// FloodCmd is how to start the flood process: Bin with Args, then the flood flags; Env is added to the
// environment (tests use it to make their own binary the flood process).
type FloodCmd struct {
	Bin  string
	Args []string
	Env  []string
}

// floodHello is the child's first line: the floods are prepared and about to start.
type floodHello struct {
	Ready       bool `json:"ready"`
	Threads     int  `json:"threads"`
	IdleThreads int  `json:"idle_threads"`
}

// FloodReport is the child's last line: what each flood did, how long, at what CPU cost, at what priority.
type FloodReport struct {
	Final       bool             `json:"final"`        // the last report: the floods have ended
	Ops         map[string]int64 `json:"ops"`          // operations by flood
	Seconds     float64          `json:"seconds"`      // how long the floods ran
	CPU         float64          `json:"cpu_s"`        // the flood process's CPU time, user+system, seconds
	Threads     int              `json:"threads"`      // the process's threads at the end
	IdleThreads int              `json:"idle_threads"` // how many of them were SCHED_IDLE at nice 19
	PID         int              `json:"pid"`
}

// starvedRate is the rate below which a flood counts as starved in a soak's result: it made too few operations
// to have pressed the relay, most likely because SCHED_IDLE left it no CPU.
const starvedRate = 1.0

// FloodProcess is a running flood process.
type FloodProcess struct {
	PID     int
	Threads int // at start, all SCHED_IDLE
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	lines   chan []byte // the final report's line
	done    chan struct{}
	stderr  *tailBuffer
	stopped bool

	mu   sync.Mutex
	last FloodReport
}

// Ops returns each flood's operations so far, as the flood process last reported them (nil before its first
// report).
func (p *FloodProcess) Ops() map[string]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last.Ops
}

// Done is closed when the flood process has closed its stdout: it has ended.
func (p *FloodProcess) Done() <-chan struct{} { return p.done }

// floodStartTimeout bounds how long the flood process may take to prepare its floods (the accounts floods
// register accounts, with the relay hashing their passwords, and the child runs at the lowest priority).
const floodStartTimeout = 2 * time.Minute

// StartFloods starts the flood process running floods (names of Floods) against the relay at wsURL for at most
// limit, reporting its operations every every, and returns once it has prepared them and they are starting.
func StartFloods(ctx context.Context, fc FloodCmd, wsURL string, names []string, limit, every time.Duration) (*FloodProcess, error) {
	args := append(append([]string{}, fc.Args...), "--url", wsURL, "--floods", strings.Join(names, ","),
		"--limit", limit.String(), "--every", every.String())
	cmd := exec.Command(fc.Bin, args...)
	cmd.Env = append(os.Environ(), fc.Env...)
	// The child dies with the bench (SIGKILL when this process ends); closing its stdin stops it cleanly.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := &FloodProcess{cmd: cmd, lines: make(chan []byte, 2), done: make(chan struct{}), stderr: &tailBuffer{max: 8 << 10}}
	cmd.Stderr = p.stderr
	var err error
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("failed to start the flood process: %w", err)
	}
	p.PID = cmd.Process.Pid
	go func() { // the hello and the final report go to lines; the reports between them to last
		defer close(p.done)
		defer close(p.lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 1<<20)
		for n := 0; sc.Scan(); n++ {
			var r FloodReport
			if n > 0 && json.Unmarshal(sc.Bytes(), &r) == nil && !r.Final {
				p.mu.Lock()
				p.last = r
				p.mu.Unlock()
				continue
			}
			p.lines <- append([]byte(nil), sc.Bytes()...)
		}
	}()
	t := time.NewTimer(floodStartTimeout)
	defer t.Stop()
	select {
	case line, ok := <-p.lines:
		var h floodHello
		if !ok || json.Unmarshal(line, &h) != nil || !h.Ready {
			p.kill()
			return nil, fmt.Errorf("the flood process failed to start its floods (%q): %s", line, p.stderr)
		}
		if h.IdleThreads != h.Threads {
			p.kill()
			return nil, fmt.Errorf("the flood process runs %d of its %d threads at the lowest priority, not all", h.IdleThreads, h.Threads)
		}
		p.Threads = h.Threads
		return p, nil
	case <-t.C:
		p.kill()
		return nil, fmt.Errorf("the flood process did not prepare its floods within %v: %s", floodStartTimeout, p.stderr)
	case <-ctx.Done():
		p.kill()
		return nil, ctx.Err()
	}
}

// floodStopWait is how long Stop waits for the flood process's report after telling it to stop.
const floodStopWait = 30 * time.Second

// Stop tells the flood process to stop (it closes its stdin) and returns its report. After floodStopWait
// without one it kills the process. An error when the process ended badly, or ran a thread above the lowest
// priority.
func (p *FloodProcess) Stop() (*FloodReport, error) {
	if p.stopped {
		return nil, errors.New("the flood process was already stopped")
	}
	p.stopped = true
	p.stdin.Close()
	t := time.NewTimer(floodStopWait)
	defer t.Stop()
	var rep *FloodReport
	var err error
	select {
	case line, ok := <-p.lines:
		rep = &FloodReport{}
		if !ok || json.Unmarshal(line, rep) != nil || rep.Ops == nil || !rep.Final {
			rep, err = nil, fmt.Errorf("the flood process ended without its report (%q)", line)
		}
	case <-t.C:
		err = fmt.Errorf("the flood process did not report within %v of being told to stop", floodStopWait)
		p.cmd.Process.Kill()
	}
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case werr := <-done:
		err = errors.Join(err, werr)
	case <-time.After(floodStopWait):
		p.cmd.Process.Kill()
		err = errors.Join(err, errors.New("the flood process did not exit after its report"), <-done)
	}
	if rep != nil && rep.IdleThreads != rep.Threads {
		err = errors.Join(err, fmt.Errorf("the flood process ended with %d of its %d threads at the lowest priority", rep.IdleThreads, rep.Threads))
	}
	if err != nil {
		return rep, fmt.Errorf("%w: %s", err, p.stderr)
	}
	return rep, nil
}

// kill ends the process at once (a failed start).
func (p *FloodProcess) kill() {
	p.stopped = true
	p.cmd.Process.Kill()
	p.cmd.Wait()
}

// FloodMain is the flood process, "cleanrelay bench-flood --url URL --floods NAMES --limit D": it lowers every
// thread of itself to SCHED_IDLE at nice 19, prepares the floods, says so on stdout, runs them until stdin is
// closed, a SIGTERM or SIGINT, or the limit, and reports. It returns the exit code.
func FloodMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cleanrelay bench-flood", flag.ContinueOnError)
	fs.SetOutput(stderr)
	wsURL := fs.String("url", "", "the relay's ws://127.0.0.1:PORT/ws `URL` (loopback only)")
	names := fs.String("floods", "", "the floods to run, comma-separated")
	limit := fs.Duration("limit", time.Minute, "stop after this long at the latest")
	every := fs.Duration("every", 10*time.Second, "report the operations so far this often")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "cleanrelay: "+format+"\n", a...)
		return 1
	}
	u, err := url.Parse(*wsURL)
	if err != nil || u.Scheme != "ws" {
		return fail("--url %q is not a ws:// URL", *wsURL)
	}
	if ip := net.ParseIP(u.Hostname()); ip == nil || !ip.IsLoopback() {
		return fail("--url %q is not on a loopback address: floods stay on this machine", *wsURL)
	}
	if *limit <= 0 || *every <= 0 {
		return fail("--limit and --every must be positive")
	}
	var floods []Flood
	for _, n := range strings.Split(*names, ",") {
		f, ok := Floods[n]
		if !ok {
			return fail("unknown flood %q (hint: %s)", n, strings.Join(FloodNames(), ","))
		}
		floods = append(floods, f)
	}
	if err := lowestPriority(); err != nil {
		return fail("%v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *limit)
	defer cancel()
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() { // stdin closed: the parent is done (or gone)
		io.Copy(io.Discard, stdin)
		cancel()
	}()
	runs := make([]func(context.Context, *atomic.Int64), len(floods))
	for i, f := range floods {
		if runs[i], err = f.Start(ctx, *wsURL); err != nil {
			return fail("failed to prepare the %s flood: %v", f.Name, err)
		}
	}
	threads, idle := priorityCount()
	enc := json.NewEncoder(stdout)
	if err := enc.Encode(floodHello{Ready: true, Threads: threads, IdleThreads: idle}); err != nil {
		return 1
	}
	ops := make([]atomic.Int64, len(floods))
	var wg sync.WaitGroup
	start := time.Now()
	for i, run := range runs {
		wg.Add(1)
		go func() { defer wg.Done(); run(ctx, &ops[i]) }()
	}
	report := func(final bool) FloodReport {
		rep := FloodReport{Final: final, Ops: map[string]int64{}, Seconds: time.Since(start).Seconds(), PID: os.Getpid()}
		for i, f := range floods {
			rep.Ops[f.Name] = ops[i].Load()
		}
		cpu, _ := selfCPU()
		rep.CPU = cpu.Seconds()
		rep.Threads, rep.IdleThreads = priorityCount()
		return rep
	}
	tick := time.NewTicker(*every)
	defer tick.Stop()
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-tick.C:
			if err := enc.Encode(report(false)); err != nil {
				return 1
			}
		}
	}
	elapsed := time.Since(start)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select { // floods end with ctx; one stuck in a dial must not keep the report back
	case <-done:
	case <-time.After(10 * time.Second):
		fmt.Fprintln(stderr, "cleanrelay: a flood did not end within 10 s of the stop; reporting anyway")
	}
	rep := report(true)
	rep.Seconds = elapsed.Seconds()
	if err := enc.Encode(rep); err != nil {
		return 1
	}
	return 0
}

// lowestPriority puts every thread of this process under SCHED_IDLE at nice 19. Threads made later inherit
// both from the thread that makes them. A thread made while the list is walked is caught by walking again.
func lowestPriority() error {
	for range 5 {
		tids, err := threadIDs()
		if err != nil {
			return err
		}
		for _, tid := range tids {
			if err := unix.Setpriority(unix.PRIO_PROCESS, tid, 19); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("failed to set thread %d to nice 19: %w", tid, err)
			}
			attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_IDLE, Nice: 19}
			if err := unix.SchedSetAttr(tid, &attr, 0); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("failed to set thread %d to SCHED_IDLE: %w", tid, err)
			}
		}
		if n, idle := priorityCount(); n == idle {
			return nil
		}
	}
	n, idle := priorityCount()
	return fmt.Errorf("only %d of this process's %d threads took SCHED_IDLE at nice 19", idle, n)
}

// priorityCount counts this process's threads, and those under SCHED_IDLE at nice 19, as the kernel says.
func priorityCount() (threads, idle int) {
	tids, _ := threadIDs()
	for _, tid := range tids {
		attr, err := unix.SchedGetAttr(tid, 0)
		if err != nil {
			continue // ended meanwhile
		}
		threads++
		if attr.Policy == unix.SCHED_IDLE && attr.Nice == 19 {
			idle++
		}
	}
	return threads, idle
}

// threadIDs lists this process's threads.
func threadIDs() ([]int, error) {
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return nil, fmt.Errorf("failed to list this process's threads: %w", err)
	}
	var tids []int
	for _, e := range ents {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	return tids, nil
}
