#!/bin/sh
# Runs cleanrelay's Tor tests: the onion package and its private test network (onion/tornet, with Debian's
# onionbalance publishing one front address over three backends), and the end-to-end tests of `cleanrelay serve`
# in onion mode (among them TestNoDiskNoLogsTor, which traces the relay and its tor with strace), against real tor
# processes on a private Tor network on 127.0.0.1. Among those, TestOnionbalanceClusterTor puts three relay nodes
# joined over real nats-server processes (the pinned one, installed from the Go module proxy when missing) behind
# Onionbalance.
#
# The tests run inside a new network namespace that holds only loopback (`unshare -n`), so no tor can reach
# anything but this machine; the harness refuses to start tor anywhere else. Modules are downloaded and every
# test binary is built BEFORE entering the namespace: inside it there is no module proxy.
set -eu
cd "$(dirname "$0")/.."

. .ci/lib.sh
need_tor
need_tools strace:strace onionbalance:onionbalance
need_nats
export PATH="$(go env GOPATH)/bin:$PATH"

tor_e2e=""
if ls cmd/cleanrelay/*_tor_test.go >/dev/null 2>&1; then
	tor_e2e=1
fi

# Download and build everything (tests included; -run '^$' runs none) while the module proxy is reachable.
go mod download
go test -race -count=1 -run '^$' ./onion/... ./cmd/cleanrelay >/dev/null

# Inside the loopback-only namespace (.ci/lib.sh): the onion packages' tests, one package at a time (two private
# networks at once on 2 cores slow both), then the Tor tests of cmd/cleanrelay (its other tests are the lead's,
# run by .ci/test).
export TOR_E2E="$tor_e2e"
in_loopback_ns 'go test -race -count=1 -p 1 -timeout 12m ./onion/... -tor
if [ -n "$TOR_E2E" ]; then go test -race -count=1 -timeout 20m -run Tor ./cmd/cleanrelay -tor -nats; fi'
