// Package natsnet runs a cluster of real nats-server processes on 127.0.0.1 for tests: core NATS only, routes
// between every pair, relay nodes authenticated with an nkey and everyone else refused.
//
// Tests that need it are gated behind the -nats flag (see Require): `go test ./relay/cluster/... -nats`
// (.ci/test-nats.sh installs the pinned nats-server and passes it).
package natsnet

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"go/build"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cleanrelay/cleanrelay/internal/syncbuf"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

var natsFlag = flag.Bool("nats", false, "run tests that start real nats-server processes on 127.0.0.1 (needs nats-server; see .ci/test-nats.sh)")

// Require skips the test unless the -nats flag was given. CI (.ci/test-nats.sh) always passes the flag, so a skip
// here never hides a failure there.
func Require(t testing.TB) {
	t.Helper()
	if !*natsFlag {
		t.Skip("needs -nats (real nats-server processes; see .ci/test-nats.sh)")
	}
}

// Subjects is the subject space relay nodes may publish and subscribe in (besides their own reply inboxes).
// Nothing else is open to them.
const Subjects = "cr.>"

const (
	// readyTimeout bounds a server's start and the cluster's full mesh; it only matters when something is broken.
	readyTimeout = 30 * time.Second
	// killAfter is how long a server gets to exit after SIGTERM before SIGKILL.
	killAfter = 3 * time.Second
)

// Options shape a Cluster. The zero value is three servers, not traced.
type Options struct {
	// Servers is the number of nats-server processes (default 3).
	Servers int
	// Strace runs every server under `strace -f` (see Server.Traces).
	Strace bool
}

// Cluster is a running set of routed nats-server processes. They end, and its directory is removed, when the
// test that started it ends.
type Cluster struct {
	// Dir holds the servers' configuration files (they name the node's public nkey and the route password) and,
	// with Options.Strace, the traces. The servers themselves write nothing (TestNoDiskNoLogs).
	Dir string

	bin     string
	node    nkeys.KeyPair
	nodePub string
	servers []*Server
}

// Server is one nats-server of a Cluster.
type Server struct {
	// Name is its server_name (n1, n2, …).
	Name string
	// URL is its client address, nats://127.0.0.1:PORT; it stays the same across Kill and Restart.
	URL string

	c         *Cluster
	conf      string
	routePort int
	trace     bool

	mu     sync.Mutex
	proc   *process
	traces []string
	pipes  map[string]bool // the stdout/stderr pipes of its traced runs, "pipe:[inode]"
	logs   []*lockedBuffer
}

// Start starts the cluster and returns once every server accepts a relay node and a message published on any
// server reaches a subscriber on every other. It fails the test on any error; its cleanup ends every process it
// started (by PID) and removes Dir.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	Require(t)
	c, err := start(t, opts)
	if err != nil {
		t.Fatalf("natsnet: %v", err)
	}
	return c
}

