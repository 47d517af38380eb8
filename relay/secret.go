package relay

import (
	"encoding/base64"
	"encoding/json"

	"github.com/cleanrelay/cleanrelay/relay/internal/rooms"
)

// Room ids, capabilities and resume tokens are held as raw bytes the relay owns and overwrites when they are no
// longer needed, never as Go strings: a string cannot be overwritten, and every conversion or encoding leaves
// one more copy in the heap that the garbage collector frees but does not clear (clean-server contract, promise 3). They become
// base64url text (docs/protocol.md §2) only inside the reply buffer that carries them, which the writer zeroes.

const (
	roomIDLen = rooms.IDLen
	secretLen = rooms.SecretLen
)

// b64 is the text form of every identifier; strict, so that each raw value has exactly one text form.
var b64 = base64.RawURLEncoding.Strict()

type (
	roomID = rooms.RoomID
	secret = rooms.Secret
)

// wireState says what a client sent for an identifier field.
type wireState uint8

const (
	wireAbsent    wireState = iota // the field is missing or null
	wireOK                         // base64url text of the right length, decoded into b
	wireMalformed                  // a string that is not one of the identifiers this relay hands out
	wireWrongType                  // not a string
)

// wireSecret is a room id, capability or resume token a client sent in a control message. It decodes straight
// from the message buffer into raw bytes, so that encoding/json makes no string of it, and is wiped once the
// request has been handled.
type wireSecret struct {
	state wireState
	n     uint8 // raw bytes in b
	b     [secretLen]byte
}

// UnmarshalJSON decodes a JSON string of base64url text. A string that is not base64url of 16 or 32 bytes is
// recorded as malformed, not refused, so that the handler answers it exactly as it answers a wrong value
// (denied, bad_token) and the rest of the request (its id) is still read. Escaped characters never occur in
// base64url text, so a string with a backslash is malformed too.
func (w *wireSecret) UnmarshalJSON(data []byte) error {
	w.wipe()
	switch {
	case string(data) == "null":
		return nil
	case len(data) < 2 || data[0] != '"':
		w.state = wireWrongType
		return nil
	}
	text := data[1 : len(data)-1]
	if len(text) == 0 {
		return nil // "" is a missing field, as it always was: a bad request, not a wrong value
	}
	w.state = wireMalformed
	if len(text) != b64.EncodedLen(roomIDLen) && len(text) != b64.EncodedLen(secretLen) {
		return nil
	}
	n, err := b64.Decode(w.b[:], text)
	if err != nil {
		clear(w.b[:])
		return nil
	}
	w.state, w.n = wireOK, uint8(n)
	return nil
}

// MarshalJSON gives back text that decodes to the same wireSecret; only the fuzz tests' round trip uses it.
func (w wireSecret) MarshalJSON() ([]byte, error) {
	switch w.state {
	case wireOK:
		return json.Marshal(b64.EncodeToString(w.b[:w.n]))
	case wireWrongType:
		return []byte("0"), nil
	case wireMalformed:
		return []byte(`"!"`), nil
	}
	return []byte("null"), nil
}

// present reports whether the client sent the field at all (a wrong one included).
func (w *wireSecret) present() bool { return w.state != wireAbsent }

// roomID returns the room id the client sent, if it has the form of one.
func (w *wireSecret) roomID() (*roomID, bool) {
	if w.state != wireOK || w.n != roomIDLen {
		return nil, false
	}
	return (*roomID)(w.b[:roomIDLen]), true
}

// secret returns the capability or token the client sent, if it has the form of one.
func (w *wireSecret) secret() (*secret, bool) {
	if w.state != wireOK || w.n != secretLen {
		return nil, false
	}
	return (*secret)(&w.b), true
}

// wipe overwrites what the client sent.
func (w *wireSecret) wipe() { *w = wireSecret{} }
