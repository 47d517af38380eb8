package relay

import (
	"sync/atomic"

	"github.com/cleanrelay/cleanrelay/relay/internal/rooms"
)

// dropReason says why the relay dropped a frame or a connection. Every drop is counted by its reason.
type dropReason int

const (
	dropSlow        dropReason = iota // a connected member fell a buffer behind and missed an entry (protocol §5), or let control replies pile up unread and was disconnected
	dropEvicted                       // an entry left a full room buffer before every member acknowledged it
	dropOversize                      // a message over the size limit closed its connection (1009)
	dropBadFrame                      // a binary message too short to be a frame
	dropNotMember                     // a frame for a channel the connection does not hold
	dropWriteFailed                   // a write failed or missed its deadline; the connection was closed
	dropIdle                          // a connection held no room for the idle timeout
	dropIncomplete                    // a connection kept a message unfinished for the message timeout
	dropOverMemory                    // a frame refused while the relay was over its memory budget
	numDropReasons
)

var dropNames = [numDropReasons]string{
	dropSlow: "slow", dropEvicted: "evicted", dropOversize: "oversize", dropBadFrame: "bad_frame",
	dropNotMember: "not_member", dropWriteFailed: "write_failed", dropIdle: "idle",
	dropIncomplete: "incomplete", dropOverMemory: "over_memory",
}

// Stats are the relay's aggregate counters. Nothing in them is per user or per room.
type Stats struct {
	room                                   rooms.Stats // what the rooms count
	conns, connsTotal                      atomic.Int64
	framesIn, framesOut, bytesIn, bytesOut atomic.Uint64
	rateLimited, ownWriterWaits            atomic.Uint64
	refusedHandshakes                      [numRefusals]atomic.Uint64
	refusedRequests                        atomic.Uint64
	drops                                  [numDropReasons]atomic.Uint64
}

func (s *Stats) drop(r dropReason) { s.drops[r].Add(1) }

// refusal says why a WebSocket handshake was refused.
type refusal int

const (
	refusedSubprotocol refusal = iota
	refusedHost
	refusedOrigin
	refusedCapacity
	refusedAuth
	refusedUpgrade
	numRefusals
)

var refusalNames = [numRefusals]string{
	refusedSubprotocol: "subprotocol", refusedHost: "host", refusedOrigin: "origin",
	refusedCapacity: "capacity", refusedAuth: "auth", refusedUpgrade: "upgrade",
}

// Snapshot is a copy of the counters at one moment, for metrics and tests.
type Snapshot struct {
	Conns, ConnsTotal   int64
	Rooms, RoomsCreated int64
	RoomsEvicted        uint64
	FramesIn, FramesOut uint64
	BytesIn, BytesOut   uint64
	// Lost counts "lost" notices (frames a member had not read were dropped from its room's log);
	// GraceExpired counts members whose reconnect grace ran out.
	Resumes, Lost, Burned        uint64
	GraceExpired                 uint64
	RateLimited                  uint64
	OwnWriterWaits               uint64
	RefusedJoins, RefusedResumes uint64
	RefusedRooms                 uint64
	RefusedRequests              uint64
	// MemoryHeld is what counts against the memory budget now (Config.MaxMemory, MemoryBudget): buffers,
	// the per-connection estimate and Config.ExtraHeld. MemoryShed counts log entries released early under
	// pressure.
	MemoryHeld, MemoryBudget int64
	MemoryShed               uint64
	// Drops and RefusedHandshakes are keyed by reason name, MemoryRefusals by what was refused (create, join,
	// frame).
	Drops             map[string]uint64
	RefusedHandshakes map[string]uint64
	MemoryRefusals    map[string]uint64
}

// Snapshot returns the current counters.
func (s *Stats) Snapshot() Snapshot {
	r := &s.room
	snap := Snapshot{
		Conns: s.conns.Load(), ConnsTotal: s.connsTotal.Load(),
		Rooms: r.Rooms.Load(), RoomsCreated: r.RoomsCreated.Load(), RoomsEvicted: r.RoomsEvicted.Load(),
		FramesIn: s.framesIn.Load(), FramesOut: s.framesOut.Load(),
		BytesIn: s.bytesIn.Load(), BytesOut: s.bytesOut.Load(),
		Resumes: r.Resumes.Load(), Lost: r.Lost.Load(), Burned: r.Burned.Load(),
		GraceExpired: r.GraceExpired.Load(),
		RateLimited:  s.rateLimited.Load(), OwnWriterWaits: s.ownWriterWaits.Load(),
		RefusedJoins: r.RefusedJoins.Load(), RefusedResumes: r.RefusedResumes.Load(),
		RefusedRooms: r.RefusedRooms.Load(), RefusedRequests: s.refusedRequests.Load(),
		Drops: make(map[string]uint64), RefusedHandshakes: make(map[string]uint64),
	}
	for i := range s.drops {
		snap.Drops[dropNames[i]] = s.drops[i].Load()
	}
	snap.Drops[dropNames[dropSlow]] += r.Slow.Load()
	snap.Drops[dropNames[dropEvicted]] += r.Evicted.Load()
	for i := range s.refusedHandshakes {
		snap.RefusedHandshakes[refusalNames[i]] = s.refusedHandshakes[i].Load()
	}
	return snap
}
