-- purge_spec.lua: store:purge{older_than=, dry_run=} against DESIGN.md
-- ("purge") and what the registry gets wrong (distribution-2.8.md section 4
-- and 9.7/9.11): random order, uploads without a usable startedat living
-- forever, orphan hashstates/sha256/0 directories, active uploads removed
-- mid-flight.  Run on the filesystem, C memory and Lua drivers; the cases
-- that need an old modification time use `touch -d` and run on the
-- filesystem only.
local layerup = require "layerup"
local util = require "helpers.util"
local stores = require "helpers.stores"

local V2 = stores.V2
local OLD = "2020-01-01T00:00:00Z"
local OLD_SECS = 1577836800
local HOUR = 3600

local updir = stores.updir

local digest = util.digest

local function by_key(list)
	local out = {}
	for _, item in ipairs(list) do
		out[item.repo .. "@" .. item.uuid] = item
	end
	return out
end

stores.each_driver(function(drv)
	describe("purge on the " .. drv.name .. " driver", function()
		local env = stores.per_test(drv, "purge", { record = true, seed = 7 })

		local function events(name)
			return stores.events(env, name)
		end

		local function exists(path)
			return env.d:stat(path) ~= nil
		end

		-- A closed upload with `data`; startedat rewritten when `started` given.
		local function upload(repo, data, started)
			local u = assert(env.store:start(repo))
			assert(u:write(data or ""))
			assert(u:close())
			if started then
				assert(env.d:put_content(updir(repo, u.uuid, "startedat"), started))
			end
			return u.uuid, u.started_at
		end

		-- Set the modification time of everything under an upload (fs only).
		local function age(repo, uuid, when)
			local dir = env.dir .. updir(repo, uuid)
			assert(os.execute(("find '%s' -exec touch -h -d '%s' {} +"):format(dir, when)))
		end

		it("removes uploads started before the cut-off and keeps young ones", function()
			local old1 = upload("r", "abc", OLD)
			local old2 = upload("lib/r", "", "2021-06-01T12:00:00Z")
			local young = upload("r", "young")
			local res = assert(env.store:purge{ older_than = HOUR })
			assert.equals(2, #res)
			local got = by_key(res)
			assert.same({ repo = "r", uuid = old1, size = 3, started_at = OLD_SECS }, got["r@" .. old1])
			assert.same({ repo = "lib/r", uuid = old2, size = 0, started_at = 1622548800 }, got["lib/r@" .. old2])
			assert.is_false(exists(updir("r", old1)))
			assert.is_false(exists(updir("lib/r", old2)))
			assert.is_true(exists(updir("r", young, "data")))
			local r = assert(env.store:resume("r", young))
			r:close()
			local again = assert(env.store:purge{ older_than = HOUR })
			assert.same({}, again)
		end)

		it("accepts any RFC 3339 startedat (fractional seconds, offsets)", function()
			local a = upload("r", "", "2020-01-01T00:00:00.123456789+02:00")
			local b = upload("r", "", "2020-01-01T00:00:00.5Z")
			local res = by_key(assert(env.store:purge{ older_than = HOUR }))
			assert.equals(OLD_SECS - 2 * HOUR, res["r@" .. a].started_at)
			assert.equals(OLD_SECS, res["r@" .. b].started_at)
		end)

		it("keeps everything with a large older_than and removes all with 0 once they are in the past", function()
			local ids = {}
			for i = 1, 5 do
				ids[i] = upload("r" .. i, "x", OLD)
			end
			assert.same({}, env.store:purge{ older_than = 100 * 365 * 24 * HOUR })
			assert.equals(5, #env.store:uploads())
			assert.equals(5, #env.store:purge{ older_than = 0 })
			assert.same({}, env.store:uploads())
		end)

		it("dry_run returns the same list as the real run and removes nothing", function()
			for _, repo in ipairs({ "b", "a", "a/c", "b", "a" }) do
				upload(repo, "data", OLD)
			end
			local young = upload("a", "y")
			local before = env.store:uploads()
			local dry = assert(env.store:purge{ older_than = HOUR, dry_run = true })
			assert.equals(5, #dry)
			assert.same(before, env.store:uploads())
			for _, e in ipairs(events("purge.delete")) do
				assert.is_true(e.dry_run)
			end
			local real = assert(env.store:purge{ older_than = HOUR })
			assert.same(dry, real)
			local left = env.store:uploads()
			assert.equals(1, #left)
			assert.equals(young, left[1].uuid)
		end)

		it("returns a sorted, deterministic result (repo, then uuid)", function()
			for _ = 1, 4 do
				for _, repo in ipairs({ "zeta", "alpha", "alpha/beta", "m.n" }) do
					upload(repo, "", OLD)
				end
			end
			local res = assert(env.store:purge{ older_than = HOUR, dry_run = true })
			assert.equals(16, #res)
			for i = 2, #res do
				local p, c = res[i - 1], res[i]
				assert.is_true(p.repo < c.repo or (p.repo == c.repo and p.uuid < c.uuid))
			end
			assert.same(res, env.store:purge{ older_than = HOUR })
		end)

		it("never touches _layers, _manifests, blobs or non-uuid upload directories", function()
			local u = assert(env.store:start("keep"))
			assert(u:write("blob"))
			local b = assert(u:finish(digest("blob")))
			local repo = V2 .. "/repositories/keep"
			local keep = {
				[repo .. "/_manifests/revisions/sha256/" .. b.digest:sub(8) .. "/link"] = b.digest,
				[repo .. "/_manifests/tags/latest/current/link"] = b.digest,
				[repo .. "/_uploads/not-a-uuid/startedat"] = OLD,
				[repo .. "/_uploads/not-a-uuid/data"] = "x",
				[repo .. "/_importants/6f1c8a2e-3b4d-4e5f-8a9b-0c1d2e3f4a5b/startedat"] = OLD,
				[V2 .. "/blobs/sha256/aa/" .. string.rep("a", 64) .. "/data"] = "other",
				[V2 .. "/repositories/_uploads/6f1c8a2e-3b4d-4e5f-8a9b-0c1d2e3f4a5b/startedat"] = OLD,
			}
			for path, content in pairs(keep) do
				assert(env.d:put_content(path, content))
			end
			local old = upload("keep", "zz", OLD)
			local res = assert(env.store:purge{ older_than = 0 })
			assert.equals(1, #res)
			assert.equals(old, res[1].uuid)
			for path, content in pairs(keep) do
				assert.equals(content, env.d:get_content(path))
			end
			assert.equals("blob", env.d:get_content(V2 .. "/blobs/sha256/" .. b.digest:sub(8, 9) .. "/" ..
				b.digest:sub(8) .. "/data"))
			assert.equals(b.digest, env.d:get_content(repo .. "/_layers/sha256/" .. b.digest:sub(8) .. "/link"))
		end)

		it("skips an upload held open by a handle, and removes it once released", function()
			local u = assert(env.store:start("held"))
			assert(u:write("abc"))
			assert(env.d:put_content(updir("held", u.uuid, "startedat"), OLD))
			local other = upload("held", "", OLD)
			local res = assert(env.store:purge{ older_than = HOUR })
			assert.equals(1, #res)
			assert.equals(other, res[1].uuid)
			assert.is_true(exists(updir("held", u.uuid, "data")))
			local skips = events("purge.skip")
			assert.equals(1, #skips)
			assert.equals(u.uuid, skips[1].uuid)
			assert.equals("held", skips[1].repo)
			assert.is_string(skips[1].reason)
			assert.equals(4, u:write("d"))
			u:close()
			res = assert(env.store:purge{ older_than = HOUR })
			assert.equals(1, #res)
			assert.equals(u.uuid, res[1].uuid)
			assert.equals(4, res[1].size)
			assert.is_false(exists(updir("held", u.uuid)))
		end)

		it("keeps a young upload whose startedat is missing or corrupt", function()
			local missing = upload("m", "abc")
			assert(env.d:delete(updir("m", missing, "startedat")))
			upload("m", "abc", OLD .. "\n") -- corrupt: a trailing newline
			upload("m", "abc", "yesterday")
			assert.same({}, env.store:purge{ older_than = HOUR })
			assert.equals(3, #env.store:uploads("m"))
			-- their age is their modification time: now
			for _, item in ipairs(env.store:uploads("m")) do
				assert.is_true(math.abs(item.started_at - os.time()) <= 60)
			end
		end)

		it("logs purge.delete with the upload's fields", function()
			local uuid = upload("logged", "abcd", OLD)
			assert(env.store:purge{ older_than = HOUR })
			local ev = events("purge.delete")
			assert.equals(1, #ev)
			assert.same({ repo = "logged", uuid = uuid, started_at = OLD_SECS, size = 4, dry_run = false }, ev[1])
		end)

		it("raises for a missing or negative older_than", function()
			assert.has_error(function() env.store:purge{} end)
			assert.has_error(function() env.store:purge{ older_than = -1 } end)
		end)

		if drv.fs then
			it("removes an old orphan holding only hashstates/sha256/0 and keeps a young one", function()
				local state0 = string.char(0x73, 0x68, 0x61, 0x03) ..
					string.pack(">I4I4I4I4I4I4I4I4", 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
						0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19) .. string.rep("\0", 72)
				assert.equals(108, #state0)
				local old = "0b9e2d6c-1f2a-4b3c-8d4e-5f6a7b8c9d0e"
				local young = "1c0f3e7d-2a3b-4c4d-9e5f-6a7b8c9d0e1f"
				for _, id in ipairs({ old, young }) do
					assert(env.d:put_content(updir("o/p", id, "hashstates/sha256/0"), state0))
				end
				age("o/p", old, "2020-01-01 00:00:00 UTC")
				local listed = by_key(env.store:uploads())
				assert.equals(OLD_SECS, listed["o/p@" .. old].started_at)
				assert.equals(0, listed["o/p@" .. old].size)
				local res = assert(env.store:purge{ older_than = HOUR })
				assert.same({ { repo = "o/p", uuid = old, size = 0, started_at = OLD_SECS } }, res)
				assert.is_false(exists(updir("o/p", old)))
				assert.is_true(exists(updir("o/p", young, "hashstates/sha256/0")))
			end)

			it("falls back to the modification time for a missing or corrupt startedat", function()
				local missing = upload("m", "abc")
				assert(env.d:delete(updir("m", missing, "startedat")))
				local corrupt = upload("m", "abcd", OLD .. "\n")
				local fresh = upload("m", "x", "not a time")
				age("m", missing, "2020-01-01 00:00:00 UTC")
				age("m", corrupt, "2021-01-01 00:00:00 UTC")
				local res = by_key(assert(env.store:purge{ older_than = HOUR }))
				assert.same({ repo = "m", uuid = missing, size = 3, started_at = OLD_SECS }, res["m@" .. missing])
				assert.same({ repo = "m", uuid = corrupt, size = 4, started_at = 1609459200 }, res["m@" .. corrupt])
				assert.is_nil(res["m@" .. fresh])
				assert.is_false(exists(updir("m", missing)))
				assert.is_false(exists(updir("m", corrupt)))
				assert.is_true(exists(updir("m", fresh, "data")))
			end)

			it("ages an upload by its newest file when startedat is unusable", function()
				local uuid = upload("n", "abc")
				assert(env.d:delete(updir("n", uuid, "startedat")))
				age("n", uuid, "2020-01-01 00:00:00 UTC")
				-- recent activity: a new state file
				os.execute(("touch '%s'"):format(env.dir .. updir("n", uuid, "hashstates/sha256/3")))
				assert.same({}, env.store:purge{ older_than = HOUR })
				assert.is_true(exists(updir("n", uuid, "data")))
			end)
		end
	end)
end)
