package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/cleanrelay/cleanrelay/relay/client"
)

// The connection side of a chat session: sending, acknowledging, and resuming after a drop exactly as the
// browser does (static/js/conn.mjs, docs/protocol.md §4.2).

// reconnect dials again and resumes, on the browser's schedule (static/js/backoff.mjs: attempt k waits a
// random time between d/2 and d, d = 0.5 s · 2^k up to 30 s), until the relay's grace is over. A resume
// answered busy (a cluster that cannot tell yet whether it holds the place) is asked again on the same
// connection, about a second apart, within the grace (docs/protocol.md §4.3).
func (s *chatSession) reconnect(ctx context.Context, lostAt time.Time, k int) {
	grace := time.Duration(max(s.hello.Grace, 1)) * time.Second
	for ; ; k++ {
		d := min(500*time.Millisecond<<min(k, 6), 30*time.Second)
		j, _ := rand.Int(rand.Reader, big.NewInt(int64(d/2)))
		select {
		case <-time.After(d/2 + time.Duration(j.Int64())):
		case <-ctx.Done():
			s.reconnected <- reconnectResult{err: ctx.Err()}
			return
		}
		if time.Since(lostAt) > grace {
			s.reconnected <- reconnectResult{err: errors.New("lost the relay for longer than its grace: the place in the room is gone")}
			return
		}
		c, err := dialRelay(ctx, s.cfg)
		if err != nil {
			continue
		}
		rctx, cancel := context.WithDeadline(ctx, lostAt.Add(grace))
		r, _, err := c.ResumeUntil(rctx, s.token, s.last, lostAt.Add(grace))
		cancel()
		var re *client.Error
		if errors.As(err, &re) && re.Code == "bad_token" {
			c.Close()
			s.reconnected <- reconnectResult{err: errors.New("the relay no longer knows this membership (the room ended or the grace ran out)")}
			return
		}
		if err != nil {
			c.Close()
			continue
		}
		s.reconnected <- reconnectResult{conn: c, room: r}
		return
	}
}

// resumed takes a resumed membership: the frames the relay never got go out again, in order.
func (s *chatSession) resumed(c *client.Conn, r *client.Room) error {
	s.conn, s.events, s.ch = c, c.Events(), r.Ch
	s.acked = s.last
	again, err := s.outbox.Since(r.In)
	if err != nil {
		s.emit(chatEvent{Type: "problem", Message: err.Error()})
	}
	for _, p := range again {
		if err := c.Send(s.ch, p); err != nil {
			break // the new connection dropped too: its events channel closes and we come back here
		}
	}
	present := s.setPresent(r.Members)
	s.emit(chatEvent{Type: "state", Online: boolp(true), Members: r.Members, Ready: boolp(s.crypto.canSend())})
	return s.crypto.resumed(present)
}

// setPresent replaces the members present (from a joined or resumed reply) and returns the others.
func (s *chatSession) setPresent(members []uint32) []uint32 {
	clear(s.present)
	var others []uint32
	for _, m := range members {
		if m != s.member {
			s.present[m] = true
			others = append(others, m)
		}
	}
	return others
}

// send pads and sends one v2 frame; offline, it waits in the outbox for the resume.
func (s *chatSession) send(kind byte, body []byte) error {
	p, err := padFrame(kind, body)
	if err != nil {
		return err
	}
	if max := s.hello.MaxFrame; max > 0 && len(p) > max {
		return fmt.Errorf("a %d-byte frame is over this relay's %d-byte limit", len(p), max)
	}
	s.outbox.Add(p)
	if s.events != nil {
		s.conn.Send(s.ch, p) // a failure is a dropped connection: the resume sends it again
	}
	return nil
}

// seen records that the entry seq was processed and acknowledges as the browser does: every ackEvery
// entries, and 1 s after the last one.
func (s *chatSession) seen(seq uint64) {
	s.last = max(s.last, seq)
	if s.last-s.acked >= uint64(max(s.hello.AckEvery, 1)) {
		s.ack()
	}
	s.ackTimer.Reset(time.Second)
}

func (s *chatSession) ack() {
	if s.events == nil || s.last <= s.acked {
		return
	}
	s.acked = s.last
	s.conn.Ack(s.ch, s.last)
}
