package relay_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/cleanrelay/cleanrelay/relay"
	"github.com/cleanrelay/cleanrelay/relay/client"
)

// TestRoomTableFloodLeavesRoomForOthers: clients that connect, create as many rooms as a connection may,
// and drop, over and over (or do the same with a second connection joining every room), leave the table
// full; a new client can still create a room and chat, and rooms nobody joined go after the orphan grace,
// not the whole grace.
func TestRoomTableFloodLeavesRoomForOthers(t *testing.T) {
	for _, joined := range []bool{false, true} {
		name := map[bool]string{false: "orphans", true: "joined"}[joined]
		t.Run(name, func(t *testing.T) {
			cfg := relay.Config{MaxRooms: 48, MaxRoomsPerConn: 8, Grace: time.Minute, OrphanGrace: 2 * time.Second}
			tr := startRelay(t, cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			// 4 flooders at once, 12 rounds each: 384 rooms asked for, 8 times the table.
			var wg sync.WaitGroup
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range 12 {
						floodRound(ctx, t, tr, cfg.MaxRoomsPerConn, joined)
					}
				}()
			}
			wg.Wait()
			s := tr.srv.Stats()
			t.Logf("%d rooms created, %d evicted, %d refused; %d held", s.RoomsCreated, s.RoomsEvicted, s.RefusedRooms, s.Rooms)
			if s.Rooms > int64(cfg.MaxRooms) {
				t.Fatalf("%d rooms held, above the table's %d", s.Rooms, cfg.MaxRooms)
			}
			// An honest pair still gets a room and chats, with no flooder connection open.
			a, b, ra, rb := tr.pair(t)
			exchange(t, a, b, ra, rb)
			if !joined {
				// Orphans go after the orphan grace; only the honest pair's room stays.
				eventually(t, "the orphan rooms are gone", func() bool { return tr.srv.Stats().Rooms == 1 })
			}
		})
	}
}

// floodRound connects, creates n rooms (joined by a second connection if joined), and drops everything.
func floodRound(ctx context.Context, t *testing.T, tr *testRelay, n int, joined bool) {
	c, err := client.Dial(ctx, tr.url, nil)
	if err != nil {
		t.Errorf("dial: %v", err)
		return
	}
	defer c.Close()
	var j *client.Conn
	if joined {
		if j, err = client.Dial(ctx, tr.url, nil); err != nil {
			t.Errorf("dial: %v", err)
			return
		}
		defer j.Close()
	}
	for range n {
		r, err := c.Create(ctx, 0)
		if err != nil {
			return // busy: the flooder gives up this round
		}
		if joined {
			j.Join(ctx, r.ID, r.Cap)
		}
	}
}
