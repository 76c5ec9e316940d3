#!/usr/bin/env bash
# fuzz.sh runs the broker's fuzz targets one after the other, each for
# FUZZTIME (go test -fuzz takes one target per run). With --save it then
# copies inputs the fuzzer found interesting (the smallest first, up to 50
# per target) into broker/azqueue/testdata/fuzz/<target>/, the corpus that
# plain `go test` replays: commit them. Used by `make fuzz` and
# `make fuzz-corpus`.
set -euo pipefail
cd "$(dirname "$0")/.."

fuzztime=${FUZZTIME:-30s}
save=false
[[ ${1:-} == --save ]] && save=true

pkg=./broker/azqueue
module=$(go list -m)
cache="$(go env GOCACHE)/fuzz/$module/broker/azqueue"
targets=(FuzzParseConnectionString FuzzDecodeMessage FuzzQueueNameFor)
max_corpus=50

for target in "${targets[@]}"; do
	echo "== $target ($fuzztime)"
	# A short minimization budget: with the default of 60 s per new input,
	# a target with several string arguments spends its time minimizing.
	go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -fuzzminimizetime 2s "$pkg"
	if $save; then
		dest="broker/azqueue/testdata/fuzz/$target"
		mkdir -p "$dest"
		have=$(find "$dest" -type f | wc -l)
		copied=0
		# Smallest first: they are the readable ones.
		while IFS= read -r file; do
			((have + copied >= max_corpus)) && break
			name=$(basename "$file")
			[[ -e "$dest/$name" ]] && continue
			cp "$file" "$dest/$name"
			copied=$((copied + 1))
		done < <(find "$cache/$target" -type f -printf '%s %p\n' 2>/dev/null | sort -n | cut -d' ' -f2-)
		echo "$target: copied $copied inputs to $dest ($((have + copied)) in all)"
	fi
done
