-- layerup.serve - `layerup serve ROOT [--listen 127.0.0.1:PORT] [--workers N]
-- [--config FILE.lua] [--log-level LEVEL] [--access-log] [--http2 ADDR:PORT]
-- [--tls-cert FILE --tls-key FILE]`: runs nginx in the
-- foreground with a generated configuration under a private prefix (its
-- own pid file, temp paths and logs), serving the OCI distribution API on
-- ROOT through layerup.host.nginx.  Prints the URL once /v2/ answers;
-- SIGTERM/SIGINT (or this process dying) stops master and workers.
-- Runs on lua5.4 (the CLI); nginx runs the LuaJIT build of the module.

local M = {}

local function q(s)
	return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function capture(cmd)
	local p = io.popen(cmd .. " 2>/dev/null")
	if not p then return nil end
	local out = p:read("*a")
	p:close()
	return (out:gsub("%s+$", ""))
end

local function exists(path)
	local f = io.open(path, "rb")
	if f then f:close() return true end
	return false
end

M.USAGE = [[
usage: layerup serve ROOT [--listen 127.0.0.1:PORT] [--workers N] [--config FILE.lua]
                          [--log-level debug|info|notice|warn|error] [--access-log] [--http2 ADDR:PORT]
                          [--tls-cert FILE --tls-key FILE]
Serves the OCI distribution API (/v2/) on the layerup store at ROOT with nginx.
  --listen     address:port to listen on (default 127.0.0.1:5000)
  --workers    nginx worker processes (default 2)
  --config     a Lua file returning the policy table (see README "nginx / OpenResty")
  --log-level  error log level (default warn); engine events are logged at info
  --access-log write an access log under the private prefix
  --prefix     use this directory for nginx's files (kept afterwards)
  --read-timeout seconds a stalled client may stay silent mid-body (default 60)
  --http2      also listen on ADDR:PORT for HTTP/2 (h2c: cleartext, prior knowledge;
               nginx 1.22 cannot serve both on one cleartext port); HTTP/2 request
               bodies are spooled to a temp file by nginx first
  --tls-cert   PEM certificate (chain) for HTTPS on --listen; with --tls-key
  --tls-key    its PEM private key, unencrypted, read by the nginx master (as
               root: before it drops privileges; the workers never need it).
               The listener then speaks TLS only, HTTP/1.1 and HTTP/2 (ALPN h2)
Needs nginx and libnginx-mod-http-lua (Debian), and `make` (build/luajit/).]]

-- Characters a file name written into nginx.conf (double-quoted) must not
-- have: "$" starts a variable (nginx would then load a certificate per
-- handshake), quotes and backslashes escape, the rest ends the directive.
local NGX_UNSAFE = "[%c\\\"'$;{}]"

function M.parse(argv)
	local o = { listen = "127.0.0.1:5000", workers = 2, log_level = "warn" }
	local i = 1
	while i <= #argv do
		local a = argv[i]
		local function val()
			i = i + 1
			if argv[i] == nil then error(a .. " needs a value", 0) end
			return argv[i]
		end
		if a == "--listen" then o.listen = val()
		elseif a == "--workers" then o.workers = tonumber(val())
		elseif a == "--config" then o.config = val()
		elseif a == "--log-level" then o.log_level = val()
		elseif a == "--access-log" then o.access_log = true
		elseif a == "--http2" then o.http2 = val()
		elseif a == "--tls-cert" then o.tls_cert = val()
		elseif a == "--tls-key" then o.tls_key = val()
		elseif a == "--prefix" then o.prefix = val()
		elseif a == "--read-timeout" then o.read_timeout = tonumber(val())
		elseif a == "-h" or a == "--help" then o.help = true
		elseif a:sub(1, 1) == "-" then error("unknown option " .. a, 0)
		elseif not o.root then o.root = a
		else error("unexpected argument " .. a, 0) end
		i = i + 1
	end
	if o.help then return o end
	if not o.root then error("ROOT is required", 0) end
	if not o.workers or o.workers < 1 or o.workers ~= math.floor(o.workers) then
		error("--workers must be a positive integer", 0)
	end
	if not o.listen:match("^[%w%.%-%[%]:]+:%d+$") then
		error("--listen must be ADDRESS:PORT", 0)
	end
	if o.http2 and (not o.http2:match("^[%w%.%-%[%]:]+:%d+$") or o.http2 == o.listen) then
		error("--http2 must be ADDRESS:PORT, other than --listen", 0)
	end
	if (o.tls_cert == nil) ~= (o.tls_key == nil) then
		error("--tls-cert and --tls-key go together", 0)
	end
	for _, f in ipairs { { "--tls-cert", o.tls_cert }, { "--tls-key", o.tls_key } } do
		if f[2] and (f[2] == "" or f[2]:find(NGX_UNSAFE)) then
			error(f[1] .. " must be a file name without control characters, quotes, \\, $, ; or braces", 0)
		end
	end
	if not ({ debug = 1, info = 1, notice = 1, warn = 1, error = 1 })[o.log_level] then
		error("--log-level must be debug, info, notice, warn or error", 0)
	end
	return o
