# spec/install/lib.sh - TAP helpers for the install tests (sourced).
#
# Each spec/install/*.sh prints a TAP plan and one result per check; spec/run
# runs them like the other suites.  They install into temporary directories
# only, from the build in $BUILD (made by `make` before spec/run).
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$ROOT/build}
LUA=${LUA:-lua5.4}
# Nested make must not inherit the outer make's jobserver.
unset MAKEFLAGS MAKELEVEL MFLAGS
T_N=0
T_FAIL=0
TMP=$(mktemp -d "${TMPDIR:-/tmp}/layerup-install.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT

# ok DESCRIPTION COMMAND...: one TAP result; the command's output is shown
# (as comments) when it fails.
ok() {
	local desc=$1 out rc
	shift
	T_N=$((T_N + 1))
	out=$("$@" 2>&1)
	rc=$?
	if [ "$rc" -eq 0 ]; then
		echo "ok $T_N - $desc"
	else
		T_FAIL=$((T_FAIL + 1))
		echo "not ok $T_N - $desc (exit status $rc)"
		printf '%s\n' "$out" | tail -n 40 | sed 's/^/# /'
	fi
	return "$rc"
}

# skip_all REASON: the whole file is skipped (TAP "1..0 # SKIP").
skip_all() {
	echo "1..0 # SKIP $1"
	exit 0
}

done_testing() {
	echo "1..$T_N"
	[ "$T_FAIL" -eq 0 ]
}

# The install tests check packaging, not memory safety: an ASan build's
# libraries need the sanitizer runtime in every program that loads them.
if [ "${SANITIZE:-0}" = 1 ]; then
	skip_all "packaging is tested by make test (this is a sanitizer build)"
fi
