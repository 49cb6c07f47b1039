-- hashstate_spec.lua: layerup never persists a hash state that does not
-- match the data (issue 8, defect 7), and the trust boundary with the
-- rehash_on_finish store option, on every driver.
--
-- A "registry state" below is what registry 2.8 saves after appending to
-- an upload that had no state at its size: the state of only the bytes it
-- appended, named by their count (reference/distribution-2.8.md 3.1, 3.4).
local layerup = require "layerup"
local util = require "helpers.util"
local stores = require "helpers.stores"
local H = require "helpers.cli"

local updir, blob_path = stores.updir, stores.blob_path
local digest = util.digest

-- Offsets of the hash states of an upload, ascending.
local function states(d, repo, uuid)
	local out = {}
	for _, p in ipairs(d:list(updir(repo, uuid, "hashstates/sha256")) or {}) do
		out[#out + 1] = tonumber(p:match("[^/]+$"))
	end
	table.sort(out)
	return out
end

stores.each_driver(function(drv)
	describe("hash states on the " .. drv.name .. " driver", function()
		local env

		before_each(function()
			math.randomseed(4321)
			env = stores.new(drv, "hashstate")
			env.store = assert(layerup.open(env.d, { log = stores.record(env) }))
		end)

		after_each(function()
			stores.cleanup(env)
			env = nil
		end)

		-- The Go state of sha256(bytes), as layerup writes it on close.
		local function state_of(bytes)
			local u = assert(env.store:start("scratch/state"))
			assert(u:write(bytes))
			assert(u:close())
			local st = assert(env.d:get_content(updir("scratch/state", u.uuid,
				"hashstates/sha256/" .. #bytes)))
			assert(assert(env.store:resume("scratch/state", u.uuid)):cancel())
			return st
		end

		-- layerup writes bytes and dies before its first close: data, no state.
		local function layerup_dies(repo, bytes)
			local u = assert(env.store:start(repo))
			assert(u:write(bytes))
			assert(u:close())
			assert(env.d:delete(updir(repo, u.uuid, "hashstates")))
			return u.uuid
		end

		-- Another writer appends bytes to the upload's data.
		local function append(repo, uuid, bytes)
			local w = assert(env.d:writer(updir(repo, uuid, "data"), true))
			assert(w:write(bytes))
			assert(w:commit())
			w:close()
		end

		for _, case in ipairs {
			{ "aligned", 4096 },
			{ "not aligned", 4096 + 40 },
		} do
			it("a registry 'new bytes only' state (" .. case[1] .. ") never leads to a wrong state", function()
				local repo = "hs/reg"
				local a, m, c = util.random_bytes(100), util.random_bytes(case[2]), util.random_bytes(300)
				local uuid = layerup_dies(repo, a)
				append(repo, uuid, m)
				assert(env.d:put_content(updir(repo, uuid, "hashstates/sha256/" .. #m), state_of(m)))

				local u = assert(env.store:resume(repo, uuid))
				assert.equals(#a + #m, u:size())
				assert(u:write(c))
				assert(u:close())
				local size = #a + #m + #c
				assert.same({ size }, states(env.d, repo, uuid))
				assert.equals(state_of(a .. m .. c),
					env.d:get_content(updir(repo, uuid, "hashstates/sha256/" .. size)))
				-- The exact state is right: finish reads nothing.
				u = assert(env.store:resume(repo, uuid))
				assert.equals(0, u:bytes_reread())
				assert(u:finish(digest(a .. m .. c)))
				assert.equals(0, u:bytes_reread())
			end)
		end

		it("continues an unchecked state over the gap and proves it only when it must persist", function()
			local repo = "hs/own"
			local a, b = util.random_bytes(4096), util.random_bytes(1000)
			local uuid = layerup_dies(repo, a)
			assert(env.d:put_content(updir(repo, uuid, "hashstates/sha256/4096"), state_of(a)))
			append(repo, uuid, b)
			local u = assert(env.store:resume(repo, uuid))
			assert.equals(1000, u:bytes_reread())
			local ev = stores.events(env, "hashstate.unchecked")
			assert.equals(1, #ev)
			assert.equals(4096, ev[1].offset)
			assert(u:close())
			assert.equals(4096, stores.events(env, "hashstate.proved")[1].offset)
			assert.equals(5096, u:bytes_reread())
			assert.same({ 5096 }, states(env.d, repo, uuid))
			u = assert(env.store:resume(repo, uuid))
			assert.equals(0, u:bytes_reread())
			assert(u:finish(digest(a .. b)))
		end)

		describe("trust boundary", function()
			-- A finished-looking upload of data whose exact state was
			-- replaced by the state of other bytes of the same length.
			local function forged(repo)
				local data, other = util.random_bytes(3000), util.random_bytes(3000)
				local u = assert(env.store:start(repo))
				assert(u:write(data))
				assert(u:close())
				assert(env.d:put_content(updir(repo, u.uuid, "hashstates/sha256/3000"), state_of(other)))
				return u.uuid, data, other
			end

			it("without rehash_on_finish a forged exact state is believed (documented), and verify finds the blob", function()
				local uuid, data, other = forged("hs/forged")
				local u = assert(env.store:resume("hs/forged", uuid))
				if drv.s3 then
					-- The S3 writer stores a short upload straight at its
					-- blob (publish) and checks the bytes' SHA-256 against
					-- the digest first (the server checks it again): the
					-- forged state is caught there.
					local ok, err = u:finish(digest(other))
					assert.is_nil(ok)
					assert.equals("DIGEST_INVALID", err.code)
					assert.is_nil(env.d:stat(blob_path(digest(other))))
					assert.is_nil(env.d:stat(blob_path(digest(data))))
					return
				end
				local res = assert(u:finish(digest(other)))
				assert.equals(digest(other), res.digest)
				assert.equals(0, u:bytes_reread())
				assert.equals(data, env.d:get_content(blob_path(digest(other))))
				if env.dir then
					local code, out = H.run { "verify", env.dir }
					assert.equals(3, code, out)
					assert.is_truthy(out:find(digest(other):sub(8), 1, true), out)
				end
			end)

			it("with rehash_on_finish a forged exact state is refused; the upload stays finishable", function()
				local strict = assert(layerup.open(env.d, { rehash_on_finish = true, log = env.log }))
				local uuid, data, other = forged("hs/strict")
				local u = assert(strict:resume("hs/strict", uuid))
				local res, err = u:finish(digest(other))
				assert.is_nil(res)
				assert.equals("DIGEST_INVALID", err.code)
				assert.equals(#data, u:bytes_reread())
				res = assert(u:finish(digest(data)))
				assert.equals(digest(data), res.digest)
				assert.equals(data, env.d:get_content(blob_path(res.digest)))
				assert.is_nil(env.d:stat(blob_path(digest(other))))
				strict:close()
			end)

			it("with rehash_on_finish a refused upload can be cancelled", function()
				local strict = assert(layerup.open(env.d, { rehash_on_finish = true }))
				local uuid, _, other = forged("hs/cancel")
				local u = assert(strict:resume("hs/cancel", uuid))
				local res, err = u:finish(digest(other))
				assert.is_nil(res)
				assert.equals("DIGEST_INVALID", err.code)
				assert(u:cancel())
				assert.is_nil(env.d:stat(updir("hs/cancel", uuid)))
				strict:close()
			end)

			it("with rehash_on_finish data rewritten after close (same length) is refused under the old digest", function()
				local strict = assert(layerup.open(env.d, { rehash_on_finish = true }))
				local data, other = util.random_bytes(2000), util.random_bytes(2000)
				local u = assert(env.store:start("hs/rewrite"))
				assert(u:write(data))
				assert(u:close())
				assert(env.d:put_content(updir("hs/rewrite", u.uuid, "data"), other))
				u = assert(strict:resume("hs/rewrite", u.uuid))
				local res, err = u:finish(digest(data))
				assert.is_nil(res)
				assert.equals("DIGEST_INVALID", err.code)
				res = assert(u:finish(digest(other)))
				assert.equals(digest(other), res.digest)
				strict:close()
			end)

			it("rehash_on_finish must be a boolean", function()
				local ok, err = pcall(layerup.open, env.d, { rehash_on_finish = "yes" })
				assert.is_false(ok)
				assert.is_truthy(tostring(err):find("option 'rehash_on_finish' must be a boolean", 1, true), err)
				assert(layerup.open(env.d, { rehash_on_finish = false })):close()
			end)
		end)
	end)
end)
