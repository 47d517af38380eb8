package ws

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
)

// Limits of the fuzzed reader: small, so that the fuzzer reaches them.
var fuzzLimits = Limits{MaxMessage: 300, MaxText: 40, MessageTimeout: time.Hour}

// fuzzStream turns fuzz bytes into a stream of client frames. Each record starts with a byte choosing the
// opcode (low 3 bits: continuation, text, binary, close, ping, pong, an unknown opcode, or raw bytes), FIN
// (bit 3), a reserved bit (bit 4), no mask (bit 5), and the length encoding of a data frame (bits 6-7:
// shortest, 16-bit, 64-bit); then the payload length, and the payload.
func fuzzStream(data []byte) []byte {
	ops := [...]byte{OpContinuation, OpText, OpBinary, OpClose, OpPing, OpPong, 0x3, 0xff}
	next := func(n int) []byte {
		n = min(n, len(data))
		b := data[:n]
		data = data[n:]
		return b
	}
	var out []byte
	for len(data) >= 2 {
		h, n := data[0], int(data[1])
		data = data[2:]
		op := ops[h&7]
		if op == 0xff {
			out = append(out, next(n&15)...)
			continue
		}
		b0 := op
		if h&8 != 0 {
			b0 |= 0x80
		}
		if h&16 != 0 && n%7 == 0 {
			b0 |= 0x40
		}
		mask := byte(0x80)
		if h&32 != 0 && n%5 == 0 {
			mask = 0
		}
		payload := next(n)
		form := h >> 6
		if op >= OpClose {
			form = 0 // gorilla refuses a control frame with a longer length form; the relay takes it
		}
		switch form {
		case 1:
			out = append(out, b0, mask|126)
			out = binary.BigEndian.AppendUint16(out, uint16(len(payload)))
		case 2:
			out = append(out, b0, mask|127)
			out = binary.BigEndian.AppendUint64(out, uint64(len(payload)))
		default:
			if len(payload) > 125 {
				out = append(out, b0, mask|126)
				out = binary.BigEndian.AppendUint16(out, uint16(len(payload)))
			} else {
				out = append(out, b0, mask|byte(len(payload)))
			}
		}
		key := [4]byte{byte(n), 0x5a, h, 0xa5}
		if mask != 0 {
			out = append(out, key[:]...)
		}
		masked := make([]byte, len(payload))
		maskCopy(masked, payload, key, 0)
		if mask == 0 {
			masked = payload
		}
		out = append(out, masked...)
	}
	return out
}

// fuzzEvent is one thing a reader found, in a form both readers give.
type fuzzEvent struct {
	kind   Kind
	binary bool
	len    int64
	data   string // a message's bytes (of a text message, as many as are kept), a ping's payload
	code   int
}

func (e fuzzEvent) String() string {
	return fmt.Sprintf("{kind %d binary %v len %d code %d data %q}", e.kind, e.binary, e.len, e.code, e.data)
}

