package relay_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cleanrelay/cleanrelay/keydir"
	"github.com/cleanrelay/cleanrelay/relay"
	"github.com/cleanrelay/cleanrelay/relay/accounts"
	"github.com/cleanrelay/cleanrelay/relay/client"
)

// serveHTTP serves the relay with accounts through relay.NewHTTPServer on a loopback listener and returns
// its address.
func serveHTTP(t *testing.T, cfg relay.HTTPConfig) (srv *relay.Server, addr string) {
	t.Helper()
	log := slog.New(&logCapture{T: t})
	dir, err := keydir.New(keydir.Config{TokenAlgorithm: "EdDSA"})
	if err != nil {
		t.Fatal(err)
	}
	acc := accounts.New(dir, accounts.Config{}, log)
	srv, err = relay.New(relay.Config{Authenticator: acc}, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	acc.Attach(srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.AllowHost(ln.Addr().String())
	hs := relay.NewHTTPServer(acc.Handler(srv.Handler()), cfg, nil)
	go hs.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		hs.Shutdown(ctx)
		srv.Close(ctx)
	})
	return srv, ln.Addr().String()
}

// closedWithin reports whether the server ends c (EOF or reset, after any answer) within d.
func closedWithin(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return err == nil || !(errors.As(err, &ne) && ne.Timeout())
}

// A request body trickled slower than the body timeout allows is cut, and so are headers; a WebSocket is not.
func TestSlowRequestsAreCut(t *testing.T) {
	_, addr := serveHTTP(t, relay.HTTPConfig{HeaderTimeout: 500 * time.Millisecond, BodyTimeout: 500 * time.Millisecond})
	body, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close()
	io.WriteString(body, "POST /api/login HTTP/1.1\r\nHost: "+addr+"\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{")
	stop := make(chan struct{})
	defer close(stop)
	go func() { // 10 bytes a second: the body would take 20 s
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
				if _, err := io.WriteString(body, " "); err != nil {
					return
				}
			}
		}
	}()
	if !closedWithin(body, 10*time.Second) {
		t.Fatal("a body trickled at 10 B/s was still being read after 10 s")
	}
	// A WebSocket is not held to the request timeouts.
	ws, err := client.Dial(ctx10s(t), "ws://"+addr+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	time.Sleep(1500 * time.Millisecond)
	mustCreate(t, ws, 2)
	hdr, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer hdr.Close()
	io.WriteString(hdr, "GET /healthz HTTP/1.1\r\nHost: "+addr+"\r\n")
	if !closedWithin(hdr, 10*time.Second) {
		t.Fatal("unfinished headers were still being read after 10 s")
	}
}

// Plain HTTP connections are bounded: slow and idle ones beyond the bound are closed, the health check and
// new WebSocket handshakes still work, and WebSockets outlive the request timeouts.
func TestHTTPConnectionsBounded(t *testing.T) {
	const max = 8
	_, addr := serveHTTP(t, relay.HTTPConfig{MaxConns: max, HeaderTimeout: time.Hour, BodyTimeout: 300 * time.Millisecond})
	var slow []net.Conn
	for i := range 40 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if i%2 == 0 {
			io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: "+addr+"\r\n") // headers never finished
		}
		slow = append(slow, c)
	}
	res, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("health check beside 40 slow connections: %v", err)
	}
	res.Body.Close()
	ws, err := client.Dial(ctx10s(t), "ws://"+addr+"/ws", nil)
	if err != nil {
		t.Fatalf("WebSocket beside 40 slow connections: %v", err)
	}
	defer ws.Close()
	open := 0
	for _, c := range slow {
		if !closedWithin(c, 50*time.Millisecond) {
			open++
		}
	}
	if open > max {
		t.Fatalf("%d of the slow connections are still open, the bound is %d", open, max)
	}
	mustCreate(t, ws, 2)
}

// The client's folders answer 404, never a listing of their files; the files themselves are served.
func TestNoDirectoryListings(t *testing.T) {
	tr := startRelay(t, relay.Config{})
	for path, want := range map[string]int{"/js/": 404, "/vendor/": 404, "/js": 404, "/js/app.mjs": 200, "/": 200} {
		res, err := http.Get(tr.http.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != want || (want == 404 && strings.Contains(string(body), ".mjs")) {
			t.Errorf("GET %s: %d %.80q, want %d", path, res.StatusCode, body, want)
		}
	}
}

// The log capture the no-user-data checks read also sees attributes given through log.With.
func TestLogCaptureKeepsWithAttrs(t *testing.T) {
	logs := &logCapture{T: t}
	slog.New(logs).With("user", "mallory").WithGroup("g").With("room", "R00M").Info("joined")
	if s := logs.String(); !strings.Contains(s, "mallory") || !strings.Contains(s, "R00M") {
		t.Fatalf("the capture lost the attributes of log.With: %q", s)
	}
}
