package relay

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// shutdownRelay starts a relay for the tests below and dials one client to it. The hooks must be set before.
func shutdownRelay(t *testing.T) (*Server, *websocket.Conn) {
	t.Helper()
	srv, err := New(Config{}, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	srv.AllowHost(hs.Listener.Addr().String())
	d := websocket.Dialer{Subprotocols: []string{Subprotocol}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := d.DialContext(ctx, "ws"+strings.TrimPrefix(hs.URL, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	return srv, ws
}

// closeWithin10s closes srv and fails the test if a connection did not end.
func closeWithin10s(t *testing.T, srv *Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// TestKillBetweenWriterLooks kills a connection while its writer, having found nothing to write, is between its
// look at c.done and its look at c.wake. The kill's wake-up finds the writer running and leaves the goodbye to
// it; the writer must not take that wake-up for "something to write", find nothing and stop without saying
// goodbye (TestShutdownWithConnectedClients failed once so: Close waited for a connection that never ended).
func TestKillBetweenWriterLooks(t *testing.T) {
	var passes atomic.Int32
	testHookWriterLook = func(c *conn) {
		if passes.Add(1) == 2 { // the first pass writes the hello; the second finds nothing
			c.kill(closeShutdown)
		}
	}
	t.Cleanup(func() { testHookWriterLook = nil })
	srv, ws := shutdownRelay(t)
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, _, err := ws.ReadMessage()
		if err != nil {
			if !websocket.IsCloseError(err, websocket.CloseGoingAway) {
				t.Fatalf("client ended with %v, want close 1001 (the writer did not say goodbye)", err)
			}
			break
		}
	}
	if passes.Load() < 2 {
		t.Fatalf("the writer made %d passes, want the second to be killed", passes.Load())
	}
	closeWithin10s(t, srv)
}

// TestCloseBeforeStart closes the relay between a connection's registration and its start: Close kills it, its
// writer says goodbye at once, and the connection must still end once it has started.
func TestCloseBeforeStart(t *testing.T) {
	closed := make(chan error, 1)
	var hooked atomic.Bool
	testHookRegistered = func(c *conn) {
		hooked.Store(true)
		before := c.parts.Load()
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			closed <- c.srv.Close(ctx)
		}()
		<-c.done
		// Wait for the goodbye to end the writer's part, so that it comes before the start.
		for deadline := time.Now().Add(10 * time.Second); c.parts.Load() == before; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Error("the killed connection's writer did not end")
				return
			}
		}
	}
	t.Cleanup(func() { testHookRegistered = nil })
	_, ws := shutdownRelay(t)
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, _, err := ws.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseGoingAway) {
		t.Errorf("client ended with %v, want close 1001", err)
	}
	if !hooked.Load() {
		t.Fatal("the hook did not run")
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
}
