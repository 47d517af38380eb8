package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"log/slog"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cleanrelay/cleanrelay/keydir"
	"github.com/cleanrelay/cleanrelay/relay"
)

func TestEnvName(t *testing.T) {
	for flagName, want := range map[string]string{
		"max-frame":          "CLEANRELAY_MAX_FRAME",
		"local-only":         "CLEANRELAY_LOCAL_ONLY",
		"max-rooms-per-conn": "CLEANRELAY_MAX_ROOMS_PER_CONN",
		"admin-listen":       "CLEANRELAY_ADMIN_LISTEN",
	} {
		if got := envName(flagName); got != want {
			t.Errorf("envName(%q) = %q, want %q", flagName, got, want)
		}
	}
}

func TestEnvAndFlagPrecedence(t *testing.T) {
	t.Setenv("CLEANRELAY_MAX_FRAME", "1000")
	t.Setenv("CLEANRELAY_GRACE", "30s")
	t.Setenv("CLEANRELAY_LOCAL_ONLY", "true")
	t.Setenv("CLEANRELAY_ALLOW_HOST", "a.example:8080, b.example")
	t.Setenv("CLEANRELAY_LOG_LEVEL", "debug")
	var stderr bytes.Buffer

	// The environment alone.
	f, err := parseServeFlags(nil, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if f.cfg.MaxFrame != 1000 || f.cfg.Grace != 30*time.Second || !f.localOnly || f.logLevel.String() != "DEBUG" {
		t.Fatalf("from env: max frame %d, grace %v, local-only %v, log level %v", f.cfg.MaxFrame, f.cfg.Grace, f.localOnly, f.logLevel)
	}
	if got := strings.Join(f.allowHosts, "|"); got != "a.example:8080|b.example" {
		t.Fatalf("allow hosts from env: %q", got)
	}

	// A flag wins over its variable; the others still come from the environment.
	f, err = parseServeFlags([]string{"--max-frame", "2000", "--allow-host", "c.example"}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if f.cfg.MaxFrame != 2000 || f.cfg.Grace != 30*time.Second {
		t.Fatalf("flag and env: max frame %d (want the flag's 2000), grace %v (want env's 30s)", f.cfg.MaxFrame, f.cfg.Grace)
	}
	if got := strings.Join(f.allowHosts, "|"); got != "c.example" {
		t.Fatalf("allow hosts with flag given: %q, want only the flag's", got)
	}

	// A boolean flag given as false beats a true variable.
	f, err = parseServeFlags([]string{"--local-only=false"}, &stderr)
	if err != nil || f.localOnly {
		t.Fatalf("--local-only=false with env true: %v %v", f, err)
	}
}

// TestInvalidValuesNameTheFlag gives every flag an invalid value, on the command line and by its variable: each
// must be refused with one line that names the flag (and the variable when it came from there).
func TestInvalidValuesNameTheFlag(t *testing.T) {
	tests := []struct{ flag, value string }{
		{"local-only", "maybe"},
		{"log-level", "loud"},
		{"max-frame", "big"},
		{"max-frame", "-1"},
		{"max-frame", "99999999"},
		{"room-buffer", "4"},
		{"room-buffer", "x"},
		{"room-buffer-bytes", "10"},
		{"max-members", "1"},
		{"max-members", "1001"},
		{"default-members", "9"},
		{"max-rooms-per-conn", "300"},
		{"max-rooms", "-5"},
		{"max-conns", "-1"},
		{"max-conns", "many"},
		{"grace", "soon"},
		{"grace", "-1s"},
		{"room-lifetime", "-1h"},
		{"room-lifetime", "forever"},
		{"idle-timeout", "-1s"},
		{"write-timeout", "-3s"},
		{"pong-wait", "-1s"},
		{"pong-wait", "1ns"},
		{"rate", "fast"},
		{"rate", "-2"},
		{"rate-burst", "-1"},
		{"rate", "0"},
		{"max-memory", "lots"},
		{"max-memory", "-1"},
		{"max-memory", "1MiB"},
		{"orphan-grace", "10m"},
		{"message-timeout", "-1s"},
		{"ack-delay", "1h"},
		{"admin-listen", "0.0.0.0:9090"},
		{"admin-listen", "nonsense"},
		{"admin-listen", "unix:/run/cleanrelay/admin.sock"}, // docs/accounts.md §10: loopback IP:port only
		{"https-listen", "nonsense"},
		{"tls-cert", "/nonexistent.pem"},
		{"tls-key", "/nonexistent.pem"},
		{"acme-domain", "https://x.example/"},
		{"acme-domain", "192.0.2.1"},
	}
	// Some flags only make sense with others; these are given alongside so that the one under test is the
	// problem.
	companions := map[string][]string{
		"https-listen": {"--tls-cert", "c.pem", "--tls-key", "k.pem"},
		"acme-domain":  {"--https-listen", ":443"},
	}
	for _, tt := range tests {
		for _, viaEnv := range []bool{false, true} {
			name := tt.flag + "=" + tt.value
			if viaEnv {
				name += " via env"
			}
			t.Run(name, func(t *testing.T) {
				var args []string
				if tt.flag != "local-only" {
					args = append(args, "--local-only")
				}
				args = append(args, companions[tt.flag]...)
				if viaEnv {
					t.Setenv(envName(tt.flag), tt.value)
				} else {
					args = append(args, "--"+tt.flag+"="+tt.value)
				}
				var stdout, stderr bytes.Buffer
				if _, err := parseServeFlags(args, &stderr); err == nil {
					t.Fatalf("accepted %v", args) // and do not start serving
				}
				stderr.Reset()
				code := run(append([]string{"serve"}, args...), &stdout, &stderr)
				out := stderr.String()
				if code != 2 {
					t.Fatalf("exit code %d, want 2; stderr %q", code, out)
				}
				if strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, "cleanrelay: ") {
					t.Fatalf("stderr is not one cleanrelay line: %q", out)
				}
				if !strings.Contains(out, "-"+tt.flag) {
					t.Fatalf("stderr %q does not name --%s", out, tt.flag)
				}
				if viaEnv && !strings.Contains(out, envName(tt.flag)) && tt.flag != "tls-cert" && tt.flag != "tls-key" &&
					tt.flag != "admin-listen" && tt.flag != "https-listen" && tt.flag != "acme-domain" {
					t.Fatalf("stderr %q does not name %s", out, envName(tt.flag))
				}
			})
		}
	}
}

func TestServeHelpShowsDefaultsAndEnv(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"serve", "--help"}, &stdout, &stderr); code != 0 {
		t.Fatalf("serve --help exited %d", code)
	}
	help := stderr.String()
	for _, want := range []string{
		"--max-frame bytes", "(default: 65536; env CLEANRELAY_MAX_FRAME)",
		"--grace", "(default: 2m0s; env CLEANRELAY_GRACE)",
		"--local-only", "(default: false; env CLEANRELAY_LOCAL_ONLY)",
		"--admin-listen", "(default: none; env CLEANRELAY_ADMIN_LISTEN)",
		"--https-listen", "--tls-cert", "--tls-key", "--acme-domain", "--acme-directory",
	} {
		if !strings.Contains(help, want) {
			t.Errorf("serve --help lacks %q", want)
		}
	}
	// Every flag is listed with its variable.
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	var o opsFlags
	o.register(fs)
	fs.VisitAll(func(f *flag.Flag) {
		if !strings.Contains(help, "  --"+f.Name+" ") || !strings.Contains(help, "env "+envName(f.Name)+")") {
			t.Errorf("serve --help lacks --%s or its variable", f.Name)
		}
	})
}

