package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"debug/elf"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cleanrelay/cleanrelay/relay/client"
)

var memdumpFlag = flag.Bool("memdump", false, "run the test that dumps the live relay's memory with gcore (CI passes it)")

// TestNoLeftoversInMemory runs "cleanrelay serve --local-only", lets one room be burned and another be dropped
// by the grace timer, has dialog messages go through the mailbox (read and acknowledged, and expired), dumps the live process with gcore and searches the whole dump for those rooms' frames
// (of 200 bytes, and two of 20000, larger than the WebSocket buffers), room ids, capabilities and resume
// tokens, as text and as raw bytes, and for those messages (clean-server contract, promise 3:
// docs/threat-model.md §0). None may be there.
//
// A third room stays alive with frames nobody acknowledged, and one mailbox message waits: they and the room's
// id must be found, which proves the dump and the search see what the relay holds.
//
// The relay runs as in production, core dumps off and non-dumpable (harden.go): that stops a crash from
// writing memory to disk and other processes of the same user from reading it, but not root, whose gcore
// (ptrace with CAP_SYS_PTRACE) reads it all. So this test runs as root (CI does) and makes the same dump an
// attacker with root on a seized machine would.
func TestNoLeftoversInMemory(t *testing.T) {
	if !*memdumpFlag {
		t.Skip("dumps the relay's memory with gcore; run with -memdump (CI does, from .ci/test-clean.sh)")
	}
	gcore, err := exec.LookPath("gcore")
	if err != nil {
		t.Fatalf("-memdump given but gcore (Debian package gdb) is missing: %v", err)
	}
	cmd, lines, stderr := startServeLines(t, 2, nil, "--local-only", "--listen", "127.0.0.1:0",
		"--admin-listen", "127.0.0.1:0", "--grace", "300ms")
	url := field(t, lines[0], "cleanrelay: serving on ")
	admin := field(t, lines[1], "cleanrelay: admin on ")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// The positive control: a live room whose frames are buffered (never acknowledged) and whose id the
	// relay must hold.
	c1, c2, rc1, rc2 := chatPair(t, url)
	alive := sendFrames(t, c1, rc1.Ch, c2, 5, 200)
	_ = rc2

	// While the rooms below are busy, every thread of the relay is interrupted by signals, thousands of times a
	// second: each signal writes the registers it interrupted into a frame on the thread's signal stack, where
	// they stay until the next signal. Go's runtime sends such signals itself (SIGURG, to preempt), but
	// rarely; here a frame or token that passes through the registers is likely to be caught in the act and
	// left in memory for the dump below to find.
	stopSignals := signalThreads(t, cmd.Process.Pid)

	// A room that is burned.
	a1, a2, ra1, ra2 := chatPair(t, url)
	burned := append(sendFrames(t, a1, ra1.Ch, a2, 10, 200), sendFrames(t, a2, ra2.Ch, a1, 10, 200)...)
	// Frames larger than the WebSocket read and write buffers take other paths through both.
	burned = append(burned, sendFrames(t, a1, ra1.Ch, a2, 2, 20000)...)
	if err := a1.Burn(ra1.Ch); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client.Conn{a1, a2} {
		waitEvent(t, c, func(ev client.Event) bool { return ev.Kind == client.KindClosed && ev.Reason == "burned" })
	}

	// A room dropped by the grace timer, after one member dropped and resumed on a new connection.
	g1, g2, rg1, rg2 := chatPair(t, url)
	graced := append(sendFrames(t, g1, rg1.Ch, g2, 10, 200), sendFrames(t, g2, rg2.Ch, g1, 5, 200)...)
	g2.Close()
	g2b, err := client.Dial(ctx, "ws"+strings.TrimPrefix(url, "http")+"ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g2b.Resume(ctx, rg2.Resume, rg2.Seq); err != nil {
		t.Fatal(err)
	}
	graced = append(graced, sendFrames(t, g2b, rg2.Ch, g1, 5, 200)...)
	// Dialog messages through the mailbox: read and acknowledged, expired unread, and one still waiting.
	ra := relayAccess{url: url, http: &http.Client{Timeout: 30 * time.Second}}
	mail := mailboxTraffic(ctx, t, register(ctx, t, ra, &userData{}, "alice"), register(ctx, t, ra, &userData{}, "bob"), 1)
	// The last signal each thread got came while the rooms were busy; its frame stays for the dump to search.
	stopSignals()
	g1.Close()
	g2b.Close()
	waitGauge(t, admin, "rooms", 1) // only the live room is left: the grace ran out and the room was dropped
	// And the connections of its members have ended: a writer that copied one of the room's frames (or its
	// presence) into its buffer just before the drop holds that copy until its write returns, at most
	// WriteTimeout later, and zeroes it then (docs/threat-model.md, Memory). Four remain: c1, c2, a1, a2.
	waitGauge(t, admin, "connections", 4)

	// Keep the clients of the burned room connected, as a real client that stays on the page would.
	needles := []needle{}
	for _, s := range []struct {
		what   string
		frames [][]byte
		rooms  []*client.Room
	}{{"burned", burned, []*client.Room{ra1, ra2}}, {"grace", graced, []*client.Room{rg1, rg2}}} {
		needles = append(needles, frameNeedles(s.what, s.frames)...)
		needles = append(needles, secretNeedles(t, s.what+" room id", s.rooms[0].ID)...)
		needles = append(needles, secretNeedles(t, s.what+" capability", s.rooms[0].Cap)...)
		for i, r := range s.rooms {
			needles = append(needles, secretNeedles(t, fmt.Sprintf("%s resume token %d", s.what, i+1), r.Resume)...)
		}
	}
	needles = append(needles, frameNeedles("delivered mailbox", mail.delivered)...)
	needles = append(needles, frameNeedles("expired mailbox", mail.expired)...)
	control := frameNeedles("alive", alive)
	control = append(control, frameNeedles("waiting mailbox", mail.waiting)...)
	control = append(control, secretNeedles(t, "alive room id", rc1.ID)...)

	core := filepath.Join(t.TempDir(), "core")
	out, err := exec.Command(gcore, "-o", core, fmt.Sprint(cmd.Process.Pid)).CombinedOutput()
	core = fmt.Sprintf("%s.%d", core, cmd.Process.Pid)
	if err != nil {
		t.Fatalf("gcore failed (it needs ptrace access to the relay): %v\n%s", err, out)
	}
	defer os.Remove(core)
	all := append(append([]needle(nil), needles...), control...)
	found, size, err := searchCore(core, all)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("searched a %d MiB dump for %d needles (load %s)", size>>20, len(all), loadAverage())

	// The control proves the search: the live room's frames and its id are in the relay's memory.
	for _, n := range control {
		if strings.Contains(n.name, "room id") {
			continue // the id is kept raw or as text; one of the two must be found, below
		}
		if len(found[n.name]) == 0 {
			t.Errorf("positive control: %s not found in the dump; the search cannot be trusted", n.name)
		}
	}
	t.Logf("positive control: the live room's id found %d times as text, %d raw; its first frame %d times",
		len(found["alive room id (text)"]), len(found["alive room id (raw)"]), len(found["alive frame 1 (start)"]))
	if len(found["alive room id (text)"])+len(found["alive room id (raw)"]) == 0 {
		t.Error("positive control: the live room's id is in the dump neither as text nor raw")
	}
	leaked := false
	for _, n := range needles {
		if at := found[n.name]; len(at) > 0 {
			leaked = true
			t.Errorf("%s: %d copies left in memory, at %s\n%s", n.name, len(at), addrs(core, at), surroundings(core, at))
		}
	}
	if dir := os.Getenv("CLEANRELAY_MEMDUMP_KEEP"); leaked && dir != "" {
		kept := filepath.Join(dir, filepath.Base(core))
		if err := os.Rename(core, kept); err != nil {
			t.Logf("could not keep the dump: %v", err)
		} else {
			t.Logf("kept the dump at %s (binary: %s)", kept, cmd.Path)
		}
	}

	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("serve exited with %v after SIGTERM; stderr:\n%s", err, stderr)
	}
}

