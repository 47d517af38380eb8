package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cleanrelay/cleanrelay/relay/client"
)

// IdleConfig describes an idle run: Conns connections (rounded up to an even number) in rooms of two, held
// open and idle for Hold.
type IdleConfig struct {
	Conns    int
	Hold     time.Duration
	Timeout  time.Duration // setup and hold together
	Progress Progress
	// ClientProcs is how many client processes hold the connections in a run over several nodes (IdleNodes; at
	// least one per node). A run on one server holds them in the bench's own process.
	ClientProcs int
}

// Idle runs the idle workload against s.
func Idle(ctx context.Context, s *Server, cfg IdleConfig) (*Result, error) {
	if cfg.Conns < 2 {
		return nil, errors.New("idle needs at least 2 connections")
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	rooms := (cfg.Conns + 1) / 2
	d := newDialer(s.URL, 2*rooms)
	members := make([]*member, 2*rooms)
	defer closeAll(members)
	srv0, err := RSS(s.PID)
	if err != nil {
		return nil, err
	}
	live0 := liveBytes()
	tool0, err := RSS(os.Getpid())
	if err != nil {
		return nil, err
	}
	met, err := startMeter(s.PID)
	if err != nil {
		return nil, err
	}
	setupStart := time.Now()
	var made atomic.Int64
	stopProgress := progress(cfg.Progress, "idle "+s.Name, &made, int64(2*rooms))
	defer stopProgress()
	// A member gets at most one event while idle (the creator's presence join), so a tiny event channel does.
	err = parallel(ctx, rooms, func(i int) error {
		a, b, err := pair(ctx, d, 4)
		if err != nil {
			return err
		}
		members[2*i], members[2*i+1] = a, b
		made.Add(2)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("failed to connect %d idle members to the %s: %w", 2*rooms, s.Name, err)
	}
	stopProgress()
	setup := time.Since(setupStart)
	select {
	case <-time.After(cfg.Hold):
	case <-ctx.Done():
		return nil, fmt.Errorf("idle run on the %s: %w", s.Name, ctx.Err())
	}
	if err := met.stop(); err != nil {
		return nil, err
	}
	srv1, err := RSS(s.PID)
	if err != nil {
		return nil, err
	}
	tool1, err := RSS(os.Getpid())
	if err != nil {
		return nil, err
	}
	live1 := liveBytes()
	alive := 0
	for _, m := range members {
		select {
		case <-m.conn.Done():
		default:
			alive++
		}
	}
	n := 2 * rooms
	r := &Result{Workload: "idle", Server: s.Name, Errors: int64(n - alive)}
	met.fill(r)
	r.Idle = &IdleResult{Conns: n, Alive: alive, HoldSeconds: cfg.Hold.Seconds(),
		ServerRSSBefore: srv0, ServerRSSAfter: srv1, ServerPerConn: float64(srv1-srv0) / float64(n),
		ToolRSSBefore: tool0, ToolRSSAfter: tool1, ToolPerConn: float64(live1-live0) / float64(n), SourceAddrs: d.spread,
		Nodes: 1, SetupSeconds: setup.Seconds(), ByNode: fmt.Sprintf("%d:%d:%d:%.0f", n, srv0, srv1, float64(srv1-srv0)/float64(n))}
	return r, nil
}

// ConnectConfig describes a connect run: Conns times, by Concurrency workers at once, a new connection is
// opened, waits for the hello and creates a room (joining it as its first member) — that much is timed — then
// leaves the room and closes. With Auth, each worker first registers an account, logs in and publishes a key
// (not timed), and each timed connection is a logged-in session (docs/accounts.md §7): its handshake carries
// the login and a WebSocket ticket. The worker proves its key for a ticket once, before the timed part, as a
// browser does for its first socket, and reuses the ticket as a browser does when it reconnects; with
// ProofEach, every timed connection first proves the key afresh (a session challenge signed with the key,
// the proof, a new ticket), as a new page does.
type ConnectConfig struct {
	Conns, Concurrency int
	Auth, ProofEach    bool
	Timeout            time.Duration
	Progress           Progress
}

// Connect runs the connect workload against s.
func Connect(ctx context.Context, s *Server, cfg ConnectConfig) (*Result, error) {
	if cfg.Conns < 1 || cfg.Concurrency < 1 {
		return nil, errors.New("connect needs conns ≥ 1 and concurrency ≥ 1")
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	d := newDialer(s.URL, cfg.Conns)
	workers := min(cfg.Concurrency, cfg.Conns)
	users := make([]*client.Account, workers)
	headers := make([]http.Header, workers) // each worker's login and ticket, unless ProofEach
	if cfg.Auth {
		prefix := randomID(6)
		err := parallel(ctx, workers, func(i int) error {
			// Letters and digits of the prefix only: upper case is folded, and '-' or '_' next to the separator
			// would be two punctuation characters in a row, which usernames may not have.
			alnum := strings.Map(func(r rune) rune {
				if r == '-' || r == '_' {
					return 'x'
				}
				return r
			}, prefix)
			name := strings.ToLower(fmt.Sprintf("b%s-%d", alnum, i))
			u, err := newAuthUser(ctx, s.URL, name)
			users[i] = u
			if err == nil && !cfg.ProofEach {
				headers[i], err = u.TicketHeader(ctx)
			}
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("failed to set up %d accounts on the %s: %w", workers, s.Name, err)
		}
	}
	lats := make([]time.Duration, cfg.Conns)
	var next, done, errs atomic.Int64
	stopProgress := progress(cfg.Progress, "connect "+s.Name, &done, int64(cfg.Conns))
	defer stopProgress()
	met, err := startMeter(s.PID)
	if err != nil {
		return nil, err
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(cfg.Conns) || ctx.Err() != nil {
					return
				}
				t0 := time.Now()
				h := headers[w]
				if u := users[w]; u != nil && cfg.ProofEach {
					var err error
					if h, err = u.TicketHeader(ctx); err != nil {
						errs.Add(1)
						continue
					}
				}
				c, err := d.dialHeader(ctx, 4, h)
				if err != nil {
					errs.Add(1)
					continue
				}
				room, err := c.Create(ctx, 2)
				if err == nil {
					lats[i] = time.Since(t0)
					err = c.Leave(ctx, room.Ch)
				}
				if err != nil {
					errs.Add(1)
				}
				c.Close()
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	if err := met.stop(); err != nil {
		return nil, err
	}
	stopProgress()
	n := done.Load()
	r := &Result{Workload: "connect", Server: s.Name, Errors: errs.Load() + int64(cfg.Conns) - n}
	met.fill(r)
	c := &ConnectResult{Conns: cfg.Conns, Concurrency: cfg.Concurrency, Auth: cfg.Auth, ProofEach: cfg.Auth && cfg.ProofEach, PerS: float64(n) / met.wall.Seconds(), SourceAddrs: d.spread}
	var got []time.Duration
	for _, l := range lats {
		if l > 0 {
			got = append(got, l)
		}
	}
	c.LatP50ms, c.LatP90ms, c.LatP99ms, c.LatMaxms = percentiles(got)
	r.Connect = c
	return r, nil
}
