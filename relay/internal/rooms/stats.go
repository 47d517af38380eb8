package rooms

import "sync/atomic"

// Stats are the rooms' aggregate counters, read by the relay's Snapshot. Nothing in them is per user or per
// room.
type Stats struct {
	Rooms, RoomsCreated          atomic.Int64
	Proxied                      atomic.Int64  // members here of rooms another node sequences (remote.go)
	RoomsEvicted                 atomic.Uint64 // rooms with nobody attached dropped for a new one
	Resumes, Lost, Burned        atomic.Uint64 // Lost: lost notices handed to writers
	GraceExpired                 atomic.Uint64
	RefusedJoins, RefusedResumes atomic.Uint64
	RefusedRooms                 atomic.Uint64
	// Drops: Slow, an entry pushed out before an attached member was sent it; Evicted, an entry pushed out
	// of a full log before every member acknowledged it.
	Slow, Evicted atomic.Uint64
}
