// Package lowcpu runs CPU-heavy work that may wait (password hashing) on threads of their own at the lowest
// CPU priority, so that under a flood of such work the rest of the process, relaying frames, keeps the cores.
//
// Work run through Run holds one of the Go scheduler's slots (GOMAXPROCS) while it computes, whatever its
// thread's priority: a process that keeps every core for its other goroutines raises GOMAXPROCS by as many
// slots as it lets such work run at once (Reserve). The kernel then runs the other goroutines' threads first,
// and the low-priority threads on what they leave.
package lowcpu

import (
	"runtime"
	"sync"
)

// Nice is the priority of a thread that runs work for Run (Linux): the lowest there is. It is a nice value,
// not SCHED_IDLE: a thread at nice 19 still gets a small share of a machine that other processes keep busy,
// and the Go runtime, which stops every thread of the process for a moment now and then, must not wait long
// for one of them.
const Nice = 19

// Run calls f on a thread at the lowest CPU priority and returns when f has returned. The thread is one of a
// pool's: a worker goroutine locked to its thread for good, which runs nothing else. Workers are made when every
// one is busy (so there are as many as Runs were ever under way at once) and never end: a thread that ended
// would take with it a child process started from it with a parent-death signal (Pdeathsig), which belongs to
// the thread, not the process. Where threads cannot be given a priority (not Linux), or the kernel refuses, f
// runs as it would have anyway.
func Run(f func()) {
	j := job{f: f, done: make(chan struct{})}
	pool.Lock()
	if pool.idle > 0 {
		pool.idle--
		pool.Unlock()
		jobs <- j // the idle worker counted takes it
	} else {
		pool.Unlock()
		go worker(j, nil)
	}
	<-j.done
}

// job is one call of Run.
type job struct {
	f    func()
	done chan struct{}
}

// jobs hands a job to an idle worker.
var jobs = make(chan job)

// pool counts the idle workers: a worker counts itself idle before its caller hears that its job is done, so
// one Run after another finds it and no worker is made that is not needed.
var pool struct {
	sync.Mutex
	idle int
}

// worker locks itself to its thread, lowers it, runs j and then every job it takes, for good. held, if not nil,
// is closed once the worker holds its thread.
func worker(j job, held chan<- struct{}) {
	runtime.LockOSThread()
	if onMainThread() {
		// The main thread's priority is the one tools show for the whole process: leave it alone. Held here
		// until the worker started instead holds a thread of its own, it is no thread that worker can land on.
		h := make(chan struct{})
		go worker(j, h)
		<-h
		runtime.UnlockOSThread()
		return
	}
	if held != nil {
		close(held)
	}
	lower()
	for {
		j.f()
		pool.Lock()
		pool.idle++
		pool.Unlock()
		close(j.done)
		j = <-jobs
	}
}

// Reserve sets GOMAXPROCS to n more than it was before the first Reserve of the process, and returns that
// first value: the slots left for everything else. Calls do not add up (several servers in one process, as in
// tests, reserve once).
func Reserve(n int) int {
	reserved.Lock()
	defer reserved.Unlock()
	if reserved.base == 0 {
		reserved.base = runtime.GOMAXPROCS(0)
	}
	runtime.GOMAXPROCS(reserved.base + max(n, 0))
	return reserved.base
}

var reserved struct {
	sync.Mutex
	base int // GOMAXPROCS before the first Reserve; 0 until then
}

// Priority reports the nice value of the calling thread (Linux; elsewhere 0 and false).
func Priority() (int, bool) { return priority() }
