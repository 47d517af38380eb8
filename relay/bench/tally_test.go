package bench

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func TestTally(t *testing.T) {
	var tl tally
	if tl.String() != "" || tl.total() != 0 {
		t.Fatalf("empty tally: %q, %d", tl.String(), tl.total())
	}
	tl.add("send: broken pipe")
	for range 3 {
		tl.add("room closed: slow")
	}
	if got, want := tl.String(), "3× room closed: slow; 1× send: broken pipe"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	for i := range 2 * tallyKinds {
		tl.add(fmt.Sprint("kind ", i))
	}
	if tl.total() != 4+2*tallyKinds {
		t.Errorf("total %d, want %d", tl.total(), 4+2*tallyKinds)
	}
	// With a start, each kind says when it first came.
	st := tally{start: time.Now().Add(-1500 * time.Millisecond)}
	st.add("connection ended: x")
	st.add("connection ended: x")
	if got := st.String(); !strings.HasPrefix(got, "2× connection ended: x (first after 1.") || !strings.HasSuffix(got, " s)") {
		t.Errorf("got %q, want 2× … (first after 1.5 s)", got)
	}
	if len(tl.counts) != tallyKinds+1 || tl.counts["other"] != int64(2*tallyKinds-(tallyKinds-2)) {
		t.Errorf("%d kinds, %d other: want %d kinds and the rest as other", len(tl.counts), tl.counts["other"], tallyKinds+1)
	}
}

// TestProbesSayWhy: a probe that cannot reach the relay says so, for the soak's probe_failures.
func TestProbesSayWhy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "ws://" + ln.Addr().String() + "/ws"
	ln.Close()
	ctx := context.Background()
	if err := probeCreate(ctx, url); err == nil || !strings.HasPrefix(err.Error(), "dial: ") {
		t.Errorf("create probe of a closed port: %v, want a dial error", err)
	}
	if err := probeAccount(ctx, url); err == nil {
		t.Error("account probe of a closed port: no error")
	}
}

// TestConnEnded: the relay's close asking the client to resume (1001, no reason) is named as such; any other
// end is said as it was.
func TestConnEnded(t *testing.T) {
	resume := &websocket.CloseError{Code: websocket.CloseGoingAway}
	if got := connEnded(fmt.Errorf("read: %w", resume)); !strings.Contains(got, "asked the client to resume") {
		t.Errorf("close 1001 with no reason: %q", got)
	}
	shutdown := &websocket.CloseError{Code: websocket.CloseGoingAway, Text: "shutdown"}
	if got := connEnded(shutdown); got != shutdown.Error() {
		t.Errorf("close 1001 shutdown: %q, want %q", got, shutdown.Error())
	}
}
