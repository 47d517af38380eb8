#!/usr/bin/env bash
# Builds the Dockerfile for real and runs the relay from the image, without a Docker engine: Debian's buildah
# (chroot isolation) builds it, on base images made here with debootstrap (a minbase Debian bookworm for the
# runtime stage; the same plus the host's Go toolchain for the build stage). Then it runs the relay from the
# image in --local-only mode, checks that / and /healthz answer and that the image's HEALTHCHECK command
# passes, and that SIGTERM stops the relay cleanly. Then it runs the image as a cluster node (docs/cluster.md §8):
# with a nats-server on the host (nkey-authenticated) and a second node from the host's build, the image's node
# sees its peer and is healthy; with the nats-server killed, its HEALTHCHECK fails.
#
# Needs root and the Debian mirror (apt) and the Go module proxy (also for nats-server and the nkey tool). Everything it makes lives in one temporary
# directory that is removed at the end; only apt's own cache is kept. Run it from anywhere:
#   bash .ci/test-container.sh
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

say() { printf '== container: %s\n' "$*"; }
fail() { printf 'container test FAILED: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "needs root (buildah and debootstrap)"
MIRROR=${CLEANRELAY_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm

. .ci/lib.sh
need_tools buildah:buildah debootstrap:debootstrap curl:curl

work=$(mktemp -d "${TMPDIR:-/tmp}/cleanrelay-container.XXXXXX")
# buildah keeps its images and containers under --root; vfs needs no overlay support from the kernel.
B=(buildah --root "$work/storage" --runroot "$work/run" --storage-driver vfs)
relay_pid=""
node2_pid=""
nats_pid=""
# buildah keeps a blob-info cache in /var/lib/containers/cache whatever --root says; remove it if we made it.
blob_cache=/var/lib/containers/cache
made_blob_cache=""; [ -e "$blob_cache" ] || made_blob_cache=1
cleanup() {
  set +e
  for p in $node2_pid $nats_pid; do kill -KILL "$p" 2>/dev/null; done
  if [ -n "$relay_pid" ] && kill -0 "$relay_pid" 2>/dev/null; then
    kill -TERM "$relay_pid"; sleep 3; kill -KILL "$relay_pid" 2>/dev/null
  fi
  "${B[@]}" rm --all >/dev/null 2>&1
  # vfs layers are plain directories, but buildah may still hold mounts of /proc, /dev in a run's chroot.
  grep -o " $work[^ ]*" /proc/self/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null
  rm -rf "$work"
  if [ -n "$made_blob_cache" ]; then rm -rf "$blob_cache"; rmdir /var/lib/containers 2>/dev/null; fi
}
trap cleanup EXIT

# Tor safety: the tor package's maintainer scripts must not start a tor during the build (the Dockerfile
# forbids it with policy-rc.d). A tor whose root directory is inside this script's temporary directory was
# started by the build or the run here: it fails the test and is stopped. Tor processes of anything else on
# the machine (other test suites) are not looked at.
our_tors() {
  local p root
  for p in $(pgrep -x tor || true); do
    root=$(readlink "/proc/$p/root" 2>/dev/null) || continue
    case "$root" in "$work"/*) echo "$p" ;; esac
  done
}
check_no_new_tor() {
  local new p
  new=$(our_tors)
  if [ -n "$new" ]; then
    for p in $new; do kill -TERM "$p" 2>/dev/null; done
    sleep 3
    for p in $new; do kill -KILL "$p" 2>/dev/null; done
    fail "a tor process was started inside the image during the $1 (pids: $new); stopped it"
  fi
}

start=$(date +%s)
say "debootstrap --variant=minbase $SUITE (with ca-certificates for the Go module proxy)"
debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$work/rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 \
  || { tail -20 "$work/debootstrap.log"; fail "debootstrap"; }
rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*

runtime_image=localhost/cleanrelay-ci/debian:$SUITE
go_image=localhost/cleanrelay-ci/golang:$SUITE
say "importing the base images $runtime_image and $go_image"
ctr=$("${B[@]}" from scratch)
mnt=$("${B[@]}" mount "$ctr")
cp -a "$work/rootfs/." "$mnt/"
"${B[@]}" umount "$ctr" >/dev/null
"${B[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd /bin/bash "$ctr"
"${B[@]}" commit -q "$ctr" "$runtime_image" >/dev/null
"${B[@]}" rm "$ctr" >/dev/null
rm -rf "$work/rootfs"

ctr=$("${B[@]}" from "$runtime_image")
mnt=$("${B[@]}" mount "$ctr")
cp -a "$(go env GOROOT)" "$mnt/usr/local/go"
# The official Go image trusts the usual roots; this stand-in trusts what the host trusts, so that the module
# proxy answers the same way it does to the host's own go command (behind a TLS-inspecting proxy too).
cp -L /etc/ssl/certs/ca-certificates.crt "$mnt/etc/ssl/certs/ca-certificates.crt"
"${B[@]}" umount "$ctr" >/dev/null
"${B[@]}" config --env PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$ctr"
"${B[@]}" commit -q "$ctr" "$go_image" >/dev/null
"${B[@]}" rm "$ctr" >/dev/null

say "buildah bud the Dockerfile (isolation chroot, docker format for HEALTHCHECK)"
bud_start=$(date +%s)
"${B[@]}" bud --isolation chroot --format docker --layers=false \
  --build-arg GO_IMAGE="$go_image" --build-arg RUNTIME_IMAGE="$runtime_image" \
  --build-arg VERSION=ci-container-test --build-arg GOPROXY="$(go env GOPROXY)" \
  -t localhost/cleanrelay:ci -f Dockerfile "$repo" >"$work/bud.log" 2>&1 \
  || { tail -40 "$work/bud.log"; fail "buildah bud"; }
bud_secs=$(( $(date +%s) - bud_start ))
check_no_new_tor build

say "checking the image's configuration"
cfg=$("${B[@]}" inspect --type image --format '{{.Docker.Config.User}}|{{.Docker.Config.Entrypoint}}|{{.Docker.Config.Cmd}}|{{.Docker.Config.Healthcheck.Test}}|{{.Docker.Config.StopSignal}}' localhost/cleanrelay:ci)
echo "   $cfg"
[ "$cfg" = "10001:10001|[cleanrelay]|[serve]|[CMD cleanrelay health]|SIGTERM" ] || fail "image configuration is $cfg"
size=$("${B[@]}" images --format '{{.Size}}' localhost/cleanrelay:ci)

ctr=$("${B[@]}" from localhost/cleanrelay:ci)
mnt=$("${B[@]}" mount "$ctr")
[ -x "$mnt/usr/bin/tor" ] || fail "the image has no /usr/bin/tor"
[ ! -e "$mnt/usr/sbin/policy-rc.d" ] || fail "the image kept the build's policy-rc.d"
[ ! -e "$mnt/usr/local/go" ] || fail "the runtime image contains the Go toolchain"
[ "$(stat -c %u:%a "$mnt/var/lib/cleanrelay")" = 10001:700 ] || fail "/var/lib/cleanrelay is not 0700 for uid 10001"
"${B[@]}" umount "$ctr" >/dev/null

# buildah run with chroot isolation shares the host's network namespace: pick free loopback ports.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null \
  || echo $(( 20000 + RANDOM % 20000 )); }
port=$(free_port)
admin_port=$(free_port)
"${B[@]}" config --env CLEANRELAY_ADMIN_LISTEN=127.0.0.1:$admin_port "$ctr"

uid=$("${B[@]}" run --isolation chroot "$ctr" -- id -u)
[ "$uid" = 10001 ] || fail "the relay would run as uid $uid, want 10001"
version=$("${B[@]}" run --isolation chroot "$ctr" -- cleanrelay version)
echo "$version" | sed 's/^/   /'
echo "$version" | grep -q '^cleanrelay ci-container-test$' || fail "version: $version"
host_digest=$(cd static && find . -type f ! -name '*.go' -printf '%P\n' | LC_ALL=C sort | xargs -d '\n' sha256sum | sha256sum | cut -d' ' -f1)
echo "$version" | grep -q "^client sha256:$host_digest\$" || fail "the image's client digest differs from static/ ($host_digest)"

say "running the relay from the image: serve --local-only --listen 127.0.0.1:$port"
"${B[@]}" run --isolation chroot "$ctr" -- cleanrelay serve --local-only --listen "127.0.0.1:$port" \
  >"$work/relay.out" 2>"$work/relay.err" &
run_pid=$!
for _ in $(seq 1 100); do
  grep -q "serving on" "$work/relay.out" 2>/dev/null && break
  kill -0 "$run_pid" 2>/dev/null || { cat "$work/relay.err"; fail "the relay exited at start"; }
  sleep 0.1
done
grep -q "serving on http://127.0.0.1:$port/" "$work/relay.out" || { cat "$work/relay.out" "$work/relay.err"; fail "no address printed"; }
# The relay is the buildah run's descendant named cleanrelay: that is the process a container runtime signals.
descendants() { local p; for p in $(cat /proc/"$1"/task/*/children 2>/dev/null); do echo "$p"; descendants "$p"; done; }
for p in $(descendants "$run_pid"); do
  [ "$(cat /proc/"$p"/comm 2>/dev/null)" = cleanrelay ] && relay_pid=$p
done
[ -n "$relay_pid" ] || fail "cannot find the relay process under buildah run ($run_pid)"
[ "$(awk '/^Uid:/ {print $2}' /proc/"$relay_pid"/status)" = 10001 ] || fail "the relay does not run as uid 10001"

page=$(curl -fsS --max-time 10 "http://127.0.0.1:$port/") || fail "GET / failed"
echo "$page" | grep -q "<title>cleanrelay" || fail "GET / did not serve the client: $page"
curl -fsS --max-time 10 -D "$work/headers" -o /dev/null "http://127.0.0.1:$port/"
grep -qi '^content-security-policy:' "$work/headers" || fail "GET / has no Content-Security-Policy"
[ "$(curl -fsS --max-time 10 "http://127.0.0.1:$port/healthz")" = ok ] || fail "GET /healthz did not answer ok"
# Read the whole answer first: with pipefail, "curl | grep -q" fails when grep stops reading at its first match.
metrics=$(curl -fsS --max-time 10 "http://127.0.0.1:$admin_port/metrics") || fail "GET /metrics on the admin listener failed"
grep -q '^cleanrelay_connections ' <<<"$metrics" || fail "no metrics on the admin listener"
"${B[@]}" run --isolation chroot "$ctr" -- cleanrelay health >/dev/null || fail "the HEALTHCHECK command failed against a running relay"
say "/, /healthz, /metrics and the HEALTHCHECK command answer"

say "SIGTERM to the relay (pid $relay_pid)"
stop_start=$(date +%s%N)
kill -TERM "$relay_pid"
for _ in $(seq 1 150); do kill -0 "$run_pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$run_pid" 2>/dev/null; then fail "the relay did not stop within 15 s of SIGTERM"; fi
code=0; wait "$run_pid" || code=$?
relay_pid=""
stop_ms=$(( ($(date +%s%N) - stop_start) / 1000000 ))
[ "$code" = 0 ] || { cat "$work/relay.err"; fail "the relay exited with $code after SIGTERM"; }
grep -q "relay stopped" "$work/relay.err" || { cat "$work/relay.err"; fail "no clean shutdown line"; }
if "${B[@]}" run --isolation chroot "$ctr" -- cleanrelay health >/dev/null 2>&1; then fail "HEALTHCHECK passes with the relay stopped"; fi
check_no_new_tor run

say "the image as a cluster node: a nats-server on the host, the image's node and a second node from the host's build"
need_nats
keys=$(go run github.com/nats-io/nkeys/nk -gen user -pubout)
seed=$(sed -n 1p <<<"$keys")
pub=$(sed -n 2p <<<"$keys")
secret=$(head -c 32 /dev/urandom | base64)
nats_port=$(free_port)
printf 'listen: "127.0.0.1:%s"\njetstream: disabled\nauthorization {\n  users: [ { nkey: %s, permissions: { publish: ["cr.>", "_INBOX.>"], subscribe: ["cr.>", "_INBOX.>"] } } ]\n}\n' \
  "$nats_port" "$pub" >"$work/nats.conf"
"$(go env GOPATH)/bin/nats-server" -c "$work/nats.conf" >"$work/nats.log" 2>&1 &
nats_pid=$!
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$nats_port") 2>/dev/null && break; sleep 0.1; done
"${B[@]}" config --env CLEANRELAY_CLUSTER="nats://127.0.0.1:$nats_port" --env CLEANRELAY_NODE=node1 \
  --env CLEANRELAY_NATS_NKEY_SEED="$seed" --env CLEANRELAY_CLUSTER_SECRET="$secret" "$ctr"
"${B[@]}" run --isolation chroot "$ctr" -- cleanrelay serve --local-only --listen "127.0.0.1:$port" \
  >"$work/node1.out" 2>"$work/node1.err" &
run_pid=$!
go build -o "$work/cleanrelay" ./cmd/cleanrelay
CLEANRELAY_CLUSTER="nats://127.0.0.1:$nats_port" CLEANRELAY_NODE=node2 CLEANRELAY_NATS_NKEY_SEED="$seed" \
  CLEANRELAY_CLUSTER_SECRET="$secret" "$work/cleanrelay" serve --local-only --listen 127.0.0.1:0 \
  >"$work/node2.out" 2>"$work/node2.err" &
node2_pid=$!
joined=""
for _ in $(seq 1 300); do
  metrics=$(curl -fsS --max-time 5 "http://127.0.0.1:$admin_port/metrics" 2>/dev/null) || metrics=""
  if grep -q '^cleanrelay_cluster_peers 1$' <<<"$metrics" && grep -q '^cleanrelay_cluster_nats_connected 1$' <<<"$metrics"; then
    joined=1
    break
  fi
  kill -0 "$run_pid" 2>/dev/null || { cat "$work/node1.err"; fail "the image's node exited at start"; }
  sleep 0.1
done
[ -n "$joined" ] || { cat "$work/node1.err" "$work/node2.err"; fail "the image's node did not join the cluster (no peer, or no NATS) within 30 s"; }
for p in $(descendants "$run_pid"); do
  [ "$(cat /proc/"$p"/comm 2>/dev/null)" = cleanrelay ] && relay_pid=$p
done
[ -n "$relay_pid" ] || fail "cannot find the node process under buildah run ($run_pid)"
"${B[@]}" run --isolation chroot "$ctr" -- cleanrelay health >/dev/null || fail "the HEALTHCHECK command failed against a joined node"
say "the image's node joined: connected to NATS, one peer, healthy"
kill -KILL "$nats_pid"
wait "$nats_pid" 2>/dev/null || true
nats_pid=""
unhealthy=""
for _ in $(seq 1 100); do
  if ! "${B[@]}" run --isolation chroot "$ctr" -- cleanrelay health >/dev/null 2>&1; then unhealthy=1; break; fi
  sleep 0.2
done
[ -n "$unhealthy" ] || fail "the HEALTHCHECK still passes with the node's only NATS server dead"
say "with its NATS server killed, the node's HEALTHCHECK fails"
kill -TERM "$relay_pid" "$node2_pid"
for _ in $(seq 1 150); do kill -0 "$run_pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$run_pid" 2>/dev/null; then fail "the node did not stop within 15 s of SIGTERM"; fi
code=0; wait "$run_pid" || code=$?
relay_pid=""
[ "$code" = 0 ] || { cat "$work/node1.err"; fail "the node exited with $code after SIGTERM"; }
wait "$node2_pid" 2>/dev/null || true
node2_pid=""
check_no_new_tor "cluster run"

say "passed: image $size, bud ${bud_secs}s, stop ${stop_ms}ms after SIGTERM, total $(( $(date +%s) - start ))s"
