package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/cleanrelay/cleanrelay/relay/client"
)

// portsPerSource is how many connections the tool opens from one loopback source address: Linux picks a bound
// socket's ephemeral port before it knows the destination, so one address has about 28,000 of them
// (net.ipv4.ip_local_port_range 32768–60999); stay well below that, leaving room for TIME_WAIT. A variable so
// a test can make a few connections spread.
var portsPerSource = 16000

// setupConcurrency is how many connections are being set up at once.
const setupConcurrency = 64

// payloadHeader is what every pairs frame starts with: the sender's frame number and its send time.
const payloadHeader = 16

// Progress is told how far a run has come; nil for none.
type Progress func(workload string, done, total int64)

// dialer opens connections from 127.0.0.1, 127.0.0.2, … in turn, so that many connections do not run out of
// ephemeral ports. On Linux every 127.0.0.0/8 address is on the loopback interface.
type dialer struct {
	url    string
	spread int
	local  net.IP // when set, every connection comes from this address (a client process of IdleNodes)
	n      atomic.Uint64
}

func newDialer(wsURL string, conns int) *dialer {
	d := &dialer{url: wsURL, spread: 1}
	if u, err := url.Parse(wsURL); err == nil {
		if ip := net.ParseIP(u.Hostname()); ip != nil && ip.To4() != nil && ip.IsLoopback() {
			d.spread = min(1+conns/portsPerSource, 250)
		}
	}
	return d
}

// dial connects and waits for the hello; events is the client's event channel capacity.
func (d *dialer) dial(ctx context.Context, events int) (*client.Conn, error) {
	return d.dialHeader(ctx, events, nil)
}

// dialHeader dials with extra handshake headers (the cookies of a logged-in session).
func (d *dialer) dialHeader(ctx context.Context, events int, h http.Header) (*client.Conn, error) {
	opts := &client.Options{Events: events, Header: h}
	if d.local != nil {
		nd := &net.Dialer{LocalAddr: &net.TCPAddr{IP: d.local}}
		opts.NetDialContext = nd.DialContext
	} else if d.spread > 1 {
		i := d.n.Add(1)
		nd := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i%uint64(d.spread)))}}
		opts.NetDialContext = nd.DialContext
	}
	return client.Dial(ctx, d.url, opts)
}

// meter samples the server's and the tool's CPU time around a measured part.
type meter struct {
	pid                int
	start              time.Time
	server0, tool0     time.Duration
	serverCPU, toolCPU time.Duration
	wall               time.Duration
}

func startMeter(pid int) (*meter, error) {
	m := &meter{pid: pid}
	var err error
	if m.server0, err = CPUTime(pid); err != nil {
		return nil, err
	}
	if m.tool0, err = selfCPU(); err != nil {
		return nil, err
	}
	m.start = time.Now()
	return m, nil
}

func (m *meter) stop() error {
	m.wall = time.Since(m.start)
	s, err := CPUTime(m.pid)
	if err != nil {
		return err
	}
	t, err := selfCPU()
	if err != nil {
		return err
	}
	m.serverCPU, m.toolCPU = s-m.server0, t-m.tool0
	return nil
}

func (m *meter) fill(r *Result) {
	r.Seconds = m.wall.Seconds()
	r.ServerCPU = m.serverCPU.Seconds()
	r.ToolCPU = m.toolCPU.Seconds()
}

// PairsConfig describes a pairs run: Rooms rooms of two members, each member sending Frames frames of Size
// bytes to the other, either with at most Window of its frames not yet received (Rate 0) or at Rate frames per
// second.
type PairsConfig struct {
	Rooms, Frames, Size, Window int
	Rate                        float64
	Timeout                     time.Duration // the whole run, setup included
	Progress                    Progress
}

// member is one end of a pair.
type member struct {
	conn *client.Conn
	ch   byte
	ack  int // acknowledge every ack frames

	// window holds a token for each of this member's frames in flight; the peer's receiver takes them out.
	window chan struct{}
	sent   int // frames sent, owned by the sender goroutine until it ends

	// Owned by the member's receiver goroutine until it ends.
	seen        []uint64 // bitset of the peer's frame numbers received
	count       int
	maxSeen     uint64
	dup, reord  int64
	lostNotices int64 // lost events: the server saying entries were lost
	lat         []time.Duration
}

