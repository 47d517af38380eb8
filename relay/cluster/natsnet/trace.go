package natsnet

import (
	"maps"
	"os"
	"strings"
	"testing"

	"github.com/cleanrelay/cleanrelay/internal/stracejudge"
)

// CheckTraces judges every strace output of the cluster's servers (Options.Strace) with stracejudge.Judge, once
// the servers have stopped (Stop): the test fails on any call that wrote where it must not (a server may write
// to sockets, its own stdout/stderr pipe, the pipes it made and eventfds), or on a trace that lacks the socket
// writes and read-only opens every run makes (it would prove nothing).
func (c *Cluster) CheckTraces(t testing.TB) {
	t.Helper()
	for _, s := range c.servers {
		s.mu.Lock()
		pipes := maps.Clone(s.pipes)
		s.mu.Unlock()
		for _, trace := range s.Traces() {
			data, err := os.ReadFile(trace)
			if err != nil {
				t.Fatal(err)
			}
			v := stracejudge.Judge(strings.Split(strings.TrimSpace(string(data)), "\n"), stracejudge.Options{StdPipes: pipes})
			if len(v.Bad) > 0 {
				t.Errorf("%s: %d calls wrote where they must not, e.g.:\n%s", trace, len(v.Bad), strings.Join(v.Bad[:min(len(v.Bad), 20)], "\n"))
			}
			if v.Counts["socket"] == 0 || v.Counts["read-only open"] == 0 {
				t.Errorf("%s lacks socket writes or read-only opens (%v): it cannot be right", trace, v.Counts)
			}
			t.Logf("%s: %v", trace[len(c.Dir)+1:], v.Counts)
		}
	}
}

// Stop stops every server (SIGTERM, then SIGKILL), in parallel, and waits. The test's cleanup does it too.
func (c *Cluster) Stop() { c.stopAll() }
