#!/usr/bin/env bash
# bench/fsync-stall.sh [SIZE_MIB] [RATE] - the event-loop stall of an
# fsync'd PATCH in the nginx host, with and without the thread pool
# (README "What runs in threads").  For each of threads=false and
# threads=true: `layerup serve` with one worker and `fsync = true` on
# 127.0.0.1 at a free port, a PATCH of SIZE_MIB (default 256) random MiB sent
# at RATE (curl --limit-rate, default 150M: slower than writeback, so the
# data is still dirty when the close syncs it), then PUT; meanwhile
# `GET /v2/` on a new connection every ~10 ms to the same worker.  Prints
# p50/p99/max of the probes.  Not part of `make bench` (a minute of disk).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SIZE=${1:-256}
RATE=${2:-150M}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/layerup-stall.XXXXXX") || exit 1
SERVE=
cleanup() {
	[ -n "$SERVE" ] && kill -TERM "$SERVE" 2>/dev/null && wait "$SERVE" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT

# free_port (and the rest of the bench's shell helpers, side-effect free
# when sourced).
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

head -c $((SIZE * 1048576)) /dev/urandom >"$TMP/blob"
DIGEST="sha256:$(sha256sum "$TMP/blob" | cut -d' ' -f1)"

one() { # THREADS
	local d=$TMP/run-$1 port loc i
	mkdir -p "$d"
	echo "return { fsync = true, threads = $1 }" >"$d/conf.lua"
	port=$(free_port) || { echo "no free port" >&2; return 1; }
	"$ROOT/bin/layerup" serve "$d/root" --listen "127.0.0.1:$port" --workers 1 \
		--config "$d/conf.lua" --prefix "$d/prefix" >"$d/serve.log" 2>&1 </dev/null &
	SERVE=$!
	for i in $(seq 1 150); do
		grep -q "layerup: serving" "$d/serve.log" && break
		sleep 0.1
	done
	loc=$(curl -s -D - -o /dev/null -X POST "http://127.0.0.1:$port/v2/bench/stall/blobs/uploads/" |
		tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
	(while [ ! -e "$d/done" ]; do
		curl -s -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$port/v2/" >>"$d/probe"
		sleep 0.01
	done) &
	local probe=$!
	sleep 0.3
	curl -s -o /dev/null --limit-rate "$RATE" -X PATCH -H 'Content-Type: application/octet-stream' \
		--data-binary @"$TMP/blob" "http://127.0.0.1:$port$loc"
	curl -s -o /dev/null -X PUT "http://127.0.0.1:$port$loc?digest=$DIGEST"
	sleep 0.3
	touch "$d/done"
	wait "$probe"
	sort -n "$d/probe" | awk -v t="$1" '{a[NR]=$1} END {
		printf "threads=%-5s probes %3d  p50 %6.1f ms  p99 %6.1f ms  max %6.1f ms\n",
			t, NR, a[int(NR*0.5)]*1000, a[int(NR*0.99)]*1000, a[NR]*1000 }'
	kill -TERM "$SERVE" 2>/dev/null
	wait "$SERVE" 2>/dev/null
	SERVE=
}

one false
one true
