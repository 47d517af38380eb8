package relay_test

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/cleanrelay/cleanrelay/relay"
)

// These tests drive the relay's own frame reader (relay/internal/ws, fed by relay/reading.go) with hand-made
// client frames over real sockets: frames split anywhere, several in one segment, fragments, control frames,
// silence, and resets.

// rawConn is a client that writes raw WebSocket frames on the socket and reads the relay's messages through
// gorilla (whose reader is independent of the writes).
type rawConn struct {
	t  testing.TB
	ws *websocket.Conn
	nc net.Conn
}

// startRelayTLS starts a relay like startRelay, behind TLS.
func startRelayTLS(t testing.TB, cfg relay.Config) *testRelay {
	t.Helper()
	return startRelayOn(t, cfg, httptest.NewTLSServer)
}

func (tr *testRelay) dialRaw(t testing.TB) *rawConn {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{relay.Subprotocol}, HandshakeTimeout: 10 * time.Second}
	if tr.http.TLS != nil {
		d.TLSClientConfig = tr.http.Client().Transport.(*http.Transport).TLSClientConfig
	}
	ws, resp, err := d.Dial(tr.url, nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	resp.Body.Close()
	t.Cleanup(func() { ws.Close() })
	rc := &rawConn{t: t, ws: ws, nc: ws.NetConn()}
	if typ, msg := rc.read(); typ != websocket.TextMessage || !bytes.Contains(msg, []byte(`"t":"hello"`)) {
		t.Fatalf("first message %q, want hello", msg)
	}
	return rc
}

// frame returns one masked client frame.
func frame(fin bool, op byte, payload []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	out := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		out = append(out, 0x80|byte(n))
	case n <= 0xffff:
		out = append(out, 0x80|126)
		out = binary.BigEndian.AppendUint16(out, uint16(n))
	default:
		out = append(out, 0x80|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	var key [4]byte
	rand.Read(key[:])
	out = append(out, key[:]...)
	for i, c := range payload {
		out = append(out, c^key[i&3])
	}
	return out
}

func text(s string) []byte            { return frame(true, websocket.TextMessage, []byte(s)) }
func binaryFrame(p []byte) []byte     { return frame(true, websocket.BinaryMessage, p) }
func sendTo(ch byte, p []byte) []byte { return binaryFrame(append([]byte{ch}, p...)) }

// write writes b in one system call.
func (rc *rawConn) write(b []byte) {
	rc.t.Helper()
	if _, err := rc.nc.Write(b); err != nil {
		rc.t.Fatalf("write: %v", err)
	}
}

// trickle writes b one byte per system call (each its own TCP segment: Go sets TCP_NODELAY), pausing between.
func (rc *rawConn) trickle(b []byte, pause time.Duration) {
	rc.t.Helper()
	for i := range b {
		rc.write(b[i : i+1])
		time.Sleep(pause)
	}
}

func (rc *rawConn) read() (int, []byte) {
	rc.t.Helper()
	rc.ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	typ, msg, err := rc.ws.ReadMessage()
	if err != nil {
		rc.t.Fatalf("read: %v", err)
	}
	return typ, msg
}

// reply reads the next control message and decodes it.
func (rc *rawConn) reply() map[string]any {
	rc.t.Helper()
	typ, msg := rc.read()
	if typ != websocket.TextMessage {
		rc.t.Fatalf("got a binary message %q, want a control message", msg)
	}
	var m map[string]any
	if err := json.Unmarshal(msg, &m); err != nil {
		rc.t.Fatalf("reply %q: %v", msg, err)
	}
	return m
}

// nextFrame skips control messages and returns the payload of the next frame.
func (rc *rawConn) nextFrame() []byte {
	rc.t.Helper()
	for {
		typ, msg := rc.read()
		if typ == websocket.BinaryMessage {
			if len(msg) < 13 {
				rc.t.Fatalf("frame of %d bytes", len(msg))
			}
			return msg[13:]
		}
	}
}

// closed waits for the relay to close the connection and returns its close code (or -1 if it just hung up).
func (rc *rawConn) closed() int {
	rc.t.Helper()
	rc.ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, _, err := rc.ws.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			rc.t.Fatalf("the relay did not close the connection within 10s")
		}
		return -1
	}
}

