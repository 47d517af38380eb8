package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Result is one workload run against one server: one JSON line, one row of the table. Exactly one of Pairs,
// Idle, Connect, Soak and NodeDeath is set; every field of it, and of Result, is filled.
type Result struct {
	Workload  string  `json:"workload"` // pairs, idle, connect, soak or nodedeath
	Server    string  `json:"server"`   // relay or floor
	Seconds   float64 `json:"seconds"`  // wall time of the measured part
	ServerCPU float64 `json:"server_cpu_s"`
	ToolCPU   float64 `json:"tool_cpu_s"`
	Errors    int64   `json:"errors"` // failed dials, requests and sends, unexpected events; must be 0
	// ErrorKinds says what the errors were, most frequent first ("3× room closed: slow; 1× send: …").
	ErrorKinds string `json:"error_kinds,omitempty"`

	Pairs   *PairsResult   `json:"pairs,omitempty"`
	Idle    *IdleResult    `json:"idle,omitempty"`
	Connect *ConnectResult `json:"connect,omitempty"`
	Soak    *SoakResult    `json:"soak,omitempty"`
	// NodeDeath is a node-death run's; its Server is the node killed, and ServerCPU the surviving nodes'.
	NodeDeath *NodeDeathResult `json:"nodedeath,omitempty"`

	// VsFloor holds the relay's figures divided by the floor's from the same invocation (latency: the
	// difference in ms), when both ran. Absent on the floor's own line.
	VsFloor map[string]float64 `json:"vs_floor,omitempty"`
}

// PairsResult is what a pairs run measured.
type PairsResult struct {
	Rooms       int     `json:"rooms"`
	Frames      int     `json:"frames_per_member"`
	Size        int     `json:"size"`
	Window      int     `json:"window"`          // unacknowledged frames per sender (0 with a fixed rate)
	Rate        float64 `json:"rate_per_member"` // frames/s per member (0 when unthrottled)
	Delivered   int64   `json:"delivered"`
	FramesPerS  float64 `json:"frames_per_s"`
	MiBPerS     float64 `json:"payload_mib_per_s"`
	LatP50ms    float64 `json:"lat_p50_ms"`
	LatP90ms    float64 `json:"lat_p90_ms"`
	LatP99ms    float64 `json:"lat_p99_ms"`
	LatMaxms    float64 `json:"lat_max_ms"`
	Lost        int64   `json:"lost"`   // sent and never received
	Unsent      int64   `json:"unsent"` // never sent: the run's timeout came first (the tool fell behind its rate)
	Duplicated  int64   `json:"duplicated"`
	Reordered   int64   `json:"reordered"`
	LostNotices int64   `json:"lost_notices"` // lost events the relay sent (whether or not a frame was missing)
	SourceAddrs int     `json:"source_addrs"`
}

// IdleResult is what an idle run measured.
type IdleResult struct {
	Conns           int     `json:"conns"`
	Alive           int     `json:"alive"` // connections still open after the hold
	HoldSeconds     float64 `json:"hold_s"`
	ServerRSSBefore int64   `json:"server_rss_before"`
	ServerRSSAfter  int64   `json:"server_rss_after"`
	ServerPerConn   float64 `json:"server_bytes_per_conn"`
	ToolRSSBefore   int64   `json:"tool_rss_before"`
	ToolRSSAfter    int64   `json:"tool_rss_after"`
	// ToolPerConn is the Go heap and stacks in use per connection (not RSS) when the bench's process holds the
	// connections; the client processes' RSS per connection when they do (ClientProcs > 0).
	ToolPerConn float64 `json:"tool_bytes_per_conn"`
	SourceAddrs int     `json:"source_addrs"`
	// Nodes is how many relay nodes held the connections (the server's figures are their sums), ClientProcs how
	// many client processes held them (0: the bench's own), SetupSeconds how long connecting them all took, and
	// ByNode each node's "CONNS:RSS-BEFORE:RSS-AFTER:BYTES-PER-CONN", space-separated.
	Nodes        int     `json:"nodes"`
	ClientProcs  int     `json:"client_procs"`
	SetupSeconds float64 `json:"setup_s"`
	ByNode       string  `json:"by_node"`
}

