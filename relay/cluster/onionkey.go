package cluster

import (
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/sha256"
	"fmt"
)

// labelOnionInstance derives the nodes' onion instance keys (docs/cluster.md §4, §7). Unlike the keys of
// DeriveKeys, one key per node: the node's name follows the label after a zero byte, which neither the label
// nor a name (CheckNodeName) contains, so no two names give the same HKDF info.
const labelOnionInstance = "cleanrelay cluster onion instance v1"

// OnionInstanceSeed derives the Ed25519 seed of node's Onionbalance instance key from the cluster secret:
// HKDF-SHA-256, no salt, info labelOnionInstance ‖ 0 ‖ node. The same secret and name give the same seed, hence
// the same instance address, on every machine and at every start. The secret must be at least MinSecretBytes
// long and node a valid node name (CheckNodeName). The caller overwrites the seed once it is done with it, and
// may overwrite secret at once.
func OnionInstanceSeed(secret []byte, node string) ([]byte, error) {
	if len(secret) < MinSecretBytes {
		return nil, fmt.Errorf("the cluster secret has %d bytes, at least %d needed (hint: openssl rand -base64 32)", len(secret), MinSecretBytes)
	}
	if err := CheckNodeName(node); err != nil {
		return nil, err
	}
	seed, err := hkdf.Key(sha256.New, secret, nil, labelOnionInstance+"\x00"+node, ed25519.SeedSize)
	if err != nil {
		return nil, fmt.Errorf("failed to derive the onion instance key: %w", err)
	}
	return seed, nil
}
