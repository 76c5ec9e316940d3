// Command report renders the results of `make bench` into BENCHMARKS.md:
// one table of ours against the baseline with their ratio and the target,
// the machine, the exact command, and benchstat's summary.
//
// It reads the raw `go test -bench` output of every round (several results
// per benchmark, one per round), takes the median of each metric over the
// rounds, and for ratios the median of the per-round ratios (each computed
// in one process from interleaved slices, see bench.alternate). It rewrites
// only the part of the output file between the results markers, so the
// hand-written analysis around it stays.
//
//	go run ./bench/report -raw bench-raw.txt -benchstat bench-stat.txt -out BENCHMARKS.md
package main

import (
	"bufio"
	"flag"
	"fmt"
	"math"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
)

const (
	beginMarker = "<!-- results:begin -->"
	endMarker   = "<!-- results:end -->"
)

// direction says which way a ratio is good.
type direction int

const (
	higherIsBetter direction = iota // throughput: ours/baseline should be high
	lowerIsBetter                   // latency, requests: should be low
)

// row is one line of the table.
type row struct {
	section string
	name    string
	bench   string // benchmark name without the GOMAXPROCS suffix
	ours    string // unit of ours
	base    string // unit of the baseline; empty: no baseline
	ratio   string // unit of the per-round ratio; empty: ours/base of medians
	show    display
	dir     direction
	target  float64 // the ratio's target (ours alone when base is empty); 0: none
}

// display turns a metric's value into text.
type display struct {
	scale float64
	unit  string
}

var (
	micros  = display{1e-3, "µs"}
	millis  = display{1e-6, "ms"}
	seconds = display{1e-9, "s"}
	kib     = display{1.0 / 1024, "KiB"}
	perSec  = func(what string) display { return display{1, what + "/s"} }
	plain   = func(unit string) display { return display{1, unit} }
)

