//go:build linux

package lowcpu

import (
	"os"

	"golang.org/x/sys/unix"
)

// lower sets the calling thread, which the caller has locked, to nice Nice. On Linux the nice value belongs
// to a thread, not to the whole process.
func lower() { _ = unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), Nice) }

func priority() (int, bool) {
	// getpriority(2) returns 20 - nice, so that it is never negative.
	p, err := unix.Getpriority(unix.PRIO_PROCESS, unix.Gettid())
	if err != nil {
		return 0, false
	}
	return 20 - p, true
}

func onMainThread() bool { return unix.Gettid() == os.Getpid() }
