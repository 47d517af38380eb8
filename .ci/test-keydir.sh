#!/bin/sh
# Tests of the accounts and key directory (package keydir) against real GnuPG.
# Called by .ci/run on a fresh Debian machine; installs gnupg when missing.
set -eu
cd "$(dirname "$0")/.."

. .ci/lib.sh
need_tools gpg:gnupg gpgconf:gpg-agent
gpg --version | head -1

# -gpg makes the gpg-backed tests run (without it they skip); they fail, not
# skip, if gpg is broken.
go test -race -count=1 ./keydir -gpg
# The accounts API (package relay/accounts), with keys and signatures made by gpg (the rest of it runs in
# the lead's go test ./...).
go test -race -count=1 -run 'Accounts|Admin' ./relay/accounts -gpg