// readOurs feeds stream to a Reader that keeps head bytes of a binary message apart (Limits.Head) in the
// chunks cuts gives, until the stream ends, an error or a close.
func readOurs(stream, cuts []byte, head int) (events []fuzzEvent, inHeader bool, err error) {
	var held atomic.Int64
	lim := fuzzLimits
	lim.Head = head
	r := NewReader(lim, &held)
	defer func() {
		inHeader = r.hdrN > 0
		r.Release()
		if held.Load() != 0 {
			panic(fmt.Sprintf("%d bytes still counted after release", held.Load()))
		}
	}()
	for i := 0; len(stream) > 0; i++ {
		n := len(stream)
		if len(cuts) > 0 {
			n = min(n, 1+int(cuts[i%len(cuts)]))
		}
		p := stream[:n]
		stream = stream[n:]
		for {
			ev, used, err := r.Feed(p)
			p = p[used:]
			if err != nil {
				return events, false, err
			}
			switch ev.Kind {
			case None:
			case Fragment:
				continue
			case Message:
				var b []byte
				if ev.Binary {
					if n := ev.Payload.HeadLen(); n != min(head, int(ev.Len)) {
						panic(fmt.Sprintf("a head of %d bytes from a %d-byte message, want %d", n, ev.Len, head))
					}
					for i := range ev.Payload.HeadLen() {
						b = append(b, ev.Payload.Head(i))
					}
					body := make([]byte, ev.Payload.Len())
					ev.Payload.CopyTo(body, 0)
					b = append(b, body...)
				} else {
					b = bytes.Clone(ev.Payload.Text())
				}
				PutPayload(ev.Payload)
				events = append(events, fuzzEvent{kind: Message, binary: ev.Binary, len: ev.Len, data: string(b)})
				continue
			case Ping:
				events = append(events, fuzzEvent{kind: Ping, data: string(ev.Control)})
				continue
			case Pong:
				events = append(events, fuzzEvent{kind: Pong})
				continue
			case Close:
				return append(events, fuzzEvent{kind: Close, code: ev.Code}), false, nil
			}
			if len(p) != 0 {
				panic("Feed returned None with bytes left")
			}
			break
		}
	}
	return events, false, nil
}

// streamConn is a net.Conn that reads a stream and discards what is written.
type streamConn struct {
	net.Conn // nil: any other method panics
	r        io.Reader
}

func (c *streamConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *streamConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *streamConn) Close() error                     { return nil }
func (c *streamConn) SetDeadline(time.Time) error      { return nil }
func (c *streamConn) SetReadDeadline(time.Time) error  { return nil }
func (c *streamConn) SetWriteDeadline(time.Time) error { return nil }
func (c *streamConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *streamConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }

// hijackRecorder is a ResponseWriter whose connection is a streamConn.
type hijackRecorder struct {
	*httptest.ResponseRecorder
	conn *streamConn
}

func (h *hijackRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return h.conn, bufio.NewReadWriter(bufio.NewReader(h.conn), bufio.NewWriter(h.conn)), nil
}

// readGorilla reads stream with gorilla/websocket's server-side reader, as the reference.
func readGorilla(t *testing.T, stream []byte) (events []fuzzEvent, err error) {
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	w := &hijackRecorder{httptest.NewRecorder(), &streamConn{r: bytes.NewReader(stream)}}
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	c, err := up.Upgrade(w, req, nil)
	if err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	c.SetReadLimit(fuzzLimits.MaxMessage)
	c.SetPingHandler(func(s string) error { events = append(events, fuzzEvent{kind: Ping, data: s}); return nil })
	c.SetPongHandler(func(string) error { events = append(events, fuzzEvent{kind: Pong}); return nil })
	c.SetCloseHandler(func(code int, _ string) error {
		events = append(events, fuzzEvent{kind: Close, code: code})
		return nil
	})
	for {
		typ, r, err := c.NextReader()
		if err != nil {
			return events, err
		}
		b, err := io.ReadAll(r)
		if err != nil {
			return events, err
		}
		ev := fuzzEvent{kind: Message, binary: typ == websocket.BinaryMessage, len: int64(len(b)), data: string(b)}
		if !ev.binary && len(b) > fuzzLimits.MaxText {
			ev.data = ev.data[:fuzzLimits.MaxText+1]
		}
		events = append(events, ev)
	}
}

