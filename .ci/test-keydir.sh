#!/bin/sh
# Tests of the accounts and key directory (package keydir) against real GnuPG.
# Called by .ci/run on a fresh Debian machine; installs gnupg when missing.
set -eu
cd "$(dirname "$0")/.."

if ! command -v gpg >/dev/null 2>&1 || ! command -v gpgconf >/dev/null 2>&1; then
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gnupg gpg-agent
fi
gpg --version | head -1

# -gpg makes the gpg-backed tests run (without it they skip); they fail, not
# skip, if gpg is broken.
go test -race -count=1 ./keydir -gpg
# The accounts API of the relay, with keys and signatures made by gpg (the rest of package relay runs in
# the lead's go test ./...).
go test -race -count=1 -run 'Accounts|Admin' ./relay -gpg
# Short fuzzing of the parsers, as a smoke test of the fuzz targets.
go test -run '^$' -fuzz '^FuzzNormalizeUsername$' -fuzztime 5000x ./keydir
go test -run '^$' -fuzz '^FuzzParsePublicKey$' -fuzztime 5000x ./keydir
