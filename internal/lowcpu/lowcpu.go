// Package lowcpu runs CPU-heavy work that may wait (password hashing) on threads of its own at the lowest CPU
// priority, so that under a flood of such work the rest of the process, relaying frames, keeps the cores.
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

// Run calls f on a thread of its own at the lowest CPU priority and returns when f has returned. The thread
// ends with f, so its priority never reaches other work. Where threads cannot be given a priority (not
// Linux), or the kernel refuses, f runs as it would have anyway.
func Run(f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		if onMainThread() {
			// The main thread does not end with a goroutine (Go parks it for good), and its priority is the
			// one tools show for the whole process. Held here, it is no thread the next try can land on.
			Run(f)
			runtime.UnlockOSThread()
			return
		}
		// Never unlocked: a goroutine that ends while locked ends its thread with it.
		lower()
		f()
	}()
	<-done
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
