package relay

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/cleanrelay/cleanrelay/relay/internal/rooms"
	"github.com/cleanrelay/cleanrelay/relay/protocol"
)

// Subprotocol is the WebSocket subprotocol of wire protocol version 1 (docs/protocol.md). A handshake that does
// not offer it is refused.
const Subprotocol = protocol.Subprotocol

// The wire's frame headers and error codes, as package protocol defines them, under the names this package's
// code uses.
const (
	sendHeaderLen    = protocol.SendHeaderLen
	deliverHeaderLen = protocol.DeliverHeaderLen

	codeBadRequest   = protocol.CodeBadRequest
	codeUnknownType  = protocol.CodeUnknownType
	codeBadFrame     = protocol.CodeBadFrame
	codeNotMember    = protocol.CodeNotMember
	codeDenied       = protocol.CodeDenied
	codeRoomFull     = protocol.CodeRoomFull
	codeTooManyRooms = protocol.CodeTooManyRooms
	codeBadToken     = protocol.CodeBadToken
	codeBusy         = protocol.CodeBusy
	codeControlSize  = protocol.CodeControlSize
	codeOverMemory   = protocol.CodeOverMemory
	codeAlreadyIn    = protocol.CodeAlreadyIn
)

// protoError is an error reply: a code from the table above and a message for people.
type protoError = rooms.Error

func errorf(code, format string, args ...any) *protoError {
	return &protoError{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// request is a client → relay control message. Which fields matter depends on T. Its identifiers are raw
// bytes that wipe overwrites once the request is handled.
type request struct {
	T      string     `json:"t"`
	ID     uint64     `json:"id"`
	Max    int        `json:"max"`
	Room   wireSecret `json:"room,omitzero"`
	Cap    wireSecret `json:"cap,omitzero"`
	Resume wireSecret `json:"resume,omitzero"`
	Last   *uint64    `json:"last"`
	Ch     int        `json:"ch"`
	Seq    uint64     `json:"seq"`
}

// wipe overwrites the identifiers the client sent.
func (r *request) wipe() {
	r.Room.wipe()
	r.Cap.wipe()
	r.Resume.wipe()
}

// maxRequestID keeps ids exactly representable in JavaScript numbers.
const maxRequestID = protocol.MaxRequestID

// parseRequest decodes one control message into r, which must be zero. It checks the shape common to every
// request; the handler of each type checks its own fields. On error, r holds at most the request id. The
// caller wipes r once it is done with it, error or not.
func parseRequest(data []byte, r *request) *protoError {
	if len(data) > maxControl {
		return errorf(codeControlSize, "control message is %d bytes, the limit is %d", len(data), maxControl)
	}
	if len(bytes.TrimSpace(data)) == 0 || bytes.TrimSpace(data)[0] != '{' {
		return errorf(codeBadRequest, "control message must be a JSON object")
	}
	if err := json.Unmarshal(data, r); err != nil {
		var typeErr *json.UnmarshalTypeError
		id := r.ID
		r.wipe()
		*r = request{}
		if errors.As(err, &typeErr) {
			r.ID = id
			return errorf(codeBadRequest, "field %q has the wrong type", typeErr.Field)
		}
		return errorf(codeBadRequest, "control message is not valid JSON")
	}
	if r.ID > maxRequestID {
		r.wipe()
		*r = request{}
		return errorf(codeBadRequest, "id must be below 2^53")
	}
	for _, f := range []struct {
		name string
		w    *wireSecret
	}{{"room", &r.Room}, {"cap", &r.Cap}, {"resume", &r.Resume}} {
		if f.w.state == wireWrongType {
			return errorf(codeBadRequest, "field %q has the wrong type", f.name)
		}
	}
	if r.T == "" {
		return errorf(codeBadRequest, "field \"t\" (the message type) is required")
	}
	return nil
}

// channel checks a request's ch field and returns it as a byte.
func (r *request) channel() (byte, *protoError) {
	if r.Ch < 1 || r.Ch > 255 {
		return 0, errorf(codeBadRequest, "field \"ch\" must be 1..255")
	}
	return byte(r.Ch), nil
}

// jsonObj appends a JSON object one field at a time without reflection, so the writer's hot path does not
// allocate. Values passed to str must not need escaping (identifiers, codes, base64url); use strEsc otherwise.
type jsonObj struct{ b []byte }

func newObj(b []byte, t string) jsonObj {
	b = append(b, `{"t":"`...)
	b = append(b, t...)
	b = append(b, '"')
	return jsonObj{b}
}

func (o jsonObj) key(k string) jsonObj {
	o.b = append(o.b, ',', '"')
	o.b = append(o.b, k...)
	o.b = append(o.b, '"', ':')
	return o
}

func (o jsonObj) num(k string, v uint64) jsonObj {
	o = o.key(k)
	o.b = strconv.AppendUint(o.b, v, 10)
	return o
}

func (o jsonObj) float(k string, v float64) jsonObj {
	o = o.key(k)
	o.b = strconv.AppendFloat(o.b, v, 'f', -1, 64)
	return o
}

// id appends the request id, which is omitted when the client sent none.
func (o jsonObj) id(v uint64) jsonObj {
	if v == 0 {
		return o
	}
	return o.num("id", v)
}

func (o jsonObj) str(k, v string) jsonObj {
	o = o.key(k)
	o.b = append(o.b, '"')
	o.b = append(o.b, v...)
	o.b = append(o.b, '"')
	return o
}

// b64 appends raw as base64url text. A reply that carries secrets is made with room for all of it, so that
// appending never moves it to a larger array (which would leave a copy behind in the old one).
func (o jsonObj) b64(k string, raw []byte) jsonObj {
	o = o.key(k)
	o.b = append(o.b, '"')
	o.b = b64.AppendEncode(o.b, raw)
	o.b = append(o.b, '"')
	return o
}

func (o jsonObj) strEsc(k, v string) jsonObj {
	o = o.key(k)
	q, _ := json.Marshal(v) // a string always marshals
	o.b = append(o.b, q...)
	return o
}

func (o jsonObj) nums(k string, vs []uint32) jsonObj {
	o = o.key(k)
	o.b = append(o.b, '[')
	for i, v := range vs {
		if i > 0 {
			o.b = append(o.b, ',')
		}
		o.b = strconv.AppendUint(o.b, uint64(v), 10)
	}
	o.b = append(o.b, ']')
	return o
}

func (o jsonObj) done() []byte { return append(o.b, '}') }

func appendError(b []byte, id uint64, e *protoError) []byte {
	return newObj(b, "error").id(id).str("code", e.Code).strEsc("msg", e.Msg).done()
}
