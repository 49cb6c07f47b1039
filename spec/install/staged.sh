#!/usr/bin/env bash
# spec/install/staged.sh - `make install DESTDIR=...` as a packager runs it:
# the files land under the default prefix inside DESTDIR (versioned shared
# library with its SONAME, static library, both header tiers, layerup.pc,
# the Lua modules, the command); examples/upload.c builds with nothing but
# `pkg-config --cflags --libs layerup` and runs against the staged library;
# `make uninstall` removes every file again.
. "$(dirname "$0")/lib.sh"

STAGE=$TMP/stage
P=/usr/local
V=$(sed -n 's/^#define LUP_VERSION_STRING "\(.*\)"/\1/p' "$ROOT/include/layerup.h")

ok "make install DESTDIR=... (default PREFIX $P)" \
	make -s -C "$ROOT" BUILD="$BUILD" DESTDIR="$STAGE" install

check_layout() {
	local lib=$STAGE$P/lib f
	for f in "$lib/liblayerup.so.$V" "$lib/liblayerup.a" \
		"$STAGE$P/include/layerup.h" "$STAGE$P/include/layerup/driver.h" \
		"$STAGE$P/include/layerup/error.h" "$STAGE$P/include/layerup/hash.h" \
		"$STAGE$P/include/layerup/common.h" \
		"$STAGE$P/include/layerup/sys/driver.h" \
		"$lib/pkgconfig/layerup.pc" "$STAGE$P/lib/lua/5.4/layerup/core.so" \
		"$STAGE$P/bin/layerup"; do
		[ -f "$f" ] || { echo "missing $f"; return 1; }
	done
	[ "$(readlink "$lib/liblayerup.so.0")" = "liblayerup.so.$V" ] || { echo "bad liblayerup.so.0 link"; return 1; }
	[ "$(readlink "$lib/liblayerup.so")" = "liblayerup.so.0" ] || { echo "bad liblayerup.so link"; return 1; }
	[ -x "$STAGE$P/bin/layerup" ] || { echo "layerup is not executable"; return 1; }
	# Every public header, both tiers.
	(cd "$ROOT/include" && find . -name '*.h') | while read -r h; do
		cmp -s "$ROOT/include/$h" "$STAGE$P/include/$h" || { echo "header $h not installed"; exit 1; }
	done || return 1
	# Every Lua module of the checkout, policies and middleware included.
	(cd "$ROOT/lua" && find layerup -name '*.lua') | while read -r m; do
		cmp -s "$ROOT/lua/$m" "$STAGE$P/share/lua/5.4/$m" || { echo "module $m not installed"; exit 1; }
	done
}
ok "files, versioned names and symlinks under DESTDIR" check_layout

ok "liblayerup.so carries SONAME liblayerup.so.0" \
	sh -c "readelf -d '$STAGE$P/lib/liblayerup.so.$V' | grep -q 'SONAME.*\[liblayerup.so.0\]'"

ok "the command knows its installed module directories" \
	grep -q "^local INSTALLED_LUADIR, INSTALLED_LIBDIR = \"$P/share/lua/5.4\", \"$P/lib/lua/5.4\"$" "$STAGE$P/bin/layerup"

# pkg-config relocates the staged .pc's paths with the sysroot.
pc() {
	PKG_CONFIG_PATH="$STAGE$P/lib/pkgconfig" \
		PKG_CONFIG_SYSROOT_DIR="$STAGE" pkg-config "$@"
}
ok "pkg-config --modversion layerup is $V" sh -c "[ \"\$(PKG_CONFIG_PATH='$STAGE$P/lib/pkgconfig' pkg-config --modversion layerup)\" = '$V' ]"

build_example() {
	# shellcheck disable=SC2046 # word splitting of pkg-config output is wanted
	cc -std=c11 -Wall -Wextra -Werror -o "$TMP/upload" "$ROOT/examples/upload.c" \
		$(pc --cflags --libs layerup)
}
ok "examples/upload.c builds with only pkg-config --cflags --libs layerup" build_example

run_example() {
	# The checkout's build directory must play no part.
	ldd "$TMP/upload" | grep -q "liblayerup.so.0 => $STAGE$P/lib/liblayerup.so.0" || {
		ldd "$TMP/upload"; return 1; }
	"$TMP/upload"
}
export LD_LIBRARY_PATH="$STAGE$P/lib"
ok "and runs against the installed liblayerup.so.0" run_example
unset LD_LIBRARY_PATH

build_static() {
	# liblayerup.a itself, with its dependencies as layerup.pc names them
	# (Requires.private: their shared libraries).
	local deps
	deps=$(pc --print-requires-private layerup | awk '{ print $1 }') || return 1
	# shellcheck disable=SC2046,SC2086
	cc -std=c11 -o "$TMP/upload-static" "$ROOT/examples/upload.c" \
		$(pc --cflags layerup) "$STAGE$P/lib/liblayerup.a" \
		$(pkg-config --libs $deps) $(pc --libs-only-l --static layerup | tr ' ' '\n' | grep -x -e -lpthread) &&
		"$TMP/upload-static"
}
ok "examples/upload.c links liblayerup.a with the dependencies layerup.pc names" build_static

ok "make uninstall DESTDIR=..." \
	make -s -C "$ROOT" BUILD="$BUILD" DESTDIR="$STAGE" uninstall

no_files_left() {
	local left
	left=$(find "$STAGE" -type f -o -type l)
	[ -z "$left" ] || { echo "left behind:"; echo "$left"; return 1; }
}
ok "uninstall leaves no file behind" no_files_left

done_testing
