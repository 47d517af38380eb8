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

// shutdownRelay starts a relay with hooks for the tests below and dials one client to it.
func shutdownRelay(t *testing.T, hooks testHooks) (*Server, *websocket.Conn) {
	t.Helper()
	srv, err := New(Config{}, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv.hooks = hooks
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
	srv, ws := shutdownRelay(t, testHooks{writerLook: func(c *conn) {
		if passes.Add(1) == 2 { // the first pass writes the hello; the second finds nothing
			c.kill(closeShutdown)
		}
	}})
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

// TestCloseBeforeStart closes the relay between a connection's registration and its start: Close kills it, and
// the connection must still end once it has started, whether its writer's goodbye (which ends the writer's part
// and closes the socket) comes before the start, or after the reader was armed in the poller (where a closed
// socket reports nothing, so the start must end reading itself).
func TestCloseBeforeStart(t *testing.T) {
	for _, goodbyeFirst := range []bool{true, false} {
		t.Run(map[bool]string{true: "goodbye before start", false: "goodbye after watch"}[goodbyeFirst], func(t *testing.T) {
			closeBeforeStart(t, goodbyeFirst)
		})
	}
}

func closeBeforeStart(t *testing.T, goodbyeFirst bool) {
	closed := make(chan error, 1)
	var hooked atomic.Bool
	var hooks testHooks
	hooks.registered = func(c *conn) {
		hooked.Store(true)
		before := c.parts.Load()
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			closed <- c.srv.Close(ctx)
		}()
		<-c.done
		if !goodbyeFirst {
			return
		}
		// Wait for the goodbye to end the writer's part.
		for deadline := time.Now().Add(10 * time.Second); c.parts.Load() == before; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Error("the killed connection's writer did not end")
				return
			}
		}
	}
	if !goodbyeFirst {
		// Hold the writer's goodbye until the start has armed the reader and ended it (as it must, for a killed
		// connection); on a deadline let it go anyway, and see the connection not end.
		hooks.writerLook = func(c *conn) {
			for deadline := time.Now().Add(10 * time.Second); c.readState.Load() != readEnded; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Error("the start did not end reading for a killed connection")
					return
				}
			}
		}
	}
	_, ws := shutdownRelay(t, hooks)
	ws.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		if _, _, err := ws.ReadMessage(); err != nil {
			if !websocket.IsCloseError(err, websocket.CloseGoingAway) {
				t.Errorf("client ended with %v, want close 1001", err)
			}
			break
		}
	}
	if !hooked.Load() {
		t.Fatal("the hook did not run")
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
}
