-- examples/custom_policy.lua: change how layerup behaves with a few lines
-- of Lua, no recompiling.  This store
--   * retries patiently (the backend below pretends to be eventually
--     consistent, like S3 or Swift),
--   * links every blob into "cache/all" too, and refuses pushes into the
--     read-only "mirror/" namespace,
--   * logs logfmt lines to stdout and keeps JSON lines in a file.
-- Run after `make` (from the repository root, or with any path to it):
--   lua5.4 examples/custom_policy.lua

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
local retry = require "layerup.retry"
local link = require "layerup.link"
local log = require "layerup.log"
local lag = require "layerup.middleware.lag"

-- A fresh directory for the store.
local root = os.tmpname()
os.remove(root)

-- The filesystem driver, wrapped so that each new file stays invisible to
-- the next 2 reads: finish has to wait for its data to show up.
local driver = lag(layerup.filesystem(root), 2)

local json_log = root .. ".log.json"
local store = assert(layerup.open(driver, {
	retry = retry.backoff { attempts = 6, base = 0.01, factor = 2, max = 0.5, jitter = 0.2 },
	link = link.read_only("mirror", link.mirror("cache/all")),
	log = log.fanout(
		log.filter("^upload%.", log.logfmt(io.stdout)),
		log.filter({ "finish.retry" }, log.logfmt(io.stdout)),
		log.json(json_log)),
}))

local function push(repo, data)
	local h = layerup.hasher()
	h:update(data)
	local u = assert(store:start(repo))
	assert(u:write(data))
	local blob, err = u:finish(h:digest())
	if not blob then
		u:cancel() -- a failed finish keeps the upload: drop it
	end
	return blob, err
end

-- 1. A normal push: retried past the lag, linked twice.
local blob = assert(push("team/app", "hello, layers\n"))
print("pushed " .. blob.digest .. " (" .. blob.size .. " bytes)")
local plain = assert(layerup.open(root)) -- the same files, without the lag
assert(plain:stat(blob.digest, "team/app"), "linked in team/app")
assert(plain:stat(blob.digest, "cache/all"), "linked in cache/all")

-- 2. A push into the read-only namespace: refused by the link policy.
local res, err = push("mirror/library/busybox", "not welcome\n")
assert(res == nil and err.code == "DENIED", "expected DENIED")
print("refused: " .. tostring(err))

-- The JSON log holds one object per line.
local retries = 0
for line in io.lines(json_log) do
	if line:find('"event":"finish.retry"', 1, true) then
		retries = retries + 1
	end
end
assert(retries >= 1, "expected finish.retry events")
print(("%d finish retries logged to %s"):format(retries, json_log))

store:close()
plain:close()
os.execute("rm -rf '" .. root .. "' '" .. json_log .. "'")
