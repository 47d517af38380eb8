package relay_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cleanrelay/cleanrelay/relay"
	"github.com/cleanrelay/cleanrelay/relay/client"
)

// scrape returns the metrics of reg in the Prometheus text format, fetched over HTTP as Prometheus would.
func scrape(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	hs := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer hs.Close()
	resp, err := http.Get(hs.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("scrape: %d %v", resp.StatusCode, err)
	}
	return string(b)
}

// metricValue reads one sample, e.g. `cleanrelay_drops_total{reason="slow"}`, from a text scrape.
func metricValue(t *testing.T, text, sample string) float64 {
	t.Helper()
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("sample %s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("no sample %s in scrape:\n%s", sample, text)
	return 0
}

// TestMetricsDuringChat scrapes a relay before, during and after a chat between logged-in users and checks that
// the counters move and that nothing a client sent or is (user name, room id, capability, resume token,
// address) appears anywhere in the scrape.
func TestMetricsDuringChat(t *testing.T) {
	users := []string{"alice-metrics-user", "bob-metrics-user"}
	next := 0
	tr := startRelay(t, relay.Config{Authenticator: relay.AuthenticatorFunc(func(*http.Request) (relay.Identity, error) {
		next++
		return relay.Identity{User: users[(next-1)%2]}, nil
	})})
	reg := prometheus.NewRegistry()
	reg.MustRegister(relay.NewMetrics(tr.srv))
	if problems, err := testutil.CollectAndLint(relay.NewMetrics(tr.srv)); err != nil || len(problems) > 0 {
		t.Fatalf("metrics lint: %v %+v", err, problems)
	}

	before := scrape(t, reg)
	if v := metricValue(t, before, "cleanrelay_frames_forwarded_total"); v != 0 {
		t.Fatalf("frames forwarded before any chat: %v", v)
	}

	a, b, ra, rb := tr.pair(t)
	exchange(t, a, b, ra, rb)
	exchange(t, a, b, ra, rb)
	// A refused handshake by reason: a browser Origin the relay does not serve.
	_, err := client.Dial(ctx10s(t), tr.url, &client.Options{Header: http.Header{"Origin": {"http://evil.example"}}})
	if err == nil {
		t.Fatal("a handshake from a foreign origin was accepted")
	}
	// A frame is counted as forwarded after its write returns, which can be after the receiver has read it.
	eventually(t, "all 4 frames are counted as forwarded", func() bool {
		return metricValue(t, scrape(t, reg), "cleanrelay_frames_forwarded_total") == 4
	})
	during := scrape(t, reg)
	checks := []struct {
		sample string
		want   float64
	}{
		{"cleanrelay_connections", 2},
		{"cleanrelay_connections_total", 2},
		{"cleanrelay_rooms", 1},
		{"cleanrelay_rooms_created_total", 1},
		{"cleanrelay_frames_received_total", 4},
		{"cleanrelay_frames_forwarded_total", 4},
		{`cleanrelay_refused_handshakes_total{reason="origin"}`, 1},
		{`cleanrelay_drops_total{reason="slow"}`, 0},
	}
	for _, c := range checks {
		if got := metricValue(t, during, c.sample); got != c.want {
			t.Errorf("%s = %v during the chat, want %v", c.sample, got, c.want)
		}
	}
	if in := metricValue(t, during, "cleanrelay_received_bytes_total"); in == 0 {
		t.Error("received bytes did not move")
	}

	secrets := append([]string{ra.ID, ra.Cap, ra.Resume, rb.Resume, "127.0.0.1", "evil.example"}, users...)
	for _, s := range secrets {
		if s != "" && strings.Contains(during, s) {
			t.Errorf("the scrape contains %q:\n%s", s, during)
		}
	}
	// Every label is a fixed reason name.
	for _, line := range strings.Split(during, "\n") {
		if strings.HasPrefix(line, "cleanrelay_") && strings.Contains(line, "{") && !strings.Contains(line, `{reason="`) {
			t.Errorf("unexpected label in %q", line)
		}
	}

	a.Close()
	b.Close()
	eventually(t, "connections gauge drops to 0", func() bool {
		return metricValue(t, scrape(t, reg), "cleanrelay_connections") == 0
	})
}

// TestMetricsCoverSnapshot is a tripwire: metrics.go exports each of Snapshot's 22 counters and gauges and its 3 maps by
// hand, so a new field must be added there too.
func TestMetricsCoverSnapshot(t *testing.T) {
	if n := reflect.TypeOf(relay.Snapshot{}).NumField(); n != 25 {
		t.Fatalf("relay.Snapshot has %d fields, metrics.go exports 25: export the new one", n)
	}
}

func TestMetricsDescribeMatchesCollect(t *testing.T) {
	tr := startRelay(t, relay.Config{})
	// A collector whose Describe and Collect disagree fails registration with a pedantic registry.
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(relay.NewMetrics(tr.srv)); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Gather(); err != nil {
		t.Fatalf("gather: %v", err)
	}
	var are prometheus.AlreadyRegisteredError
	if err := reg.Register(relay.NewMetrics(tr.srv)); !errors.As(err, &are) {
		t.Fatalf("registering twice: %v, want AlreadyRegisteredError", err)
	}
}

// BenchmarkMetricsGather measures one scrape's work (Stats snapshot and encoding into metric families). The
// forwarding path pays nothing for metrics: they are read from the counters it keeps anyway.
func BenchmarkMetricsGather(b *testing.B) {
	tr := startRelay(b, relay.Config{})
	reg := prometheus.NewRegistry()
	reg.MustRegister(relay.NewMetrics(tr.srv))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}
