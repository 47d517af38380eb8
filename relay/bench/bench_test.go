package bench

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cleanrelay/cleanrelay/keydir"
	"github.com/cleanrelay/cleanrelay/relay"
	"github.com/cleanrelay/cleanrelay/relay/accounts"
)

// inProcess serves h on a loopback listener in this process and describes it as a Server; the CPU and memory
// figures are then this test process's own.
func inProcess(t testing.TB, name string, h func(hostport string) *httptest.Server) *Server {
	t.Helper()
	hs := h("")
	t.Cleanup(hs.Close)
	return Attach(name, "ws"+strings.TrimPrefix(hs.URL, "http")+"/ws", os.Getpid())
}

func startFloor(t testing.TB) *Server {
	return inProcess(t, "floor", func(string) *httptest.Server { return httptest.NewServer(NewFloor().Handler()) })
}

func startRelay(t testing.TB) *Server { return startRelayWith(t, false) }

// startRelayWith starts a relay in this process, with the accounts API in front of it when accounts is set.
func startRelayWith(t testing.TB, accounts bool) *Server {
	t.Helper()
	return startRelayConfig(t, relay.Config{RateFrames: 1e9, RateBurst: 1 << 20}, accounts)
}

// startRelayConfig starts a relay with cfg in this process, with the accounts API in front of it when accounts
// is set.
func startRelayConfig(t testing.TB, cfg relay.Config, withAccounts bool) *Server {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	var acc *accounts.Accounts
	if withAccounts {
		dir, err := keydir.New(keydir.Config{})
		if err != nil {
			t.Fatal(err)
		}
		acc = accounts.New(dir, accounts.Config{}, log)
		cfg.Authenticator = acc
	}
	srv, err := relay.New(cfg, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	h := srv.Handler()
	if acc != nil {
		acc.Attach(srv)
		h = acc.Handler(h)
	}
	hs := httptest.NewServer(h)
	srv.AllowHost(hs.Listener.Addr().String())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Close(ctx)
		hs.Close()
	})
	return Attach("relay", "ws"+strings.TrimPrefix(hs.URL, "http")+"/ws", os.Getpid())
}

// servers returns both kinds of server, each started for the test.
func servers(t *testing.T) []*Server { return []*Server{startFloor(t), startRelay(t)} }

