package relay_test

import (
	"bytes"
	"testing"

	"github.com/cleanrelay/cleanrelay/relay"
)

// TestWriteFrameSizes: the frames the relay writes itself are read by gorilla/websocket's client at every
// length where the header changes (7-bit, 16-bit and 64-bit lengths), over TCP and TLS; and gorilla never
// wrote anything, so no copy of a frame went through its buffers.
func TestWriteFrameSizes(t *testing.T) {
	for name, start := range map[string]func(testing.TB, relay.Config) *testRelay{"tcp": startRelay, "tls": startRelayTLS} {
		t.Run(name, func(t *testing.T) {
			tr := start(t, relay.Config{MaxFrame: 70000})
			a, b, cha, _ := tr.rawPair(t)
			const header = 13 // the delivery header before the payload (docs/protocol.md §3)
			for _, msgLen := range []int{14, 125, 126, 127, 65535, 65536, 65537, 70000 + header} {
				p := bytes.Repeat([]byte{byte(msgLen)}, msgLen-header)
				p[0], p[len(p)-1] = 0xA5, 0x5A
				a.write(sendTo(cha, p))
				if got := b.nextFrame(); !bytes.Equal(got, p) {
					t.Fatalf("a message of %d bytes arrived as %d bytes", msgLen, len(got)+header)
				}
			}
			if n := relay.WriteBufferDraws(tr.srv); n != 0 {
				t.Fatalf("gorilla/websocket drew %d write buffers: something wrote through it", n)
			}
		})
	}
}
