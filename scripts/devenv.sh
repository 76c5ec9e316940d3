#!/usr/bin/env bash
# devenv.sh up|down|status manages the local development environment: an etcd
# (the go-micro registry) and the Azurite queue service (the broker's
# backend), both on 127.0.0.1 with their data, logs and pid files in .data/.
#
#   up      start what is not already healthy and wait until both answer
#   down    stop what `up` started (a server devenv did not start is left alone)
#   status  show each component; exit 0 if both are healthy
#
# Ports: ETCD_PORT (default 2379; its peer port is ETCD_PEER_PORT, default
# ETCD_PORT+1) and AZURITE_PORT (default 10001).
set -euo pipefail

cd "$(dirname "$0")/.."
data=$PWD/.data
etcd_port=${ETCD_PORT:-2379}
etcd_peer_port=${ETCD_PEER_PORT:-$((etcd_port + 1))}
azurite_port=${AZURITE_PORT:-10001}
# etcd reads every ETCD_* variable as a flag: keep ours from reaching it.
unset ETCD_PORT ETCD_PEER_PORT
azurite_bin=$PWD/tools/node_modules/.bin/azurite-queue
# What the command line of the server devenv started on these ports contains.
etcd_pattern="--listen-client-urls http://127.0.0.1:$etcd_port "
azurite_pattern="--queuePort $azurite_port "
ready_timeout=30 # seconds
stop_timeout=10  # seconds

# The public key of Azurite's built-in devstoreaccount1 account.
dev_account_key='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='

# http_get PORT PATH prints the answer of 127.0.0.1:PORT to a GET of PATH,
# and fails if nothing answers; each line read waits at most 2 s. Plain
# bash, so it needs neither curl nor timeout(1).
http_get() {
	(
		exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
		printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1:%s\r\nConnection: close\r\n\r\n' "$2" "$1" >&3
		while IFS= read -r -t 2 line || [[ -n $line ]]; do echo "$line"; done <&3
	) 2>/dev/null
}

# etcd_healthy: /health answers {"health":"true"} once etcd has a leader.
etcd_healthy() { [[ $(http_get "$etcd_port" /health) == *'"health":"true"'* ]]; }

