#!/bin/sh
# Runs cleanrelay's Tor tests: the onion package and its private test network (onion/tornet), and the end-to-end
# test of `cleanrelay serve` in onion mode, against real tor processes on a private Tor network on 127.0.0.1.
#
# The tests run inside a new network namespace that holds only loopback (`unshare -n`), so no tor can reach
# anything but this machine; the harness refuses to start tor anywhere else. Modules are downloaded and every
# test binary is built BEFORE entering the namespace: inside it there is no module proxy.
set -eu
cd "$(dirname "$0")/.."

missing=""
command -v tor >/dev/null 2>&1 || missing="$missing tor"
command -v tor-gencert >/dev/null 2>&1 || missing="$missing tor"
command -v ip >/dev/null 2>&1 || missing="$missing iproute2"
command -v unshare >/dev/null 2>&1 || missing="$missing util-linux"
if [ -n "$missing" ]; then
	# Debian's tor package starts a system tor (on the public network) when installed; forbid service starts
	# for the install, and stop that service afterwards in case a policy was already in place that allowed it.
	created_policy=""
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		created_policy=1
	fi
	apt-get update
	# shellcheck disable=SC2086 # word splitting of the package list is wanted
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing
	if [ -n "$created_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
	if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
		systemctl disable --now tor.service tor@default.service >/dev/null 2>&1 || true
	fi
fi

pkgs="./onion/..."
if ls cmd/cleanrelay/*_tor_test.go >/dev/null 2>&1; then
	pkgs="$pkgs ./cmd/cleanrelay"
fi

# Download and build everything (tests included, -run '^$' runs none) while the module proxy is reachable.
go mod download
# shellcheck disable=SC2086
go test -race -count=1 -run '^$' $pkgs >/dev/null

unshare_cmd="unshare -n"
if [ "$(id -u)" != 0 ]; then unshare_cmd="unshare -rn"; fi
# GOPROXY=off: inside the namespace nothing can be fetched; fail at once instead of timing out.
# shellcheck disable=SC2086
exec $unshare_cmd env GOPROXY=off sh -c "ip link set lo up && go test -race -count=1 -timeout 8m $pkgs -tor"