// TestStartupValuesNameTheFlag covers values that only the component they configure can check, when the relay
// starts: the error still names the flag. The real binary runs, bounded by a deadline in case one is accepted.
func TestStartupValuesNameTheFlag(t *testing.T) {
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ flag, value string }{
		{"token-alg", "HS256"},
		{"token-lifetime", "1m"},
		{"token-lifetime", "9999h"},
	} {
		t.Run(tt.flag+"="+tt.value, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, "serve", "--local-only", "--listen", "127.0.0.1:0")
			cmd.Env = append(cmd.Environ(), envName(tt.flag)+"="+tt.value)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			if ctx.Err() != nil {
				t.Fatalf("serve accepted %s=%s and kept running", envName(tt.flag), tt.value)
			}
			out := stderr.String()
			if err == nil || strings.Count(out, "\n") != 1 || !strings.Contains(out, "--"+tt.flag) || !strings.Contains(out, envName(tt.flag)) {
				t.Fatalf("exit %v, stderr %q: want one line naming --%s and %s", err, out, tt.flag, envName(tt.flag))
			}
		})
	}
}

// TestMaxMemoryFlag: --max-memory takes bytes or a binary suffix, and defaults to the relay's default.
func TestMaxMemoryFlag(t *testing.T) {
	for arg, want := range map[string]int64{"": relay.DefaultMaxMemory(), "536870912": 512 << 20, "512MiB": 512 << 20, "2GiB": 2 << 30} {
		args := []string{"--local-only"}
		if arg != "" {
			args = append(args, "--max-memory", arg)
		}
		f, err := parseServeFlags(args, io.Discard)
		if err != nil {
			t.Fatalf("%q: %v", arg, err)
		}
		if f.cfg.MaxMemory != want {
			t.Fatalf("--max-memory %q gave %d, want %d", arg, f.cfg.MaxMemory, want)
		}
	}
}

