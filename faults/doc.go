// Package faults is the fault and bad-input suite: it runs the real
// binaries against a real etcd and a real Azurite, each started on free
// loopback ports for one test, and kills, stops and restarts them, or feeds
// them hostile input, to prove that no event is lost, that duplicates stay
// within what at-least-once delivery allows, that outages are reported
// without flooding the log and recovered from without help, and that no
// secret is ever printed.
//
// The tests build only with the "faults" tag: they take several minutes,
// so plain `go test ./...` leaves them out and `make test` runs them after
// the other packages (`make test-faults` runs them alone):
//
//	go test -race -tags faults ./faults/
//
// Each scenario records its figures (events published, handled,
// duplicated, poisoned, lost; recovery times); `make reliability` runs the
// suite with POC_RELIABILITY_OUT set and writes them to RELIABILITY.md.
package faults
