package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cleanrelay/cleanrelay/relay/client"
)

// A node's death. Against a cluster the caller started (every node's URL and process id), pair rooms chat at a
// fixed rate while the bench SIGKILLs one node, the one the caller named, and nothing else. Every room has one
// member on the dying node and one on a surviving node; half the rooms are made on the dying node, which
// sequences them (their mirrors take them over), half on a surviving node (only their member on the dying node
// is gone). Each member of the dying node does what a client following docs/protocol.md does when its socket
// ends: it dials another node, resumes with its token from the last entry it processed (asking again on the
// same socket while the relay answers busy, as a cluster does while it cannot tell yet where the place is;
// bad_token is final), and sends again the frames beyond the reply's In. Members on the surviving nodes keep their sockets.

// NodeDeathConfig describes a node-death run: Rooms pair rooms whose members send Size-byte frames at Rate
// frames per second each for Before, then the node dies, then they go on until each has sent what Before+After
// at that rate makes.
type NodeDeathConfig struct {
	Rooms         int
	Rate          float64
	Size          int
	Before, After time.Duration
	// ResumeLimit is how long after the kill a member of the dead node keeps asking to resume; then it gives
	// up and the run ends with an error. Zero: 30 s.
	ResumeLimit time.Duration
	Timeout     time.Duration // the whole run, setup included
	Progress    Progress
}

// deathMember is one member of a node-death run. Everything but the atomic counter is owned by its goroutine
// until the run's members have all ended.
type deathMember struct {
	conn      *client.Conn
	room      *client.Room
	token     string
	out       *client.Outbox
	onVictim  bool   // its socket is on the node that dies
	resumeURL string // where it resumes when it does
	ack       int

	sent        int
	last, acked uint64 // the seq of the last entry processed, of the last acknowledged
	seen        []uint64
	count       int
	maxSeen     uint64
	dup, reord  int64
	firstDup    uint64
	dupOtherSeq int64    // of dup, those given under another seq than the first time
	seqs        []uint64 // the seq each of the peer's frames was first given under, by frame number
	lostNotices int64
	dropped     bool          // a member of a surviving node whose socket ended
	resumed     time.Duration // from the kill until its resume was answered (members of the dead node)
	retries     int           // resumes answered busy
	flowing     time.Duration // from the kill until it was given the first of its peer's frames sent after it
}

