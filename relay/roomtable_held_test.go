package relay_test

import (
	"bytes"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/cleanrelay/cleanrelay/relay"
)

// TestRoomTableOutlastsConnections: a client that keeps every connection it may open but two, each holding as
// many rooms as a connection may (rooms nobody else joined, with their creator attached, which nothing evicts),
// cannot fill the default room table: the last two connections still make a room and chat. (Before, the table
// was 10,000 rooms whatever --max-conns and --max-rooms-per-conn allowed, and this test got busy.)
func TestRoomTableOutlastsConnections(t *testing.T) {
	// No keepalive within the test: the flooders' clients answer no ping while they wait for their answers,
	// and under the race detector the test may take longer than the default pong wait.
	cfg := relay.Config{MaxConns: 260, MaxRoomsPerConn: 40, PongWait: 10 * time.Minute}
	tr := startRelay(t, cfg)
	flooders := make([]*rawConn, cfg.MaxConns-2)
	for i := range flooders {
		flooders[i] = tr.dialRaw(t)
	}
	// Each flooder sends its creates at once and reads the answers: the race detector makes a round trip
	// per create too slow for 10,320 of them.
	var refused atomic.Int64
	var wg sync.WaitGroup
	for _, rc := range flooders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range cfg.MaxRoomsPerConn {
				if rc.ws.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, `{"t":"create","id":%d}`, i+1)) != nil {
					refused.Add(1)
					return
				}
			}
			rc.ws.SetReadDeadline(time.Now().Add(2 * time.Minute))
			for joined := 0; joined < cfg.MaxRoomsPerConn; {
				_, msg, err := rc.ws.ReadMessage()
				switch {
				case err != nil || bytes.Contains(msg, []byte(`"t":"error"`)):
					if refused.Add(1) == 1 {
						t.Logf("first refusal: %s %v", msg, err)
					}
					return
				case bytes.Contains(msg, []byte(`"t":"joined"`)):
					joined++
				} // anything else (the room's own events) is not an answer
			}
		}()
	}
	wg.Wait()
	s := tr.srv.Stats()
	t.Logf("%d rooms held, %d flooders refused", s.Rooms, refused.Load())
	if refused.Load() > 0 {
		t.Errorf("%d flooders were refused a room: the table filled before the connections ran out", refused.Load())
	}
	a, b, ra, rb := tr.pair(t)
	exchange(t, a, b, ra, rb)
}
