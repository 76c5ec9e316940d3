#!/usr/bin/env bash
# bench.sh runs the benchmark suite in bench/ and writes its results into
# BENCHMARKS.md. Each round is one process of the compiled suite, which
# starts its own etcd, Azurite and in-process server on free loopback
# ports and stops them when it ends; inside it, ours and the baseline of
# every case alternate in short slices. The idle-subscription benchmark
# (minutes of mostly sleeping) runs alongside the rounds in a process of
# its own. benchstat (bin/tools, pinned in tools/benchstat) summarises the
# rounds; bench/report renders the table.
#
# Settings (environment): BENCH_ROUNDS (default 6: benchstat's minimum for
# a confidence interval), BENCH_DEADLINE (seconds from the start by which the
# rounds must be done, default 600: no new round starts that would end
# later, but at least 3 run, so a slow machine gets fewer rounds rather than
# a run past 12 minutes), BENCH_TIME (go test -benchtime of each case,
# default 1500ms), BENCH_IDLE_WINDOW (how long idle
# requests are counted, default 120s), BENCH_OUT (scratch folder, default
# bin/bench).
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD

rounds=${BENCH_ROUNDS:-6}
deadline=${BENCH_DEADLINE:-600}
min_rounds=3
benchtime=${BENCH_TIME:-1500ms}
idle_window=${BENCH_IDLE_WINDOW:-120s}
out=${BENCH_OUT:-bin/bench}
suite='^Benchmark(Unary|Stream|PingPong|Publish|PublishAtRTT|Consume|ConsumeAtRTT|Latency)$'

start=$(date +%s)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
mkdir -p "$out"
rm -f "$out"/raw.txt "$out"/idle.txt "$out"/*.log

echo "bench: building the suite"
go test -c -o "$out/bench.test" ./bench/
go build -o "$out/report" ./bench/report
test_bin=$root/$out/bench.test

# The test binary must run in bench/: the harness finds the repository
# from its working directory.
run_suite() {
	(cd bench && "$test_bin" -test.run '^$' "$@")
}

idle_pid=
stop_idle() {
	if [[ -n $idle_pid ]] && kill -0 "$idle_pid" 2>/dev/null; then
		# The suite stops its etcd and Azurite on SIGTERM.
		kill -TERM "$idle_pid" 2>/dev/null || true
		wait "$idle_pid" 2>/dev/null || true
	fi
}
trap stop_idle EXIT

echo "bench: idle subscriptions, counted for $idle_window, in the background"
POC_BENCH_IDLE_WINDOW=$idle_window run_suite -test.bench '^BenchmarkIdle$' -test.benchtime 1x \
	>"$out/idle.txt" 2>"$out/idle.log" &
idle_pid=$!

rounds_start=$(date +%s)
done_rounds=0
for round in $(seq 1 "$rounds"); do
	now=$(date +%s)
	if ((done_rounds >= min_rounds)); then
		per_round=$(((now - rounds_start) / done_rounds))
		if ((now + per_round > start + deadline)); then
			echo "bench: stopping after $done_rounds rounds: another would end past the ${deadline}s deadline"
			break
		fi
	fi
	echo "bench: round $round of $rounds"
	if ! POC_BENCH_ROUND=$round run_suite -test.bench "$suite" -test.benchtime "$benchtime" \
		>>"$out/raw.txt" 2>>"$out/rounds.log"; then
		echo "bench: round $round failed:" >&2
		tail -n 40 "$out/raw.txt" "$out/rounds.log" >&2
		exit 1
	fi
	done_rounds=$round
	echo "bench: round $round took $(($(date +%s) - now))s"
done

echo "bench: waiting for the idle measurement"
if ! wait "$idle_pid"; then
	idle_pid=
	echo "bench: the idle benchmark failed:" >&2
	tail -n 40 "$out/idle.txt" "$out/idle.log" >&2
	exit 1
fi
idle_pid=
cat "$out/idle.txt" >>"$out/raw.txt"

"$root/bin/tools/benchstat" "$out/raw.txt" >"$out/benchstat.txt"

elapsed=$(($(date +%s) - start))
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
azurite=$(node -p "require('./tools/node_modules/azurite/package.json').version" 2>/dev/null || echo unknown)
command="go test -c -o $out/bench.test ./bench/
cd bench
for round in \$(seq 1 $done_rounds); do
  POC_BENCH_ROUND=\$round ../$out/bench.test -test.run '^\$' -test.bench '$suite' -test.benchtime $benchtime
done
# alongside the rounds, in its own process:
POC_BENCH_IDLE_WINDOW=$idle_window ../$out/bench.test -test.run '^\$' -test.bench '^BenchmarkIdle\$' -test.benchtime 1x
cd ..
bin/tools/benchstat $out/raw.txt"
"$out/report" -raw "$out/raw.txt" -benchstat "$out/benchstat.txt" -out BENCHMARKS.md \
	-command "$command" -elapsed "$((elapsed / 60))m$((elapsed % 60))s" -rounds "$done_rounds" \
	-azurite "$azurite" -load "$load_start" -load-end "$load_end" \
	-notes "Each case's -benchtime: $benchtime; idle window: $idle_window, after a 25s warm-up"
echo "bench: done in $((elapsed / 60))m$((elapsed % 60))s; results in BENCHMARKS.md, raw output in $out/"