// NodeDeath runs the node-death workload over nodes; nodes[kill] is the node to SIGKILL.
func NodeDeath(ctx context.Context, nodes []*Server, kill int, cfg NodeDeathConfig) (*Result, error) {
	if len(nodes) < 2 || kill < 0 || kill >= len(nodes) {
		return nil, errors.New("node death needs at least two nodes, one of which is to be killed")
	}
	if cfg.Rooms < 2 || cfg.Rate <= 0 || cfg.Before <= 0 || cfg.After <= 0 {
		return nil, errors.New("node death needs rooms ≥ 2 (one of each kind), a rate > 0 and traffic before and after the kill")
	}
	if cfg.Size < payloadHeader {
		return nil, fmt.Errorf("frame size %d is below the %d bytes of frame number and timestamp", cfg.Size, payloadHeader)
	}
	if cfg.ResumeLimit <= 0 {
		cfg.ResumeLimit = 30 * time.Second
	}
	frames := int(cfg.Rate*(cfg.Before+cfg.After).Seconds() + 0.5)
	victim := nodes[kill]
	var survivors []*Server
	for i, s := range nodes {
		if i != kill {
			survivors = append(survivors, s)
		}
	}
	ctx, cancel := context.WithTimeoutCause(ctx, cfg.Timeout, errors.New("the run's timeout passed"))
	defer cancel()
	dv := newDialer(victim.URL, 2*cfg.Rooms)
	ds := make([]*dialer, len(survivors))
	for i, s := range survivors {
		ds[i] = newDialer(s.URL, 2*cfg.Rooms)
	}
	members := make([]*deathMember, 2*cfg.Rooms)
	defer func() {
		parallel(context.Background(), len(members), func(i int) error {
			if m := members[i]; m != nil {
				m.conn.Close()
			}
			return nil
		})
	}()
	err := parallel(ctx, cfg.Rooms, func(i int) error {
		// Rooms 0, 2, 4 … are made on the dying node (it sequences them), 1, 3, 5 … on a surviving one; the
		// other member is on the other side. The surviving nodes take turns, and of the dead node's members
		// half resume on the node of their peer, half on another (when there is another).
		k := i / 2
		peer := k % len(survivors)
		resume := survivors[(k+k/len(survivors))%len(survivors)].URL
		da, db := dv, ds[peer]
		if i%2 == 1 {
			da, db = db, da
		}
		a, b, err := deathPair(ctx, da, db)
		if err != nil {
			return err
		}
		a.onVictim, b.onVictim = i%2 == 0, i%2 == 1
		for _, m := range []*deathMember{a, b} {
			m.resumeURL = resume
			m.out = client.NewOutbox(frames + 1)
			m.seen = make([]uint64, frames/64+1)
			m.seqs = make([]uint64, frames+1)
		}
		members[2*i], members[2*i+1] = a, b
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("failed to set up %d rooms over %d nodes: %w", cfg.Rooms, len(nodes), err)
	}

	meters := make([]*meter, len(survivors))
	for i, s := range survivors {
		if meters[i], err = startMeter(s.PID); err != nil {
			return nil, err
		}
	}
	var errs tally
	var delivered atomic.Int64
	stopProgress := progress(cfg.Progress, "node death", &delivered, int64(2*cfg.Rooms*frames))
	defer stopProgress()
	k := &killClock{ch: make(chan struct{})}
	base := time.Now()
	var wg sync.WaitGroup
	for i, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := m.run(ctx, cfg, frames, base, i, k, &delivered, &errs); err != nil {
				errs.add(err.Error())
				cancel() // a member that gave up: the run cannot end well, and its peer would wait for the timeout
			}
		}()
	}
	select {
	case <-time.After(cfg.Before):
	case <-ctx.Done():
	}
	killErr := ctx.Err()
	if killErr == nil {
		k.at = time.Now()
		killErr = syscall.Kill(victim.PID, syscall.SIGKILL)
		close(k.ch)
	}
	wg.Wait()
	stopProgress()
	if killErr != nil {
		return nil, fmt.Errorf("failed to kill the node (process %d): %w", victim.PID, killErr)
	}
	var cpu, wall time.Duration
	for _, m := range meters {
		if err := m.stop(); err != nil {
			return nil, err
		}
		cpu += m.serverCPU
		wall = max(wall, m.wall)
	}
	tool, err := selfCPU()
	if err != nil {
		return nil, err
	}
	r := &Result{Workload: "nodedeath", Server: victim.Name, Seconds: wall.Seconds(), ServerCPU: cpu.Seconds(),
		ToolCPU: (tool - meters[0].tool0).Seconds()}
	d := &NodeDeathResult{Nodes: len(nodes), Rooms: cfg.Rooms, Members: len(members), Rate: cfg.Rate, Size: cfg.Size,
		Frames: frames, BeforeS: cfg.Before.Seconds(), AfterS: cfg.After.Seconds(), SourceAddrs: dv.spread}
	var resumes, flows []time.Duration
	var byKind [2]struct{ resumes, flows []time.Duration } // rooms taken over, rooms sequenced elsewhere
	gaps := map[string]*gapNote{}
	for i, m := range members {
		kind := &byKind[(i/2)%2]
		sent := members[i^1].sent
		m.noteGaps(gaps, i, sent, cfg)
		d.Delivered += int64(m.count)
		d.Lost += int64(max(0, sent-m.count))
		d.Unsent += int64(frames - m.sent)
		d.Duplicated += m.dup
		d.Reordered += m.reord
		d.LostNotices += m.lostNotices
		d.ResumeRetries += int64(m.retries)
		if m.onVictim {
			d.Affected++
			if m.resumed > 0 {
				d.Resumed++
				resumes = append(resumes, m.resumed)
				kind.resumes = append(kind.resumes, m.resumed)
			}
		} else {
			d.Survivors++
			if !m.dropped {
				d.SurvivorsKept++
			}
		}
		if i%2 == 1 {
			// A room flows again once each member has been given a frame its peer sent after the kill.
			a, b := members[i-1].flowing, m.flowing
			if a > 0 && b > 0 {
				d.Flowing++
				flows = append(flows, max(a, b))
				kind.flows = append(kind.flows, max(a, b))
			}
		}
	}
	d.ResumeP50ms, _, d.ResumeP99ms, d.ResumeMaxms = percentiles(resumes)
	d.FlowP50ms, _, d.FlowP99ms, d.FlowMaxms = percentiles(flows)
	d.TakenOver = (cfg.Rooms + 1) / 2
	d.ResumeTakenP50ms, _, d.ResumeTakenP99ms, _ = percentiles(byKind[0].resumes)
	d.ResumeOtherP50ms, _, d.ResumeOtherP99ms, _ = percentiles(byKind[1].resumes)
	d.FlowTakenP50ms, _, d.FlowTakenP99ms, _ = percentiles(byKind[0].flows)
	d.FlowOtherP50ms, _, d.FlowOtherP99ms, _ = percentiles(byKind[1].flows)
	d.Gaps = "none"
	if len(gaps) > 0 {
		var notes []string
		for what, g := range gaps {
			notes = append(notes, g.String(what))
		}
		slices.Sort(notes)
		d.Gaps = strings.Join(notes, "; ")
	}
	if d.Resumed < d.Affected {
		errs.add(fmt.Sprintf("%d of the dead node's %d members did not resume", d.Affected-d.Resumed, d.Affected))
	}
	if d.Flowing < d.Rooms {
		errs.add(fmt.Sprintf("%d of %d rooms did not flow again both ways", d.Rooms-d.Flowing, d.Rooms))
	}
	if d.SurvivorsKept < d.Survivors {
		errs.add(fmt.Sprintf("%d of %d members on the surviving nodes lost their sockets", d.Survivors-d.SurvivorsKept, d.Survivors))
	}
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		errs.add("run ended early: " + cause.Error())
	}
	r.Errors, r.ErrorKinds = errs.total(), errs.String()
	r.NodeDeath = d
	return r, nil
}

