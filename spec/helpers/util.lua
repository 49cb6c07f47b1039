-- helpers/util.lua: small shared test helpers (random bytes, temp dirs,
-- digests, file reading, the samples directory, short sleeps).
local layerup = require "layerup"

local util = {}

-- n pseudo-random bytes from math.random, so math.randomseed makes a
-- failing run reproducible.  Eight 64-bit values per pack keep 30 MiB
-- under a second.
local pack, random = string.pack, math.random

function util.random_bytes(n)
	if not pack then
		return util.random_bytes_jit(n)
	end
	local parts, full = {}, math.floor(n / 64)
	for i = 1, full do
		parts[i] = pack("<i8i8i8i8i8i8i8i8", random(0), random(0), random(0),
			random(0), random(0), random(0), random(0), random(0))
	end
	local rest = n - full * 64
	if rest > 0 then
		local t = {}
		for i = 1, math.floor((rest + 7) / 8) do
			t[i] = pack("<i8", random(0))
		end
		parts[#parts + 1] = table.concat(t):sub(1, rest)
	end
	return table.concat(parts)
end

-- LuaJIT (no string.pack, no 64-bit math.random): bytes 8 at a time.
function util.random_bytes_jit(n)
	local char, parts = string.char, {}
	local i = 0
	while i + 8 <= n do
		parts[#parts + 1] = char(random(0, 255), random(0, 255), random(0, 255),
			random(0, 255), random(0, 255), random(0, 255), random(0, 255), random(0, 255))
		i = i + 8
	end
	while i < n do
		parts[#parts + 1] = char(random(0, 255))
		i = i + 1
	end
	return table.concat(parts)
end

-- A random path component from the registry suite's alphabet.
function util.random_name(n)
	local alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	local t = {}
	for i = 1, n or 16 do
		local k = math.random(#alphabet)
		t[i] = alphabet:sub(k, k)
	end
	return table.concat(t)
end

-- A fresh directory under $TMPDIR (or /tmp); remove it with util.rm_rf.
function util.tmpdir(tag)
	local base = os.getenv("TMPDIR") or "/tmp"
	local p = assert(io.popen("mktemp -d '" .. base .. "/layerup-" ..
		(tag or "spec") .. ".XXXXXX'"))
	local dir = p:read("l")
	p:close()
	assert(dir and dir ~= "", "mktemp -d failed")
	return dir
end

function util.rm_rf(dir)
	assert(dir:match("^/[%w%._/%-]+$") and #dir > 5, "refusing to remove " .. dir)
	os.execute("rm -rf '" .. dir .. "'")
end

-- The canonical digest of s ("alg:hex"), sha256 unless alg is given.
function util.digest(s, alg)
	local h = layerup.hasher(alg or "sha256")
	h:update(s)
	return h:digest()
end

-- The whole content of a file; raises when it cannot be read.
function util.read_file(path)
	local f = assert(io.open(path, "rb"))
	local s = f:read("a")
	f:close()
	return s
end

-- The repository root as a path prefix ("" when this file was loaded by a
-- relative path, so the specs' working directory is the root).
local ROOT = debug.getinfo(1, "S").source:match("^@(.-)spec/helpers/util%.lua$") or ""

-- The real registry's files (test vectors, see INDEX.md there):
-- $LUP_SAMPLES when set, else ../shared/samples beside the repository,
-- else the copy the repository carries in spec/fixtures/samples.  Returns
-- the directory, or nil and the places tried.
function util.samples_dir()
	local candidates
	local env = os.getenv("LUP_SAMPLES")
	if env and env ~= "" then
		candidates = { env }
	else
		candidates = { ROOT .. "../shared/samples", ROOT .. "spec/fixtures/samples" }
	end
	for _, dir in ipairs(candidates) do
		local f = io.open(dir .. "/INDEX.md", "rb")
		if f then
			f:close()
			return dir
		end
	end
	return nil, table.concat(candidates, " or ")
end

-- Sleep for a fraction of a second (Lua has no portable sleep).
function util.sleep(seconds)
	os.execute(string.format("sleep %.3f", seconds))
end

-- v, or an error naming err when v is nil (a layerup call's nil, err).
function util.ok(v, err)
	if v == nil then
		error("layerup call failed: " .. tostring(err), 2)
	end
	return v
end

-- A `Transfer-Encoding: chunked` body: one chunk per entry of parts,
-- then the last chunk with an optional trailer.
function util.chunked(parts, trailer)
	local t = {}
	for _, p in ipairs(parts) do
		t[#t + 1] = ("%x\r\n%s\r\n"):format(#p, p)
	end
	t[#t + 1] = "0\r\n" .. (trailer or "") .. "\r\n"
	return table.concat(t)
end

return util
