#!/usr/bin/env bash
# Clean-server proofs that trace or dump the real relay process (docs/threat-model.md §0): installs strace and gdb (for
# gcore) when missing. The memory dump needs root (ptrace of a non-dumpable process) and about 2 GB of free
# space in the temporary directory for the core file, which the test deletes.
set -euo pipefail
cd "$(dirname "$0")/.."
. .ci/lib.sh
need_tools strace:strace gcore:gdb
go test -count=1 -run '^TestNoDiskNoLogs$' ./cmd/cleanrelay -strace -v 2>&1 | grep -v '^=== RUN'
test "${PIPESTATUS[0]}" -eq 0
# The memory dump: root's gcore of the live relay, searched for what burned and grace-dropped rooms left.
go test -count=1 -run '^TestNoLeftoversInMemory$' ./cmd/cleanrelay -memdump -v 2>&1 | grep -v '^=== RUN'
test "${PIPESTATUS[0]}" -eq 0
# The cluster's NATS servers under strace through a session with a SIGKILL and a restart: nothing written to disk,
# no subject or payload in their logs.
need_nats
PATH="$(go env GOPATH)/bin:$PATH" go test -count=1 -run '^TestNoDiskNoLogs$' ./relay/cluster/natsnet -nats -strace -v 2>&1 | grep -v '^=== RUN'
test "${PIPESTATUS[0]}" -eq 0
