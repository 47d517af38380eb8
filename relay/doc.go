// Package relay is the WebSocket endpoint of cleanrelay: it accepts connections, reads and writes their
// frames, and hands them to the in-memory rooms of relay/internal/rooms.
//
// The wire protocol is specified in docs/protocol.md and defined in package relay/protocol; the WebSocket
// codec is relay/internal/ws. The relay never parses a frame's payload; it stamps the sender and a per-room
// sequence number itself, announces presence itself, and keeps frames only in bounded memory until every
// member has acknowledged them. docs/architecture.md follows a frame through the files.
package relay
