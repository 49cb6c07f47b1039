-- The Lua/C boundary of the binding (issue 8 defects 8 and 9, issue 9
-- "Lua surface"): policies that raise or return hostile values, numbers
-- that do not fit, stores closed under live uploads, open() options, the
-- one error type, and admission with the expected size.

local layerup = require "layerup"
local util = require "helpers.util"
local vm = require "helpers.vm"

local ERR_MT = getmetatable(layerup.error("IO", "x"))

local function new_root()
	return util.tmpdir("boundary")
end

local function exists(path)
	local f = io.open(path)
	if f then
		f:close()
	end
	return f ~= nil
end

local V2 = "/docker/registry/v2"

local function link_file(root, repo, digest)
	return root .. V2 .. "/repositories/" .. repo .. "/_layers/sha256/" .. digest:sub(8) .. "/link"
end

local function uploads_dir(root, repo)
	return root .. V2 .. "/repositories/" .. repo .. "/_uploads"
end

-- A list whose # raises.
local function bad_len_list()
	return setmetatable({}, { __len = function() error("len exploded") end })
end

-- A list whose entries raise.
local function bad_index_list()
	return setmetatable({}, {
		__len = function() return 1 end,
		__index = function() error("index exploded") end,
	})
end

describe("policy calls from C", function()
	local root
	before_each(function() root = new_root() end)
	after_each(function() util.rm_rf(root) end)

	for name, make in pairs({ ["__len"] = bad_len_list, ["__index"] = bad_index_list }) do
		it("a link result whose " .. name .. " raises gives nil, err from finish, and the upload can still finish", function()
			if vm.only54("LuaJIT ignores __len on tables (the list looks empty)") then return end
			local bad = true
			local store = assert(layerup.open(root, {
				link = function(ctx)
					if bad then
						return make()
					end
					return layerup.link.default(ctx)
				end,
			}))
			local u = assert(store:start("a/b"))
			assert(u:write("hello"))
			local d = util.digest("hello")
			local ok, r, err = pcall(u.finish, u, d)
			assert.is_true(ok, "finish raised: " .. tostring(r))
			assert.is_nil(r)
			assert.are.equal(ERR_MT, getmetatable(err))
			assert.are.equal("IO", err.code)
			assert.truthy(err.message:find("exploded", 1, true), err.message)
			bad = false
			-- the policy bridge is not left pointing at a dead call
			local co = coroutine.wrap(function() return store:uploads("a/b") end)
			assert.are.equal(1, #co())
			local b = assert(u:finish(d))
			assert.are.equal(d, b.digest)
			assert.is_true(exists(link_file(root, "a/b", d)))
		end)
	end

	it("a link result whose __len raises leaves the upload cancellable", function()
		if vm.only54("LuaJIT ignores __len on tables (the list looks empty)") then return end
		local store = assert(layerup.open(root, { link = bad_len_list }))
		local u = assert(store:start("a/b"))
		assert(u:write("x"))
		assert.is_nil((u:finish(util.digest("x"))))
		assert.is_true(u:cancel())
		assert.are.same({}, store:uploads())
	end)

	it("an admit policy whose reason has a raising __tostring refuses cleanly", function()
		local reason = setmetatable({}, { __tostring = function() error("tostring exploded") end })
		local store = assert(layerup.open(root, { admit = function() return false, reason end }))
		local ok, u, err = pcall(store.start, store, "a/b")
		assert.is_true(ok, tostring(u))
		assert.is_nil(u)
		assert.are.equal("DENIED", err.code)
		assert.truthy(err.message:find("exploded", 1, true), err.message)
	end)

	describe("retry delays", function()
		-- One transient failure on the first put_content, a retry policy
		-- answering `delay`, and a sleep hook that records instead of sleeping.
		local function run(delay, policy)
			local faults = require "layerup.middleware.faults"
			local d = faults(layerup.filesystem(root), { op = "put_content", nth = 1, transient = true })
			local slept = {}
			local store = assert(layerup.open(d, {
				retry = policy or function() return delay end,
				sleep = function(s) slept[#slept + 1] = s end,
			}))
			local u, err = store:start("a/b")
			if u then
				u:cancel()
			end
			return u, err, slept, store:stats()
		end

		for _, case in ipairs({ { "NaN", 0 / 0 }, { "inf", math.huge }, { "1e300", 1e300 }, { "2 hours", 7200 } }) do
			it("a retry policy answering " .. case[1] .. " gives up (counted) instead of sleeping", function()
				local u, err, slept, stats = run(case[2])
				assert.is_nil(u)
				assert.are.equal("IO", err.code)
				assert.are.same({}, slept)
				assert.are.equal(1, stats.retry_errors)
			end)
		end

		it("a negative delay counts as 0", function()
			local u, _, slept, stats = run(-5)
			assert.is_not_nil(u)
			assert.are.same({ 0 }, slept)
			assert.are.equal(0, stats.retry_errors)
		end)

		it("a retry policy that raises gives up (counted)", function()
			local u, err, slept, stats = run(nil, function() error("policy bug") end)
			assert.is_nil(u)
			assert.are.equal("IO", err.code)
			assert.are.same({}, slept)
			assert.are.equal(1, stats.retry_errors)
		end)

		it("a retry policy answering nil gives up (not counted)", function()
			local u, _, _, stats = run(nil)
			assert.is_nil(u)
			assert.are.equal(0, stats.retry_errors)
		end)
	end)

	describe("a failing log hook", function()
		it("never fails an upload and is counted in store:stats().log_errors", function()
			local store = assert(layerup.open(root, { log = function() error("sink down") end }))
			local u = assert(store:start("a/b"))
			assert(u:write("abc"))
			assert(u:finish(util.digest("abc")))
			assert.is_true(store:stats().log_errors >= 2)
		end)

		it("is reported on stderr once per store", function()
			local script = [[
				local layerup = require "layerup"
				local root = arg[1]
				for _ = 1, 2 do
					local store = assert(layerup.open(root, { log = function() error("sink down") end }))
					for _ = 1, 3 do
						local u = assert(store:start("a/b"))
						assert(u:write("abc"))
						assert(u:finish((layerup.hasher("sha256"):update("abc"):digest())))
					end
					io.stdout:write(store:stats().log_errors, "\n")
				end
			]]
			local path = root .. "/script.lua"
			local f = assert(io.open(path, "w"))
			f:write(script)
			f:close()
			local p = assert(io.popen(("%s %s %s 2>%s/err"):format(os.getenv("LUA") or "lua5.4", path, root, root)))
			local out = p:read("a")
			assert.is_true(p:close())
			local err = util.read_file(root .. "/err")
			local _, lines = err:gsub("the log hook failed", "")
			assert.are.equal(2, lines, err) -- one per store
			assert.truthy(err:find("sink down", 1, true))
			for n in out:gmatch("%d+") do
				assert.is_true(tonumber(n) >= 6, out)
			end
		end)
	end)
end)

describe("numbers at the binding boundary", function()
	local root, store
	before_each(function()
		root = new_root()
		store = assert(layerup.open(root))
	end)
	after_each(function() util.rm_rf(root) end)

	local function raises(pattern, fn, ...)
		local ok, err = pcall(fn, ...)
		assert.is_false(ok, "did not raise")
		assert.truthy(tostring(err):find(pattern), tostring(err))
	end

	for _, v in ipairs({ 0 / 0, math.huge, -1, -math.huge, 2 ^ 62, math.maxinteger, 1e300 }) do
		it("purge{older_than = " .. tostring(v) .. "} is an argument error", function()
			raises("older_than must be between 0 and 2%^53", store.purge, store, { older_than = v })
		end)
	end

	it("purge takes fractional ages (rounded up) and 2^53", function()
		assert.are.same({}, store:purge({ older_than = 0.5 }))
		assert.are.same({}, store:purge({ older_than = 2 ^ 53 }))
	end)

	it("purge without older_than is an argument error", function()
		raises("needs older_than", store.purge, store, {})
		raises("older_than must be a number", store.purge, store, { older_than = "1h" })
	end)

	for _, v in ipairs({ math.maxinteger, 2 ^ 60, 0 / 0, -1, 1.5, math.huge }) do
		it("finish{size = " .. tostring(v) .. "} is an argument error", function()
			local u = assert(store:start("a/b"))
			raises("size must be", u.finish, u, util.digest(""), { size = v })
			assert.is_true(u:cancel())
		end)
	end

	it("write_at with a NaN or fractional offset raises; a wild integer offset is RANGE_INVALID", function()
		local u = assert(store:start("a/b"))
		raises("integer", u.write_at, u, 0 / 0, "x")
		raises("integer", u.write_at, u, 0.5, "x")
		local n, err = u:write_at(math.maxinteger, "x")
		assert.is_nil(n)
		assert.are.equal("RANGE_INVALID", err.code)
		assert.is_true(u:cancel())
	end)

	it("read_from rejects hostile chunk sizes and limits", function()
		local u = assert(store:start("a/b"))
		local f = assert(io.open("/dev/null", "rb"))
		raises("chunk size", u.read_from, u, f, math.maxinteger)
		raises("chunk size", u.read_from, u, f, 0)
		raises("chunk size", u.read_from, u, f, 0 / 0)
		raises("limit must be", u.read_from, u, f, nil, math.maxinteger)
		raises("limit must be", u.read_from, u, f, nil, -1)
		raises("limit must be", u.read_from, u, f, nil, 0 / 0)
		assert.are.equal(0, u:read_from(f, nil, 2 ^ 53))
		f:close()
		assert.is_true(u:cancel())
	end)

	for _, key in ipairs({ "max_size", "max_age" }) do
		for _, v in ipairs({ math.maxinteger, 0 / 0, -1, math.huge }) do
			it("open{" .. key .. " = " .. tostring(v) .. "} names the option", function()
				raises("option '" .. key .. "' must be between 0 and 2%^53", layerup.open, root, { [key] = v })
				raises("option '" .. key .. "' must be between 0 and 2%^53", layerup.core.open, root, { [key] = v })
			end)
		end
	end

	it("start{size = ...} is range-checked", function()
		raises("size must be", store.start, store, "a/b", { size = -1 })
		raises("size must be", store.start, store, "a/b", { size = math.maxinteger })
		raises("unknown option 'sise'", store.start, store, "a/b", { sise = 1 })
	end)
end)

describe("closing a store under live uploads", function()
	local root
	before_each(function() root = new_root() end)
	after_each(function() util.rm_rf(root) end)

	local function linked_store(calls)
		return assert(layerup.open(root, {
			link = function(ctx)
				calls[#calls + 1] = ctx.repo
				return layerup.link.mirror("mirror/all")(ctx)
			end,
		}))
	end

	it("<close> behaves like close(): a later finish still runs the link policy", function()
		if vm.only54("to-be-closed variables") then return end
		local calls = {}
		local run = assert(load([[
			local linked_store = ...
			local u
			do
				local store <close> = linked_store()
				u = assert(store:start("a/b"))
				assert(u:write("payload"))
			end
			return u
		]]))
		local u = run(function() return linked_store(calls) end)
		local d = util.digest("payload")
		local b, err = u:finish(d)
		assert.is_nil(err)
		assert.are.equal(d, b.digest)
		assert.are.same({ "a/b" }, calls)
		assert.is_true(exists(link_file(root, "mirror/all", d)))
	end)

	it("close() then finish works, and the closed store refuses new work", function()
		local calls = {}
		local store = linked_store(calls)
		local u = assert(store:start("a/b"))
		assert(u:write("x"))
		assert.is_true(store:close())
		assert.is_true(store:close()) -- idempotent
		assert.has_error(function() store:start("a/b") end, "attempt to use a closed store")
		assert(u:finish(util.digest("x")))
		assert.are.same({ "a/b" }, calls)
		assert.are.same({ log_errors = 0, retry_errors = 0, sleep_errors = 0 }, store:stats())
	end)

	it("policies live as long as an upload even when the store is collected", function()
		local calls = {}
		local u
		do
			local store = linked_store(calls)
			u = assert(store:start("a/b"))
			assert(u:write("y"))
		end
		collectgarbage()
		collectgarbage()
		assert(u:finish(util.digest("y")))
		assert.are.same({ "a/b" }, calls)
	end)
end)

describe("layerup.open options", function()
	local root
	before_each(function() root = new_root() end)
	after_each(function() util.rm_rf(root) end)

	local function open_error(opts, open)
		local ok, err = pcall(open or layerup.open, root, opts)
		assert.is_false(ok)
		return tostring(err)
	end

	it("rejects unknown keys, naming them", function()
		assert.truthy(open_error({ logger = print }):find("unknown option 'logger'", 1, true))
		assert.truthy(open_error({ logger = print }, layerup.core.open):find("unknown option 'logger'", 1, true))
		assert.truthy(open_error({ [1] = true }):find("option names are strings", 1, true))
	end)

	it("points a misuse error at the caller", function()
		local ok, err = pcall(function()
			local s = layerup.open(root, { logger = print })
			return s
		end)
		assert.is_false(ok)
		err = tostring(err)
		assert.truthy(err:find("lua_boundary_spec.lua:%d+: "), err)
		assert.truthy(err:find("bad argument #2 to 'open'", 1, true), err)
	end)

	it("rejects wrong types, naming the option", function()
		assert.truthy(open_error({ link = 42 }):find("option 'link' must be a function", 1, true))
		assert.truthy(open_error({ fsync = "yes" }):find("option 'fsync' must be a boolean", 1, true))
		assert.truthy(open_error({ max_size = true }):find("option 'max_size' must be a size", 1, true))
		assert.truthy(open_error({ max_size = 1.5 }):find("option 'max_size' must be a whole number", 1, true))
		assert.truthy(open_error("nope"):find("options table expected", 1, true))
	end)

	it("refuses a root with a NUL byte instead of cutting it short", function()
		local ok, err = pcall(layerup.open, root .. "/x\0y")
		assert.is_false(ok)
		assert.truthy(tostring(err):find("NUL", 1, true), tostring(err))
	end)

	it("accepts false for a policy and a callable table", function()
		local callable = setmetatable({}, { __call = function() return true end })
		assert(layerup.open(root, { retry = false, admit = callable }))
	end)

	it("reads size and duration strings with layerup.limits", function()
		local store = assert(layerup.open(root, { max_size = "4KiB", max_age = "1h" }))
		local u = assert(store:start("a/b"))
		assert.are.equal(4096, u:write(("x"):rep(4096)))
		local n, err = u:write("x")
		assert.is_nil(n)
		assert.are.equal("SIZE_INVALID", err.code)
		assert.truthy(err.message:find("4096", 1, true))
		assert.is_true(u:cancel())
	end)

	it("names the option of a bad size string", function()
		local err = open_error({ max_size = "4MiBs" })
		assert.truthy(err:find("option 'max_size'", 1, true), err)
		err = open_error({ max_age = "soon" })
		assert.truthy(err:find("option 'max_age'", 1, true), err)
		-- the C module alone takes numbers only
		err = open_error({ max_size = "4MiB" }, layerup.core.open)
		assert.truthy(err:find("option 'max_size' must be a size in bytes, got string", 1, true), err)
	end)
end)

describe("one error type", function()
	local root
	before_each(function() root = new_root() end)
	after_each(function() util.rm_rf(root) end)

	it("the core, link, limits, middleware and layerup.error share one metatable", function()
		local store = assert(layerup.open(root))
		local _, core_err = store:stat("sha256:nope")
		local _, link_err = layerup.link.read_only("ro")({ repo = "ro/x", canonical = util.digest("") })
		local _, limits_err = layerup.limits.parse_size("lots")
		local mw_err = layerup.middleware.error("LOCKED", "held", { transient = true })
		local faults = require "layerup.middleware.faults"
		local d = faults(layerup.memory(), { op = "put_content", nth = 1 }, { raw = true })
		local _, fault_err = d:put_content("/x", "y")
		for _, e in ipairs({ core_err, link_err, limits_err, mw_err, fault_err, layerup.error("DENIED", "no") }) do
			assert.are.equal(ERR_MT, getmetatable(e))
			assert.is_true(layerup.is_error(e))
			assert.are.equal(e.code .. ": " .. e.message, tostring(e))
		end
		assert.are.equal("DENIED", link_err.code)
		assert.are.equal("INVALID_ARGUMENT", limits_err.code)
		assert.is_true(mw_err.transient)
		assert.are.equal("IO", fault_err.code)
	end)

	it("layerup.error takes fields or a path, and refuses unknown codes", function()
		local e = layerup.error("PATH_NOT_FOUND", "gone", { path = "/x", offset = 3, transient = true })
		assert.are.same({ code = "PATH_NOT_FOUND", message = "gone", path = "/x", offset = 3, transient = true }, e)
		assert.are.equal("/x", layerup.error("IO", "m", "/x").path)
		assert.are.equal("IO: IO", tostring(layerup.error("IO")))
		assert.has_error(function() layerup.error("NOPE", "x") end)
		assert.is_false(layerup.is_error({ code = "IO", message = "x" }))
		assert.is_false(layerup.is_error("IO"))
		assert.is_false(layerup.is_error(nil))
		assert.are.equal("INVALID_ARGUMENT", layerup.error_codes.INVALID_ARGUMENT)
	end)

	it("faults refuses an unknown code when it is built", function()
		local faults = require "layerup.middleware.faults"
		assert.has_error(function()
			faults(layerup.memory(), { op = "put_content", nth = 1, code = "NOPE" })
		end)
	end)
end)

describe("admission with the expected size", function()
	local root
	before_each(function() root = new_root() end)
	after_each(function() util.rm_rf(root) end)

	it("store:start(repo, {size = N}) gives the admit policy ctx.size", function()
		local seen = {}
		local store = assert(layerup.open(root, {
			admit = function(ctx)
				seen[#seen + 1] = ctx
				return true
			end,
		}))
		assert(store:start("a/b", { size = 42 })):cancel()
		assert(store:start("a/b")):cancel()
		assert(store:start("a/b", {})):cancel()
		assert.are.same({ { repo = "a/b", size = 42 }, { repo = "a/b" }, { repo = "a/b" } }, seen)
	end)

	it("limits.repo_max_size refuses a 15 GB push before anything is written", function()
		local store = assert(layerup.open(root, {
			admit = layerup.limits.repo_max_size({ ["big/*"] = "20GB", ["small/**"] = "10GB", ["small/tiny"] = "1KiB" }),
		}))
		local u, err = store:start("small/x", { size = 15e9 })
		assert.is_nil(u)
		assert.are.equal("DENIED", err.code)
		assert.truthy(err.message:find("small/x", 1, true), err.message)
		assert.truthy(err.message:find("small/**", 1, true), err.message)
		assert.is_false(exists(uploads_dir(root, "small/x")))
		-- the smallest matching limit applies
		assert.is_nil((store:start("small/tiny", { size = 1025 })))
		assert(store:start("small/tiny", { size = 1024 })):cancel()
		assert(store:start("big/x", { size = 15e9 })):cancel()
		assert(store:start("other", { size = 15e9 })):cancel()
		-- unknown size: admitted
		assert(store:start("small/x")):cancel()
	end)

	it("limits.repo_max_size{require_size} refuses an unknown size; the link rule checks at finish", function()
		local rules = { { "small/*", 4 } }
		local store = assert(layerup.open(root, {
			admit = layerup.limits.repo_max_size(rules, { require_size = true }),
			link = layerup.limits.repo_max_size_link(rules),
		}))
		local u, err = store:start("small/x")
		assert.is_nil(u)
		assert.truthy(err.message:find("needs the upload size", 1, true), err.message)
		u = assert(store:start("small/x", { size = 3 })) -- declared 3, sends 5
		assert(u:write("12345"))
		local b
		b, err = u:finish(util.digest("12345"))
		assert.is_nil(b)
		assert.are.equal("SIZE_INVALID", err.code)
		assert.has_error(function() layerup.limits.repo_max_size({ ["a"] = "lots" }) end)
	end)

	it("an expected size above the store's max_size is SIZE_INVALID up front", function()
		local admitted = 0
		local store = assert(layerup.open(root, {
			max_size = 10,
			admit = function() admitted = admitted + 1 return true end,
		}))
		local u, err = store:start("a/b", { size = 11 })
		assert.is_nil(u)
		assert.are.equal("SIZE_INVALID", err.code)
		assert.are.equal(0, admitted)
		assert(store:start("a/b", { size = 10 })):cancel()
		assert.are.equal(1, admitted)
	end)
end)
