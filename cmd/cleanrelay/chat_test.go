package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

const testRoom, testCap, testKey = "AAAAAAAAAAAAAAAAAAAAAA", "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB", "CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCA"

func TestChatInviteLink(t *testing.T) {
	inv, err := parseInviteLink("http://127.0.0.1:8080/#r=" + testRoom + "&c=" + testCap + "&k=" + testKey)
	if err != nil {
		t.Fatal(err)
	}
	if inv.room != testRoom || inv.cap != testCap || len(inv.secret) != 32 || inv.base.Host != "127.0.0.1:8080" || inv.base.Fragment != "" {
		t.Fatalf("parsed %+v", inv)
	}
	if got := inviteLink(inv.base, inv.room, inv.cap, inv.secret); got != "http://127.0.0.1:8080/#r="+testRoom+"&c="+testCap+"&k="+testKey {
		t.Fatalf("link rebuilt as %s", got)
	}
	for _, tt := range []struct{ link, want string }{
		{"http://127.0.0.1/", "no '#' part"},
		{"http://127.0.0.1/#r=" + testRoom + "&c=" + testCap, "lacks r=, c= or k="},
		{"http://127.0.0.1/#r=" + testRoom + "&c=" + testCap + "&k=" + testKey[:40], "secret (k=) is not 43"},
		{"http://127.0.0.1/#r=" + testRoom[:20] + "&c=" + testCap + "&k=" + testKey, "room id (r=) is not 22"},
		{"http://127.0.0.1/#r=" + testRoom + "&c=" + testCap + "!&k=" + testKey, "capability (c=)"},
		{"ftp://127.0.0.1/#r=" + testRoom + "&c=" + testCap + "&k=" + testKey, "http:// or https://"},
		{"http:///#r=" + testRoom + "&c=" + testCap + "&k=" + testKey, "no host"},
		{"http://127.0.0.1/#r=%zz", "malformed"},
	} {
		if _, err := parseInviteLink(tt.link); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want %q", tt.link, err, tt.want)
		}
	}
}

func TestChatDialerRules(t *testing.T) {
	for _, tt := range []struct{ url, socks, want, ws string }{
		{"http://abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuv.onion/", "", "--tor-socks", ""},
		{"http://example.org/", "", "refusing plain http", ""},
		{"http://192.168.1.2/", "", "refusing plain http", ""},
		{"http://127.0.0.1:8080/", "", "", "ws://127.0.0.1:8080/ws?anonymous=1"},
		{"http://[::1]:8080/x/", "", "", "ws://[::1]:8080/ws?anonymous=1"},
		{"https://example.org/", "", "", "wss://example.org/ws?anonymous=1"},
		{"http://abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuv.onion/", "127.0.0.1:9050", "", "ws://abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuv.onion/ws?anonymous=1"},
		{"http://abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuv.onion/", "9050", "HOST:PORT", ""},
	} {
		u, err := parseRelayURL(tt.url)
		if err != nil {
			t.Fatal(err)
		}
		ws, dial, err := chatDialer(u, tt.socks)
		if tt.want != "" {
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("%s: error %v, want %q", tt.url, err, tt.want)
			}
			continue
		}
		if err != nil || ws != tt.ws || (dial != nil) != (tt.socks != "") {
			t.Errorf("%s: %s, %v, dial %v", tt.url, ws, err, dial != nil)
		}
	}
}

// TestChatTorSocksResolvesRemotely checks that with --tor-socks the host name goes to the SOCKS5 proxy as a
// name (address type 3), not resolved here: a minimal SOCKS5 server records the request.
func TestChatTorSocksResolvesRemotely(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 512)
		io.ReadFull(c, buf[:2]) // version, method count
		io.ReadFull(c, buf[:buf[1]])
		c.Write([]byte{5, 0})
		io.ReadFull(c, buf[:5]) // ver cmd rsv atyp len
		if buf[3] != 3 {
			got <- fmt.Sprintf("address type %d", buf[3])
			return
		}
		n := int(buf[4])
		io.ReadFull(c, buf[:n+2])
		got <- string(buf[:n])
		c.Write([]byte{5, 1, 0, 1, 0, 0, 0, 0, 0, 0}) // general failure
	}()
	const onion = "abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuv.onion"
	code, _, stderr := runChat(t, nil, "--json", "--tor-socks", ln.Addr().String(), "http://"+onion+"/#r="+testRoom+"&c="+testCap+"&k="+testKey)
	if code != 1 || !strings.Contains(stderr, "failed to connect") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if name := <-got; name != onion {
		t.Fatalf("the proxy was asked for %q, want the onion name", name)
	}
}

