#!/usr/bin/env bash
# spec/install/prefix.sh - `make install PREFIX=DIR` and the LuaRocks-style
# LUADIR/LIBDIR overrides: `require "layerup"` plus one upload with only the
# installed directories (and the system's, for lua-cjson and lua-cliargs)
# on package.path/cpath, and the installed `layerup` command pushing a file
# from its installed location, outside the checkout.
. "$(dirname "$0")/lib.sh"

P=$TMP/prefix
# The system's Lua directories (Debian's lua-cjson, lua-cliargs), but none
# of /usr/local (an older layerup installed there must not count).
SYS_PATH="/usr/share/lua/5.4/?.lua;/usr/share/lua/5.4/?/init.lua"
SYS_CPATH="/usr/lib/x86_64-linux-gnu/lua/5.4/?.so;/usr/lib/lua/5.4/?.so"
cd "$TMP" || exit 1

ok "make install PREFIX=$P" make -s -C "$ROOT" BUILD="$BUILD" PREFIX="$P" install

# One upload through the installed module; prints where the modules came from.
cat >"$TMP/one.lua" <<'LUA'
local layerup = require "layerup"
local root = arg[1]
local store = assert(layerup.open(root))
local data = ("installed\n"):rep(1000)
local up = assert(store:start("install/check"))
assert(up:write(data))
local blob = assert(up:finish(layerup.hasher():update(data):digest()))
assert(blob.size == #data)
print(package.searchpath("layerup", package.path))
print(package.searchpath("layerup.core", package.cpath))
LUA

lua_from() { # LUADIR LIBDIR
	env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 \
		LUA_PATH="$1/?.lua;$1/?/init.lua;$SYS_PATH" LUA_CPATH="$2/?.so;$SYS_CPATH" \
		"$LUA" "$TMP/one.lua" "$TMP/store-$RANDOM" >"$TMP/where" || return 1
	grep -q "^$1/layerup/init.lua$" "$TMP/where" && grep -q "^$2/layerup/core.so$" "$TMP/where" ||
		{ cat "$TMP/where"; return 1; }
}
ok "require \"layerup\" and one upload from PREFIX/share/lua/5.4 + PREFIX/lib/lua/5.4 only" \
	lua_from "$P/share/lua/5.4" "$P/lib/lua/5.4"

# The command: no LUA_PATH/LUA_CPATH, not run from the checkout.
cli() {
	env -u LUA_PATH -u LUA_CPATH -u LUA_PATH_5_4 -u LUA_CPATH_5_4 "$@"
}
cli_push() { # BINDIR
	local store=$TMP/cli-$RANDOM
	printf 'hello from the installed command\n' >"$TMP/blob.txt"
	cli "$1/layerup" push "$store" install/cli "$TMP/blob.txt" || return 1
	cli "$1/layerup" stat "$store" \
		"sha256:$(sha256sum "$TMP/blob.txt" | cut -d' ' -f1)" install/cli
}
ok "the installed layerup command pushes a file (no LUA_PATH, outside the checkout)" cli_push "$P/bin"

ok "make uninstall PREFIX=$P" make -s -C "$ROOT" BUILD="$BUILD" PREFIX="$P" uninstall
ok "uninstall leaves no file behind" sh -c "[ -z \"\$(find '$P' -type f -o -type l)\" ]"

# LuaRocks naming: LUADIR for the .lua modules, LIBDIR for the C module.
L=$TMP/alt/lua M=$TMP/alt/clua B=$TMP/alt/bin
ok "make install-lua LUADIR=... LIBDIR=... BINDIR=..." \
	make -s -C "$ROOT" BUILD="$BUILD" PREFIX="$TMP/unused" LUADIR="$L" LIBDIR="$M" BINDIR="$B" install-lua
ok "require \"layerup\" from the overridden LUADIR and LIBDIR" lua_from "$L" "$M"
ok "the command finds its modules in the overridden directories" cli_push "$B"
ok "nothing went to PREFIX" sh -c "[ ! -e '$TMP/unused' ]"

done_testing
