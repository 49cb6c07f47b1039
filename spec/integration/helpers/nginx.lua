-- Runs `bin/layerup serve` (nginx + layerup.host.nginx) on 127.0.0.1 at a
-- free port for the integration specs; stops it by PID.

local util = require "integration.helpers.util"
local R = require "integration.helpers.registry"
local q = util.q

local M = {}
M.__index = M

-- Why the host cannot run here, or nil.
function M.unavailable()
	if os.getenv("SANITIZE") == "1" then
		return "not under the sanitizers (nginx cannot load an ASan build)"
	end
	if not util.have("nginx") then
		return "nginx not installed (Debian: nginx)"
	end
	if not util.exists("/usr/lib/nginx/modules/ngx_http_lua_module.so") then
		return "the nginx Lua module is not installed (Debian: libnginx-mod-http-lua)"
	end
	local build = os.getenv("BUILD") or (util.repo_root() .. "/build")
	if not util.exists(build .. "/luajit/layerup/core.so") then
		return build .. "/luajit/layerup/core.so not built"
	end
	if not util.have("curl") then
		return "curl not installed"
	end
	return nil
end

-- start(root, {workers=, config=(Lua source), read_timeout=, http2=true,
-- tls={cert=, key=}, access_log=true}) -> host
-- (http2: a second listener speaking h2c at host.h2base; tls: the main
-- listener speaks HTTPS, host.base is https://; access_log: nginx's own
-- combined log at host:access_log())
function M.start(root, opts)
	opts = opts or {}
	local self = setmetatable({ root = root, dir = util.tmpdir("nginx") }, M)
	self.prefix = self.dir .. "/prefix"
	util.mkdirp(self.prefix)
	local cfg = ""
	if opts.config then
		util.write_file(self.dir .. "/config.lua", opts.config)
		cfg = " --config " .. q(self.dir .. "/config.lua")
	end
	local bin = util.repo_root() .. "/bin/layerup"
	local lua = os.getenv("LUA") or "lua5.4"
	local last
	for _ = 1, 5 do
		self.port = R.free_port()
		self.base = (opts.tls and "https" or "http") .. "://127.0.0.1:" .. self.port
		local h2 = ""
		if opts.tls then
			h2 = (" --tls-cert %s --tls-key %s"):format(q(opts.tls.cert), q(opts.tls.key))
		end
		if opts.access_log then
			h2 = h2 .. " --access-log"
		end
		if opts.http2 then
			-- (not R.free_port again: it reseeds from the clock and would
			-- answer the same port within the second)
			for _ = 1, 200 do
				local p = math.random(20000, 59999)
				local _, rc = util.run("curl -s -o /dev/null --max-time 1 http://127.0.0.1:" .. p .. "/ 2>/dev/null")
				if p ~= self.port and rc == 7 then
					self.h2port = p
					break
				end
			end
			assert(self.h2port, "no free port for HTTP/2")
			self.h2base = "http://127.0.0.1:" .. self.h2port
			h2 = h2 .. " --http2 127.0.0.1:" .. self.h2port
		end
		local pidfile = self.dir .. "/serve.pid"
		os.remove(pidfile)
		-- clean_env: as a user runs it (`make serve`), without the
		-- LUA_PATH/LUA_CPATH that spec/run exports.
		local env = opts.clean_env and "env -u LUA_PATH -u LUA_CPATH -u LUA_PATH_5_4 -u LUA_CPATH_5_4 " or ""
		local cmd = env .. ("%s %s serve %s --listen 127.0.0.1:%d --workers %d --prefix %s --log-level info%s%s")
			:format(lua, q(bin), q(root), self.port, opts.workers or 2, q(self.prefix), cfg,
				(opts.read_timeout and (" --read-timeout " .. opts.read_timeout) or "") .. h2)
		util.must(("sh -c %s"):format(q(cmd .. " >" .. q(self.dir .. "/serve.log") .. " 2>&1 </dev/null & echo $! >"
			.. q(pidfile))))
		self.pid = tonumber(util.read_file(pidfile))
		if util.wait_ready(self.pid, 100, function()
			return (util.read_file(self.dir .. "/serve.log") or ""):find("layerup: serving", 1, true)
		end) then
			self.master = tonumber(util.read_file(self.prefix .. "/nginx.pid"))
			return self
		end
		last = (util.read_file(self.dir .. "/serve.log") or "") .. (util.read_file(self.prefix .. "/error.log") or "")
		self:stop(true)
	end
	error("layerup serve did not come up:\n" .. tostring(last))
