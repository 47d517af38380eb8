package relay_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/cleanrelay/cleanrelay/relay"
)

// BenchmarkRelayLoopback measures frames through a real relay over real loopback sockets: one member sends
// 1 KiB frames with a window of 64 unacknowledged ones, the other receives and acknowledges.
func BenchmarkRelayLoopback(b *testing.B) {
	tr := startRelay(b, relay.Config{RateFrames: 1e9, RateBurst: 1 << 30})
	a, c, ra, rc := tr.pair(b)
	payload := make([]byte, 1024)
	var received atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		var n int64
		for ev := range c.Events() {
			n++
			received.Store(n)
			if n%32 == 0 {
				c.Ack(rc.Ch, ev.Seq)
			}
			if n == int64(b.N) {
				return
			}
		}
	}()
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		for int64(i)-received.Load() > 64 {
			time.Sleep(20 * time.Microsecond)
		}
		if err := a.Send(ra.Ch, payload); err != nil {
			b.Fatal(err)
		}
	}
	<-done
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "frames/s")
}
