package natsnet

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

var (
	// traceCall is one line of `strace -f` output: "PID name(args…".
	traceCall = regexp.MustCompile(`^\d+ +([a-z0-9_]+)\((.*)$`)
	// firstFD is the descriptor a write-like call writes to, as -yy shows it: "5<what>".
	firstFD = regexp.MustCompile(`^\d+<(.*?)>`)
	// writeIntent marks an open that may change a file.
	writeIntent = regexp.MustCompile(`O_WRONLY|O_RDWR|O_CREAT|O_TRUNC|O_APPEND|O_TMPFILE`)
)

// JudgeTrace returns every call of a `strace -f -yy -e trace=TracedCalls` trace that could put something on disk
// (an open with write intent, any other call that changes the file system, a write to a descriptor that is a file)
// and counts the harmless ones by what they went to.
func JudgeTrace(lines []string) (bad []string, counts map[string]int) {
	counts = map[string]int{}
	for _, line := range lines {
		m := traceCall.FindStringSubmatch(line)
		if m == nil {
			continue // "+++ exited", or the "<... resumed>" half of a call judged on its first line
		}
		name, args := m[1], m[2]
		if i := strings.LastIndex(args, ") = "); i >= 0 {
			args = args[:i] // what a call returned is no part of what it asked for
		}
		switch {
		case strings.HasPrefix(name, "open"):
			if writeIntent.MatchString(args) {
				bad = append(bad, line)
			} else {
				counts["read-only open"]++
			}
		case strings.Contains(",write,writev,pwrite64,pwritev,pwritev2,ftruncate,fallocate,sendfile,copy_file_range,splice,", ","+name+","):
			fd := firstFD.FindStringSubmatch(args)
			switch {
			case fd == nil || strings.HasPrefix(fd[1], "/"):
				bad = append(bad, line)
			case strings.HasPrefix(fd[1], "pipe:"):
				counts["pipe"]++
			case strings.HasPrefix(fd[1], "anon_inode:[eventfd]"):
				counts["eventfd"]++
			case strings.Contains(fd[1], ":["):
				counts["socket"]++
			default:
				bad = append(bad, line)
			}
		default: // creat, mkdir, rename, unlink, link, truncate, io_uring_setup, …
			bad = append(bad, line)
		}
	}
	return bad, counts
}

// CheckTraces judges every strace output of the cluster's servers (Options.Strace) with JudgeTrace, once the
// servers have stopped (Stop): the test fails on any call that wrote where it must not, or on a trace that lacks
// the socket writes and read-only opens every run makes (it would prove nothing).
func (c *Cluster) CheckTraces(t testing.TB) {
	t.Helper()
	for _, s := range c.servers {
		for _, trace := range s.Traces() {
			data, err := os.ReadFile(trace)
			if err != nil {
				t.Fatal(err)
			}
			bad, counts := JudgeTrace(strings.Split(strings.TrimSpace(string(data)), "\n"))
			if len(bad) > 0 {
				t.Errorf("%s: %d calls wrote where they must not, e.g.:\n%s", trace, len(bad), strings.Join(bad[:min(len(bad), 20)], "\n"))
			}
			if counts["socket"] == 0 || counts["read-only open"] == 0 {
				t.Errorf("%s lacks socket writes or read-only opens (%v): it cannot be right", trace, counts)
			}
			t.Logf("%s: %v", trace[len(c.Dir)+1:], counts)
		}
	}
}

// Stop stops every server (SIGTERM, then SIGKILL), in parallel, and waits. The test's cleanup does it too.
func (c *Cluster) Stop() { c.stopAll() }
