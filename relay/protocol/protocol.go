// Package protocol defines the relay's wire protocol v1 (docs/protocol.md) once, for the relay, its Go client,
// the bench tool and the bare forwarder: message types, codes, limits and frame layouts.
package protocol

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
)

// Subprotocol is the WebSocket subprotocol of wire protocol version 1. A handshake that does not offer it is
// refused.
const Subprotocol = "cleanrelay.v1"

// Frame headers (docs/protocol.md §3).
const (
	// SendHeaderLen: client → relay, 1B channel + payload.
	SendHeaderLen = 1
	// DeliverHeaderLen: relay → client, 1B channel + 8B room sequence (big-endian) + 4B sender member id
	// (big-endian) + payload.
	DeliverHeaderLen = 13
)

// Limits the wire shares.
const (
	// MaxControl is the largest text (control) message a client may send.
	MaxControl = 4096
	// MaxFrameLimit is the largest frame payload a relay may be configured to take (Config.MaxFrame).
	MaxFrameLimit = 16 << 20
	// MaxRequestID keeps request ids exactly representable in JavaScript numbers.
	MaxRequestID = 1<<53 - 1
	// MaxSeq is the largest room sequence number a client can hold exactly (a JavaScript safe integer).
	MaxSeq = 1<<53 - 1
)

// Error codes of docs/protocol.md §4.3.
const (
	CodeBadRequest   = "bad_request"
	CodeUnknownType  = "unknown_type"
	CodeBadFrame     = "bad_frame"
	CodeNotMember    = "not_member"
	CodeDenied       = "denied"
	CodeRoomFull     = "room_full"
	CodeTooManyRooms = "too_many_rooms"
	CodeBadToken     = "bad_token"
	CodeBusy         = "busy"
	CodeControlSize  = "control_too_large"
	CodeOverMemory   = "over_memory"
	CodeAlreadyIn    = "already_member"
)

// Reasons a room is closed for a member (the "closed" notice, docs/protocol.md §4.2).
const (
	ReasonBurned   = "burned"
	ReasonExpired  = "expired"
	ReasonShutdown = "shutdown"
	ReasonRevoked  = "revoked"
	ReasonMoved    = "moved"
)

// WebSocket close codes the relay ends a connection with (docs/protocol.md §7), and its reasons.
const (
	CloseNormal          = 1000
	CloseGoingAway       = 1001 // ReasonShutdown
	CloseProtocolError   = 1002
	CloseInvalidPayload  = 1007 // invalid UTF-8 in a text message
	ClosePolicyViolation = 1008 // with a CloseSlow, CloseIdle, CloseRevoked or CloseIncomplete reason
	CloseMessageTooBig   = 1009

	CloseSlow       = "slow"
	CloseIdle       = "idle"
	CloseRevoked    = "revoked"
	CloseIncomplete = "incomplete" // a message kept unfinished for Config.MessageTimeout
)

// Message types: requests (client → relay) and replies and notices (relay → client).
const (
	TypeCreate = "create"
	TypeJoin   = "join"
	TypeResume = "resume"
	TypeAck    = "ack"
	TypeLeave  = "leave"
	TypeBurn   = "burn"

	TypeHello    = "hello"
	TypeJoined   = "joined"
	TypeResumed  = "resumed"
	TypePresence = "presence"
	TypeLost     = "lost"
	TypeClosed   = "closed"
	TypeLeft     = "left"
	TypeError    = "error"
)

// controlNeeds lists, for each relay → client message type, the fields a client relies on.
var controlNeeds = map[string][]string{
	TypeHello:    {"v"},
	TypeJoined:   {"ch", "room", "member", "resume", "seq", "members"},
	TypeResumed:  {"ch", "room", "member", "seq", "in", "members"},
	TypePresence: {"ch", "seq", "member", "event"},
	TypeLost:     {"ch", "from", "to"},
	TypeClosed:   {"ch", "reason"},
	TypeLeft:     {"ch"},
	TypeError:    {"code"},
}

// CheckControl parses a relay → client text message and checks that it has the fields a client relies on for
// its type. It returns the type; an unknown type passes (a newer relay may send more).
func CheckControl(text []byte) (string, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(text, &m); err != nil {
		var v any
		if json.Unmarshal(text, &v) == nil {
			return "", fmt.Errorf("failed to parse control message: not an object with a string \"t\"")
		}
		return "", fmt.Errorf("failed to parse control message: %v", err)
	}
	var t string
	if raw, ok := m["t"]; !ok || json.Unmarshal(raw, &t) != nil {
		return "", fmt.Errorf("failed to parse control message: not an object with a string \"t\"")
	}
	for _, f := range controlNeeds[t] {
		if _, ok := m[f]; !ok {
			return "", fmt.Errorf("failed to parse control message: %s lacks %q", t, f)
		}
	}
	return t, nil
}

// Deliver is a relay → client binary message: a frame of a room.
type Deliver struct {
	Ch      byte
	Seq     uint64
	From    uint32
	Payload []byte // a view into the message
}

// PutDeliverHeader writes the relay → client frame header into b[:DeliverHeaderLen].
func PutDeliverHeader(b []byte, ch byte, seq uint64, from uint32) {
	b[0] = ch
	binary.BigEndian.PutUint64(b[1:9], seq)
	binary.BigEndian.PutUint32(b[9:13], from)
}

// ParseDeliver reads a relay → client binary message. A frame carries at least one payload byte, and its
// sequence number is one a client can hold (MaxSeq).
func ParseDeliver(b []byte) (Deliver, error) {
	if len(b) <= DeliverHeaderLen {
		return Deliver{}, fmt.Errorf("failed to decode frame: %d bytes is too short", len(b))
	}
	d := Deliver{Ch: b[0], Seq: binary.BigEndian.Uint64(b[1:9]), From: binary.BigEndian.Uint32(b[9:13]), Payload: b[DeliverHeaderLen:]}
	if d.Seq > MaxSeq {
		return Deliver{}, fmt.Errorf("failed to decode frame: sequence number out of range")
	}
	return d, nil
}

// AppendSend appends the client → relay binary message that sends payload into channel ch.
func AppendSend(b []byte, ch int, payload []byte) ([]byte, error) {
	if ch < 1 || ch > 255 {
		return b, fmt.Errorf("failed to encode frame: bad channel %d", ch)
	}
	if len(payload) < 1 {
		return b, fmt.Errorf("failed to encode frame: empty payload")
	}
	return append(append(b, byte(ch)), payload...), nil
}
