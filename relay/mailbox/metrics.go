package mailbox

import "github.com/prometheus/client_golang/prometheus"

// Metrics exports a mailbox's aggregate counters in Prometheus format, read at scrape time. No metric has a
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
	{prometheus.NewDesc("cleanrelay_mailbox_held", "Dialog messages waiting in the mailbox for an absent recipient.", nil, nil), prometheus.GaugeValue, func(s Stats) float64 { return float64(s.Held) }},
	{prometheus.NewDesc("cleanrelay_mailbox_bytes", "Bytes the mailbox holds (ciphertext capacity plus a fixed cost per message), counted against the memory budget.", nil, nil), prometheus.GaugeValue, func(s Stats) float64 { return float64(s.Bytes) }},
	{prometheus.NewDesc("cleanrelay_mailbox_delivered_total", "Mailbox messages acknowledged by their recipient, then overwritten.", nil, nil), prometheus.CounterValue, func(s Stats) float64 { return float64(s.Delivered) }},
	{prometheus.NewDesc("cleanrelay_mailbox_expired_total", "Mailbox messages whose time to live ran out, then overwritten.", nil, nil), prometheus.CounterValue, func(s Stats) float64 { return float64(s.Expired) }},
	{prometheus.NewDesc("cleanrelay_mailbox_wiped_total", "Mailbox messages overwritten unread: a key change, a revoked key, a disabled account, shutdown.", nil, nil), prometheus.CounterValue, func(s Stats) float64 { return float64(s.Wiped) }},
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