end

-- Where nginx's dynamic modules live (Debian).
local MODULE_DIRS = { "/usr/lib/nginx/modules", "/usr/share/nginx/modules" }

local function find_module(name)
	for _, d in ipairs(MODULE_DIRS) do
		if exists(d .. "/" .. name) then return d .. "/" .. name end
	end
	return nil
end

-- The nginx.conf for opts (absolute root, top = the checkout, build dir).
function M.config(o)
	local ndk = find_module("ndk_http_module.so")
	local lua = find_module("ngx_http_lua_module.so")
	local lines = {}
	local function add(fmt, ...) lines[#lines + 1] = fmt:format(...) end
	add("# generated by layerup serve")
	add("daemon off;")
	add("master_process on;")
	add("worker_processes %d;", o.workers)
	add("pid %s/nginx.pid;", o.prefix)
	add("error_log %s/error.log %s;", o.prefix, o.log_level)
	if o.user then add("user %s;", o.user) end
	if ndk then add("load_module %s;", ndk) end
	if lua then add("load_module %s;", lua) end
	add("thread_pool layerup threads=4;")
	add("events { worker_connections 1024; }")
	add("http {")
	add("    default_type application/octet-stream;")
	add(o.access_log and "    access_log %s/access.log;" or "    access_log off;", o.prefix)
	for _, t in ipairs { "client_body", "proxy", "fastcgi", "uwsgi", "scgi" } do
		add("    %s_temp_path %s/tmp/%s;", t, o.prefix, t)
	end
	add("    lua_package_path '%s/?.lua;%s/?/init.lua;;';", o.luadir, o.luadir)
	add("    lua_package_cpath '%s/?.so;;';", o.jitdir)
	add("    lua_shared_dict layerup 1m;")
	-- Thread VMs are built on first use; a small pool gets reused.
	add("    lua_worker_thread_vm_pool_size 8;")
	add("    lua_socket_log_errors off;")
	add("    init_by_lua_block { require('layerup.host.nginx').init{ root = %q, config = %q, purge_socket = %s } }",
		o.root, o.config or "", o.purge_socket and ("%q"):format(o.purge_socket) or "nil")
	add("    init_worker_by_lua_block { require('layerup.host.nginx').init_worker() }")
	-- The JSON access log (config access_log); a no-op without it.
	add("    log_by_lua_block { require('layerup.host.nginx').log_request() }")
	add("    server {")
	-- reuseport: the kernel spreads connections over the workers.
	if o.tls_cert then
		-- TLS on the main listener, HTTP/2 offered by ALPN next to
		-- HTTP/1.1 (nginx 1.22 spelling; 1.25 has `http2 on;`): Go clients
		-- speak HTTP/2 only this way (containers/image 5.23, in skopeo and
		-- podman, not even so: README "HTTP/2").  The master reads
		-- certificate and key before the workers start.
		add("        listen %s reuseport ssl http2;", o.listen)
		add('        ssl_certificate "%s";', o.tls_cert)
		add('        ssl_certificate_key "%s";', o.tls_key)
		add("        ssl_protocols TLSv1.2 TLSv1.3;")
		add("        ssl_session_cache shared:layerup_tls:1m;")
		add("        ssl_session_timeout 10m;")
	else
		add("        listen %s reuseport;", o.listen)
	end
	-- HTTP/2 on its own port: a cleartext `listen ... http2` of nginx 1.22
	-- speaks h2c only (prior knowledge; 1.25 tells them apart).  Request
	-- bodies then go through nginx's spooling (see layerup.host.nginx).
	if o.http2 then
		add("        listen %s reuseport http2;", o.http2)
	end
	add("        server_name _;")
	add("        client_max_body_size 0;")
	add("        client_body_buffer_size 1m;")
	add("        lua_socket_buffer_size 256k;")
	add("        lua_socket_read_timeout %ds;", o.read_timeout or 60)
	add("        location /v2 {")
	add("            content_by_lua_block { require('layerup.host.nginx').serve() }")
	add("        }")
	add("        location /_layerup_blobs/ {")
	add("            internal;")
	add("            alias %s/docker/registry/v2/blobs/;", o.root)
	add("            default_type application/octet-stream;")
	add("        }")
	add("        location / { return 404; }")
	add("    }")
	if o.purge_socket then
		-- The purge timer's request lands here (a unix socket under the
		-- prefix: nothing else reaches it), so the purge runs in a thread.
		add("    server {")
		add("        listen %s;", o.purge_socket)
		add("        location = /_layerup/purge {")
		add("            content_by_lua_block { require('layerup.host.nginx').purge_request() }")
		add("        }")
		add("        location / { return 404; }")
		add("    }")
	end
	add("}")
	return table.concat(lines, "\n") .. "\n"