// Pairs runs the pairs workload against s.
func Pairs(ctx context.Context, s *Server, cfg PairsConfig) (*Result, error) {
	if cfg.Size < payloadHeader {
		return nil, fmt.Errorf("frame size %d is below the %d bytes of sequence number and timestamp", cfg.Size, payloadHeader)
	}
	if cfg.Rooms < 1 || cfg.Frames < 1 || (cfg.Rate <= 0 && cfg.Window < 1) {
		return nil, errors.New("pairs needs rooms ≥ 1, frames ≥ 1, and a window ≥ 1 or a rate > 0")
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	d, dj := newDialer(s.URL, 2*cfg.Rooms), (*dialer)(nil)
	if s.JoinURL != "" {
		dj = newDialer(s.JoinURL, cfg.Rooms)
	}
	members := make([]*member, 2*cfg.Rooms)
	defer closeAll(members)
	var errs tally
	err := parallel(ctx, cfg.Rooms, func(i int) error {
		a, b, err := pairOn(ctx, d, dj, cfg.Window+1024)
		if err != nil {
			return err
		}
		members[2*i], members[2*i+1] = a, b
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("failed to set up %d rooms on the %s: %w", cfg.Rooms, s.Name, err)
	}
	for _, m := range members {
		if cfg.Rate <= 0 {
			m.window = make(chan struct{}, cfg.Window)
		}
		m.seen = make([]uint64, cfg.Frames/64+1)
		m.lat = make([]time.Duration, 0, cfg.Frames)
	}

	var delivered atomic.Int64
	total := int64(2 * cfg.Rooms * cfg.Frames)
	stopProgress := progress(cfg.Progress, "pairs "+s.Name, &delivered, total)
	defer stopProgress()
	met, err := startMeter(s.PID)
	if err != nil {
		return nil, err
	}
	base := time.Now()
	errs.start = base
	var wg sync.WaitGroup
	for i, m := range members {
		peer := members[i^1]
		wg.Add(2)
		go func() {
			defer wg.Done()
			if err := m.send(ctx, cfg, base, i); err != nil && ctx.Err() == nil {
				errs.add("send: " + err.Error())
			}
		}()
		go func() {
			defer wg.Done()
			m.receive(ctx, peer, cfg, base, &delivered, &errs)
		}()
	}
	wg.Wait()
	if err := met.stop(); err != nil {
		return nil, err
	}
	stopProgress()

	r := &Result{Workload: "pairs", Server: s.Name, Errors: errs.total(), ErrorKinds: errs.String()}
	met.fill(r)
	p := &PairsResult{Rooms: cfg.Rooms, Frames: cfg.Frames, Size: cfg.Size, Rate: cfg.Rate, SourceAddrs: d.spread}
	if cfg.Rate <= 0 {
		p.Window = cfg.Window
	}
	var lats []time.Duration
	for i, m := range members {
		// A frame the peer never sent (the run's timeout came first) is unsent, not lost.
		sent := members[i^1].sent
		p.Delivered += int64(m.count)
		p.Lost += int64(max(0, sent-m.count))
		p.Unsent += int64(cfg.Frames - sent)
		p.Duplicated += m.dup
		p.Reordered += m.reord
		p.LostNotices += m.lostNotices
		lats = append(lats, m.lat...)
	}
	p.FramesPerS = float64(p.Delivered) / met.wall.Seconds()
	p.MiBPerS = p.FramesPerS * float64(cfg.Size) / (1 << 20)
	p.LatP50ms, p.LatP90ms, p.LatP99ms, p.LatMaxms = percentiles(lats)
	r.Pairs = p
	return r, nil
}

// pair makes a room of two on two new connections.
func pair(ctx context.Context, d *dialer, events int) (*member, *member, error) {
	return pairOn(ctx, d, nil, events)
}

// pairOn is pair with the second connection made by dj (nil: d).
func pairOn(ctx context.Context, d, dj *dialer, events int) (*member, *member, error) {
	if dj == nil {
		dj = d
	}
	ca, ra, cb, rb, err := openPair(ctx, d, dj, events)
	if err != nil {
		return nil, nil, err
	}
	ack := max(ca.Hello().AckEvery, 1)
	return &member{conn: ca, ch: ra.Ch, ack: ack}, &member{conn: cb, ch: rb.Ch, ack: ack}, nil
}

// openPair makes a room of two: a connection made by da creates it, one made by db joins it.
func openPair(ctx context.Context, da, db *dialer, events int) (ca *client.Conn, ra *client.Room, cb *client.Conn, rb *client.Room, err error) {
	ca, err = da.dial(ctx, events)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	ra, err = ca.Create(ctx, 2)
	if err != nil {
		ca.Close()
		return nil, nil, nil, nil, fmt.Errorf("failed to create a room: %w", err)
	}
	cb, err = db.dial(ctx, events)
	if err != nil {
		ca.Close()
		return nil, nil, nil, nil, err
	}
	rb, err = cb.Join(ctx, ra.ID, ra.Cap)
	if err != nil {
		ca.Close()
		cb.Close()
		return nil, nil, nil, nil, fmt.Errorf("failed to join a room: %w", err)
	}
	return ca, ra, cb, rb, nil
}

// send sends this member's frames: frame number and send time (since base) first, then filler.
func (m *member) send(ctx context.Context, cfg PairsConfig, base time.Time, i int) error {
	buf := make([]byte, cfg.Size)
	for j := 16; j < len(buf); j++ {
		buf[j] = byte(j)
	}
	var tick *time.Ticker
	if cfg.Rate > 0 {
		// Spread the members' first frames over one interval, so they do not all send at the same instant.
		interval := time.Duration(float64(time.Second) / cfg.Rate)
		select {
		case <-time.After(interval * time.Duration(i) / time.Duration(2*cfg.Rooms)):
		case <-ctx.Done():
			return ctx.Err()
		}
		tick = time.NewTicker(interval)
		defer tick.Stop()
	}
	for n := 1; n <= cfg.Frames; n++ {
		if tick != nil {
			if n > 1 {
				select {
				case <-tick.C:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		} else {
			select {
			case m.window <- struct{}{}:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		binary.BigEndian.PutUint64(buf[0:8], uint64(n))
		binary.BigEndian.PutUint64(buf[8:16], uint64(time.Since(base)))
		if err := m.conn.Send(m.ch, buf); err != nil {
			return err
		}
		m.sent = n
	}
	return nil
}

// receive takes the peer's frames until all have come or ctx ends, checking order and measuring latency. It
// tells errs each unexpected thing (an error from the server, a closed room or connection, a malformed frame).
func (m *member) receive(ctx context.Context, peer *member, cfg PairsConfig, base time.Time, delivered *atomic.Int64, errs *tally) {
	var acked uint64
	for m.count < cfg.Frames {
		var ev client.Event
		var ok bool
		select {
		case ev, ok = <-m.conn.Events():
		case <-ctx.Done():
			// Not lost (yet): the frames the peer sent after the last one that came were still on their way.
			errs.add("the run's timeout came before every frame of the peer")
			return
		}
		if !ok {
			if ctx.Err() == nil {
				errs.add("connection ended: " + connEnded(m.conn.Err()))
			}
			return
		}
		if ev.Kind != client.KindFrame {
			// a presence: the relay tells the creator that its peer joined; the floor does not
			notFrame(ev, &m.lostNotices, errs)
			continue
		}
		now := time.Since(base)
		if len(ev.Payload) != cfg.Size {
			errs.add("frame of the wrong size")
			continue
		}
		n := binary.BigEndian.Uint64(ev.Payload[0:8])
		if n < 1 || n > uint64(cfg.Frames) {
			errs.add("frame number out of range")
			continue
		}
		if m.seen[n/64]&(1<<(n%64)) != 0 {
			m.dup++
			continue
		}
		m.seen[n/64] |= 1 << (n % 64)
		if n < m.maxSeen {
			m.reord++
		}
		m.maxSeen = max(m.maxSeen, n)
		m.count++
		m.lat = append(m.lat, now-time.Duration(binary.BigEndian.Uint64(ev.Payload[8:16])))
		delivered.Add(1)
		if peer.window != nil {
			<-peer.window
		}
		// ackEvery counts entries of the room's log, this member's own frames included (they take sequence
		// numbers too, which is why received ones have gaps).
		if ev.Seq-acked >= uint64(m.ack) || m.count == cfg.Frames {
			acked = ev.Seq
			if err := m.conn.Ack(m.ch, ev.Seq); err != nil {
				errs.add("ack: " + err.Error())
			}
		}
	}
}

// connEnded says why a connection ended, naming the relay's request to resume.
func connEnded(err error) string {
	var ce *websocket.CloseError
	if errors.As(err, &ce) && ce.Code == websocket.CloseGoingAway && ce.Text == "" {
		// the relay's close when the room goes on elsewhere (a cluster node that yielded it): the client resumes
		return "close 1001 with no reason: the relay asked the client to resume, which the pairs workload does not"
	}
	return fmt.Sprint(err)
}

// parallel runs f(0) … f(n-1), setupConcurrency at a time, and returns the first error.
func parallel(ctx context.Context, n int, f func(i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(setupConcurrency, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				if err := f(int(i)); err != nil {
					cancel(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return context.Cause(ctx)
}

// closeAll closes every connection of members, in parallel: closing 100,000 one by one takes a while.
func closeAll(members []*member) {
	parallel(context.Background(), len(members), func(i int) error {
		if m := members[i]; m != nil {
			m.conn.Close()
		}
		return nil
	})
}

// progress reports *done of total every 200 ms until the returned stop is called (more than once is fine).
func progress(p Progress, name string, done *atomic.Int64, total int64) (stop func()) {
	if p == nil {
		return func() {}
	}
	quit := make(chan struct{})
	var once sync.Once
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				p(name, done.Load(), total)
			case <-quit:
				p(name, done.Load(), total)
				return
			}
		}
	}()
	return func() {
		once.Do(func() { close(quit); <-finished })
	}
}

// liveBytes is what this process's Go heap and goroutine stacks hold after a collection. The tool's memory per
// connection is measured with it rather than RSS, which keeps the garbage of an earlier run.
func liveBytes() int64 {
	debug.FreeOSMemory() // collects first
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse + ms.StackInuse)
}

// notFrame takes an event other than a frame: a lost notice is counted, a closed room, an error or an unknown
// kind is tallied, a presence is left to the caller.
func notFrame(ev client.Event, lostNotices *int64, errs *tally) {
	switch ev.Kind {
	case client.KindPresence:
	case client.KindLost:
		*lostNotices++
	case client.KindClosed:
		errs.add("room closed: " + ev.Reason)
	case client.KindError:
		errs.add(fmt.Sprintf("event: %v", ev.Err))
	default:
		errs.add(fmt.Sprintf("unexpected event kind %d", ev.Kind))
	}
}
