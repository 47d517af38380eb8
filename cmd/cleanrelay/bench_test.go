package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cleanrelay/cleanrelay/relay/bench"
)

// TestBenchBinary runs "cleanrelay bench all" with small workloads: the real binary starting the real relay and
// the floor as separate processes. Every run must deliver every frame exactly once and in order, and every
// field of every JSON line must be filled.
func TestBenchBinary(t *testing.T) {
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "bench", "--rooms", "8", "--frames", "300", "--size", "256", "--window", "16",
		"--conns", "60", "--hold", "100ms", "--connects", "60", "--concurrency", "4", "--timeout", "60s", "all")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("cleanrelay bench: %v\nstdout:\n%s\nstderr:\n%s", err, &stdout, &stderr)
	}
	want := []struct{ workload, server string }{
		{"pairs", "floor"}, {"pairs", "relay"}, {"idle", "floor"}, {"idle", "relay"}, {"connect", "floor"}, {"connect", "relay"},
	}
	sc := bufio.NewScanner(&stdout)
	i := 0
	for ; sc.Scan(); i++ {
		line := sc.Bytes()
		if i >= len(want) {
			t.Fatalf("more JSON lines than runs: %s", line)
		}
		if err := bench.ValidateJSONLine(line, want[i].workload); err != nil {
			t.Error(err)
		}
		var r bench.Result
		json.Unmarshal(line, &r)
		if r.Server != want[i].server {
			t.Errorf("line %d is for the %s, want the %s", i+1, r.Server, want[i].server)
		}
		if r.Server == "relay" && len(r.VsFloor) == 0 {
			t.Errorf("line %d: the relay's run has no comparison with the floor", i+1)
		}
		if r.Pairs != nil && r.Pairs.Delivered != 8*2*300 {
			t.Errorf("%s delivered %d frames, want %d", r.Server, r.Pairs.Delivered, 8*2*300)
		}
		if r.Connect != nil && r.Connect.Auth != (r.Server == "relay") {
			t.Errorf("%s connect ran with auth %v; want logged-in sessions on the relay only", r.Server, r.Connect.Auth)
		}
		if r.Idle != nil && r.Idle.Alive != 60 {
			t.Errorf("%s kept %d of 60 idle connections", r.Server, r.Idle.Alive)
		}
	}
	if i != len(want) {
		t.Errorf("%d JSON lines, want %d\nstderr:\n%s", i, len(want), &stderr)
	}
	for _, head := range []string{"pairs", "idle", "connect"} {
		if !strings.Contains(stderr.String(), head+"  server") {
			t.Errorf("the table has no %s part:\n%s", head, &stderr)
		}
	}
}

// TestBenchBadFlags checks that bad input is refused with a hint and exit code 2, before anything starts.
func TestBenchBadFlags(t *testing.T) {
	for name, args := range map[string][]string{
		"no workload":  {},
		"bad workload": {"pairz"},
		"bad server":   {"--servers", "nginx", "pairs"},
		"url alone":    {"--url", "ws://127.0.0.1:1/ws", "pairs"},
		"tiny frames":  {"--size", "8", "pairs"},
		"unknown flag": {"--bogus", "pairs"},
		// The process ids are beyond any Linux pid_max: nothing could be killed if a check failed.
		"nodedeath without --kill-pid": {"--servers", "relay", "--url", twoNodes, "--pid", "2147483001,2147483002", "nodedeath"},
		"--kill-pid without nodedeath": {"--servers", "relay", "--url", twoNodes, "--pid", "2147483001,2147483002", "--kill-pid", "2147483001", "idle"},
		"--kill-pid not a node":        {"--servers", "relay", "--url", twoNodes, "--pid", "2147483001,2147483002", "--kill-pid", "2147483003", "nodedeath"},
		"nodedeath beside another":     {"--servers", "relay", "--url", twoNodes, "--pid", "2147483001,2147483002", "--kill-pid", "2147483001", "idle", "nodedeath"},
		"nodedeath on one node":        {"--servers", "relay", "--url", "ws://127.0.0.1:1/ws", "--pid", "2147483001", "--kill-pid", "2147483001", "nodedeath"},
		"nodedeath against the floor":  {"--url", twoNodes, "--pid", "2147483001,2147483002", "--kill-pid", "2147483001", "nodedeath"},
		"nodedeath without a cluster":  {"--kill-pid", "2147483001", "nodedeath"},
	} {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(append([]string{"bench"}, args...), &stdout, &stderr); code != 2 {
				t.Errorf("exit code %d, want 2; stderr: %s", code, &stderr)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout %q, want nothing", &stdout)
			}
		})
	}
}

// twoNodes are two nodes' URLs for the flag checks (nothing listens there).
const twoNodes = "ws://127.0.0.1:1/ws,ws://127.0.0.1:2/ws"

// TestBenchNodeDeathFlags: the node to kill is found among the nodes by its process id, and the run's timeout
// covers the traffic before and after the kill.
func TestBenchNodeDeathFlags(t *testing.T) {
	f, w, err := parseBenchFlags([]string{"--servers", "relay", "--url", twoNodes + ",ws://127.0.0.1:3/ws", "--pid", "2147483001,2147483002,2147483003",
		"--kill-pid", "2147483002", "--death-rooms", "7", "--death-before", "2s", "--death-after", "5s", "--timeout", "1m", "nodedeath"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(w) != 1 || w[0] != "nodedeath" || f.kill != 1 || len(f.nodes) != 3 || f.death.Rooms != 7 || f.death.Timeout != 67*time.Second {
		t.Errorf("workloads %v, kill %d of %d nodes, rooms %d, timeout %v", w, f.kill, len(f.nodes), f.death.Rooms, f.death.Timeout)
	}
}

// TestBenchSoakBinary runs a tiny soak with the real binary: the floods run in the hidden bench-flood child at
// the lowest priority, and the soak's JSON line says so and names them. How much the floods did is not
// checked here (on a busy machine SCHED_IDLE may leave them nothing; the result then says which starved); that
// each flood works in the child is relay/bench's TestFloodProcess.
func TestBenchSoakBinary(t *testing.T) {
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "bench", "--json", "--soak-idle", "10", "--soak-rooms", "2", "--soak-duration", "3s",
		"--soak-sample", "1s", "--floods", "pings,keys", "--timeout", "60s", "soak")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	line := bytes.TrimSpace(stdout.Bytes())
	if verr := bench.ValidateJSONLine(line, "soak"); verr != nil {
		t.Fatalf("%v (exit: %v)\nstderr:\n%s", verr, err, &stderr)
	}
	var r bench.Result
	json.Unmarshal(line, &r)
	k := r.Soak
	if !strings.HasPrefix(k.FloodProcess, "child, SCHED_IDLE nice 19") || k.Floods != "pings,keys" ||
		!strings.Contains(k.FloodOpsBy, "pings:") || !strings.Contains(k.FloodOpsBy, "keys:") || k.FloodSeconds < 2 {
		t.Errorf("the floods did not run in the child: %s", line)
	}
	if k.Lost != 0 || k.Duplicated != 0 || k.Reordered != 0 {
		t.Errorf("honest frames lost %d, duplicated %d, reordered %d", k.Lost, k.Duplicated, k.Reordered)
	}
	if k.FloodStarved != "none" && !strings.Contains(stderr.String(), "starved floods") {
		t.Errorf("starved floods %q without a warning on stderr:\n%s", k.FloodStarved, &stderr)
	}
}