// rawPair makes a room of two raw clients; it returns them with their channels.
func (tr *testRelay) rawPair(t testing.TB) (a, b *rawConn, cha, chb byte) {
	t.Helper()
	a, b = tr.dialRaw(t), tr.dialRaw(t)
	a.write(text(`{"t":"create","id":1}`))
	j := a.reply()
	if j["t"] != "joined" {
		t.Fatalf("create: %v", j)
	}
	b.write(text(fmt.Sprintf(`{"t":"join","id":2,"room":%q,"cap":%q}`, j["room"], j["cap"])))
	k := b.reply()
	if k["t"] != "joined" {
		t.Fatalf("join: %v", k)
	}
	return a, b, byte(j["ch"].(float64)), byte(k["ch"].(float64))
}

// TestRead runs every reading scenario on a plain TCP connection (on Linux: read through the poller) and on a
// TLS one (always read by a goroutine of its own).
func TestRead(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     relay.Config
		run     func(*testing.T, *testRelay)
		tcpOnly bool // 2,000 TLS handshakes under -race take long, and the path is the same
	}{
		{"FrameSplitAcrossSegments", relay.Config{}, testReadFrameSplitAcrossSegments, false},
		{"SeveralFramesInOneSegment", relay.Config{}, testReadSeveralFramesInOneSegment, false},
		{"FragmentedWithInterleavedPing", relay.Config{}, testReadFragmentedWithInterleavedPing, false},
		{"PartialFrameThenSilence", relay.Config{PongWait: keepalivePongWait, PingPeriod: 100 * time.Millisecond}, testReadPartialFrameThenSilence, false},
		{"KeepaliveWhileIdle", relay.Config{PongWait: keepalivePongWait, PingPeriod: 100 * time.Millisecond}, testReadKeepaliveWhileIdle, false},
		{"CloseWhileIdle", relay.Config{}, testReadCloseWhileIdle, false},
		{"ClientVanishes", relay.Config{}, testReadClientVanishes, false},
		{"ProtocolErrors", relay.Config{MaxFrame: 1000}, testReadProtocolErrors, false},
		{"LongTextIsRefusedNotFatal", relay.Config{}, testReadLongTextIsRefusedNotFatal, false},
		{"ManyIdleThenActive", relay.Config{MaxConns: 2000, MaxRooms: 1000}, testReadManyIdleThenActive, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Run("tcp", func(t *testing.T) { tc.run(t, startRelay(t, tc.cfg)) })
			if !tc.tcpOnly {
				t.Run("tls", func(t *testing.T) { tc.run(t, startRelayTLS(t, tc.cfg)) })
			}
		})
	}
}

func testReadFrameSplitAcrossSegments(t *testing.T, tr *testRelay) {
	a, b, cha, _ := tr.rawPair(t)
	// A control message and a 300-byte frame (16-bit length), one byte per segment.
	a.reply() // presence join of b
	a.trickle(text(`{"t":"create","id":7}`), time.Millisecond)
	if r := a.reply(); r["t"] != "joined" || r["id"] != float64(7) {
		t.Fatalf("got %v, want joined id 7", r)
	}
	payload := bytes.Repeat([]byte("0123456789"), 30)
	a.trickle(sendTo(cha, payload), time.Millisecond)
	if got := b.nextFrame(); !bytes.Equal(got, payload) {
		t.Fatalf("b got %q, want %q", got, payload)
	}
}

func testReadSeveralFramesInOneSegment(t *testing.T, tr *testRelay) {
	a, b, cha, _ := tr.rawPair(t)
	var seg []byte
	var want [][]byte
	for i := range 20 {
		p := bytes.Repeat([]byte{byte('a' + i)}, 1+i*50) // 7-bit and 16-bit lengths
		want = append(want, p)
		seg = append(seg, sendTo(cha, p)...)
	}
	// And one of the largest size allowed, whose length takes the 64-bit form.
	big := make([]byte, 65536)
	rand.Read(big)
	want = append(want, big)
	seg = append(seg, sendTo(cha, big)...)
	a.write(seg)
	for i, w := range want {
		if got := b.nextFrame(); !bytes.Equal(got, w) {
			t.Fatalf("frame %d: got %d bytes, want %d", i, len(got), len(w))
		}
	}
}

