#!/usr/bin/env bash
# Tests of the browser client (static/): node unit tests of its modules, then end-to-end tests in
# Debian's Chromium and Firefox ESR (Tor-Browser-"Safer"-like prefs) against a real relay, with
# real gpg. Called by .ci/test on a fresh Debian machine with Go, Node 20, npm and gcc; installs
# the rest. Screenshots, timings and a captured frame land in test-artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v chromium >/dev/null || need+=(chromium)
command -v firefox-esr >/dev/null || need+=(firefox-esr)
command -v gpg >/dev/null || need+=(gnupg)
command -v gpgconf >/dev/null || need+=(gpg-agent)
command -v python3 >/dev/null || need+=(python3) # an independent ZIP reader for the zip tests
if [ ${#need[@]} -gt 0 ]; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}"
fi
chromium --version
firefox-esr --version
gpg --version | head -1

cd e2e
npm ci --no-audit --no-fund
echo "== web unit tests"
node --test unit/
echo "== web browser tests"
node --test --test-concurrency=1 browser/

echo "== web browser test through the onion service (private Tor network, loopback-only namespace)"
cd ..
sh .ci/install-tor.sh
go test -count=1 -run '^$' ./cmd/cleanrelay >/dev/null # build while the module proxy is reachable
unshare -n env GOPROXY=off sh -c 'set -e
ip link set lo up
ip route replace local 127.0.0.0/8 dev lo proto kernel scope host src 127.0.0.1 table local quickack 1
go test -count=1 -timeout 8m -run TestBrowserThroughOnion -v ./cmd/cleanrelay -tor -browser' 2>&1 | grep -v '^=== RUN'
test "${PIPESTATUS[0]}" -eq 0