# azurite_healthy: any HTTP answer will do (403 for the missing signature).
azurite_healthy() { [[ $(http_get "$azurite_port" "/devstoreaccount1?comp=list") == HTTP/* ]]; }

# our_pid NAME [PATTERN] prints the pid from .data/NAME.pid if that process
# is alive and its command line contains PATTERN (default NAME): pids get
# reused, and a pattern with the port tells instances on other ports apart.
our_pid() {
	local pid_file=$data/$1.pid pid command
	[[ -f $pid_file ]] || return 1
	pid=$(<"$pid_file")
	kill -0 "$pid" 2>/dev/null || return 1
	command=$(ps -o command= -p "$pid" 2>/dev/null || tr '\0' ' ' <"/proc/$pid/cmdline")
	[[ $command == *"${2:-$1}"* ]] || return 1
	echo "$pid"
}

# launch NAME COMMAND... starts COMMAND detached from this shell and the
# terminal, logging to .data/NAME.log and recording its pid.
launch() {
	local name=$1
	shift
	local detach=()
	command -v setsid >/dev/null && detach=(setsid)
	echo "--- $(date -u +%FT%TZ) devenv: starting $name" >>"$data/$name.log"
	nohup ${detach[@]+"${detach[@]}"} "$@" >>"$data/$name.log" 2>&1 </dev/null &
	echo $! >"$data/$name.pid"
}

# log_tail NAME shows the end of NAME's log since devenv last started it.
log_tail() {
	echo "devenv: end of $data/$1.log:" >&2
	awk '/^--- .* devenv: starting /{run=""} {run=run $0 "\n"} END{printf "%s", run}' "$data/$1.log" | tail -n 30 >&2
}

# wait_healthy NAME CHECK PATTERN waits up to ready_timeout for CHECK to
# succeed while NAME's process runs; on failure it shows the end of its log.
wait_healthy() {
	local name=$1 check=$2 pattern=$3 deadline=$((SECONDS + ready_timeout))
	while ((SECONDS < deadline)); do
		"$check" && return 0
		if ! our_pid "$name" "$pattern" >/dev/null; then
			echo "devenv: $name exited during start-up" >&2
			log_tail "$name"
			return 1
		fi
		sleep 0.2
	done
	echo "devenv: $name not healthy after ${ready_timeout}s" >&2
	log_tail "$name"
	stop "$name" >&2
	return 1
}

# start NAME PORT CHECK PATTERN COMMAND... makes sure NAME answers on PORT:
# it reuses a healthy server, waits for one devenv is still starting, or
# launches COMMAND, and then waits until CHECK succeeds.
start() {
	local name=$1 port=$2 check=$3 pattern=$4 pid
	shift 4
	if "$check"; then
		echo "$name: already healthy on 127.0.0.1:$port, reusing it"
		return
	fi
	if pid=$(our_pid "$name" "$pattern"); then
		echo "$name: pid $pid is starting, waiting for it"
	elif pid=$(our_pid "$name"); then
		echo "devenv: $name (pid $pid, started by devenv) runs on other ports; run '$0 down' first" >&2
		return 1
	else
		mkdir -p "$data/$name"
		launch "$name" "$@"
	fi
	wait_healthy "$name" "$check" "$pattern"
	echo "$name: healthy on 127.0.0.1:$port (pid $(<"$data/$name.pid"), log .data/$name.log)"
}

start_etcd() {
	command -v etcd >/dev/null || { echo "devenv: etcd not found; run 'make deps'" >&2; return 1; }
	# Short heartbeat/election timeouts let the single member elect itself
	# in ~0.25 s instead of ~1 s; with no peers they cannot cause trouble.
	start etcd "$etcd_port" etcd_healthy "$etcd_pattern" \
		etcd --name poc-go-micro-dev --data-dir "$data/etcd" \
		--listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
		--listen-peer-urls "http://127.0.0.1:$etcd_peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
		--initial-cluster "poc-go-micro-dev=http://127.0.0.1:$etcd_peer_port" \
		--heartbeat-interval 25 --election-timeout 250 --logger zap
}

start_azurite() {
	[[ -x $azurite_bin ]] || { echo "devenv: $azurite_bin not found; run 'make deps'" >&2; return 1; }
	start azurite "$azurite_port" azurite_healthy "$azurite_pattern" \
		"$azurite_bin" --queueHost 127.0.0.1 --queuePort "$azurite_port" \
		--location "$data/azurite" --skipApiVersionCheck --disableTelemetry --silent
}

# stop NAME stops the process devenv started for NAME: SIGTERM (Azurite saves
# its data on it), then SIGKILL after stop_timeout.
stop() {
	local name=$1 pid deadline=$((SECONDS + stop_timeout))
	if ! pid=$(our_pid "$name"); then
		rm -f "$data/$name.pid"
		echo "$name: not running under devenv, nothing to stop"
		return
	fi
	kill -TERM "$pid"
	while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
	if kill -0 "$pid" 2>/dev/null; then
		echo "$name: still running ${stop_timeout}s after SIGTERM, killing it"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$data/$name.pid"
	echo "$name: stopped (pid $pid)"
}

# show NAME PORT CHECK PATTERN prints one status line and fails if NAME is unhealthy.
show() {
	local name=$1 port=$2 check=$3 pattern=$4 pid owner="not started by devenv"
	pid=$(our_pid "$name" "$pattern") && owner="pid $pid, started by devenv"
	if "$check"; then
		echo "$name: healthy on 127.0.0.1:$port ($owner)"
	elif [[ -n $pid ]]; then
		echo "$name: running but not healthy on 127.0.0.1:$port ($owner; see .data/$name.log)"
		return 1
	else
		echo "$name: not running on 127.0.0.1:$port"
		return 1
	fi
}

print_connection() {
	echo
	echo "Registry:  --registry=etcd --registry_address=127.0.0.1:$etcd_port   (or MICRO_REGISTRY=etcd MICRO_REGISTRY_ADDRESS=127.0.0.1:$etcd_port)"
	if ((azurite_port == 10001)); then
		echo "Azurite:   AZURE_STORAGE_CONNECTION_STRING=UseDevelopmentStorage=true"
	else
		echo "Azurite:   AZURE_STORAGE_CONNECTION_STRING='DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=$dev_account_key;QueueEndpoint=http://127.0.0.1:$azurite_port/devstoreaccount1;'"
		echo "           (the account key is the Azurite emulator's public development key, not a secret)"
	fi
}

case ${1:-} in
up)
	mkdir -p "$data"
	start_etcd
	start_azurite
	print_connection
	;;
down)
	stop azurite
	stop etcd
	;;
status)
	healthy=0
	show etcd "$etcd_port" etcd_healthy "$etcd_pattern" || healthy=1
	show azurite "$azurite_port" azurite_healthy "$azurite_pattern" || healthy=1
	((healthy == 0)) && print_connection
	exit "$healthy"
	;;
*)
	echo "usage: $0 up|down|status" >&2
	exit 2
	;;
esac