// rows is the report: every case of the suite, in the order.
var rows = []row{
	{"RPC", "Unary `Call`, 1 caller: p50 latency", "BenchmarkUnary/conc=1", "gomicro-p50-ns", "grpc-p50-ns", "p50-ratio", micros, lowerIsBetter, 1.25},
	{"RPC", "Unary `Call`, 1 caller: p99 latency", "BenchmarkUnary/conc=1", "gomicro-p99-ns", "grpc-p99-ns", "p99-ratio", micros, lowerIsBetter, 0},
	{"RPC", "Unary `Call`, 1 caller: CPU per call (client and in-process server)", "BenchmarkUnary/conc=1", "gomicro-cpu-ns/op", "grpc-cpu-ns/op", "", micros, lowerIsBetter, 0},
	{"RPC", "Unary `Call`, 1 caller: allocated per call (client and server)", "BenchmarkUnary/conc=1", "gomicro-B/op", "grpc-B/op", "", kib, lowerIsBetter, 0},
	{"RPC", "Unary `Call`, 16 callers: throughput", "BenchmarkUnary/conc=16", "gomicro-calls/s", "grpc-calls/s", "rate-ratio", perSec("calls"), higherIsBetter, 0},
	{"RPC", "Server stream `Stream`, 50,000 messages per stream", "BenchmarkStream", "gomicro-msgs/s", "grpc-msgs/s", "rate-ratio", perSec("msgs"), higherIsBetter, 0.8},
	{"RPC", "`PingPong` lock-step round trips", "BenchmarkPingPong/mode=lockstep", "gomicro-strokes/s", "grpc-strokes/s", "rate-ratio", perSec("round trips"), higherIsBetter, 0.8},
	{"RPC", "`PingPong` lock-step: p50 round trip", "BenchmarkPingPong/mode=lockstep", "gomicro-p50-ns", "grpc-p50-ns", "p50-ratio", micros, lowerIsBetter, 0},
	{"RPC", "`PingPong` full duplex", "BenchmarkPingPong/mode=duplex", "gomicro-strokes/s", "grpc-strokes/s", "rate-ratio", perSec("msgs"), higherIsBetter, 0.8},
	{"Broker", "Publish, 1 publisher", "BenchmarkPublish/groups=1/conc=1", "azqueue-msgs/s", "sdk-msgs/s", "rate-ratio", perSec("msgs"), higherIsBetter, 0.95},
	{"Broker", "Publish, 1 publisher: p50 latency", "BenchmarkPublish/groups=1/conc=1", "azqueue-p50-ns", "sdk-p50-ns", "p50-ratio", millis, lowerIsBetter, 0},
	{"Broker", "Publish, 1 publisher: CPU per publish (client)", "BenchmarkPublish/groups=1/conc=1", "azqueue-cpu-ns/op", "sdk-cpu-ns/op", "", micros, lowerIsBetter, 0},
	{"Broker", "Publish, 1 publisher: allocated per publish (client)", "BenchmarkPublish/groups=1/conc=1", "azqueue-B/op", "sdk-B/op", "", kib, lowerIsBetter, 0},
	{"Broker", "Publish, 16 publishers", "BenchmarkPublish/groups=1/conc=16", "azqueue-msgs/s", "sdk-msgs/s", "rate-ratio", perSec("msgs"), higherIsBetter, 0.95},
	{"Broker", "Fan-out: publish to 2 groups, 16 publishers", "BenchmarkPublish/groups=2/conc=16", "azqueue-msgs/s", "sdk-msgs/s", "rate-ratio", perSec("publishes"), higherIsBetter, 0.95},
	{"Broker", "Fan-out: publish to 4 groups, 16 publishers", "BenchmarkPublish/groups=4/conc=16", "azqueue-msgs/s", "sdk-msgs/s", "rate-ratio", perSec("publishes"), higherIsBetter, 0.95},
	{"Broker", "Publish at 10 ms round trip, 16 publishers", "BenchmarkPublishAtRTT/rtt=10ms/conc=16", "azqueue-msgs/s", "sdk-msgs/s", "rate-ratio", perSec("msgs"), higherIsBetter, 0},
	{"Broker", "Publish at 30 ms round trip, 16 publishers", "BenchmarkPublishAtRTT/rtt=30ms/conc=16", "azqueue-msgs/s", "sdk-msgs/s", "rate-ratio", perSec("msgs"), higherIsBetter, 0},
	{"Broker", "Publish at 30 ms: requests per publish", "BenchmarkPublishAtRTT/rtt=30ms/conc=16", "azqueue-req/msg", "sdk-req/msg", "", plain("req"), lowerIsBetter, 0},
	{"Broker", "Consume a 1,000-message backlog, 32 at once (defaults)", "BenchmarkConsume", "azqueue-msgs/s", "sdk-msgs/s", "rate-ratio", perSec("msgs"), higherIsBetter, 0.9},
	{"Broker", "Consume, ours at the former default `BatchSize(16)` (16 handlers)", "BenchmarkConsume", "batch16-msgs/s", "sdk-msgs/s", "batch16-rate-ratio", perSec("msgs"), higherIsBetter, 0},
	{"Broker", "Consume: messages per dequeue request", "BenchmarkConsume", "azqueue-msgs/dequeue", "sdk-msgs/dequeue", "", plain("msgs"), higherIsBetter, 0},
	{"Broker", "Consume: messages per dequeue request, `BatchSize(16)`", "BenchmarkConsume", "batch16-msgs/dequeue", "sdk-msgs/dequeue", "", plain("msgs"), higherIsBetter, 0},
	{"Broker", "Consume: CPU per message (client)", "BenchmarkConsume", "azqueue-cpu-ns/op", "sdk-cpu-ns/op", "", micros, lowerIsBetter, 0},
	{"Broker", "Consume: CPU per message (client), `BatchSize(16)`", "BenchmarkConsume", "batch16-cpu-ns/op", "sdk-cpu-ns/op", "", micros, lowerIsBetter, 0},
	{"Broker", "Consume at 10 ms round trip, 32 at once (defaults)", "BenchmarkConsumeAtRTT/rtt=10ms/conc=32", "azqueue-msgs/s", "sdk-msgs/s", "rate-ratio", perSec("msgs"), higherIsBetter, 0},
	{"Broker", "Consume at 10 ms: requests per handled message", "BenchmarkConsumeAtRTT/rtt=10ms/conc=32", "azqueue-req/msg", "sdk-req/msg", "", plain("req"), lowerIsBetter, 0},
	{"Broker", "Consume at 30 ms round trip (defaults) against the unbounded raw loop (32 deleting, dequeues of 32, up to 96 leased)", "BenchmarkConsumeAtRTT/rtt=30ms/conc=32", "azqueue-msgs/s", "sdk-msgs/s", "rate-ratio", perSec("msgs"), higherIsBetter, 0.9},
	{"Broker", "Consume at 30 ms round trip (defaults) against the raw loop holding as many messages (32 deleting, dequeues of 32, at most 64 leased)", "BenchmarkConsumeAtRTT/rtt=30ms/conc=32/held=64", "azqueue-msgs/s", "sdk-msgs/s", "rate-ratio", perSec("msgs"), higherIsBetter, 0},
	{"Broker", "Consume at 30 ms: requests per handled message", "BenchmarkConsumeAtRTT/rtt=30ms/conc=32", "azqueue-req/msg", "sdk-req/msg", "", plain("req"), lowerIsBetter, 0},
	{"Broker", "Consume at 30 ms, `Concurrency(64)`, 64 at once (Azure's target per queue: 2,000 msgs/s)", "BenchmarkConsumeAtRTT/rtt=30ms/conc=64", "azqueue-msgs/s", "sdk-msgs/s", "rate-ratio", perSec("msgs"), higherIsBetter, 0},
	{"Broker", "Consume at 30 ms, `Concurrency(64)`: requests per handled message", "BenchmarkConsumeAtRTT/rtt=30ms/conc=64", "azqueue-req/msg", "sdk-req/msg", "", plain("req"), lowerIsBetter, 0},
	{"Broker", "Publish→handler at 50 msg/s: p50", "BenchmarkLatency", "azqueue-p50-ns", "sdk-p50-ns", "p50-ratio", millis, lowerIsBetter, 0},
	{"Broker", "Publish→handler at 50 msg/s: p99", "BenchmarkLatency", "azqueue-p99-ns", "sdk-p99-ns", "p99-ratio", millis, lowerIsBetter, 0},
	{"Broker", "Publish→handler, publisher's own broker (wakes the poller): p50", "BenchmarkLatency", "azqueuewake-p50-ns", "sdk-p50-ns", "", millis, lowerIsBetter, 0},
	{"Broker", "Publish→handler, `PollInterval(10ms, 10s)`: p50", "BenchmarkLatency", "azqueuefast-p50-ns", "sdk-p50-ns", "", millis, lowerIsBetter, 0},
	{"Broker", "Idle subscription: requests per minute", "BenchmarkIdle", "req/min", "", "", plain("req/min"), lowerIsBetter, 7},
	{"Broker", "First message after idling at the longest pause, other broker instance: p50", "BenchmarkIdle", "first-p50-ns", "", "", seconds, lowerIsBetter, 0},
	{"Broker", "First message after idling at the longest pause, other broker instance: max", "BenchmarkIdle", "first-max-ns", "", "", seconds, lowerIsBetter, 0},
	{"Broker", "First message after idling, publisher's own broker (wake): max", "BenchmarkIdle", "wake-max-ns", "", "", millis, lowerIsBetter, 0},
}

