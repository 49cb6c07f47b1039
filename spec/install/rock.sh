#!/usr/bin/env bash
# spec/install/rock.sh - the LuaRocks rockspec: `luarocks make` from (a copy
# of) the checkout into a temporary tree builds layerup.core against the
# system's OpenSSL and libuuid and installs the modules and the command;
# the rock then loads and uploads with the tree's paths only.
. "$(dirname "$0")/lib.sh"

command -v luarocks >/dev/null 2>&1 ||
	skip_all "luarocks is not installed (Debian package luarocks; make deps installs it)"

SRC=$TMP/src
TREE=$TMP/tree
ROCKSPEC=$(cd "$ROOT" && ls layerup-*.rockspec | head -n 1)

copy_checkout() {
	mkdir -p "$SRC" &&
		(cd "$ROOT" && cp -r Makefile layerup.pc.in "$ROCKSPEC" include src lua bin "$SRC/")
}
ok "copy the checkout's sources" copy_checkout

# Debian's lua-cjson and lua-cliargs are not in LuaRocks' manifests (and
# there is no network): dependencies are not resolved here.
build_rock() {
	cd "$SRC" && luarocks --lua-version 5.4 make --tree "$TREE" --deps-mode none "$ROCKSPEC"
}
ok "luarocks make --tree TMP $ROCKSPEC" build_rock

# The tree's paths, as `luarocks path` prints them, plus the system's.
tree_env() {
	local lp lcp
	lp=$(luarocks --lua-version 5.4 --tree "$TREE" path --lr-path) || return 1
	lcp=$(luarocks --lua-version 5.4 --tree "$TREE" path --lr-cpath) || return 1
	env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 \
		LUA_PATH="$lp;/usr/share/lua/5.4/?.lua;/usr/share/lua/5.4/?/init.lua" \
		LUA_CPATH="$lcp;/usr/lib/x86_64-linux-gnu/lua/5.4/?.so" "$@"
}

cat >"$TMP/rock.lua" <<'LUA'
local tree, root = arg[1], arg[2]
local layerup = require "layerup"
local core = package.searchpath("layerup.core", package.cpath)
assert(core and core:find(tree, 1, true) == 1, "core.so not from the tree: " .. tostring(core))
local store = assert(layerup.open(root))
local up = assert(store:start("rock/check"))
assert(up:write("from the rock"))
assert(up:finish(layerup.hasher():update("from the rock"):digest()))
print(layerup._VERSION)
LUA
load_rock() {
	cd "$TMP" && tree_env "$LUA" "$TMP/rock.lua" "$TREE" "$TMP/store"
}
ok "require \"layerup\" from the rock tree and one upload" load_rock

# A tree outside LuaRocks' configuration is used through `luarocks path`.
rock_cli() {
	cd "$TMP" && printf 'pushed by the rock\n' >"$TMP/blob.txt" &&
		tree_env "$TREE/bin/layerup" push "$TMP/cli-store" rock/cli "$TMP/blob.txt"
}
ok "the rock's layerup command pushes a file" rock_cli

done_testing
