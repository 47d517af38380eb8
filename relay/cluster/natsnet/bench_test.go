package natsnet

import (
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// BenchmarkCrossServerRequest measures a request on n1 answered by a node on n3 and back: two route hops each
// way, what a frame's replication to a mirror on another server costs. It reports p50 and p99.
func BenchmarkCrossServerRequest(b *testing.B) {
	c := Start(b, Options{})
	responder := c.Connect(b, 2)
	requester := c.Connect(b, 0)
	payload := make([]byte, 1024) // a padded chat frame
	if _, err := responder.Subscribe("cr.bench", func(m *nats.Msg) { m.Respond(m.Data[:8]) }); err != nil {
		b.Fatal(err)
	}
	responder.Flush()
	ch := make(chan *nats.Msg, 1)
	probe, _ := responder.ChanSubscribe("cr.bench.probe", ch)
	waitRouted(b, requester, "cr.bench.probe", ch)
	probe.Unsubscribe()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		if _, err := requester.Request("cr.bench", payload, 5*time.Second); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
