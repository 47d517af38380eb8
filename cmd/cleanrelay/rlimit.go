package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// raiseFileLimit raises this process's limit on open files (RLIMIT_NOFILE) towards want: the soft limit up to
// the hard one, and the hard one too when the process may (root or CAP_SYS_RESOURCE), up to the kernel's
// fs.nr_open. Every connection is a file descriptor, so 100,000 connections need a limit above 100,000; Go
// (since 1.19) already raises the soft limit to the hard one at start, but a hard limit of a few thousand, as
// many systems set, still caps it. Processes started afterwards inherit the raised limit. It returns the soft
// limit now in force; an error only when the limit cannot be read or set at all.
func raiseFileLimit(want uint64) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("failed to read the open-file limit: %w", err)
	}
	if lim.Cur >= want {
		return lim.Cur, nil
	}
	if lim.Max < want {
		hard := want
		if b, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
			if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil && n < hard {
				hard = n
			}
		}
		if hard > lim.Max {
			up := syscall.Rlimit{Cur: hard, Max: hard}
			if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &up) == nil {
				return hard, nil
			}
			// Not privileged: fall through and go as far as the hard limit allows.
		}
	}
	lim.Cur = min(lim.Max, want)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("failed to raise the open-file limit: %w", err)
	}
	return lim.Cur, nil
}
