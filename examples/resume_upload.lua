-- resume_upload.lua: an upload that stops half way and carries on later,
-- as after a dropped connection or a restarted process.
--
--   lua5.4 examples/resume_upload.lua
--
-- Session 1 writes the first half and closes: the data is made durable and
-- the SHA-256 state is saved beside it.  Session 2 resumes by id from a
-- fresh store handle: the offset comes back, the hash is restored from the
-- saved state (no byte is read again), and finish verifies the digest.
-- From a checkout this uses its lua/ and build/ (after LUA_PATH/LUA_CPATH
-- when those are set); an installed layerup needs none of it.
do
	local top = ((arg and arg[0] or ""):match("^(.*)/[^/]*$") or ".") .. "/.."
	local function add(cur, mine, env)
		if os.getenv(env) then return cur .. ";" .. mine end
		return mine .. ";" .. cur
	end
	package.path = add(package.path, top .. "/lua/?.lua;" .. top .. "/lua/?/init.lua", "LUA_PATH")
	package.cpath = add(package.cpath, top .. "/build/?.so", "LUA_CPATH")
end

local layerup = require "layerup"

local p = assert(io.popen("mktemp -d /tmp/layerup-example.XXXXXX"))
local root = p:read("l")
p:close()

local parts = {}
for i = 1, 8 do
	parts[i] = string.rep(string.format("%02d", i), 32 * 1024) -- 64 KiB each
end
local whole = table.concat(parts)
local h = layerup.hasher("sha256")
h:update(whole)
local digest = h:digest()

-- Session 1: start, send half, stop.
local uuid
do
	local store = assert(layerup.open(root))
	local up = assert(store:start("examples/resume"))
	uuid = up.uuid
	for i = 1, 4 do
		assert(up:write(parts[i]))
	end
	assert(up:close())
	store:close()
	print(("session 1: %s stopped at %d bytes"):format(uuid, #whole // 2))
end

-- Session 2: a new handle resumes the same upload by id.
do
	local store = assert(layerup.open(root))
	local up = assert(store:resume("examples/resume", uuid))
	local offset = up:size()
	assert(offset == #whole // 2, "resumed at the wrong offset")
	-- write_at names the offset the client thinks it is at: a repeated or
	-- lost chunk gets RANGE_INVALID (HTTP 416) instead of corrupt data.
	local _, err = up:write_at(0, parts[1])
	assert(err and err.code == "RANGE_INVALID" and err.offset == offset)
	for i = 5, 8 do
		offset = assert(up:write_at(offset, parts[i]))
	end
	local blob = assert(up:finish(digest, { size = #whole }))
	print(("session 2: resumed at %d, re-read %d bytes, finished %s"):format(
		#whole // 2, up:bytes_reread(), blob.digest))
	assert(up:bytes_reread() == 0)
	store:close()
end

os.execute("rm -rf '" .. root .. "'")
