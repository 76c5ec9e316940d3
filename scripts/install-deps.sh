#!/usr/bin/env bash
# install-deps.sh installs what the project needs besides Go, Node and make:
# etcd and etcdctl, protoc, Docker (dockerd, its 20.10 client and
# iptables), docker-compose and debootstrap (Debian packages), Azurite and
# dockerfilelint (npm, pinned in tools/package-lock.json) and the Go code
# generators (pinned in tools/go.mod, installed into bin/tools). Safe to
# re-run: steps already done are skipped, so it is fast when everything is
# present.
#
# Docker: a machine whose Docker engine answers needs no dockerd of ours;
# otherwise the compose tests start Debian's dockerd themselves. debootstrap
# makes the Debian root file system of the local stand-ins for base images
# that cannot be pulled; it is installed where apt is (elsewhere the
# images are pulled).
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD

# package_of prints the Debian package that provides command $1.
package_of() {
	case $1 in
	etcd) echo etcd-server ;;
	etcdctl) echo etcd-client ;;
	protoc) echo protobuf-compiler ;;
	dockerd) echo docker.io ;;
	*) echo "$1" ;;
	esac
}

# etcd_pids prints the pids of running etcd processes (from /proc: a fresh
# machine may lack pgrep).
etcd_pids() {
	local comm
	for comm in /proc/[0-9]*/comm; do
		[[ $(cat "$comm" 2>/dev/null) == etcd ]] && basename "$(dirname "$comm")"
	done
	return 0
}

# stop_packaged_etcd stops and disables an etcd that installing etcd-server
# started as a system service (pids not in $1): it would hold port 2379,
# which the dev environment (scripts/devenv.sh) uses for its own etcd.
stop_packaged_etcd() {
	local before=" $1 " pid
	for pid in $(etcd_pids); do
		[[ $before == *" $pid "* ]] && continue
		echo "deps: stopping the etcd service the package started (pid $pid)"
		if [[ -d /run/systemd/system ]]; then
			systemctl disable --now etcd.service >/dev/null 2>&1 || true
		else
			service etcd stop >/dev/null 2>&1 || true
			update-rc.d etcd disable >/dev/null 2>&1 || true
		fi
		kill "$pid" 2>/dev/null || true
	done
	if command -v ss >/dev/null && ss -Hltn 'sport = :2379' | grep -q .; then
		echo "deps: warning: something still listens on port 2379; run 'make up' with ETCD_PORT=<other port> or stop it" >&2
	fi
}

# have reports whether command $1 is installed, in PATH or in the sbin
# folders a non-root PATH may lack.
have() {
	command -v "$1" >/dev/null || [[ -x /usr/sbin/$1 || -x /sbin/$1 ]]
}

# docker_answers reports whether a Docker engine answers the docker client.
docker_answers() {
	command -v docker >/dev/null && timeout 15 docker version --format '{{.Server.Version}}' >/dev/null 2>&1
}

# 1. System packages.
commands=(etcd etcdctl protoc docker-compose)
if ! docker_answers; then
	commands+=(dockerd iptables)
fi
if command -v apt-get >/dev/null; then
	commands+=(debootstrap)
fi
missing=()
for cmd in "${commands[@]}"; do
	have "$cmd" || missing+=("$(package_of "$cmd")")
done
if ((${#missing[@]} == 0)); then
	echo "deps: ${commands[*]} present"
elif [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null; then
	echo "deps: missing packages, install them as root: apt-get install -y --no-install-recommends ${missing[*]}" >&2
	echo "deps: (elsewhere, install the equivalents of: ${missing[*]})" >&2
	exit 1
else
	echo "deps: installing ${missing[*]}"
	etcd_before=$(etcd_pids | tr '\n' ' ')
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	stop_packaged_etcd "$etcd_before"
fi

# 2. Azurite and dockerfilelint, from npm. npm ci writes
# node_modules/.package-lock.json last, so it serves as the install marker:
# reinstall when the lock file is newer.
npm_marker=tools/node_modules/.package-lock.json
if [[ -x tools/node_modules/.bin/azurite-queue && -x tools/node_modules/.bin/dockerfilelint &&
	-f $npm_marker && ! tools/package-lock.json -nt $npm_marker ]]; then
	echo "deps: azurite, dockerfilelint up to date"
else
	echo "deps: installing azurite, dockerfilelint (npm ci in tools/)"
	(cd tools && npm ci --no-audit --no-fund --loglevel=error)
fi

# 3. Go code generators, from the tools module, reinstalled when its go.mod
# or go.sum is newer than the marker written by the last install.
go_marker=bin/tools/.installed
if [[ -x bin/tools/protoc-gen-go && -x bin/tools/protoc-gen-micro && -f $go_marker &&
	! tools/go.mod -nt $go_marker && ! tools/go.sum -nt $go_marker ]]; then
	echo "deps: protoc-gen-go, protoc-gen-micro up to date"
else
	echo "deps: installing protoc-gen-go, protoc-gen-micro into bin/tools"
	mkdir -p bin/tools
	(cd tools && GOBIN="$root/bin/tools" go install github.com/golang/protobuf/protoc-gen-go github.com/micro/micro/v2/cmd/protoc-gen-micro)
	touch "$go_marker"
fi

# 4. benchstat, which `make bench` uses, from a module of its own: every
# golang.org/x/perf version requires a golang/protobuf newer than the
# generators' pin, so it cannot share tools/go.mod.
benchstat_marker=bin/tools/.benchstat-installed
if [[ -x bin/tools/benchstat && -f $benchstat_marker &&
	! tools/benchstat/go.mod -nt $benchstat_marker && ! tools/benchstat/go.sum -nt $benchstat_marker ]]; then
	echo "deps: benchstat up to date"
else
	echo "deps: installing benchstat into bin/tools"
	mkdir -p bin/tools
	(cd tools/benchstat && GOBIN="$root/bin/tools" go install golang.org/x/perf/cmd/benchstat)
	touch "$benchstat_marker"
fi
