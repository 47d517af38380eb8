package main

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/cleanrelay/cleanrelay/onion"
	"github.com/cleanrelay/cleanrelay/relay/cluster"
)

const clusterUsage = `Usage:
    cleanrelay cluster hsdir --node NAME --front ADDRESS --dir DIR
                                   write the HiddenServiceDir of NAME's Onionbalance instance service
    cleanrelay cluster config --nodes NAME,NAME,... (--front-key FILE | --key-path PATH)
                                   print onionbalance's config.yaml for the nodes

A cluster node behind Onionbalance is reached through a tor beside it, which publishes the node's instance
service from a HiddenServiceDir (docs/cluster.md §7, §8). Each node's instance key is derived from the cluster
secret and the node's name, so its address is stable and no key file is kept anywhere: both commands derive it
again. They take the cluster secret as "cleanrelay serve --cluster" does, from --cluster-secret-file or
` + envClusterSecret + ` (never a flag: flags show in ps).

hsdir writes into DIR (created with mode 0700, parents too, if missing) the node's instance key as tor's
hs_ed25519_secret_key (mode 0600) and ob_config ("MasterOnionAddress ADDRESS"), and prints the node's
instance address. DIR must be on a RAM file system (tmpfs or ramfs): the key never reaches a disk.

config prints the instance addresses of the nodes in onionbalance's config.yaml, in the order given. Its key
line is --key-path, else the --front-key file; --front-key (the front's ed25519 key in PKCS#8 PEM, the form
onionbalance reads; e.g. openssl genpkey -algorithm ed25519) also prints the front address.

Flags:
    --cluster-secret-file FILE  the file holding the cluster secret (or set ` + envClusterSecret + `)
    --node NAME                 hsdir: the node's name, as given to its "serve --node"
    --front ADDRESS             hsdir: the front's onion address, which onionbalance publishes
    --dir DIR                   hsdir: the tor's HiddenServiceDir, on tmpfs
    --nodes NAME,NAME,...       config: every node's name
    --front-key FILE            config: the front's key file, to print the front address
    --key-path PATH             config: where onionbalance reads the front key (default: --front-key)
Every flag can also be set by an environment variable: ` + envPrefix + ` and the flag's name in upper case with
underscores, e.g. --node is ` + envPrefix + `NODE (the variables of the node's "serve").

Examples:
    # the entrypoint of node1's tor, its HiddenServiceDir on a tmpfs
    $ cleanrelay cluster hsdir --cluster-secret-file /run/secrets/cluster_secret --node node1 \
          --front "$FRONT_ONION" --dir /tmp/hs && exec tor --defaults-torrc /tmp/empty -f node-torrc

    # onionbalance's config for three nodes
    $ cleanrelay cluster config --cluster-secret-file secrets/cluster_secret --nodes node1,node2,node3 \
          --front-key secrets/front.key --key-path /run/secrets/front_key > onionbalance/config.yaml

Exit status: 0 on success, 1 on an error (one line on stderr), 2 for bad usage.
`

