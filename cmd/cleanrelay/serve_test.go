package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cleanrelay/cleanrelay/internal/syncbuf"
	"github.com/cleanrelay/cleanrelay/relay/client"
)

// buildBinary builds cleanrelay once per test run.
var buildBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "cleanrelay-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "cleanrelay")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", &buildError{out}
	}
	return bin, nil
})

type buildError struct{ out []byte }

func (e *buildError) Error() string { return "go build failed:\n" + string(e.out) }

// lockedBuffer collects a process's stderr while it runs.
type lockedBuffer = syncbuf.Buffer

// startServe runs "cleanrelay serve" with args and returns the process, the URL it printed, and its stderr.
func startServe(t *testing.T, args ...string) (*exec.Cmd, string, *lockedBuffer) {
	t.Helper()
	cmd, lines, stderr := startServeLines(t, 1, nil, args...)
	const prefix = "cleanrelay: serving on "
	if !strings.HasPrefix(lines[0], prefix) {
		t.Fatalf("first line %q, want %q…", lines[0], prefix)
	}
	return cmd, strings.TrimPrefix(lines[0], prefix), stderr
}

// TestServeLocalEndToEnd runs the real binary, chats through it, and stops it with SIGTERM while clients are
// connected: it must exit 0, having told them, and print nothing about them.
func TestServeLocalEndToEnd(t *testing.T) {
	cmd, url, stderr := startServe(t, "--local-only", "--listen", "127.0.0.1:0", "--log-level", "debug")
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(page, []byte("<title>cleanrelay")) {
		t.Fatalf("GET / gave %d: %.200s", resp.StatusCode, page)
	}
	if resp.Header.Get("Content-Security-Policy") == "" {
		t.Fatal("the page has no Content-Security-Policy")
	}

	a, b, ra, rb := chatPair(t, url)
	secret := "the eagle lands at nine"
	a.Send(ra.Ch, []byte(secret))
	for ev := range b.Events() {
		if ev.Kind == client.KindFrame {
			if string(ev.Payload) != secret || ev.From != ra.Member {
				t.Fatalf("got %q from %d", ev.Payload, ev.From)
			}
			break
		}
	}
	b.Send(rb.Ch, []byte("ack"))
	for ev := range a.Events() {
		if ev.Kind == client.KindFrame {
			break
		}
	}

	start := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("serve exited with %v after SIGTERM; stderr:\n%s", err, stderr)
	}
	t.Logf("stopped %v after SIGTERM with 2 clients connected", time.Since(start).Round(time.Millisecond))
	for _, c := range []*client.Conn{a, b} {
		closed := false
		for ev := range c.Events() {
			closed = closed || (ev.Kind == client.KindClosed && ev.Reason == "shutdown")
		}
		if !closed {
			t.Error("a client was not told about the shutdown")
		}
	}
	logs := stderr.String()
	for _, s := range []string{ra.ID, ra.Cap, ra.Resume, rb.Resume, secret, "127.0.0.1"} {
		if strings.Contains(logs, s) {
			t.Errorf("stderr contains %q:\n%s", s, logs)
		}
	}
	if !strings.Contains(logs, "relay stopped") {
		t.Errorf("stderr has no shutdown line:\n%s", logs)
	}
}

func TestServeFlagErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--local-only", "--listen", "0.0.0.0:8080"}, "not a loopback address"},
		{[]string{"--local-only", "--listen", "nonsense"}, "not host:port"},
		{[]string{"--local-only", "--max-members", "1"}, "max members must be 2..1000"},
		{[]string{"--local-only", "--max-rooms-per-conn", "300"}, "max rooms per connection must be 1..255"},
		{[]string{"--local-only", "--grace", "soon"}, "invalid value \"soon\" for flag -grace"},
		{[]string{"--local-only", "extra"}, "unexpected argument"},
		{[]string{"--local-only", "--log-level", "loud"}, "-log-level"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"serve"}, tt.args...), &stdout, &stderr)
			if code != 2 && code != 1 {
				t.Fatalf("exit code %d, want 1 or 2", code)
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Fatalf("stderr %q does not say %q", stderr.String(), tt.want)
			}
		})
	}
}

