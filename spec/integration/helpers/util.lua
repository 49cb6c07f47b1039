-- Shell, file and encoding helpers shared by the integration specs
-- (temp dirs, quoting, running commands, sha256 of files, base64url).

local M = {}

-- POSIX single-quote a string for sh.
function M.q(s)
	s = tostring(s)
	return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- Run a shell command; return its stdout and the exit code (0 = success).
-- Under `make check` the interpreter runs with the sanitizer runtimes in
-- LD_PRELOAD; peers (registry, skopeo, curl ...) must not inherit them, so
-- the preload is dropped unless keep_preload is set (for programs that load
-- the instrumented layerup module, such as bin/layerup).
function M.run(cmd, keep_preload)
	if not keep_preload and os.getenv("LD_PRELOAD") then
		cmd = "unset LD_PRELOAD; " .. cmd
	end
	local p = assert(io.popen(cmd .. "; echo \"__rc=$?\"", "r"))
	local out = p:read("a")
	p:close()
	local body, rc = out:match("^(.-)__rc=(%d+)\n?$")
	if not body then
		return out, -1
	end
	return body, tonumber(rc)
end

-- os.execute without the sanitizer preload (see M.run).
function M.exec(cmd)
	if os.getenv("LD_PRELOAD") then
		cmd = "unset LD_PRELOAD; " .. cmd
	end
	return os.execute(cmd)
end

-- Run a command that must succeed; raise with its output otherwise.
function M.must(cmd, keep_preload)
	local out, rc = M.run(cmd .. " 2>&1", keep_preload)
	if rc ~= 0 then
		error(("command failed (rc=%d): %s\n%s"):format(rc, cmd, out), 2)
	end
	return out
end

-- Is an executable on PATH?
function M.have(prog)
	local _, rc = M.run("command -v " .. M.q(prog) .. " >/dev/null 2>&1")
	return rc == 0
end

function M.tmpdir(tag)
	local base = os.getenv("TMPDIR") or "/tmp"
	local out = M.must("mktemp -d " .. M.q(base .. "/layerup-" .. (tag or "it") .. ".XXXXXX"))
	return (out:gsub("%s+$", ""))
end

function M.rmrf(dir)
	-- Guard against removing anything but our own temp dirs.
	assert(dir and dir:match("/layerup%-[%w_-]+%.[%w]+$"), "refusing to remove " .. tostring(dir))
	M.exec("rm -rf " .. M.q(dir))
end

function M.mkdirp(dir)
	M.must("mkdir -p " .. M.q(dir))
end

function M.read_file(path)
	local f, err = io.open(path, "rb")
	if not f then
		return nil, err
	end
	local s = f:read("a")
	f:close()
	return s
end

function M.write_file(path, data)
	local f = assert(io.open(path, "wb"))
	assert(f:write(data))
	assert(f:close())
end

function M.exists(path)
	local f = io.open(path, "rb")
	if f then
		f:close()
		return true
	end
	return false
end