// sendFrames sends n frames of size random bytes from one client on ch and waits until to received them all.
// It returns the frames.
func sendFrames(t *testing.T, from *client.Conn, ch byte, to *client.Conn, n, size int) [][]byte {
	t.Helper()
	var frames [][]byte
	for range n {
		f := make([]byte, size)
		rand.Read(f)
		if err := from.Send(ch, f); err != nil {
			t.Fatal(err)
		}
		frames = append(frames, f)
	}
	for i := 0; i < n; {
		ev := waitEvent(t, to, func(ev client.Event) bool { return ev.Kind == client.KindFrame })
		if !bytes.Equal(ev.Payload, frames[i]) {
			t.Fatalf("frame %d arrived changed", i)
		}
		i++
	}
	return frames
}

// waitEvent returns the first event of c that ok accepts, skipping others.
func waitEvent(t *testing.T, c *client.Conn, ok func(client.Event) bool) client.Event {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case ev, open := <-c.Events():
			if !open {
				t.Fatalf("connection ended while waiting: %v", c.Err())
			}
			if ok(ev) {
				return ev
			}
		case <-timeout:
			t.Fatal("timed out waiting for an event")
		}
	}
}

// waitGauge waits until the relay's gauge cleanrelay_NAME on the admin listener reads n.
func waitGauge(t *testing.T, admin, name string, n int) {
	t.Helper()
	want := fmt.Sprintf("\ncleanrelay_%s %d\n", name, n)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(admin + "metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if bytes.Contains(body, []byte(want)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the relay's %s never got to %d:\n%s", name, n, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// signalThreads sends SIGURG, which Go's runtime takes for a preemption request and otherwise ignores, to
// every thread of process pid every 100 µs (as far as the ticker keeps up), until the function it returns is
// called.
func signalThreads(t *testing.T, pid int) (stop func()) {
	t.Helper()
	done, over := make(chan struct{}), make(chan struct{})
	sent, start := 0, time.Now()
	go func() {
		defer close(over)
		tick := time.NewTicker(100 * time.Microsecond)
		defer tick.Stop()
		var tids []int
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			if i%100 == 0 { // threads come and go: list them again every 10 ms
				tids = tids[:0]
				entries, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
				for _, e := range entries {
					var tid int
					if _, err := fmt.Sscan(e.Name(), &tid); err == nil {
						tids = append(tids, tid)
					}
				}
			}
			for _, tid := range tids {
				if syscall.Tgkill(pid, tid, syscall.SIGURG) == nil {
					sent++
				}
			}
		}
	}()
	return func() {
		close(done)
		<-over
		t.Logf("sent %d signals to the relay's threads in %v", sent, time.Since(start).Round(time.Millisecond))
		if sent == 0 {
			t.Fatal("no signal reached the relay's threads")
		}
	}
}

// needle is a byte string to look for in the dump.
type needle struct {
	name string
	b    []byte
}

// frameNeedles looks for each frame by its first 32 bytes and by 32 bytes from its middle.
func frameNeedles(what string, frames [][]byte) []needle {
	var ns []needle
	for i, f := range frames {
		mid := len(f)/2 - 16
		ns = append(ns,
			needle{name: fmt.Sprintf("%s frame %d (start)", what, i+1), b: f[:32]},
			needle{name: fmt.Sprintf("%s frame %d (middle)", what, i+1), b: f[mid : mid+32]})
	}
	return ns
}

// secretNeedles looks for an identifier as the base64url text the client saw and as its raw bytes.
func secretNeedles(t *testing.T, what, text string) []needle {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(text)
	if err != nil || len(raw) < 16 {
		t.Fatalf("%s %q is not base64url of 16+ bytes: %v", what, text, err)
	}
	return []needle{{name: what + " (text)", b: []byte(text)}, {name: what + " (raw)", b: raw}}
}

// searchCore streams the file at path through a sliding window and returns, for each needle found, the file
// offsets of its occurrences, and the file's size. Every needle must be at least 8 bytes long.
func searchCore(path string, needles []needle) (map[string][]int64, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	// A needle is a candidate where the 8 bytes at a position equal its first 8; a 64 Ki-entry filter on a
	// hash of those 8 bytes lets almost every position of the dump go by with one table look-up.
	byPrefix := map[uint64][]int{}
	var filter [1 << 16]bool
	maxLen := 0
	for i, n := range needles {
		if len(n.b) < 8 {
			return nil, 0, fmt.Errorf("needle %s is shorter than 8 bytes", n.name)
		}
		p := binary.LittleEndian.Uint64(n.b)
		byPrefix[p] = append(byPrefix[p], i)
		filter[prefixHash(p)] = true
		maxLen = max(maxLen, len(n.b))
	}
	found := map[string][]int64{}
	const chunk = 8 << 20
	buf := make([]byte, 0, chunk+maxLen)
	var base int64 // file offset of buf[0]
	r := bufio.NewReaderSize(f, 1<<20)
	for {
		n, err := io.ReadFull(r, buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		eof := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
		if err != nil && !eof {
			return nil, 0, err
		}
		// Positions from limit on are looked at again with the next chunk, where their needles fit whole.
		limit := len(buf) - (maxLen - 1)
		if eof {
			limit = len(buf)
		}
		for i := 0; i < limit && i+8 <= len(buf); i++ {
			p := binary.LittleEndian.Uint64(buf[i:])
			if !filter[prefixHash(p)] {
				continue
			}
			for _, k := range byPrefix[p] {
				if bytes.HasPrefix(buf[i:], needles[k].b) {
					found[needles[k].name] = append(found[needles[k].name], base+int64(i))
				}
			}
		}
		if eof {
			return found, base + int64(len(buf)), nil
		}
		keep := copy(buf, buf[limit:])
		base += int64(limit)
		buf = buf[:keep]
	}
}

func prefixHash(p uint64) uint16 { return uint16((p * 0x9E3779B97F4A7C15) >> 48) }

// addrs names where file offsets of a core file lie in the dumped process's memory, for the reader who goes
// looking with gdb.
func addrs(core string, offsets []int64) string {
	f, err := elf.Open(core)
	if err != nil {
		return fmt.Sprint(offsets)
	}
	defer f.Close()
	var s []string
	for _, off := range offsets {
		a := fmt.Sprintf("file offset %#x", off)
		for _, p := range f.Progs {
			if p.Type == elf.PT_LOAD && off >= int64(p.Off) && off < int64(p.Off+p.Filesz) {
				a = fmt.Sprintf("%#x", p.Vaddr+uint64(off)-p.Off)
			}
		}
		s = append(s, a)
	}
	return strings.Join(s, " ")
}

// surroundings hex-dumps the bytes around the first few file offsets, to tell what kind of buffer held a copy.
func surroundings(core string, offsets []int64) string {
	f, err := os.Open(core)
	if err != nil {
		return ""
	}
	defer f.Close()
	var s strings.Builder
	for _, off := range offsets[:min(len(offsets), 3)] {
		from := max(0, off-256)
		b := make([]byte, 384)
		n, _ := f.ReadAt(b, from)
		fmt.Fprintf(&s, "around file offset %#x (from %#x):\n%s", off, from, hex.Dump(b[:n]))
	}
	return s.String()
}

// loadAverage is the machine's load, reported with the dump's size: the test's duration depends on both.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

// TestSearchCore: the sliding window finds every occurrence once, also across the seams between chunks and at
// the very end of the file.
func TestSearchCore(t *testing.T) {
	const size = 17<<20 + 5
	data := make([]byte, size)
	a, b := make([]byte, 43), make([]byte, 16)
	rand.Read(a)
	rand.Read(b)
	at := map[string][]int64{
		"a": {0, 8<<20 - 20, 16<<20 + 100, size - 43}, // the window is 8 MiB
		"b": {12345, 16<<20 - 8, size - 16 - 50},
	}
	for name, offs := range at {
		n := a
		if name == "b" {
			n = b
		}
		for _, off := range offs {
			copy(data[off:], n)
		}
	}
	path := filepath.Join(t.TempDir(), "core")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	absent := make([]byte, 32)
	rand.Read(absent)
	found, got, err := searchCore(path, []needle{{name: "a", b: a}, {name: "b", b: b}, {name: "absent", b: absent}})
	if err != nil || got != size {
		t.Fatalf("searched %d bytes: %v", got, err)
	}
	for name, want := range at {
		g := append([]int64(nil), found[name]...)
		slices.Sort(g)
		slices.Sort(want)
		if !slices.Equal(g, want) {
			t.Errorf("%s found at %v, want %v", name, g, want)
		}
	}
	if len(found["absent"]) != 0 {
		t.Errorf("a needle not in the file was found at %v", found["absent"])
	}
}
