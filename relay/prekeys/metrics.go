package prekeys

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cleanrelay/cleanrelay/internal/snapmetrics"
)

// NewMetrics exports a store's aggregate counters in Prometheus format, read at scrape time. No metric has a
// label: nothing in them names a user. Register it with a prometheus.Registry.
func NewMetrics(s *Store) prometheus.Collector {
	return snapmetrics.New(s.Stats,
		snapmetrics.Gauge("cleanrelay_prekeys_held", "One-time prekeys published and not yet taken.",
			func(s Stats) float64 { return float64(s.Held) }),
		snapmetrics.Gauge("cleanrelay_prekeys_bytes", "Bytes the prekey store holds, counted against the memory budget.",
			func(s Stats) float64 { return float64(s.Bytes) }),
		snapmetrics.Counter("cleanrelay_prekeys_taken_total", "Prekeys handed out to senders (each once).",
			func(s Stats) float64 { return float64(s.Taken) }),
		snapmetrics.Counter("cleanrelay_prekeys_empty_total", "Takes answered that the user has no prekey left.",
			func(s Stats) float64 { return float64(s.Empty) }),
		snapmetrics.Counter("cleanrelay_prekeys_refused_total", "Takes refused because the sender held as many of the user's prekeys as it may.",
			func(s Stats) float64 { return float64(s.Refused) }),
		snapmetrics.Counter("cleanrelay_prekeys_wiped_total", "Prekeys overwritten untaken: replaced, key change, revocation, shutdown.",
			func(s Stats) float64 { return float64(s.Wiped) }),
	)
}