// gapNote sums up the frames some members were not given, or were given twice, for NodeDeathResult.Gaps.
type gapNote struct {
	members, frames int64
	first, last     float64 // the earliest and latest first missing (or repeated) frame's send time, in s from the kill
}

func (g *gapNote) String(what string) string {
	return fmt.Sprintf("%s: %d frames, %d members, from the frame sent %+.1f to %+.1f s from the kill", what, g.frames, g.members, g.first, g.last)
}

// noteGaps tells gaps which of the peer's sent frames member i (of a room made on the dead node if i/2 is even)
// missed or was given twice, and from which frame on.
func (m *deathMember) noteGaps(gaps map[string]*gapNote, i, sent int, cfg NodeDeathConfig) {
	room := "room taken over"
	if (i/2)%2 == 1 {
		room = "room sequenced elsewhere"
	}
	from := "the dead node's member"
	if m.onVictim {
		from = "the surviving member"
	}
	note := func(what string, frames int64, first uint64) {
		g := gaps[what]
		at := float64(first-1)/cfg.Rate - cfg.Before.Seconds()
		if g == nil {
			g = &gapNote{first: at, last: at}
			gaps[what] = g
		}
		g.members++
		g.frames += frames
		g.first, g.last = min(g.first, at), max(g.last, at)
	}
	if missing := sent - m.count; missing > 0 {
		for n := uint64(1); n <= uint64(sent); n++ {
			if m.seen[n/64]&(1<<(n%64)) == 0 {
				note(fmt.Sprintf("not given (%s, sent by %s)", room, from), int64(missing), n)
				break
			}
		}
	}
	// A frame given again under its first seq was handed out twice; under a new seq, it was stamped twice.
	if same := m.dup - m.dupOtherSeq; same > 0 {
		note(fmt.Sprintf("given twice under the same seq (%s, sent by %s)", room, from), same, m.firstDup)
	}
	if m.dupOtherSeq > 0 {
		note(fmt.Sprintf("given twice under a new seq (%s, sent by %s)", room, from), m.dupOtherSeq, m.firstDup)
	}
}

// deathPair makes a room of two: created through da, joined through db.
func deathPair(ctx context.Context, da, db *dialer) (*deathMember, *deathMember, error) {
	ca, ra, cb, rb, err := openPair(ctx, da, db, 4096)
	if err != nil {
		return nil, nil, err
	}
	ack := max(ca.Hello().AckEvery, 1)
	return &deathMember{conn: ca, room: ra, token: ra.Resume, ack: ack},
		&deathMember{conn: cb, room: rb, token: rb.Resume, ack: ack}, nil
}

// run sends this member's frames at the rate and takes its peer's until it has sent and been given them all;
// if it is on the dying node, it resumes on another node once its socket has ended. It returns an error when
// it cannot go on.
func (m *deathMember) run(ctx context.Context, cfg NodeDeathConfig, frames int, base time.Time, i int,
	k *killClock, delivered *atomic.Int64, errs *tally) error {
	buf := make([]byte, cfg.Size)
	for j := payloadHeader; j < len(buf); j++ {
		buf[j] = byte(j)
	}
	interval := time.Duration(float64(time.Second) / cfg.Rate)
	// The members' first frames are spread over one interval.
	start := time.NewTimer(interval * time.Duration(i) / time.Duration(2*cfg.Rooms))
	defer start.Stop()
	tickC := start.C
	var tick *time.Ticker
	defer func() {
		if tick != nil {
			tick.Stop()
		}
	}()
	for m.sent < frames || m.count < frames {
		select {
		case <-ctx.Done():
			return nil
		case <-tickC:
			if tick == nil {
				tick = time.NewTicker(interval)
				tickC = tick.C
			}
			binary.BigEndian.PutUint64(buf[0:8], uint64(m.sent+1))
			binary.BigEndian.PutUint64(buf[8:16], uint64(time.Since(base)))
			m.out.Add(buf)
			m.sent++
			if err := m.conn.Send(m.room.Ch, buf); err != nil && !(m.onVictim && k.within(2*time.Second)) {
				errs.add("send: " + err.Error())
			} // a member of the dead node whose socket died meanwhile sends it again after its resume
			if m.sent == frames {
				tickC = nil
			}
		case ev, ok := <-m.conn.Events():
			if !ok {
				if err := m.died(ctx, cfg, k); err != nil {
					return err
				}
				continue
			}
			m.event(ev, cfg, frames, base, k, delivered, errs)
		}
	}
	if m.last > m.acked {
		m.conn.Ack(m.room.Ch, m.last)
	}
	return nil
}

