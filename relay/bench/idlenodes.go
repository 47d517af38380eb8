package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Idle connections over several relay nodes, held by several client processes. One process may hold only so many
// open files (20,000 on the machine this was written for), so 100,000 connections need several relay nodes and
// several client processes: each client process ("cleanrelay bench-hold", HoldIdle) holds its share of one node's
// connections, in rooms of two on that node, from a loopback source address of its own.
//
// The protocol, one JSON object a line on the child's stdout: holdLine{Started} with its RSS before dialling,
// holdLine{Ready} once every connection is in its room (or {Error}), and after its stdin is closed,
// holdLine{Final} with the connections still open and its RSS; then it exits, which closes them.

// HoldCmd is how to start a client process: Bin with Args, then the hold flags.
type HoldCmd struct {
	Bin  string
	Args []string
}

// holdLine is one line of a client process.
type holdLine struct {
	Started bool   `json:"started,omitempty"`
	Ready   bool   `json:"ready,omitempty"`
	Final   bool   `json:"final,omitempty"`
	Alive   int    `json:"alive"`
	RSS     int64  `json:"rss"`
	Error   string `json:"error,omitempty"`
}

// HoldIdle is the client process: conns connections (even) to wsURL from the loopback address source, in rooms
// of two, held until in ends (or ctx), reported on out as described above.
func HoldIdle(ctx context.Context, wsURL, source string, conns int, in io.Reader, out io.Writer) error {
	enc := json.NewEncoder(out)
	say := func(l holdLine) error {
		l.RSS, _ = RSS(os.Getpid())
		return enc.Encode(l)
	}
	if err := say(holdLine{Started: true}); err != nil {
		return err
	}
	ip := net.ParseIP(source)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("source %q is not a loopback address", source)
	}
	rooms := (conns + 1) / 2
	members := make([]*member, 2*rooms)
	defer closeAll(members)
	d := &dialer{url: wsURL, spread: 1, local: ip}
	err := parallel(ctx, rooms, func(i int) error {
		a, b, err := pair(ctx, d, 4)
		if err != nil {
			return err
		}
		members[2*i], members[2*i+1] = a, b
		return nil
	})
	if err != nil {
		say(holdLine{Error: err.Error()})
		return err
	}
	if err := say(holdLine{Ready: true, Alive: len(members)}); err != nil {
		return err
	}
	ended := make(chan struct{})
	go func() { io.Copy(io.Discard, in); close(ended) }()
	select {
	case <-ended:
	case <-ctx.Done():
	}
	alive := aliveCount(members)
	if alive < len(members) {
		// Say why, on stderr (the bench passes it on): which side ended them, and how.
		told := 0
		for _, m := range members {
			select {
			case <-m.conn.Done():
				if told < 3 {
					fmt.Fprintf(os.Stderr, "cleanrelay bench-hold: a connection to %s ended during the hold: %v\n", wsURL, m.conn.Err())
					told++
				}
			default:
			}
		}
	}
	return say(holdLine{Final: true, Alive: alive})
}

func aliveCount(members []*member) int {
	alive := 0
	for _, m := range members {
		if m == nil {
			continue
		}
		select {
		case <-m.conn.Done():
		default:
			alive++
		}
	}
	return alive
}

// holder is one running client process of IdleNodes.
type holder struct {
	node  int
	conns int
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan holdLine
	waitc chan error
	out   *tailBuffer
}

func (h *holder) next(ctx context.Context, what string) (holdLine, error) {
	select {
	case l, ok := <-h.lines:
		if !ok {
			return l, fmt.Errorf("client process ended before it was %s: %v (%s)", what, <-h.waitc, h.out)
		}
		if l.Error != "" {
			return l, fmt.Errorf("client process: %s", l.Error)
		}
		return l, nil
	case <-ctx.Done():
		return holdLine{}, fmt.Errorf("client process not %s: %w", what, ctx.Err())
	}
}

