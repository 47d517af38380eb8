// Package tornet builds a private Tor network on 127.0.0.1 for tests, from Debian's tor and tor-gencert.
//
// The network has three directory authorities and two relays (none of them exits) and one client tor with a SOCKS
// port and a control port. It never touches the public Tor network: every tor gets TestingTorNetwork 1, our own
// DirAuthority lines, UseDefaultFallbackDirs 0 and an empty --defaults-torrc, and Start refuses to run unless the
// process is in a network namespace whose only interface is loopback (run the tests under `unshare -n`, see
// .ci/test-tor.sh). Everything lives in the test's temporary directory; nothing is cached between runs.
//
// Tests that need it are gated behind the -tor flag (see Require): `go test ./onion/... -tor`.
package tornet

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
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
)

var torFlag = flag.Bool("tor", false, "run tests that start real tor processes on a private Tor network (needs tor, tor-gencert and a loopback-only network namespace)")

// Require skips the test unless the -tor flag was given. CI (.ci/test-tor.sh) always passes the flag, so a skip
// here never hides a failure there.
func Require(t testing.TB) {
	t.Helper()
	if !*torFlag {
		t.Skip("needs -tor (a real tor on a private network in a loopback-only namespace; see .ci/test-tor.sh)")
	}
}

// Timeouts of the phases of Start: the network comes up in 10–26 s on an idle 2-core machine and took 50 s on
// a busy one (Onionbalance's, with 7 authorities voting every 20 s: 38–105 s); the timeouts only matter when
// something is broken.
const (
	consensusTimeout = 240 * time.Second
	bootstrapTimeout = 90 * time.Second
	// killAfter is how long a tor gets to exit after SIGTERM: tor 0.4.9.11 occasionally hangs on shutdown.
	killAfter = 3 * time.Second
)

const (
	numAuthorities = 3
	numRelays      = 2
)

// Network is a running private Tor network. Its processes end when the test that started it ends.
type Network struct {
	// SocksAddr is the client tor's SOCKS5 address (127.0.0.1:port). It reports onion-service failures with
	// Tor's extended SOCKS error codes (see SOCKSError).
	SocksAddr string
	// ControlAddr is the client tor's control port address; CookieFile authenticates to it.
	ControlAddr string
	// CookieFile is the client tor's control-port authentication cookie.
	CookieFile string
	// Dir is the network's private directory (torrcs, data directories, logs).
	Dir string

	emptyFile    string
	dirAuthLines []string

	mu    sync.Mutex
	procs []*process
}

type node struct {
	nick      string
	dataDir   string
	orPort    int
	dirPort   int    // authorities only
	fp        string // relay identity fingerprint (hex)
	v3ident   string // authorities only
	authority bool
}

// process is one tor the network started; pid is recorded so teardown ends exactly it.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// Options shape a Network; the zero value is what Start builds.
type Options struct {
	// VotingInterval is the authorities' voting interval (default 10 s). A test network's onion-service time
	// period is 24 voting intervals; Onionbalance's --is-testnet mode assumes chutney's 20 s (an 8-minute period)
	// and derives wrong blinded keys on any other.
	VotingInterval time.Duration
	// Authorities is the number of directory authorities, which are the network's only HSDirs (default 3).
	// Onionbalance 0.2.2 loops forever computing a descriptor's HSDirs when the first replica's four take every
	// HSDir it knows, and it skips an HSDir whose microdescriptor changed since its tor fetched them: a network
	// for it needs 7 (5 hung in one run of two).
	Authorities int
}

// Start builds the network and returns once the client tor has bootstrapped to 100%. It fails the test on any
// error, and registers a cleanup that ends every tor it started (SIGTERM, then SIGKILL after 3 s), also when the
// test fails.
func Start(t testing.TB) *Network {
	t.Helper()
	return StartWith(t, Options{})
}

// StartWith is Start with Options.
func StartWith(t testing.TB, opts Options) *Network {
	t.Helper()
	Require(t)
	n, err := start(t, opts)
	if err != nil {
		t.Fatalf("tornet: %v", err)
	}
	return n
}

