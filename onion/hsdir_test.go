package onion

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha512"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bineed25519 "github.com/cretz/bine/torutil/ed25519"

	"github.com/cleanrelay/cleanrelay/onion/tornet"
)

// ramTempDir is a new directory on a RAM file system (onion.RAMTempDir), removed after the test.
func ramTempDir(t *testing.T) string {
	t.Helper()
	dir, err := RAMTempDir()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// TestServiceKeyFromSeed checks the key against what tor's file format and rend-spec-v3 say, computed here
// apart from the code under test: the file is the 32-byte header, then SHA-512 of the seed with its first half
// clamped (the scalar) and its second half as is (the prefix); the address is that of the seed's public key.
func TestServiceKeyFromSeed(t *testing.T) {
	seed := bytes.Repeat([]byte{7}, 32)
	k, err := ServiceKeyFromSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	h := sha512.Sum512(seed)
	h[0] &= 248
	h[31] &= 127
	h[31] |= 64
	want := append([]byte("== ed25519v1-secret: type0 ==\x00\x00\x00"), h[:]...)
	got := keyFileBytes(k.kp)
	if !bytes.Equal(got, want) {
		t.Fatalf("key file\n%x\nwant\n%x", got, want)
	}
	pub := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
	if a := k.Address(); a != tornet.OnionAddress(pub)+".onion" {
		t.Fatalf("address %s, want %s.onion", a, tornet.OnionAddress(pub))
	}
	// The scalar in the file is the one of the address's public key (scalar × base point).
	if p := bineed25519.PrivateKey(got[32:]).PublicKey(); !bytes.Equal(p, pub) {
		t.Fatalf("the file's scalar gives public key %x, the address has %x", p, pub)
	}
	other, _ := ServiceKeyFromSeed(bytes.Repeat([]byte{8}, 32))
	if other.Address() == k.Address() {
		t.Fatal("two seeds, one address")
	}
	k.Wipe()
	if !bytes.Equal(k.kp.PrivateKey(), make([]byte, 64)) {
		t.Fatal("Wipe left the key")
	}
	if _, err := ServiceKeyFromSeed(seed[:31]); err == nil {
		t.Fatal("a 31-byte seed was taken")
	}
}

func TestCheckAddress(t *testing.T) {
	pub := ed25519.NewKeyFromSeed(make([]byte, 32)).Public().(ed25519.PublicKey)
	id := tornet.OnionAddress(pub)
	flip := "a"
	if id[10] == 'a' {
		flip = "b"
	}
	for in, ok := range map[string]bool{
		id: true, id + ".onion": true, strings.ToUpper(id) + ".onion": true,
		id[:55] + ".onion": false, "example.com": false, "": false,
		// a changed character breaks the checksum
		id[:10] + flip + id[11:] + ".onion": false,
	} {
		got, err := CheckAddress(in)
		if ok && (err != nil || got != id+".onion") {
			t.Errorf("CheckAddress(%q) = %q, %v; want %s.onion", in, got, err, id)
		}
		if !ok && err == nil {
			t.Errorf("CheckAddress(%q) took it", in)
		}
	}
}

// TestWriteInstanceDir: the files tor reads, with their modes, in a directory created 0700; a directory on
// disk is refused with nothing written.
func TestWriteInstanceDir(t *testing.T) {
	k, _ := ServiceKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	front, _ := ServiceKeyFromSeed(bytes.Repeat([]byte{9}, 32))
	dir := filepath.Join(ramTempDir(t), "run", "hs")
	if err := WriteInstanceDir(dir, k, front.Address()); err != nil {
		t.Fatal(err)
	}
	// Again, over tor's files of another key: replaced, stale ones gone.
	os.WriteFile(filepath.Join(dir, "hostname"), []byte("stale\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "hs_ed25519_public_key"), []byte("stale"), 0o600)
	os.Chmod(filepath.Join(dir, "hs_ed25519_secret_key"), 0o644)
	if err := WriteInstanceDir(dir, k, strings.TrimSuffix(front.Address(), ".onion")); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("dir: %v, %v; want mode 0700", st.Mode(), err)
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
		if st, _ := os.Stat(filepath.Join(dir, e.Name())); st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %04o, want 0600", e.Name(), st.Mode().Perm())
		}
	}
	if strings.Join(names, " ") != "hs_ed25519_secret_key ob_config" {
		t.Fatalf("dir holds %v, want hs_ed25519_secret_key and ob_config", names)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "hs_ed25519_secret_key")); !bytes.Equal(b, keyFileBytes(k.kp)) {
		t.Fatalf("key file %x", b)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "ob_config")); string(b) != "MasterOnionAddress "+front.Address()+"\n" {
		t.Fatalf("ob_config %q", b)
	}

	open := filepath.Join(ramTempDir(t), "open")
	os.Mkdir(open, 0o755)
	if err := WriteInstanceDir(open, k, front.Address()); err == nil || !strings.Contains(err.Error(), "chmod 700") {
		t.Fatalf("a directory others may enter: %v", err)
	}
	if err := WriteInstanceDir(filepath.Join(ramTempDir(t), "x"), k, "nope.onion"); err == nil || !strings.Contains(err.Error(), "front") {
		t.Fatalf("a bad front address: %v", err)
	}

	disk := t.TempDir()
	if CheckRAMDir(disk) == nil {
		// The module's own directory is on the disk the sources are on.
		if disk, _ = os.Getwd(); CheckRAMDir(disk) == nil {
			t.Fatal("no directory on disk to try")
		}
		disk, _ = os.MkdirTemp(disk, "testdata-disk-")
		t.Cleanup(func() { os.RemoveAll(disk) })
	}
	err := WriteInstanceDir(filepath.Join(disk, "hs"), k, front.Address())
	if !errors.Is(err, ErrNotRAM) || !strings.Contains(err.Error(), "off disk") {
		t.Fatalf("a directory on disk: %v, want ErrNotRAM saying why", err)
	}
	if _, err := os.Stat(filepath.Join(disk, "hs")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the refused directory was created: %v", err)
	}
}

// TestInstanceDirReadByTor: a real tor (offline) takes the directory WriteInstanceDir wrote as an Onionbalance
// instance's, ob_config included, and derives the same address from the key file.
func TestInstanceDirReadByTor(t *testing.T) {
	tornet.Require(t)
	k, _ := ServiceKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	front, _ := ServiceKeyFromSeed(bytes.Repeat([]byte{9}, 32))
	dir := filepath.Join(ramTempDir(t), "hs")
	if err := WriteInstanceDir(dir, k, front.Address()); err != nil {
		t.Fatal(err)
	}
	if got := tornet.OfflineHostname(t, dir, "HiddenServiceOnionBalanceInstance 1"); got != k.Address() {
		t.Fatalf("tor derived %s from the key file, we derive %s", got, k.Address())
	}
}
