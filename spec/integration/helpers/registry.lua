-- Runs a real Docker Distribution registry (docker-registry serve) on
-- 127.0.0.1 for the integration specs, talks HTTP to it through curl, and
-- builds its HMAC `_state` upload tokens with the known secret.

local util = require "integration.helpers.util"
local q = util.q

local M = {}
M.__index = M

M.SECRET = "layerup-interop-secret-0123456789"

-- Ports something already listens on (IPv4 and IPv6), from /proc/net.
local function busy_ports()
	local busy = {}
	for _, f in ipairs { "/proc/net/tcp", "/proc/net/tcp6" } do
		local s = util.read_file(f) or ""
		for line in s:gmatch("[^\n]+") do
			local port = line:match("^%s*%d+:%s+%x+:(%x+)%s")
			if port then
				busy[tonumber(port, 16)] = true
			end
		end
	end
	return busy
end

-- Does pid hold the listening socket on port?  Guards against taking
-- someone else's server (that won a race for the port) for ours.
local function owns_listener(pid, port)
	local inodes = {}
	for _, f in ipairs { "/proc/net/tcp", "/proc/net/tcp6" } do
		for line in (util.read_file(f) or ""):gmatch("[^\n]+") do
			local p, st, inode = line:match("^%s*%d+:%s+%x+:(%x+)%s+%x+:%x+%s+(%x+)%s+%S+%s+%S+%s+%S+%s+%d+%s+%d+%s+(%d+)")
			if p and tonumber(p, 16) == port and st == "0A" then
				inodes[#inodes + 1] = inode
			end
		end
	end
	local fds = util.run("ls -l /proc/" .. pid .. "/fd 2>/dev/null")
	for _, inode in ipairs(inodes) do
		if fds:find("socket:[" .. inode .. "]", 1, true) then
			return true
		end
	end
	return false
end

local function free_port()
	local busy = busy_ports()
	math.randomseed(os.time() + util.getpid())
	for _ = 1, 200 do
		local port = math.random(20000, 59999)
		if not busy[port] then
			-- Double-check nothing answers there.
			local _, rc = util.run("curl -s -o /dev/null --max-time 1 http://127.0.0.1:" .. port .. "/ 2>/dev/null")
			if rc == 7 then -- curl: could not connect
				return port
			end
		end
	end
	error("no free port found")
end

M.free_port = free_port
M.owns_listener = owns_listener

local CONFIG = [[
version: 0.1
log:
  level: warn
  formatter: text
  accesslog:
    disabled: true
storage:
%s
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:%d
  secret: %s
]]

function M.available()
	return util.have("docker-registry") and util.have("curl") and util.have("openssl")
end

-- The storage section: the filesystem driver on root, or with s3 =
-- {endpoint=, bucket=, region=, access_key=, secret_key=, prefix=} (the
-- layerup.s3 options) the registry's own `s3` driver on that bucket and
-- prefix (facts in shared/reference/s3-servers.md: path-style is forced by
-- regionendpoint; redirects off, else blob GETs answer 307 to RGW).
local function storage(root, s3)
	if not s3 then
		return ("  filesystem:\n    rootdirectory: %s"):format(root)
	end
	local prefix = (s3.prefix or ""):gsub("^/+", ""):gsub("/+$", "")
	return table.concat({
		"  s3:",
		"    accesskey: " .. s3.access_key,
		"    secretkey: " .. s3.secret_key,
		"    region: " .. (s3.region or "us-east-1"),
		"    regionendpoint: " .. s3.endpoint,
		"    bucket: " .. s3.bucket,
		"    secure: " .. (s3.endpoint:match("^https:") and "true" or "false"),
		"    v4auth: true",
		"    rootdirectory: /" .. prefix,
		"  redirect:",
		"    disable: true",
	}, "\n")
end

-- Start a registry whose filesystem root is `root` (a layerup store root),
-- or, with opts.s3 (see storage above), one on an S3 bucket (root unused).
-- Returns the handle; call :stop() (it is safe to call twice).
function M.start(root, workdir, opts)
	assert(M.available(), "docker-registry, curl and openssl are needed (run `make deps` as root)")
	local s3 = opts and opts.s3
	if not s3 then
		util.mkdirp(root)
	end
	local self = setmetatable({ root = root, dir = workdir or util.tmpdir("reg") }, M)
	self.owns_dir = workdir == nil
	local last
	for _ = 1, 5 do
		self.port = free_port()
		self.base = "http://127.0.0.1:" .. self.port
		self.config = self.dir .. "/config.yml"
		self.log = self.dir .. "/registry.log"
		util.write_file(self.config, CONFIG:format(storage(root, s3), self.port, M.SECRET))
		local pidfile, wdfile = self.dir .. "/registry.pid", self.dir .. "/watchdog.pid"
		os.remove(pidfile)
		os.remove(wdfile)
		-- The watchdog kills the registry if this Lua process dies without
		-- stopping it (a crashed spec), and exits once the registry is gone.
		-- The AWS SDK inside the registry's s3 driver panics on
		-- AWS_CA_BUNDLE ("unsupported transport") and would take
		-- credentials from AWS_*: the registry gets none of them.
		local script = ([[
unset AWS_CA_BUNDLE AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_REGION AWS_DEFAULT_REGION AWS_ENDPOINT_URL AWS_PROFILE
docker-registry serve %s >>%s 2>&1 </dev/null &
rpid=$!
echo $rpid >%s
( while kill -0 %d 2>/dev/null && kill -0 $rpid 2>/dev/null; do sleep 0.2; done
  kill $rpid 2>/dev/null ) </dev/null >/dev/null 2>&1 &
echo $! >%s
]]):format(q(self.config), q(self.log), q(pidfile), util.getpid(), q(wdfile))
		util.must("sh -c " .. q(script))
		self.pid = tonumber(util.read_file(pidfile))
		self.watchdog = tonumber(util.read_file(wdfile))
		assert(self.pid and self.watchdog, "registry did not start")
		if util.wait_ready(self.pid, 150, function()
			local r = self:http("GET", "/v2/")
			return r.status == 200 and r.headers["docker-distribution-api-version"] == "registry/2.0"
				and owns_listener(self.pid, self.port)
		end) then
			return self
		end
		last = util.read_file(self.log) or ""
		self:stop()
	end
	error("docker-registry did not come up:\n" .. tostring(last))
end

-- Stop the registry (TERM, then KILL) and its watchdog, by PID only.
function M:stop()
	if self.pid then
		util.stop_pid(self.pid)
		self.pid = nil
	end
	if self.watchdog then
		-- It exits on its own within 0.2 s of the registry's death.
		if not util.wait_gone(self.watchdog, 30) then
			util.exec("kill -TERM " .. self.watchdog .. " 2>/dev/null")
			util.wait_gone(self.watchdog, 20)
		end
		self.watchdog = nil
	end
	if self.owns_dir and self.dir then
		util.rmrf(self.dir)
		self.dir = nil
	end
end

-- Bytes the registry process has read so far (all read syscalls).
function M:rchar()
	local s = assert(util.read_file("/proc/" .. self.pid .. "/io"), "cannot read /proc/<pid>/io")
	return tonumber(s:match("rchar:%s*(%d+)"))
end

-- HTTP through curl. path is relative to the base URL (or a full URL).
-- opts: headers = {"Name: value", ...}, body = string, body_file = path,
-- out_file = path (save the body there instead of returning it).
-- Returns {status=, headers={lowercase name = value}, body=}.
function M:http(method, path, opts)
	opts = opts or {}
	local url = path:match("^https?://") and path or (self.base .. path)
	local tmp = util.tmpdir("http")
	local hdr, bodyf = tmp .. "/headers", opts.out_file or (tmp .. "/body")
	local args = { "curl -sS --max-time 120 -g --path-as-is -o", q(bodyf), "-D", q(hdr), "-w '%{http_code}'", "-H 'Expect:'" }
	if method == "HEAD" then
		args[#args + 1] = "-I"
	else
		args[#args + 1] = "-X " .. q(method)
	end
	local has_ct = false
	for _, h in ipairs(opts.headers or {}) do
		if h:lower():match("^content%-type:") then
			has_ct = true
		end
		args[#args + 1] = "-H " .. q(h)
	end
	local file = opts.body_file
	if opts.body then
		file = tmp .. "/req"
		util.write_file(file, opts.body)
	end
	if file then
		if not has_ct then
			args[#args + 1] = "-H 'Content-Type: application/octet-stream'"
		end
		args[#args + 1] = "--data-binary @" .. q(file)
	end
	args[#args + 1] = q(url)
	local out, rc = util.run(table.concat(args, " ") .. " 2>" .. q(tmp .. "/err"))
	local r = { status = tonumber(out:match("(%d+)%s*$")) or 0, headers = {}, curl_rc = rc }
	for line in (util.read_file(hdr) or ""):gmatch("[^\r\n]+") do
		local k, v = line:match("^([^:%s]+):%s*(.-)%s*$")
		if k then
			r.headers[k:lower()] = v
		end
	end
	if not opts.out_file then
		r.body = util.read_file(bodyf) or ""
	end
	util.rmrf(tmp)
	return r
end

-- The error codes in a registry error body, e.g. {"DIGEST_INVALID"}.
function M.error_codes(body)
	local codes = {}
	for c in (body or ""):gmatch('"code"%s*:%s*"([%u_]+)"') do
		codes[#codes + 1] = c
	end
	return codes
end

-- Location header relative to our base URL.
function M:location(r)
	local loc = assert(r.headers["location"], "response has no Location")
	return (loc:gsub("^https?://[^/]+", ""))
end

-- POST a new upload; returns uuid, location path.
function M:start_upload(repo)
	local r = self:http("POST", "/v2/" .. repo .. "/blobs/uploads/")
	assert(r.status == 202, ("POST upload for %s gave %d: %s"):format(repo, r.status, r.body))
	return r.headers["docker-upload-uuid"], self:location(r), r
end

-- `_state` token as the registry builds it (registry/handlers/hmac.go):
-- base64url_padded(HMAC-SHA256(secret, json) || json).
function M.state_json(repo, uuid, offset, started_at)
	return ('{"Name":"%s","UUID":"%s","Offset":%d,"StartedAt":"%s"}'):format(repo, uuid, offset, started_at)
end

function M.state_token(repo, uuid, offset, started_at, secret)
	local json = M.state_json(repo, uuid, offset, started_at)
	return util.base64_encode(util.hmac_sha256(secret or M.SECRET, json) .. json, true)
end

-- Decode a token: returns mac, json.
function M.decode_token(token)
	local raw = assert(util.base64_decode(token, true))
	return raw:sub(1, 32), raw:sub(33)
end

-- The upload URL path for a token.
function M.upload_path(repo, uuid, token)
	return ("/v2/%s/blobs/uploads/%s?_state=%s"):format(repo, uuid, token)
end

return M