// TestMemoryBudgetCountsDirectory: the relay's memory budget counts what the key directory holds, so accounts
// cannot grow the process past --max-memory unseen. An idle relay holds no buffers and no connections, so what
// it counts is the directory.
func TestMemoryBudgetCountsDirectory(t *testing.T) {
	f, err := parseServeFlags([]string{"--local-only", "--max-memory", "64MiB"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	srv, _, _, err := newRelay(f, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer f.accounts.close()
	defer srv.Close(context.Background())
	if _, err := f.accounts.dir.Register(context.Background(), keydir.Registration{
		Username: "alice", FullName: "Alice", Email: "alice@example.org", Password: "Correct-h0rse",
	}); err != nil {
		t.Fatal(err)
	}
	want := f.accounts.dir.HeldBytes()
	if want <= 0 {
		t.Fatalf("directory holds %d bytes after a registration", want)
	}
	deadline := time.Now().Add(5 * time.Second)
	for srv.Stats().MemoryHeld != want {
		if time.Now().After(deadline) {
			t.Fatalf("memory held = %d, want the directory's %d", srv.Stats().MemoryHeld, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestShortGraceAlone: a --grace shorter than the default orphan grace is accepted on its own (the orphan grace
// follows it down, as relay.Config's default does), while an explicit --orphan-grace over --grace is refused.
func TestShortGraceAlone(t *testing.T) {
	f, err := parseServeFlags([]string{"--local-only", "--grace", "5s"}, io.Discard)
	if err != nil {
		t.Fatalf("--grace 5s alone: %v", err)
	}
	if f.cfg.OrphanGrace != 5*time.Second {
		t.Fatalf("orphan grace with --grace 5s = %v, want 5s", f.cfg.OrphanGrace)
	}
	if _, err := parseServeFlags([]string{"--local-only", "--grace", "5s", "--orphan-grace", "15s"}, io.Discard); err == nil || !strings.Contains(err.Error(), "--orphan-grace") {
		t.Fatalf("--orphan-grace over --grace: %v, want an error naming --orphan-grace", err)
	}
}