// ConnectResult is what a connect run measured.
type ConnectResult struct {
	Conns       int     `json:"conns"`
	Concurrency int     `json:"concurrency"`
	Auth        bool    `json:"auth"`       // logged-in sessions (a ticket in every handshake)
	ProofEach   bool    `json:"proof_each"` // a fresh key proof and ticket for every connection
	PerS        float64 `json:"conns_per_s"`
	LatP50ms    float64 `json:"lat_p50_ms"`
	LatP90ms    float64 `json:"lat_p90_ms"`
	LatP99ms    float64 `json:"lat_p99_ms"`
	LatMaxms    float64 `json:"lat_max_ms"`
	SourceAddrs int     `json:"source_addrs"`
}

// SoakResult is what a soak run measured: the honest rooms' delivery, the server's RSS sampled along the way
// ("SECONDS:RSS:CREATE-OK" each), and how often a new user could create a room.
type SoakResult struct {
	Idle       int     `json:"idle_conns"`
	Rooms      int     `json:"rooms"`
	Rate       float64 `json:"rate_per_member"`
	Floods     string  `json:"floods"`
	FloodOps   int64   `json:"flood_ops"`
	FloodOpsBy string  `json:"flood_ops_by_flood"` // "name:ops name:ops …"
	// FloodRateBy is each flood's operations a second ("name:rate …"); FloodStarved the floods that made
	// fewer than one a second ("name:ops …", or "none"): a flood the machine gave no CPU did not press the relay.
	FloodRateBy  string `json:"flood_rate_by_flood"`
	FloodStarved string `json:"flood_starved"`
	// FloodProcess says where the floods ran: "in-process" (beside the honest clients), or in a child process
	// at the lowest priority, with FloodCPU its CPU time in seconds; FloodSeconds how long they ran.
	FloodProcess string  `json:"flood_process"`
	FloodSeconds float64 `json:"flood_s"`
	FloodCPU     float64 `json:"flood_cpu_s"`
	Delivered    int64   `json:"delivered"`
	Lost         int64   `json:"lost"`   // sent and never received
	Unsent       int64   `json:"unsent"` // never sent: the run's timeout came first (the tool fell behind its rate)
	Duplicated   int64   `json:"duplicated"`
	Reordered    int64   `json:"reordered"`
	LostNotices  int64   `json:"lost_notices"`
	LatP50ms     float64 `json:"lat_p50_ms"`
	LatP99ms     float64 `json:"lat_p99_ms"`
	LatMaxms     float64 `json:"lat_max_ms"`
	RSSFirst     int64   `json:"server_rss_first"`
	RSSLast      int64   `json:"server_rss_last"`
	RSSMax       int64   `json:"server_rss_max"`
	RSSSamples   string  `json:"server_rss_samples"`
	CreateProbes int     `json:"create_probes"`
	CreateFailed int     `json:"create_failed"`
	// AccountProbes and AccountFailed count new users who registered, logged in and published a key at the
	// samples (only against a relay with accounts, SoakConfig.Accounts).
	AccountProbes int `json:"account_probes"`
	AccountFailed int `json:"account_failed"`
	// ProbeFailures says why probes failed, by kind, most frequent first ("" when none did).
	ProbeFailures string `json:"probe_failures,omitempty"`
}

