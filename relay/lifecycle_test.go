package relay_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/cleanrelay/cleanrelay/relay"
	"github.com/cleanrelay/cleanrelay/relay/client"
)

func TestRoomDroppedAfterGrace(t *testing.T) {
	tr := startRelay(t, relay.Config{Grace: 100 * time.Millisecond})
	a, b, ra, rb := tr.pair(t)
	b.Close()
	if ev := nextEvent(t, a); ev.Event != "away" {
		t.Fatalf("got %+v, want away", ev)
	}
	if ev := nextEvent(t, a); ev.Event != "leave" || ev.Reason != "timeout" || ev.Member != rb.Member {
		t.Fatalf("got %+v, want leave timeout of member %d", ev, rb.Member)
	}
	// The remaining member still has the room; when it goes too, the room is gone after the grace.
	if st := tr.srv.Stats(); st.Rooms != 1 || st.GraceExpired != 1 || st.Lost != 0 {
		t.Fatalf("%d rooms, %d graces expired, %d lost notices; want 1, 1, 0", st.Rooms, st.GraceExpired, st.Lost)
	}
	a.Close()
	eventually(t, "the room is dropped", func() bool { return tr.srv.Stats().Rooms == 0 })
	if n := tr.srv.Stats().GraceExpired; n != 2 {
		t.Fatalf("%d graces expired, want 2", n)
	}
	c := tr.dial(t, nil)
	_, err := c.Join(ctx10s(t), ra.ID, ra.Cap)
	wantError(t, err, "denied")
	_, err = c.Resume(ctx10s(t), ra.Resume, 0)
	wantError(t, err, "bad_token")
}

func TestLastMemberLeavingDropsRoomAtOnce(t *testing.T) {
	tr := startRelay(t, relay.Config{Grace: time.Hour})
	a, b, ra, rb := tr.pair(t)
	if err := b.Leave(ctx10s(t), rb.Ch); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, a); ev.Event != "leave" || ev.Reason != "" {
		t.Fatalf("got %+v, want leave", ev)
	}
	if err := a.Leave(ctx10s(t), ra.Ch); err != nil {
		t.Fatal(err)
	}
	if n := tr.srv.Stats().Rooms; n != 0 {
		t.Fatalf("%d rooms after every member left, want 0", n)
	}
	_, err := b.Join(ctx10s(t), ra.ID, ra.Cap)
	wantError(t, err, "denied")
}

// TestRoomLifetime: a room ends when its lifetime is over, and its members are told expired. Its timing is the
// relay's: on a loaded machine the lifetime may be over before the second member joined (it is then refused) or
// before the creator was told of the join (the closed notice then comes first).
func TestRoomLifetime(t *testing.T) {
	tr := startRelay(t, relay.Config{MaxRoomLifetime: time.Second})
	a, b := tr.dial(t, nil), tr.dial(t, nil)
	ra := mustCreate(t, a, 0)
	members := []*client.Conn{a}
	if _, err := b.Join(ctx10s(t), ra.ID, ra.Cap); err == nil {
		members = append(members, b)
	} else {
		wantError(t, err, "denied")
	}
	for _, c := range members {
		ev := nextEvent(t, c)
		if ev.Kind == client.KindPresence && ev.Event == "join" {
			ev = nextEvent(t, c)
		}
		if ev.Kind != client.KindClosed || ev.Reason != "expired" {
			t.Fatalf("got %+v, want closed expired", ev)
		}
	}
	if n := tr.srv.Stats().Rooms; n != 0 {
		t.Fatalf("%d rooms, want 0", n)
	}
}

