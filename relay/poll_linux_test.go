//go:build linux

package relay_test

import (
	"fmt"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/cleanrelay/cleanrelay/relay"
)

// TestIdleConnsHoldNoGoroutine: on Linux an idle connection waits in the poller, so the relay's goroutines do
// not grow with the number of idle connections (a goroutine reader per connection would add one each).
func TestIdleConnsHoldNoGoroutine(t *testing.T) {
	tr := startRelay(t, relay.Config{MaxConns: 1000})
	dialIdle(t, tr, 1) // the poller starts with the first connection
	eventually(t, "the first connection is counted", func() bool { return tr.srv.Stats().Conns == 1 })
	base, open := runtime.NumGoroutine(), 1
	for _, n := range []int{100, 999} {
		dialIdle(t, tr, n-open) // (the relay counts a connection just after the client sees the handshake end)
		open = n
		eventually(t, fmt.Sprintf("%d connections are counted", n), func() bool { return tr.srv.Stats().Conns == int64(n) })
		// Each hello is written by a worker; once they are done, what is left is independent of n.
		eventually(t, fmt.Sprintf("the workers have ended (%d goroutines, %d before)", runtime.NumGoroutine(), base), func() bool { return runtime.NumGoroutine() <= base+5 })
	}
	// And they are alive: a connection that speaks now is read.
	c := tr.dialRaw(t)
	c.write(text(`{"t":"create","id":1}`))
	if r := c.reply(); r["t"] != "joined" {
		t.Fatalf("got %v, want joined", r)
	}
}

// dialIdle opens n WebSocket connections that send nothing and read nothing (and so start no goroutine in
// this process either).
func dialIdle(t testing.TB, tr *testRelay, n int) {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{relay.Subprotocol}, HandshakeTimeout: 10 * time.Second}
	for range n {
		ws, resp, err := d.Dial(tr.url, http.Header{})
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		resp.Body.Close()
		t.Cleanup(func() { ws.Close() })
	}
}
