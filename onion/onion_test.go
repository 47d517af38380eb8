package onion

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bineed25519 "github.com/cretz/bine/torutil/ed25519"

	"github.com/cleanrelay/cleanrelay/internal/syncbuf"
	"github.com/cleanrelay/cleanrelay/onion/tornet"
)

func TestVersionAtLeast(t *testing.T) {
	min := [4]int{0, 4, 9, 2}
	for v, want := range map[string]bool{
		"0.4.9.11":              true,
		"0.4.9.2":               true,
		"0.4.9.1-alpha":         false,
		"0.4.8.10 (git-abc123)": false,
		"0.4.10.0":              true,
		"0.5":                   true,
		"1.0.0.0-dev":           true,
		"garbage":               false,
		"":                      false,
	} {
		if got := versionAtLeast(v, min); got != want {
			t.Errorf("versionAtLeast(%q) = %v, want %v", v, got, want)
		}
	}
}

func TestKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "onion.key")
	k1, created, err := loadOrCreateKeyFile(path)
	if err != nil || !created {
		t.Fatalf("first load: created=%v err=%v", created, err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %04o, want 0600", st.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	if len(b) != 96 || !bytes.HasPrefix(b, []byte("== ed25519v1-secret: type0 ==")) {
		t.Errorf("key file is not in tor's hs_ed25519_secret_key format: %q", b[:min(len(b), 32)])
	}
	k2, created, err := loadOrCreateKeyFile(path)
	if err != nil || created {
		t.Fatalf("second load: created=%v err=%v", created, err)
	}
	if serviceID(k1) != serviceID(k2) {
		t.Errorf("address changed across loads: %s vs %s", serviceID(k1), serviceID(k2))
	}
	if len(serviceID(k1)) != 56 {
		t.Errorf("service id %q is not a v3 address", serviceID(k1))
	}

	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := loadOrCreateKeyFile(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("world-readable key file: err = %v, want a refusal saying chmod 600", err)
	}

	bad := filepath.Join(t.TempDir(), "bad.key")
	if err := os.WriteFile(bad, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := loadOrCreateKeyFile(bad); err == nil {
		t.Error("malformed key file accepted")
	}
	if b, _ := os.ReadFile(bad); string(b) != "not a key" {
		t.Error("malformed key file was overwritten")
	}
}

// TestWipeKey: both forms of the service key (generated, and loaded from a key file) are overwritten in place.
func TestWipeKey(t *testing.T) {
	generated, err := newServiceKey()
	if err != nil {
		t.Fatal(err)
	}
	loaded, _, err := loadOrCreateKeyFile(filepath.Join(t.TempDir(), "onion.key"))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []bineed25519.KeyPair{generated, loaded} {
		if bytes.Equal(k.PrivateKey(), make([]byte, expandedKeySize)) {
			t.Fatal("a fresh key is all zero")
		}
		wipeKey(k)
		if !bytes.Equal(k.PrivateKey(), make([]byte, expandedKeySize)) {
			t.Fatalf("%T not overwritten", k)
		}
	}
}

// TestKeyFileReadByTor checks the interoperability the key file promises: tor, given our file as the key of a
// HiddenServiceDir, derives the same address. tor runs with DisableNetwork 1 (and only in a loopback-only
// namespace, like every tor of the tests).
func TestKeyFileReadByTor(t *testing.T) {
	tornet.Require(t)
	if err := tornet.CheckLoopbackOnly(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	hs, data, empty := filepath.Join(dir, "hs"), filepath.Join(dir, "data"), filepath.Join(dir, "empty")
	for _, d := range []string{hs, data} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	key, _, err := loadOrCreateKeyFile(filepath.Join(hs, "hs_ed25519_secret_key"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("tor", "--defaults-torrc", empty, "-f", empty, "--DisableNetwork", "1", "--SocksPort", "0",
		"--DataDirectory", data, "--HiddenServiceDir", hs, "--HiddenServicePort", "80 127.0.0.1:9",
		"--GeoIPFile", empty, "--GeoIPv6File", empty, "--Log", "warn stderr",
		"--__OwningControllerProcess", strconv.Itoa(os.Getpid()))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(KillAfter):
			cmd.Process.Kill()
			<-exited
		}
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(hs, "hostname"))
		if err == nil && len(b) > 0 {
			if got, want := strings.TrimSpace(string(b)), serviceID(key)+".onion"; got != want {
				t.Fatalf("tor derived %s from our key file, we derive %s", got, want)
			}
			return
		}
		select {
		case <-exited:
			t.Fatalf("tor exited without writing hostname: %s", stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("tor wrote no hostname within 20 s: %s", stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestClientAuthFormat(t *testing.T) {
	a, err := newClientAuth("abc")
	if err != nil {
		t.Fatal(err)
	}
	// 32 bytes in unpadded base32 are 52 characters, which is what Tor Browser's key field takes.
	if len(a.PrivateKey) != 52 || len(a.PublicKey) != 52 || a.PrivateKey == a.PublicKey {
		t.Errorf("bad key encodings: %q %q", a.PrivateKey, a.PublicKey)
	}
	if want := "abc:descriptor:x25519:" + a.PrivateKey; a.AuthFileLine != want {
		t.Errorf("auth file line %q, want %q", a.AuthFileLine, want)
	}
}

func TestTorLogWriter(t *testing.T) {
	var buf bytes.Buffer
	w := newTorLogWriter(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	io.WriteString(w, "Nov 23 06:33:30.000 [notice] Bootstrapped 5%\nNov 23 06:33:30.000 [wa")
	io.WriteString(w, "rn] something odd\n")
	out := buf.String()
	for _, want := range []string{`level=INFO msg="Bootstrapped 5%" component=tor`, `level=WARN msg="something odd"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log output lacks %q:\n%s", want, out)
		}
	}
}

func TestMissingTor(t *testing.T) {
	_, err := Start(context.Background(), Config{TorPath: "/nonexistent/tor", TempDir: t.TempDir()}, nil)
	if err == nil || !strings.Contains(err.Error(), "apt-get install tor") {
		t.Fatalf("err = %v, want a hint to apt-get install tor", err)
	}
}

// logBuffer is a slog handler target that keeps the output for assertions and also shows it in the test log.
type logBuffer struct {
	t testing.TB
	syncbuf.Buffer
}

// startOn starts a Service on the private network. The cleanup closes it and checks that nothing is left in its
// temp area.
func startOn(t *testing.T, n *tornet.Network, cfg Config) (*Service, *logBuffer) {
	t.Helper()
	logs := &logBuffer{t: t}
	// The log (tor's output included) is shown only when the test fails: it is long.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("service log:\n%s", logs.String())
		}
	})
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if cfg.TempDir == "" {
		cfg.TempDir = t.TempDir()
	}
	cfg.TorrcLines = n.ServiceTorrc()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	s, err := Start(ctx, cfg, log)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Logf("onion.Start (launch, bootstrap, publish) took %v", time.Since(start).Round(time.Millisecond))
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s", r.Host)
	})}
	go srv.Serve(s.Listener())
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		srv.Close()
		entries, err := os.ReadDir(cfg.TempDir)
		if err != nil {
			t.Errorf("read temp area: %v", err)
		}
		for _, e := range entries {
			if filepath.Join(cfg.TempDir, e.Name()) != cfg.KeyFile {
				t.Errorf("left behind in the temp area after Close: %s", e.Name())
			}
		}
	})
	return s, logs
}

// fetch GETs http://<onion>/ through the client tor, retrying the failures that are normal right after a
// (re)publication, until ctx ends.
func fetch(ctx context.Context, t *testing.T, n *tornet.Network, hostname string) (string, error) {
	t.Helper()
	c := n.HTTPClient()
	var lastErr error
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+hostname+"/", nil)
		resp, err := c.Do(req)
		if err == nil {
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			return string(body), err
		}
		lastErr = err
		var se *tornet.SOCKSError
		if errors.As(err, &se) && se.Code == tornet.SOCKSClientAuthMissing {
			return "", err
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
	return "", fmt.Errorf("gave up: %w (last error: %v)", ctx.Err(), lastErr)
}

// fetchTimeout bounds a fetch through the private network, publication of the descriptor included. A loaded
// machine (CI with other jobs, -race) has taken more than a minute.
const fetchTimeout = 2 * time.Minute

// TestOnTorNetwork runs everything that needs a real tor against one private network.
func TestOnTorNetwork(t *testing.T) {
	n := tornet.Start(t)

	t.Run("publish", func(t *testing.T) {
		s, logs := startOn(t, n, Config{})
		if !strings.HasSuffix(s.Hostname(), ".onion") || len(s.Hostname()) != 62 {
			t.Fatalf("hostname %q is not a v3 onion address", s.Hostname())
		}
		ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
		defer cancel()
		start := time.Now()
		body, err := fetch(ctx, t, n, s.Hostname())
		if err != nil {
			t.Fatalf("fetch through tor: %v", err)
		}
		t.Logf("first fetch after publish took %v", time.Since(start).Round(time.Millisecond))
		if want := "hello from " + s.Hostname(); body != want {
			t.Fatalf("body %q, want %q", body, want)
		}
		if l := logs.String(); strings.Contains(l, "proof-of-work") {
			t.Errorf("tor 0.4.9 should accept PoWDefensesEnabled=1, but the log says:\n%s", l)
		}
		if !strings.Contains(logs.String(), "component=tor") {
			t.Error("no tor output reached the logger")
		}
	})

	t.Run("client auth", func(t *testing.T) {
		s, _ := startOn(t, n, Config{ClientAuth: true})
		auth := s.ClientAuth()
		if auth == nil {
			t.Fatal("no client auth credential")
		}
		ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
		defer cancel()
		_, err := fetch(ctx, t, n, s.Hostname())
		var se *tornet.SOCKSError
		if !errors.As(err, &se) || se.Code != tornet.SOCKSClientAuthMissing {
			t.Fatalf("without the client key: err = %v, want SOCKS 0x%02X (client authorization missing)", err, tornet.SOCKSClientAuthMissing)
		}
		if err := n.AddClientAuth(ctx, s.Hostname(), auth.PrivateKey); err != nil {
			t.Fatal(err)
		}
		body, err := fetch(ctx, t, n, s.Hostname())
		if err != nil {
			t.Fatalf("with the client key: %v", err)
		}
		if want := "hello from " + s.Hostname(); body != want {
			t.Fatalf("body %q, want %q", body, want)
		}
	})

	t.Run("tor dies", func(t *testing.T) {
		var mu sync.Mutex
		var stages []Stage
		s, _ := startOn(t, n, Config{Progress: func(p Progress) {
			mu.Lock()
			stages = append(stages, p.Stage)
			mu.Unlock()
		}})
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if _, err := fetch(ctx, t, n, s.Hostname()); err != nil {
			t.Fatalf("fetch before the kill: %v", err)
		}
		pid := s.torPID()
		if pid == 0 {
			t.Fatal("no tor pid")
		}
		start := time.Now()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		for s.Restarts() == 0 {
			if ctx.Err() != nil {
				t.Fatal("tor was not restarted")
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("restart and re-publish took %v", time.Since(start).Round(time.Millisecond))
		if p := s.torPID(); p == pid || p == 0 {
			t.Fatalf("tor pid after restart %d (before %d)", p, pid)
		}
		if err := n.ForgetOnionServices(ctx); err != nil {
			t.Fatal(err)
		}
		body, err := fetch(ctx, t, n, s.Hostname())
		if err != nil {
			t.Fatalf("fetch after the restart: %v", err)
		}
		t.Logf("reachable again %v after the kill", time.Since(start).Round(time.Millisecond))
		if want := "hello from " + s.Hostname(); body != want {
			t.Fatalf("body %q, want %q", body, want)
		}
		mu.Lock()
		defer mu.Unlock()
		if !containsInOrder(stages, StageBootstrap, StagePublished, StageRestarting, StagePublished) {
			t.Errorf("progress stages %v", stages)
		}
	})

	t.Run("running tor", func(t *testing.T) {
		// The network's client tor stands in for an operator's system tor: a control port with cookie auth.
		pids := n.PIDs()
		s, _ := startOn(t, n, Config{ControlAddr: n.ControlAddr})
		if s.torPID() != 0 {
			t.Fatal("launched a tor although ControlAddr was given")
		}
		ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
		defer cancel()
		body, err := fetch(ctx, t, n, s.Hostname())
		if err != nil {
			t.Fatalf("fetch: %v", err)
		}
		if want := "hello from " + s.Hostname(); body != want {
			t.Fatalf("body %q, want %q", body, want)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		// Close must end only what we own: the operator's tor keeps running.
		if got := n.PIDs(); !slices.Equal(got, pids) {
			t.Fatalf("tor processes changed across Close: %v → %v", pids, got)
		}
		for _, pid := range pids {
			if err := syscall.Kill(pid, 0); err != nil {
				t.Fatalf("tor pid %d gone after Close: %v", pid, err)
			}
		}
	})

	t.Run("running tor restarts", func(t *testing.T) {
		sys, err := n.StartExtraTor("systemtor")
		if err != nil {
			t.Fatal(err)
		}
		s, _ := startOn(t, n, Config{ControlAddr: sys.ControlAddr, RestartBackoff: 500 * time.Millisecond, MaxRestartBackoff: 2 * time.Second})
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if _, err := fetch(ctx, t, n, s.Hostname()); err != nil {
			t.Fatalf("fetch: %v", err)
		}
		sys.Kill()
		if err := sys.Start(); err != nil {
			t.Fatal(err)
		}
		for s.Restarts() == 0 {
			if ctx.Err() != nil {
				t.Fatal("the service did not reconnect to the restarted tor")
			}
			time.Sleep(100 * time.Millisecond)
		}
		body, err := fetch(ctx, t, n, s.Hostname())
		if err != nil {
			t.Fatalf("fetch after the operator's tor restarted: %v", err)
		}
		if want := "hello from " + s.Hostname(); body != want {
			t.Fatalf("body %q, want %q", body, want)
		}
	})

	t.Run("key file", func(t *testing.T) {
		dir := t.TempDir()
		keyFile := filepath.Join(dir, "onion.key")
		var hostnames []string
		for i := range 2 {
			t.Run(fmt.Sprint("start", i), func(t *testing.T) {
				s, _ := startOn(t, n, Config{KeyFile: keyFile, TempDir: dir})
				hostnames = append(hostnames, s.Hostname())
				ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
				defer cancel()
				if _, err := fetch(ctx, t, n, s.Hostname()); err != nil {
					t.Fatalf("fetch: %v", err)
				}
			})
		}
		if len(hostnames) != 2 || hostnames[0] != hostnames[1] {
			t.Fatalf("two starts with one key file gave %v", hostnames)
		}
		st, err := os.Stat(keyFile)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("key file mode %04o, want 0600", st.Mode().Perm())
		}
	})
}

func containsInOrder(have []Stage, want ...Stage) bool {
	for _, s := range have {
		if len(want) > 0 && s == want[0] {
			want = want[1:]
		}
	}
	return len(want) == 0
}
