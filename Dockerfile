# cleanrelay in a container: a build stage compiles the static binary, a runtime stage holds it with Debian's
# tor, a non-root user and nothing writable but the tmpfs the operator mounts on /tmp (tor's data lives there).
# Usage, the onion key as a secret and client authorization: docs/operations.md.
#
# Base images are build arguments so that a mirror, a pinned digest or a locally made image can be used, e.g.
#   buildah bud --build-arg GO_IMAGE=localhost/go-bookworm --build-arg RUNTIME_IMAGE=localhost/debian-bookworm .
ARG GO_IMAGE=docker.io/library/golang:1.26-bookworm
ARG RUNTIME_IMAGE=docker.io/library/debian:bookworm-slim

FROM ${GO_IMAGE} AS build
ARG VERSION=devel
ARG GOPROXY=https://proxy.golang.org,direct
# Set explicitly so that a Go toolchain copied into a plain Debian works as well as the official image.
ENV PATH=/usr/local/go/bin:$PATH GOPATH=/go GOCACHE=/go/cache CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
WORKDIR /src
COPY . .
# The browser client is plain files embedded with go:embed; it has no build step of its own (yet).
RUN go build -mod=readonly -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/cleanrelay ./cmd/cleanrelay \
 && /out/cleanrelay version

FROM ${RUNTIME_IMAGE}
# policy-rc.d stops the tor package's maintainer scripts from starting a tor during the build; the relay starts
# its own tor, with its own configuration, at run time.
RUN printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends tor \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /usr/sbin/policy-rc.d \
 && useradd --system --uid 10001 --user-group --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin cleanrelay \
 && install -d -o 10001 -g 10001 -m 0700 /var/lib/cleanrelay
COPY --from=build /out/cleanrelay /usr/local/bin/cleanrelay
# /var/lib/cleanrelay is empty and, with --read-only, not writable: a volume mounted there (a new named volume
# takes this owner and mode) is where a stable onion key can live; see docs/operations.md.
# The admin listener (metrics, health) stays inside the container; HEALTHCHECK asks it. tor's private data
# directory goes under TMPDIR: mount a tmpfs there (docker run --read-only --tmpfs /tmp).
ENV CLEANRELAY_ADMIN_LISTEN=127.0.0.1:9090 TMPDIR=/tmp
USER 10001:10001
WORKDIR /
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=10s --start-period=3m --retries=3 CMD ["cleanrelay", "health"]
ENTRYPOINT ["cleanrelay"]
CMD ["serve"]
