package ws

import (
	"encoding/binary"
	"net"
	"time"
)

// The relay writes its WebSocket frames (RFC 6455 §5.2) itself, as it reads them (reader.go): a room entry is
// formatted once, into a buffer that keeps room for the frame header in front of it, and written from there,
// with no library copying it again through the vector registers (registers.go). Server frames are unmasked,
// and every message is one final frame. gorilla/websocket does the handshake only.

// HeaderRoom is the room kept in front of a message for its frame header: 2 bytes, and 8 more for a length
// above 65535.
const HeaderRoom = 10

// PingFrame is a ping with no payload, the only ping the relay sends. It is not to be modified.
var PingFrame = []byte{0x80 | OpPing, 0}

// FrameMessage writes the header of a final frame of opcode op into the bytes just before the payload
// b[HeaderRoom:], and returns the frame: the end of b from its header on.
func FrameMessage(op byte, b []byte) []byte {
	n := len(b) - HeaderRoom
	h := HeaderRoom
	switch {
	case n <= 125:
		h -= 2
		b[h+1] = byte(n)
	case n <= 0xffff:
		h -= 4
		b[h+1] = 126
		binary.BigEndian.PutUint16(b[h+2:], uint16(n))
	default:
		h -= 10
		b[h+1] = 127
		binary.BigEndian.PutUint64(b[h+2:], uint64(n))
	}
	b[h] = 0x80 | op
	return b[h:]
}

// WriteFrame writes a whole frame to nc, within timeout. After an error the stream may hold part of it, so
// the connection must end.
func WriteFrame(nc net.Conn, frame []byte, timeout time.Duration) error {
	if err := nc.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	_, err := nc.Write(frame)
	return err
}

// WriteMessage frames msg as a message of opcode op in a pooled buffer and writes it to nc within timeout.
// The buffer is zeroed afterwards; msg is the caller's to zero.
func WriteMessage(nc net.Conn, op byte, msg []byte, timeout time.Duration) error {
	b := GetBuf(HeaderRoom + len(msg))
	copyWords(b.B[HeaderRoom:], msg)
	err := WriteFrame(nc, FrameMessage(op, b.B), timeout)
	PutBuf(b)
	return err
}
