package natsnet

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// TestRoutesCarryMessages: a message published on n1 reaches a subscriber on n3, in order.
func TestRoutesCarryMessages(t *testing.T) {
	c := Start(t, Options{})
	sub := c.Connect(t, 2)
	pub := c.Connect(t, 0)
	if got := sub.ConnectedServerName(); got != "n3" {
		t.Fatalf("subscriber is on %s, want n3", got)
	}
	if got := pub.ConnectedServerName(); got != "n1" {
		t.Fatalf("publisher is on %s, want n1", got)
	}
	ch := make(chan *nats.Msg, 100)
	if _, err := sub.ChanSubscribe("cr.test.order", ch); err != nil {
		t.Fatal(err)
	}
	waitRouted(t, pub, "cr.test.order", ch)
	for i := range 100 {
		if err := pub.Publish("cr.test.order", fmt.Appendf(nil, "%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 100 {
		select {
		case m := <-ch:
			if string(m.Data) != fmt.Sprint(i) {
				t.Fatalf("message %d: got %q", i, m.Data)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("message %d did not arrive", i)
		}
	}
}

// TestReconnectAfterKill: SIGKILL of the server a subscriber is on; the subscriber reconnects to another server
// by itself and traffic flows again; the killed server restarts on its port and rejoins the routes.
func TestReconnectAfterKill(t *testing.T) {
	c := Start(t, Options{})
	reconnected := make(chan string, 4)
	sub := c.Connect(t, 0, nats.ReconnectHandler(func(nc *nats.Conn) { reconnected <- nc.ConnectedServerName() }))
	pub := c.Connect(t, 1)
	ch := make(chan *nats.Msg, 100)
	if _, err := sub.ChanSubscribe("cr.test.kill", ch); err != nil {
		t.Fatal(err)
	}
	waitRouted(t, pub, "cr.test.kill", ch)

	n1 := c.Servers()[0]
	pid := n1.PID()
	killed := time.Now()
	n1.Kill()
	if n1.PID() != 0 || processRuns(pid) {
		t.Fatalf("n1 (pid %d) still runs after Kill", pid)
	}
	select {
	case name := <-reconnected:
		if name == "n1" || name == "" {
			t.Fatalf("reconnected to %q", name)
		}
		t.Logf("subscriber reconnected to %s %v after SIGKILL of n1", name, time.Since(killed).Round(time.Millisecond))
	case <-time.After(20 * time.Second):
		t.Fatal("subscriber did not reconnect within 20 s")
	}
	// The subscription is replayed on the new server; traffic flows once the routes know it.
	waitRouted(t, pub, "cr.test.kill", ch)

	if err := n1.Restart(); err != nil {
		t.Fatal(err)
	}
	if n1.PID() == 0 || n1.PID() == pid {
		t.Fatalf("restarted n1 has pid %d (was %d)", n1.PID(), pid)
	}
	back, err := nats.Connect(n1.URL, c.NodeAuth(), nats.NoReconnect())
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	waitRouted(t, back, "cr.test.kill", ch)
}

// TestOutsidersRefused: without the node nkey nobody can publish or subscribe, on client ports or route ports.
func TestOutsidersRefused(t *testing.T) {
	c := Start(t, Options{})
	node := c.Connect(t, 2)
	ch := make(chan *nats.Msg, 10)
	if _, err := node.ChanSubscribe("cr.>", ch); err != nil {
		t.Fatal(err)
	}
	node.Flush()

	if nc, err := nats.Connect(c.Servers()[0].URL, nats.NoReconnect()); !errors.Is(err, nats.ErrAuthorization) {
		if nc != nil {
			nc.Close()
		}
		t.Errorf("connect without credentials: got %v, want an authorization violation", err)
	}
	stranger, _ := nkeys.CreateUser()
	strangerPub, _ := stranger.PublicKey()
	if nc, err := nats.Connect(c.Servers()[0].URL, nats.Nkey(strangerPub, stranger.Sign), nats.NoReconnect()); !errors.Is(err, nats.ErrAuthorization) {
		if nc != nil {
			nc.Close()
		}
		t.Errorf("connect with an unknown nkey: got %v, want an authorization violation", err)
	}

	// The raw protocol, as an outsider would speak it: subscribe and publish right after CONNECT.
	attempt := "CONNECT {\"verbose\":false,\"pedantic\":false}\r\nSUB cr.> 1\r\nPUB cr.room 7\r\noutside\r\nPING\r\n"
	reply := rawSession(t, strings.TrimPrefix(c.Servers()[0].URL, "nats://"), attempt)
	if !strings.Contains(reply, "-ERR 'Authorization Violation'") || strings.Contains(reply, "PONG") || strings.Contains(reply, "MSG ") {
		t.Errorf("client port answered an outsider with %q", reply)
	}
	// A route port takes servers only: posing as one without the route password must fail too, or the
	// outsider would receive every routed message.
	routeAttempt := "CONNECT {\"verbose\":false,\"name\":\"intruder\",\"cluster\":\"cleanrelay\"}\r\nRS+ $G cr.>\r\nRMSG $G cr.room 7\r\noutside\r\nPING\r\n"
	reply = rawSession(t, fmt.Sprintf("127.0.0.1:%d", c.Servers()[1].routePort), routeAttempt)
	if !strings.Contains(reply, "Authorization Violation") || strings.Contains(reply, "PONG") || strings.Contains(reply, "RMSG") {
		t.Errorf("route port answered an outsider with %q", reply)
	}

	// The node's subscription saw none of it: the first message to arrive is the node's own sentinel.
	sentinel := c.Connect(t, 0)
	waitRouted(t, sentinel, "cr.sentinel", ch)
	for len(ch) > 0 {
		if m := <-ch; m.Subject != "cr.sentinel" {
			t.Errorf("an outsider's message reached a node: %s %q", m.Subject, m.Data)
		}
	}
}

// TestCleanup: when the test that started a cluster ends, its processes are gone and so is its directory.
func TestCleanup(t *testing.T) {
	Require(t)
	var pids []int
	var dir string
	t.Run("cluster", func(t *testing.T) {
		c := Start(t, Options{})
		dir = c.Dir
		for _, s := range c.Servers() {
			pids = append(pids, s.PID())
		}
	})
	if len(pids) != 3 {
		t.Fatalf("recorded pids %v", pids)
	}
	for _, pid := range pids {
		if processRuns(pid) {
			t.Errorf("nats-server pid %d outlived its test", pid)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the cluster's directory %s is still there (%v)", dir, err)
	}
}

// waitRouted publishes on subject through pub until a message arrives on ch, then drains ch.
func waitRouted(t testing.TB, pub *nats.Conn, subject string, ch <-chan *nats.Msg) {
	t.Helper()
	if err := waitDelivery(pub, subject, ch, time.Now().Add(readyTimeout)); err != nil {
		t.Fatalf("%s: %v", subject, err)
	}
}

// rawSession writes what to addr after reading the server's INFO, and returns everything the server sends until
// it closes the connection (or 5 s pass).
func rawSession(t *testing.T, addr, what string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(conn)
	if info, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(info, "INFO ") {
		t.Fatalf("%s: no INFO (%q, %v)", addr, info, err)
	}
	if _, err := conn.Write([]byte(what)); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for {
		line, err := r.ReadString('\n')
		b.WriteString(line)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Errorf("%s kept the connection open for 5 s after %q", addr, what)
			}
			return b.String()
		}
	}
}

// processRuns reports whether pid is a live nats-server (a reused PID running something else does not count).
func processRuns(pid int) bool {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && strings.Contains(string(cmdline), "nats-server")
}
