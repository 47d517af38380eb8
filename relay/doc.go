// Package relay forwards opaque end-to-end-encrypted frames between the members of in-memory rooms over
// WebSocket, and serves the HTTP side of cleanrelay.
//
// The wire protocol is specified in docs/protocol.md. The relay never parses a frame's payload; it stamps the
// sender and a per-room sequence number itself, announces presence itself, and keeps frames only in bounded
// memory until every member has acknowledged them.
package relay
