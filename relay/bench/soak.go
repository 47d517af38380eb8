package bench

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/cleanrelay/cleanrelay/relay/client"
)

// SoakConfig sizes a soak: honest pair rooms chatting at a fixed rate for a while, next to idle rooms and
// floods, with the server's memory and a new user's chance to create a room sampled along the way.
type SoakConfig struct {
	Idle     int           // connections held idle, in rooms of two
	Rooms    int           // honest pair rooms
	Rate     float64       // frames per second per honest member
	Size     int           // honest frame payload bytes
	Duration time.Duration // how long the honest rooms chat
	Sample   time.Duration // how often RSS and a new user's create are sampled
	Floods   []Flood       // run alongside until the honest rooms are done
	// FloodCmd, when set, runs the floods in a process of their own at the lowest CPU priority (floodproc.go)
	// rather than in this one, beside the honest clients.
	FloodCmd *FloodCmd
	Accounts bool          // the relay offers accounts: at each sample a new user also registers, logs in, publishes a key
	Timeout  time.Duration // the whole run
	Progress Progress
}

// Flood is one kind of abuse the soak runs alongside the honest rooms. Start prepares it before any flood runs
// (the accounts floods register their flooders then, not while other floods compete with them) and returns the
// flood itself, which runs until ctx ends, counting what it did in ops (a flooder's refusals and failures are its
// own business, not errors of the run).
type Flood struct {
	Name  string
	Start func(ctx context.Context, wsURL string) (run func(ctx context.Context, ops *atomic.Int64), err error)
}

// ready makes a Flood's Start of a flood that needs no preparation.
func ready(run func(ctx context.Context, wsURL string, ops *atomic.Int64)) func(context.Context, string) (func(context.Context, *atomic.Int64), error) {
	return func(_ context.Context, wsURL string) (func(context.Context, *atomic.Int64), error) {
		return func(ctx context.Context, ops *atomic.Int64) { run(ctx, wsURL, ops) }, nil
	}
}

// Floods are the built-in floods, by name: the WebSocket side's here, the accounts side's in soak_accounts.go
// (against a relay without accounts those get 404s, which they count like any other answer).
var Floods = map[string]Flood{
	"rooms":    {"rooms", ready(floodRooms)},
	"pings":    {"pings", ready(floodPings)},
	"unacked":  {"unacked", ready(floodUnacked)},
	"logins":   {"logins", ready(floodLogins)},
	"tickets":  {"tickets", startTickets},
	"dialogs":  {"dialogs", startDialogs},
	"keys":     {"keys", startKeyLookups},
	"slowhttp": {"slowhttp", ready(floodSlowHTTP)},
}

