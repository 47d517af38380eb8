// Package snapmetrics exports a snapshot of a store's counters as Prometheus metrics without labels, taken once
// per scrape.
package snapmetrics

import "github.com/prometheus/client_golang/prometheus"

// Metric is one exported value of a snapshot S.
type Metric[S any] struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	value func(S) float64
}

// Gauge is a metric that goes up and down.
func Gauge[S any](name, help string, value func(S) float64) Metric[S] {
	return Metric[S]{prometheus.NewDesc(name, help, nil, nil), prometheus.GaugeValue, value}
}

// Counter is a metric that only goes up.
func Counter[S any](name, help string, value func(S) float64) Metric[S] {
	return Metric[S]{prometheus.NewDesc(name, help, nil, nil), prometheus.CounterValue, value}
}

// Collector takes a snapshot at each scrape and reports its metrics. Register it with a prometheus.Registry.
type Collector[S any] struct {
	snapshot func() S    // static after construction
	metrics  []Metric[S] // static after construction
}

// New returns a collector of metrics over the snapshots snapshot returns.
func New[S any](snapshot func() S, metrics ...Metric[S]) *Collector[S] {
	return &Collector[S]{snapshot: snapshot, metrics: metrics}
}

// Describe implements prometheus.Collector.
func (c *Collector[S]) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c.metrics {
		ch <- m.desc
	}
}

// Collect implements prometheus.Collector.
func (c *Collector[S]) Collect(ch chan<- prometheus.Metric) {
	s := c.snapshot()
	for _, m := range c.metrics {
		ch <- prometheus.MustNewConstMetric(m.desc, m.kind, m.value(s))
	}
}