// runChat runs "cleanrelay chat" to its end and returns its exit code, stdout and stderr.
func runChat(t *testing.T, stdin io.Reader, args ...string) (int, string, string) {
	t.Helper()
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"chat"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &out, &errb
	done := make(chan error, 1)
	cmd.Start()
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(90 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("chat %q did not end; stderr %s", args, errb.String())
	}
	return cmd.ProcessState.ExitCode(), out.String(), errb.String()
}

// TestChatBadInput: each mistake gets one clear line on stderr and a non-zero exit.
func TestChatBadInput(t *testing.T) {
	_, url, _ := startServe(t, "--local-only", "--listen", "127.0.0.1:0")
	base := strings.TrimSuffix(url, "/")
	creator := startChat(t, "--create", url)
	link := creator.wait(t, "invite", nil).Link
	wrongSecret := link[:len(link)-43] + testKey
	// A relay that speaks another protocol version (a real WebSocket server with another hello).
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		up := websocket.Upgrader{Subprotocols: []string{"cleanrelay.v1"}}
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		c.WriteMessage(websocket.TextMessage, []byte(`{"t":"hello","v":2}`))
		time.Sleep(time.Second)
		c.Close()
	}))
	defer other.Close()
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"malformed", []string{"not a link"}, "no '#' part"},
		{"not http", []string{"ftp://x/#r=" + testRoom + "&c=" + testCap + "&k=" + testKey}, "http:// or https://"},
		{"truncated", []string{link[:len(link)-10]}, "cut short"},
		{"no fragment", []string{base + "/"}, "no '#' part"},
		{"onion without tor", []string{"http://abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuv.onion/#r=" + testRoom + "&c=" + testCap + "&k=" + testKey}, "--tor-socks"},
		{"plain http", []string{"http://example.org/#r=" + testRoom + "&c=" + testCap + "&k=" + testKey}, "refusing plain http"},
		{"wrong capability", []string{base + "/#r=" + testRoom + "&c=" + testCap + "&k=" + testKey}, "capability is wrong"},
		{"wrong secret", []string{wrongSecret}, "secret does not fit"},
		{"other version", []string{other.URL + "/#r=" + testRoom + "&c=" + testCap + "&k=" + testKey}, "protocol version 2"},
		{"no relay", []string{"http://127.0.0.1:1/#r=" + testRoom + "&c=" + testCap + "&k=" + testKey}, "failed to connect"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// stdin stays open: at its end the client would leave before finding out.
			pr, pw, err := os.Pipe() // a file, so that exec does not wait for a copy from it
			if err != nil {
				t.Fatal(err)
			}
			defer pr.Close()
			defer pw.Close()
			code, _, stderr := runChat(t, pr, append([]string{"--json"}, tt.args...)...)
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			if code != 1 || len(lines) != 1 || !strings.HasPrefix(lines[0], "cleanrelay: chat: ") || !strings.Contains(lines[0], tt.want) {
				t.Fatalf("exit %d, stderr %q; want one line with %q", code, stderr, tt.want)
			}
		})
	}
	if code, _, stderr := runChat(t, nil, "--json"); code != 2 || !strings.Contains(stderr, "Usage:") {
		t.Fatalf("no link: exit %d, %q", code, stderr)
	}
	if code, stdout, _ := runChat(t, nil, "--help"); code != 0 || !strings.Contains(stdout, "Examples:") {
		t.Fatalf("--help: exit %d", code)
	}
}

// chatProc is a running "cleanrelay chat --json".
type chatProc struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	events chan chatEvent
	stderr *lockedBuffer
	mu     sync.Mutex
	seen   []chatEvent
	done   chan struct{}
}

func startChat(t *testing.T, args ...string) *chatProc {
	t.Helper()
	return startChatEnv(t, nil, args...)
}

