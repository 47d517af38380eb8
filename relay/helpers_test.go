package relay_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cleanrelay/cleanrelay/relay"
	"github.com/cleanrelay/cleanrelay/relay/client"
)

// testRelay is a real relay on a real loopback socket.
type testRelay struct {
	srv  *relay.Server
	http *httptest.Server
	url  string // ws://127.0.0.1:PORT/ws
	logs *logCapture
}

// startRelay starts a relay with cfg on a loopback listener and closes it when the test ends.
func startRelay(t testing.TB, cfg relay.Config) *testRelay {
	t.Helper()
	return startRelayOn(t, cfg, httptest.NewServer)
}

// startRelayOn starts a relay with cfg on the test server listen makes (plain or TLS).
func startRelayOn(t testing.TB, cfg relay.Config, listen func(http.Handler) *httptest.Server) *testRelay {
	t.Helper()
	logs := &logCapture{t: t}
	srv, err := relay.New(cfg, nil, slog.New(logs))
	if err != nil {
		t.Fatalf("relay.New: %v", err)
	}
	hs := listen(srv.Handler())
	srv.AllowHost(hs.Listener.Addr().String())
	scheme := "ws"
	if hs.TLS != nil {
		scheme = "wss"
	}
	tr := &testRelay{srv: srv, http: hs, url: scheme + strings.TrimPrefix(strings.TrimPrefix(hs.URL, "https"), "http") + "/ws", logs: logs}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Close(ctx); err != nil {
			t.Errorf("relay Close: %v", err)
		}
		hs.Close()
	})
	return tr
}

// dial connects a client to the relay and closes it when the test ends.
func (tr *testRelay) dial(t testing.TB, opts *client.Options) *client.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, tr.url, opts)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// pair makes a room of two: a creates, b joins. a's presence event for b's join is consumed.
func (tr *testRelay) pair(t testing.TB) (a, b *client.Conn, ra, rb *client.Room) {
	t.Helper()
	a, b = tr.dial(t, nil), tr.dial(t, nil)
	ra = mustCreate(t, a, 0)
	rb = mustJoin(t, b, ra.ID, ra.Cap)
	ev := nextEvent(t, a)
	if ev.Kind != client.KindPresence || ev.Event != "join" || ev.Member != rb.Member {
		t.Fatalf("creator got %+v, want presence join of member %d", ev, rb.Member)
	}
	return a, b, ra, rb
}

func ctx10s(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustCreate(t testing.TB, c *client.Conn, max int) *client.Room {
	t.Helper()
	r, err := c.Create(ctx10s(t), max)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	return r
}

func mustJoin(t testing.TB, c *client.Conn, room, capability string) *client.Room {
	t.Helper()
	r, err := c.Join(ctx10s(t), room, capability)
	if err != nil {
		t.Fatalf("join: %v", err)
	}
	return r
}

// nextEvent returns the next event of c, failing the test after 10 s.
func nextEvent(t testing.TB, c *client.Conn) client.Event {
	t.Helper()
	select {
	case ev, ok := <-c.Events():
		if !ok {
			t.Fatalf("connection ended while waiting for an event: %v", c.Err())
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatalf("no event within 10s")
	}
	panic("unreachable")
}

// nextFrame skips presence events and returns the next frame.
func nextFrame(t testing.TB, c *client.Conn) client.Event {
	t.Helper()
	for {
		ev := nextEvent(t, c)
		switch ev.Kind {
		case client.KindFrame:
			return ev
		case client.KindPresence:
			continue
		default:
			t.Fatalf("got %+v while waiting for a frame", ev)
		}
	}
}

// wantError expects err to be a relay error with the given code.
func wantError(t testing.TB, err error, code string) {
	t.Helper()
	var re *client.Error
	if !errors.As(err, &re) || re.Code != code {
		t.Fatalf("got error %v, want relay error %q", err, code)
	}
}

// eventually polls cond until it holds, failing the test after 10 s. Timers of the relay run in real time
// over real sockets, so this waits for a condition rather than for a fixed time.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// exchange checks that one frame goes each way between a and b in the given rooms.
func exchange(t testing.TB, a, b *client.Conn, ra, rb *client.Room) {
	t.Helper()
	msg := []byte(fmt.Sprintf("ping %d", time.Now().UnixNano()))
	if err := a.Send(ra.Ch, msg); err != nil {
		t.Fatalf("send: %v", err)
	}
	if ev := nextFrame(t, b); !bytes.Equal(ev.Payload, msg) || ev.From != ra.Member {
		t.Fatalf("b got %q from %d, want %q from %d", ev.Payload, ev.From, msg, ra.Member)
	}
	if err := b.Send(rb.Ch, msg); err != nil {
		t.Fatalf("send: %v", err)
	}
	if ev := nextFrame(t, a); !bytes.Equal(ev.Payload, msg) || ev.From != rb.Member {
		t.Fatalf("a got %q from %d, want %q from %d", ev.Payload, ev.From, msg, rb.Member)
	}
}

// logCapture is a slog.Handler that keeps every record (for assertions) and echoes it to the test log.
type logCapture struct {
	t       testing.TB
	mu      sync.Mutex
	records []slog.Record
	text    bytes.Buffer
}

func (l *logCapture) Enabled(context.Context, slog.Level) bool { return true }
func (l *logCapture) WithAttrs(as []slog.Attr) slog.Handler    { return &attrCapture{l, as} }
func (l *logCapture) WithGroup(string) slog.Handler            { return l }

// attrCapture is a logCapture after log.With: every record it handles carries the attributes given then, so
// that what is logged through a derived logger is checked like the rest. (Groups only qualify names; the
// values, which are what a test looks for, are all kept.)
type attrCapture struct {
	root  *logCapture
	attrs []slog.Attr
}

func (a *attrCapture) Enabled(context.Context, slog.Level) bool { return true }
func (a *attrCapture) WithGroup(string) slog.Handler            { return a }
func (a *attrCapture) WithAttrs(as []slog.Attr) slog.Handler {
	return &attrCapture{a.root, append(a.attrs[:len(a.attrs):len(a.attrs)], as...)}
}
func (a *attrCapture) Handle(ctx context.Context, r slog.Record) error {
	r = r.Clone()
	r.AddAttrs(a.attrs...)
	return a.root.Handle(ctx, r)
}
func (l *logCapture) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, r.Clone())
	line := r.Message
	r.Attrs(func(a slog.Attr) bool {
		line += " " + a.String()
		return true
	})
	l.text.WriteString(line + "\n")
	return nil
}

func (l *logCapture) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.text.String()
}

// checkGoroutines fails the test if, within 10 s, the number of goroutines does not come back to base.
func checkGoroutines(t testing.TB, base int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("%d goroutines left, %d before:\n%s", runtime.NumGoroutine(), base, buf[:n])
		}
		time.Sleep(10 * time.Millisecond)
	}
}
