# Container images of every binary of this repository, from one Dockerfile:
# the build stage compiles all four binaries at once with the pinned Go
# toolchain, and each final stage, named after its binary, ships one of them
# in a distroless static image as the non-root user. Needs BuildKit for
# the cache mounts: the default builder of Docker 23 and later, and
# DOCKER_BUILDKIT=1 on Docker 20.10. There is no `# syntax=` line on
# purpose: the Dockerfile frontend built into BuildKit reads this file, so
# a build pulls nothing but the two base images below (a syntax line would
# pull docker/dockerfile from Docker Hub on every build).
#
#   docker build --target client-stream --build-arg VERSION="$(git describe --always --dirty)" -t poc-go-micro/client-stream .
#
# `make docker-build` builds all four; docker-compose.yml builds them for
# `docker-compose up`. Without --target, docker build makes the server.

# The Go toolchain, a release of go.mod's go line (TestComposeImagesArePinned
# checks that they agree).
ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Modules first, into the cache mount shared by every build on this
# machine, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
# VERSION is stamped into every binary (--version, and the server's
# registration in etcd); make docker-build passes `git describe`.
ARG VERSION=dev
# Static binaries (CGO off) without local paths (-trimpath) or debug
# information (-s -w); the build cache mount makes rebuilds incremental.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/poc-go-micro/poc-go-micro/internal/version.Version=${VERSION}" \
      -o /out/ ./server ./client-pingpong ./client-stream ./client-azqueue-pub

# The runtime of every image: no shell, no package manager; CA
# certificates for real Azure Storage over https; user nonroot (65532).
FROM gcr.io/distroless/static-debian12:nonroot AS runtime
USER nonroot:nonroot

FROM runtime AS client-pingpong
COPY --from=build /out/client-pingpong /usr/local/bin/client-pingpong
ENTRYPOINT ["/usr/local/bin/client-pingpong"]

FROM runtime AS client-stream
COPY --from=build /out/client-stream /usr/local/bin/client-stream
ENTRYPOINT ["/usr/local/bin/client-stream"]

FROM runtime AS client-azqueue-pub
COPY --from=build /out/client-azqueue-pub /usr/local/bin/client-azqueue-pub
ENTRYPOINT ["/usr/local/bin/client-azqueue-pub"]

# Last, so that a docker build without --target makes the server.
FROM runtime AS server
COPY --from=build /out/server /usr/local/bin/server
ENTRYPOINT ["/usr/local/bin/server"]