-- n random bytes from the kernel.
function M.random_bytes(n)
	if n == 0 then
		return ""
	end
	local f = assert(io.open("/dev/urandom", "rb"))
	local s = f:read(n)
	f:close()
	assert(#s == n)
	return s
end

function M.sha256_file(path)
	local out = M.must("sha256sum " .. M.q(path))
	return "sha256:" .. assert(out:match("^(%x+)"))
end

function M.sha256(data)
	local tmp = os.tmpname()
	M.write_file(tmp, data)
	local d = M.sha256_file(tmp)
	os.remove(tmp)
	return d
end

-- Size of a file in bytes, or nil.
function M.size(path)
	local f = io.open(path, "rb")
	if not f then
		return nil
	end
	local n = f:seek("end")
	f:close()
	return n
end

-- Sorted list of "type size path" lines for everything below dir,
-- optionally skipping paths matching a Lua pattern; files also carry
-- their sha256 so content changes are visible.
function M.snapshot(dir, skip)
	local out = M.must("cd " .. M.q(dir) ..
		" && find . -mindepth 1 \\( -type f -printf 'f %s %p\\n' -o -type d -printf 'd 0 %p\\n' \\) | LC_ALL=C sort")
	local lines = {}
	for line in out:gmatch("[^\n]+") do
		local kind, _, p = line:match("^(%S+) (%S+) (.*)$")
		if not (skip and p:match(skip)) then
			if kind == "f" then
				line = line .. " " .. M.sha256_file(dir .. "/" .. p)
			end
			lines[#lines + 1] = line
		end
	end
	return lines
end

-- Pure-Lua base64 (standard or URL alphabet, padded).
local STD = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

function M.base64_encode(s, url)
	local alpha = url and URL or STD
	local out = {}
	for i = 1, #s, 3 do
		local a, b, c = s:byte(i, i + 2)
		local n = (a << 16) | ((b or 0) << 8) | (c or 0)
		local chunk = {}
		for k = 1, 4 do
			local idx = (n >> (6 * (4 - k))) & 63
			chunk[k] = alpha:sub(idx + 1, idx + 1)
		end
		if not b then
			chunk[3], chunk[4] = "=", "="
		elseif not c then
			chunk[4] = "="
		end
		out[#out + 1] = table.concat(chunk)
	end
	return table.concat(out)
end

function M.base64_decode(s, url)
	local alpha = url and URL or STD
	local rev = {}
	for i = 1, 64 do
		rev[alpha:byte(i)] = i - 1
	end
	s = s:gsub("=+$", "")
	local out, bits, nbits = {}, 0, 0
	for i = 1, #s do
		local v = rev[s:byte(i)]
		if not v then
			return nil, "bad base64 character at " .. i
		end
		bits = (bits << 6) | v
		nbits = nbits + 6
		if nbits >= 8 then
			nbits = nbits - 8
			out[#out + 1] = string.char((bits >> nbits) & 0xff)
		end
	end
	return table.concat(out)
end

function M.hex(s)
	return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

-- Raw HMAC-SHA256(key, data) computed by openssl.
function M.hmac_sha256(key, data)
	local dir = M.tmpdir("hmac")
	local f = dir .. "/msg"
	M.write_file(f, data)
	local cmd = "openssl dgst -sha256 -hmac " .. M.q(key) .. " -binary " .. M.q(f)
	if os.getenv("LD_PRELOAD") then
		cmd = "unset LD_PRELOAD; " .. cmd
	end
	local p = assert(io.popen(cmd, "r"))
	local mac = p:read("a")
	p:close()
	M.rmrf(dir)
	assert(#mac == 32, "openssl gave no HMAC")
	return mac
end

-- Pid of this Lua process (the /proc/self of the interpreter).
function M.getpid()
	local s = assert(M.read_file("/proc/self/stat"))
	return tonumber(s:match("^(%d+)"))
end

-- Is pid alive (and not a zombie)?
function M.alive(pid)
	local s = M.read_file("/proc/" .. pid .. "/stat")
	if not s then
		return false
	end
	local state = s:match("^%d+ %b() (%a)")
	return state ~= "Z" and state ~= "X"
end

function M.sleep(sec)
	M.exec("sleep " .. sec)
end

-- Wait up to tries (default 100) tenths of a second for pid to be gone:
-- true if it is.
function M.wait_gone(pid, tries)
	for _ = 1, tries or 100 do
		if not M.alive(pid) then
			return true
		end
		M.sleep(0.1)
	end
	return not M.alive(pid)
end

-- Stop pid (a server this process started): TERM, then KILL after 5 s.
function M.stop_pid(pid)
	M.exec("kill -TERM " .. pid .. " 2>/dev/null")
	if not M.wait_gone(pid, 50) then
		M.exec("kill -KILL " .. pid .. " 2>/dev/null")
		M.wait_gone(pid, 20)
	end
end

-- Poll ready() every tenth of a second, up to tries times, while pid
-- lives: true once it answers true, false when pid died or time ran out.
function M.wait_ready(pid, tries, ready)
	for _ = 1, tries do
		if not M.alive(pid) then
			return false
		end
		if ready() then
			return true
		end
		M.sleep(0.1)
	end
	return false
end

-- The repository root (two levels above this helpers directory).
function M.repo_root()
	local src = debug.getinfo(1, "S").source:gsub("^@", "")
	local dir = src:match("^(.*)/spec/integration/helpers/[^/]+$")
	if not dir or dir == "" then
		return "."
	end
	return dir
end

return M
