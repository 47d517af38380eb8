package bench

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
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
