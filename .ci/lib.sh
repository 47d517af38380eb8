# Shared steps of the CI suites (POSIX sh; sourced by .ci/test and .ci/test-*.sh, never run by itself):
# installing missing tools from Debian, running a command inside a loopback-only network namespace, and
# short fuzzing of every fuzz target of a package.

# STATICCHECK_VERSION is the staticcheck every run uses, so a new release cannot turn CI red on its own.
STATICCHECK_VERSION=v0.8.2

# NATS_SERVER_VERSION is the nats-server the cluster tests run (Debian's is 2.9.10, a line NATS no longer
# maintains; the module proxy serves current releases).
NATS_SERVER_VERSION=v2.15.3

# need_tools [--recommends] CMD:PACKAGE ... installs, in one apt run, the Debian package of every command that is
# missing (with --recommends, with the packages Debian recommends, as browsers want for their fonts).
# Debian's tor package would start a system tor on the public network when installed: service starts are
# forbidden for the install (policy-rc.d), and a tor service is stopped afterwards in case a policy allowed it.
need_tools() {
	_rec="--no-install-recommends"
	if [ "$1" = --recommends ]; then _rec=""; shift; fi
	_missing=""
	for _pair in "$@"; do
		command -v "${_pair%%:*}" >/dev/null 2>&1 || _missing="$_missing ${_pair#*:}"
	done
	[ -n "$_missing" ] || return 0
	_policy=""
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		_policy=1
	fi
	apt-get update -q >/dev/null
	# shellcheck disable=SC2086 # word splitting of the package list is wanted
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q $_rec $_missing >/dev/null
	if [ -n "$_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
	if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
		systemctl disable --now tor.service tor@default.service >/dev/null 2>&1 || true
	fi
}

# need_tor installs what the Tor tests need: tor, tor-gencert, ip and unshare.
need_tor() {
	need_tools tor:tor tor-gencert:tor ip:iproute2 unshare:util-linux
}

# need_nats installs the pinned nats-server into $(go env GOPATH)/bin with go install (from the Go module proxy),
# unless that version is already there. Callers put that directory first on PATH, where the cluster harness
# (relay/cluster/natsnet) looks first.
need_nats() {
	_gobin="$(go env GOPATH)/bin"
	case "$("$_gobin/nats-server" --version 2>/dev/null)" in
	*" $NATS_SERVER_VERSION") return 0 ;;
	esac
	GOBIN="$_gobin" go install "github.com/nats-io/nats-server/v2@$NATS_SERVER_VERSION"
}

# in_loopback_ns SCRIPT runs the shell SCRIPT in a new network namespace that holds only loopback, so no tor or
# test started there can reach anything but this machine. Inside: lo is up, loopback routes use quick ACKs
# (delayed ACKs add 40-90 ms to round trips through a private Tor network), and GOPROXY=off makes a missing
# module fail at once: build every test binary before calling this.
in_loopback_ns() {
	_unshare="unshare -n"
	if [ "$(id -u)" != 0 ]; then _unshare="unshare -rn"; fi
	# shellcheck disable=SC2086 # $_unshare is a command with its options
	$_unshare env GOPROXY=off sh -c 'set -e
ip link set lo up
ip route replace local 127.0.0.0/8 dev lo proto kernel scope host src 127.0.0.1 table local quickack 1
ip route replace local 127.0.0.1 dev lo proto kernel scope host src 127.0.0.1 table local quickack 1
'"$1"
}

# fuzz_brief PACKAGE RUNS fuzzes every fuzz target of PACKAGE (found with go test -list) for RUNS inputs each,
# as a smoke test of the targets; a new target is fuzzed without anyone listing it here.
fuzz_brief() {
	for _target in $(go test -list '^Fuzz' "$1" | grep '^Fuzz'); do
		go test -run '^$' -fuzz "^${_target}\$" -fuzztime "$2" "$1"
	done
}
