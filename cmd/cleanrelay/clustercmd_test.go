package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bineed25519 "github.com/cretz/bine/torutil/ed25519"

	"github.com/cleanrelay/cleanrelay/onion"
	"github.com/cleanrelay/cleanrelay/onion/tornet"
	"github.com/cleanrelay/cleanrelay/relay/cluster"
)

// ramTempDir is a new directory on a RAM file system (onion.RAMTempDir), removed after the test.
func ramTempDir(t *testing.T) string {
	t.Helper()
	dir, err := onion.RAMTempDir()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// wantInstanceAddress is node's instance address computed apart from the commands: the seed from
// cluster.OnionInstanceSeed, its Ed25519 public key, rend-spec-v3's address (tornet's own code).
func wantInstanceAddress(t *testing.T, secretFile, node string) string {
	t.Helper()
	b, err := os.ReadFile(secretFile)
	if err != nil {
		t.Fatal(err)
	}
	seed, err := cluster.OnionInstanceSeed(bytes.TrimSpace(b), node)
	if err != nil {
		t.Fatal(err)
	}
	return tornet.OnionAddress(ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)) + ".onion"
}

// runCluster runs "cleanrelay cluster ARGS" in this process and returns its exit code, stdout and stderr.
func runCluster(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := run(append([]string{"cluster"}, args...), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// writeFrontKey writes a new front key as onionbalance reads it (PKCS#8 PEM) and returns the file and its
// address.
func writeFrontKey(t *testing.T) (string, string) {
	t.Helper()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "front.key")
	if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return f, tornet.OnionAddress(pub) + ".onion"
}

// TestClusterConfig: "cleanrelay cluster config" prints onionbalance's config with each node's derived address,
// the same at every run, and the front's address from its key; a bad command line says what is wrong.
func TestClusterConfig(t *testing.T) {
	secret := writeSecret(t)
	frontKey, front := writeFrontKey(t)
	code, out, errOut := runCluster("config", "--cluster-secret-file", secret, "--nodes", "node-a,node-b,node-c", "--front-key", frontKey)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	want := "# onionbalance's config.yaml, from cleanrelay cluster config: the nodes' instance addresses,\n" +
		"# derived from the cluster secret and the nodes' names\n" +
		"# front: " + front + "\n" +
		"services:\n- key: " + frontKey + "\n  instances:\n"
	for _, n := range []string{"node-a", "node-b", "node-c"} {
		want += fmt.Sprintf("  - address: %s\n    name: %s\n", wantInstanceAddress(t, secret, n), n)
	}
	if out != want {
		t.Fatalf("config:\n%s\nwant:\n%s", out, want)
	}
	// The secret from the environment, the key's path for onionbalance given apart: the same addresses.
	b, _ := os.ReadFile(secret)
	t.Setenv(envClusterSecret, string(b))
	code, again, errOut := runCluster("config", "--nodes", "node-a,node-b,node-c", "--front-key", frontKey, "--key-path", "/run/secrets/front_key")
	if code != 0 || again != strings.Replace(want, "key: "+frontKey, "key: /run/secrets/front_key", 1) {
		t.Fatalf("exit %d, config:\n%s\nstderr: %s", code, again, errOut)
	}
	// Another secret: other addresses.
	code, other, _ := runCluster("config", "--cluster-secret-file", writeSecret(t), "--nodes", "node-a,node-b,node-c", "--key-path", "k")
	if code != 0 || strings.Contains(other, wantInstanceAddress(t, secret, "node-a")) {
		t.Fatalf("another secret gave node-a's address:\n%s", other)
	}

	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(ecKey)
	ecFile := filepath.Join(t.TempDir(), "ec.key")
	os.WriteFile(ecFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	t.Setenv(envClusterSecret, "")
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--nodes", "node-a", "--key-path", "k"}, 2, "cluster secret is needed"},
		{[]string{"--cluster-secret-file", secret, "--key-path", "k"}, 2, "--nodes is needed"},
		{[]string{"--cluster-secret-file", secret, "--nodes", "node-a"}, 2, "--front-key or --key-path"},
		{[]string{"--cluster-secret-file", secret, "--nodes", "node-a,Node_B", "--key-path", "k"}, 2, "node name"},
		{[]string{"--cluster-secret-file", secret, "--nodes", "node-a,node-a", "--key-path", "k"}, 2, "twice"},
		{[]string{"--cluster-secret-file", secret, "--nodes", "node-a", "--front-key", ecFile}, 1, "not an ed25519 key"},
		{[]string{"--cluster-secret-file", secret, "--nodes", "node-a", "--front-key", secret}, 1, "not a PEM"},
	} {
		code, out, errOut := runCluster(append([]string{"config"}, c.args...)...)
		if code != c.code || out != "" || !strings.Contains(errOut, c.want) {
			t.Errorf("config %q: exit %d, stdout %q, stderr %q; want exit %d saying %q", c.args, code, out, errOut, c.code, c.want)
		}
	}
}

// TestClusterHSDir: "cleanrelay cluster hsdir" writes the node's derived key in tor's format (0600) and
// ob_config into a directory it creates (0700) on tmpfs, prints the address, and refuses a directory on disk.
func TestClusterHSDir(t *testing.T) {
	secret := writeSecret(t)
	_, front := writeFrontKey(t)
	dir := filepath.Join(ramTempDir(t), "hs")
	code, out, errOut := runCluster("hsdir", "--cluster-secret-file", secret, "--node", "node-b", "--front", front, "--dir", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	addr := wantInstanceAddress(t, secret, "node-b")
	if want := fmt.Sprintf("cleanrelay: node-b's instance service %s, an instance of %s, in %s\n", addr, front, dir); out != want {
		t.Fatalf("stdout %q, want %q", out, want)
	}
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("dir: %v; want mode 0700", err)
	}
	key, err := os.ReadFile(filepath.Join(dir, "hs_ed25519_secret_key"))
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(filepath.Join(dir, "hs_ed25519_secret_key")); st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %04o, want 0600", st.Mode().Perm())
	}
	if len(key) != 96 || string(key[:32]) != "== ed25519v1-secret: type0 ==\x00\x00\x00" {
		t.Fatalf("key file %q is not tor's hs_ed25519_secret_key", key)
	}
	if got := tornet.OnionAddress(ed25519.PublicKey(bineed25519.PrivateKey(key[32:]).PublicKey())) + ".onion"; got != addr {
		t.Fatalf("the key file's address is %s, want %s", got, addr)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "ob_config")); string(b) != "MasterOnionAddress "+front+"\n" {
		t.Fatalf("ob_config %q", b)
	}
	// Again from the environment, as the node's tor beside the node gets it, for another node: another key.
	b, _ := os.ReadFile(secret)
	t.Setenv(envClusterSecret, string(b))
	t.Setenv(envPrefix+"NODE", "node-c")
	if code, _, errOut := runCluster("hsdir", "--front", front, "--dir", dir); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if again, _ := os.ReadFile(filepath.Join(dir, "hs_ed25519_secret_key")); bytes.Equal(again, key) {
		t.Fatal("node-c got node-b's key")
	}

	disk := filepath.Join(t.TempDir(), "hs")
	if onion.CheckRAMDir(disk) == nil {
		wd, _ := os.Getwd() // the sources' disk
		disk = filepath.Join(wd, "testdata-hsdir-refused")
	}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--front", front, "--dir", disk}, 1, "not on a RAM file system"},
		{[]string{"--front", "example.com", "--dir", dir}, 2, "--front"},
		{[]string{"--front", front}, 2, "--dir is needed"},
		{[]string{"--node", "Node_A", "--front", front, "--dir", dir}, 2, "node name"},
		{[]string{"--front", front, "--dir", dir, "extra"}, 2, "unexpected argument"},
	} {
		code, out, errOut := runCluster(append([]string{"hsdir"}, c.args...)...)
		if code != c.code || out != "" || !strings.Contains(errOut, c.want) {
			t.Errorf("hsdir %q: exit %d, stdout %q, stderr %q; want exit %d saying %q", c.args, code, out, errOut, c.code, c.want)
		}
	}
	if _, err := os.Stat(disk); !os.IsNotExist(err) {
		t.Fatalf("the refused directory on disk exists: %v", err)
	}

	var help bytes.Buffer
	run([]string{"help"}, &help, &help)
	if !strings.Contains(help.String(), "cleanrelay cluster hsdir|config") {
		t.Fatalf("cleanrelay help does not list the cluster command:\n%s", help.String())
	}
}

