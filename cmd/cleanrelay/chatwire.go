package main

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// What goes inside frames, byte for byte as the browser client does it (docs/client.md, "What goes on the
// wire"; static/js/proto.mjs and pad.mjs).

// frameBuckets are the only frame payload sizes the browser client sends.
var frameBuckets = []int{1024, 2048, 4096, 8192, 24576, 49152, 65536}

const framePadded = 0x03 // the first byte of a padded frame payload

// padFrame returns 0x03 ‖ u32 n ‖ kind ‖ body ‖ zeros, to the smallest frame bucket that holds it.
func padFrame(kind byte, body []byte) ([]byte, error) {
	n := 1 + len(body)
	for _, b := range frameBuckets {
		if 5+n <= b {
			out := make([]byte, b)
			out[0] = framePadded
			binary.BigEndian.PutUint32(out[1:5], uint32(n))
			out[5] = kind
			copy(out[6:], body)
			return out, nil
		}
	}
	return nil, fmt.Errorf("a %d-byte frame body is over the largest frame size", len(body))
}

// unpadFrame reads a frame payload into its kind and body, refusing a size off the buckets, a length that
// overruns, or padding that is not zero. Payloads from before the padding (a bare kind 0x01 or 0x02) are read.
func unpadFrame(p []byte) (byte, []byte, error) {
	if len(p) < 1 {
		return 0, nil, errors.New("empty frame")
	}
	if p[0] == 0x01 || p[0] == 0x02 {
		return p[0], p[1:], nil
	}
	if p[0] != framePadded {
		return 0, nil, fmt.Errorf("frame with unknown first byte %d", p[0])
	}
	ok := false
	for _, b := range frameBuckets {
		ok = ok || len(p) == b
	}
	if !ok {
		return 0, nil, fmt.Errorf("a %d-byte frame is not a frame size", len(p))
	}
	n := binary.BigEndian.Uint32(p[1:5])
	if n < 1 || uint64(n)+5 > uint64(len(p)) {
		return 0, nil, fmt.Errorf("frame length field %d overruns the %d-byte frame", n, len(p))
	}
	for _, c := range p[5+n:] {
		if c != 0 {
			return 0, nil, errors.New("frame padding is not zero")
		}
	}
	return p[5], p[6 : 5+n], nil
}

// envelope is the JSON header of a plaintext (docs/client.md): msg, file, chunk or fack.
type envelope struct {
	K      string `json:"k"`
	ID     string `json:"id"`
	Text   string `json:"text,omitempty"`
	TS     int64  `json:"ts,omitempty"`
	TTL    int    `json:"ttl"`
	Name   string `json:"name,omitempty"`
	Type   string `json:"type,omitempty"`
	Size   int64  `json:"size,omitempty"`
	Chunks int    `json:"chunks,omitempty"`
	I      int    `json:"i"`
	N      int    `json:"n"`
}

// encodeEnvelope returns u16 header length ‖ JSON header ‖ body. Only the fields of each kind are written.
func encodeEnvelope(h map[string]any, body []byte) ([]byte, error) {
	j, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	if len(j) > 0xffff {
		return nil, errors.New("envelope header too large")
	}
	out := binary.BigEndian.AppendUint16(nil, uint16(len(j)))
	return append(append(out, j...), body...), nil
}

func decodeEnvelope(b []byte) (*envelope, []byte, error) {
	if len(b) < 2 {
		return nil, nil, errors.New("envelope too short")
	}
	n := int(binary.BigEndian.Uint16(b))
	if 2+n > len(b) {
		return nil, nil, errors.New("envelope header overruns")
	}
	var e envelope
	if err := json.Unmarshal(b[2:2+n], &e); err != nil || e.K == "" {
		return nil, nil, errors.New("envelope header is not a JSON object with a kind")
	}
	return &e, b[2+n:], nil
}

// newID returns 9 random bytes in base64url, as the browser names messages and files.
func newID() string {
	b := make([]byte, 9)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// safetyCode is the browser's (static/js/pgp.mjs safetyCode): six groups of five digits from SHA-256 over
// two sorted fingerprints. In anonymous rooms the fingerprints are the hex of the two Ed25519 identities.
func safetyCode(a, b []byte) string {
	x, y := strings.ToUpper(hex.EncodeToString(a)), strings.ToUpper(hex.EncodeToString(b))
	fp := []string{x, y}
	sort.Strings(fp)
	h := sha256.Sum256([]byte("cleanrelay-safety-v1:" + fp[0] + ":" + fp[1]))
	groups := make([]string, 0, 6)
	for i := 0; i < 30; i += 5 {
		var n uint64
		for j := range 5 {
			n = n<<8 | uint64(h[i+j])
		}
		groups = append(groups, fmt.Sprintf("%05d", n%100000))
	}
	return strings.Join(groups, " ")
}
