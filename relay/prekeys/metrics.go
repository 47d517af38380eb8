package prekeys

import "github.com/prometheus/client_golang/prometheus"

// Metrics exports a store's aggregate counters in Prometheus format, read at scrape time. No metric has a
// label: nothing in them names a user.
type Metrics struct {
	s *Store // static after construction
}

// NewMetrics returns a collector for s. Register it with a prometheus.Registry.
func NewMetrics(s *Store) *Metrics { return &Metrics{s: s} }

var metricDescs = []struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	value func(Stats) float64
}{
	{prometheus.NewDesc("cleanrelay_prekeys_held", "One-time prekeys published and not yet taken.", nil, nil), prometheus.GaugeValue, func(s Stats) float64 { return float64(s.Held) }},
	{prometheus.NewDesc("cleanrelay_prekeys_bytes", "Bytes the prekey store holds, counted against the memory budget.", nil, nil), prometheus.GaugeValue, func(s Stats) float64 { return float64(s.Bytes) }},
	{prometheus.NewDesc("cleanrelay_prekeys_taken_total", "Prekeys handed out to senders (each once).", nil, nil), prometheus.CounterValue, func(s Stats) float64 { return float64(s.Taken) }},
	{prometheus.NewDesc("cleanrelay_prekeys_empty_total", "Takes answered that the user has no prekey left.", nil, nil), prometheus.CounterValue, func(s Stats) float64 { return float64(s.Empty) }},
	{prometheus.NewDesc("cleanrelay_prekeys_refused_total", "Takes refused because the sender held as many of the user's prekeys as it may.", nil, nil), prometheus.CounterValue, func(s Stats) float64 { return float64(s.Refused) }},
	{prometheus.NewDesc("cleanrelay_prekeys_wiped_total", "Prekeys overwritten untaken: replaced, key change, revocation, shutdown.", nil, nil), prometheus.CounterValue, func(s Stats) float64 { return float64(s.Wiped) }},
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range metricDescs {
		ch <- d.desc
	}
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	st := m.s.Stats()
	for _, d := range metricDescs {
		ch <- prometheus.MustNewConstMetric(d.desc, d.kind, d.value(st))
	}
}