// FloodNames lists the built-in floods, sorted.
func FloodNames() []string {
	var names []string
	for n := range Floods {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// floodRooms connects, creates as many rooms as a connection may, and drops, over and over: it tries to fill
// the room table for everyone.
func floodRooms(ctx context.Context, wsURL string, ops *atomic.Int64) {
	for ctx.Err() == nil {
		c, err := client.Dial(ctx, wsURL, &client.Options{Events: 16})
		if err != nil {
			continue
		}
		for range c.Hello().MaxRooms {
			if _, err := c.Create(ctx, 0); err != nil {
				break
			}
			ops.Add(1)
		}
		c.Close()
	}
}

// pingBatch is how many pings floodPings writes with one system call: the relay reads the same stream of
// 7-byte pings either way, and a flooder writing them one by one spent a core of the machine the honest clients
// and the relay share (docs/performance.md, "The soak's floods one at a time").
const pingBatch = 1024

// floodPings sends pings as fast as the relay reads them, on one connection at a time, counting each ping
// written.
func floodPings(ctx context.Context, wsURL string, ops *atomic.Int64) {
	var batch []byte
	for range pingBatch {
		batch = append(batch, 0x89, 0x81, 0, 0, 0, 0, 'p') // FIN ping, masked (key 0), payload "p"
	}
	for ctx.Err() == nil {
		ws, _, err := (&websocket.Dialer{Subprotocols: []string{client.Subprotocol}}).DialContext(ctx, wsURL, nil)
		if err != nil {
			continue
		}
		// Answer no ping of the relay's: a pong written by the reader could land inside a batch.
		ws.SetPingHandler(func(string) error { return nil })
		go func() { // take what the relay says (hello, pongs) so that it is never slowed by us
			for {
				if _, _, err := ws.ReadMessage(); err != nil {
					return
				}
			}
		}()
		nc := ws.NetConn()
		for ctx.Err() == nil {
			nc.SetWriteDeadline(time.Now().Add(time.Second))
			n, err := nc.Write(batch)
			ops.Add(int64(n / 7))
			if err != nil {
				break
			}
		}
		ws.Close()
	}
}

// floodUnacked keeps a room whose receiver reads but never acknowledges, and fills it with 4,097-byte frames
// (8 KiB buffers each), over and over: it tries to make the relay hold memory.
func floodUnacked(ctx context.Context, wsURL string, ops *atomic.Int64) {
	payload := make([]byte, 4097)
	for ctx.Err() == nil {
		a, err := client.Dial(ctx, wsURL, nil)
		if err != nil {
			continue
		}
		b, err := client.Dial(ctx, wsURL, nil)
		if err != nil {
			a.Close()
			continue
		}
		go func() {
			for range b.Events() {
			}
		}()
		go func() {
			for range a.Events() {
			}
		}()
		if r, err := a.Create(ctx, 0); err == nil {
			if _, err := b.Join(ctx, r.ID, r.Cap); err == nil {
				for range 256 {
					if ctx.Err() != nil || a.Send(r.Ch, payload) != nil {
						break
					}
					ops.Add(1)
				}
			}
		}
		select { // hold the room a while, then make another
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
		a.Close()
		b.Close()
	}
}

// Soak runs the soak against s: idle rooms are set up first, then the floods start, then the honest rooms
// chat for the duration (the pairs workload at a fixed rate) while RSS and a new user's create are sampled.
func Soak(ctx context.Context, s *Server, cfg SoakConfig) (*Result, error) {
	if cfg.Rooms < 1 || cfg.Rate <= 0 || cfg.Duration <= 0 || cfg.Sample <= 0 {
		return nil, errors.New("soak needs rooms ≥ 1, a rate > 0, a duration and a sample interval")
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	idleRooms := (cfg.Idle + 1) / 2
	idle := make([]*member, 2*idleRooms)
	defer closeAll(idle)
	d := newDialer(s.URL, 2*idleRooms)
	if err := parallel(ctx, idleRooms, func(i int) error {
		a, b, err := pair(ctx, d, 4)
		if err == nil {
			idle[2*i], idle[2*i+1] = a, b
		}
		return err
	}); err != nil {
		return nil, fmt.Errorf("failed to set up %d idle rooms: %w", idleRooms, err)
	}

	floodCtx, stopFloods := context.WithCancel(ctx)
	defer stopFloods()
	var names []string
	for _, f := range cfg.Floods {
		names = append(names, f.Name)
	}
	floodOps := make([]atomic.Int64, len(cfg.Floods))
	var wg sync.WaitGroup
	var child *FloodProcess
	if cfg.FloodCmd != nil && len(cfg.Floods) > 0 {
		var err error
		if child, err = StartFloods(ctx, *cfg.FloodCmd, s.URL, names, cfg.Timeout, cfg.Sample); err != nil {
			return nil, err
		}
		defer func() {
			if child != nil {
				child.Stop()
			}
		}()
	} else {
		runs := make([]func(context.Context, *atomic.Int64), len(cfg.Floods))
		for i, f := range cfg.Floods {
			run, err := f.Start(floodCtx, s.URL)
			if err != nil {
				return nil, fmt.Errorf("failed to prepare the %s flood: %w", f.Name, err)
			}
			runs[i] = run
		}
		for i, run := range runs {
			wg.Add(1)
			go func() { defer wg.Done(); run(floodCtx, &floodOps[i]) }()
		}
	}
	floodStart := time.Now()
	var samples []string
	var rssMax, rssFirst, rssLast int64
	var probes, probeFailed, accountProbes, accountFailed int
	var probeErrs tally
	start := time.Now()
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(cfg.Sample)
		defer t.Stop()
		for {
			select {
			case <-floodCtx.Done():
				return
			case <-t.C:
			}
			rss, _ := RSS(s.PID)
			if rssFirst == 0 {
				rssFirst = rss
			}
			rssLast, rssMax = rss, max(rssMax, rss)
			probes++
			perr := probeCreate(floodCtx, s.URL)
			ok := perr == nil
			if !ok && floodCtx.Err() == nil {
				probeFailed++
				probeErrs.add("create: " + perr.Error())
			}
			if cfg.Accounts {
				accountProbes++
				if aerr := probeAccount(floodCtx, s.URL); aerr != nil && floodCtx.Err() == nil {
					accountFailed++
					probeErrs.add("account: " + aerr.Error())
				}
			}
			samples = append(samples, fmt.Sprintf("%ds:%s:%v", int(time.Since(start).Seconds()), mib(rss), ok))
		}
	}()
	frames := max(1, int(cfg.Rate*cfg.Duration.Seconds()))
	r, err := Pairs(ctx, s, PairsConfig{Rooms: cfg.Rooms, Frames: frames, Size: max(cfg.Size, payloadHeader), Rate: cfg.Rate,
		Timeout: cfg.Timeout, Progress: cfg.Progress})
	stopFloods()
	wg.Wait()
	floodSecs := time.Since(floodStart).Seconds()
	process, floodCPU := "in-process", 0.0
	if child != nil {
		rep, cerr := child.Stop()
		child = nil
		if cerr != nil {
			return nil, errors.Join(err, cerr)
		}
		for i, n := range names {
			floodOps[i].Store(rep.Ops[n])
		}
		floodSecs, floodCPU = rep.Seconds, rep.CPU
		process = fmt.Sprintf("child, SCHED_IDLE nice 19 (%d of %d threads)", rep.IdleThreads, rep.Threads)
	}
	if err != nil {
		return nil, err
	}
	var total int64
	byFlood, rates, starved := []string{}, []string{}, []string{}
	for i, n := range names {
		ops := floodOps[i].Load()
		total += ops
		byFlood = append(byFlood, fmt.Sprintf("%s:%d", n, ops))
		rates = append(rates, fmt.Sprintf("%s:%.1f", n, float64(ops)/floodSecs))
		if float64(ops) < starvedRate*floodSecs {
			starved = append(starved, fmt.Sprintf("%s:%d", n, ops))
		}
	}
	if len(starved) == 0 {
		starved = []string{"none"}
	}
	if len(names) == 0 {
		names, byFlood, rates, process = []string{"none"}, []string{"none"}, []string{"none"}, "none"
	}
	if len(samples) == 0 {
		samples = []string{"none"}
	}
	p := r.Pairs
	r.Workload, r.Pairs = "soak", nil
	r.Soak = &SoakResult{
		Idle: 2 * idleRooms, Rooms: cfg.Rooms, Rate: cfg.Rate, Floods: strings.Join(names, ","), FloodOps: total,
		FloodOpsBy: strings.Join(byFlood, " "), FloodRateBy: strings.Join(rates, " "), FloodStarved: strings.Join(starved, " "),
		FloodProcess: process, FloodSeconds: floodSecs, FloodCPU: floodCPU,
		Delivered: p.Delivered, Lost: p.Lost, Unsent: p.Unsent, Duplicated: p.Duplicated, Reordered: p.Reordered, LostNotices: p.LostNotices,
		LatP50ms: p.LatP50ms, LatP99ms: p.LatP99ms, LatMaxms: p.LatMaxms,
		RSSFirst: rssFirst, RSSLast: rssLast, RSSMax: rssMax, RSSSamples: strings.Join(samples, " "),
		CreateProbes: probes, CreateFailed: probeFailed, AccountProbes: accountProbes, AccountFailed: accountFailed,
		ProbeFailures: probeErrs.String(),
	}
	return r, nil
}

// probeCreate is a new user: it connects, creates a room, and leaves. It says why that did not work.
func probeCreate(ctx context.Context, wsURL string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, wsURL, &client.Options{Events: 16})
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	r, err := c.Create(ctx, 0)
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	return c.Leave(ctx, r.Ch)
}
