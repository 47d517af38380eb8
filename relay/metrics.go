package relay

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cleanrelay/cleanrelay/relay/internal/rooms"
)

// Metrics exports a relay's aggregate counters in Prometheus format. It reads Server.Stats at scrape time, so
// the hot path pays nothing for it. Every metric is relay-wide: the only label is a fixed reason name, never a
// user, a room or an address.
type Metrics struct {
	srv *Server // static after construction
}

// NewMetrics returns a collector for s. Register it with a prometheus.Registry.
func NewMetrics(s *Server) *Metrics { return &Metrics{srv: s} }

// metricDesc pairs a metric with how to read it from a Snapshot.
type metricDesc struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	value func(*Snapshot) float64
}

func newDesc(name, help string, kind prometheus.ValueType, value func(*Snapshot) float64) metricDesc {
	return metricDesc{prometheus.NewDesc("cleanrelay_"+name, help, nil, nil), kind, value}
}

var (
	counter = prometheus.CounterValue
	gauge   = prometheus.GaugeValue

	scalarMetrics = []metricDesc{
		newDesc("connections", "WebSocket connections open now.", gauge, func(s *Snapshot) float64 { return float64(s.Conns) }),
		newDesc("connections_total", "WebSocket connections accepted since start.", counter, func(s *Snapshot) float64 { return float64(s.ConnsTotal) }),
		newDesc("rooms", "Rooms held now.", gauge, func(s *Snapshot) float64 { return float64(s.Rooms) }),
		newDesc("rooms_created_total", "Rooms created since start.", counter, func(s *Snapshot) float64 { return float64(s.RoomsCreated) }),
		newDesc("rooms_evicted_total", "Rooms with no member attached dropped to make a place for a new room in a full table.", counter, func(s *Snapshot) float64 { return float64(s.RoomsEvicted) }),
		newDesc("frames_received_total", "Frames received from members.", counter, func(s *Snapshot) float64 { return float64(s.FramesIn) }),
		newDesc("frames_forwarded_total", "Frames written to members.", counter, func(s *Snapshot) float64 { return float64(s.FramesOut) }),
		newDesc("received_bytes_total", "Frame payload bytes received from members.", counter, func(s *Snapshot) float64 { return float64(s.BytesIn) }),
		newDesc("forwarded_bytes_total", "Frame payload bytes written to members.", counter, func(s *Snapshot) float64 { return float64(s.BytesOut) }),
		newDesc("resumes_total", "Members that came back within the grace period and resumed.", counter, func(s *Snapshot) float64 { return float64(s.Resumes) }),
		newDesc("members_lost_total", "Lost notices sent: times a member was told that frames it had not read were dropped from the room's log.", counter, func(s *Snapshot) float64 { return float64(s.Lost) }),
		newDesc("members_grace_expired_total", "Members whose reconnect grace ran out, so that their place in the room was given up.", counter, func(s *Snapshot) float64 { return float64(s.GraceExpired) }),
		newDesc("rooms_burned_total", "Rooms a member ended at once.", counter, func(s *Snapshot) float64 { return float64(s.Burned) }),
		newDesc("rate_limited_total", "Times a connection was read more slowly for sending too fast.", counter, func(s *Snapshot) float64 { return float64(s.RateLimited) }),
		newDesc("own_writer_waits_total", "Frames read more slowly because their sender's own connection had not yet been sent what they would push out of the room buffer.", counter, func(s *Snapshot) float64 { return float64(s.OwnWriterWaits) }),
		newDesc("refused_joins_total", "Join requests refused.", counter, func(s *Snapshot) float64 { return float64(s.RefusedJoins) }),
		newDesc("refused_resumes_total", "Resume requests refused.", counter, func(s *Snapshot) float64 { return float64(s.RefusedResumes) }),
		newDesc("refused_rooms_total", "Room creations refused.", counter, func(s *Snapshot) float64 { return float64(s.RefusedRooms) }),
		newDesc("memory_held_bytes", "Bytes counted against the memory budget: buffers held for clients (capacity), 16 KiB per connection, and what Config.ExtraHeld reports.", gauge, func(s *Snapshot) float64 { return float64(s.MemoryHeld) }),
		newDesc("memory_budget_bytes", "The memory budget (--max-memory).", gauge, func(s *Snapshot) float64 { return float64(s.MemoryBudget) }),
		newDesc("memory_shed_total", "Room log entries every attached member had been sent, released early while over the memory budget.", counter, func(s *Snapshot) float64 { return float64(s.MemoryShed) }),
		newDesc("refused_requests_total", "Control messages refused as malformed or unknown.", counter, func(s *Snapshot) float64 { return float64(s.RefusedRequests) }),
	}

	dropsDesc = prometheus.NewDesc("cleanrelay_drops_total",
		"Frames or connections the relay dropped, by reason.", []string{"reason"}, nil)
	refusedHandshakesDesc = prometheus.NewDesc("cleanrelay_refused_handshakes_total",
		"HTTP requests and WebSocket handshakes refused, by reason.", []string{"reason"}, nil)
	memoryRefusalsDesc = prometheus.NewDesc("cleanrelay_memory_refusals_total",
		"Requests and frames refused with over_memory, by what was refused (create, join, frame).", []string{"reason"}, nil)
)

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range scalarMetrics {
		ch <- d.desc
	}
	ch <- dropsDesc
	ch <- refusedHandshakesDesc
	ch <- memoryRefusalsDesc
}

// Collect implements prometheus.Collector. The label values are the fixed reason names of stats.go, so a
// scrape can never carry anything a client sent.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	snap := m.srv.Stats()
	for _, d := range scalarMetrics {
		ch <- prometheus.MustNewConstMetric(d.desc, d.kind, d.value(&snap))
	}
	for _, reason := range dropNames {
		ch <- prometheus.MustNewConstMetric(dropsDesc, counter, float64(snap.Drops[reason]), reason)
	}
	for _, reason := range refusalNames {
		ch <- prometheus.MustNewConstMetric(refusedHandshakesDesc, counter, float64(snap.RefusedHandshakes[reason]), reason)
	}
	for _, what := range rooms.RefusalNames {
		ch <- prometheus.MustNewConstMetric(memoryRefusalsDesc, counter, float64(snap.MemoryRefusals[what]), what)
	}
}
