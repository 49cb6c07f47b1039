#!/usr/bin/env bash
# spec/install/api.sh - the public C surface: every public header compiles
# on its own as C11 and as C++ (g++ -Wall -Wextra -Werror), users of
# layerup.h see no core internals (driver vtables, refcounts, growable
# buffers), liblayerup.so exports exactly the functions the headers declare
# with LUP_API (and core.so only luaopen_layerup_core), and the README's C
# quick start is a complete program that builds and runs.
. "$(dirname "$0")/lib.sh"

INC=$ROOT/include
HDRS=$(cd "$INC" && find . -name '*.h' | sed 's|^\./||' | sort)

each_header_compiles() { # COMPILER LANG FLAGS...
	local cc=$1 lang=$2 h
	shift 2
	for h in $HDRS; do
		printf '#include "%s"\n#include "%s"\nextern int tu_not_empty;\n' "$h" "$h" |
			"$cc" -x "$lang" "$@" -I"$INC" -fsyntax-only - || { echo "in $h"; return 1; }
	done
}
ok "each public header compiles alone as C11 (twice: include guards)" \
	each_header_compiles cc c -std=c11 -Wall -Wextra -Wpedantic -Werror
ok "each public header compiles alone as C++ (g++ -Wall -Wextra -Werror)" \
	each_header_compiles g++ c++ -std=c++11 -Wall -Wextra -Wpedantic -Werror

all_in_cxx() {
	{
		for h in $HDRS; do printf '#include "%s"\n' "$h"; done
		cat <<'CXX'
#include <cstdio>
int main()
{
	lup_error err;
	lup_store_options o = LUP_STORE_OPTIONS_INIT;
	lup_fs_options fo = LUP_FS_OPTIONS_INIT;
	lup_driver *d = nullptr;
	lup_store *s = nullptr;

	lup_error_clear(&err);
	if (lup_driver_memory(&d, &err) != 0 || lup_store_open(&s, d, &o, &err) != 0)
		return 1;
	std::printf("%s %u %u\n", lup_driver_name(d), o.version, fo.version);
	lup_store_release(s);
	lup_driver_release(d);
	return 0;
}
CXX
	} >"$TMP/all.cc"
	g++ -std=c++11 -Wall -Wextra -Werror -I"$INC" -o "$TMP/all" "$TMP/all.cc" \
		"$BUILD/liblayerup.a" -lcrypto -luuid -lpthread && "$TMP/all"
}
ok "a C++ program including every public header builds and runs" all_in_cxx

# Users of layerup.h alone: the handles are opaque.
must_not_compile() { # CODE
	printf '#include "layerup.h"\nint f(void);\nint f(void) { %s }\n' "$1" >"$TMP/opaque.c"
	if cc -std=c11 -I"$INC" -fsyntax-only "$TMP/opaque.c" 2>/dev/null; then
		echo "compiled with layerup.h only: $1"
		return 1
	fi
}
ok "layerup.h: lup_driver is opaque (no vtable, no refcount)" \
	must_not_compile 'return (int)sizeof(struct lup_driver);'
ok "layerup.h: lup_reader is opaque" \
	must_not_compile 'return (int)sizeof(struct lup_reader);'
ok "layerup.h: no growable buffer type (lup_buf) or driver wrappers" \
	must_not_compile 'lup_buf b = {0}; return lup_driver_get_content(0, "/", &b, 0);'
ok "layerup/sys/driver.h: the driver author's view compiles" sh -c "
	printf '#include \"layerup/sys/driver.h\"\nint f(void);\nint f(void) { lup_buf b = {0}; return (int)sizeof(struct lup_driver) + (int)b.len; }\n' |
	cc -std=c11 -Wall -Werror -I'$INC' -fsyntax-only -x c -"

# The functions the headers declare with LUP_API, one per line.
declared() {
	cat "$INC"/layerup.h "$INC"/layerup/*.h "$INC"/layerup/sys/*.h |
		sed -n 's/^LUP_API .*[^a-z0-9_]\(lup_[a-z0-9_]*\)(.*/\1/p' | sort -u
}
# A function declared at column 0 without LUP_API would not be exported.
unmarked() {
	local bad
	bad=$(cat "$INC"/layerup.h "$INC"/layerup/*.h "$INC"/layerup/sys/*.h |
		grep -E '^[a-z][a-z0-9_ ]*[ *]lup_[a-z0-9_]+\(' | grep -v '^LUP_API' | grep -v '^typedef')
	[ -z "$bad" ] || { echo "declared without LUP_API:"; echo "$bad"; return 1; }
}
ok "every function in the public headers is marked LUP_API" unmarked

exports_match() {
	nm -D --defined-only "$BUILD/liblayerup.so" | awk '$2 ~ /^[TtWw]$/ { print $3 }' |
		sort -u >"$TMP/exported"
	declared >"$TMP/declared"
	[ -s "$TMP/declared" ] || { echo "no LUP_API declarations found"; return 1; }
	diff "$TMP/declared" "$TMP/exported" >"$TMP/diff" ||
		{ echo "< declared only, > exported only:"; cat "$TMP/diff"; return 1; }
	# No data symbols either.
	if nm -D --defined-only "$BUILD/liblayerup.so" | awk '$2 !~ /^[TtWw]$/ { print }' | grep -q .; then
		nm -D --defined-only "$BUILD/liblayerup.so" | awk '$2 !~ /^[TtWw]$/'
		return 1
	fi
}
ok "liblayerup.so exports exactly the LUP_API functions ($(declared | wc -l))" exports_match

core_exports() {
	local got
	got=$(nm -D --defined-only "$BUILD/layerup/core.so" | awk '{ print $3 }')
	[ "$got" = luaopen_layerup_core ] || { echo "core.so exports: $got"; return 1; }
}
ok "layerup/core.so exports only luaopen_layerup_core" core_exports

# The README's "Quick start (C)" block is a whole program.
readme_c() {
	awk '/^## Quick start \(C\)/ { sec = 1; next }
	     /^## / { sec = 0 }
	     sec && /^```c$/ { code = 1; next }
	     code && /^```$/ { exit }
	     code { print }' "$ROOT/README.md" >"$TMP/readme.c"
	[ -s "$TMP/readme.c" ] || { echo "no C block under 'Quick start (C)'"; return 1; }
	cc -std=c11 -Wall -Wextra -Werror -I"$INC" -o "$TMP/readme" "$TMP/readme.c" \
		"$BUILD/liblayerup.a" -lcrypto -luuid -lpthread || return 1
	mkdir -p "$TMP/readme-run" && cd "$TMP/readme-run" && "$TMP/readme"
}
ok "README's C quick start compiles (-Wall -Wextra -Werror) and runs" readme_c

done_testing
