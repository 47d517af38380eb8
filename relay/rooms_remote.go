package relay

import "github.com/cleanrelay/cleanrelay/relay/internal/rooms"

// Rooms returns the relay's rooms, for a cluster node to serve rooms across nodes (rooms.Table.SetRemote,
// JoinHere, ResumeHere). Only packages under relay/ can use what it returns.
func (s *Server) Rooms() *rooms.Table { return s.table }
