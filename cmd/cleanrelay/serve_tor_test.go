package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cleanrelay/cleanrelay/onion/tornet"
	"github.com/cleanrelay/cleanrelay/relay/client"
)

// servedBinary is a running `cleanrelay serve` started by a test.
type servedBinary struct {
	cmd    *exec.Cmd
	url    string // what it printed: http://HOST/
	host   string
	stderr *lockedBuffer
	exited chan struct{}
	tmp    string // its TMPDIR
}

// startServeTor runs `cleanrelay serve args...` with its own TMPDIR and waits for the address it prints. The
// cleanup stops it with SIGTERM and checks that it exits cleanly and leaves nothing in its TMPDIR.
func startServeTor(t testing.TB, timeout time.Duration, args ...string) *servedBinary {
	t.Helper()
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	sb := &servedBinary{stderr: &lockedBuffer{}, exited: make(chan struct{}), tmp: t.TempDir()}
	sb.cmd = exec.Command(bin, append([]string{"serve"}, args...)...)
	sb.cmd.Env = append(os.Environ(), "TMPDIR="+sb.tmp)
	sb.cmd.Stderr = sb.stderr
	stdout, err := sb.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sb.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	go func() { sb.cmd.Wait(); close(sb.exited) }()
	t.Cleanup(func() {
		sb.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-sb.exited:
		case <-time.After(15 * time.Second):
			sb.cmd.Process.Kill()
			<-sb.exited
			t.Errorf("cleanrelay serve did not exit within 15 s of SIGTERM")
		}
		if code := sb.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("cleanrelay serve exited with %d", code)
		}
		if entries, _ := os.ReadDir(sb.tmp); len(entries) > 0 {
			t.Errorf("cleanrelay serve left %d entries in its TMPDIR (first: %s)", len(entries), entries[0].Name())
		}
		if t.Failed() {
			t.Logf("cleanrelay serve's stderr:\n%s", sb.stderr.String())
		}
	})
	deadline := time.After(timeout)
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("cleanrelay serve ended without printing its address; stderr:\n%s", sb.stderr.String())
			}
			if u, ok := strings.CutPrefix(line, "cleanrelay: serving on "); ok {
				sb.url = u
				pu, err := url.Parse(u)
				if err != nil {
					t.Fatalf("printed address %q: %v", u, err)
				}
				sb.host = pu.Host
				go func() {
					for range lines { // keep the pipe drained
					}
				}()
				return sb
			}
		case <-deadline:
			t.Fatalf("no address printed within %v; stderr:\n%s", timeout, sb.stderr.String())
		}
	}
}

// torChild is the PID of the tor that process pid launched.
func torChild(t testing.TB, pid int) int {
	t.Helper()
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		for _, field := range strings.Fields(string(b)) {
			child, _ := strconv.Atoi(field)
			comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", child))
			if strings.TrimSpace(string(comm)) == "tor" {
				return child
			}
		}
	}
	t.Fatalf("no tor child of pid %d", pid)
	return 0
}