// FuzzReader: the same bytes split at any points give the Reader the same messages, pings, pongs and close,
// and the same verdict, as gorilla/websocket's reader. Two differences are checked apart: gorilla does not
// check text messages for UTF-8, and it takes a one-byte close body for none.
func FuzzReader(f *testing.F) {
	rec := func(h byte, payload string) []byte { return append([]byte{h, byte(len(payload))}, payload...) }
	cat := func(rs ...[]byte) []byte { return bytes.Join(rs, nil) }
	const fin, len16, len64, raw = 8, 64, 128, 7
	f.Add(cat(rec(fin|2, "\x01binary"), rec(fin|1, `{"t":"create"}`)), []byte{0})
	f.Add(cat(rec(1, "frag"), rec(fin|4, "ping"), rec(0, "men"), rec(fin|5, ""), rec(fin, "ted")), []byte{2, 5, 1})
	f.Add(cat(rec(fin|len16|2, "sixteen"), rec(fin|len64|2, "sixty-four"), rec(fin|3, "\x03\xe8bye")), []byte{3})
	f.Add(cat(rec(fin|1, "\xff\xfe"), rec(fin|2, "after")), []byte{})
	f.Add(cat(rec(fin|3, "\x03"), rec(fin|2, "x")), []byte{1})
	f.Add(cat(rec(fin|16|2, "1234567"), rec(fin|32|2, "12345")), []byte{0, 9})
	f.Add(cat(rec(raw, "\x82\x7f\xff\xff\xff\xff\xff\xff\xff\xff"), rec(fin|2, "x")), []byte{4})
	f.Add(cat(rec(2, string(make([]byte, 200))), rec(0, string(make([]byte, 200)))), []byte{77})
	f.Add(cat(rec(fin|6, "op3"), rec(4, "unfinished ping")), []byte{1})
	f.Add(cat(rec(2, "\x05"+string(make([]byte, 99))), rec(fin, string(make([]byte, 200)))), []byte{0}) // grows mid-message
	f.Fuzz(func(t *testing.T, frames, cuts []byte) {
		stream := fuzzStream(frames)
		want, werr := readGorilla(t, stream)
		whole, inHeader, err := readOurs(stream, nil, 0)
		got, _, cerr := readOurs(stream, cuts, 1) // as the relay reads: the channel byte kept apart
		if fmt.Sprint(whole, err) != fmt.Sprint(got, cerr) {
			t.Fatalf("split %v, the reader found\n%v %v\nand whole\n%v %v", cuts, got, cerr, whole, err)
		}
		for _, ev := range got {
			if ev.kind == Message && !ev.binary && ev.len <= int64(fuzzLimits.MaxText) && !utf8.ValidString(ev.data) {
				t.Fatalf("reader passed a text message of invalid UTF-8: %v", ev)
			}
		}
		if errors.Is(werr, io.EOF) || errors.Is(werr, io.ErrUnexpectedEOF) {
			werr = nil // the stream ended: so did ours, with a frame perhaps in progress
		}
		var closeErr *websocket.CloseError
		if errors.As(werr, &closeErr) {
			werr = nil // the close event
		}
		if err == ErrInvalidUTF8 {
			// Up to the refused message, the same; gorilla went on with it.
			if len(want) <= len(got) {
				t.Fatalf("reader refused a text message gorilla did not read: got %v, gorilla %v", got, want)
			}
			m := want[len(got)]
			if m.kind != Message || m.binary || utf8.ValidString(m.data) || m.len > int64(fuzzLimits.MaxText) {
				t.Fatalf("reader refused %v as invalid UTF-8", m)
			}
			want, werr, err = want[:len(got)], nil, nil
		}
		var perr *Error
		if errors.As(err, &perr) && perr.Reason == "close frame with a one-byte payload" &&
			len(want) == len(got)+1 && want[len(got)].kind == Close && want[len(got)].code == CloseNoStatusReceived {
			// RFC 6455 §5.5.1 makes a close body at least two bytes; gorilla takes one byte for none.
			want, werr = want[:len(got)], perr
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("reader found\n%v (%v)\ngorilla\n%v (%v)", got, err, want, werr)
		}
		if err == nil && werr != nil && inHeader {
			werr = nil // the stream ended in a header that gorilla refused from its first bytes
		}
		if (err != nil) != (werr != nil) {
			t.Fatalf("after %v, reader error %v, gorilla error %v", got, err, werr)
		}
	})
}
