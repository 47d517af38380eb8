#!/usr/bin/env bash
# Clean-server proofs that trace the real relay process (DESIGN.md §2): installs strace when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v strace >/dev/null; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends strace
fi
go test -count=1 -run '^TestNoDiskNoLogs$' ./cmd/cleanrelay -strace -v 2>&1 | grep -v '^=== RUN'
test "${PIPESTATUS[0]}" -eq 0
