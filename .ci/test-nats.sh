#!/bin/sh
# Runs the cluster's NATS tests with the pinned nats-server (installed from the Go module proxy when missing): the
# harness of real nats-server processes (relay/cluster/natsnet), the replication between nodes (relay/cluster), and
# real relay binaries joined into a cluster (cmd/cleanrelay TestCluster*: accounts across nodes, a late node, a
# NATS server's SIGKILL, a relay node's SIGKILL under `cleanrelay bench nodedeath`, outsiders on NATS, and the
# whole cluster under strace -f). Everything listens on 127.0.0.1 only. The strace proof of the NATS servers alone
# runs in .ci/test-clean.sh.
set -eu
cd "$(dirname "$0")/.."
. .ci/lib.sh
need_nats
need_tools strace:strace
export PATH="$(go env GOPATH)/bin:$PATH"
go test -race -count=1 ./relay/cluster/... -nats
go test -count=1 -run '^TestCluster' ./cmd/cleanrelay -nats -strace
