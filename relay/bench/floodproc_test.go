package bench

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cleanrelay/cleanrelay/relay"
)

// floodChildEnv makes this test binary the flood process (TestMain), so that the tests run the real child.
const floodChildEnv = "CLEANRELAY_BENCH_FLOOD_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(floodChildEnv) == "1" {
		os.Exit(FloodMain(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func floodCmd(t *testing.T) FloodCmd {
	t.Helper()
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return FloodCmd{Bin: bin, Env: []string{floodChildEnv + "=1"}}
}

// checkIdle reads, from outside, the scheduling policy and nice value of every thread of process pid: all must
// be SCHED_IDLE at nice 19.
func checkIdle(t *testing.T, pid int) {
	t.Helper()
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		tid, _ := strconv.Atoi(e.Name())
		attr, err := unix.SchedGetAttr(tid, 0)
		if err != nil {
			continue // ended meanwhile
		}
		if attr.Policy != unix.SCHED_IDLE || attr.Nice != 19 {
			t.Errorf("flood process thread %d: policy %d nice %d, want SCHED_IDLE (%d) at nice 19", tid, attr.Policy, attr.Nice, unix.SCHED_IDLE)
		}
	}
}

// gone reports whether process pid no longer exists (reaped, not a zombie).
func gone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// TestFloodProcess: the real flood process against a relay with accounts runs every flood kind at the lowest
// priority, reports operations of each, stops when told, and is gone afterwards. It waits for every flood to
// have done something (SCHED_IDLE on a busy machine may take a while), with a generous deadline.
func TestFloodProcess(t *testing.T) {
	s := startRelayConfig(t, relay.Config{MaxRooms: 40, MaxConns: 800}, true)
	names := FloodNames()
	p, err := StartFloods(context.Background(), floodCmd(t), s.URL, names, 5*time.Minute, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !p.stopped {
			p.kill()
		}
	})
	if p.Threads == 0 {
		t.Fatal("the flood process reported no threads")
	}
	checkIdle(t, p.PID)
	deadline := time.Now().Add(3 * time.Minute)
	for {
		idle := []string{}
		ops := p.Ops()
		for _, n := range names {
			if ops[n] == 0 {
				idle = append(idle, n)
			}
		}
		if len(idle) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 3 minutes these floods had done nothing: %s (%v)", strings.Join(idle, ","), ops)
		}
		time.Sleep(100 * time.Millisecond)
	}
	checkIdle(t, p.PID) // threads made while flooding inherit the policy
	rep, err := p.Stop()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", *rep)
	for _, n := range names {
		if rep.Ops[n] == 0 {
			t.Errorf("the final report has no operations of the %s flood: %v", n, rep.Ops)
		}
	}
	if rep.PID != p.PID || rep.Threads == 0 || rep.IdleThreads != rep.Threads || rep.CPU <= 0 || rep.Seconds <= 0 {
		t.Errorf("report %+v of process %d", *rep, p.PID)
	}
	if !gone(p.PID) {
		t.Errorf("the flood process %d is still there after Stop", p.PID)
	}
	if _, err := p.Stop(); err == nil {
		t.Error("a second Stop did not fail")
	}
}

// TestFloodProcessDeadline: the flood process ends by itself at its --limit, reports, and is gone after Stop;
// and it refuses a relay that is not on a loopback address.
func TestFloodProcessDeadline(t *testing.T) {
	s := startRelay(t)
	start := time.Now()
	p, err := StartFloods(context.Background(), floodCmd(t), s.URL, []string{"pings"}, 2*time.Second, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(time.Minute):
		p.kill()
		t.Fatal("the flood process was still running a minute after its 2 s limit")
	}
	rep, err := p.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if rep.Seconds < 1.9 || time.Since(start) < 2*time.Second {
		t.Errorf("the flood process ended after %.1f s, before its 2 s limit", rep.Seconds)
	}
	if !gone(p.PID) {
		t.Errorf("the flood process %d is still there", p.PID)
	}

	_, err = StartFloods(context.Background(), floodCmd(t), "ws://192.0.2.1:80/ws", []string{"pings"}, time.Second, time.Second)
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("a flood process against a non-loopback relay: %v, want a refusal naming loopback", err)
	}
}
