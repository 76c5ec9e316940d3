// Package version holds the version of this repository's binaries. The
// build stamps it from git:
//
//	go build -ldflags "-X github.com/poc-go-micro/poc-go-micro/internal/version.Version=$(git describe --always --dirty)"
//
// `make build`, `make docker-build` and the Dockerfile do so; a plain `go
// build` leaves it at "dev". Every binary prints it with --version, and the
// server registers it in etcd as its service version.
package version

// Version is the version of the running binary: `git describe --always
// --dirty` of the source it was built from, or "dev" when not stamped.
var Version = "dev"
