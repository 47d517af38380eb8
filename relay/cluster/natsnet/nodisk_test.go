package natsnet

import (
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

var straceFlag = flag.Bool("strace", false, "with -nats, run the test that traces the nats-servers with strace (.ci/test-clean.sh passes both)")

// TestNoDiskNoLogs runs the three servers under `strace -f` through a session (room-like traffic between servers,
// a SIGKILL of one server and its restart, a clean shutdown) and checks that no server opened a file for writing,
// made, renamed or removed one, or wrote bytes anywhere but to sockets, its stdout/stderr pipe, pipes it made and
// eventfds; and that nothing the servers logged at their default level carries a subject or a payload.
func TestNoDiskNoLogs(t *testing.T) {
	if !*straceFlag {
		t.Skip("needs -nats -strace (.ci/test-clean.sh)")
	}
	c := Start(t, Options{Strace: true})
	const subjectMark, payloadMark = "subjectmark7c1", "payloadmark9e4"
	subject := "cr." + subjectMark
	sub := c.Connect(t, 2)
	pub := c.Connect(t, 0)
	ch := make(chan *nats.Msg, 1000)
	if _, err := sub.ChanSubscribe(subject, ch); err != nil {
		t.Fatal(err)
	}
	// A request and its reply cross the servers too, as control between relay nodes will.
	if _, err := sub.Subscribe(subject+".req", func(m *nats.Msg) { m.Respond([]byte(payloadMark + "-reply")) }); err != nil {
		t.Fatal(err)
	}
	waitRouted(t, pub, subject, ch)
	send := func(n int) {
		t.Helper()
		for i := range n {
			if err := pub.Publish(subject, fmt.Appendf(nil, "%s-%d", payloadMark, i)); err != nil {
				t.Fatal(err)
			}
		}
		for i := range n {
			select {
			case <-ch:
			case <-time.After(20 * time.Second):
				t.Fatalf("message %d of %d did not arrive", i, n)
			}
		}
		if _, err := pub.Request(subject+".req", []byte(payloadMark+"-request"), 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	send(500)
	c.Servers()[1].Kill()
	if err := c.Servers()[1].Restart(); err != nil {
		t.Fatal(err)
	}
	// A subscriber on the restarted server: its routes are back.
	back := c.Connect(t, 1)
	ch2 := make(chan *nats.Msg, 10)
	if _, err := back.ChanSubscribe(subject+".back", ch2); err != nil {
		t.Fatal(err)
	}
	waitRouted(t, pub, subject+".back", ch2)
	send(500)
	sub.Close()
	pub.Close()
	back.Close()
	c.Stop()

	var traces []string
	for _, s := range c.Servers() {
		traces = append(traces, s.Traces()...)
		log := s.Log()
		if !strings.Contains(log, "Server is ready") {
			t.Errorf("%s logged nothing recognisable (the check below would prove nothing):\n%s", s.Name, log)
		}
		for _, mark := range []string{subjectMark, payloadMark} {
			if strings.Contains(log, mark) {
				t.Errorf("%s logged %q:\n%s", s.Name, mark, log)
			}
		}
	}
	if len(traces) != 4 {
		t.Fatalf("traces %v, want 4 (three servers and one restart)", traces)
	}
	c.CheckTraces(t)
}
