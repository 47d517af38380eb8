package relay_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cleanrelay/cleanrelay/relay"
	"github.com/cleanrelay/cleanrelay/relay/client"
	"github.com/cleanrelay/cleanrelay/relay/internal/relaytest"
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
	logs := &logCapture{T: t}
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

// frozenOptions are the options of a client that does not read: tiny kernel buffers, and a program that takes
// no events.
func frozenOptions() *client.Options {
	return &client.Options{Events: 1, NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			c.(*net.TCPConn).SetReadBuffer(4096)
		}
		return c, err
	}}
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

// The shared helpers, under the names these tests use.
type logCapture = relaytest.LogCapture

var (
	ctx10s     = relaytest.Ctx10s
	mustCreate = relaytest.MustCreate
	mustJoin   = relaytest.MustJoin
	nextEvent  = relaytest.NextEvent
	nextFrame  = relaytest.NextFrame
	wantError  = relaytest.WantError
	eventually = relaytest.Eventually
)

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
