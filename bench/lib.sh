# bench/lib.sh - shell helpers sourced by bench/run: timing, recording of
# raw measurements, the tiny Lua clock module, and the lifecycle of the
# reference registry (Debian docker-registry 2.8) on 127.0.0.1.
#
# Expects from the caller: WORK (scratch dir), RAW (raw.tsv path).

# Microseconds since the epoch, without a fork (bash >= 5).
now_us() { local t=$EPOCHREALTIME; printf '%s' "${t/./}"; }

# record WORKLOAD CONTENDER METRIC VALUE  (one raw sample of repetition $REP)
REP=0
record() {
	printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$REP" >>"$RAW"
}

# record_kv WORKLOAD CONTENDER < "metric value" lines (from a Lua worker)
record_kv() {
	local w=$1 c=$2 k v
	while read -r k v; do
		[ -n "$k" ] && record "$w" "$c" "$k" "$v"
	done
}

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

# Integer arithmetic helpers through awk (bash has no floats).
us_to_s() { awk -v u="$1" 'BEGIN { printf "%.6f", u / 1e6 }'; }
mbps() { awk -v b="$1" -v u="$2" 'BEGIN { printf "%.3f", (b / 1e6) / (u / 1e6) }'; }

# Flush dirty pages so one measurement's writeback does not land in the next.
settle() { sync; }

# settle_rm PATH...: flush, then delete (the pages freed here are the ones
# the next measurement writes into; see README, "Noise").
settle_rm() { sync; rm -rf "$@"; }

# Read a file once so it is in the page cache.
warm() { cat "$@" >/dev/null; }

# The Lua workers need a wall clock finer than os.time(); Lua 5.4 has none
# and Debian ships no lua-posix for 5.4, so build a 20-line module.
build_clock() {
	local out=$1/benchclock.so src=$1/benchclock.c
	cat >"$src" <<'EOF'
/* benchclock - monotonic wall clock and CPU times for bench/*.lua. */
#define _GNU_SOURCE
#include <time.h>
#include <sys/resource.h>
#include <lua.h>
#include <lauxlib.h>

static int l_now(lua_State *L)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	lua_pushnumber(L, (double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
	return 1;
}

static int l_cpu(lua_State *L)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	lua_pushnumber(L, ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6);
	lua_pushnumber(L, ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
	return 2;
}

int luaopen_benchclock(lua_State *L)
{
	lua_newtable(L);
	lua_pushcfunction(L, l_now);
	lua_setfield(L, -2, "now");
	lua_pushcfunction(L, l_cpu);
	lua_setfield(L, -2, "cpu");
	return 1;
}
EOF
	${CC:-cc} -std=c11 -O2 -fPIC -shared ${LUA_INC:--I/usr/include/lua5.4} \
		-o "$out" "$src" || die "cannot build $out (cc and Lua 5.4 headers needed)"
}

# ---------------------------------------------------------------- registry

# A TCP port nobody listens on (checked with ss; the registry fails fast if
# it raced, and we retry).
free_port() {
	local p used
	used=$(ss -Hltn 2>/dev/null | awk '{print $4}' | sed 's/.*://')
	for _ in $(seq 1 50); do
		p=$((20000 + RANDOM % 40000))
		if ! grep -qx "$p" <<<"$used"; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

REG_PID=
REG_BASE=

# registry_start DIR: config in DIR/registry.yml, root in DIR/registry-root.
registry_start() {
	local dir=$1 port tries
	mkdir -p "$dir/registry-root"
	for tries in 1 2 3; do
		port=$(free_port) || die "no free port"
		cat >"$dir/registry.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/registry-root
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$port
  secret: layerup-bench-fixed-http-secret
EOF
		docker-registry serve "$dir/registry.yml" >>"$dir/registry.log" 2>&1 &
		REG_PID=$!
		REG_BASE="http://127.0.0.1:$port"
		for _ in $(seq 1 100); do
			if curl -fsS -o /dev/null "$REG_BASE/v2/" 2>/dev/null; then
				log "registry pid $REG_PID on $REG_BASE"
				return 0
			fi
			kill -0 "$REG_PID" 2>/dev/null || break
			sleep 0.1
		done
		registry_stop
	done
	die "docker-registry did not start (see $dir/registry.log)"
}

registry_stop() {
	if [ -n "$REG_PID" ]; then
		# (|| true: a registry that died at start, e.g. on a port taken
		# meanwhile, is reaped already, and set -e would end the run
		# silently instead of trying the next port)
		kill "$REG_PID" 2>/dev/null || true
		wait "$REG_PID" 2>/dev/null || true
		REG_PID=
	fi
}

# CPU seconds (user+system) the registry has used so far.
registry_cpu() {
	awk -v hz="$(getconf CLK_TCK)" '{ printf "%.3f", ($14 + $15) / hz }' \
		"/proc/$REG_PID/stat"
}

# Bytes the registry has read through read(2) and friends (all fds,
# sockets included) so far.
registry_rchar() { awk '$1 == "rchar:" { print $2 }' "/proc/$REG_PID/io"; }

# An absolute URL from a Location header (2.8 sends absolute URLs; accept
# relative ones too).
abs_url() {
	case $1 in
	http://* | https://*) printf '%s' "$1" ;;
	*) printf '%s%s' "$REG_BASE" "$1" ;;
	esac
}

# reg_post REPO -> Location of a new upload
reg_post() {
	local loc
	loc=$(curl -fsS -o /dev/null -w '%header{location}' -X POST \
		"$REG_BASE/v2/$1/blobs/uploads/") || return 1
	abs_url "$loc"
}

# reg_patch URL FILE -> next Location
reg_patch() {
	local loc
	loc=$(curl -fsS -o /dev/null -w '%header{location}' -X PATCH \
		-H 'Content-Type: application/octet-stream' -H 'Expect:' \
		--data-binary @"$2" "$1") || return 1
	abs_url "$loc"
}

# reg_put URL DIGEST -> HTTP status (201 expected)
reg_put() {
	local sep='?'
	case $1 in *\?*) sep='&' ;; esac
	curl -sS -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Length: 0' \
		"$1${sep}digest=$2"
}