// NodeDeathResult is what a node-death run measured. Times are from the SIGKILL. Affected members are those
// whose socket was on the dead node, Resumed those of them whose resume on another node was answered; a room is
// Flowing once each of its members has been given a frame its peer sent after the kill (FlowP50ms … over the
// rooms, the later of the two). Survivors are the members on the other nodes, SurvivorsKept those whose socket
// stayed open throughout. ResumeRetries counts resumes answered busy (asked before the cluster could say
// where the place is: the room's new sequencer did not have it yet) and asked again.
type NodeDeathResult struct {
	Nodes         int     `json:"nodes"`
	Rooms         int     `json:"rooms"`
	Members       int     `json:"members"`
	Frames        int     `json:"frames_per_member"`
	Size          int     `json:"size"`
	Rate          float64 `json:"rate_per_member"`
	BeforeS       float64 `json:"before_s"`
	AfterS        float64 `json:"after_s"`
	Affected      int     `json:"affected"`
	Resumed       int     `json:"resumed"`
	ResumeP50ms   float64 `json:"resume_p50_ms"`
	ResumeP99ms   float64 `json:"resume_p99_ms"`
	ResumeMaxms   float64 `json:"resume_max_ms"`
	ResumeRetries int64   `json:"resume_retries"`
	Flowing       int     `json:"flowing"`
	FlowP50ms     float64 `json:"flow_p50_ms"`
	FlowP99ms     float64 `json:"flow_p99_ms"`
	FlowMaxms     float64 `json:"flow_max_ms"`
	// TakenOver is how many rooms the dead node sequenced (made there), whose mirrors took them over; the
	// Taken figures are over their members and rooms, the Other figures over the rooms sequenced elsewhere.
	TakenOver        int     `json:"taken_over"`
	ResumeTakenP50ms float64 `json:"resume_taken_p50_ms"`
	ResumeTakenP99ms float64 `json:"resume_taken_p99_ms"`
	ResumeOtherP50ms float64 `json:"resume_other_p50_ms"`
	ResumeOtherP99ms float64 `json:"resume_other_p99_ms"`
	FlowTakenP50ms   float64 `json:"flow_taken_p50_ms"`
	FlowTakenP99ms   float64 `json:"flow_taken_p99_ms"`
	FlowOtherP50ms   float64 `json:"flow_other_p50_ms"`
	FlowOtherP99ms   float64 `json:"flow_other_p99_ms"`
	Survivors        int     `json:"survivors"`
	SurvivorsKept    int     `json:"survivors_kept"`
	Delivered        int64   `json:"delivered"`
	Lost             int64   `json:"lost"`   // sent and never received
	Unsent           int64   `json:"unsent"` // never sent: the run ended first
	Duplicated       int64   `json:"duplicated"`
	Reordered        int64   `json:"reordered"`
	LostNotices      int64   `json:"lost_notices"`
	// Gaps says, when frames were lost or duplicated, in which kind of room, sent by which member, and from
	// when: "not given (room taken over, sent by the dead node's member): 120 frames, 3 members, from the frame
	// sent -0.2 to +0.9 s from the kill; …" (each member's first such frame, the earliest and the latest of
	// them); "none" when none were.
	Gaps        string `json:"gaps"`
	SourceAddrs int    `json:"source_addrs"`
}

// Compare fills r.VsFloor from the floor's result of the same workload.
func (r *Result) Compare(floor *Result) {
	v := map[string]float64{}
	ratio := func(name string, a, b float64) {
		if b != 0 {
			v[name] = a / b
		}
	}
	ratio("server_cpu_s", r.ServerCPU, floor.ServerCPU)
	switch {
	case r.Pairs != nil && floor.Pairs != nil:
		ratio("frames_per_s", r.Pairs.FramesPerS, floor.Pairs.FramesPerS)
		v["lat_p50_ms_delta"] = r.Pairs.LatP50ms - floor.Pairs.LatP50ms
		v["lat_p99_ms_delta"] = r.Pairs.LatP99ms - floor.Pairs.LatP99ms
	case r.Idle != nil && floor.Idle != nil:
		ratio("server_bytes_per_conn", r.Idle.ServerPerConn, floor.Idle.ServerPerConn)
	case r.Connect != nil && floor.Connect != nil:
		ratio("conns_per_s", r.Connect.PerS, floor.Connect.PerS)
		v["lat_p99_ms_delta"] = r.Connect.LatP99ms - floor.Connect.LatP99ms
	}
	r.VsFloor = v
}