func start(t testing.TB, opts Options) (*Network, error) {
	nAuth := numAuthorities
	if opts.Authorities > 0 {
		nAuth = opts.Authorities
	}
	voting := "10"
	if opts.VotingInterval > 0 {
		voting = strconv.Itoa(int(opts.VotingInterval / time.Second))
	}
	if err := CheckLoopbackOnly(); err != nil {
		return nil, err
	}
	torPath, err := exec.LookPath("tor")
	if err != nil {
		return nil, fmt.Errorf("tor not found (apt-get install tor): %w", err)
	}
	gencert, err := exec.LookPath("tor-gencert")
	if err != nil {
		return nil, fmt.Errorf("tor-gencert not found (apt-get install tor): %w", err)
	}
	n := &Network{Dir: t.TempDir()}
	t.Cleanup(func() {
		if t.Failed() {
			n.dumpLogs(t)
		}
		n.stopAll()
	})
	n.emptyFile = filepath.Join(n.Dir, "empty")
	if err := os.WriteFile(n.emptyFile, nil, 0o600); err != nil {
		return nil, fmt.Errorf("failed to write empty torrc: %w", err)
	}

	ports, err := freePorts(nAuth*2 + numRelays + 2)
	if err != nil {
		return nil, err
	}
	var nodes []*node
	for i := range nAuth {
		nodes = append(nodes, &node{nick: fmt.Sprintf("auth%d", i), orPort: ports[0], dirPort: ports[1], authority: true})
		ports = ports[2:]
	}
	for i := range numRelays {
		nodes = append(nodes, &node{nick: fmt.Sprintf("relay%d", i), orPort: ports[0]})
		ports = ports[1:]
	}
	socksPort, controlPort := ports[0], ports[1]

	for _, nd := range nodes {
		nd.dataDir = filepath.Join(n.Dir, nd.nick)
		if err := os.MkdirAll(filepath.Join(nd.dataDir, "keys"), 0o700); err != nil {
			return nil, fmt.Errorf("failed to create data directory: %w", err)
		}
		if err := os.Chmod(nd.dataDir, 0o700); err != nil {
			return nil, fmt.Errorf("failed to chmod data directory: %w", err)
		}
		if nd.authority {
			if nd.v3ident, err = n.makeAuthorityKeys(gencert, nd); err != nil {
				return nil, err
			}
		}
		if nd.fp, err = n.makeRelayIdentity(torPath, nd); err != nil {
			return nil, err
		}
	}
	var hsdirs []string
	for _, nd := range nodes {
		if nd.authority {
			n.dirAuthLines = append(n.dirAuthLines, fmt.Sprintf("DirAuthority %s orport=%d no-v2 v3ident=%s 127.0.0.1:%d %s",
				nd.nick, nd.orPort, nd.v3ident, nd.dirPort, nd.fp))
			hsdirs = append(hsdirs, "$"+nd.fp)
		}
	}

	// Phase 1: authorities and relays.
	for _, nd := range nodes {
		lines := n.commonLines(nd.dataDir)
		lines = append(lines,
			"Nickname "+nd.nick,
			"SocksPort 0",
			"Address 127.0.0.1",
			fmt.Sprintf("ORPort 127.0.0.1:%d IPv4Only", nd.orPort),
			"AssumeReachable 1",
			// No DNS at all: a relay must never resolve anything through the system resolver.
			"ServerDNSResolvConfFile /dev/null",
			"ServerDNSDetectHijacking 0",
			"ServerDNSTestAddresses",
			// No exits: onion services need none, and exits start resolving DNS a minute or two after start.
			"ExitRelay 0",
			"ExitPolicy reject *:*",
			"ContactInfo tornet@127.0.0.1",
		)
		if nd.authority {
			lines = append(lines,
				fmt.Sprintf("DirPort 127.0.0.1:%d", nd.dirPort),
				"AuthoritativeDirectory 1",
				"V3AuthoritativeDirectory 1",
				"TestingDirAuthVoteGuard *",
				"TestingDirAuthVoteExit *",
				// Only the authorities are HSDirs: plain relays acting as caches answer 404 for a while.
				"TestingDirAuthVoteHSDir "+strings.Join(hsdirs, ","),
				"TestingMinExitFlagThreshold 0",
				"V3AuthNIntervalsValid 2",
				"TestingV3AuthInitialVotingInterval "+voting,
				"TestingV3AuthInitialVoteDelay 2",
				"TestingV3AuthInitialDistDelay 2",
				"V3AuthVotingInterval "+voting,
				"V3AuthVoteDelay 2",
				"V3AuthDistDelay 2",
			)
		} else {
			lines = append(lines, "DirCache 0")
		}
		if err := n.startTor(torPath, nd.nick, nd.dataDir, lines); err != nil {
			return nil, err
		}
	}
	var auth *node
	for _, nd := range nodes {
		if nd.authority {
			auth = nd
			break
		}
	}
	var nicks []string
	for _, nd := range nodes {
		nicks = append(nicks, nd.nick)
	}
	if err := n.waitConsensus(auth.dirPort, nicks); err != nil {
		return nil, err
	}

	// Phase 2: the client, from a complete consensus (an incomplete one leaves clients stuck at 95%).
	clientDir := filepath.Join(n.Dir, "client")
	if err := os.MkdirAll(clientDir, 0o700); err != nil {
		return nil, fmt.Errorf("failed to create data directory: %w", err)
	}
	n.SocksAddr = fmt.Sprintf("127.0.0.1:%d", socksPort)
	n.ControlAddr = fmt.Sprintf("127.0.0.1:%d", controlPort)
	n.CookieFile = filepath.Join(clientDir, "control_auth_cookie")
	lines := n.commonLines(clientDir)
	lines = append(lines,
		// ExtendedErrors makes the SOCKS reply say why an onion connection failed (e.g. missing client auth).
		fmt.Sprintf("SocksPort 127.0.0.1:%d ExtendedErrors", socksPort),
		fmt.Sprintf("ControlPort 127.0.0.1:%d", controlPort),
		"CookieAuthentication 1",
	)
	if err := n.startTor(torPath, "client", clientDir, lines); err != nil {
		return nil, err
	}
	if err := waitLog(filepath.Join(clientDir, "notice.log"), "Bootstrapped 100%", bootstrapTimeout); err != nil {
		return nil, fmt.Errorf("client tor did not bootstrap: %w", err)
	}
	return n, nil
}

