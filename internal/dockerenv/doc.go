// Package dockerenv is the Docker side of the test harness: it finds the
// Docker engine the tests run containers on, or starts one, and makes the
// base images the project's Dockerfile and docker-compose.yml name
// available where no image registry can be reached.
//
// # The engine
//
// StartEngine uses the engine that answers at DOCKER_HOST, or at the
// client's default socket (a developer's Docker). When none answers and
// this process may start one (root, dockerd and iptables installed: `make
// deps` installs Debian's docker.io on Debian), it starts dockerd with a
// data root and socket of its own and stops it when the tests end. The
// data root is kept between runs (see DataRootEnv), so that images and
// BuildKit's caches make the next run warm. Otherwise it fails the test with
// one line that says what to install: a test of the Docker demo that
// skips would hide that the demo is broken.
//
// Every docker and compose command runs through a docker client that can
// build with BuildKit (the Dockerfile's cache mounts need it): one with the
// buildx plugin, or a client older than Docker 23, which drives the
// engine's built-in BuildKit itself with DOCKER_BUILDKIT=1. Debian's 20.10
// client at /usr/bin/docker is such a client; a 28.x client without buildx
// is not.
//
// # Base images
//
// EnsureImages makes each image it is given available: an image already in
// the engine is used as it is, a missing one is pulled, and one that cannot
// be pulled is replaced by a local stand-in built under the same name from
// what this machine reaches (the Debian mirror, the Go module proxy, the
// npm registry). The stand-ins are laid out like the official images (the
// recipes are in standins/), so that the compose file's commands, health
// checks, users and paths are exercised on them unchanged. A stand-in is
// labelled as one (StandInLabel), is rebuilt when its recipe changes, and
// never replaces an image that did not come from here.
package dockerenv
