// Package compose runs the Docker demo for real: it builds the images with
// the project's Dockerfile, runs the project's docker-compose.yml as a user
// would, and proves what the README's "Run it in Docker" section says
// (every client exits 0, the server handles the published events,
// registers in etcd and stops cleanly, `docker-compose down -v` leaves
// nothing behind), that a server container killed with SIGKILL while
// events are published loses none of them, and that the images are what
// they claim (non-root, stamped version, working --help, size).
//
// The engine is the machine's Docker, or a dockerd the tests start and
// stop; base images that cannot be pulled are replaced by local stand-ins
// (internal/dockerenv). The tests build only with the "docker" tag: `make
// compose-demo` runs them, and `make test` runs that after the other
// suites:
//
//	go test -tags docker -count=1 -v ./compose/
package compose