// ExtraTor is one more client tor of the network, with a control port (cookie authentication) and no SOCKS port:
// it stands in for an operator's already-running system tor. Tests kill it and start it again.
type ExtraTor struct {
	// ControlAddr is its control port; it stays the same across Kill and Start.
	ControlAddr string

	n       *Network
	name    string
	dataDir string
	lines   []string
	torPath string

	mu   sync.Mutex
	proc *process
}

// StartExtraTor starts an ExtraTor, with extra torrc lines if given, and waits until it has bootstrapped. The
// network's cleanup ends it.
func (n *Network) StartExtraTor(name string, extra ...string) (*ExtraTor, error) {
	torPath, err := exec.LookPath("tor")
	if err != nil {
		return nil, fmt.Errorf("tor not found (apt-get install tor): %w", err)
	}
	ports, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	e := &ExtraTor{n: n, name: name, dataDir: filepath.Join(n.Dir, name), torPath: torPath,
		ControlAddr: fmt.Sprintf("127.0.0.1:%d", ports[0])}
	if err := os.MkdirAll(e.dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("failed to create data directory: %w", err)
	}
	e.lines = append(n.commonLines(e.dataDir),
		"SocksPort 0",
		"ControlPort "+e.ControlAddr,
		"CookieAuthentication 1",
	)
	e.lines = append(e.lines, extra...)
	return e, e.Start()
}

// Start starts the tor (again) and waits until it has bootstrapped.
func (e *ExtraTor) Start() error {
	logFile := filepath.Join(e.dataDir, "notice.log")
	// A fresh log, so the wait below sees this run's bootstrap and not the last one's.
	os.Remove(logFile)
	if err := e.n.startTor(e.torPath, e.name, e.dataDir, e.lines); err != nil {
		return err
	}
	e.n.mu.Lock()
	p := e.n.procs[len(e.n.procs)-1]
	e.n.mu.Unlock()
	e.mu.Lock()
	e.proc = p
	e.mu.Unlock()
	if err := waitLog(logFile, "Bootstrapped 100%", bootstrapTimeout); err != nil {
		return fmt.Errorf("tor %s did not bootstrap: %w", e.name, err)
	}
	return nil
}

// Kill ends the tor with SIGKILL, as a crash would, and waits for it.
func (e *ExtraTor) Kill() {
	e.mu.Lock()
	p := e.proc
	e.mu.Unlock()
	p.cmd.Process.Kill()
	<-p.done
}

