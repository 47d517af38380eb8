// Package relaytest holds the test helpers shared by the tests of the relay and of the packages built on it.
package relaytest

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cleanrelay/cleanrelay/relay/client"
)

// Ctx10s returns a context that ends after 10 s or with the test.
func Ctx10s(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// MustCreate creates a room for max members on c.
func MustCreate(t testing.TB, c *client.Conn, max int) *client.Room {
	t.Helper()
	r, err := c.Create(Ctx10s(t), max)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	return r
}

// MustJoin joins a room on c.
func MustJoin(t testing.TB, c *client.Conn, room, capability string) *client.Room {
	t.Helper()
	r, err := c.Join(Ctx10s(t), room, capability)
	if err != nil {
		t.Fatalf("join: %v", err)
	}
	return r
}

// NextEvent returns the next event of c, failing the test after 10 s.
func NextEvent(t testing.TB, c *client.Conn) client.Event {
	t.Helper()
	select {
	case ev, ok := <-c.Events():
		if !ok {
			t.Fatalf("connection ended while waiting for an event: %v", c.Err())
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatalf("no event within 10s")
	}
	panic("unreachable")
}

// NextFrame skips presence events and returns the next frame.
func NextFrame(t testing.TB, c *client.Conn) client.Event {
	t.Helper()
	for {
		ev := NextEvent(t, c)
		switch ev.Kind {
		case client.KindFrame:
			return ev
		case client.KindPresence:
			continue
		default:
			t.Fatalf("got %+v while waiting for a frame", ev)
		}
	}
}

// WantError expects err to be a relay error with the given code.
func WantError(t testing.TB, err error, code string) {
	t.Helper()
	var re *client.Error
	if !errors.As(err, &re) || re.Code != code {
		t.Fatalf("got error %v, want relay error %q", err, code)
	}
}

// Eventually polls cond until it holds, failing the test after 10 s. Timers of the relay run in real time
// over real sockets, so this waits for a condition rather than for a fixed time.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// LogCapture is a slog.Handler that keeps every record, for the checks that no log line names a user.
type LogCapture struct {
	T       testing.TB
	mu      sync.Mutex
	records []slog.Record
	text    bytes.Buffer
}

func (l *LogCapture) Enabled(context.Context, slog.Level) bool { return true }
func (l *LogCapture) WithAttrs(as []slog.Attr) slog.Handler    { return &attrCapture{l, as} }
func (l *LogCapture) WithGroup(string) slog.Handler            { return l }

// attrCapture is a LogCapture after log.With: every record it handles carries the attributes given then, so
// that what is logged through a derived logger is checked like the rest. (Groups only qualify names; the
// values, which are what a test looks for, are all kept.)
type attrCapture struct {
	root  *LogCapture
	attrs []slog.Attr
}

func (a *attrCapture) Enabled(context.Context, slog.Level) bool { return true }
func (a *attrCapture) WithGroup(string) slog.Handler            { return a }
func (a *attrCapture) WithAttrs(as []slog.Attr) slog.Handler {
	return &attrCapture{a.root, append(a.attrs[:len(a.attrs):len(a.attrs)], as...)}
}
func (a *attrCapture) Handle(ctx context.Context, r slog.Record) error {
	r = r.Clone()
	r.AddAttrs(a.attrs...)
	return a.root.Handle(ctx, r)
}

func (l *LogCapture) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, r.Clone())
	line := r.Message
	r.Attrs(func(a slog.Attr) bool {
		line += " " + a.String()
		return true
	})
	l.text.WriteString(line + "\n")
	return nil
}

// String returns every record as one line of text each.
func (l *LogCapture) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.text.String()
}

// Records returns the records kept so far.
func (l *LogCapture) Records() []slog.Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.records)
}
