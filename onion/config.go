package onion

import (
	"fmt"
	"time"
)

// Defaults of Config's fields.
const (
	// DefaultVirtualPort is the port of the onion address: http://<address>.onion/ means port 80.
	DefaultVirtualPort = 80
	// DefaultMaxStreams bounds the simultaneous streams one rendezvous circuit may open. A browser tab needs a
	// handful (page, modules, the WebSocket); more than this from one circuit is a client misbehaving.
	DefaultMaxStreams = 32
	// DefaultPublishTimeout bounds bootstrap plus the first descriptor upload, at start and at every restart.
	DefaultPublishTimeout = 3 * time.Minute
	// DefaultRestartBackoff is the first pause before restarting a tor that died; it doubles up to
	// MaxRestartBackoff and resets once a restart has published again.
	DefaultRestartBackoff = time.Second
	// DefaultMaxRestartBackoff caps the pause between restarts.
	DefaultMaxRestartBackoff = 30 * time.Second
	// KillAfter is how long tor gets to exit after SIGTERM before it is killed: tor 0.4.9.11 occasionally hangs
	// on SIGTERM.
	KillAfter = 3 * time.Second
)

// Config configures Start. The zero value is a working configuration: launch `tor` from $PATH, a new address
// every start, PoW defence on when tor supports it.
type Config struct {
	// TorPath is the tor binary to launch. Optional; default "tor" looked up in $PATH.
	TorPath string

	// TempDir is the parent of the private directory (mode 0700) that holds tor's data directory, its torrc and
	// the backend socket. The private directory is created by Start and removed by Close. Optional; default
	// os.TempDir().
	TempDir string

	// KeyFile, if set, keeps the onion address stable: the service's ed25519 key is read from this file, or
	// generated and written to it (mode 0600, tor's hs_ed25519_secret_key format, so it can move to or from a
	// tor HiddenServiceDir) if the file does not exist. A file readable by group or others is refused. Optional;
	// default empty: a new address every start, and the key never touches disk.
	KeyFile string

	// ClientAuth turns on client authorization ("restricted discovery"): Start generates an x25519 client key,
	// and only a Tor client holding its private half (Service.ClientAuth) can find the service. The key lives in
	// memory for the life of the Service, so it survives tor restarts but not a new Start. Optional; default off.
	ClientAuth bool

	// DisablePoW turns off tor's proof-of-work DoS defence. When off (the default), the defence is requested
	// with PoWDefensesEnabled=1 if the running tor is 0.4.9.2 or newer; an older tor gets a warning and none.
	DisablePoW bool

	// MaxStreams is the most simultaneous streams one rendezvous circuit may open; more are refused (the circuit
	// stays open). Optional; default DefaultMaxStreams; negative means no limit.
	MaxStreams int

	// VirtualPort is the onion address's port. Optional; default DefaultVirtualPort (80).
	VirtualPort int

	// ControlAddr, if set, uses an already-running tor through its control port ("127.0.0.1:9051" or
	// "unix:/run/tor/control") instead of launching one. Authentication is by cookie, or by ControlPassword if
	// set. The backend is then a loopback TCP listener (a system tor cannot reach our private directory), and
	// tor's restart is the operator's business: when the control connection drops, Service reconnects and
	// publishes again. Optional; default: launch tor.
	ControlAddr string
	// ControlPassword authenticates to ControlAddr with HashedControlPassword. Optional.
	ControlPassword string

	// TorrcLines are extra torrc lines for a launched tor (ignored with ControlAddr). Tests use them to join a
	// private Tor network. Optional.
	TorrcLines []string
	// TorrcFile is an extra torrc file for a launched tor, %include'd after TorrcLines. Optional.
	TorrcFile string

	// PublishTimeout bounds bootstrap plus the first descriptor upload. Optional; default DefaultPublishTimeout.
	PublishTimeout time.Duration
	// RestartBackoff and MaxRestartBackoff pace restarts after tor dies. Optional; defaults
	// DefaultRestartBackoff and DefaultMaxRestartBackoff.
	RestartBackoff    time.Duration
	MaxRestartBackoff time.Duration

	// Progress, if set, is called as tor bootstraps and publishes, from a goroutine of the Service; it must not
	// block. Everything it receives is also logged.
	Progress func(Progress)
}

// Stage is where a Service is in bringing up its onion address.
type Stage string

// Stages reported through Config.Progress.
const (
	StageStarting   Stage = "starting"   // launching tor or connecting to its control port
	StageBootstrap  Stage = "bootstrap"  // tor is bootstrapping; Percent says how far
	StageUploading  Stage = "uploading"  // the descriptor is being uploaded to HSDirs
	StagePublished  Stage = "published"  // a descriptor upload succeeded: the address is reachable
	StageRestarting Stage = "restarting" // tor died (or the control connection dropped); starting again
)

// Progress is one step of bringing the onion address up.
type Progress struct {
	Stage   Stage
	Percent int    // bootstrap progress, 0–100 (StageBootstrap only)
	Summary string // tor's words for the step, if any
}

func (c Config) withDefaults() (Config, error) {
	if c.TorPath == "" {
		c.TorPath = "tor"
	}
	if c.MaxStreams == 0 {
		c.MaxStreams = DefaultMaxStreams
	}
	if c.VirtualPort == 0 {
		c.VirtualPort = DefaultVirtualPort
	}
	if c.VirtualPort < 1 || c.VirtualPort > 65535 {
		return c, fmt.Errorf("bad virtual port %d: want 1..65535", c.VirtualPort)
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = DefaultPublishTimeout
	}
	if c.RestartBackoff == 0 {
		c.RestartBackoff = DefaultRestartBackoff
	}
	if c.MaxRestartBackoff == 0 {
		c.MaxRestartBackoff = DefaultMaxRestartBackoff
	}
	if c.PublishTimeout < 0 || c.RestartBackoff < 0 || c.MaxRestartBackoff < 0 {
		return c, fmt.Errorf("negative timeout in onion config")
	}
	return c, nil
}
