-- purge_stale.lua: remove uploads that were abandoned.
--
--   lua5.4 examples/purge_stale.lua
--
-- Makes a store in a temporary directory with one fresh upload and one
-- that "started" in 2020 (its startedat is rewritten through the driver),
-- looks at them, does a dry run, then purges what is older than a week.
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

local WEEK = 7 * 24 * 3600
local p = assert(io.popen("mktemp -d /tmp/layerup-example.XXXXXX"))
local root = p:read("l")
p:close()

local store = assert(layerup.open(root))

local fresh = assert(store:start("examples/purge"))
assert(fresh:write("still being uploaded"))
fresh:close()

local stale = assert(store:start("examples/purge"))
assert(stale:write("abandoned long ago"))
stale:close()
assert(store:driver():put_content(
	"/docker/registry/v2/repositories/examples/purge/_uploads/" .. stale.uuid .. "/startedat",
	"2020-01-01T00:00:00Z"))

for _, u in ipairs(store:uploads()) do
	print(("upload %s/%s started %s, %d bytes"):format(u.repo, u.uuid,
		os.date("!%Y-%m-%d", u.started_at), u.size))
end

local would = assert(store:purge{ older_than = WEEK, dry_run = true })
print(("dry run: %d upload(s) would go"):format(#would))
assert(#store:uploads() == 2, "a dry run must not remove anything")

local gone = assert(store:purge{ older_than = WEEK })
for _, u in ipairs(gone) do
	print(("purged %s/%s (%d bytes)"):format(u.repo, u.uuid, u.size))
end
assert(#gone == 1 and gone[1].uuid == stale.uuid)
local left = store:uploads()
assert(#left == 1 and left[1].uuid == fresh.uuid)

store:close()
os.execute("rm -rf '" .. root .. "'")
