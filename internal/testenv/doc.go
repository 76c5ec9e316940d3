// Package testenv is the harness the repository's end-to-end tests share: it
// starts real etcd and Azurite processes on free ports of 127.0.0.1 with their
// data in the test's temporary directory, runs the project's binaries as
// child processes, and makes sure every process it started is gone when the
// test ends.
//
// Nothing here skips a test: a missing etcd, Azurite or Go toolchain fails
// the test with a message telling how to install it (`make deps`), because a
// skipped end-to-end test hides a broken setup.
//
// Every wait is bounded and every failure message says what was being done
// and shows the end of the relevant process's output.
//
// A package that calls BuildBinaries should remove the built binaries when
// its tests finish:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
package testenv
