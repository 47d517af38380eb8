package accounts_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cleanrelay/cleanrelay/internal/lowcpu"
	"github.com/cleanrelay/cleanrelay/keydir"
	"github.com/cleanrelay/cleanrelay/relay"
	"github.com/cleanrelay/cleanrelay/relay/accounts"
	"github.com/cleanrelay/cleanrelay/relay/client"
)

// loginFloodRelay is the accounts API with real bcrypt (cost 10) on a loopback socket, with one account. The
// process reserves scheduler slots for hashing as `cleanrelay serve` does.
func loginFloodRelay(b *testing.B) (base string) {
	hashes := lowcpu.Reserve(runtime.GOMAXPROCS(0))
	dir, err := keydir.New(keydir.Config{TokenAlgorithm: "EdDSA", MaxConcurrentHashes: hashes})
	if err != nil {
		b.Fatal(err)
	}
	acc := accounts.New(dir, accounts.Config{}, slog.New(slog.DiscardHandler))
	srv, err := relay.New(relay.Config{Authenticator: acc}, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	acc.Attach(srv)
	hs := httptest.NewServer(acc.Handler(srv.Handler()))
	srv.AllowHost(hs.Listener.Addr().String())
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Close(ctx)
		hs.Close()
	})
	if _, err := dir.Register(context.Background(), keydir.Registration{Username: "alice", FullName: "Alice", Password: testPassword}); err != nil {
		b.Fatal(err)
	}
	return hs.URL
}

// postLogin posts one login and returns its status (0 if the request failed).
func postLogin(client *http.Client, base, user, pass string) int {
	body, _ := json.Marshal(map[string]string{"username": user, "password": pass})
	res, err := client.Post(base+"/api/login", "application/json", bytes.NewReader(body))
	if err != nil {
		return 0
	}
	res.Body.Close()
	return res.StatusCode
}

// floodLogins starts 64 clients that post wrong passwords for ever-new user names (so no backoff applies) to
// base, each its next as soon as the last is answered, until the returned stop is called.
func floodLogins(base string) (stop func()) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 128}, Timeout: 5 * time.Minute}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for f := range 64 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				postLogin(client, base, fmt.Sprintf("flood%d-%d", f, i), "Wrong-pa55")
			}
		})
	}
	return func() {
		close(done)
		wg.Wait()
	}
}

// BenchmarkFramesUnderLoginFlood measures what a login flood costs relaying: the round trip of a 1 KiB frame
// between the two members of a room (one sends, the other sends it back), one at a time, without and with the
// flood of BenchmarkLoginUnderFlood. Reported: the round trip's median and 99th percentile.
func BenchmarkFramesUnderLoginFlood(b *testing.B) {
	for _, flood := range []bool{false, true} {
		name := "quiet"
		if flood {
			name = "flood"
		}
		b.Run(name, func(b *testing.B) {
			base := loginFloodRelay(b)
			ctx := context.Background()
			wsURL := "ws" + strings.TrimPrefix(base, "http") + "/ws"
			a, err := client.Dial(ctx, wsURL, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer a.Close()
			e, err := client.Dial(ctx, wsURL, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			r, err := a.Create(ctx, 0)
			if err != nil {
				b.Fatal(err)
			}
			er, err := e.Join(ctx, r.ID, r.Cap)
			if err != nil {
				b.Fatal(err)
			}
			go func() { // the echo
				for ev := range e.Events() {
					if ev.Kind == client.KindFrame && e.Send(er.Ch, ev.Payload) != nil {
						return
					}
				}
			}()
			if flood {
				defer floodLogins(base)()
				time.Sleep(500 * time.Millisecond) // let the flood fill the queue
			}
			payload := make([]byte, 1024)
			took := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				if err := a.Send(r.Ch, payload); err != nil {
					b.Fatal(err)
				}
				for ev := range a.Events() {
					if ev.Kind == client.KindFrame {
						break
					}
				}
				took = append(took, time.Since(start))
			}
			b.StopTimer()
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(took[len(took)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}

// BenchmarkLoginUnderFlood measures the answer time of a real login while 64 clients flood the login
// endpoint with wrong passwords for ever-new user names (so no backoff applies), each sending its next
// attempt as soon as the last one is answered. Loopback only; the flood lasts as long as the benchmark.
// Reported: the real login's median and worst answer time, and the share of real logins that succeeded
// (the others were answered busy).
func BenchmarkLoginUnderFlood(b *testing.B) {
	base := loginFloodRelay(b)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 128}, Timeout: 5 * time.Minute}
	stop := floodLogins(base)
	time.Sleep(500 * time.Millisecond) // let the flood fill the queue
	b.ResetTimer()
	var took []time.Duration
	ok := 0
	for range b.N {
		start := time.Now()
		if postLogin(client, base, "alice", testPassword) == http.StatusOK {
			ok++
		}
		took = append(took, time.Since(start))
	}
	b.StopTimer()
	stop()
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Milliseconds()), "p50-ms")
	b.ReportMetric(float64(took[len(took)-1].Milliseconds()), "max-ms")
	b.ReportMetric(100*float64(ok)/float64(b.N), "ok-%")
}

// BenchmarkLoginBurstDrain measures how long 1,500 simultaneous logins (wrong passwords, distinct names)
// take until every one of them is answered, and how many were answered busy.
func BenchmarkLoginBurstDrain(b *testing.B) {
	base := loginFloodRelay(b)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2000}, Timeout: 5 * time.Minute}
	for i := range b.N {
		var wg sync.WaitGroup
		var busy atomic.Int64
		start := time.Now()
		for j := range 1500 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if postLogin(client, base, fmt.Sprintf("burst%d-%d", i, j), "Wrong-pa55") == http.StatusServiceUnavailable {
					busy.Add(1)
				}
			}()
		}
		wg.Wait()
		b.ReportMetric(time.Since(start).Seconds(), "drain-s")
		b.ReportMetric(float64(busy.Load()), "busy")
	}
}
