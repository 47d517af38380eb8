package bench

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is the unit of utime and stime in /proc/PID/stat (USER_HZ). It is 100 on every Linux
// architecture Go supports; sysconf(_SC_CLK_TCK) would need cgo to ask.
const clockTicks = 100

// CPUTime returns the user+system CPU time process pid has used, from /proc/PID/stat.
func CPUTime(pid int) (time.Duration, error) {
	if pid == os.Getpid() {
		return selfCPU()
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("failed to read the CPU time of process %d: %w", pid, err)
	}
	// The command name (field 2) may contain spaces and parentheses; the fields after its last ')' are fixed.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("failed to parse /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// After ')' come state (field 3) … utime is field 14 and stime field 15, so indexes 11 and 12 here.
	if len(f) < 13 {
		return 0, fmt.Errorf("failed to parse /proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("failed to parse /proc/%d/stat: bad utime or stime", pid)
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// selfCPU uses getrusage for this process: it has microsecond resolution instead of /proc's 10 ms.
func selfCPU() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("failed to read this process's CPU time: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// RSS returns the resident memory of process pid in bytes, VmRSS of /proc/PID/status.
func RSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("failed to read the memory of process %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest) // "12345 kB"
			if len(f) != 2 || f[1] != "kB" {
				break
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				break
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("failed to find VmRSS in /proc/%d/status", pid)
}

// Usage is a process's CPU time and resident memory at one moment.
type Usage struct {
	CPU time.Duration
	RSS int64
}

// Sample reads the CPU time and resident memory of process pid.
func Sample(pid int) (Usage, error) {
	cpu, err := CPUTime(pid)
	if err != nil {
		return Usage{}, err
	}
	rss, err := RSS(pid)
	if err != nil {
		return Usage{}, err
	}
	return Usage{cpu, rss}, nil
}