func main() {
	var (
		raw       = flag.String("raw", "", "raw `go test -bench` output of every round (required)")
		stat      = flag.String("benchstat", "", "benchstat's summary of the raw output, to include")
		out       = flag.String("out", "BENCHMARKS.md", "file to write the results into, between the results markers")
		command   = flag.String("command", "", "the command that produced the results")
		elapsed   = flag.String("elapsed", "", "how long that command took")
		rounds    = flag.String("rounds", "", "how many rounds (processes) ran the suite")
		azurite   = flag.String("azurite", "", "Azurite version")
		loadStart = flag.String("load", "", "load average (1, 5, 15 min) when the run started")
		loadEnd   = flag.String("load-end", "", "load average when the run ended (default: now)")
		notes     = flag.String("notes", "", "extra lines for the run description, separated by ';'")
	)
	flag.Parse()
	if *raw == "" {
		fail("-raw is required")
	}
	results, err := parse(*raw)
	if err != nil {
		fail("%v", err)
	}
	var b strings.Builder
	writeTable(&b, results)
	writeRun(&b, runInfo{command: *command, elapsed: *elapsed, rounds: *rounds, azurite: *azurite, loadStart: *loadStart, loadEnd: *loadEnd, notes: *notes})
	if *stat != "" {
		text, err := os.ReadFile(*stat)
		if err != nil {
			fail("%v", err)
		}
		fmt.Fprintf(&b, "\n<details><summary>benchstat summary of every metric over the rounds (median; the ± interval needs 6 rounds)</summary>\n\n```\n%s```\n\n</details>\n", text)
	}
	if err := replaceResults(*out, b.String()); err != nil {
		fail("%v", err)
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "report: "+format+"\n", args...)
	os.Exit(1)
}

