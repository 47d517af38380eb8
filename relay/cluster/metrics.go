package cluster

import "github.com/prometheus/client_golang/prometheus"

// Metrics exports a node's cluster counters in Prometheus format, read at scrape time. No label names a node,
// a user or a subject.
type Metrics struct{ n *Node }

// NewMetrics returns a collector for n. Register it with a prometheus.Registry.
func NewMetrics(n *Node) *Metrics { return &Metrics{n} }

type clusterMetric struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	value func(*Stats) float64
}

func metric(name, help string, kind prometheus.ValueType, value func(*Stats) float64) clusterMetric {
	return clusterMetric{prometheus.NewDesc("cleanrelay_cluster_"+name, help, nil, nil), kind, value}
}

var clusterMetrics = []clusterMetric{
	metric("nats_connected", "1 while the node is connected to a NATS server, else 0.", prometheus.GaugeValue, func(s *Stats) float64 {
		if s.Connected {
			return 1
		}
		return 0
	}),
	metric("peers", "Other relay nodes heard within the last second.", prometheus.GaugeValue, func(s *Stats) float64 { return float64(s.Peers) }),
	metric("changes_sent_total", "Directory changes made on this node and published to the cluster.", prometheus.CounterValue, func(s *Stats) float64 { return float64(s.ChangesSent) }),
	metric("changes_applied_total", "Directory changes of other nodes that changed something here, snapshots included.", prometheus.CounterValue, func(s *Stats) float64 { return float64(s.ChangesApplied) }),
	metric("refused_total", "Cluster messages that did not open under the cluster key or were malformed, and changes the directory refused.", prometheus.CounterValue, func(s *Stats) float64 { return float64(s.Refused) }),
	metric("resyncs_total", "Snapshots taken from other nodes (a new peer, a gap in its changes, a reconnect).", prometheus.CounterValue, func(s *Stats) float64 { return float64(s.Resyncs) }),
	metric("rooms_sequenced", "Rooms this node sequences (created here).", prometheus.GaugeValue, func(s *Stats) float64 { return float64(s.RoomsHere) }),
	metric("members_served", "Members connected to other nodes of rooms this node sequences.", prometheus.GaugeValue, func(s *Stats) float64 { return float64(s.MembersServed) }),
	metric("members_proxied", "Members connected here of rooms other nodes sequence.", prometheus.GaugeValue, func(s *Stats) float64 { return float64(s.MembersProxied) }),
	metric("room_gaps_total", "Gaps in the numbers of a link's messages found here (core NATS lost messages: a NATS server's death, a slow consumer); each was asked for again.", prometheus.CounterValue, func(s *Stats) float64 { return float64(s.RoomGaps) }),
	metric("room_duplicates_total", "Rooms messages that changed nothing here: taken before (sent again) or confirming nothing new; a replay by someone with the nkey counts here too.", prometheus.CounterValue, func(s *Stats) float64 { return float64(s.RoomDuplicates) }),
	metric("room_resent_total", "Rooms messages this node sent again because a receiver asked or confirmed nothing for 500 ms.", prometheus.CounterValue, func(s *Stats) float64 { return float64(s.RoomResent) }),
	metric("room_dropped_total", "Rooms messages for no membership known here (it ended meanwhile), and frames of members on other nodes whose membership ended here before the frame was taken.", prometheus.CounterValue, func(s *Stats) float64 { return float64(s.RoomDropped) }),
	metric("rooms_mirrored", "Rooms other nodes sequence that this node holds a copy of, to take over if their node dies.", prometheus.GaugeValue, func(s *Stats) float64 { return float64(s.RoomsMirrored) }),
	metric("mirror_bytes", "Bytes of frames the copies of rooms mirrored here hold (counted in the memory budget).", prometheus.GaugeValue, func(s *Stats) float64 { return float64(s.MirrorBytes) }),
	metric("mirror_lag_seconds", "The last copy of new entries of a room sequenced here, from the request until its mirror held them (members wait this long).", prometheus.GaugeValue, func(s *Stats) float64 { return s.MirrorLag }),
	metric("takeovers_declined_total", "Copies of a dead sequencer's rooms this node did not take over: another node held a later copy (the room's mirror had moved there).", prometheus.CounterValue, func(s *Stats) float64 { return float64(s.Declined) }),
	metric("takeovers_total", "Rooms this node took over from their sequencer when it was no longer heard.", prometheus.CounterValue, func(s *Stats) float64 { return float64(s.Takeovers) }),
	metric("relinks_total", "Members here whose room's sequencer died and who were linked to the room's new sequencer.", prometheus.CounterValue, func(s *Stats) float64 { return float64(s.Relinks) }),
	metric("rooms_yielded_total", "Rooms sequenced here that ended here because another node took them over (the fence: this node was cut off from NATS, or unheard by the others); their members here were made to resume.", prometheus.CounterValue, func(s *Stats) float64 { return float64(s.Yielded) }),
	metric("busy_total", "Joins and resumes answered busy: the cluster could not tell yet whether it holds the room or the place (this node off NATS or not yet steady, a peer that did not answer, a room not taken over yet); the client asks again.", prometheus.CounterValue, func(s *Stats) float64 { return float64(s.Busy) }),
	metric("replication_lag_seconds", "From the making of the last change applied here, on its node, to its application here.", prometheus.GaugeValue, func(s *Stats) float64 { return s.LagSeconds }),
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range clusterMetrics {
		ch <- d.desc
	}
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	s := m.n.Stats()
	for _, d := range clusterMetrics {
		ch <- prometheus.MustNewConstMetric(d.desc, d.kind, d.value(&s))
	}
}