// clusterCmd runs "cleanrelay cluster": the tools of an operator who runs nodes behind Onionbalance.
func clusterCmd(args []string, stdout, stderr io.Writer) int {
	usage := func(msg string) int {
		fmt.Fprintf(stderr, "cleanrelay: cluster: %s\n\n%s", msg, clusterUsage)
		return 2
	}
	if len(args) == 0 {
		return usage("give a command: hsdir or config")
	}
	fs := flag.NewFlagSet("cleanrelay cluster "+args[0], flag.ContinueOnError)
	secretFile := fs.String("cluster-secret-file", "", "")
	var err error
	switch args[0] {
	case "hsdir":
		node := fs.String("node", "", "")
		front := fs.String("front", "", "")
		dir := fs.String("dir", "", "")
		if err = parseClusterFlags(fs, args[1:]); err == nil {
			err = clusterHSDir(*secretFile, *node, *front, *dir, stdout)
		}
	case "config":
		nodes := fs.String("nodes", "", "")
		frontKey := fs.String("front-key", "", "")
		keyPath := fs.String("key-path", "", "")
		if err = parseClusterFlags(fs, args[1:]); err == nil {
			err = clusterConfig(*secretFile, *nodes, *frontKey, *keyPath, stdout)
		}
	case "help", "--help", "-help", "-h":
		fmt.Fprint(stdout, clusterUsage)
		return 0
	default:
		return usage(fmt.Sprintf("unknown command %q", args[0]))
	}
	var bad usageError
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, clusterUsage)
		return 0
	case errors.As(err, &bad):
		fmt.Fprintf(stderr, "cleanrelay: cluster %s: %v (see \"cleanrelay cluster help\")\n", args[0], err)
		return 2
	case err != nil:
		fmt.Fprintf(stderr, "cleanrelay: cluster %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

// usageError is a command line that cannot work (exit status 2).
type usageError struct{ error }

func parseClusterFlags(fs *flag.FlagSet, args []string) error {
	if _, err := parseWithEnv(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}

// instanceKey derives node's onion instance key from the cluster secret (docs/cluster.md §4).
func instanceKey(secret []byte, node string) (*onion.ServiceKey, error) {
	seed, err := cluster.OnionInstanceSeed(secret, node)
	if err != nil {
		return nil, err
	}
	defer clear(seed)
	return onion.ServiceKeyFromSeed(seed)
}

// readClusterSecret reads the cluster secret as serve does; the caller overwrites it.
func readClusterSecret(file string) ([]byte, error) {
	secret, err := secretInput(file, envClusterSecret)
	if err != nil {
		return nil, fmt.Errorf("--cluster-secret-file: %w", err)
	}
	if len(secret) == 0 {
		return nil, usageError{fmt.Errorf("the cluster secret is needed: --cluster-secret-file or %s", envClusterSecret)}
	}
	return secret, nil
}

// clusterHSDir is "cleanrelay cluster hsdir".
func clusterHSDir(secretFile, node, front, dir string, stdout io.Writer) error {
	for _, f := range []struct{ name, value string }{{"node", node}, {"front", front}, {"dir", dir}} {
		if f.value == "" {
			return usageError{fmt.Errorf("--%s is needed", f.name)}
		}
	}
	if err := cluster.CheckNodeName(node); err != nil {
		return usageError{fmt.Errorf("--node: %w", err)}
	}
	front, err := onion.CheckAddress(front)
	if err != nil {
		return usageError{fmt.Errorf("--front: %w", err)}
	}
	secret, err := readClusterSecret(secretFile)
	if err != nil {
		return err
	}
	key, err := instanceKey(secret, node)
	clear(secret)
	if err != nil {
		return err
	}
	defer key.Wipe()
	if err := onion.WriteInstanceDir(dir, key, front); err != nil {
		if errors.Is(err, onion.ErrNotRAM) {
			err = fmt.Errorf("%w (hint: a directory on a tmpfs, such as a container's tmpfs mount or /dev/shm)", err)
		}
		return err
	}
	fmt.Fprintf(stdout, "cleanrelay: %s's instance service %s, an instance of %s, in %s\n", node, key.Address(), front, dir)
	return nil
}

// clusterConfig is "cleanrelay cluster config".
func clusterConfig(secretFile, nodeList, frontKey, keyPath string, stdout io.Writer) error {
	if nodeList == "" {
		return usageError{errors.New("--nodes is needed: every node's name, comma-separated")}
	}
	if keyPath == "" {
		keyPath = frontKey
	}
	if keyPath == "" {
		return usageError{errors.New("--front-key or --key-path is needed: onionbalance's config names the front key's file")}
	}
	var nodes []string
	seen := map[string]bool{}
	for _, n := range strings.Split(nodeList, ",") {
		n = strings.TrimSpace(n)
		if err := cluster.CheckNodeName(n); err != nil {
			return usageError{fmt.Errorf("--nodes: %w", err)}
		}
		if seen[n] {
			return usageError{fmt.Errorf("--nodes: %s is given twice", n)}
		}
		seen[n] = true
		nodes = append(nodes, n)
	}
	var front string
	if frontKey != "" {
		var err error
		if front, err = frontAddress(frontKey); err != nil {
			return err
		}
	}
	secret, err := readClusterSecret(secretFile)
	if err != nil {
		return err
	}
	defer clear(secret)
	addrs := make([]string, len(nodes))
	for i, n := range nodes {
		key, err := instanceKey(secret, n)
		if err != nil {
			return err
		}
		addrs[i] = key.Address()
		key.Wipe()
	}
	var b strings.Builder
	b.WriteString("# onionbalance's config.yaml, from cleanrelay cluster config: the nodes' instance addresses,\n")
	b.WriteString("# derived from the cluster secret and the nodes' names\n")
	if front != "" {
		fmt.Fprintf(&b, "# front: %s\n", front)
	}
	fmt.Fprintf(&b, "services:\n- key: %s\n  instances:\n", yamlString(keyPath))
	for i, n := range nodes {
		fmt.Fprintf(&b, "  - address: %s\n    name: %s\n", addrs[i], n)
	}
	_, err = io.WriteString(stdout, b.String())
	return err
}

// frontAddress reads the front's key (PKCS#8 PEM, ed25519, as onionbalance reads it) and returns its address.
func frontAddress(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("--front-key: %w", err)
	}
	defer clear(b)
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return "", fmt.Errorf("--front-key %s: not a PEM \"PRIVATE KEY\" (PKCS#8; hint: openssl genpkey -algorithm ed25519)", file)
	}
	defer clear(block.Bytes)
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return "", fmt.Errorf("--front-key %s: %w", file, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return "", fmt.Errorf("--front-key %s: a %T, not an ed25519 key", file, k)
	}
	defer clear(priv)
	seed := priv.Seed()
	defer clear(seed)
	key, err := onion.ServiceKeyFromSeed(seed)
	if err != nil {
		return "", err
	}
	defer key.Wipe()
	return key.Address(), nil
}

// yamlString is s as a YAML scalar: as it is when it is a plain path, else double-quoted.
func yamlString(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-") == "" && s[0] != '-' {
		return s
	}
	return strconv.Quote(s)
}
