#!/bin/sh
# Installs what the Tor tests need (tor, tor-gencert, ip, unshare) when missing, without ever letting Debian's
# tor package start a system tor on the public network. Used by .ci/test-tor.sh and .ci/test-web.sh.
set -eu
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

