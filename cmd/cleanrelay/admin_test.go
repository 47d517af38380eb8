package main

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cleanrelay/cleanrelay/relay"
	"github.com/cleanrelay/cleanrelay/relay/client"
)

// startServeLines runs the real binary with args and returns the process, the lines it printed on stdout
// (it prints n of them when ready), and its stderr. The process is killed when the test ends.
func startServeLines(t *testing.T, n int, env []string, args ...string) (*exec.Cmd, []string, *lockedBuffer) {
	t.Helper()
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"serve"}, args...)...)
	cmd.Env = append(cmd.Environ(), env...)
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var got []string
	timeout := time.After(60 * time.Second)
	for len(got) < n {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("serve exited after printing %q; stderr:\n%s", got, stderr)
			}
			got = append(got, l)
		case <-timeout:
			t.Fatalf("serve printed only %q; stderr:\n%s", got, stderr)
		}
	}
	return cmd, got, stderr
}

// field returns the word after prefix in line.
func field(t *testing.T, line, prefix string) string {
	t.Helper()
	rest, ok := strings.CutPrefix(line, prefix)
	if !ok {
		t.Fatalf("line %q does not start with %q", line, prefix)
	}
	word, _, _ := strings.Cut(rest, " ")
	return word
}

func httpGet(t *testing.T, url, host string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// sample reads one sample from a Prometheus text scrape.
func sample(t *testing.T, text, name string) float64 {
	t.Helper()
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("no %s in the scrape", name)
	return 0
}

// TestAdminMetricsDuringChat runs the binary with its admin listener set by environment variable, scrapes
// /metrics during a chat through the relay, and checks that counters move, that the scrape carries no room
// id, capability, token, message or client address, that the admin listener refuses foreign Host headers,
// and that "cleanrelay health" passes against it and fails once the relay is gone.
func TestAdminMetricsDuringChat(t *testing.T) {
	cmd, lines, stderr := startServeLines(t, 2, []string{"CLEANRELAY_ADMIN_LISTEN=127.0.0.1:0"},
		"--local-only", "--listen", "127.0.0.1:0")
	url := field(t, lines[0], "cleanrelay: serving on ")
	admin := field(t, lines[1], "cleanrelay: admin on ")
	adminAddr := strings.TrimSuffix(strings.TrimPrefix(admin, "http://"), "/")

	code, body := httpGet(t, admin+"healthz", "")
	if code != 200 || body != "ok\n" {
		t.Fatalf("admin /healthz: %d %q", code, body)
	}
	code, before := httpGet(t, admin+"metrics", "")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	for _, name := range []string{"cleanrelay_connections", "cleanrelay_onion_published", "go_goroutines"} {
		sample(t, before, name)
	}
	if v := sample(t, before, "cleanrelay_frames_forwarded_total"); v != 0 {
		t.Fatalf("frames forwarded before the chat: %v", v)
	}
	// DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends its own Host.
	if code, _ := httpGet(t, admin+"metrics", "evil.example:"+strings.Split(adminAddr, ":")[1]); code != http.StatusMisdirectedRequest {
		t.Fatalf("admin answered a foreign Host with %d, want 421", code)
	}
	// The relay's own listener does not serve metrics.
	if code, _ := httpGet(t, url+"metrics", ""); code == 200 {
		if _, b := httpGet(t, url+"metrics", ""); strings.Contains(b, "cleanrelay_") {
			t.Fatal("the public listener serves metrics")
		}
	}

	a, b, ra, rb := chatPair(t, url)
	secret := "metrics must not see this"
	a.Send(ra.Ch, []byte(secret))
	for ev := range b.Events() {
		if ev.Kind == client.KindFrame {
			break
		}
	}
	// The relay counts a frame as forwarded after its write returns, which can be after b has read it.
	var during string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		_, during = httpGet(t, admin+"metrics", "")
		if sample(t, during, "cleanrelay_frames_forwarded_total") >= 1 || time.Now().After(deadline) {
			break
		}
	}
	for name, want := range map[string]float64{
		"cleanrelay_connections":            2,
		"cleanrelay_rooms":                  1,
		"cleanrelay_rooms_created_total":    1,
		"cleanrelay_frames_forwarded_total": 1,
		"cleanrelay_forwarded_bytes_total":  float64(len(secret)),
	} {
		if got := sample(t, during, name); got != want {
			t.Errorf("%s = %v during the chat, want %v", name, got, want)
		}
	}
	// Client addresses: the ports the relay saw the two clients come from are not known to the test, but any
	// address at all would contain the loopback prefix.
	for _, s := range []string{ra.ID, ra.Cap, ra.Resume, rb.Resume, secret, "127.0.0.1"} {
		if strings.Contains(during, s) {
			t.Errorf("the scrape contains %q", s)
		}
	}

	var out, errOut bytes.Buffer
	if code := run([]string{"health", "--admin-listen", adminAddr}, &out, &errOut); code != 0 {
		t.Fatalf("health exited %d: %s", code, errOut.String())
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("serve exited with %v; stderr:\n%s", err, stderr)
	}
	t.Setenv("CLEANRELAY_ADMIN_LISTEN", adminAddr)
	errOut.Reset()
	if code := run([]string{"health"}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "unhealthy") {
		t.Fatalf("health against a stopped relay exited %d: %q", code, errOut.String())
	}
	if strings.Contains(stderr.String(), "127.0.0.1") {
		t.Errorf("stderr names an address:\n%s", stderr)
	}
}

// TestAdminRoutes checks that operator routes given to the admin listener are served under /admin/, behind the
// same Host check, and that nothing else leaks onto it.
func TestAdminRoutes(t *testing.T) {
	srv, err := relay.New(relay.Config{}, nil, slog.New(discardHandler{}))
	if err != nil {
		t.Fatal(err)
	}
	routes := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "operator "+r.URL.Path) })
	ops, err := startOps(&opsFlags{adminListen: "127.0.0.1:0"}, srv, srv.Handler(), routes, slog.New(discardHandler{}))
	if err != nil {
		t.Fatal(err)
	}
	defer ops.shutdown()
	base := "http://" + ops.adminLn.Addr().String()
	if code, body := httpGet(t, base+"/admin/stats", ""); code != 200 || body != "operator /admin/stats" {
		t.Fatalf("/admin/stats: %d %q", code, body)
	}
	if code, _ := httpGet(t, base+"/admin/stats", "rebound.example"); code != http.StatusMisdirectedRequest {
		t.Fatalf("/admin/stats with a foreign Host: %d, want 421", code)
	}
	if code, _ := httpGet(t, base+"/", ""); code != http.StatusNotFound {
		t.Fatalf("/ on the admin listener: %d, want 404 (the client is not served there)", code)
	}
}