func TestPairsWindow(t *testing.T) {
	for _, s := range servers(t) {
		t.Run(s.Name, func(t *testing.T) {
			r, err := Pairs(context.Background(), s, PairsConfig{Rooms: 4, Frames: 300, Size: 100, Window: 8, Timeout: 30 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			checkPairs(t, r, 4*2*300)
		})
	}
}

func TestPairsRate(t *testing.T) {
	for _, s := range servers(t) {
		t.Run(s.Name, func(t *testing.T) {
			r, err := Pairs(context.Background(), s, PairsConfig{Rooms: 3, Frames: 10, Size: 64, Rate: 100, Timeout: 30 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			checkPairs(t, r, 3*2*10)
			if r.Pairs.Window != 0 || r.Pairs.Rate != 100 {
				t.Errorf("window %d rate %g, want 0 and 100", r.Pairs.Window, r.Pairs.Rate)
			}
			// 10 frames at 100/s take at least 90 ms per member.
			if r.Seconds < 0.09 {
				t.Errorf("a run at 100 frames/s took %.3fs for 10 frames: the rate was not kept", r.Seconds)
			}
		})
	}
}

func checkPairs(t *testing.T, r *Result, want int64) {
	t.Helper()
	p := r.Pairs
	if p == nil || r.Idle != nil || r.Connect != nil {
		t.Fatalf("result %+v: want only pairs", r)
	}
	if r.Errors != 0 || p.Lost != 0 || p.Duplicated != 0 || p.Reordered != 0 {
		t.Errorf("errors %d lost %d duplicated %d reordered %d, want all 0", r.Errors, p.Lost, p.Duplicated, p.Reordered)
	}
	// Nothing was lost, so the server must not say so (docs/protocol.md §4.1: lost names entries the member
	// will never receive).
	if p.LostNotices != 0 {
		t.Errorf("the %s sent %d lost notices although every frame arrived", r.Server, p.LostNotices)
	}
	if p.Delivered != want {
		t.Errorf("delivered %d frames, want %d", p.Delivered, want)
	}
	if !(p.LatP50ms > 0 && p.LatP50ms <= p.LatP90ms && p.LatP90ms <= p.LatP99ms && p.LatP99ms <= p.LatMaxms) {
		t.Errorf("latencies p50 %g p90 %g p99 %g max %g are not positive and ordered", p.LatP50ms, p.LatP90ms, p.LatP99ms, p.LatMaxms)
	}
	checkJSON(t, r, "pairs")
}

func TestIdle(t *testing.T) {
	for _, s := range servers(t) {
		t.Run(s.Name, func(t *testing.T) {
			r, err := Idle(context.Background(), s, IdleConfig{Conns: 41, Hold: 50 * time.Millisecond, Timeout: 30 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if r.Idle.Conns != 42 || r.Idle.Alive != 42 || r.Errors != 0 {
				t.Errorf("conns %d alive %d errors %d, want 42, 42, 0", r.Idle.Conns, r.Idle.Alive, r.Errors)
			}
			checkJSON(t, r, "idle")
		})
	}
}

// TestIdleSpreadsSourceAddresses makes a few connections come from 127.0.0.1 … 127.0.0.7, as 100,000 would.
func TestIdleSpreadsSourceAddresses(t *testing.T) {
	defer func(n int) { portsPerSource = n }(portsPerSource)
	portsPerSource = 10
	s := startRelay(t)
	r, err := Idle(context.Background(), s, IdleConfig{Conns: 60, Hold: time.Millisecond, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if r.Idle.SourceAddrs != 7 || r.Idle.Alive != 60 {
		t.Errorf("%d source addresses, %d of 60 alive; want 7 and 60", r.Idle.SourceAddrs, r.Idle.Alive)
	}
}

func TestConnect(t *testing.T) {
	for _, s := range servers(t) {
		t.Run(s.Name, func(t *testing.T) {
			r, err := Connect(context.Background(), s, ConnectConfig{Conns: 50, Concurrency: 4, Timeout: 30 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if r.Errors != 0 || r.Connect.PerS <= 0 {
				t.Errorf("errors %d conns/s %g, want 0 and > 0", r.Errors, r.Connect.PerS)
			}
			checkJSON(t, r, "connect")
		})
	}
}

// TestConnectAuth opens logged-in sessions, with a ticket per worker and with a fresh proof per connection. A
// run whose handshakes were refused would count errors.
func TestConnectAuth(t *testing.T) {
	s := startRelayWith(t, true)
	for _, each := range []bool{false, true} {
		r, err := Connect(context.Background(), s, ConnectConfig{Conns: 20, Concurrency: 3, Auth: true, ProofEach: each, Timeout: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		if r.Errors != 0 || !r.Connect.Auth || r.Connect.ProofEach != each {
			t.Errorf("errors %d auth %v proof_each %v, want 0, true, %v", r.Errors, r.Connect.Auth, r.Connect.ProofEach, each)
		}
		checkJSON(t, r, "connect")
	}

	// The tickets are real: the relay refuses a handshake whose ticket it did not issue.
	u, err := newAuthUser(context.Background(), s.URL, "ticketcheck")
	if err != nil {
		t.Fatal(err)
	}
	h, err := u.TicketHeader(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	d := newDialer(s.URL, 1)
	for range 2 { // a ticket opens more than one session
		c, err := d.dialHeader(context.Background(), 4, h)
		if err != nil {
			t.Fatalf("the ticket was refused: %v", err)
		}
		c.Close()
	}
	forged := http.Header{}
	forged.Set("Cookie", "session="+u.Session+"; ws_ticket=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	if c, err := d.dialHeader(context.Background(), 4, forged); err == nil {
		c.Close()
		t.Error("a ticket the relay never issued opened a session")
	}
}

// checkJSON checks r's JSON line: exactly one workload object, and every field of it and of the result present
// and, where a zero would mean "not measured", non-zero.
func checkJSON(t *testing.T, r *Result, workload string) {
	t.Helper()
	var buf bytes.Buffer
	if err := r.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	if strings.Count(buf.String(), "\n") != 1 {
		t.Fatalf("JSON %q is not one line", buf.String())
	}
	CheckJSONLine(t, buf.Bytes(), workload)
}

// CheckJSONLine is shared with the command's test through a copy there; see cmd/cleanrelay/bench_test.go.
func CheckJSONLine(t *testing.T, line []byte, workload string) {
	t.Helper()
	if err := ValidateJSONLine(line, workload); err != nil {
		t.Error(err)
	}
}

func TestValidateJSONLineCatchesGaps(t *testing.T) {
	good := `{"workload":"connect","server":"floor","seconds":1,"server_cpu_s":0.5,"tool_cpu_s":0.5,"errors":0,` +
		`"connect":{"conns":1,"concurrency":1,"auth":true,"proof_each":true,"conns_per_s":1,"lat_p50_ms":1,"lat_p90_ms":1,"lat_p99_ms":1,"lat_max_ms":1,"source_addrs":1}}`
	if err := ValidateJSONLine([]byte(good), "connect"); err != nil {
		t.Fatalf("a complete line was refused: %v", err)
	}
	for name, bad := range map[string]string{
		"missing field":   strings.Replace(good, `"lat_p99_ms":1,`, "", 1),
		"zero rate":       strings.Replace(good, `"conns_per_s":1`, `"conns_per_s":0`, 1),
		"null cpu":        strings.Replace(good, `"server_cpu_s":0.5`, `"server_cpu_s":null`, 1),
		"no tool cpu":     strings.Replace(good, `"tool_cpu_s":0.5`, `"tool_cpu_s":0`, 1),
		"wrong workload":  strings.Replace(good, `"workload":"connect"`, `"workload":"idle"`, 1),
		"unknown field":   strings.Replace(good, `"errors":0`, `"errors":0,"extra":1`, 1),
		"bool as number":  strings.Replace(good, `"auth":true`, `"auth":1`, 1),
		"second workload": strings.Replace(good, `"errors":0,`, `"errors":0,"idle":{},`, 1),
	} {
		if ValidateJSONLine([]byte(bad), "connect") == nil {
			t.Errorf("%s: accepted %s", name, bad)
		}
	}
}

// benchmarkPairs forwards b.N frames through s: 50 rooms of two, 1 KiB frames, window 32. Profile the relay's
// part with: go test -run '^$' -bench PairsRelay -cpuprofile cpu.prof ./relay/bench (the tool's own work is in
// the same profile, under package client and this package).
func benchmarkPairs(b *testing.B, s *Server) {
	const rooms = 50
	frames := max(b.N/(2*rooms), 1)
	b.ReportAllocs()
	b.SetBytes(1024)
	b.ResetTimer()
	r, err := Pairs(context.Background(), s, PairsConfig{Rooms: rooms, Frames: frames, Size: 1024, Window: 32, Timeout: 5 * time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	if p := r.Pairs; r.Errors != 0 || p.Lost != 0 || p.Duplicated != 0 || p.Reordered != 0 {
		b.Fatalf("errors %d lost %d duplicated %d reordered %d", r.Errors, p.Lost, p.Duplicated, p.Reordered)
	}
	b.ReportMetric(r.Pairs.FramesPerS, "frames/s")
	b.ReportMetric(r.Pairs.LatP99ms, "p99-ms")
}

func BenchmarkPairsRelay(b *testing.B) { benchmarkPairs(b, startRelay(b)) }
func BenchmarkPairsFloor(b *testing.B) { benchmarkPairs(b, startFloor(b)) }

// BenchmarkConnectAuth opens b.N logged-in sessions on an in-process relay with accounts (RS256 tokens, the
// serve default), 8 at a time; profile it with -cpuprofile to see what a logged-in connection costs.
func BenchmarkConnectAuth(b *testing.B) {
	s := startRelayWith(b, true)
	b.ReportAllocs()
	b.ResetTimer()
	r, err := Connect(context.Background(), s, ConnectConfig{Conns: b.N, Concurrency: 8, Auth: true, Timeout: 5 * time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	if r.Errors != 0 {
		b.Fatalf("%d errors", r.Errors)
	}
	b.ReportMetric(r.Connect.PerS, "conns/s")
}

// TestSoak: a shrunk soak against a relay with its default limits and a small room table: the honest rooms
// lose nothing while every flood runs, and a new user can create a room at every sample.
func TestSoak(t *testing.T) {
	s := startRelayConfig(t, relay.Config{MaxRooms: 40, MaxConns: 800}, true)
	var floods []Flood
	for _, name := range FloodNames() {
		floods = append(floods, Floods[name])
	}
	r, err := Soak(context.Background(), s, SoakConfig{Idle: 10, Rooms: 4, Rate: 20, Size: 64, Duration: 3 * time.Second,
		Sample: 500 * time.Millisecond, Floods: floods, Accounts: true, Timeout: 5 * time.Minute}) // a bound on the whole run: setup (bcrypt under -race) took over a minute on a loaded 2-core machine
	if err != nil {
		t.Fatal(err)
	}
	checkJSON(t, r, "soak")
	k := r.Soak
	t.Logf("%+v", *k)
	if k.Lost != 0 || k.Duplicated != 0 || k.Reordered != 0 || k.LostNotices != 0 || r.Errors != 0 {
		t.Fatalf("honest rooms: lost %d, duplicated %d, reordered %d, lost notices %d, errors %d", k.Lost, k.Duplicated, k.Reordered, k.LostNotices, r.Errors)
	}
	if k.CreateProbes == 0 || k.CreateFailed != 0 || k.FloodOps == 0 {
		t.Fatalf("%d of %d creates failed, %d flood operations", k.CreateFailed, k.CreateProbes, k.FloodOps)
	}
	for _, f := range strings.Fields(k.FloodOpsBy) {
		if strings.HasSuffix(f, ":0") {
			t.Errorf("flood %s did nothing", f)
		}
	}
	if k.AccountProbes == 0 || k.AccountFailed != 0 {
		t.Fatalf("%d of %d new users failed to register, log in and publish a key", k.AccountFailed, k.AccountProbes)
	}
}