// CheckLoopbackOnly returns an error unless the process runs in a network namespace whose only interface is lo.
// It is the hard guarantee that no tor started for a test can reach anything but this machine.
func CheckLoopbackOnly() error {
	// net.Interfaces asks the kernel over netlink, so it sees this process's namespace; /sys/class/net would show
	// the namespace sysfs was mounted in.
	ifaces, err := net.Interfaces()
	if err != nil {
		return fmt.Errorf("refusing to start tor: failed to list network interfaces: %w", err)
	}
	var names []string
	for _, ifc := range ifaces {
		names = append(names, ifc.Name)
	}
	if len(ifaces) != 1 || ifaces[0].Flags&net.FlagLoopback == 0 {
		return fmt.Errorf("refusing to start tor: this network namespace has interfaces %v, want only loopback; "+
			"run the tests inside `unshare -n sh -c 'ip link set lo up && go test ... -tor'` (see .ci/test-tor.sh)", names)
	}
	if ifaces[0].Flags&net.FlagUp == 0 {
		return fmt.Errorf("refusing to start tor: loopback is down; run `ip link set lo up` in the namespace first")
	}
	return nil
}

// commonLines are the options every tor of the network has, including an onion-service tor (see ServiceTorrc).
func (n *Network) commonLines(dataDir string) []string {
	lines := []string{
		"DataDirectory " + dataDir,
		"Log notice file " + filepath.Join(dataDir, "notice.log"),
		"ShutdownWaitLength 0",
		// If the test binary dies without running its cleanups, tor notices and exits by itself.
		fmt.Sprintf("__OwningControllerProcess %d", os.Getpid()),
	}
	return append(lines, n.networkLines()...)
}

// networkLines make a tor join this network and nothing else.
func (n *Network) networkLines() []string {
	lines := []string{
		"TestingTorNetwork 1",
		"UseDefaultFallbackDirs 0",
		"PathsNeededToBuildCircuits 0.67",
		"ClientUseIPv6 0",
		// KIST's socket-buffer heuristics add tens of milliseconds per hop on loopback; the plain scheduler
		// keeps round-trip measurements about the relay, not about KIST (docs/onion.md, "Measurements").
		"Schedulers Vanilla",
		// Empty GeoIP files skip a ~2 s parse.
		"GeoIPFile " + n.emptyFile,
		"GeoIPv6File " + n.emptyFile,
	}
	return append(lines, n.dirAuthLines...)
}

// ServiceTorrc returns the torrc lines an onion-service tor needs to join this network (and only it). They hold
// no DataDirectory, ports or logging, which the service's own launcher chooses.
func (n *Network) ServiceTorrc() []string {
	return n.networkLines()
}

// EmptyFile is an empty regular file, for `--defaults-torrc`.
func (n *Network) EmptyFile() string { return n.emptyFile }

func (n *Network) makeAuthorityKeys(gencert string, nd *node) (string, error) {
	keys := filepath.Join(nd.dataDir, "keys")
	cert := filepath.Join(keys, "authority_certificate")
	cmd := exec.Command(gencert, "--create-identity-key", "-m", "12",
		"-a", fmt.Sprintf("127.0.0.1:%d", nd.dirPort),
		"-i", filepath.Join(keys, "authority_identity_key"),
		"-s", filepath.Join(keys, "authority_signing_key"),
		"-c", cert,
		"--passphrase-fd", "0")
	cmd.Stdin = strings.NewReader("\n") // an empty passphrase
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("failed to run tor-gencert for %s: %w: %s", nd.nick, err, out)
	}
	b, err := os.ReadFile(cert)
	if err != nil {
		return "", fmt.Errorf("failed to read authority certificate: %w", err)
	}
	for line := range strings.Lines(string(b)) {
		if fp, ok := strings.CutPrefix(line, "fingerprint "); ok {
			return strings.TrimSpace(fp), nil
		}
	}
	return "", fmt.Errorf("no fingerprint line in the certificate of %s", nd.nick)
}

