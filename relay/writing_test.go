package relay

import (
	"log/slog"
	"testing"
)

// BenchmarkWritePassManyRooms is one writer pass of a connection that holds 255 rooms with nothing pending in
// any of them: what every wake-up of such a connection costs (a control reply, a ping) besides its write.
func BenchmarkWritePassManyRooms(b *testing.B) {
	srv, err := New(Config{MaxRoomsPerConn: 255}, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	c := socketless(srv)
	for range 255 {
		c.handleControl([]byte(`{"t":"create"}`))
	}
	if got := replies(b, c); len(got) != 255 || got[254]["ch"] != 255.0 {
		b.Fatalf("creating 255 rooms: %v", got[len(got)-1])
	}
	b.ReportAllocs()
	for b.Loop() {
		if wrote, ok := c.writePending(); wrote || !ok {
			b.Fatalf("writePending = %v, %v, want nothing written", wrote, ok)
		}
	}
}
