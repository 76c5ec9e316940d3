package bench

import (
	"context"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// latencies collects the durations of individual operations.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

func (l *latencies) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.d)
}

// percentile returns the p-th percentile (0..100), nearest rank.
func (l *latencies) percentile(p float64) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		return 0
	}
	s := slices.Clone(l.d)
	slices.Sort(s)
	i := int(p/100*float64(len(s))+0.5) - 1
	i = max(0, min(i, len(s)-1))
	return s[i]
}

// side is one implementation in a comparison: ours or the baseline. Its
// slice runs one bounded piece of the work and returns how many
// operations it did (calls, messages, strokes); it records the latency of
// single operations in lat when the case measures latency.
type side struct {
	name  string
	slice func(b *testing.B) int
	lat   latencies
	// prepare and finish, when set, run before and after every slice,
	// outside its time: filling a queue, checking what was received.
	prepare, finish func(b *testing.B)

	ops     int
	elapsed time.Duration
	cpu     time.Duration // CPU time of the whole process during the slices
	alloc   uint64        // bytes the process allocated during the slices
}

// alternate runs the sides' slices in turn, b.N times each: one op of the
// benchmark is one slice of every side. Alternating in short slices, in
// the same process against the same server or emulator, keeps a machine
// that slows down or speeds up during the run from favouring one side. The
// order flips every op (and every round, see RoundEnv), so neither side
// always goes first.
//
// sides[0] is ours and sides[1] the baseline; further sides are variants
// of ours reported alongside. It reports, per side, "<name>-<rate>" (ops per
// second over the time its slices took; not when rate is empty),
// "<name>-cpu-ns/op" (CPU time of this process per op, see processCPU),
// "<name>-B/op" (bytes this process allocated per op) and,
// when latencies were recorded, "<name>-p50-ns" and "<name>-p99-ns"; and the
// ratios of ours to the baseline: "rate-ratio", "p50-ratio", "p99-ratio".
func alternate(b *testing.B, rate string, sides ...*side) {
	b.Helper()
	alternateTimes(b, b.N, rate, sides...)
}

// alternateTimes is alternate with n slices of every side instead of b.N,
// for cases that take a number of turns decided up front (b.N stays 1 when
// they take longer than -benchtime).
func alternateTimes(b *testing.B, n int, rate string, sides ...*side) {
	b.Helper()
	round, _ := strconv.Atoi(os.Getenv(RoundEnv))
	for i := 0; i < n; i++ {
		order := slices.Clone(sides)
		if (i+round)%2 == 1 {
			slices.Reverse(order)
		}
		for _, s := range order {
			if s.prepare != nil {
				b.StopTimer()
				s.prepare(b)
				b.StartTimer()
			}
			allocStart := allocated()
			start, cpuStart := time.Now(), processCPU()
			// The label splits a CPU profile by side (pprof -tagfocus
			// side=gomicro); goroutines started by the slice inherit it.
			pprof.Do(context.Background(), pprof.Labels("side", s.name), func(context.Context) {
				s.ops += s.slice(b)
			})
			s.elapsed += time.Since(start)
			s.cpu += processCPU() - cpuStart
			s.alloc += allocated() - allocStart
			if s.finish != nil {
				b.StopTimer()
				s.finish(b)
				b.StartTimer()
			}
		}
	}
	b.StopTimer()
	for _, s := range sides {
		if rate != "" {
			b.ReportMetric(s.rate(), s.name+"-"+rate)
		}
		if s.ops > 0 {
			b.ReportMetric(float64(s.cpu)/float64(s.ops), s.name+"-cpu-ns/op")
			b.ReportMetric(float64(s.alloc)/float64(s.ops), s.name+"-B/op")
		}
		if s.lat.len() > 0 {
			b.ReportMetric(float64(s.lat.percentile(50)), s.name+"-p50-ns")
			b.ReportMetric(float64(s.lat.percentile(99)), s.name+"-p99-ns")
		}
	}
	ours, base := sides[0], sides[1]
	if rate != "" && base.rate() > 0 {
		b.ReportMetric(ours.rate()/base.rate(), "rate-ratio")
	}
	if ours.lat.len() > 0 && base.lat.len() > 0 {
		b.ReportMetric(float64(ours.lat.percentile(50))/float64(base.lat.percentile(50)), "p50-ratio")
		b.ReportMetric(float64(ours.lat.percentile(99))/float64(base.lat.percentile(99)), "p99-ratio")
	}
}

// allocated returns the bytes the process has allocated so far. Reading
// it stops the world briefly, which is why it is read per slice, not per
// operation.
func allocated() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.TotalAlloc
}

// processCPU returns the CPU time (user and system) the process has used.
// Per slice it measures what one side costs this process: the client, and
// for the RPC cases the in-process server too (the same server for both
// sides). Azurite and etcd run in processes of their own.
func processCPU() time.Duration {
	var u syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &u); err != nil {
		return 0
	}
	return time.Duration(u.Utime.Nano() + u.Stime.Nano())
}

func (s *side) rate() float64 {
	if s.elapsed <= 0 {
		return 0
	}
	return float64(s.ops) / s.elapsed.Seconds()
}

// runFor runs op on workers goroutines until d has passed, then waits for
// the operations under way, and returns how many ran. The first error
// fails the benchmark.
func runFor(b *testing.B, d time.Duration, workers int, op func() error) int {
	b.Helper()
	deadline := time.Now().Add(d)
	var done atomic.Int64
	var firstErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				if err := op(); err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	return int(done.Load())
}

// timed wraps op to record its latency in lat.
func timed(lat *latencies, op func() error) func() error {
	return func() error {
		start := time.Now()
		err := op()
		lat.add(time.Since(start))
		return err
	}
}
