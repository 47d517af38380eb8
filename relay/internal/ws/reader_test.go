package ws

import (
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// clientFrame returns a masked client frame (with a zero mask key, so the payload reads as is).
func clientFrame(b0 byte, payload string) []byte {
	return append([]byte{b0, 0x80 | byte(len(payload)), 0, 0, 0, 0}, payload...)
}

// TestMessageTimeout: a fragmented message whose last frame starts more than MessageTimeout after its first is
// refused as incomplete, and one just within it is read (in a bubble: the clock is synctest's).
func TestMessageTimeout(t *testing.T) {
	for _, tc := range []struct {
		wait time.Duration
		want error
	}{{30 * time.Second, nil}, {30*time.Second + time.Nanosecond, ErrIncomplete}} {
		synctest.Test(t, func(t *testing.T) {
			var held atomic.Int64
			r := NewReader(Limits{MaxMessage: 100, MaxText: 10, MessageTimeout: 30 * time.Second}, &held)
			defer r.Release()
			if ev, _, err := r.Feed(clientFrame(OpBinary, "first")); err != nil || ev.Kind != Fragment {
				t.Fatalf("first fragment: %+v, %v", ev, err)
			}
			time.Sleep(tc.wait)
			ev, _, err := r.Feed(clientFrame(0x80|OpContinuation, " last"))
			if err != tc.want {
				t.Fatalf("after %v: error %v, want %v", tc.wait, err, tc.want)
			}
			if err == nil {
				if ev.Kind != Message || ev.Len != 10 {
					t.Fatalf("after %v: %+v, want the whole message", tc.wait, ev)
				}
				PutPayload(ev.Payload)
			}
		})
	}
}

// TestHeldIsCounted: a message in progress is counted in the memory account, and uncounted when it is handed
// over or released.
func TestHeldIsCounted(t *testing.T) {
	var held atomic.Int64
	r := NewReader(Limits{MaxMessage: 1000, MaxText: 10, MessageTimeout: time.Minute}, &held)
	r.Feed(clientFrame(OpBinary, "part"))
	if held.Load() == 0 {
		t.Fatal("a message in progress is not counted")
	}
	ev, _, err := r.Feed(clientFrame(0x80|OpContinuation, "end"))
	if err != nil || ev.Kind != Message || held.Load() != 0 {
		t.Fatalf("%+v, %v: %d bytes still counted after the message was handed over", ev, err, held.Load())
	}
	PutPayload(ev.Payload)
	r.Feed(clientFrame(OpBinary, "part"))
	r.Release()
	if held.Load() != 0 {
		t.Fatalf("%d bytes counted after release", held.Load())
	}
}
