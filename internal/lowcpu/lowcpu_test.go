package lowcpu

import (
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

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
	Run(func() { fromMain.inside, _ = Priority() })
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

// TestRunLowersOnlyItsThread: f runs at nice Nice, and once Run has returned no thread of the process is left
// at that priority, so nothing else ever runs there.
func TestRunLowersOnlyItsThread(t *testing.T) {
	needLinuxBelowLowest(t)
	for range 20 {
		var got int
		var ok bool
		Run(func() { got, ok = Priority() })
		if !ok || got != Nice {
			t.Fatalf("inside Run: nice %d (read: %v), want %d", got, ok, Nice)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		low := lowThreads(t)
		if low == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d threads still at nice %d after Run returned", low, Nice)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if p, _ := Priority(); p != base {
		t.Errorf("the test's own thread is at nice %d, the process at %d", p, base)
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
