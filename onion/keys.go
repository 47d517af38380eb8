package onion

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/cretz/bine/torutil"
	bineed25519 "github.com/cretz/bine/torutil/ed25519"
)

// keyFileHeader starts tor's hs_ed25519_secret_key file: 32 bytes of header, then the 64-byte expanded key.
var keyFileHeader = []byte("== ed25519v1-secret: type0 ==\x00\x00\x00")

const expandedKeySize = 64

// newServiceKey makes a fresh v3 onion service key.
func newServiceKey() (bineed25519.KeyPair, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("failed to generate onion key: %w", err)
	}
	// Overwrite the seed: tor takes the expanded key made from it. The second half is the public key, which
	// the KeyPair keeps using.
	defer clear(priv[:ed25519.SeedSize])
	return bineed25519.FromCryptoPrivateKey(priv), nil
}

// loadOrCreateKeyFile reads the service key from path, or creates the file (mode 0600) with a new key if it does
// not exist. It never overwrites a file: a malformed one is an error.
func loadOrCreateKeyFile(path string) (key bineed25519.KeyPair, created bool, err error) {
	b, err := readKeyFile(path)
	defer clear(b)
	if errors.Is(err, fs.ErrNotExist) {
		key, err := newServiceKey()
		if err != nil {
			return nil, false, err
		}
		if err := writeKeyFile(path, key); err != nil {
			return nil, false, err
		}
		return key, true, nil
	}
	if err != nil {
		return nil, false, err
	}
	if len(b) != len(keyFileHeader)+expandedKeySize || !bytes.Equal(b[:len(keyFileHeader)], keyFileHeader) {
		return nil, false, fmt.Errorf("failed to read onion key file %s: not a tor hs_ed25519_secret_key file", path)
	}
	expanded := bytes.Clone(b[len(keyFileHeader):])
	return bineed25519.PrivateKey(expanded).KeyPair(), false, nil
}

func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("failed to stat onion key file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("onion key file %s is not a regular file", path)
	}
	// Like ssh: a secret key others can read is no longer secret, so refuse rather than go on quietly.
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("onion key file %s is accessible by others (mode %04o): chmod 600 it", path, st.Mode().Perm())
	}
	b := make([]byte, len(keyFileHeader)+expandedKeySize+1)
	n, err := f.Read(b)
	if err != nil {
		return nil, fmt.Errorf("failed to read onion key file %s: %w", path, err)
	}
	return b[:n], nil
}

func writeKeyFile(path string, key bineed25519.KeyPair) error {
	b := keyFileBytes(key)
	defer clear(b)
	if err := createFile(path, b); err != nil {
		return fmt.Errorf("failed to write onion key file: %w", err)
	}
	return nil
}

// keyFileBytes is tor's hs_ed25519_secret_key file of key: the 32-byte header, then the expanded key (the
// clamped scalar, then the signing prefix). The caller overwrites it.
func keyFileBytes(key bineed25519.KeyPair) []byte {
	return append(bytes.Clone(keyFileHeader), key.PrivateKey()...)
}

// createFile writes b to a new file at path (mode 0600) and syncs it. O_EXCL: if someone created the file since
// we looked, it fails rather than clobber it. A file it could not write whole is removed.
func createFile(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}

// serviceID is the onion address of key without ".onion".
func serviceID(key bineed25519.KeyPair) string {
	return torutil.OnionServiceIDFromV3PublicKey(key.PublicKey())
}

// ClientAuth is the client-authorization credential of a Service started with Config.ClientAuth.
type ClientAuth struct {
	// PrivateKey is the client's x25519 private key in base32: what the user pastes into Tor Browser when it
	// asks for the onion service key.
	PrivateKey string
	// PublicKey is the x25519 public key in base32 that the service authorizes (ClientAuthV3).
	PublicKey string
	// AuthFileLine is the same credential as a line of a file NAME.auth_private in a tor client's
	// ClientOnionAuthDir: "<address-without-.onion>:descriptor:x25519:<PrivateKey>".
	AuthFileLine string
}

// b32 is tor's base32: RFC 4648 alphabet, no padding.
var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

func newClientAuth(id string) (*ClientAuth, error) {
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("failed to generate client auth key: %w", err)
	}
	a := &ClientAuth{
		PrivateKey: b32.EncodeToString(priv.Bytes()),
		PublicKey:  b32.EncodeToString(priv.PublicKey().Bytes()),
	}
	a.AuthFileLine = strings.Join([]string{id, "descriptor", "x25519", a.PrivateKey}, ":")
	return a, nil
}

// wipeKey overwrites the key in memory (both of bine's KeyPair forms hand out their own bytes).
func wipeKey(key bineed25519.KeyPair) {
	if key != nil {
		clear(key.PrivateKey())
	}
}