end

-- Worker pids (children of the master).
function M:workers()
	local out = util.run("cat /proc/" .. tostring(self.master) .. "/task/*/children 2>/dev/null")
	local t = {}
	for pid in out:gmatch("%d+") do t[#t + 1] = tonumber(pid) end
	return t
end

-- nginx's access log (combined format: request line with the protocol,
-- status, user agent), with start{access_log=true}.
function M:access_log()
	return util.read_file(self.prefix .. "/access.log") or ""
end

function M:error_log()
	return util.read_file(self.prefix .. "/error.log") or ""
end

-- Stop: TERM to the serve process (it stops nginx), then KILL by PID.
function M:stop(keep_dir)
	local master = self.master or tonumber(util.read_file(self.prefix .. "/nginx.pid") or "")
	if self.pid then
		util.stop_pid(self.pid)
		self.pid = nil
	end
	if master and not util.wait_gone(master, 60) then
		util.exec("kill -KILL " .. master .. " 2>/dev/null")
		util.wait_gone(master, 20)
	end
	if not keep_dir and self.dir then
		util.rmrf(self.dir)
		self.dir = nil
	end
end

-- HTTP through curl (registry helper's client; `-H Expect:` is set).
M.http = R.http
M.location = R.location
M.error_codes = R.error_codes
M.start_upload = R.start_upload

-- curl with arbitrary arguments; returns {status, proto (curl's
-- %{http_version}: "2", "1.1"), headers, body, err (curl's stderr), rc}.
function M:curl(args)
	local tmp = util.tmpdir("curl")
	local out, rc = util.run(("curl -sS --max-time 120 -g --path-as-is -o %s -D %s -w '%%{http_code} %%{http_version}' %s 2>%s")
		:format(q(tmp .. "/body"), q(tmp .. "/hdr"), args, q(tmp .. "/err")))
	local st, ver = out:match("(%d+) (%S+)%s*$")
	local r = { status = tonumber(st) or 0, proto = ver, headers = {}, rc = rc,
		body = util.read_file(tmp .. "/body") or "", err = util.read_file(tmp .. "/err") or "" }
	for line in (util.read_file(tmp .. "/hdr") or ""):gmatch("[^\r\n]+") do
		local k, v = line:match("^([^:%s]+):%s*(.-)%s*$")
		if k then r.headers[k:lower()] = v end
	end
	util.rmrf(tmp)
	return r
end

-- Raw bytes over a TCP connection (bash /dev/tcp); returns the response.
function M:raw(bytes, opts)
	opts = opts or {}
	local tmp = util.tmpdir("raw")
	util.write_file(tmp .. "/req", bytes)
	local script = ("exec 3<>/dev/tcp/127.0.0.1/%d; cat %s >&3; %s timeout %d cat <&3")
		:format(self.port, q(tmp .. "/req"), opts.stall and ("sleep " .. opts.stall .. ";") or "", opts.wait or 10)
	local out = util.run("bash -c " .. q(script) .. " 2>/dev/null")
	util.rmrf(tmp)
	-- the first final status (after a 100 Continue)
	for s in out:gmatch("HTTP/1%.1 (%d+)") do
		if s ~= "100" then return tonumber(s), out end
	end
	return nil, out
end

return M
