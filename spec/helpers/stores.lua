-- helpers/stores.lua: the drivers the store-level specs run on (filesystem
-- in a temp dir, the C memory driver, the pure-Lua helpers/memdriver.lua)
-- and the per-test construction and cleanup of a store on one of them.
--
--   stores.each_driver(function(drv)
--     describe("x on the " .. drv.name .. " driver", function()
--       before_each(function()
--         env = stores.new(drv, "x")
--         env.store = layerup.open(env.d, { log = stores.record(env) })
--       end)
--       after_each(function() stores.cleanup(env); env = nil end)
--     end)
--   end)
local layerup = require "layerup"
local util = require "helpers.util"
local memdriver = require "helpers.memdriver"
local s3env = require "helpers.s3env"

local stores = {}

stores.drivers = {
	{ name = "filesystem", fs = true },
	{ name = "memory" },
	{ name = "lua" },
}
-- The S3 driver on the test server, when spec/run started one.
if s3env.options() then
	stores.drivers[#stores.drivers + 1] = { name = "s3", s3 = true }
end

-- Where the registry layout (reference/distribution-2.8.md section 1) puts
-- things, written out independently of the library's own layout code.
stores.V2 = "/docker/registry/v2"

-- An upload's directory, or the file leaf inside it.
function stores.updir(repo, uuid, leaf)
	return stores.V2 .. "/repositories/" .. repo .. "/_uploads/" .. uuid .. (leaf and "/" .. leaf or "")
end

-- The data file of a sha256 blob.
function stores.blob_path(digest)
	local hex = digest:match("^sha256:(%x+)$")
	return stores.V2 .. "/blobs/sha256/" .. hex:sub(1, 2) .. "/" .. hex .. "/data"
end

-- The layer link of digest in repo.
function stores.link_path(repo, digest)
	local alg, hex = digest:match("^(%w+):(%x+)$")
	return stores.V2 .. "/repositories/" .. repo .. "/_layers/" .. alg .. "/" .. hex .. "/link"
end

-- Call fn(drv) for each driver, or only for those whose names are in the
-- list only.
function stores.each_driver(fn, only)
	for _, drv in ipairs(stores.drivers) do
		local wanted = only == nil
		for _, name in ipairs(only or {}) do
			wanted = wanted or name == drv.name
		end
		if wanted then
			fn(drv)
		end
	end
end

-- A new, empty driver of kind drv; the filesystem one is rooted at dir.
function stores.driver(drv, dir)
	if drv.fs then
		return layerup.filesystem(dir)
	elseif drv.name == "memory" then
		return layerup.memory()
	elseif drv.s3 then
		return assert(layerup.s3(s3env.options { prefix = s3env.prefix("store") }))
	end
	return layerup.driver(memdriver.new())
end

-- A fresh environment {d=, dir=} for one test: dir (filesystem only) is a
-- new temp directory named after tag that stores.cleanup removes.
function stores.new(drv, tag)
	local env = {}
	if drv.fs then
		env.dir = util.tmpdir(tag)
	end
	env.d = stores.driver(drv, env.dir)
	return env
end

-- The environment of each test in the describe block this is called in:
-- before each test a fresh stores.new(drv, tag) with env.store open on it
-- (its log recorded with stores.record when opts.record; math.randomseed
-- (opts.seed) first when given), after each stores.cleanup.  The table
-- returned is that env, refilled for every test.
function stores.per_test(drv, tag, opts)
	opts = opts or {}
	local busted = require "busted" -- before_each is not a global here
	local env = {}
	local function clear()
		for k in pairs(env) do
			env[k] = nil
		end
	end
	busted.before_each(function()
		clear()
		if opts.seed then
			math.randomseed(opts.seed)
		end
		local fresh = stores.new(drv, tag)
		env.dir, env.d = fresh.dir, fresh.d
		if opts.record then
			env.store = layerup.open(env.d, { log = stores.record(env) })
		else
			env.store = layerup.open(env.d)
		end
	end)
	busted.after_each(function()
		stores.cleanup(env)
		clear()
	end)
	return env
end

-- Record the log events of a store in env.events ({event=, fields=} in
-- order); returns the log function, also kept as env.log.
function stores.record(env)
	env.events = {}
	env.log = function(event, fields)
		env.events[#env.events + 1] = { event = event, fields = fields }
	end
	return env.log
end

-- The fields of the events named name that env recorded, in order.
function stores.events(env, name)
	local out = {}
	for _, e in ipairs(env.events) do
		if e.event == name then
			out[#out + 1] = e.fields
		end
	end
	return out
end

-- Close env.store, let the collector release the handles, then remove
-- env.dir when there is one.
function stores.cleanup(env)
	env.store:close()
	env.store = nil
	collectgarbage()
	collectgarbage()
	if env.dir then
		util.rm_rf(env.dir)
	end
end

return stores
