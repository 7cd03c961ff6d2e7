#!/usr/bin/env bash
# A throw-away PostgreSQL cluster on loopback, made the way the tests make
# theirs (internal/testenv/postgres.go): a fresh initdb, trust
# authentication for the superuser "mayfly" on 127.0.0.1 only, the unix
# socket inside DIR, run as the postgres user when started by root.
#
#   pg-cluster.sh start DIR [PORT]   create and start it; prints its admin URL
#   pg-cluster.sh stop DIR           stop it and remove DIR
#
# Unlike the tests' cluster it keeps fsync on: the benchmarks measure
# durable commits. PORT defaults to the first free one from 55432.
set -euo pipefail

usage() { echo "usage: $0 start DIR [PORT] | stop DIR" >&2; exit 2; }

bindir() {
	local d
	for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -n -r); do
		if [ -x "$d/initdb" ] && [ -x "$d/postgres" ]; then echo "$d"; return; fi
	done
	if command -v initdb >/dev/null && [ -x "$(dirname "$(command -v initdb)")/postgres" ]; then
		dirname "$(command -v initdb)"; return
	fi
	echo "no initdb and postgres under /usr/lib/postgresql/*/bin nor on PATH (Debian: apt-get install postgresql)" >&2
	exit 1
}

# as runs a command as the user the cluster belongs to: PostgreSQL refuses
# to run as root.
as() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

free_port() {
	local p
	for p in $(seq 55432 55631); do
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
	done
	echo "no free port in 55432-55631" >&2
	exit 1
}

[ $# -ge 2 ] || usage
cmd=$1 dir=$2
bin=$(bindir)
case $cmd in
start)
	port=${3:-$(free_port)}
	mkdir -p "$dir"
	if [ "$(id -u)" -eq 0 ]; then
		id postgres >/dev/null 2>&1 ||
			useradd --system --no-create-home --shell /usr/sbin/nologin postgres
		chown postgres: "$dir"
	fi
	dir=$(cd "$dir" && pwd)
	as "$bin/initdb" -D "$dir/data" -U mayfly --auth=trust --encoding=UTF8 >"$dir/initdb.log" 2>&1 ||
		{ cat "$dir/initdb.log" >&2; exit 1; }
	as "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
		-o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null ||
		{ cat "$dir/postgres.log" >&2; exit 1; }
	echo "postgres://mayfly@127.0.0.1:$port/postgres?sslmode=disable"
	;;
stop)
	if [ -f "$dir/data/postmaster.pid" ]; then
		as "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
	fi
	rm -rf "$dir"
	;;
*) usage ;;
esac