// startChatEnv starts "cleanrelay chat --json" with env added to this process's environment.
func startChatEnv(t *testing.T, env []string, args ...string) *chatProc {
	t.Helper()
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	p := &chatProc{events: make(chan chatEvent, 4096), stderr: &lockedBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, append([]string{"chat", "--json"}, args...)...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stderr = p.stderr
	p.in, _ = p.cmd.StdinPipe()
	out, _ := p.cmd.StdoutPipe()
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.in.Close()
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var ev chatEvent
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				ev = chatEvent{Type: "bad-json", Message: sc.Text()}
			}
			p.events <- ev
		}
		p.cmd.Wait()
		close(p.events)
		close(p.done)
	}()
	return p
}

func (p *chatProc) send(t *testing.T, c chatCommand) {
	t.Helper()
	b, _ := json.Marshal(c)
	if _, err := p.in.Write(append(b, '\n')); err != nil {
		t.Fatal(err)
	}
}

// wait returns the next event of type typ that match accepts (nil: any), failing on an error event.
func (p *chatProc) wait(t *testing.T, typ string, match func(chatEvent) bool) chatEvent {
	t.Helper()
	return p.waitFor(t, 60*time.Second, typ, match)
}

func (p *chatProc) waitFor(t *testing.T, d time.Duration, typ string, match func(chatEvent) bool) chatEvent {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case ev, ok := <-p.events:
			if !ok {
				t.Fatalf("chat ended while waiting for %s; stderr %s", typ, p.stderr)
			}
			p.mu.Lock()
			p.seen = append(p.seen, ev)
			p.mu.Unlock()
			if ev.Type == "error" || ev.Type == "bad-json" {
				t.Fatalf("while waiting for %s: %+v", typ, ev)
			}
			if ev.Type == typ && (match == nil || match(ev)) {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %s event in %v; stderr %s", typ, d, p.stderr)
		}
	}
}

func (p *chatProc) exit(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("chat did not exit; stderr %s", p.stderr)
	}
	return p.cmd.ProcessState.ExitCode()
}

// TestChatTerminalToTerminal: two terminal clients chat through the real relay in a room one of them created:
// messages and files both ways, the same safety code on both sides, a timed message, then burn.
// A third joins a three-member room and everyone reads everyone.
func TestChatTerminalToTerminal(t *testing.T) {
	_, url, _ := startServe(t, "--local-only", "--listen", "127.0.0.1:0")
	dirA, dirB := t.TempDir(), t.TempDir()
	a := startChat(t, "--save", dirA, "--create", url)
	link := a.wait(t, "invite", nil).Link
	b := startChat(t, "--save", dirB, link)
	sa, sb := a.wait(t, "safety", nil), b.wait(t, "safety", nil)
	if sa.Safety != sb.Safety || len(sa.Safety) != 35 {
		t.Fatalf("safety codes %q and %q", sa.Safety, sb.Safety)
	}
	a.send(t, chatCommand{Cmd: "send", Text: "hello from a"})
	b.wait(t, "message", func(e chatEvent) bool { return e.Text == "hello from a" && e.From == 1 })
	b.send(t, chatCommand{Cmd: "send", Text: "hello from b", TTL: 1})
	m := a.wait(t, "message", func(e chatEvent) bool { return e.Text == "hello from b" })
	if m.TTL != 1 {
		t.Fatalf("ttl %d", m.TTL)
	}
	a.wait(t, "expired", func(e chatEvent) bool { return e.ID == m.ID })

	// Files both ways: 150 KiB (5 chunks and a bit, past the window) and a small one.
	src, big := randomFile(t, "big.bin", 150<<10)
	a.send(t, chatCommand{Cmd: "file", Path: src})
	f := b.wait(t, "file", nil)
	if got, _ := os.ReadFile(f.Path); !bytes.Equal(got, big) || filepath.Dir(f.Path) != dirB {
		t.Fatalf("b saved %s with %d bytes", f.Path, len(got))
	}
	a.wait(t, "filesent", nil)
	small := filepath.Join(t.TempDir(), "note.txt")
	os.WriteFile(small, []byte("a note"), 0o600)
	b.send(t, chatCommand{Cmd: "file", Path: small})
	f = a.wait(t, "file", nil)
	if got, _ := os.ReadFile(f.Path); string(got) != "a note" || f.Name != "note.txt" {
		t.Fatalf("a saved %s: %q", f.Path, got)
	}
	b.send(t, chatCommand{Cmd: "burn"})
	if ea, eb := a.wait(t, "ended", nil), b.wait(t, "ended", nil); ea.Reason != "burned" || eb.Reason != "burned" {
		t.Fatalf("ended %+v %+v", ea, eb)
	}
	if ca, cb := a.exit(t), b.exit(t); ca != 0 || cb != 0 {
		t.Fatalf("exit codes %d %d", ca, cb)
	}

	// Three members.
	x := startChat(t, "--create", "--max", "3", url)
	link = x.wait(t, "invite", nil).Link
	y := startChat(t, link)
	y.wait(t, "safety", nil)
	z := startChat(t, link)
	z.wait(t, "state", func(e chatEvent) bool { return len(e.Members) == 3 && e.Ready != nil && *e.Ready })
	z.send(t, chatCommand{Cmd: "send", Text: "hi from z"})
	x.wait(t, "message", func(e chatEvent) bool { return e.Text == "hi from z" && e.From == 3 })
	y.wait(t, "message", func(e chatEvent) bool { return e.Text == "hi from z" && e.From == 3 })
	x.send(t, chatCommand{Cmd: "leave"})
	x.wait(t, "ended", nil)
	if c := x.exit(t); c != 0 {
		t.Fatalf("leave: exit %d", c)
	}
	y.wait(t, "presence", func(e chatEvent) bool { return e.Member == 1 && e.Event == "leave" })
	y.send(t, chatCommand{Cmd: "send", Text: "still here"})
	z.wait(t, "message", func(e chatEvent) bool { return e.Text == "still here" })
}

