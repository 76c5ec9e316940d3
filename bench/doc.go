// Package bench measures what go-micro and the azqueue broker cost: every
// path of the POC side by side with the lowest-level baseline doing the same
// work (plain grpc-go against the same server, the raw Azure Storage Queues
// SDK against the same Azurite), in the same process, with the same payloads
// and concurrency.
//
// The package holds only benchmarks. They start their own etcd, Azurite and
// in-process server the first time one needs them and stop them when the
// test binary ends, so `go test ./...` starts nothing. In every case ours
// and the baseline alternate in short slices within one benchmark, which
// reports both (<side>-<metric>) and their ratio (rate-ratio, p50-ratio,
// p99-ratio); `make bench` (scripts/bench.sh) runs the suite in several
// rounds, one process each, and renders BENCHMARKS.md.
//
//	go test -run '^$' -bench 'Unary' -benchtime 1s ./bench/
//	go test -run '^$' -bench 'Unary/conc=1$' -benchtime 5s -cpuprofile cpu.prof ./bench/
//	go tool pprof -tagfocus side=gomicro -top cpu.prof   # CPU of one side
//
// The benchmarks report; they never fail because a machine is slow. They do
// fail when a case did not do its work (a message lost or received twice, a
// wrong answer), because a benchmark that silently measures nothing is a
// defect.
package bench
