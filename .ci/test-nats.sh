#!/bin/sh
# Runs the cluster's NATS tests: the harness of real nats-server processes (relay/cluster/natsnet) and whatever
# is built on it under relay/cluster, with the pinned nats-server (installed from the Go module proxy when
# missing). The servers listen on 127.0.0.1 only. The strace proof of the servers runs in .ci/test-clean.sh.
set -eu
cd "$(dirname "$0")/.."
. .ci/lib.sh
need_nats
export PATH="$(go env GOPATH)/bin:$PATH"
go test -race -count=1 ./relay/cluster/... -nats