// WriteJSON writes r as one JSON line.
func (r *Result) WriteJSON(w io.Writer) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// WriteTable writes a human table of results, one row per run, grouped by workload.
func WriteTable(w io.Writer, results []*Result) error {
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', tabwriter.AlignRight)
	for _, kind := range []string{"pairs", "idle", "connect", "soak", "nodedeath"} {
		var rows []*Result
		for _, r := range results {
			if r.Workload == kind {
				rows = append(rows, r)
			}
		}
		if len(rows) == 0 {
			continue
		}
		switch kind {
		case "pairs":
			fmt.Fprintln(tw, "pairs\tserver\trooms\tframes×size\tmode\tframes/s\tMiB/s\tp50 ms\tp90 ms\tp99 ms\tmax ms\tlost\tdup\treord\tlost notices\tsrv cpu s\ttool cpu s\terrors\tvs floor\t")
			for _, r := range rows {
				p := r.Pairs
				mode := fmt.Sprintf("window %d", p.Window)
				if p.Rate > 0 {
					mode = fmt.Sprintf("%g/s", p.Rate)
				}
				fmt.Fprintf(tw, "\t%s\t%d\t%d×%d\t%s\t%.0f\t%.1f\t%.3f\t%.3f\t%.3f\t%.3f\t%d\t%d\t%d\t%d\t%.2f\t%.2f\t%d\t%s\t\n",
					r.Server, p.Rooms, p.Frames, p.Size, mode, p.FramesPerS, p.MiBPerS, p.LatP50ms, p.LatP90ms, p.LatP99ms,
					p.LatMaxms, p.Lost, p.Duplicated, p.Reordered, p.LostNotices, r.ServerCPU, r.ToolCPU, r.Errors, vs(r))
			}
		case "idle":
			fmt.Fprintln(tw, "idle\tserver\tnodes\tclient procs\tconns\talive\tsetup s\tsrv RSS before\tsrv RSS after\tsrv B/conn\ttool B/conn\tsrv cpu s\ttool cpu s\terrors\tvs floor\t")
			for _, r := range rows {
				i := r.Idle
				fmt.Fprintf(tw, "\t%s\t%d\t%d\t%d\t%d\t%.1f\t%s\t%s\t%.0f\t%.0f\t%.2f\t%.2f\t%d\t%s\t\n", r.Server, i.Nodes, i.ClientProcs, i.Conns, i.Alive,
					i.SetupSeconds, mib(i.ServerRSSBefore), mib(i.ServerRSSAfter), i.ServerPerConn, i.ToolPerConn, r.ServerCPU, r.ToolCPU, r.Errors, vs(r))
			}
		case "connect":
			fmt.Fprintln(tw, "connect\tserver\tauth\tproof each\tconns\tconcurrency\tconns/s\tp50 ms\tp90 ms\tp99 ms\tmax ms\tsrv cpu s\ttool cpu s\terrors\tvs floor\t")
			for _, r := range rows {
				c := r.Connect
				fmt.Fprintf(tw, "\t%s\t%v\t%v\t%d\t%d\t%.0f\t%.3f\t%.3f\t%.3f\t%.3f\t%.2f\t%.2f\t%d\t%s\t\n", r.Server, c.Auth, c.ProofEach, c.Conns,
					c.Concurrency, c.PerS, c.LatP50ms, c.LatP90ms, c.LatP99ms, c.LatMaxms, r.ServerCPU, r.ToolCPU, r.Errors, vs(r))
			}
		case "soak":
			fmt.Fprintln(tw, "soak\tserver\tidle\trooms\trate\tfloods\tflood ops\tflood CPU s\tstarved floods\tdelivered\tp50 ms\tp99 ms\tmax ms\tlost\tunsent\tdup\treord\tlost notices\tRSS first\tRSS max\tRSS last\tcreates failed\taccounts failed\terrors\t")
			for _, r := range rows {
				k := r.Soak
				fmt.Fprintf(tw, "\t%s\t%d\t%d\t%g/s\t%s\t%d\t%.1f\t%s\t%d\t%.3f\t%.3f\t%.3f\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%d/%d\t%d/%d\t%d\t\n", r.Server, k.Idle, k.Rooms,
					k.Rate, k.Floods, k.FloodOps, k.FloodCPU, k.FloodStarved, k.Delivered, k.LatP50ms, k.LatP99ms, k.LatMaxms, k.Lost, k.Unsent, k.Duplicated, k.Reordered,
					k.LostNotices, mib(k.RSSFirst), mib(k.RSSMax), mib(k.RSSLast), k.CreateFailed, k.CreateProbes, k.AccountFailed, k.AccountProbes, r.Errors)
			}
		case "nodedeath":
			fmt.Fprintln(tw, "nodedeath\tnodes\trooms\ttaken over\trate\taffected\tresumed\tresume p50/p99/max ms\ttaken over p50/p99\tother p50/p99\tretries\tflowing\tflow p50/p99/max ms\ttaken over p50/p99\tother p50/p99\tsurvivors kept\tdelivered\tlost\tunsent\tdup\treord\tlost notices\tsrv cpu s\ttool cpu s\terrors\t")
			for _, r := range rows {
				d := r.NodeDeath
				fmt.Fprintf(tw, "\t%d\t%d\t%d\t%g/s\t%d\t%d\t%.0f/%.0f/%.0f\t%.0f/%.0f\t%.0f/%.0f\t%d\t%d\t%.0f/%.0f/%.0f\t%.0f/%.0f\t%.0f/%.0f\t%d/%d\t%d\t%d\t%d\t%d\t%d\t%d\t%.2f\t%.2f\t%d\t\n",
					d.Nodes, d.Rooms, d.TakenOver, d.Rate, d.Affected, d.Resumed, d.ResumeP50ms, d.ResumeP99ms, d.ResumeMaxms,
					d.ResumeTakenP50ms, d.ResumeTakenP99ms, d.ResumeOtherP50ms, d.ResumeOtherP99ms, d.ResumeRetries, d.Flowing,
					d.FlowP50ms, d.FlowP99ms, d.FlowMaxms, d.FlowTakenP50ms, d.FlowTakenP99ms, d.FlowOtherP50ms, d.FlowOtherP99ms,
					d.SurvivorsKept, d.Survivors, d.Delivered, d.Lost, d.Unsent, d.Duplicated, d.Reordered, d.LostNotices, r.ServerCPU, r.ToolCPU, r.Errors)
			}
		}
		fmt.Fprintln(tw, "\t")
	}
	return tw.Flush()
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// vs renders the floor comparison compactly: ratios as ×, deltas in ms.
func vs(r *Result) string {
	if r.VsFloor == nil {
		return "-"
	}
	keys := make([]string, 0, len(r.VsFloor))
	for k := range r.VsFloor {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		if name, ok := strings.CutSuffix(k, "_delta"); ok {
			parts = append(parts, fmt.Sprintf("%s %+.3f", name, r.VsFloor[k]))
		} else {
			parts = append(parts, fmt.Sprintf("%s %.2f×", k, r.VsFloor[k]))
		}
	}
	return strings.Join(parts, ", ")
}

// percentiles returns p50, p90, p99 and max of ds in milliseconds; it sorts ds.
func percentiles(ds []time.Duration) (p50, p90, p99, max float64) {
	if len(ds) == 0 {
		return 0, 0, 0, 0
	}
	slices.Sort(ds)
	at := func(q float64) float64 {
		i := int(q * float64(len(ds)-1))
		return float64(ds[i]) / float64(time.Millisecond)
	}
	return at(0.50), at(0.90), at(0.99), float64(ds[len(ds)-1]) / float64(time.Millisecond)
}

// positive names the JSON fields that are measured quantities which cannot be zero in a run that worked.
var positive = map[string]bool{
	"seconds": true, "tool_cpu_s": true, "rooms": true, "frames_per_member": true, "size": true, "delivered": true,
	"frames_per_s": true, "payload_mib_per_s": true, "lat_p50_ms": true, "lat_p90_ms": true, "lat_p99_ms": true,
	"lat_max_ms": true, "source_addrs": true, "conns": true, "alive": true, "hold_s": true, "server_rss_before": true,
	"server_rss_after": true, "tool_rss_before": true, "tool_rss_after": true, "concurrency": true, "conns_per_s": true,
	"nodes": true, "setup_s": true, "members": true, "before_s": true, "after_s": true, "affected": true, "resumed": true,
	"resume_p50_ms": true, "resume_p99_ms": true, "resume_max_ms": true, "flowing": true, "flow_p50_ms": true,
	"flow_p99_ms": true, "flow_max_ms": true, "survivors": true, "taken_over": true, "resume_taken_p50_ms": true,
	"resume_taken_p99_ms": true, "flow_taken_p50_ms": true, "flow_taken_p99_ms": true, "flow_other_p50_ms": true,
	"flow_other_p99_ms": true, "resume_other_p50_ms": true, "resume_other_p99_ms": true,
}

// ValidateJSONLine checks one JSON line of a run of workload: every field of Result and of that workload's
// object present, a number or string (never null), measured quantities positive, no other workload's object,
// no unknown field. It is what the tests hold the tool's output to.
func ValidateJSONLine(line []byte, workload string) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(line, &m); err != nil {
		return fmt.Errorf("not a JSON object: %w: %s", err, line)
	}
	var w string
	json.Unmarshal(m["workload"], &w)
	if w != workload {
		return fmt.Errorf("workload %q, want %q: %s", w, workload, line)
	}
	var sub any
	switch workload {
	case "pairs":
		sub = PairsResult{}
	case "idle":
		sub = IdleResult{}
	case "connect":
		sub = ConnectResult{}
	case "soak":
		sub = SoakResult{}
	case "nodedeath":
		sub = NodeDeathResult{}
	default:
		return fmt.Errorf("unknown workload %q", workload)
	}
	if err := checkFields(m, reflect.TypeOf(Result{}), workload); err != nil {
		return fmt.Errorf("%w: %s", err, line)
	}
	var inner map[string]json.RawMessage
	if err := json.Unmarshal(m[workload], &inner); err != nil {
		return fmt.Errorf("field %s is not an object: %s", workload, line)
	}
	if err := checkFields(inner, reflect.TypeOf(sub), ""); err != nil {
		return fmt.Errorf("%s: %w: %s", workload, err, line)
	}
	if workload == "pairs" {
		var p PairsResult
		json.Unmarshal(m[workload], &p)
		if (p.Window > 0) == (p.Rate > 0) {
			return fmt.Errorf("pairs: exactly one of window and rate_per_member must be set: %s", line)
		}
	}
	return nil
}

