-- finish_restart_spec.lua: a finish that fails after the data has moved
-- into blobs/ can be completed by any handle or process (issue 8, defect
-- 4), every finish verifies the digest it is given (defect 5), and a
-- SIGKILL before any driver operation of a finish leaves a store that one
-- retry (or purge) brings to a clean tree.
local layerup = require "layerup"
local faults = require "layerup.middleware.faults"
local util = require "helpers.util"
local stores = require "helpers.stores"
local H = require "helpers.cli"

local updir, blob_path, link_path = stores.updir, stores.blob_path, stores.link_path
local digest = util.digest

local function exists(d, path)
	return d:stat(path) ~= nil
end

-- A digest of alg that is well formed but wrong.
local function wrong(alg, len)
	return alg .. ":" .. ("ab"):rep(math.floor(len / 2))
end

stores.each_driver(function(drv)
	describe("finish restart on the " .. drv.name .. " driver", function()
		local env = stores.per_test(drv, "restart", { record = true })

		-- An upload of data whose finish failed on its first link write;
		-- returns the failed handle and its uuid.
		local function failed_after_move(repo, data, dg)
			local fd = faults(env.d, { op = "put_content", path = "/link$", nth = 1 })
			local s = layerup.open(fd, { log = env.log })
			local u = assert(s:start(repo))
			assert(u:write(data))
			local ok, err = u:finish(dg or digest(data))
			assert.is_nil(ok)
			assert.equals("IO", err.code)
			-- the data is in blobs/, no link yet, the upload is still there
			assert.is_true(exists(env.d, blob_path(digest(data))))
			assert.is_false(exists(env.d, link_path(repo, digest(data))))
			assert.is_false(exists(env.d, updir(repo, u.uuid, "data")))
			assert.is_true(exists(env.d, updir(repo, u.uuid, "startedat")))
			return u, u.uuid, s
		end

		it("is completed by a new handle on another store after a link write failed", function()
			local data = util.random_bytes(5000)
			local u, uuid = failed_after_move("r/a", data)
			u:close()
			local s2 = layerup.open(env.d)
			local r = assert(s2:resume("r/a", uuid))
			assert.equals(5000, r:size())
			-- a moved upload takes no more bytes
			local ok, err = r:write("x")
			assert.is_nil(ok)
			assert.equals("BLOB_UPLOAD_INVALID", err.code)
			local res = assert(r:finish(digest(data)))
			assert.equals(digest(data), res.digest)
			assert.equals(5000, res.size)
			assert.equals(digest(data), env.d:get_content(link_path("r/a", digest(data))))
			assert.equals(data, env.d:get_content(blob_path(digest(data))))
			assert.is_false(exists(env.d, updir("r/a", uuid)))
			s2:close()
		end)

		it("is locked against a second handle while the failed one is open", function()
			local data = "locked out"
			local u, uuid = failed_after_move("r/l", data)
			local r, err = env.store:resume("r/l", uuid)
			assert.is_nil(r)
			assert.equals("LOCKED", err.code)
			-- the same handle can still complete it
			assert(u:finish(digest(data)))
			assert.is_false(exists(env.d, updir("r/l", uuid)))
		end)

		it("checks the digest given on a resumed moved upload (sha256, sha512, sha384)", function()
			local data = util.random_bytes(300)
			local u, uuid = failed_after_move("r/d", data)
			u:close()
			local r = assert(env.store:resume("r/d", uuid))
			for _, bad in ipairs { wrong("sha256", 64), wrong("sha512", 128), wrong("sha384", 96) } do
				local ok, err = r:finish(bad)
				assert.is_nil(ok, bad)
				assert.equals("DIGEST_INVALID", err.code)
			end
			local ok, err = r:finish(digest(data), { size = 301 })
			assert.is_nil(ok)
			assert.equals("SIZE_INVALID", err.code)
			local res = assert(r:finish(digest(data, "sha512")))
			assert.equals(digest(data), res.digest)
			assert.equals(digest(data), env.d:get_content(link_path("r/d", digest(data, "sha512"))))
			assert.equals(digest(data), env.d:get_content(link_path("r/d", digest(data))))
			assert.is_false(exists(env.d, updir("r/d", uuid)))
		end)

		for _, alg in ipairs { "sha512", "sha384" } do
			it("rejects a wrong " .. alg .. " alias on a second finish of the same handle (defect 5)", function()
				local data = "alias " .. alg
				local u = failed_after_move("r/" .. alg, data)
				local bad = wrong(alg, alg == "sha512" and 128 or 96)
				local ok, err = u:finish(bad)
				assert.is_nil(ok)
				assert.equals("DIGEST_INVALID", err.code)
				-- and again: the second failure changes nothing
				ok, err = u:finish(bad)
				assert.is_nil(ok)
				assert.equals("DIGEST_INVALID", err.code)
				assert.is_nil(env.d:get_content(link_path("r/" .. alg, bad)))
				local res = assert(u:finish(digest(data, alg)))
				assert.equals(digest(data), res.digest)
			end)
		end

		it("checks an alias first given on the failed finish the same way", function()
			local data = "first alias"
			local u = failed_after_move("r/f", data, digest(data, "sha512"))
			local ok, err = u:finish(wrong("sha512", 128))
			assert.is_nil(ok)
			assert.equals("DIGEST_INVALID", err.code)
			assert(u:finish(digest(data, "sha512")))
		end)

		it("lets cancel remove a moved upload, after which finish is unknown", function()
			local data = "cancel me"
			local u, uuid = failed_after_move("r/c", data)
			u:close()
			local r = assert(env.store:resume("r/c", uuid))
			assert(r:cancel())
			assert.is_false(exists(env.d, updir("r/c", uuid)))
			local r2, err = env.store:resume("r/c", uuid)
			assert.is_nil(r2)
			assert.equals("BLOB_UPLOAD_UNKNOWN", err.code)
		end)

		it("is purged like any upload", function()
			local u, uuid = failed_after_move("r/p", "purge me")
			u:close()
			assert(env.d:put_content(updir("r/p", uuid, "startedat"), "2020-01-01T00:00:00Z"))
			local res = assert(env.store:purge { older_than = 3600 })
			assert.equals(1, #res)
			assert.is_false(exists(env.d, updir("r/p", uuid)))
		end)

		it("re-hashes the blob of a moved upload under rehash_on_finish", function()
			local data = util.random_bytes(777)
			local u, uuid = failed_after_move("r/h", data)
			u:close()
			local s2 = layerup.open(env.d, { rehash_on_finish = true })
			local r = assert(s2:resume("r/h", uuid))
			local ok, err = r:finish(wrong("sha256", 64))
			assert.is_nil(ok)
			assert.equals("DIGEST_INVALID", err.code)
			local before = r:bytes_reread()
			assert(r:finish(digest(data)))
			assert.equals(777, r:bytes_reread() - before)
			s2:close()
		end)

		it("refuses a moved upload whose blob no longer hashes to its name (rehash_on_finish)", function()
			local data = "soon corrupt"
			local u, uuid = failed_after_move("r/x", data)
			u:close()
			assert(env.d:put_content(blob_path(digest(data)), "soon c0rrupt"))
			local s2 = layerup.open(env.d, { rehash_on_finish = true })
			local r = assert(s2:resume("r/x", uuid))
			local ok, err = r:finish(digest(data))
			assert.is_nil(ok)
			assert.equals("BLOB_UPLOAD_INVALID", err.code)
			assert.is_nil(env.d:get_content(link_path("r/x", digest(data))))
			s2:close()
		end)

		it("does not take a state whose blob is missing for a moved upload", function()
			local u, uuid = failed_after_move("r/m", "vanished blob")
			u:close()
			assert(env.d:delete(blob_path(digest("vanished blob")):match("^(.*)/data$")))
			local r, err = env.store:resume("r/m", uuid)
			assert.is_nil(r)
			assert.equals("BLOB_UPLOAD_UNKNOWN", err.code)
		end)

		-- A finish that stored the blob straight from its writer (the S3
		-- writer's publish) and died before the upload was removed: the
		-- data never got the bytes, the proof above its size names the
		-- blob.  The state of `bytes`, as close writes it:
		local function state_of(bytes)
			local s = assert(env.store:start("scratch/state"))
			assert(s:write(bytes))
			assert(s:close())
			local st = assert(env.d:get_content(updir("scratch/state", s.uuid,
				"hashstates/sha256/" .. #bytes)))
			assert(assert(env.store:resume("scratch/state", s.uuid)):cancel())
			return st
		end

		local function published_then_died(repo, data, stored)
			local u = assert(env.store:start(repo))
			assert(u:close()) -- data exists, empty
			assert(env.d:put_content(updir(repo, u.uuid, "hashstates/sha256/" .. #data), state_of(data)))
			if stored then
				assert(env.d:put_content(blob_path(digest(data)), stored))
			end
			return u.uuid
		end

		it("finds an upload moved by a proof above its data size whose blob exists", function()
			local data = util.random_bytes(5000)
			local uuid = published_then_died("r/p", data, data)
			local r = assert(env.store:resume("r/p", uuid))
			assert.equals(5000, r:size())
			local ok, err = r:write("x")
			assert.is_nil(ok)
			assert.equals("BLOB_UPLOAD_INVALID", err.code)
			ok, err = r:finish(wrong("sha256", 64))
			assert.is_nil(ok)
			assert.equals("DIGEST_INVALID", err.code)
			local res = assert(r:finish(digest(data)))
			assert.equals(5000, res.size)
			assert.equals(digest(data), env.d:get_content(link_path("r/p", digest(data))))
			assert.equals(data, env.d:get_content(blob_path(digest(data))))
			assert.is_false(exists(env.d, updir("r/p", uuid)))
		end)

		it("drops a state above the data size whose blob is missing or of another size", function()
			for _, stored in ipairs { false, "short" } do
				local data = util.random_bytes(3000)
				local uuid = published_then_died("r/q", data, stored)
				local r = assert(env.store:resume("r/q", uuid))
				assert.equals(0, r:size())
				assert(r:write(data))
				assert(r:finish(digest(data)))
			end
		end)
	end)
end)

describe("finish killed before each driver operation (filesystem, separate process)", function()
	local LUA = os.getenv("LUA") or "lua5.4"
	local CHILD = "spec/helpers/lifecycle_child.lua"

	local function run_child(root, repo, k, data, uuid)
		local p = assert(io.popen(("%s %s kill %s %s %d %s %s 2>&1"):format(LUA, CHILD,
			H.quote(root), repo, k, H.quote(data), uuid or "")))
		local text = p:read("a")
		p:close()
		return text:match("^(%x+%-[%x%-]+)\n"), text
	end

	for _, flow in ipairs { "started", "resumed" } do
		it("leaves a store that one resume + finish (or purge) brings to a clean tree (" .. flow .. " upload)", function()
			local data = "killed while finishing " .. flow
			local dg = digest(data)
			local finished_in_child, kills = false, 0
			for k = 1, 60 do
				local root = util.tmpdir("kill")
				local staged
				if flow == "resumed" then
					-- written and closed by another process first: the
					-- finish starts from the state saved by close
					local s0 = layerup.open(layerup.filesystem(root))
					local u0 = assert(s0:start("k/r"))
					assert(u0:write(data))
					assert(u0:close())
					staged = u0.uuid
					s0:close()
				end
				local uuid, text = run_child(root, "k/r", k, data, staged)
				assert.is_string(uuid, text)
				local store = layerup.open(layerup.filesystem(root))
				local d = store:driver()
				if text:find("\ndone\n", 1, true) then
					finished_in_child = true
				else
					assert.is_nil(text:find("failed", 1, true), text)
					kills = kills + 1
					local r, err = store:resume("k/r", uuid)
					if r then
						local res = assert(r:finish(dg))
						assert.equals(dg, res.digest)
					else
						-- killed after the links were written, while the
						-- upload was being removed
						assert.equals("BLOB_UPLOAD_UNKNOWN", err.code, "k=" .. k)
						assert.equals(dg, d:get_content(link_path("k/r", dg)))
						if exists(d, updir("k/r", uuid)) then
							os.execute("find " .. H.quote(root) .. " -exec touch -h -d 2020-01-01 {} +")
							assert(store:purge { older_than = 3600 })
						end
					end
				end
				assert.equals(dg, d:get_content(link_path("k/r", dg)))
				assert.equals(data, d:get_content(blob_path(dg)))
				assert.is_false(exists(d, updir("k/r", uuid)), "k=" .. k)
				local code, out = H.run { "verify", root }
				assert.equals(0, code, "k=" .. k .. ": " .. out)
				store:close()
				util.rm_rf(root)
				if finished_in_child then break end
			end
			assert.is_true(finished_in_child)
			assert.is_true(kills >= 5)
		end)
	end
end)