// randomFile writes n random bytes to a file named name in a fresh directory.
func randomFile(t *testing.T, name string, n int) (string, []byte) {
	t.Helper()
	data := make([]byte, n)
	rand.Read(data)
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, data
}

// cutProxy forwards TCP connections to a relay and can cut all of them at once, as a dropped circuit does.
type cutProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
}

func newCutProxy(t *testing.T) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln}
	t.Cleanup(func() { ln.Close(); p.cut() })
	return p
}

// start forwards to target from now on.
func (p *cutProxy) start(target string) {
	p.target = target
	ln := p.ln
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { io.Copy(u, c); u.Close() }()
			go func() { io.Copy(c, u); c.Close() }()
		}
	}()
}

func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// TestChatResumeAcrossDrops: both sides keep writing while every connection is cut twice; each side reads
// every message of the other exactly once, in order (docs/protocol.md §4.2: resume with last, resend past in).
func TestChatResumeAcrossDrops(t *testing.T) {
	px := newCutProxy(t)
	_, url, _ := startServe(t, "--local-only", "--listen", "127.0.0.1:0", "--allow-host", px.ln.Addr().String())
	px.start(strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/"))
	purl := "http://" + px.ln.Addr().String() + "/"
	a := startChat(t, "--create", purl)
	b := startChat(t, a.wait(t, "invite", nil).Link)
	a.wait(t, "safety", nil)
	b.wait(t, "safety", nil)
	const n = 60
	for i := range n {
		a.send(t, chatCommand{Cmd: "send", Text: fmt.Sprintf("a%d", i)})
		b.send(t, chatCommand{Cmd: "send", Text: fmt.Sprintf("b%d", i)})
		if i == 20 || i == 40 {
			px.cut()
		}
		if i%10 == 0 {
			time.Sleep(50 * time.Millisecond)
		}
	}
	for _, side := range []struct {
		p      *chatProc
		prefix string
	}{{b, "a"}, {a, "b"}} {
		for i := range n {
			want := fmt.Sprintf("%s%d", side.prefix, i)
			m := side.p.wait(t, "message", nil)
			if m.Text != want {
				t.Fatalf("got %q, want %q (lost, reordered or repeated)", m.Text, want)
			}
		}
	}
	// Nothing arrives twice: a last message after everything, and nothing else in between.
	a.send(t, chatCommand{Cmd: "send", Text: "end"})
	if m := b.wait(t, "message", nil); m.Text != "end" {
		t.Fatalf("after the run: %q", m.Text)
	}
	for _, p := range []*chatProc{a, b} {
		p.mu.Lock()
		offline := 0
		for _, e := range p.seen {
			if e.Type == "state" && e.Online != nil && !*e.Online {
				offline++
			}
			if e.Type == "problem" {
				t.Errorf("problem: %+v", e)
			}
		}
		p.mu.Unlock()
		if offline == 0 {
			t.Errorf("a side never saw its connection drop: the test tested nothing")
		}
	}
}