// checkFields checks the JSON object m against struct type t. Pointer fields (the workload objects and
// vs_floor) are optional, except the one named want, which must be there.
func checkFields(m map[string]json.RawMessage, t reflect.Type, want string) error {
	known := map[string]bool{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		known[name] = true
		raw, ok := m[name]
		if f.Type.Kind() == reflect.Pointer || f.Type.Kind() == reflect.Map {
			if name == want && !ok {
				return fmt.Errorf("missing %s", name)
			}
			if name != want && name != "vs_floor" && ok {
				return fmt.Errorf("unexpected %s", name)
			}
			continue
		}
		if !ok && opts == "omitempty" {
			continue // left out when empty (error_kinds of a run with no errors)
		}
		if !ok || string(raw) == "null" {
			return fmt.Errorf("missing %s", name)
		}
		if f.Type.Kind() == reflect.Bool {
			var b bool
			if json.Unmarshal(raw, &b) != nil {
				return fmt.Errorf("%s is not a boolean", name)
			}
			continue
		}
		if f.Type.Kind() == reflect.String {
			var s string
			if json.Unmarshal(raw, &s) != nil || s == "" {
				return fmt.Errorf("%s is not a non-empty string", name)
			}
			continue
		}
		var x float64
		if err := json.Unmarshal(raw, &x); err != nil {
			return fmt.Errorf("%s is not a number", name)
		}
		if positive[name] && !(x > 0) {
			return fmt.Errorf("%s is %v, want > 0", name, x)
		}
		if x < 0 && !strings.HasSuffix(name, "per_conn") {
			return fmt.Errorf("%s is negative", name)
		}
	}
	for name := range m {
		if !known[name] {
			return fmt.Errorf("unknown field %s", name)
		}
	}
	return nil
}
