package tornet

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha3"
	"crypto/x509"
	"encoding/base32"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// Onionbalance publishes one front onion address over backend onion services of this network, with Debian's
// onionbalance (0.2.x, v3) and a tor of its own. Each backend is a tor whose service is an Onionbalance instance
// of this front (StartInstance): tor only accepts introductions made with the front's descriptor when the service
// has HiddenServiceOnionBalanceInstance 1 and a MasterOnionAddress in HiddenServiceDir/ob_config, so a backend
// needs a HiddenServiceDir (ADD_ONION's ephemeral services cannot be instances).
//
// The network must run with a 20 s VotingInterval and 7 Authorities (see Options): onionbalance's --is-testnet
// mode assumes the first, and hangs without enough HSDirs.
type Onionbalance struct {
	// Address is the front onion address, with ".onion".
	Address string
	// Log is onionbalance's output file.
	Log string
	// KeyFile holds the front's identity key, PKCS#8 PEM, as onionbalance reads it.
	KeyFile string

	n *Network
}

// NewOnionbalance makes the front's key; the front is published once Start runs.
func (n *Network) NewOnionbalance() (*Onionbalance, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("failed to make the front key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("failed to encode the front key: %w", err)
	}
	ob := &Onionbalance{n: n, Address: OnionAddress(pub) + ".onion", KeyFile: filepath.Join(n.Dir, "onionbalance.key"),
		Log: filepath.Join(n.Dir, "onionbalance.out")}
	if err := os.WriteFile(ob.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, fmt.Errorf("failed to write the front key: %w", err)
	}
	return ob, nil
}

// OnionAddress is the v3 onion address of an ed25519 identity key, without ".onion" (rend-spec-v3 §6).
func OnionAddress(pub ed25519.PublicKey) string {
	const version = 3
	h := sha3.New256()
	h.Write([]byte(".onion checksum"))
	h.Write(pub)
	h.Write([]byte{version})
	sum := h.Sum(nil)
	raw := append(append([]byte(nil), pub...), sum[0], sum[1], version)
	return strings.ToLower(base32.StdEncoding.EncodeToString(raw))
}

// StartInstance starts a tor named name whose onion service forwards port 80 to target (host:port) and is an
// instance of this front, and returns the service's own onion address (with ".onion") once tor has
// bootstrapped. hsDir is the service's HiddenServiceDir: one the caller prepared with the instance's key and an
// ob_config naming this front (as `cleanrelay cluster hsdir` writes it), or, when empty, a new directory in the
// network's, where tor makes a key at its first start. The network's cleanup ends the tor.
func (ob *Onionbalance) StartInstance(name, target, hsDir string) (string, error) {
	if hsDir == "" {
		hsDir = filepath.Join(ob.n.Dir, name+"-hs")
		if err := os.MkdirAll(hsDir, 0o700); err != nil {
			return "", fmt.Errorf("failed to create %s: %w", hsDir, err)
		}
		if err := os.WriteFile(filepath.Join(hsDir, "ob_config"), []byte("MasterOnionAddress "+ob.Address+"\n"), 0o600); err != nil {
			return "", fmt.Errorf("failed to write ob_config: %w", err)
		}
	}
	if _, err := ob.n.StartExtraTor(name,
		"HiddenServiceDir "+hsDir,
		"HiddenServicePort 80 "+target,
		"HiddenServiceOnionBalanceInstance 1",
	); err != nil {
		return "", err
	}
	host, err := os.ReadFile(filepath.Join(hsDir, "hostname"))
	if err != nil {
		return "", fmt.Errorf("instance %s has no hostname: %w", name, err)
	}
	return strings.TrimSpace(string(host)), nil
}

// Start starts onionbalance's tor and onionbalance itself over the given instance addresses (StartConfig with a
// config naming them instance1, instance2, ...).
func (ob *Onionbalance) Start(instances []string) error {
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "services:\n- key: %s\n  instances:\n", ob.KeyFile)
	for i, addr := range instances {
		fmt.Fprintf(&cfg, "  - address: %s\n    name: instance%d\n", addr, i+1)
	}
	return ob.StartConfig(cfg.String())
}

// StartConfig starts onionbalance's tor and onionbalance itself with config as its config.yaml, whose service
// key is KeyFile (e.g. what `cleanrelay cluster config --front-key` prints). Onionbalance fetches the instances'
// descriptors and publishes the front's on its own schedule (every 10–20 s in test-network mode); a caller waits
// by fetching the front. The network's cleanup ends both.
func (ob *Onionbalance) StartConfig(config string) error {
	bin, err := exec.LookPath("onionbalance")
	if err != nil {
		return fmt.Errorf("onionbalance not found (apt-get install onionbalance): %w", err)
	}
	tor, err := ob.n.StartExtraTor("obtor")
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(ob.n.Dir, "onionbalance.yaml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
		return fmt.Errorf("failed to write the onionbalance config: %w", err)
	}
	host, port, _ := strings.Cut(tor.ControlAddr, ":")
	out, err := os.Create(ob.Log)
	if err != nil {
		return fmt.Errorf("failed to create onionbalance's output file: %w", err)
	}
	defer out.Close()
	cmd := exec.Command(bin, "--hs-version", "v3", "--is-testnet", "-i", host, "-p", port, "-c", cfgPath, "-v", "debug")
	cmd.Stdout, cmd.Stderr = out, out
	// Unlike tor (__OwningControllerProcess), onionbalance would outlive a test binary that dies without its
	// cleanups, retrying its control port forever.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := ob.n.startProcess("onionbalance", ob.Log, cmd); err != nil {
		return err
	}
	// It fails at once on a bad config or control port; later trouble shows in Log.
	if err := waitLog(ob.Log, "Onionbalance initialized", bootstrapTimeout); err != nil {
		return fmt.Errorf("onionbalance did not start: %w (%v)", err, ob.n.anyExited())
	}
	return ob.n.anyExited()
}