end

-- Thread-pool VMs load the Lua modules, core.so and the config file as
-- the workers' user, after the master (root) dropped privileges: a
-- checkout under /root (0700) or a root-only config would make every
-- thread fail and each operation fall back inline.  When that user cannot
-- read them, copies go under the prefix (removed with it).
local function sh_ok(cmd)
	local ok = os.execute(cmd)
	return ok == true or ok == 0 -- Lua 5.4 / LuaJIT
end

local function readable_by(user, group, paths)
	local tests = {}
	for i, p in ipairs(paths) do
		tests[i] = "test -r " .. q(p)
	end
	return sh_ok(("setpriv --reuid=%s --regid=%s --clear-groups sh -c %s 2>/dev/null")
		:format(q(user), q(group), q(table.concat(tests, " && "))))
end

-- A failed copy leaves the original paths (the threads then fall back
-- inline, with nginx's warning per operation) and says so.
local function stage_for_workers(o)
	local user, group = (o.user or ""):match("^(%S+) (%S+)$")
	if not user then
		return
	end
	local core = o.jitdir .. "/layerup/core.so"
	if not readable_by(user, group, { o.luadir .. "/layerup/worker.lua", core }) then
		local lua, lib = o.prefix .. "/lua", o.prefix .. "/lib"
		if sh_ok(("mkdir -p %s %s/layerup && cp -R %s/. %s && cp %s %s/layerup/ && chmod -R a+rX %s %s")
				:format(q(lua), q(lib), q(o.luadir), q(lua), q(core), q(lib), q(lua), q(lib))) then
			o.luadir, o.jitdir = lua, lib
		else
			io.stderr:write("layerup serve: could not copy the Lua modules under ", o.prefix,
				" for the workers (", user, "): worker threads will fail\n")
		end
	end
	if o.config and not readable_by(user, group, { o.config }) then
		local copy = o.prefix .. "/config.lua"
		if sh_ok(("cp %s %s && chown %s %s && chmod 0400 %s")
				:format(q(o.config), q(copy), q(user), q(copy), q(copy))) then
			o.config = copy
		else
			io.stderr:write("layerup serve: could not copy ", o.config, " under ", o.prefix,
				" for the workers (", user, "): worker threads will fail\n")
		end
	end
end

-- run(argv, top, installed): top is the checkout (lua/, build/); installed
-- = {luadir=, jitdir=} names the installed module directories instead
-- (LUADIR, and JITLIBDIR holding layerup/core.so built for LuaJIT).
function M.run(argv, top, installed)
	local ok, o = pcall(M.parse, argv)
	if not ok then
		io.stderr:write("layerup serve: ", tostring(o), "\n", M.USAGE, "\n")
		return 2
	end
	if o.help then
		print(M.USAGE)
		return 0
	end
	local nginx = capture("command -v nginx")
	if not nginx or nginx == "" then
		io.stderr:write("layerup serve: nginx not found (Debian: apt-get install nginx libnginx-mod-http-lua)\n")
		return 1
	end
	if not find_module("ngx_http_lua_module.so") then
		io.stderr:write("layerup serve: the nginx Lua module is missing (Debian: libnginx-mod-http-lua)\n")
		return 1
	end
	if installed and installed.luadir then
		o.luadir, o.jitdir = installed.luadir, installed.jitdir
		if not o.jitdir or not exists(o.jitdir .. "/layerup/core.so") then
			io.stderr:write("layerup serve: ", tostring(o.jitdir),
				"/layerup/core.so (the LuaJIT build) is missing: reinstall with `make install`\n")
			return 1
		end
	else
		top = capture("cd " .. q(top or ".") .. " && pwd")
		o.top = top
		o.luadir = top .. "/lua"
		o.build = os.getenv("BUILD") or (top .. "/build")
		o.build = capture("cd " .. q(o.build) .. " && pwd") or o.build
		o.jitdir = o.build .. "/luajit"
		if not exists(o.build .. "/luajit/layerup/core.so") then
			io.stderr:write("layerup serve: ", o.build, "/luajit/layerup/core.so is missing (run make)\n")
			return 1
		end
	end
	os.execute("mkdir -p " .. q(o.root))
	o.root = capture("cd " .. q(o.root) .. " && pwd")
	if o.config then
		o.config = capture("readlink -f " .. q(o.config))
		if not exists(o.config) then
			io.stderr:write("layerup serve: no config file ", o.config, "\n")
			return 1
		end
	end
	for _, k in ipairs { "tls_cert", "tls_key" } do
		if o[k] then
			-- Used in place (the key is never copied), absolute (nginx
			-- resolves relative names against its conf dir).
			local flag = "--" .. k:gsub("_", "-")
			local f, err = io.open(o[k], "rb")
			if not f then
				io.stderr:write("layerup serve: cannot read ", flag, " ", o[k], ": ", tostring(err), "\n")
				return 1
			end
			local pem = f:read(4096) or ""
			f:close()
			-- An encrypted key would make nginx prompt for its pass
			-- phrase on the terminal (twice), or fail without one.
			if k == "tls_key" and (pem:find("-----BEGIN ENCRYPTED PRIVATE KEY-----", 1, true)
					or pem:find("Proc-Type: 4,ENCRYPTED", 1, true)) then
				io.stderr:write("layerup serve: --tls-key ", o[k], " is encrypted: give an unencrypted",
					" key (readable by root only when serve runs as root)\n")
				return 1
			end
			-- Absolute, but symlinks kept (certbot's live/ names).
			if o[k]:sub(1, 1) ~= "/" then
				o[k] = capture("pwd") .. "/" .. o[k]
				if o[k]:find(NGX_UNSAFE) then
					io.stderr:write("layerup serve: ", flag, " ", o[k], ": the current directory's name cannot",
						" go into nginx.conf: give an absolute path\n")
					return 1
				end
			end
		end
	end
	local own_prefix = not o.prefix
	o.prefix = o.prefix or capture("mktemp -d " .. q((os.getenv("TMPDIR") or "/tmp") .. "/layerup-serve.XXXXXX"))
	os.execute("mkdir -p " .. q(o.prefix .. "/tmp"))
	-- The purge timer's socket (sun_path holds 107 bytes).
	if #o.prefix < 90 then
		o.purge_socket = "unix:" .. o.prefix .. "/layerup.sock"
		os.remove(o.prefix .. "/layerup.sock")
	end
	-- Workers run as the user that owns ROOT (root-started nginx would
	-- otherwise use nobody, who cannot write the store).
	if capture("id -u") == "0" then
		o.user = capture("stat -c '%U %G' " .. q(o.root))
		-- They must reach the temp paths under the prefix (mktemp makes
		-- it 0700): nginx spools HTTP/2 and large manifest bodies there.
		os.execute("chmod go+x " .. q(o.prefix))
		stage_for_workers(o)
	end
	local conf = o.prefix .. "/nginx.conf"
	local f = assert(io.open(conf, "w"))
	f:write(M.config(o))
	f:close()
	local url = (o.tls_cert and "https://" or "http://") .. o.listen .. "/v2/"
	-- nginx in the background of a shell that forwards TERM/INT, stops
	-- nginx when this process dies, prints the URL once /v2/ answers and
	-- waits.  `daemon off` keeps the master in the shell's job.
	local script = ([[
nginx -p %s -c %s -e %s/error.log &
npid=$!
stop() { kill -QUIT $npid 2>/dev/null; i=0; while kill -0 $npid 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; kill -TERM $npid 2>/dev/null; wait $npid 2>/dev/null; %s exit 0; }
trap stop TERM INT HUP
i=0
while kill -0 $npid 2>/dev/null; do
	if curl -s%s -o /dev/null --max-time 1 %s; then
		echo "layerup: serving %s at %s (nginx pid $npid, prefix %s)"%s
		break
	fi
	i=$((i+1)); [ $i -gt 100 ] && break
	sleep 0.1
done
while kill -0 $npid 2>/dev/null; do
	kill -0 %d 2>/dev/null || stop
	sleep 0.2 & wait $!
done
wait $npid
rc=$?
echo "layerup serve: nginx exited with status $rc%s" >&2
%s
exit $rc
]]):format(q(o.prefix), q(conf), q(o.prefix), own_prefix and ("rm -rf " .. q(o.prefix) .. ";") or "",
		o.tls_cert and "k" or "", q(url), o.root, url, o.prefix,
		o.http2 and ("\n\t\techo " .. q("layerup: HTTP/2 (h2c, prior knowledge) at http://" .. o.http2 .. "/v2/")) or "",
		M.getpid(),
		-- (nginx itself says why on stderr when it cannot start)
		own_prefix and "" or (" (see " .. o.prefix .. "/error.log)"),
		own_prefix and ("rm -rf " .. q(o.prefix)) or "")
	io.stdout:flush()
	local okx, _, code = os.execute("exec sh -c " .. q(script))
	if okx == true or okx == 0 then return 0 end
	return code or 1
end

-- This process's pid (the shell's parent).
function M.getpid()
	local f = io.open("/proc/self/stat")
	if f then
		local s = f:read("*l")
		f:close()
		-- /proc/self of the reading process is us.
		return tonumber(s:match("^(%d+)"))
	end
	return tonumber(capture("echo $PPID"))
end

return M
