#!/usr/bin/env bash
# spec/install/serve.sh - `layerup serve` from an installed layout: `make
# install PREFIX=DIR`, then the installed command (no LUA_PATH, no BUILD,
# run outside the checkout) starts nginx on a free 127.0.0.1 port with the
# installed Lua modules and the installed LuaJIT build of layerup.core; a
# blob is pushed with curl (POST + PUT) and read back; SIGTERM to the
# command's PID stops the nginx master and its workers.
. "$(dirname "$0")/lib.sh"

if ! command -v nginx >/dev/null 2>&1; then
	skip_all "nginx not installed (Debian: nginx)"
fi
if [ ! -f /usr/lib/nginx/modules/ngx_http_lua_module.so ]; then
	skip_all "the nginx Lua module is not installed (Debian: libnginx-mod-http-lua)"
fi
command -v curl >/dev/null 2>&1 || skip_all "curl not installed"

P=$TMP/prefix
cd "$TMP" || exit 1

ok "make install PREFIX=$P" make -s -C "$ROOT" BUILD="$BUILD" PREFIX="$P" install
ok "the LuaJIT build of layerup.core is installed in PREFIX/lib/lua/5.1" \
	test -f "$P/lib/lua/5.1/layerup/core.so"

# A port nothing answers on (curl exit 7: could not connect).
free_port() {
	local port i
	for i in $(seq 1 100); do
		port=$((20000 + RANDOM % 40000))
		curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/" 2>/dev/null
		[ $? -eq 7 ] && { echo "$port"; return 0; }
	done
	return 1
}

PORT=$(free_port) || { echo "Bail out! no free port"; exit 1; }
STORE=$TMP/store
NPREFIX=$TMP/nginx
env -u LUA_PATH -u LUA_CPATH -u LUA_PATH_5_4 -u LUA_CPATH_5_4 -u BUILD \
	"$P/bin/layerup" serve "$STORE" --listen "127.0.0.1:$PORT" --workers 2 --prefix "$NPREFIX" \
	>"$TMP/serve.log" 2>&1 </dev/null &
SERVE=$!

up() {
	local i
	for i in $(seq 1 100); do
		grep -q "layerup: serving" "$TMP/serve.log" && return 0
		kill -0 "$SERVE" 2>/dev/null || break
		sleep 0.1
	done
	cat "$TMP/serve.log" "$NPREFIX/error.log" 2>/dev/null
	return 1
}
ok "the installed layerup serve answers on 127.0.0.1:$PORT" up
MASTER=$(cat "$NPREFIX/nginx.pid" 2>/dev/null)
WORKERS=$(cat "/proc/$MASTER/task/"*/children 2>/dev/null)

uses_installed() {
	grep -q "lua_package_path '$P/share/lua/5.4/" "$NPREFIX/nginx.conf" &&
		grep -q "lua_package_cpath '$P/lib/lua/5.1/" "$NPREFIX/nginx.conf" &&
		! grep -q "$ROOT" "$NPREFIX/nginx.conf" || { cat "$NPREFIX/nginx.conf"; return 1; }
}
ok "nginx runs the installed modules, nothing from the checkout" uses_installed

push_and_get() {
	local base="http://127.0.0.1:$PORT" loc dg code
	head -c 200000 /dev/urandom >"$TMP/blob"
	dg="sha256:$(sha256sum "$TMP/blob" | cut -d' ' -f1)"
	loc=$(curl -sS -X POST -D - -o /dev/null "$base/v2/install/serve/blobs/uploads/" |
		tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
	[ -n "$loc" ] || { echo "POST gave no Location"; return 1; }
	code=$(curl -sS -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Type: application/octet-stream' \
		--data-binary @"$TMP/blob" "$base$loc?digest=$dg")
	[ "$code" = 201 ] || { echo "PUT gave $code"; return 1; }
	curl -sS -o "$TMP/back" "$base/v2/install/serve/blobs/$dg" || return 1
	cmp "$TMP/blob" "$TMP/back"
}
ok "POST + PUT a blob with curl, GET gives the same bytes" push_and_get

stop() {
	local i pid
	kill -TERM "$SERVE"
	for i in $(seq 1 100); do
		kill -0 "$SERVE" 2>/dev/null || break
		sleep 0.1
	done
	wait "$SERVE" 2>/dev/null
	for pid in $MASTER $WORKERS; do
		for i in $(seq 1 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			echo "nginx process $pid still running"
			kill -KILL "$pid" 2>/dev/null
			return 1
		fi
	done
	[ -n "$MASTER" ] && [ -n "$WORKERS" ] || { echo "no master/worker pids seen"; return 1; }
}
ok "SIGTERM to layerup serve stops the nginx master and its workers" stop

ok "make uninstall PREFIX=$P" make -s -C "$ROOT" BUILD="$BUILD" PREFIX="$P" uninstall
ok "uninstall leaves no file behind" sh -c "[ -z \"\$(find '$P' -type f -o -type l)\" ]"

done_testing
