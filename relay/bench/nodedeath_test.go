package bench

import (
	"context"
	"encoding/binary"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cleanrelay/cleanrelay/relay/client"
)

// TestNodeDeathMemberChecks feeds one member of a node-death run the frames of its peer: a frame given again under
// its first seq counts as handed out twice, under a new seq as stamped twice; a frame out of order as reordered;
// the room flows again at the first frame its peer sent after the kill, not at one sent before and given late;
// and gaps names what was missing and from when. (The workload itself runs against real nodes in
// cmd/cleanrelay's TestClusterNodeDeath.)
func TestNodeDeathMemberChecks(t *testing.T) {
	const frames = 100
	cfg := NodeDeathConfig{Rate: 10, Size: 32, Before: 2 * time.Second}
	base := time.Now().Add(-5 * time.Second)
	k := &killClock{ch: make(chan struct{}), at: base.Add(cfg.Before)}
	close(k.ch)
	m := &deathMember{onVictim: true, ack: 1 << 30, seen: make([]uint64, frames/64+1), seqs: make([]uint64, frames+1)}
	var delivered atomic.Int64
	var errs tally
	seq := uint64(0)
	give := func(n uint64, sentAt time.Duration, s uint64) {
		p := make([]byte, cfg.Size)
		binary.BigEndian.PutUint64(p[0:8], n)
		binary.BigEndian.PutUint64(p[8:16], uint64(sentAt))
		m.event(client.Event{Kind: client.KindFrame, Seq: s, Payload: p}, cfg, frames, base, k, &delivered, &errs)
	}
	for n := uint64(1); n <= 10; n++ {
		seq++
		give(n, time.Duration(n)*100*time.Millisecond, seq) // frames 1–10, sent before the kill (at 2 s)
	}
	if m.flowing != 0 {
		t.Errorf("flowing %v after frames sent before the kill", m.flowing)
	}
	give(3, 300*time.Millisecond, 3)    // handed out twice
	give(4, 400*time.Millisecond, 40)   // stamped twice
	give(12, 2500*time.Millisecond, 41) // sent after the kill; 11 is missing
	give(11, 2400*time.Millisecond, 42)
	if m.count != 12 || m.dup != 2 || m.dupOtherSeq != 1 || m.reord != 1 || delivered.Load() != 12 || errs.total() != 0 {
		t.Errorf("count %d, dup %d (new seq %d), reordered %d, delivered %d, errors %q", m.count, m.dup, m.dupOtherSeq, m.reord, delivered.Load(), errs.String())
	}
	if m.flowing <= 0 {
		t.Errorf("not flowing after a frame sent after the kill")
	}
	gaps := map[string]*gapNote{}
	m.noteGaps(gaps, 2, 20, cfg) // the peer sent 20: 13–20 missing; room 1 (i/2 odd) is sequenced elsewhere
	var notes []string
	for what, g := range gaps {
		notes = append(notes, g.String(what))
	}
	got := strings.Join(notes, "\n")
	for _, want := range []string{
		"not given (room sequenced elsewhere, sent by the surviving member): 8 frames, 1 members, from the frame sent -0.8 to -0.8 s from the kill",
		"given twice under the same seq (room sequenced elsewhere, sent by the surviving member): 1 frames, 1 members, from the frame sent -1.8",
		"given twice under a new seq (room sequenced elsewhere, sent by the surviving member): 1 frames",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("gaps lack %q:\n%s", want, got)
		}
	}
}

// TestNodeDeathRefusesBadConfig: a run that could not measure a takeover is refused before anything is dialled
// or killed.
func TestNodeDeathRefusesBadConfig(t *testing.T) {
	one := []*Server{Attach("relay", "ws://127.0.0.1:1/ws", 2147483001)}
	two := append(one, Attach("relay", "ws://127.0.0.1:2/ws", 2147483002))
	ok := NodeDeathConfig{Rooms: 2, Rate: 10, Size: 32, Before: time.Second, After: time.Second, Timeout: time.Second}
	for name, c := range map[string]struct {
		nodes []*Server
		kill  int
		cfg   NodeDeathConfig
	}{
		"one node":      {one, 0, ok},
		"kill outside":  {two, 2, ok},
		"one room":      {two, 0, func() NodeDeathConfig { c := ok; c.Rooms = 1; return c }()},
		"no rate":       {two, 0, func() NodeDeathConfig { c := ok; c.Rate = 0; return c }()},
		"nothing after": {two, 0, func() NodeDeathConfig { c := ok; c.After = 0; return c }()},
		"tiny frames":   {two, 0, func() NodeDeathConfig { c := ok; c.Size = 8; return c }()},
	} {
		if _, err := NodeDeath(context.Background(), c.nodes, c.kill, c.cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
