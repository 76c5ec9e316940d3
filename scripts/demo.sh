#!/usr/bin/env bash
# demo.sh runs the whole POC once against the local etcd and Azurite that
# `make up` started: the server in the background, then each client with a
# bounded count, then shows that the server received the published events,
# and stops the server gracefully. Used by `make demo`, after `make build up`.
set -euo pipefail

cd "$(dirname "$0")/.."
export AZURE_STORAGE_CONNECTION_STRING=${AZURE_STORAGE_CONNECTION_STRING:-UseDevelopmentStorage=true}
events=${DEMO_EVENTS:-5}
say="demo run $(date +%H%M%S)" # tells this run's events from any left by earlier runs
log=.data/demo-server.log
mkdir -p .data

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# wait_for_log waits up to $2 seconds for the server log to contain $1.
wait_for_log() {
	local deadline=$((SECONDS + $2))
	until grep -qF -- "$1" "$log"; do
		if ((SECONDS >= deadline)) || ! kill -0 "$server_pid" 2>/dev/null; then
			echo "demo: the server did not log '$1' within $2 s; its log:" >&2
			cat "$log" >&2
			return 1
		fi
		sleep 0.2
	done
}

step "server: bin/server (log in $log)"
bin/server --server_address=127.0.0.1:0 >"$log" 2>&1 &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null || true' EXIT
wait_for_log "Subscribing to topic" 60
grep -E "Listening on|Registering node|Subscribing to topic" "$log"

step "client-pingpong: one Call, then 5 lock-step PingPong rounds"
bin/client-pingpong --rounds 5

step "client-stream: a 20-item server Stream, then full-duplex PingPong"
bin/client-stream --count 20 --duplex --strokes 100

step "client-azqueue-pub: $events events through Azure Storage Queues (Azurite)"
bin/client-azqueue-pub --count "$events" --interval 200ms --say "$say"

step "server: events received from the queue"
for i in $(seq 1 "$events"); do
	wait_for_log "received event \"$say #$i\"" 30
done
grep -F "received event \"$say" "$log"

step "server: graceful stop (SIGTERM): deregisters from etcd, drains the broker"
kill -TERM "$server_pid"
wait "$server_pid"
trap - EXIT
grep -E "Deregistering node|disconnected from|stopped:" "$log"
printf '\n\033[1mdemo finished: all %d events were received\033[0m\n' "$events"
