#!/usr/bin/env bash
# Tests of the browser client (static/): node unit tests of its modules, then end-to-end tests in
# Debian's Chromium and Firefox ESR (Tor-Browser-"Safer"-like prefs) against a real relay, with
# real gpg. Called by .ci/test on a fresh Debian machine with Go, Node 20, npm and gcc; installs
# the rest. Screenshots, timings and a captured frame land in test-artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."

. .ci/lib.sh
# python3 is an independent ZIP reader for the zip tests.
need_tools --recommends chromium:chromium firefox-esr:firefox-esr gpg:gnupg gpgconf:gpg-agent python3:python3
need_tor
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
go test -count=1 -run '^$' ./cmd/cleanrelay >/dev/null # build while the module proxy is reachable
in_loopback_ns 'go test -count=1 -timeout 8m -run TestBrowserThroughOnion -v ./cmd/cleanrelay -tor -browser' 2>&1 | grep -v '^=== RUN'
test "${PIPESTATUS[0]}" -eq 0