// TestShutdownWithConnectedClients: Close tells every member, closes every WebSocket with 1001, and leaves no
// goroutine behind.
func TestShutdownWithConnectedClients(t *testing.T) {
	base := runtime.NumGoroutine()
	srv, err := relay.New(relay.Config{}, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	srv.AllowHost(hs.Listener.Addr().String())
	url := "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws"
	var conns []*client.Conn
	for range 5 {
		a, err := client.Dial(ctx10s(t), url, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, err := client.Dial(ctx10s(t), url, nil)
		if err != nil {
			t.Fatal(err)
		}
		ra := mustCreate(t, a, 0)
		mustJoin(t, b, ra.ID, ra.Cap)
		nextEvent(t, a)
		a.Send(ra.Ch, []byte("unread at shutdown")) // b never takes it: the relay must still stop
		conns = append(conns, a, b)
	}
	hs.Config.Shutdown(context.Background()) // stops the listener; does not wait for WebSockets
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, c := range conns {
		sawClosed := false
		for ev := range c.Events() {
			if ev.Kind == client.KindClosed && ev.Reason == "shutdown" {
				sawClosed = true
			}
		}
		if !sawClosed {
			t.Errorf("a client was not told its room closed for shutdown")
		}
		if !websocket.IsCloseError(c.Err(), websocket.CloseGoingAway) {
			t.Errorf("client ended with %v, want close 1001", c.Err())
		}
	}
	if n := srv.Stats().Conns; n != 0 {
		t.Fatalf("%d connections after Close", n)
	}
	hs.Close()
	checkGoroutines(t, base)
}

// TestLogsCarryNoUserData runs a full session with every log level on and checks that nothing a user could be
// recognised by reaches the log: no room id, capability, token, payload, address, nor any per-room attribute.
func TestLogsCarryNoUserData(t *testing.T) {
	tr := startRelay(t, relay.Config{MaxFrame: 4096}) // the default grace: b's resume below must come within it
	a, b, ra, rb := tr.pair(t)
	secret := make([]byte, 32)
	rand.Read(secret)
	payloads := [][]byte{secret, []byte("attack at dawn")}
	for _, p := range payloads {
		a.Send(ra.Ch, p)
		nextFrame(t, b)
	}
	b.SendRaw(websocket.TextMessage, []byte(`{"t":"join","room":"`+ra.ID+`","cap":"wrong"}`))
	nextEvent(t, b)
	b.Close()
	b2 := tr.dial(t, nil)
	rb2, err := b2.Resume(ctx10s(t), rb.Resume, rb.Seq+2)
	if err != nil {
		t.Fatal(err)
	}
	b2.SendRaw(websocket.BinaryMessage, append([]byte{rb2.Ch}, make([]byte, 5000)...)) // oversized
	a.Burn(ra.Ch)
	for ev := nextEvent(t, a); ev.Kind != client.KindClosed; ev = nextEvent(t, a) {
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tr.srv.Close(ctx)

	logs := tr.logs.String()
	forbidden := map[string]string{
		"room id": ra.ID, "capability": ra.Cap, "resume token a": ra.Resume, "resume token b": rb.Resume,
		"payload (hex)": hex.EncodeToString(secret), "payload (base64)": base64.StdEncoding.EncodeToString(secret),
		"payload (raw)": string(secret), "plaintext": "attack at dawn",
		"address": "127.0.0.1", "port": tr.http.Listener.Addr().String()[strings.LastIndex(tr.http.Listener.Addr().String(), ":"):],
	}
	for what, s := range forbidden {
		if strings.Contains(logs, s) {
			t.Errorf("the log contains the %s", what)
		}
	}
	// Aggregate counters (connections_open, rooms_open) are fine; anything naming one room, member or frame is not.
	badExact := map[string]bool{"room": true, "member": true, "ch": true, "seq": true, "len": true, "ip": true, "from": true}
	badParts := []string{"id", "size", "bytes", "addr", "user", "token", "cap", "key", "remote"}
	for _, r := range tr.logs.Records() {
		r.Attrs(func(a slog.Attr) bool {
			k := strings.ToLower(a.Key)
			bad := badExact[k]
			for _, p := range badParts {
				bad = bad || strings.Contains(k, p)
			}
			if bad {
				t.Errorf("log record %q has a per-user attribute %s", r.Message, a)
			}
			return true
		})
	}
	fmt.Fprint(testWriter{t}, logs)
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("relay log:\n%s", p)
	return len(p), nil
}

// TestPingPong: a peer that answers pings stays; one that has gone silent (reads nothing, so answers no ping)
// is closed after PongWait and its member goes away.
func TestPingPong(t *testing.T) {
	// A PongWait long enough that a pong delayed by a loaded machine does not end the pair's connections.
	const pongWait = time.Second
	tr := startRelay(t, relay.Config{PongWait: pongWait, PingPeriod: 100 * time.Millisecond})
	a, b, ra, rb := tr.pair(t)
	d := websocket.Dialer{Subprotocols: []string{relay.Subprotocol}}
	silent, _, err := d.Dial(tr.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	silent.ReadMessage() // hello
	silent.WriteMessage(websocket.TextMessage, []byte(`{"t":"join","room":"`+ra.ID+`","cap":"`+ra.Cap+`"}`))
	// It never reads again, so its pings go unanswered. (The pair is full; the join is refused, which is fine:
	// the test is about the connection, and an idle one would be closed only after the idle timeout of 2m.)
	eventually(t, "the silent connection is closed", func() bool { return tr.srv.Stats().Conns == 2 })
	// The pair, whose clients answer pings, is still there after several PongWaits.
	time.Sleep(3 * pongWait)
	if n := tr.srv.Stats().Conns; n != 2 {
		t.Fatalf("%d connections, want the pair's 2", n)
	}
	exchange(t, a, b, ra, rb)
}