func writeTorrc(t testing.TB, n *tornet.Network) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "private-network.torrc")
	if err := os.WriteFile(path, []byte(strings.Join(n.ServiceTorrc(), "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// dialRetry dials the relay's WebSocket, retrying while the onion service is (re)appearing.
func dialRetry(ctx context.Context, t testing.TB, wsURL string, opts *client.Options) *client.Conn {
	t.Helper()
	var lastErr error
	for ctx.Err() == nil {
		c, err := client.Dial(ctx, wsURL, opts)
		if err == nil {
			return c
		}
		lastErr = err
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("dial %s: %v (last: %v)", wsURL, ctx.Err(), lastErr)
	return nil
}

// member is one chat client's view of a room: what it received, in order.
type member struct {
	c    *client.Conn
	room *client.Room
	got  []string
	last uint64
}

// receive waits for the next frame and records it (acking now and then, as a client should).
func (m *member) receive(ctx context.Context) (string, error) {
	for {
		select {
		case ev, ok := <-m.c.Events():
			if !ok {
				return "", fmt.Errorf("connection ended: %v", m.c.Err())
			}
			if ev.Kind == client.KindLost {
				return "", fmt.Errorf("relay reports frames %d..%d lost", ev.LostFrom, ev.LostTo)
			}
			if ev.Kind != client.KindFrame {
				continue
			}
			m.got = append(m.got, string(ev.Payload))
			m.last = ev.Seq
			if ev.Seq%16 == 0 {
				m.c.Ack(ev.Ch, ev.Seq)
			}
			return string(ev.Payload), nil
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// TestServeOnTor runs `cleanrelay serve` in onion mode on the private network: it bootstraps, publishes and
// prints its address; the page loads through tor; two Go clients chat through the client tor's SOCKS port; tor
// is killed mid-session, the relay restarts it, the same address comes back and both clients resume without
// losing or repeating a frame.
func TestServeOnTor(t *testing.T) {
	n := tornet.Start(t)
	start := time.Now()
	// The grace outlasts the client tor's lockout after the restart (about 3 min, docs/onion.md): a run on a
	// loaded machine was reachable again only after 3m10s, when a 3m grace had let the memberships go.
	sb := startServeTor(t, 2*time.Minute, "--tor-torrc-extra", writeTorrc(t, n), "--grace", "6m")
	t.Logf("cleanrelay serve: process start to printed onion address %v", time.Since(start).Round(time.Millisecond))
	if !strings.HasSuffix(sb.host, ".onion") || !strings.HasPrefix(sb.url, "http://") {
		t.Fatalf("printed address %q is not an onion URL", sb.url)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 7*time.Minute)
	defer cancel()

	// The page, with the Host a browser would send.
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, sb.url, nil)
	var resp *http.Response
	var err error
	for ctx.Err() == nil {
		if resp, err = n.HTTPClient().Do(req); err == nil {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("GET %s through tor: %v", sb.url, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s through tor: %s", sb.url, resp.Status)
	}

	wsURL := "ws://" + sb.host + "/ws"
	opts := &client.Options{NetDialContext: n.DialContext}
	dialStart := time.Now()
	a := &member{c: dialRetry(ctx, t, wsURL, opts)}
	t.Logf("first WebSocket dial through the onion %v", time.Since(dialStart).Round(time.Millisecond))
	b := &member{c: dialRetry(ctx, t, wsURL, opts)}
	if a.room, err = a.c.Create(ctx, 2); err != nil {
		t.Fatalf("create: %v", err)
	}
	if b.room, err = b.c.Join(ctx, a.room.ID, a.room.Cap); err != nil {
		t.Fatalf("join: %v", err)
	}
	send := func(m *member, i int) {
		t.Helper()
		if err := m.c.Send(m.room.Ch, []byte(fmt.Sprintf("msg-%d", i))); err != nil {
			t.Fatalf("send msg-%d: %v", i, err)
		}
	}
	// Both ways first.
	send(b, 0)
	if got, err := a.receive(ctx); err != nil || got != "msg-0" {
		t.Fatalf("a received %q, %v; want msg-0", got, err)
	}
	a.got = nil
	for i := 1; i <= 10; i++ {
		send(a, i)
	}
	for range 10 {
		if _, err := b.receive(ctx); err != nil {
			t.Fatalf("b: %v", err)
		}
	}
	// Frames 11..20 go out right before tor dies: some may be in flight when it does.
	for i := 11; i <= 20; i++ {
		send(a, i)
	}
	oldPID := torChild(t, sb.cmd.Process.Pid)
	killed := time.Now()
	if err := syscall.Kill(oldPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Drain what b still gets before its connection drops with the circuits.
	dropCtx, dropCancel := context.WithTimeout(ctx, time.Minute)
	defer dropCancel()
	for {
		if _, err := b.receive(dropCtx); err != nil {
			if dropCtx.Err() != nil {
				t.Fatalf("b's connection did not drop within a minute of tor's death")
			}
			break
		}
	}
	select {
	case <-a.c.Done():
	case <-dropCtx.Done():
		t.Fatalf("a's connection did not drop within a minute of tor's death")
	}

	// Both come back once the restarted tor has published again. They wait for that rather than hammer: a
	// client tor that keeps failing against the dead service's cached descriptor asks every HSDir for a new one
	// before the restarted service has uploaded it, and then (tor's per-HSDir requery limit; the test network has
	// only 3 HSDirs) cannot find the service for about 3 minutes. See docs/onion.md.
	for strings.Count(sb.stderr.String(), "onion: service descriptor published") < 2 {
		if time.Since(killed) > 2*time.Minute {
			t.Fatal("the relay did not publish again within 2 minutes of tor's death")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("published again %v after tor was killed", time.Since(killed).Round(time.Millisecond))
	if err := n.ForgetOnionServices(ctx); err != nil {
		t.Fatal(err)
	}
	a.c = dialRetry(ctx, t, wsURL, opts)
	t.Logf("reachable again %v after tor was killed", time.Since(killed).Round(time.Millisecond))
	if newPID := torChild(t, sb.cmd.Process.Pid); newPID == oldPID {
		t.Fatalf("tor pid unchanged after the kill")
	}
	ra, err := a.c.Resume(ctx, a.room.Resume, 0)
	if err != nil {
		t.Fatalf("a resume: %v", err)
	}
	// The relay says how many of a's frames it accepted (msg-1.. in order); a resends the rest.
	for i := int(ra.In) + 1; i <= 20; i++ {
		send(&member{c: a.c, room: ra}, i)
	}
	a.room = ra
	b.c = dialRetry(ctx, t, wsURL, opts)
	rb, err := b.c.Resume(ctx, b.room.Resume, b.last)
	if err != nil {
		t.Fatalf("b resume: %v", err)
	}
	b.room = rb
	for i := 21; i <= 30; i++ {
		send(a, i)
	}
	for len(b.got) < 30 {
		if _, err := b.receive(ctx); err != nil {
			t.Fatalf("b after resume, with %d frames: %v", len(b.got), err)
		}
	}
	var want []string
	for i := 1; i <= 30; i++ {
		want = append(want, fmt.Sprintf("msg-%d", i))
	}
	if !slices.Equal(b.got, want) {
		t.Fatalf("b received %v,\nwant %v", b.got, want)
	}
	a.c.CloseGracefully()
	b.c.CloseGracefully()
	if strings.Contains(sb.stderr.String(), sb.host) {
		// The operator sees the address on stdout; the log is for aggregate facts only.
		t.Errorf("the onion address appears in the log")
	}
}

// TestServeMissingTor checks the hint when tor is not installed; it needs no network.
func TestServeMissingTor(t *testing.T) {
	var stdout, stderr strings.Builder
	code := run([]string{"serve", "--tor-path", "/nonexistent/tor"}, &stdout, &stderr)
	if code == 0 || !strings.Contains(stderr.String(), "apt-get install tor") {
		t.Fatalf("exit %d, stderr %q: want a failure that says apt-get install tor", code, stderr.String())
	}
}

// BenchmarkFrameRoundTrip measures one frame from a to b and one back, through the onion service (private
// network, client tor's SOCKS port) and, for comparison, on loopback with --local-only. Run with
// `go test ./cmd/cleanrelay -tor -run '^$' -bench FrameRoundTrip -benchtime 200x` in a loopback-only namespace.
func BenchmarkFrameRoundTrip(b *testing.B) {
	b.Run("loopback", func(b *testing.B) {
		sb := startServeTor(b, 30*time.Second, "--local-only", "--listen", "127.0.0.1:0")
		benchRoundTrip(b, "ws://"+sb.host+"/ws", nil)
	})
	b.Run("onion", func(b *testing.B) {
		n := tornet.Start(b)
		start := time.Now()
		sb := startServeTor(b, 2*time.Minute, "--tor-torrc-extra", writeTorrc(b, n))
		publish := time.Since(start)
		benchRoundTrip(b, "ws://"+sb.host+"/ws", &client.Options{NetDialContext: n.DialContext})
		// After benchRoundTrip: its ResetTimer would drop the metric.
		b.ReportMetric(publish.Seconds(), "s-to-publish")
	})
}

// benchPair connects two members to the relay at wsURL and puts them in one room; the context bounds the
// benchmark's waits. Everything is closed when the benchmark ends.
func benchPair(b *testing.B, wsURL string, opts *client.Options) (context.Context, *member, *member) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	b.Cleanup(cancel)
	x := &member{c: dialRetry(ctx, b, wsURL, opts)}
	b.Cleanup(func() { x.c.Close() })
	y := &member{c: dialRetry(ctx, b, wsURL, opts)}
	b.Cleanup(func() { y.c.Close() })
	var err error
	if x.room, err = x.c.Create(ctx, 2); err != nil {
		b.Fatal(err)
	}
	if y.room, err = y.c.Join(ctx, x.room.ID, x.room.Cap); err != nil {
		b.Fatal(err)
	}
	return ctx, x, y
}

func benchRoundTrip(b *testing.B, wsURL string, opts *client.Options) {
	ctx, x, y := benchPair(b, wsURL, opts)
	payload := make([]byte, 1024) // a padded chat message
	rtts := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		if err := x.c.Send(x.room.Ch, payload); err != nil {
			b.Fatal(err)
		}
		if _, err := y.receive(ctx); err != nil {
			b.Fatal(err)
		}
		if err := y.c.Send(y.room.Ch, payload); err != nil {
			b.Fatal(err)
		}
		if _, err := x.receive(ctx); err != nil {
			b.Fatal(err)
		}
		rtts = append(rtts, time.Since(t0))
		x.got, y.got = x.got[:0], y.got[:0]
	}
	b.StopTimer()
	slices.Sort(rtts)
	b.ReportMetric(float64(rtts[len(rtts)/2].Microseconds())/1000, "ms-p50")
	b.ReportMetric(float64(rtts[len(rtts)*95/100].Microseconds())/1000, "ms-p95")
}

// BenchmarkFrameThroughput streams 16 KiB frames from a to b, at most 32 in flight so the relay's per-member
// buffer (1 MiB by default) never overflows; MB/s is payload delivered.
func BenchmarkFrameThroughput(b *testing.B) {
	b.Run("loopback", func(b *testing.B) {
		sb := startServeTor(b, 30*time.Second, "--local-only", "--listen", "127.0.0.1:0")
		benchThroughput(b, "ws://"+sb.host+"/ws", nil)
	})
	b.Run("onion", func(b *testing.B) {
		n := tornet.Start(b)
		sb := startServeTor(b, 2*time.Minute, "--tor-torrc-extra", writeTorrc(b, n))
		benchThroughput(b, "ws://"+sb.host+"/ws", &client.Options{NetDialContext: n.DialContext})
	})
}

func benchThroughput(b *testing.B, wsURL string, opts *client.Options) {
	const frameSize, window = 16 << 10, 32
	ctx, x, y := benchPair(b, wsURL, opts)
	payload := make([]byte, frameSize)
	received := make(chan error, window)
	b.SetBytes(frameSize)
	b.ResetTimer()
	go func() {
		for range b.N {
			_, err := y.receive(ctx)
			y.got = y.got[:0]
			received <- err
		}
	}()
	inFlight := 0
	for range b.N {
		for inFlight >= window {
			if err := <-received; err != nil {
				b.Fatal(err)
			}
			inFlight--
		}
		if err := x.c.Send(x.room.Ch, payload); err != nil {
			b.Fatal(err)
		}
		inFlight++
	}
	for ; inFlight > 0; inFlight-- {
		if err := <-received; err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
}
