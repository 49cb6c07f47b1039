-- helpers/util.lua: small shared test helpers (random bytes, temp dirs,
-- short sleeps).
local util = {}

-- n pseudo-random bytes from math.random, so math.randomseed makes a
-- failing run reproducible.  Eight 64-bit values per pack keep 30 MiB
-- under a second.
local pack, random = string.pack, math.random

function util.random_bytes(n)
	local parts, full = {}, n // 64
	for i = 1, full do
		parts[i] = pack("<i8i8i8i8i8i8i8i8", random(0), random(0), random(0),
			random(0), random(0), random(0), random(0), random(0))
	end
	local rest = n - full * 64
	if rest > 0 then
		local t = {}
		for i = 1, (rest + 7) // 8 do
			t[i] = pack("<i8", random(0))
		end
		parts[#parts + 1] = table.concat(t):sub(1, rest)
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

-- Sleep for a fraction of a second (Lua has no portable sleep).
function util.sleep(seconds)
	os.execute(string.format("sleep %.3f", seconds))
end

return util
