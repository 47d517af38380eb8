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
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
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
