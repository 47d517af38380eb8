package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cleanrelay/cleanrelay/relay/client"
)

var straceFlag = flag.Bool("strace", false, "run the tests that trace the relay process with strace (CI passes it)")

// fileSyscalls are the system calls through which a process can put something on disk or change it.
const fileSyscalls = "open,openat,openat2,creat,mkdir,mkdirat,rename,renameat,renameat2,unlink,unlinkat," +
	"truncate,ftruncate,link,linkat,symlink,symlinkat,chmod,fchmodat"

// TestNoDiskWrites runs "cleanrelay serve --local-only" under strace through a whole session — registration,
// login, anonymous rooms, frames, a resume, a burn, shutdown — and checks the process opened no file for
// writing and created, renamed or removed nothing. (The onion mode is covered by the Tor tests' temp-area check.)
func TestNoDiskWrites(t *testing.T) {
	if !*straceFlag {
		t.Skip("needs strace; run with -strace (CI does)")
	}
	if _, err := exec.LookPath("strace"); err != nil {
		t.Fatalf("-strace given but strace is missing: %v", err)
	}
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	trace := filepath.Join(t.TempDir(), "trace")
	cmd := exec.Command("strace", "-f", "-qq", "-e", "trace="+fileSyscalls, "-o", trace,
		bin, "serve", "--local-only", "--listen", "127.0.0.1:0", "--log-level", "debug", "--grace", "200ms")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	sc := bufio.NewScanner(stdout)
	if !sc.Scan() {
		t.Fatalf("no address printed:\n%s", stderr)
	}
	url := strings.TrimPrefix(sc.Text(), "cleanrelay: serving on ")
	go func() {
		for sc.Scan() {
		}
	}()

	session(t, url)

	// Signal the relay itself, strace's child; strace ends when it does.
	kids, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid))
	if err != nil || len(strings.Fields(string(kids))) != 1 {
		t.Fatalf("cannot find the relay under strace: %q %v", kids, err)
	}
	var pid int
	fmt.Sscan(string(kids), &pid)
	syscall.Kill(pid, syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("serve under strace: %v\n%s", err, stderr)
	}
	data, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	calls := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(calls) == 0 || calls[0] == "" {
		t.Fatal("strace recorded no file system call at all; the trace cannot be right")
	}
	writeIntent := regexp.MustCompile(`O_WRONLY|O_RDWR|O_CREAT|O_TRUNC|O_APPEND`)
	readOnlyOpen := regexp.MustCompile(`^\d+\s+(open|openat|openat2)\(`)
	var bad []string
	for _, c := range calls {
		switch {
		case strings.Contains(c, "+++ exited") || strings.Contains(c, "--- SIG"):
		// With -f a call can be split across threads: its arguments are on the "<unfinished ...>" line,
		// which the cases below judge; the "resumed>" line only carries the result. A thread that ends
		// inside a call shows as "<detached ...>".
		case strings.Contains(c, " resumed>") || strings.Contains(c, "<detached ...>"):
		case readOnlyOpen.MatchString(c) && !writeIntent.MatchString(c):
		default:
			bad = append(bad, c)
		}
	}
	if len(bad) > 0 {
		t.Fatalf("the relay touched the disk:\n%s", strings.Join(bad, "\n"))
	}
	t.Logf("%d read-only opens traced, none for writing", len(calls))
}

// session runs a little of everything against a relay at url.
func session(t *testing.T, url string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	post := func(path, body string, want int) {
		t.Helper()
		req, _ := http.NewRequest("POST", url+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("POST %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
	post("api/register", `{"username":"dora","full_name":"Dora Disk","email":"dora@example.org","password":"Correct-h0rse!"}`, http.StatusCreated)
	post("api/login", `{"username":"dora","password":"wrong-Passw0rd!"}`, http.StatusUnauthorized)
	post("api/login", `{"username":"dora","password":"Correct-h0rse!"}`, http.StatusOK)
	if resp, err := hc.Get(url); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /: %v %v", resp, err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ws := "ws" + strings.TrimPrefix(url, "http") + "ws"
	dial := func() *client.Conn {
		c, err := client.Dial(ctx, ws, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	a, b := dial(), dial()
	ra, err := a.Create(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := b.Join(ctx, ra.ID, ra.Cap)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		a.Send(ra.Ch, make([]byte, 1000+i))
		b.Send(rb.Ch, []byte(fmt.Sprint("frame ", i)))
	}
	frames := 0
	for frames < 50 {
		ev := <-b.Events()
		if ev.Kind == client.KindFrame {
			frames++
		}
	}
	b.Close()
	b2 := dial()
	if _, err := b2.Resume(ctx, rb.Resume, rb.Seq); err != nil {
		t.Fatal(err)
	}
	a.Burn(ra.Ch)
	for ev := range a.Events() {
		if ev.Kind == client.KindClosed {
			break
		}
	}
	// A room left to its grace timer.
	c := dial()
	if _, err := c.Create(ctx, 0); err != nil {
		t.Fatal(err)
	}
	c.Close()
	time.Sleep(400 * time.Millisecond)
}
