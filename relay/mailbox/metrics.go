package mailbox

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cleanrelay/cleanrelay/internal/snapmetrics"
)

// NewMetrics exports a mailbox's aggregate counters in Prometheus format, read at scrape time. No metric has a
// label: nothing in them names a user. Register it with a prometheus.Registry.
func NewMetrics(s *Store) prometheus.Collector {
	return snapmetrics.New(s.Stats,
		snapmetrics.Gauge("cleanrelay_mailbox_held", "Dialog messages waiting in the mailbox for an absent recipient.",
			func(s Stats) float64 { return float64(s.Held) }),
		snapmetrics.Gauge("cleanrelay_mailbox_bytes", "Bytes the mailbox holds (ciphertext capacity plus a fixed cost per message), counted against the memory budget.",
			func(s Stats) float64 { return float64(s.Bytes) }),
		snapmetrics.Counter("cleanrelay_mailbox_delivered_total", "Mailbox messages acknowledged by their recipient, then overwritten.",
			func(s Stats) float64 { return float64(s.Delivered) }),
		snapmetrics.Counter("cleanrelay_mailbox_expired_total", "Mailbox messages whose time to live ran out, then overwritten.",
			func(s Stats) float64 { return float64(s.Expired) }),
		snapmetrics.Counter("cleanrelay_mailbox_wiped_total", "Mailbox messages overwritten unread: a key change, a revoked key, a disabled account, shutdown.",
			func(s Stats) float64 { return float64(s.Wiped) }),
	)
}