// TestClusterHSDirTor: a real tor (offline: DisableNetwork 1, in the loopback-only namespace) takes the
// directory "cleanrelay cluster hsdir" wrote as an Onionbalance instance's HiddenServiceDir and derives from
// the key file the address that "cleanrelay cluster config" prints for the node.
func TestClusterHSDirTor(t *testing.T) {
	tornet.Require(t)
	secret := writeSecret(t)
	_, front := writeFrontKey(t)
	dir := filepath.Join(ramTempDir(t), "hs")
	if code, _, errOut := runCluster("hsdir", "--cluster-secret-file", secret, "--node", "node-a", "--front", front, "--dir", dir); code != 0 {
		t.Fatalf("hsdir: exit %d: %s", code, errOut)
	}
	code, cfg, errOut := runCluster("config", "--cluster-secret-file", secret, "--nodes", "node-a", "--key-path", "k")
	if code != 0 {
		t.Fatalf("config: exit %d: %s", code, errOut)
	}
	got := tornet.OfflineHostname(t, dir, "HiddenServiceOnionBalanceInstance 1")
	if !strings.Contains(cfg, "  - address: "+got+"\n    name: node-a\n") {
		t.Fatalf("tor's hostname is %s; cluster config says:\n%s", got, cfg)
	}
}