// testReadFragmentedWithInterleavedPing: a message in three fragments with a ping between them is one
// message, and the ping is answered with its payload.
func testReadFragmentedWithInterleavedPing(t *testing.T, tr *testRelay) {
	a, b, cha, _ := tr.rawPair(t)
	pong := make(chan string, 1)
	a.ws.SetPongHandler(func(s string) error { pong <- s; return nil })
	var seg []byte
	seg = append(seg, frame(false, websocket.BinaryMessage, []byte{cha, 'x'})...)
	seg = append(seg, frame(true, websocket.PingMessage, []byte("are you there"))...)
	seg = append(seg, frame(false, 0, []byte("yz"))...)
	seg = append(seg, frame(true, 0, []byte("!"))...)
	a.trickle(seg, 0)
	if got := b.nextFrame(); string(got) != "xyz!" {
		t.Fatalf("b got %q, want xyz!", got)
	}
	go func() { // gorilla calls the pong handler while reading
		for {
			if _, _, err := a.ws.ReadMessage(); err != nil {
				return
			}
		}
	}()
	select {
	case s := <-pong:
		if s != "are you there" {
			t.Fatalf("pong %q", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no pong within 10s")
	}
}

// testReadPartialFrameThenSilence: a client that sends half a frame and then nothing (not even pongs) is
// closed once PongWait has passed, and its connection's resources are released.
func testReadPartialFrameThenSilence(t *testing.T, tr *testRelay) {
	a, b, cha, _ := tr.rawPair(t)
	go func() { // b answers pings, so it stays
		for {
			if _, _, err := b.ws.ReadMessage(); err != nil {
				return
			}
		}
	}()
	f := sendTo(cha, bytes.Repeat([]byte("p"), 1000))
	a.write(f[:500])
	start := time.Now()
	eventually(t, "the silent connection is closed", func() bool { return tr.srv.Stats().Conns == 1 })
	if d := time.Since(start); d < keepalivePongWait*2/3 {
		t.Fatalf("closed after %v, before PongWait", d)
	}
	time.Sleep(keepalivePongWait) // b, answering pings, stays a whole PongWait more
	if n := tr.srv.Stats().Conns; n != 1 {
		t.Fatalf("%d connections, want 1", n)
	}
}

// keepalivePongWait is the PongWait of the keepalive tests: long enough that a pong delayed by a loaded
// machine does not end a connection that answers pings, which the test would take for a keepalive that failed.
const keepalivePongWait = 2 * time.Second

// testReadKeepaliveWhileIdle: a client that answers pings but sends nothing else stays connected for many
// PongWaits: pings are sent and pongs are read although no reader waits on the connection.
func testReadKeepaliveWhileIdle(t *testing.T, tr *testRelay) {
	a, b, cha, _ := tr.rawPair(t)
	pings := make(chan struct{}, 100)
	b.ws.SetPingHandler(func(s string) error {
		pings <- struct{}{}
		return b.ws.WriteControl(websocket.PongMessage, []byte(s), time.Now().Add(time.Second))
	})
	got := make(chan []byte, 1)
	go func() {
		for {
			typ, msg, err := b.ws.ReadMessage()
			if err != nil {
				close(got)
				return
			}
			if typ == websocket.BinaryMessage {
				got <- msg[13:]
			}
		}
	}()
	// a answers pings too, from its own reader.
	go func() {
		for {
			if _, _, err := a.ws.ReadMessage(); err != nil {
				return
			}
		}
	}()
	// Three PongWaits, and at least five pings answered: a reader that never read the pongs would have closed
	// the connection after the first.
	start, n := time.Now(), 0
	for n < 5 || time.Since(start) < 2*keepalivePongWait {
		select {
		case <-pings:
			n++
		case <-time.After(10 * time.Second):
			t.Fatalf("%d pings in %v, then none for 10s", n, time.Since(start))
		}
	}
	a.write(sendTo(cha, []byte("still here")))
	select {
	case p, ok := <-got:
		if !ok || string(p) != "still here" {
			t.Fatalf("b got %q (open %v)", p, ok)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no frame within 10s")
	}
	if n := tr.srv.Stats().Conns; n != 2 {
		t.Fatalf("%d connections, want 2", n)
	}
}

func testReadCloseWhileIdle(t *testing.T, tr *testRelay) {
	a, b, _, _ := tr.rawPair(t)
	a.reply() // presence join of b
	b.write(frame(true, websocket.CloseMessage, websocket.FormatCloseMessage(4001, "bye")))
	if code := b.closed(); code != 4001 {
		t.Fatalf("close answered with %d, want the client's 4001", code)
	}
	if r := a.reply(); r["t"] != "presence" || r["event"] != "away" {
		t.Fatalf("a got %v, want presence away", r)
	}
}

// testReadClientVanishes: a client whose socket is reset (RST, no close frame) while idle becomes away.
func testReadClientVanishes(t *testing.T, tr *testRelay) {
	a, b, _, _ := tr.rawPair(t)
	a.reply() // presence join of b
	nc := b.nc
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	tcp := nc.(*net.TCPConn)
	tcp.SetLinger(0) // close sends RST
	tcp.Close()
	if r := a.reply(); r["t"] != "presence" || r["event"] != "away" {
		t.Fatalf("a got %v, want presence away", r)
	}
	eventually(t, "the reset connection is gone", func() bool { return tr.srv.Stats().Conns == 1 })
}

func testReadProtocolErrors(t *testing.T, tr *testRelay) {
	for _, tc := range []struct {
		name string
		send []byte
		code int
	}{
		{"unmasked", []byte{0x82, 0x02, 1, 2}, websocket.CloseProtocolError},
		{"reserved bits", append([]byte{0xc2}, text("x")[1:]...), websocket.CloseProtocolError},
		{"unknown opcode", frame(true, 0x3, []byte("x")), websocket.CloseProtocolError},
		{"continuation first", frame(true, 0, []byte("x")), websocket.CloseProtocolError},
		{"fragmented ping", frame(false, websocket.PingMessage, nil), websocket.CloseProtocolError},
		{"long ping", frame(true, websocket.PingMessage, make([]byte, 126)), websocket.CloseProtocolError},
		{"new message inside another", append(frame(false, websocket.TextMessage, []byte("{")), text("}")...), websocket.CloseProtocolError},
		{"bad close code", frame(true, websocket.CloseMessage, []byte{0x03, 0xed}), websocket.CloseProtocolError},
		{"oversized in fragments", append(frame(false, websocket.BinaryMessage, make([]byte, 600)), frame(true, 0, make([]byte, 600))...), websocket.CloseMessageTooBig},
		{"oversized header only", binaryFrame(make([]byte, 1002))[:8], websocket.CloseMessageTooBig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tr.dialRaw(t)
			c.write(tc.send)
			if code := c.closed(); code != tc.code {
				t.Fatalf("closed with %d, want %d", code, tc.code)
			}
		})
	}
	eventually(t, "every connection is gone", func() bool { return tr.srv.Stats().Conns == 0 })
}

// testReadLongTextIsRefusedNotFatal: a text message over the control limit gets an error and the connection
// goes on.
func testReadLongTextIsRefusedNotFatal(t *testing.T, tr *testRelay) {
	c := tr.dialRaw(t)
	c.trickle(frame(false, websocket.TextMessage, bytes.Repeat([]byte(" "), 3000)), 0)
	c.write(frame(true, 0, bytes.Repeat([]byte(" "), 3000)))
	if r := c.reply(); r["t"] != "error" || r["code"] != "control_too_large" {
		t.Fatalf("got %v, want error control_too_large", r)
	}
	c.write(text(`{"t":"create","id":3}`))
	if r := c.reply(); r["t"] != "joined" {
		t.Fatalf("got %v, want joined", r)
	}
}

// testReadManyIdleThenActive: 2,000 connections (1,000 rooms) sit idle, then every member sends one frame at
// once and every peer receives it.
func testReadManyIdleThenActive(t *testing.T, tr *testRelay) {
	if testing.Short() {
		t.Skip("2,000 connections; not in -short")
	}
	const rooms = 1000
	type pair struct {
		a, b     *rawConn
		cha, chb byte
	}
	pairs := make([]pair, rooms)
	for i := range pairs {
		a, b, cha, chb := tr.rawPair(t)
		a.reply() // presence join of b
		pairs[i] = pair{a, b, cha, chb}
	}
	time.Sleep(200 * time.Millisecond) // idle: every reader parked
	var wg sync.WaitGroup
	errs := make(chan error, 2*rooms)
	for i, p := range pairs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ma, mb := fmt.Appendf(nil, "a%d", i), fmt.Appendf(nil, "b%d", i)
			p.a.nc.Write(sendTo(p.cha, ma))
			p.b.nc.Write(sendTo(p.chb, mb))
			for _, x := range []struct {
				c    *rawConn
				want []byte
			}{{p.b, ma}, {p.a, mb}} {
				x.c.ws.SetReadDeadline(time.Now().Add(20 * time.Second))
				for {
					typ, msg, err := x.c.ws.ReadMessage()
					if err != nil {
						errs <- fmt.Errorf("room %d: %w", i, err)
						return
					}
					if typ == websocket.BinaryMessage {
						if !bytes.Equal(msg[13:], x.want) {
							errs <- fmt.Errorf("room %d: got %q, want %q", i, msg[13:], x.want)
						}
						break
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := tr.srv.Stats().Conns; n != 2*rooms {
		t.Fatalf("%d connections, want %d", n, 2*rooms)
	}
}
