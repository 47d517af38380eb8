#!/usr/bin/env bash
# Clean-server proofs that trace or dump the real relay process (DESIGN.md §2): installs strace and gdb (for
# gcore) when missing. The memory dump needs root (ptrace of a non-dumpable process) and about 2 GB of free
# space in the temporary directory for the core file, which the test deletes.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v strace >/dev/null || missing+=(strace)
command -v gcore >/dev/null || missing+=(gdb)
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi
go test -count=1 -run '^TestNoDiskNoLogs$' ./cmd/cleanrelay -strace -v 2>&1 | grep -v '^=== RUN'
test "${PIPESTATUS[0]}" -eq 0
# The memory dump: root's gcore of the live relay, searched for what burned and grace-dropped rooms left.
go test -count=1 -run '^TestNoLeftoversInMemory$' ./cmd/cleanrelay -memdump -v 2>&1 | grep -v '^=== RUN'
test "${PIPESTATUS[0]}" -eq 0