// Stats are the node's cluster counters, safe to show an operator.
type Stats struct {
	Connected      bool
	Peers          int     // nodes heard within PeerTimeout
	ChangesSent    uint64  // changes made here and published
	ChangesApplied uint64  // changes from other nodes that changed something here (snapshots included)
	Refused        uint64  // messages that did not open, were malformed, or changes the directory refused
	Resyncs        uint64  // snapshots taken (a new peer, a gap, a reconnect)
	LagSeconds     float64 // from a change's making on its node to its application here, for the last one
	RoomsHere      int64   // rooms this node sequences
	MembersServed  int     // members on other nodes of rooms this node sequences
	MembersProxied int     // members on this node of rooms other nodes sequence
	RoomGaps       uint64  // gaps in a link's numbers found here (core NATS lost messages), each asked for again
	RoomDropped    uint64  // rooms messages for no membership known here
	RoomResent     uint64  // rooms messages sent again (a receiver found a gap, or confirmed nothing for a while)
	RoomDuplicates uint64  // rooms messages that changed nothing: taken before (sent again, or replayed)
	RoomsMirrored  int     // rooms other nodes sequence that this node holds a copy of (mirror.go)
	MirrorBytes    int64   // frame bytes those copies hold
	MirrorLag      float64 // seconds: the last copy request of a room sequenced here, until its mirror held it
	Takeovers      uint64  // rooms this node took over from a dead sequencer
	Declined       uint64  // copies of a dead sequencer's rooms not taken over here: another node held a later one
	Relinks        uint64  // members here whose proxy found their room's new sequencer after a takeover
	Yielded        uint64  // rooms sequenced here that ended here because another node took them over (fence.go)
	Busy           uint64  // joins and resumes answered busy (rooms_find.go)
}

// Stats returns the counters.
func (n *Node) Stats() Stats {
	s := Stats{Connected: n.nc.IsConnected(), Peers: len(n.livePeers()), ChangesSent: n.sent.Load(),
		ChangesApplied: n.applied.Load(), Refused: n.refused.Load(), Resyncs: n.resyncs.Load(),
		LagSeconds: float64(n.lagMillis.Load()) / 1000}
	if l := n.rooms.Load(); l != nil {
		s.RoomsHere = l.t.RoomsHere()
		s.MembersServed, s.MembersProxied = l.stats()
		s.RoomGaps, s.RoomDropped, s.RoomResent, s.RoomDuplicates = l.env.gaps.Load(), l.dropped.Load(), l.env.resent.Load(), l.env.dups.Load()
		s.RoomsMirrored, s.MirrorBytes = l.mirrorStats(), l.mirrorBytes.Load()
		s.MirrorLag = float64(l.lagMicros.Load()) / 1e6
		s.Takeovers, s.Relinks, s.Yielded, s.Busy = l.takeovers.Load(), l.relinks.Load(), l.yielded.Load(), l.busy.Load()
		s.Declined = l.declined.Load()
	}
	return s
}
