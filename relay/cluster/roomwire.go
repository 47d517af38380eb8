package cluster

import (
	"encoding/binary"
	"errors"

	"github.com/cleanrelay/cleanrelay/relay/internal/rooms"
	"github.com/cleanrelay/cleanrelay/relay/protocol"
)

// The messages on a node's room subject (rooms.go), sealed like every cluster payload. They carry frames, so
// they are binary rather than JSON: op (1 byte) ‖ link id (16 bytes) ‖ number (8 bytes, big-endian: the
// link's messages in each direction are numbered from 1, so a replayed one is dropped and a lost one is asked
// for again: roomlink.go) ‖ the op's body:
//
//	opFwd    uvarint the frame's number among the member's frames (its In once stamped) ‖ the frame's bytes
//	opAck    uvarint seq
//	opEnd    how (1 byte: rooms.LinkEnd)
//	opEnded  the reason (text)
//	opItems  items, each: kind (1 byte) ‖ uvarint seq ‖ then by kind:
//	         Frame    uvarint from ‖ uvarint length ‖ the bytes
//	         Presence uvarint member ‖ event (1 byte) ‖ timeout (1 byte) ‖ uvarint length ‖ user
//	         Lost     uvarint from ‖ uvarint to
//	         Refused  uvarint length ‖ the error code (the sequencer refused one of the member's frames; its
//	                  seq is that frame's number among the member's frames, not an entry's)
//	opStamped uvarint how many of the member's frames the room's mirror holds (the proxy drops those it kept)
//	opLinkAck (roomlink.go) flags (1 byte); its number is the last one the receiver took
const (
	opFwd     byte = 1
	opAck     byte = 2
	opEnd     byte = 3
	opEnded   byte = 4
	opItems   byte = 5
	opStamped byte = 6
)

// wireHeader is the length of op, link id and number.
const wireHeader = 1 + len(linkID{}) + 8

var errWire = errors.New("malformed rooms message")

// events are the presence events on the wire, by their index.
var events = [...]string{"join", "away", "back", "leave"}

func eventIndex(e string) byte {
	for i, x := range events {
		if x == e {
			return byte(i)
		}
	}
	return 255
}

// appendHeader starts a message; its number is filled in when it is sent (outbox.send, roomlink.go).
func appendHeader(b []byte, op byte, id *linkID) []byte {
	b = append(b, op)
	b = append(b, id[:]...)
	return append(b, 0, 0, 0, 0, 0, 0, 0, 0)
}

// appendItem appends one item; data holds a frame's bytes.
func appendItem(b []byte, it *rooms.Item, data []byte) []byte {
	b = append(b, byte(it.Kind))
	switch it.Kind {
	case rooms.Frame:
		b = binary.AppendUvarint(b, it.Seq)
		b = binary.AppendUvarint(b, uint64(it.From))
		b = binary.AppendUvarint(b, uint64(len(data)))
		b = append(b, data...)
	case rooms.Presence:
		b = binary.AppendUvarint(b, it.Seq)
		b = binary.AppendUvarint(b, uint64(it.From))
		b = append(b, eventIndex(it.Event))
		t := byte(0)
		if it.Timeout {
			t = 1
		}
		b = append(b, t)
		b = binary.AppendUvarint(b, uint64(len(it.User)))
		b = append(b, it.User...)
	case rooms.Lost:
		b = binary.AppendUvarint(b, 0)
		b = binary.AppendUvarint(b, it.LostFrom)
		b = binary.AppendUvarint(b, it.LostTo)
	case rooms.Refused:
		b = binary.AppendUvarint(b, it.Seq)
		b = binary.AppendUvarint(b, uint64(len(it.Code)))
		b = append(b, it.Code...)
	}
	return b
}

// wireReader takes a message apart.
type wireReader struct {
	b   []byte
	err bool
}

func (r *wireReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err, r.b = true, nil
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *wireReader) byte1() byte {
	if len(r.b) < 1 {
		r.err = true
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *wireReader) bytes(n uint64) []byte {
	if uint64(len(r.b)) < n {
		r.err, r.b = true, nil
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

// nextItem reads one item; data aliases the message.
func (r *wireReader) nextItem() (it rooms.Item, data []byte, err error) {
	it.Kind = rooms.ItemKind(r.byte1())
	it.Seq = r.uvarint()
	switch it.Kind {
	case rooms.Frame:
		it.From = uint32(r.uvarint())
		data = r.bytes(r.uvarint())
		it.Len = len(data)
	case rooms.Presence:
		it.From = uint32(r.uvarint())
		e := r.byte1()
		if int(e) >= len(events) {
			return it, nil, errWire
		}
		it.Event = events[e]
		it.Timeout = r.byte1() == 1
		it.User = string(r.bytes(r.uvarint()))
	case rooms.Lost:
		it.LostFrom, it.LostTo = r.uvarint(), r.uvarint()
	case rooms.Refused:
		if it.Code = string(r.bytes(r.uvarint())); it.Code != protocol.CodeOverMemory {
			return it, nil, errWire
		}
	default:
		return it, nil, errWire
	}
	if r.err {
		return it, nil, errWire
	}
	return it, data, nil
}