func (n *Network) makeRelayIdentity(torPath string, nd *node) (string, error) {
	cmd := exec.Command(torPath, "--defaults-torrc", n.emptyFile, "-f", n.emptyFile, "--list-fingerprint",
		"--DataDirectory", nd.dataDir, "--ORPort", fmt.Sprintf("127.0.0.1:%d", nd.orPort),
		"--Nickname", nd.nick, "--Address", "127.0.0.1", "--DisableNetwork", "1",
		"--GeoIPFile", n.emptyFile, "--GeoIPv6File", n.emptyFile, "--Log", "warn stderr")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("failed to make the identity of %s: %w: %s", nd.nick, err, out)
	}
	b, err := os.ReadFile(filepath.Join(nd.dataDir, "fingerprint"))
	if err != nil {
		return "", fmt.Errorf("failed to read fingerprint of %s: %w", nd.nick, err)
	}
	f := strings.Fields(string(b))
	if len(f) != 2 || len(f[1]) != 40 {
		return "", fmt.Errorf("unexpected fingerprint file of %s: %q", nd.nick, b)
	}
	return f[1], nil
}

func (n *Network) startTor(torPath, name, dataDir string, lines []string) error {
	torrc := filepath.Join(n.Dir, name+".torrc")
	if err := os.WriteFile(torrc, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		return fmt.Errorf("failed to write torrc: %w", err)
	}
	out, err := os.Create(filepath.Join(n.Dir, name+".out"))
	if err != nil {
		return fmt.Errorf("failed to create output file: %w", err)
	}
	defer out.Close()
	cmd := exec.Command(torPath, "--defaults-torrc", n.emptyFile, "-f", torrc)
	cmd.Stdout, cmd.Stderr = out, out
	return n.startProcess(name, filepath.Join(dataDir, "notice.log"), cmd)
}

// startProcess starts cmd and records it, so that teardown ends exactly it; log is what dumpLogs shows.
func (n *Network) startProcess(name, log string, cmd *exec.Cmd) error {
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("failed to start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, log: log, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	n.mu.Lock()
	n.procs = append(n.procs, p)
	n.mu.Unlock()
	return nil
}

// Stop ends every tor of the network: SIGTERM, then SIGKILL after 3 s. It is also registered as a cleanup.
func (n *Network) stopAll() {
	n.mu.Lock()
	procs := n.procs
	n.procs = nil
	n.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(func() { stopProcess(p.cmd.Process, p.done) })
	}
	wg.Wait()
}

// stopProcess ends one process by its PID and waits for it.
func stopProcess(p *os.Process, done <-chan struct{}) {
	p.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(killAfter):
		p.Kill()
		<-done
	}
}

// PIDs returns the PIDs of the network's running tors.
func (n *Network) PIDs() []int {
	n.mu.Lock()
	defer n.mu.Unlock()
	var pids []int
	for _, p := range n.procs {
		pids = append(pids, p.cmd.Process.Pid)
	}
	return pids
}

func (n *Network) dumpLogs(t testing.TB) {
	n.mu.Lock()
	procs := slices.Clone(n.procs)
	n.mu.Unlock()
	for _, p := range procs {
		b, _ := os.ReadFile(p.log)
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) > 15 {
			lines = lines[len(lines)-15:]
		}
		t.Logf("tornet: last lines of %s's log:\n%s", p.name, strings.Join(lines, "\n"))
	}
}

// waitConsensus polls an authority until its consensus lists every node as Running.
func (n *Network) waitConsensus(dirPort int, nicks []string) error {
	url := fmt.Sprintf("http://127.0.0.1:%d/tor/status-vote/current/consensus", dirPort)
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(consensusTimeout)
	var last string
	for time.Now().Before(deadline) {
		if err := n.anyExited(); err != nil {
			return err
		}
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		// Otherwise tor answers deflate, which net/http does not decode.
		req.Header.Set("Accept-Encoding", "identity")
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				running := runningNicks(body)
				missing := 0
				for _, nick := range nicks {
					if !running[nick] {
						missing++
					}
				}
				if missing == 0 {
					return nil
				}
				last = fmt.Sprintf("%d of %d relays not yet Running", missing, len(nicks))
			} else {
				last = resp.Status
			}
		} else {
			last = err.Error()
		}
		time.Sleep(500 * time.Millisecond)
	}
	return fmt.Errorf("no complete consensus after %v (last: %s)", consensusTimeout, last)
}

// runningNicks parses a consensus document: each router's "r NICK ..." line is followed by its "s FLAGS" line.
func runningNicks(consensus []byte) map[string]bool {
	running := map[string]bool{}
	var nick string
	sc := bufio.NewScanner(bytes.NewReader(consensus))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) > 1 && f[0] == "r":
			nick = f[1]
		case len(f) > 0 && f[0] == "s" && nick != "":
			if slices.Contains(f[1:], "Running") {
				running[nick] = true
			}
			nick = ""
		}
	}
	return running
}

