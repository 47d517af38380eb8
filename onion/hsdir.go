package onion

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/cretz/bine/torutil"
	bineed25519 "github.com/cretz/bine/torutil/ed25519"
)

// A tor's own HiddenServiceDir, for a service tor publishes from its configuration rather than through
// ADD_ONION: an Onionbalance instance (docs/cluster.md §7), whose key is derived, never made by tor.

// Files of a HiddenServiceDir (tor's manual, HiddenServiceDir and HiddenServiceOnionBalanceInstance).
const (
	secretKeyFile = "hs_ed25519_secret_key"
	obConfigFile  = "ob_config"
	// tor writes these from the secret key at start; stale ones from another key are removed.
	publicKeyFile = "hs_ed25519_public_key"
	hostnameFile  = "hostname"
)

// ServiceKey is a v3 onion service key made from an Ed25519 seed: the same seed gives the same key and address.
type ServiceKey struct {
	kp bineed25519.KeyPair
}

// ServiceKeyFromSeed makes the key whose Ed25519 seed (RFC 8032's private key) is seed, 32 bytes. The caller
// may overwrite seed afterwards; Wipe overwrites the key.
func ServiceKeyFromSeed(seed []byte) (*ServiceKey, error) {
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("an onion service key's seed has %d bytes, not %d", ed25519.SeedSize, len(seed))
	}
	priv := ed25519.NewKeyFromSeed(seed)
	defer clear(priv[:ed25519.SeedSize])
	return &ServiceKey{kp: bineed25519.FromCryptoPrivateKey(priv)}, nil
}

// Address is the key's onion address, with ".onion".
func (k *ServiceKey) Address() string { return serviceID(k.kp) + ".onion" }

// Wipe overwrites the secret key in memory.
func (k *ServiceKey) Wipe() { wipeKey(k.kp) }

// CheckAddress accepts a v3 onion address, with or without ".onion", whose checksum and version are right, and
// returns it with ".onion".
func CheckAddress(addr string) (string, error) {
	id := strings.TrimSuffix(strings.ToLower(addr), ".onion")
	if len(id) != 56 {
		return "", fmt.Errorf("%q is not a v3 onion address (56 characters before .onion)", addr)
	}
	if _, err := torutil.PublicKeyFromV3OnionServiceID(id); err != nil {
		return "", fmt.Errorf("%q is not a v3 onion address: %s", addr, strings.ToLower(err.Error()))
	}
	return id + ".onion", nil
}

// ErrNotRAM: a directory for keys that is not on a RAM file system (tmpfs, ramfs).
var ErrNotRAM = errors.New("not on a RAM file system (tmpfs or ramfs)")

// CheckRAMDir returns nil when dir, or the directory it would be created in, is on tmpfs or ramfs; else an error
// wrapping ErrNotRAM, or the error of looking. Keys written there end with the machine's power, and never reach a
// disk.
func CheckRAMDir(dir string) error {
	p := filepath.Clean(dir)
	for {
		_, err := os.Stat(p)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) || filepath.Dir(p) == p {
			return fmt.Errorf("failed to look at %s: %w", p, err)
		}
		p = filepath.Dir(p)
	}
	ram, fsType, err := onRAM(p)
	if err != nil {
		return fmt.Errorf("failed to look at the file system of %s: %w", p, err)
	}
	if !ram {
		return fmt.Errorf("%s is %w: it is %s", p, ErrNotRAM, fsType)
	}
	return nil
}

// WriteInstanceDir makes dir the HiddenServiceDir of an Onionbalance instance of front (a v3 onion address):
// it writes key as hs_ed25519_secret_key (mode 0600) and "MasterOnionAddress front" as ob_config, creating dir
// and its missing parents (mode 0700) if it does not exist, and removes the hostname and public key files of an
// earlier key (tor writes them again at start). Files already there are replaced. It refuses a dir that is not on a RAM file system
// (ErrNotRAM, wrapped), and an existing dir that others may enter (tor would refuse it too).
func WriteInstanceDir(dir string, key *ServiceKey, front string) error {
	front, err := CheckAddress(front)
	if err != nil {
		return fmt.Errorf("the front address: %w", err)
	}
	if err := CheckRAMDir(dir); err != nil {
		return fmt.Errorf("refusing to write an onion service key to %s: the key must stay off disk: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("failed to create %s: %w", dir, err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("failed to look at %s: %w", dir, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s is accessible by others (mode %04o): chmod 700 it, or name a directory to create", dir, st.Mode().Perm())
	}
	for _, stale := range []string{hostnameFile, publicKeyFile} {
		if err := os.Remove(filepath.Join(dir, stale)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("failed to remove the stale %s: %w", stale, err)
		}
	}
	b := keyFileBytes(key.kp)
	defer clear(b)
	if err := replaceFile(filepath.Join(dir, secretKeyFile), b); err != nil {
		return err
	}
	return replaceFile(filepath.Join(dir, obConfigFile), []byte("MasterOnionAddress "+front+"\n"))
}

// replaceFile writes b as a new file (mode 0600) at path, removing whatever was there: a file opened for
// writing would keep its old mode.
func replaceFile(path string, b []byte) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("failed to replace %s: %w", path, err)
	}
	if err := createFile(path, b); err != nil {
		return fmt.Errorf("failed to write %s: %w", path, err)
	}
	return nil
}

// RAMTempDir makes a new directory on a RAM file system, for tests and scratch work: under the temporary
// directory if that is one (CheckRAMDir), else under /dev/shm. The caller removes it.
func RAMTempDir() (string, error) {
	for _, parent := range []string{os.TempDir(), "/dev/shm"} {
		if CheckRAMDir(parent) == nil {
			return os.MkdirTemp(parent, "cleanrelay-")
		}
	}
	return "", errors.New("neither the temporary directory nor /dev/shm is on tmpfs or ramfs")
}
