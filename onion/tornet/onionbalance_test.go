package tornet

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// frontTimeout bounds the wait for the first fetch through the front: onionbalance fetches the instances'
// descriptors on a new consensus (every 20 s here) or after its 45 s start delay, then publishes.
const frontTimeout = 4 * time.Minute

// TestOnionbalance publishes one front address over three backend onion services (three tors, each with its own
// service answering with its name) with onionbalance and its own tor, then fetches the front through the client
// tor on new circuits (a fresh SOCKS isolation each time) and checks that more than one backend answers.
func TestOnionbalance(t *testing.T) {
	Require(t)
	start := time.Now()
	n := StartWith(t, Options{VotingInterval: 20 * time.Second, Authorities: 7})
	t.Logf("network up in %v", time.Since(start).Round(time.Millisecond))

	ob, err := n.NewOnionbalance()
	if err != nil {
		t.Fatal(err)
	}
	var instances []string
	for i := range 3 {
		name := fmt.Sprintf("backend%d", i+1)
		addr, err := ob.StartInstance(name, serveName(t, name), "")
		if err != nil {
			t.Fatal(err)
		}
		instances = append(instances, addr)
	}
	t.Logf("three instances up at %v", time.Since(start).Round(time.Millisecond))
	obStart := time.Now()
	if err := ob.Start(instances); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			logOnionbalance(t, ob)
		}
	})

	// The first fetch: retry on fresh circuits until the front's descriptor is out and leads somewhere. After
	// each failure the client forgets what it learnt (NEWNYM), or it would stop asking the HSDirs for minutes and
	// the time measured would be the client's back-off, not onionbalance's.
	var first string
	var tries int
	var lastErr error
	for deadline := time.Now().Add(frontTimeout); first == "" && time.Now().Before(deadline); {
		tries++
		first, lastErr = fetchIsolated(n, ob.Address, fmt.Sprintf("first-%d", tries))
		if first == "" {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := n.ForgetOnionServices(ctx); err != nil {
				t.Logf("NEWNYM: %v", err)
			}
			cancel()
			time.Sleep(2 * time.Second)
		}
	}
	if first == "" {
		t.Fatalf("no fetch through the front %s within %v (%d tries; last: %v)", ob.Address, frontTimeout, tries, lastErr)
	}
	t.Logf("first fetch through the front: %v after onionbalance started (%d tries), answered by %s",
		time.Since(obStart).Round(time.Millisecond), tries, first)

	// New circuits: each fetch has its own SOCKS isolation, so a new rendezvous through an introduction point
	// picked afresh from the front's descriptor.
	const fetches = 20
	seen := map[string]int{first: 1}
	changes, prev := 0, first
	var took []time.Duration
	for i := range fetches {
		t0 := time.Now()
		name, err := fetchIsolated(n, ob.Address, fmt.Sprintf("circuit-%d", i))
		if err != nil {
			t.Errorf("fetch %d through the front: %v", i, err)
			continue
		}
		took = append(took, time.Since(t0))
		seen[name]++
		if name != prev {
			changes++
		}
		prev = name
	}
	t.Logf("%d fetches on new circuits: backends %v, backend changed %d times; fetch times %v", fetches, seen, changes, took)
	if len(seen) < 2 {
		t.Errorf("every fetch landed on %v: the front does not balance", seen)
	}
	for name := range seen {
		if !strings.HasPrefix(name, "backend") {
			t.Errorf("unexpected answer %q", name)
		}
	}
}

// serveName serves HTTP on 127.0.0.1 answering every request with name, until the test ends; it returns the
// address.
func serveName(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// fetchIsolated GETs http://addr/ through the client tor on circuits of the given isolation and returns the body.
func fetchIsolated(n *Network, addr, isolation string) (string, error) {
	client := &http.Client{
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
				return DialSOCKS5Isolated(ctx, n.SocksAddr, a, isolation)
			},
			DisableKeepAlives: true,
		},
		Timeout: 30 * time.Second,
	}
	resp, err := client.Get("http://" + addr + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 100))
	if err != nil {
		return "", err
	}
	return string(body), nil
}

// logOnionbalance logs what onionbalance did, without its periodic lines and most of its debug lines (those kept
// say how many HSDirs it saw: see Options.Authorities).
func logOnionbalance(t *testing.T, ob *Onionbalance) {
	b, _ := os.ReadFile(ob.Log)
	var kept []string
	for line := range strings.Lines(string(b)) {
		if !strings.Contains(line, "is offline") && !strings.Contains(line, "no usable intro") &&
			!strings.Contains(line, "called [*]") && !strings.Contains(line, "Initiating fetch") &&
			(!strings.Contains(line, "[DEBUG]") || strings.Contains(line, "Initialized") || strings.Contains(line, "Could not find")) {
			kept = append(kept, strings.TrimSpace(line))
		}
	}
	if len(kept) > 120 {
		kept = kept[len(kept)-120:]
	}
	t.Logf("onionbalance's log (periodic lines left out):\n%s", strings.Join(kept, "\n"))
}