func start(t testing.TB, opts Options) (*Cluster, error) {
	if opts.Servers == 0 {
		opts.Servers = 3
	}
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	if opts.Strace {
		if _, err := exec.LookPath("strace"); err != nil {
			return nil, fmt.Errorf("strace not found (apt-get install strace): %w", err)
		}
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, fmt.Errorf("failed to make the node nkey: %w", err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("failed to read the node nkey: %w", err)
	}
	c := &Cluster{Dir: t.TempDir(), bin: bin, node: kp, nodePub: pub}
	t.Cleanup(func() {
		if t.Failed() {
			c.dumpLogs(t)
		}
		c.stopAll()
	})
	ports, err := freePorts(2 * opts.Servers)
	if err != nil {
		return nil, err
	}
	var secret [18]byte
	rand.Read(secret[:])
	routePass := hex.EncodeToString(secret[:])
	for i := range opts.Servers {
		c.servers = append(c.servers, &Server{Name: fmt.Sprintf("n%d", i+1), c: c, trace: opts.Strace,
			URL: fmt.Sprintf("nats://127.0.0.1:%d", ports[2*i]), routePort: ports[2*i+1]})
	}
	for _, s := range c.servers {
		s.conf = filepath.Join(c.Dir, s.Name+".conf")
		if err := os.WriteFile(s.conf, []byte(c.config(s, routePass)), 0o600); err != nil {
			return nil, fmt.Errorf("failed to write the config of %s: %w", s.Name, err)
		}
	}
	for _, s := range c.servers {
		if err := s.launch(); err != nil {
			return nil, err
		}
	}
	for _, s := range c.servers {
		if err := s.waitAccepting(); err != nil {
			return nil, err
		}
	}
	return c, c.waitMesh()
}

// config is a server's configuration: client and route listeners on 127.0.0.1 only; clients must prove the node
// nkey; routes must give the cluster's password; no JetStream, no monitoring port, no log or PID file, so the
// server writes nothing anywhere (its log goes to stderr, which the harness keeps in memory).
func (c *Cluster) config(s *Server, routePass string) string {
	var routes []string
	for _, o := range c.servers {
		if o != s {
			routes = append(routes, fmt.Sprintf("%q", fmt.Sprintf("nats-route://route:%s@127.0.0.1:%d", routePass, o.routePort)))
		}
	}
	return fmt.Sprintf(`server_name: %s
listen: %q
jetstream: disabled
authorization {
  users: [
    { nkey: %s, permissions: { publish: [%q, "_INBOX.>"], subscribe: [%q, "_INBOX.>"] } }
  ]
}
cluster {
  name: cleanrelay
  listen: "127.0.0.1:%d"
  authorization { user: route, password: %q }
  routes: [%s]
}
`, s.Name, strings.TrimPrefix(s.URL, "nats://"), c.nodePub, Subjects, Subjects, s.routePort, routePass, strings.Join(routes, ", "))
}

// Binary finds nats-server: on PATH, else where `go install` puts it.
func Binary() (string, error) {
	if p, err := exec.LookPath("nats-server"); err == nil {
		return p, nil
	}
	p := filepath.Join(build.Default.GOPATH, "bin", "nats-server")
	if _, err := os.Stat(p); err != nil {
		return "", errors.New("nats-server not found on PATH or in $GOPATH/bin (. .ci/lib.sh && need_nats)")
	}
	return p, nil
}

// Servers returns the cluster's servers, n1 first.
func (c *Cluster) Servers() []*Server { return c.servers }

// URLs returns every server's client URL, n1 first.
func (c *Cluster) URLs() []string {
	var urls []string
	for _, s := range c.servers {
		urls = append(urls, s.URL)
	}
	return urls
}

// NodeSeed returns a copy of the relay nodes' nkey seed ("SU…"), as a node would be given it (a node overwrites
// its copy).
func (c *Cluster) NodeSeed() []byte {
	seed, _ := c.node.Seed()
	return bytes.Clone(seed)
}

// NodeAuth is the nats.go option that authenticates as a relay node (it signs the server's nonce; the seed never
// crosses the connection).
func (c *Cluster) NodeAuth() nats.Option { return nats.Nkey(c.nodePub, c.node.Sign) }

// Connect connects as a relay node, to the servers in the order given by first (indexes into Servers) and then
// to the rest, reconnecting without end. The connection is closed when the test ends.
func (c *Cluster) Connect(t testing.TB, first int, opts ...nats.Option) *nats.Conn {
	t.Helper()
	urls := []string{c.servers[first].URL}
	for i, s := range c.servers {
		if i != first {
			urls = append(urls, s.URL)
		}
	}
	opts = append([]nats.Option{c.NodeAuth(), nats.DontRandomize(), nats.MaxReconnects(-1),
		nats.ReconnectWait(100 * time.Millisecond), nats.Timeout(5 * time.Second)}, opts...)
	nc, err := nats.Connect(strings.Join(urls, ","), opts...)
	if err != nil {
		t.Fatalf("natsnet: failed to connect to %s: %v", c.servers[first].Name, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// waitMesh waits until a message published on each server reaches a subscriber on each other server, which
// needs every route up and every subscription propagated.
func (c *Cluster) waitMesh() error {
	var conns []*nats.Conn
	defer func() {
		for _, nc := range conns {
			nc.Close()
		}
	}()
	for _, s := range c.servers {
		nc, err := nats.Connect(s.URL, c.NodeAuth(), nats.NoReconnect())
		if err != nil {
			return fmt.Errorf("failed to connect to %s: %w", s.Name, err)
		}
		conns = append(conns, nc)
	}
	deadline := time.Now().Add(readyTimeout)
	for i, sub := range conns {
		subject := fmt.Sprintf("cr.natsnet.ready.%d", i)
		ch := make(chan *nats.Msg, 64)
		s, err := sub.ChanSubscribe(subject, ch)
		if err != nil {
			return fmt.Errorf("failed to subscribe on %s: %w", c.servers[i].Name, err)
		}
		sub.Flush()
		for j, pub := range conns {
			if j == i {
				continue
			}
			if err := waitDelivery(pub, subject, ch, deadline); err != nil {
				return fmt.Errorf("no route from %s to %s: %w", c.servers[j].Name, c.servers[i].Name, err)
			}
		}
		s.Unsubscribe()
	}
	return nil
}

// waitDelivery publishes on subject until a message arrives on ch or the deadline passes.
func waitDelivery(pub *nats.Conn, subject string, ch <-chan *nats.Msg, deadline time.Time) error {
	for time.Now().Before(deadline) {
		if err := pub.Publish(subject, nil); err != nil {
			return err
		}
		select {
		case <-ch:
			for len(ch) > 0 {
				<-ch
			}
			return nil
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("nothing arrived within %v", readyTimeout)
}

// waitAccepting waits until the server's client port sends its INFO line (or the process exits).
func (s *Server) waitAccepting() error {
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	addr := strings.TrimPrefix(s.URL, "nats://")
	for deadline := time.Now().Add(readyTimeout); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		select {
		case <-p.done:
			return fmt.Errorf("nats-server %s exited at start (%v):\n%s", s.Name, p.cmd.ProcessState, s.Log())
		default:
		}
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			continue
		}
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		line, err := bufio.NewReader(conn).ReadString('\n')
		conn.Close()
		if err == nil && strings.HasPrefix(line, "INFO ") {
			return nil
		}
	}
	return fmt.Errorf("nats-server %s did not accept on %s within %v:\n%s", s.Name, addr, readyTimeout, s.Log())
}

// Restart starts a server again (after Kill) on the same ports and waits until it accepts clients. Its routes
// come back by themselves; a caller that needs them should wait for traffic.
func (s *Server) Restart() error {
	if err := s.launch(); err != nil {
		return err
	}
	return s.waitAccepting()
}

// Log returns what the server has written to stdout and stderr, all runs together.
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	for _, l := range s.logs {
		b.WriteString(l.String())
	}
	return b.String()
}

// Traces returns the strace output files of the server's runs (Options.Strace).
func (s *Server) Traces() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.traces...)
}

func (c *Cluster) dumpLogs(t testing.TB) {
	for _, s := range c.servers {
		log := s.Log()
		if len(log) > 3000 {
			log = "…" + log[len(log)-3000:]
		}
		t.Logf("natsnet: output of %s:\n%s", s.Name, log)
	}
}

// lockedBuffer is a bytes.Buffer that a process's output goroutine writes while a test reads.
type lockedBuffer = syncbuf.Buffer

// freePorts returns distinct free TCP ports on 127.0.0.1. Holding all listeners until the end keeps them distinct.
func freePorts(count int) ([]int, error) {
	var ports []int
	for range count {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("failed to find a free port: %w", err)
		}
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