// event handles one event of the member's socket.
func (m *deathMember) event(ev client.Event, cfg NodeDeathConfig, frames int, base time.Time, k *killClock,
	delivered *atomic.Int64, errs *tally) {
	if ev.Kind == client.KindPresence {
		m.last = ev.Seq // its peer joined, went away or came back
	}
	if ev.Kind != client.KindFrame {
		notFrame(ev, &m.lostNotices, errs)
		return
	}
	m.last = ev.Seq
	if len(ev.Payload) != cfg.Size {
		errs.add("frame of the wrong size")
		return
	}
	n := binary.BigEndian.Uint64(ev.Payload[0:8])
	if n < 1 || n > uint64(frames) {
		errs.add("frame number out of range")
		return
	}
	if m.seen[n/64]&(1<<(n%64)) != 0 {
		if m.dup++; m.dup == 1 {
			m.firstDup = n
		}
		if m.seqs[n] != ev.Seq {
			m.dupOtherSeq++ // the relay stamped the frame twice, rather than handing one entry out twice
		}
		return
	}
	m.seen[n/64] |= 1 << (n % 64)
	m.seqs[n] = ev.Seq
	if n < m.maxSeen {
		m.reord++
	}
	m.maxSeen = max(m.maxSeen, n)
	m.count++
	delivered.Add(1)
	if m.flowing == 0 && k.after() && base.Add(time.Duration(binary.BigEndian.Uint64(ev.Payload[8:16]))).After(k.at) {
		m.flowing = time.Since(k.at)
	}
	if ev.Seq-m.acked >= uint64(m.ack) || m.count == frames {
		m.acked = ev.Seq
		m.conn.Ack(m.room.Ch, ev.Seq)
	}
}

// died takes the membership back on another node after the member's socket ended, which only the kill may
// cause, and only for members of the dying node.
func (m *deathMember) died(ctx context.Context, cfg NodeDeathConfig, k *killClock) error {
	if !m.onVictim {
		m.dropped = true
		return fmt.Errorf("a socket on a surviving node ended: %v", m.conn.Err())
	}
	select {
	case <-k.ch:
	case <-ctx.Done():
		return nil
	case <-time.After(2 * time.Second): // the kill's own moment is taken just before the signal
		return fmt.Errorf("a socket on the dying node ended before the kill: %v", m.conn.Err())
	}
	m.conn.Close()
	limit := k.at.Add(cfg.ResumeLimit)
	c, err := client.Dial(ctx, m.resumeURL, &client.Options{Events: 4096})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("resume: failed to dial a surviving node: %v", err)
	}
	r, busy, err := c.ResumeUntil(ctx, m.token, m.last, limit)
	m.retries += busy
	if err != nil {
		c.Close()
		if ctx.Err() != nil {
			return nil
		}
		var re *client.Error
		if errors.As(err, &re) && re.Code == "busy" {
			return fmt.Errorf("resume: still busy %v after the kill (%d busy answers)", cfg.ResumeLimit, busy)
		}
		return fmt.Errorf("resume: %v", err)
	}
	m.resumed = time.Since(k.at)
	m.conn, m.room = c, r
	again, err := m.out.Since(r.In)
	if err != nil {
		return fmt.Errorf("resume: %v", err)
	}
	for _, p := range again {
		if err := c.Send(r.Ch, p); err != nil {
			return fmt.Errorf("resume: failed to send again: %v", err)
		}
	}
	return nil
}

// killClock is when the node was killed: at is written before ch is closed.
type killClock struct {
	ch chan struct{}
	at time.Time
}

// within says whether the kill has happened, waiting up to d for it: a socket of the dying node may fail
// between the signal and the moment the bench records it (a loaded machine can hold the bench's goroutine that
// long), and not before the kill for any other reason.
func (k *killClock) within(d time.Duration) bool {
	select {
	case <-k.ch:
		return true
	case <-time.After(d):
		return false
	}
}

// after says whether the kill has happened.
func (k *killClock) after() bool {
	select {
	case <-k.ch:
		return true
	default:
		return false
	}
}