// IdleNodes runs the idle workload over several relay nodes: cfg.Conns connections (spread evenly, an even
// number on each node, in rooms of two on one node) held by cfg.ClientProcs client processes (at least one per
// node; each holds part of one node's share), idle for cfg.Hold. It reports every node's RSS before and after,
// the total, and how long the setup took.
func IdleNodes(ctx context.Context, nodes []*Server, cfg IdleConfig, hc HoldCmd) (*Result, error) {
	if len(nodes) == 0 || cfg.Conns < 2*len(nodes) {
		return nil, errors.New("idle over nodes needs a node and at least 2 connections per node")
	}
	procs := max(cfg.ClientProcs, len(nodes))
	procs = (procs + len(nodes) - 1) / len(nodes) * len(nodes) // the same number for every node
	perNode := (cfg.Conns/len(nodes) + 1) / 2 * 2
	perProc := procs / len(nodes)
	if perNode/2 < perProc {
		return nil, fmt.Errorf("%d connections a node cannot be split over %d client processes", perNode, perProc)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	rss0 := make([]int64, len(nodes))
	for i, s := range nodes {
		var err error
		if rss0[i], err = RSS(s.PID); err != nil {
			return nil, err
		}
	}
	meters := make([]*meter, len(nodes))
	for i, s := range nodes {
		var err error
		if meters[i], err = startMeter(s.PID); err != nil {
			return nil, err
		}
	}
	start := time.Now()
	var holders []*holder
	defer func() {
		for _, h := range holders {
			h.stdin.Close()
		}
		for _, h := range holders {
			select {
			case <-h.waitc:
			case <-time.After(30 * time.Second):
				h.cmd.Process.Kill()
			}
		}
	}()
	for p := range procs {
		node := p % len(nodes)
		k := p / len(nodes)
		conns := perNode / 2 / perProc * 2
		if k < perNode/2%perProc {
			conns += 2
		}
		h, err := startHolder(hc, nodes[node].URL, fmt.Sprintf("127.0.0.%d", 2+p%250), conns)
		if err != nil {
			return nil, err
		}
		h.node = node
		holders = append(holders, h)
	}
	var tool0, tool1 int64
	var toolCPU time.Duration
	for _, h := range holders {
		l, err := h.next(ctx, "started")
		if err != nil {
			return nil, err
		}
		tool0 += l.RSS
	}
	var ready atomic.Int64
	stopProgress := progress(cfg.Progress, "idle over nodes", &ready, int64(perNode*len(nodes)))
	errc := make(chan error, len(holders))
	var wg sync.WaitGroup
	for _, h := range holders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := h.next(ctx, "ready")
			if err == nil && l.Alive != h.conns {
				err = fmt.Errorf("a client process made %d of its %d connections", l.Alive, h.conns)
			}
			ready.Add(int64(l.Alive))
			errc <- err
		}()
	}
	wg.Wait()
	stopProgress()
	close(errc)
	for err := range errc {
		if err != nil {
			return nil, fmt.Errorf("failed to connect %d idle members over %d nodes: %w", perNode*len(nodes), len(nodes), err)
		}
	}
	setup := time.Since(start)
	select {
	case <-time.After(cfg.Hold):
	case <-ctx.Done():
		return nil, fmt.Errorf("idle run over nodes: %w", ctx.Err())
	}
	rss1 := make([]int64, len(nodes))
	var cpu, wall time.Duration
	for i, s := range nodes {
		var err error
		if rss1[i], err = RSS(s.PID); err != nil {
			return nil, err
		}
		if err := meters[i].stop(); err != nil {
			return nil, err
		}
		cpu += meters[i].serverCPU
		wall = max(wall, meters[i].wall)
	}
	for _, h := range holders {
		if c, err := CPUTime(h.cmd.Process.Pid); err == nil {
			toolCPU += c
		}
	}
	alive := 0
	for _, h := range holders {
		h.stdin.Close()
		l, err := h.next(ctx, "final")
		if err != nil {
			return nil, err
		}
		alive += l.Alive
		tool1 += l.RSS
	}
	n := perNode * len(nodes)
	r := &Result{Workload: "idle", Server: nodes[0].Name, Seconds: wall.Seconds(), ServerCPU: cpu.Seconds(),
		ToolCPU: toolCPU.Seconds(), Errors: int64(n - alive)}
	var perNodeText []string
	var before, after int64
	for i := range nodes {
		before += rss0[i]
		after += rss1[i]
		perNodeText = append(perNodeText, fmt.Sprintf("%d:%d:%d:%.0f", perNode, rss0[i], rss1[i], float64(rss1[i]-rss0[i])/float64(perNode)))
	}
	r.Idle = &IdleResult{Conns: n, Alive: alive, HoldSeconds: cfg.Hold.Seconds(),
		ServerRSSBefore: before, ServerRSSAfter: after, ServerPerConn: float64(after-before) / float64(n),
		ToolRSSBefore: tool0, ToolRSSAfter: tool1, ToolPerConn: float64(tool1-tool0) / float64(n),
		SourceAddrs: len(holders), Nodes: len(nodes), ClientProcs: len(holders), SetupSeconds: setup.Seconds(),
		ByNode: strings.Join(perNodeText, " ")}
	return r, nil
}

// startHolder starts one client process and reads its lines.
func startHolder(hc HoldCmd, wsURL, source string, conns int) (*holder, error) {
	args := append(append([]string(nil), hc.Args...), "--url", wsURL, "--source", source, "--conns", fmt.Sprint(conns))
	cmd := exec.Command(hc.Bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	h := &holder{conns: conns, cmd: cmd, lines: make(chan holdLine, 4), waitc: make(chan error, 1), out: &tailBuffer{max: 4 << 10}}
	cmd.Stderr = io.MultiWriter(h.out, os.Stderr) // a client process says on stderr why connections ended
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if h.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("failed to start a client process: %w", err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var l holdLine
			if json.Unmarshal(sc.Bytes(), &l) != nil {
				l.Error = "malformed line " + sc.Text()
			}
			h.lines <- l
		}
		close(h.lines)
		h.waitc <- cmd.Wait()
		close(h.waitc)
	}()
	return h, nil
}