func TestUsage(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"help"}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "cleanrelay serve --local-only") {
		t.Fatalf("help: %d %q", code, stdout.String())
	}
	if code := run([]string{"frobnicate"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), `unknown command "frobnicate"`) {
		t.Fatalf("unknown command: %d %q", code, stderr.String())
	}
	stdout.Reset()
	if code := run([]string{"version"}, &stdout, &stderr); code != 0 || !strings.HasPrefix(stdout.String(), "cleanrelay ") {
		t.Fatalf("version: %d %q", code, stdout.String())
	}
}

// TestServeAccounts: the binary serves the accounts API by default, and not with --accounts=false.
func TestServeAccounts(t *testing.T) {
	for _, tt := range []struct {
		flag string
		want int
	}{{"--accounts=true", http.StatusCreated}, {"--accounts=false", http.StatusMethodNotAllowed}} {
		t.Run(tt.flag, func(t *testing.T) {
			cmd, url, stderr := startServe(t, "--local-only", "--listen", "127.0.0.1:0", tt.flag)
			body := `{"username":"alice","full_name":"Alice Liddell","password":"Correct-h0rse!"}`
			req, _ := http.NewRequest("POST", url+"api/register", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("register: %d %s, want %d", resp.StatusCode, got, tt.want)
			}
			cmd.Process.Signal(syscall.SIGTERM)
			if err := cmd.Wait(); err != nil {
				t.Fatalf("exit: %v\n%s", err, stderr)
			}
			if strings.Contains(stderr.String(), "alice") || strings.Contains(stderr.String(), "Liddell") {
				t.Fatalf("stderr names the user:\n%s", stderr)
			}
		})
	}
}

// TestCoreDumpsOff: by default the relay sets its core limit to 0 (soft and hard); --allow-core-dumps leaves
// the limit it inherited alone.
func TestCoreDumpsOff(t *testing.T) {
	coreLimit := func(pid string) string {
		t.Helper()
		limits, err := os.ReadFile("/proc/" + pid + "/limits")
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(limits), "\n") {
			if strings.HasPrefix(l, "Max core file size") {
				return strings.Join(strings.Fields(l)[4:6], " ")
			}
		}
		t.Fatalf("no core limit in /proc/%s/limits", pid)
		return ""
	}
	inherited := coreLimit("self")
	for _, tt := range []struct {
		flag string
		want string
	}{{"--allow-core-dumps=false", "0 0"}, {"--allow-core-dumps=true", inherited}} {
		t.Run(tt.flag, func(t *testing.T) {
			cmd, _, _ := startServe(t, "--local-only", "--listen", "127.0.0.1:0", tt.flag)
			if got := coreLimit(fmt.Sprint(cmd.Process.Pid)); got != tt.want {
				t.Fatalf("core limit (soft hard) %q, want %q", got, tt.want)
			}
		})
	}
}

// TestServeAdminListener: with --admin-listen, the binary serves metrics and the key directory's operator
// routes there, and only there.
func TestServeAdminListener(t *testing.T) {
	_, lines, _ := startServeLines(t, 2, nil, "--local-only", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0")
	url := field(t, lines[0], "cleanrelay: serving on ")
	admin := field(t, lines[1], "cleanrelay: admin on ")
	get := func(u string) (int, string) {
		t.Helper()
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(admin + "admin/stats"); code != 200 || !strings.Contains(body, `"accounts"`) {
		t.Fatalf("admin/stats on the admin listener: %d %s", code, body)
	}
	if code, body := get(admin + "metrics"); code != 200 || !strings.Contains(body, "cleanrelay_") {
		t.Fatalf("metrics on the admin listener: %d %.200s", code, body)
	}
	if code, _ := get(url + "admin/stats"); code == 200 {
		t.Fatal("the public listener serves the operator's routes")
	}
}

// chatPair connects two clients to the relay serving url, from the relay's own origin, and puts them in one
// room. They are closed when the test ends.
func chatPair(t *testing.T, url string) (a, b *client.Conn, ra, rb *client.Room) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	wsURL := "ws" + strings.TrimPrefix(url, "http") + "ws"
	opts := &client.Options{Header: http.Header{"Origin": {strings.TrimSuffix(url, "/")}}}
	var err error
	if a, err = client.Dial(ctx, wsURL, opts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	if b, err = client.Dial(ctx, wsURL, opts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if ra, err = a.Create(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if rb, err = b.Join(ctx, ra.ID, ra.Cap); err != nil {
		t.Fatal(err)
	}
	return a, b, ra, rb
}