// results maps a benchmark name (without the GOMAXPROCS suffix) and a unit
// to the values of every round.
type results map[string]map[string][]float64

var procsSuffix = regexp.MustCompile(`-\d+$`)

// parse reads `go test -bench` output: "BenchmarkX/y-2  N  v unit  v unit ...".
func parse(path string) (results, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := make(results)
	scanner := bufio.NewScanner(f)
	scanner.Buffer(make([]byte, 1<<20), 1<<20)
	for scanner.Scan() {
		fields := strings.Fields(scanner.Text())
		if len(fields) < 4 || !strings.HasPrefix(fields[0], "Benchmark") || len(fields)%2 != 0 {
			continue
		}
		if _, err := strconv.Atoi(fields[1]); err != nil {
			continue
		}
		name := procsSuffix.ReplaceAllString(fields[0], "")
		if r[name] == nil {
			r[name] = make(map[string][]float64)
		}
		for i := 2; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				continue
			}
			r[name][fields[i+1]] = append(r[name][fields[i+1]], v)
		}
	}
	if err := scanner.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(r) == 0 {
		return nil, fmt.Errorf("%s holds no benchmark results", path)
	}
	return r, nil
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func writeTable(b *strings.Builder, r results) {
	fmt.Fprintln(b, "| | case | ours | baseline | ratio ours/baseline (min–max over rounds) | target | met? |")
	fmt.Fprintln(b, "|---|---|---:|---:|---|---|---|")
	for _, row := range rows {
		values := r[row.bench]
		ours := values[row.ours]
		if len(ours) == 0 {
			fmt.Fprintf(b, "| %s | %s | not run | | | | |\n", row.section, row.name)
			continue
		}
		oursText := row.show.format(median(ours))
		baseText, ratioText, targetText, met := "—", "—", "—", "—"
		var ratio float64
		switch {
		case row.base == "":
			ratio = median(ours) // the target is on ours alone
		case row.ratio != "" && len(values[row.ratio]) > 0:
			rs := values[row.ratio]
			ratio = median(rs)
			ratioText = fmt.Sprintf("**%.3f×** (%.2f–%.2f)", ratio, slices.Min(rs), slices.Max(rs))
		default:
			ratio = median(ours) / median(values[row.base])
			ratioText = fmt.Sprintf("**%.3f×** (of medians)", ratio)
		}
		if row.base != "" {
			baseText = row.show.format(median(values[row.base]))
		}
		if row.target > 0 {
			limit := fmt.Sprintf("%g×", row.target)
			if row.base == "" {
				limit = row.show.formatTarget(row.target)
			}
			ok := ratio >= row.target
			targetText = "≥ " + limit
			if row.dir == lowerIsBetter {
				ok = ratio <= row.target
				targetText = "≤ " + limit
			}
			met = "yes"
			if !ok {
				met = "**no**"
			}
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s |\n", row.section, row.name, oursText, baseText, ratioText, targetText, met)
	}
	n := 0
	for _, units := range r {
		for _, v := range units {
			n = max(n, len(v))
		}
	}
	fmt.Fprintf(b, "\nOurs and baseline are medians over the rounds; a ratio is the median of the per-round ratios, each measured in one process with ours and the baseline alternating in short slices. Up to %d rounds per case.\n", n)
}

func (d display) format(v float64) string {
	if math.IsNaN(v) {
		return "n/a"
	}
	x := v * d.scale
	switch {
	case x >= 100:
		return fmt.Sprintf("%.0f %s", x, d.unit)
	case x >= 10:
		return fmt.Sprintf("%.1f %s", x, d.unit)
	default:
		return fmt.Sprintf("%.2f %s", x, d.unit)
	}
}

func (d display) formatTarget(v float64) string { return fmt.Sprintf("%g %s", v*d.scale, d.unit) }

type runInfo struct {
	command, elapsed, rounds, azurite, loadStart, loadEnd, notes string
}

func writeRun(b *strings.Builder, info runInfo) {
	fmt.Fprintln(b, "\n### The run")
	fmt.Fprintln(b)
	fmt.Fprintf(b, "- Machine: %d CPUs (%s), %s RAM, %s/%s\n", runtime.NumCPU(), cpuModel(), memTotal(), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(b, "- Go: %s; Azurite: %s\n", runtime.Version(), orUnknown(info.azurite))
	if info.loadStart != "" {
		end := info.loadEnd
		if end == "" {
			end = loadAverage()
		}
		fmt.Fprintf(b, "- Load average (1, 5, 15 min): %s at the start, %s at the end: other work on the machine shares its CPUs, which is why ours and the baseline alternate\n", info.loadStart, end)
	}
	if info.rounds != "" {
		fmt.Fprintf(b, "- Rounds: %s (one process each: fresh etcd, Azurite and server per round)\n", info.rounds)
	}
	if info.elapsed != "" {
		fmt.Fprintf(b, "- `make bench` took %s, building included\n", info.elapsed)
	}
	for _, n := range strings.Split(info.notes, ";") {
		if n = strings.TrimSpace(n); n != "" {
			fmt.Fprintf(b, "- %s\n", n)
		}
	}
	if info.command != "" {
		fmt.Fprintf(b, "\nCommand (run by `make bench`, i.e. `scripts/bench.sh`):\n\n```sh\n%s\n```\n", info.command)
	}
}

func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "model unknown"
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "model unknown"
}

func memTotal() string {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, err := strconv.ParseFloat(fields[1], 64)
			if err == nil {
				return fmt.Sprintf("%.0f GiB", kb/1024/1024)
			}
		}
	}
	return "unknown"
}

func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	fields := strings.Fields(string(data))
	if len(fields) < 3 {
		return "unknown"
	}
	return strings.Join(fields[:3], " ")
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// replaceResults writes results between the markers of the file at path,
// creating the file with the markers when it does not exist.
func replaceResults(path, results string) error {
	old, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		old = []byte("# Benchmarks\n\n" + beginMarker + "\n" + endMarker + "\n")
	} else if err != nil {
		return err
	}
	text := string(old)
	begin, end := strings.Index(text, beginMarker), strings.Index(text, endMarker)
	if begin < 0 || end < begin {
		return fmt.Errorf("%s lacks the markers %s and %s", path, beginMarker, endMarker)
	}
	updated := text[:begin+len(beginMarker)] + "\n" + results + text[end:]
	return os.WriteFile(path, []byte(updated), 0o644)
}