func (n *Network) anyExited() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, p := range n.procs {
		select {
		case <-p.done:
			return fmt.Errorf("tor %s exited early (%v); see %s", p.name, p.cmd.ProcessState, p.log)
		default:
		}
	}
	return nil
}

// waitLog waits until the file contains want.
func waitLog(path, want string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(path)
		if err == nil && bytes.Contains(b, []byte(want)) {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("%q not in %s after %v", want, path, timeout)
}

// freePorts returns distinct free TCP ports on 127.0.0.1. Holding all listeners until the end keeps them distinct.
func freePorts(count int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range count {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("failed to find a free port: %w", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// AddClientAuth gives the client tor the x25519 private key (base32, as pasted into Tor Browser) for an onion
// service with restricted discovery, through its control port, as Tor Browser does (ONION_CLIENT_AUTH_ADD).
func (n *Network) AddClientAuth(ctx context.Context, hostname, privateKeyBase32 string) error {
	id := strings.TrimSuffix(hostname, ".onion")
	// Tor Browser shows and takes base32; the control port wants base64.
	raw, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(strings.ToUpper(privateKeyBase32))
	if err != nil || len(raw) != 32 {
		return fmt.Errorf("failed to add client auth: bad base32 x25519 key (%v)", err)
	}
	reply, err := n.control(ctx, fmt.Sprintf("ONION_CLIENT_AUTH_ADD %s x25519:%s", id, base64.StdEncoding.EncodeToString(raw)))
	if err != nil {
		return fmt.Errorf("failed to add client auth: %w", err)
	}
	if !strings.HasPrefix(reply, "25") {
		return fmt.Errorf("failed to add client auth: tor replied %q", reply)
	}
	return nil
}

// ForgetOnionServices makes the client tor forget what it knows of onion services (SIGNAL NEWNYM, as Tor
// Browser's "New Tor circuit" does): cached descriptors and, with them, the per-HSDir limit on asking again.
// A client that kept failing against a service whose tor died can otherwise not find the restarted service for
// about 3 minutes (docs/onion.md); a test that is about the service, not that client-side pause, calls this
// once the service has published again.
func (n *Network) ForgetOnionServices(ctx context.Context) error {
	reply, err := n.control(ctx, "SIGNAL NEWNYM")
	if err != nil {
		return fmt.Errorf("failed to reset the client tor: %w", err)
	}
	if !strings.HasPrefix(reply, "250") {
		return fmt.Errorf("failed to reset the client tor: tor replied %q", reply)
	}
	return nil
}

// control sends one command to the client tor's control port and returns the reply's last line.
func (n *Network) control(ctx context.Context, command string) (string, error) {
	cookie, err := os.ReadFile(n.CookieFile)
	if err != nil {
		return "", fmt.Errorf("failed to read control cookie: %w", err)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", n.ControlAddr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	r := bufio.NewReader(c)
	roundTrip := func(line string) (string, error) {
		if _, err := io.WriteString(c, line+"\r\n"); err != nil {
			return "", err
		}
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return "", err
			}
			l = strings.TrimRight(l, "\r\n")
			if len(l) >= 4 && l[3] == ' ' { // the last line of a reply: "NNN text"
				return l, nil
			}
		}
	}
	if reply, err := roundTrip(fmt.Sprintf("AUTHENTICATE %x", cookie)); err != nil {
		return "", err
	} else if !strings.HasPrefix(reply, "250") {
		return "", fmt.Errorf("control authentication refused: %q", reply)
	}
	return roundTrip(command)
}

// SOCKSError is a failed SOCKS5 CONNECT through the client tor. With ExtendedErrors, tor's codes for onion
// services are 0xF0 descriptor not found, 0xF1 descriptor invalid, 0xF2 introduction failed, 0xF3 rendezvous
// failed, 0xF4 client authorization missing, 0xF5 client authorization wrong, 0xF6 bad address,
// 0xF7 introduction timed out.
type SOCKSError struct{ Code byte }

func (e *SOCKSError) Error() string {
	return fmt.Sprintf("socks connect failed: reply 0x%02X", e.Code)
}

// Codes of tor's extended SOCKS errors that tests branch on.
const (
	SOCKSDescriptorNotFound  byte = 0xF0
	SOCKSClientAuthMissing   byte = 0xF4
	SOCKSIntroductionTimeout byte = 0xF7
)

// DialContext connects to addr ("host:port", host usually an .onion name) through the client tor's SOCKS5 port.
// It has the signature of net.Dialer.DialContext, so it can back an http.Transport or a WebSocket dialer.
func (n *Network) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return DialSOCKS5(ctx, n.SocksAddr, addr)
}

// DialSOCKS5 connects to addr through the SOCKS5 proxy at proxyAddr, with no authentication and the host name
// passed to the proxy unresolved (tor resolves .onion names itself). A refused CONNECT is a *SOCKSError.
func DialSOCKS5(ctx context.Context, proxyAddr, addr string) (net.Conn, error) {
	return DialSOCKS5Isolated(ctx, proxyAddr, addr, "")
}

// DialSOCKS5Isolated is DialSOCKS5 with SOCKS username/password authentication: tor puts streams with different
// credentials on different circuits (IsolateSOCKSAuth), so each isolation string gets circuits of its own, as a
// new Tor Browser tab on another site would. An empty isolation is DialSOCKS5.
func DialSOCKS5Isolated(ctx context.Context, proxyAddr, addr, isolation string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("bad address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port <= 0 || port > 65535 || len(host) > 255 || len(isolation) > 255 {
		return nil, fmt.Errorf("bad address %q", addr)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", proxyAddr)
	if err != nil {
		return nil, fmt.Errorf("failed to reach the SOCKS proxy: %w", err)
	}
	// The handshake obeys ctx; the returned connection has no deadline.
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	err = socksHandshake(c, host, port, isolation)
	if !stop() {
		err = errors.Join(err, ctx.Err())
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

func socksHandshake(c net.Conn, host string, port int, isolation string) error {
	var method byte // no authentication
	if isolation != "" {
		method = 2 // username/password (RFC 1929)
	}
	if _, err := c.Write([]byte{5, 1, method}); err != nil { // version 5, one method
		return fmt.Errorf("failed to write socks greeting: %w", err)
	}
	var buf [262]byte
	if _, err := io.ReadFull(c, buf[:2]); err != nil {
		return fmt.Errorf("failed to read socks method: %w", err)
	}
	if buf[0] != 5 || buf[1] != method {
		return fmt.Errorf("socks proxy refused method %d (%x)", method, buf[:2])
	}
	if isolation != "" {
		auth := append([]byte{1, byte(len(isolation))}, isolation...)
		auth = append(auth, 1, 'x') // tor takes any password; the pair is what isolates
		if _, err := c.Write(auth); err != nil {
			return fmt.Errorf("failed to write socks credentials: %w", err)
		}
		if _, err := io.ReadFull(c, buf[:2]); err != nil {
			return fmt.Errorf("failed to read socks authentication reply: %w", err)
		}
		if buf[1] != 0 {
			return fmt.Errorf("socks proxy refused the credentials (%x)", buf[:2])
		}
	}
	req := append([]byte{5, 1, 0, 3, byte(len(host))}, host...) // CONNECT to a domain name
	req = append(req, byte(port>>8), byte(port))
	if _, err := c.Write(req); err != nil {
		return fmt.Errorf("failed to write socks request: %w", err)
	}
	if _, err := io.ReadFull(c, buf[:4]); err != nil {
		return fmt.Errorf("failed to read socks reply: %w", err)
	}
	if buf[1] != 0 {
		return &SOCKSError{Code: buf[1]}
	}
	var skip int
	switch buf[3] {
	case 1:
		skip = 4
	case 4:
		skip = 16
	case 3:
		if _, err := io.ReadFull(c, buf[:1]); err != nil {
			return fmt.Errorf("failed to read socks reply: %w", err)
		}
		skip = int(buf[0])
	default:
		return fmt.Errorf("bad socks reply address type %d", buf[3])
	}
	if _, err := io.ReadFull(c, buf[:skip+2]); err != nil {
		return fmt.Errorf("failed to read socks reply: %w", err)
	}
	return nil
}

// HTTPClient returns an HTTP client whose connections go through the client tor.
func (n *Network) HTTPClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{DialContext: n.DialContext, DisableKeepAlives: true},
		Timeout:   60 * time.Second,
	}
}
