package lowcpu

import (
	"maps"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// The test binary's main goroutine stays on the main thread (init runs there) until TestMain lets go of it
// and calls Run at once: the goroutine Run starts is then next on the main thread, the case Run must avoid.
func init() { runtime.LockOSThread() }

// fromMain is what Run did when called on the main thread: the priority f saw, and the main thread's after.
var fromMain struct{ inside, after int }

// base is the test process's own nice value (a test may run under nice): every thread not lowered has it.
var base int

func TestMain(m *testing.M) {
	if unix.Gettid() != os.Getpid() {
		panic("TestMain is not on the main thread")
	}
	base, _ = Priority()
	runtime.UnlockOSThread()
	Run(func() { fromMain.inside = onWorker() })
	p, err := unix.Getpriority(unix.PRIO_PROCESS, os.Getpid()) // the main thread's, wherever this goroutine is now
	if err != nil {
		panic(err)
	}
	fromMain.after = 20 - p
	os.Exit(m.Run())
}

// TestRunFromMainThread: called on the main thread, Run still lowers a thread of its own, not the main one.
func TestRunFromMainThread(t *testing.T) {
	needLinuxBelowLowest(t)
	if fromMain.inside != Nice || fromMain.after != base {
		t.Errorf("Run from the main thread: f at nice %d, the main thread at %d after; want %d and %d", fromMain.inside, fromMain.after, Nice, base)
	}
}

// workers records the threads Run's f ran on, in every test of the process.
var workers struct {
	sync.Mutex
	tids map[int]bool
}

// onWorker is the f of the tests' Runs: it records its thread and returns its nice value.
func onWorker() int {
	p, _ := Priority()
	workers.Lock()
	if workers.tids == nil {
		workers.tids = map[int]bool{}
	}
	workers.tids[unix.Gettid()] = true
	workers.Unlock()
	return p
}

// TestRunOnLowWorkers: f runs at nice Nice on a worker's thread; one Run after another reuses one worker, Runs
// at once get one each; the threads at nice Nice are the workers' and no other, and none of them ever ended
// (a child process started from a thread that ends gets its parent-death signal).
func TestRunOnLowWorkers(t *testing.T) {
	needLinuxBelowLowest(t)
	before := len(workerTIDs())
	for range 20 {
		var p int
		Run(func() { p = onWorker() })
		if p != Nice {
			t.Fatalf("inside Run: nice %d, want %d", p, Nice)
		}
	}
	if n := len(workerTIDs()); n != max(before, 1) {
		t.Errorf("20 Runs one after another: %d workers, %d before, want one reused", n, before)
	}
	const atOnce = 4
	all := make(chan struct{})
	var started atomic.Int32
	var wg sync.WaitGroup
	for range atOnce {
		wg.Go(func() {
			Run(func() {
				onWorker()
				if started.Add(1) == atOnce {
					close(all)
				}
				<-all // every Run under way at once
			})
		})
	}
	wg.Wait()
	tids := workerTIDs()
	if len(tids) < atOnce {
		t.Errorf("%d Runs at once ran on %d threads", atOnce, len(tids))
	}
	for tid := range tids {
		if _, err := os.Stat("/proc/self/task/" + strconv.Itoa(tid)); err != nil {
			t.Errorf("worker thread %d ended: %v", tid, err)
		}
	}
	if low := lowThreads(t); low != len(tids) {
		t.Errorf("%d threads at nice %d, and %d workers", low, Nice, len(tids))
	}
	if p, _ := Priority(); p != base {
		t.Errorf("the test's own thread is at nice %d, the process at %d", p, base)
	}
}

func workerTIDs() map[int]bool {
	workers.Lock()
	defer workers.Unlock()
	return maps.Clone(workers.tids)
}

// lowThreads counts this process's threads at nice Nice.
func lowThreads(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		p, err := unix.Getpriority(unix.PRIO_PROCESS, tid)
		if err == nil && 20-p == Nice {
			t.Logf("thread %d (the process is %d) at nice %d", tid, os.Getpid(), Nice)
			n++
		}
	}
	return n
}

// TestReserve raises GOMAXPROCS by n over what it was at first, however often it is called.
func TestReserve(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(before)
	for _, n := range []int{3, 3, 1} {
		if got := Reserve(n); got != before {
			t.Errorf("Reserve(%d) returned %d, want %d", n, got, before)
		}
		if now := runtime.GOMAXPROCS(0); now != before+n {
			t.Errorf("GOMAXPROCS %d after Reserve(%d), want %d", now, n, before+n)
		}
	}
}

// needLinuxBelowLowest skips a test that tells lowered threads from the others where it cannot: not on Linux,
// or in a process that already runs at the lowest priority.
func needLinuxBelowLowest(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("thread priorities are Linux's")
	}
	if base == Nice {
		t.Skipf("the test runs at nice %d already: lowered threads look like the others", Nice)
	}
}
