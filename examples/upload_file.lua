-- upload_file.lua: push a file into a layerup store in one go.
--
--   lua5.4 examples/upload_file.lua [file [repo]]
--
-- Without arguments it makes a 1 MiB file itself.  The store lives in a
-- temporary directory that is removed at the end; exit status 0 on success.
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

local function tmpdir()
	local p = assert(io.popen("mktemp -d /tmp/layerup-example.XXXXXX"))
	local dir = p:read("l")
	p:close()
	return dir
end

local root = tmpdir()
local path, repo = arg[1], arg[2] or "examples/files"
if not path then
	path = root .. "/input.bin"
	local f = assert(io.open(path, "wb"))
	for i = 1, 1024 do
		f:write(string.rep(string.char(i % 256), 1024))
	end
	f:close()
end

-- The client's digest, computed before the upload (as a registry client would).
local digest, size = assert(layerup.digest_file(path))

local store = assert(layerup.open(root .. "/store", {
	log = function(event, f)
		if event == "upload.finish" then
			print(("finished %s: %d bytes, re-read %d"):format(f.digest, f.size, f.bytes_reread))
		end
	end,
}))
local up = assert(store:start(repo))
local f = assert(io.open(path, "rb"))
assert(up:read_from(f)) -- streams the file in chunks
f:close()
local blob = assert(up:finish(digest, { size = size }))
assert(blob.digest == digest and blob.size == size)

-- The blob is now linked in the repository and can be read back.
assert(store:stat(digest, repo))
local r = assert(store:open(repo, digest))
local check = layerup.hasher("sha256")
while true do
	local chunk = r:read(65536)
	if not chunk then
		break
	end
	check:update(chunk)
end
r:close()
assert(check:digest() == digest, "read-back mismatch")
print(digest)

store:close()
os.execute("rm -rf '" .. root .. "'")
