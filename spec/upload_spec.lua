-- upload_spec.lua: the upload lifecycle (start, write, close, resume,
-- finish, cancel) against DESIGN.md "Upload semantics" and the registry
-- facts in reference/distribution-2.8.md (sections 1-3, 9.11), on the
-- filesystem driver, the C memory driver and a pure-Lua driver.
local layerup = require "layerup"
local util = require "helpers.util"
local vm = require "helpers.vm"
local counting = require "helpers.counting"
local stores = require "helpers.stores"

local V2 = stores.V2
local EMPTY = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

local updir, blob_path, link_path = stores.updir, stores.blob_path, stores.link_path

local digest = util.digest

-- Offsets of the hash states of an upload, ascending ({} when none).
local function states(d, repo, uuid)
	local list = d:list(updir(repo, uuid, "hashstates/sha256"))
	local out = {}
	for _, p in ipairs(list or {}) do
		out[#out + 1] = math.tointeger(tonumber(p:match("[^/]+$")))
	end
	table.sort(out)
	return out
end

local function exists(d, path)
	return d:stat(path) ~= nil
end

local samples_dir, read_file = util.samples_dir, util.read_file

stores.each_driver(function(drv)
	describe("upload on the " .. drv.name .. " driver", function()
		-- A fresh store per test: env.d (driver), env.store, env.events.
		local env = stores.per_test(drv, "upload", { record = true, seed = 1234 })

		-- Events named `name`, as field tables.
		local function events(name)
			return stores.events(env, name)
		end

		-- A second store on the same storage, through a counting driver.
		local function counted(opts)
			local tbl, stats = counting.new(env.d, { "/_uploads/", "/blobs/" }, opts)
			local s = layerup.open(layerup.driver(tbl), { log = env.log })
			return s, stats
		end

		-- Upload `parts` in one session and close it; returns uuid, data.
		local function staged(repo, parts)
			local u = assert(env.store:start(repo))
			for _, p in ipairs(parts) do
				assert(u:write(p))
			end
			assert(u:close())
			return u.uuid, table.concat(parts)
		end

		-- An upload of data in two sessions split at cut, keeping the hash
		-- states at cut and at #data (resuming removes the lower one: it is
		-- put back); returns the uuid.
		local function two_states(repo, data, cut)
			local uuid = staged(repo, { data:sub(1, cut) })
			local low_path = updir(repo, uuid, "hashstates/sha256/" .. cut)
			local low = assert(env.d:get_content(low_path))
			local r = assert(env.store:resume(repo, uuid))
			assert(r:write(data:sub(cut + 1)))
			r:close()
			assert(env.d:put_content(low_path, low))
			return uuid
		end

		describe("start", function()
			it("creates a lowercase 8-4-4-4-12 uuid, a 20-byte startedat and empty data", function()
				local before = os.time()
				local u = assert(env.store:start("foo/bar"))
				local after = os.time()
				assert.matches("^%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89ab]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$",
					u.uuid)
				assert.equals(u.uuid:lower(), u.uuid)
				assert.equals("foo/bar", u.repo)
				assert.is_true(u.started_at >= before and u.started_at <= after)
				local sa = assert(env.d:get_content(updir("foo/bar", u.uuid, "startedat")))
				assert.equals(20, #sa)
				assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$", sa)
				assert.equals(os.date("!%Y-%m-%dT%H:%M:%SZ", u.started_at), sa)
				local st = assert(env.d:stat(updir("foo/bar", u.uuid, "data")))
				assert.equals(0, st.size)
				assert.is_false(st.dir)
				assert.equals(0, u:size())
				assert.same({}, states(env.d, "foo/bar", u.uuid))
				u:close()
			end)

			it("gives every upload its own uuid", function()
				local seen = {}
				for _ = 1, 20 do
					local u = assert(env.store:start("r"))
					assert.is_nil(seen[u.uuid])
					seen[u.uuid] = true
					u:close()
				end
			end)

			local hostile = {
				"../x", "Foo", "a//b", "/a", "a/", "-a", "a-", "a..b", "", ".", "..",
				"a/../b", "a/./b", "a b", "a\nb", "_uploads", "a/_uploads", "a__", "a___b",
				"a._b", "a_.b", "A", "ab:1", "a@b", "a%2fb", string.rep("a", 256),
				"a\0b", "a/\0/b",
			}
			for _, name in ipairs(hostile) do
				it(("rejects the repository name %q with NAME_INVALID before any driver call"):format(name), function()
					local s, stats = counted()
					local u, err = s:start(name)
					assert.is_nil(u)
					assert.equals("NAME_INVALID", err.code)
					local r, err2 = s:resume(name, "6f1c8a2e-3b4d-4e5f-8a9b-0c1d2e3f4a5b")
					assert.is_nil(r)
					assert.equals("NAME_INVALID", err2.code)
					assert.equals(0, stats.total_calls())
					s:close()
				end)
			end

			local valid = {
				"a", "a/b/c", "my.org/team-x/app__y", "a-----b", "a_b", "a.b", "0",
				"library/ubuntu", "a1/b2-c3.d4_e5", string.rep("a", 255),
				string.rep("ab/", 84) .. "abc",
			}
			for _, name in ipairs(valid) do
				it(("accepts the repository name %q"):format(#name > 40 and name:sub(1, 20) .. "..." or name), function()
					local u = assert(env.store:start(name))
					assert.equals(name, u.repo)
					assert.is_true(exists(env.d, updir(name, u.uuid, "data")))
					assert(u:write("x"))
					assert(u:finish(digest("x")))
					assert.equals("sha256:" .. digest("x"):sub(8), env.d:get_content(link_path(name, digest("x"))))
				end)
			end
		end)

		describe("write", function()
			it("appends and reports the new size after each write", function()
				local u = assert(env.store:start("w"))
				assert.equals(5, u:write("hello"))
				assert.equals(5, u:size())
				assert.equals(5, u:write(""))
				assert.equals(11, u:write(" world"))
				assert.equals(11, u:size())
				assert.equals(14, u:write_at(11, "!!!"))
				assert.equals(14, u:size())
				u:close()
				assert.equals("hello world!!!", env.d:get_content(updir("w", u.uuid, "data")))
			end)

			it("write_at refuses any offset but the current size with RANGE_INVALID and offset = size", function()
				local u = assert(env.store:start("w"))
				assert(u:write("0123456789"))
				for _, off in ipairs({ 0, 5, 9, 11, 1000, -1 }) do
					local n, err = u:write_at(off, "xx")
					assert.is_nil(n)
					assert.equals("RANGE_INVALID", err.code)
					assert.equals(10, err.offset)
					assert.equals(10, u:size())
				end
				assert.equals(12, u:write_at(10, "ab"))
				u:close()
				assert.equals("0123456789ab", env.d:get_content(updir("w", u.uuid, "data")))
			end)

			it("read_from copies a file handle in chunks", function()
				local data = util.random_bytes(100003)
				local tmp = os.tmpname()
				local f = assert(io.open(tmp, "wb"))
				f:write(data)
				f:close()
				f = assert(io.open(tmp, "rb"))
				local u = assert(env.store:start("rf"))
				assert(u:write("head"))
				assert.equals(#data, u:read_from(f, 4096))
				f:close()
				os.remove(tmp)
				assert.equals(4 + #data, u:size())
				local res = assert(u:finish(digest("head" .. data)))
				assert.equals(4 + #data, res.size)
				assert.equals("head" .. data, env.d:get_content(blob_path(res.digest)))
			end)

			it("read_from copies the chunks a function produces until nil", function()
				local chunks = { "a", "", "bc", util.random_bytes(70000), "d" }
				local i = 0
				local u = assert(env.store:start("rf"))
				local n = u:read_from(function()
					i = i + 1
					return chunks[i]
				end)
				-- "" ends the copy like nil does; what came before is kept.
				assert.equals(1, n)
				assert.equals(1, u:size())
				i = 2
				n = assert(u:read_from(function()
					i = i + 1
					return chunks[i]
				end))
				assert.equals(2 + 70000 + 1, n)
				assert.equals(table.concat(chunks), (function()
					u:close()
					return env.d:get_content(updir("rf", u.uuid, "data"))
				end)())
			end)

			it("read_from returns nil, err when the source fails, keeping what was copied", function()
				local u = assert(env.store:start("rf"))
				local calls = 0
				local n, err, copied = u:read_from(function()
					calls = calls + 1
					if calls <= 2 then
						return "abc"
					end
					return nil, { code = "IO", message = "source broke" }
				end)
				assert.is_nil(n)
				assert.equals("IO", err.code)
				assert.matches("source broke", err.message)
				assert.equals(6, copied)
				assert.equals(6, u:size())
				assert.equals(9, u:write("def"))
				assert(u:finish(digest("abcabcdef")))
			end)

			it("read_from with a string error keeps the message", function()
				local u = assert(env.store:start("rf"))
				local n, err = u:read_from(function() return nil, "nope" end)
				assert.is_nil(n)
				assert.matches("nope", tostring(err))
				assert.equals(0, u:size())
				u:cancel()
			end)
		end)

		describe("close", function()
			it("writes exactly one 108-byte Go state at hashstates/sha256/<size>", function()
				local u = assert(env.store:start("c"))
				local data = util.random_bytes(1000)
				assert(u:write(data:sub(1, 300)))
				assert(u:write(data:sub(301)))
				assert.is_true(u:close())
				assert.same({ 1000 }, states(env.d, "c", u.uuid))
				local st = assert(env.d:get_content(updir("c", u.uuid, "hashstates/sha256/1000")))
				assert.equals(108, #st)
				assert.equals("sha\3", st:sub(1, 4))
				assert.equals(1000, (string.unpack(">I8", st, 101)))
				-- The block holds the pending 1000 % 64 = 40 bytes, then zeros.
				assert.equals(data:sub(961), st:sub(37, 76))
				assert.equals(string.rep("\0", 24), st:sub(77, 100))
			end)

			it("removes the older states on the next close", function()
				local uuid = staged("c", { "abc" })
				assert.same({ 3 }, states(env.d, "c", uuid))
				for _, more in ipairs({ "defg", util.random_bytes(200) }) do
					local u = assert(env.store:resume("c", uuid))
					local size = u:write(more)
					assert(u:close())
					assert.same({ size }, states(env.d, "c", uuid))
				end
			end)

			it("writes no state for zero bytes", function()
				local u = assert(env.store:start("c"))
				assert(u:close())
				assert.same({}, states(env.d, "c", u.uuid))
				local r = assert(env.store:resume("c", u.uuid))
				assert(r:close())
				assert.same({}, states(env.d, "c", u.uuid))
			end)

			it("is idempotent", function()
				local u = assert(env.store:start("c"))
				assert(u:write("x"))
				assert.is_true(u:close())
				assert.is_true(u:close())
				assert.same({ 1 }, states(env.d, "c", u.uuid))
			end)

			it("makes every method but close/cancel raise 'attempt to use a closed upload'", function()
				local u = assert(env.store:start("c"))
				assert(u:write("x"))
				u:close()
				local calls = {
					function() return u:write("y") end,
					function() return u:write_at(1, "y") end,
					function() return u:read_from(function() return nil end) end,
					function() return u:finish(digest("x")) end,
				}
				for _, f in ipairs(calls) do
					local ok, msg = pcall(f)
					assert.is_false(ok)
					assert.matches("attempt to use a closed upload", msg)
				end
				assert.is_true(u:close())
				assert.is_true(u:cancel())
			end)

			it("closes through a to-be-closed variable", function()
				local uuid
				vm.with_close(assert(env.store:start("c")), function(u)
					uuid = u.uuid
					assert(u:write("tbc"))
				end)
				assert.same({ 3 }, states(env.d, "c", uuid))
				local r = assert(env.store:resume("c", uuid)) -- not LOCKED
				assert.equals(3, r:size())
				r:close()
			end)
		end)

		describe("resume", function()
			it("continues at the data size with the same uuid, repo and start time", function()
				local u = assert(env.store:start("r/s"))
				assert(u:write("12345"))
				u:close()
				local r = assert(env.store:resume("r/s", u.uuid))
				assert.equals(5, r:size())
				assert.equals(u.uuid, r.uuid)
				assert.equals("r/s", r.repo)
				assert.equals(u.started_at, r.started_at)
				assert.equals(8, r:write("678"))
				assert(r:finish(digest("12345678")))
			end)

			it("gives BLOB_UPLOAD_UNKNOWN without startedat", function()
				local uuid = staged("r", { "abc" })
				assert(env.d:delete(updir("r", uuid, "startedat")))
				local r, err = env.store:resume("r", uuid)
				assert.is_nil(r)
				assert.equals("BLOB_UPLOAD_UNKNOWN", err.code)
			end)

			it("gives BLOB_UPLOAD_UNKNOWN without data and does not re-create it (9.11)", function()
				local uuid = staged("r", { "abc" })
				assert(env.d:delete(updir("r", uuid, "data")))
				local r, err = env.store:resume("r", uuid)
				assert.is_nil(r)
				assert.equals("BLOB_UPLOAD_UNKNOWN", err.code)
				local st, err2 = env.d:stat(updir("r", uuid, "data"))
				assert.is_nil(st)
				assert.equals("PATH_NOT_FOUND", err2.code)
			end)

			it("gives BLOB_UPLOAD_UNKNOWN for ids that are not lowercase uuids, before any driver call", function()
				local uuid = staged("r", { "abc" })
				local s, stats = counted()
				for _, id in ipairs({ "", "x", uuid:upper(), uuid .. "0", uuid:sub(2), "../" .. uuid,
					"asdf-asdf-asdf-adsf", (uuid:gsub("%-", "_")), "{" .. uuid .. "}", uuid .. "\0",
					uuid .. "\0/../x" }) do
					local r, err = s:resume("r", id)
					assert.is_nil(r)
					assert.equals("BLOB_UPLOAD_UNKNOWN", err.code)
				end
				assert.equals(0, stats.total_calls())
				s:close()
			end)

			it("gives BLOB_UPLOAD_UNKNOWN for an unknown uuid or the wrong repository", function()
				local uuid = staged("right", { "abc" })
				local r, err = env.store:resume("wrong", uuid)
				assert.is_nil(r)
				assert.equals("BLOB_UPLOAD_UNKNOWN", err.code)
				r, err = env.store:resume("right", "00000000-0000-4000-8000-000000000000")
				assert.is_nil(r)
				assert.equals("BLOB_UPLOAD_UNKNOWN", err.code)
			end)

			it("gives LOCKED while another handle holds the upload, and works once it closes", function()
				local u = assert(env.store:start("l"))
				assert(u:write("abc"))
				local r, err = env.store:resume("l", u.uuid)
				assert.is_nil(r)
				assert.equals("LOCKED", err.code)
				-- A second store on the same storage is excluded too.
				local s2 = layerup.open(env.d)
				r, err = s2:resume("l", u.uuid)
				assert.is_nil(r)
				assert.equals("LOCKED", err.code)
				u:close()
				r = assert(env.store:resume("l", u.uuid))
				local r2, err2 = s2:resume("l", u.uuid)
				assert.is_nil(r2)
				assert.equals("LOCKED", err2.code)
				assert.equals(3, r:size())
				r:close()
				r2 = assert(s2:resume("l", u.uuid))
				assert(r2:finish(digest("abc")))
				s2:close()
			end)

			it("restores from the exact state without reading upload data", function()
				local data = util.random_bytes(1500)
				local uuid = staged("x/y", { data:sub(1, 1000), data:sub(1001) })
				local s, stats = counted()
				local r = assert(s:resume("x/y", uuid))
				assert.equals(1500, r:size())
				assert.equals(0, r:bytes_reread())
				assert.equals(0, stats.read["/_uploads/"])
				assert.equals(0, stats.read_total)
				local ev = events("upload.resume")
				assert.equals("exact", ev[#ev].restored)
				assert.equals(0, ev[#ev].bytes_reread)
				assert.equals(1500, ev[#ev].offset)
				local res = assert(r:finish(digest(data)))
				assert.equals(digest(data), res.digest)
				assert.equals(0, r:bytes_reread())
				assert.equals(0, stats.read_total)
				s:close()
			end)

			it("re-reads only the gap after a lower state when the newest is gone", function()
				local data = util.random_bytes(1500)
				local uuid = two_states("g", data, 1000)
				-- states at 1000 and 1500, then delete 1500
				assert.same({ 1000, 1500 }, states(env.d, "g", uuid))
				assert(env.d:delete(updir("g", uuid, "hashstates/sha256/1500")))
				local s, stats = counted()
				local r = assert(s:resume("g", uuid))
				local reread = r:bytes_reread()
				assert.is_true(reread >= 500 and reread <= 500 + 63, "reread " .. reread)
				assert.is_true(stats.read["/_uploads/"] <= 500 + 63)
				assert.equals(reread, stats.read["/_uploads/"])
				local ev = events("upload.resume")
				assert.equals("gap", ev[#ev].restored)
				assert(r:finish(digest(data)))
				assert.equals(reread, r:bytes_reread()) -- finish read nothing more
				s:close()
			end)

			it("without any state, rehashes the data and still takes the right digest only", function()
				local data = util.random_bytes(3000)
				local uuid = staged("n", { data })
				assert(env.d:delete(updir("n", uuid, "hashstates")))
				local r = assert(env.store:resume("n", uuid))
				local ev = events("upload.resume")
				assert.equals("none", ev[#ev].restored)
				local bad, err = r:finish(digest(data .. "x"))
				assert.is_nil(bad)
				assert.equals("DIGEST_INVALID", err.code)
				local res = assert(r:finish(digest(data)))
				assert.equals(3000, res.size)
			end)

			local corruptions = {
				truncated = function(s) return s:sub(1, 100) end,
				["bad magic"] = function(s) return "shaX" .. s:sub(5) end,
				["sha512 magic"] = function(s) return "sha\7" .. s:sub(5) end,
				["random bytes"] = function() return util.random_bytes(108) end,
				empty = function() return "" end,
				["len field != name"] = function(s)
					return s:sub(1, 100) .. string.pack(">I8", string.unpack(">I8", s, 101) - 64)
				end,
				["len field != name, same pending"] = function(s)
					return s:sub(1, 100) .. string.pack(">I8", string.unpack(">I8", s, 101) + 64)
				end,
				["wrong chaining values"] = function(s)
					return s:sub(1, 4) .. string.rep("\1", 32) .. s:sub(37)
				end,
				["garbage after the pending bytes"] = function(s)
					return s:sub(1, 99) .. "\255" .. s:sub(101)
				end,
			}
			for what, corrupt in pairs(corruptions) do
				it("skips a corrupt state at the current offset (" .. what .. ") and finish still succeeds (9.11)", function()
					local data = util.random_bytes(1234)
					local uuid = staged("k", { data })
					local path = updir("k", uuid, "hashstates/sha256/1234")
					assert(env.d:put_content(path, corrupt(assert(env.d:get_content(path)))))
					local r = assert(env.store:resume("k", uuid))
					assert.equals(1234, r:size())
					local bad, err = r:finish(digest(data:sub(2)))
					assert.is_nil(bad)
					assert.equals("DIGEST_INVALID", err.code)
					assert(r:write("!"))
					local res = assert(r:finish(digest(data .. "!")))
					assert.equals(1235, res.size)
					assert.equals(data .. "!", env.d:get_content(blob_path(res.digest)))
				end)
			end

			it("logs hashstate.skip for a corrupt exact state and falls back to a lower one", function()
				local data = util.random_bytes(2000)
				local uuid = two_states("k", data, 640)
				assert(env.d:put_content(updir("k", uuid, "hashstates/sha256/2000"), "garbage"))
				local r = assert(env.store:resume("k", uuid))
				local skips = events("hashstate.skip")
				assert.equals(1, #skips)
				assert.equals(2000, skips[1].offset)
				assert.equals(uuid, skips[1].uuid)
				assert.is_string(skips[1].reason)
				local ev = events("upload.resume")
				assert.equals("gap", ev[#ev].restored)
				assert.equals(2000 - 640, r:bytes_reread()) -- 640 % 64 == 0: no pending bytes
				assert(r:finish(digest(data)))
			end)

			it("removes stale states above the data size", function()
				local data = util.random_bytes(700)
				local uuid = staged("st", { data })
				local st = assert(env.d:get_content(updir("st", uuid, "hashstates/sha256/700")))
				assert(env.d:put_content(updir("st", uuid, "hashstates/sha256/900"), st))
				assert(env.d:put_content(updir("st", uuid, "hashstates/sha256/100000"), st))
				local r = assert(env.store:resume("st", uuid))
				assert.same({ 700 }, states(env.d, "st", uuid))
				local stale = events("hashstate.stale")
				assert.equals(2, #stale)
				assert.equals(0, r:bytes_reread())
				assert(r:finish(digest(data)))
			end)

			it("ignores state names that are not decimal offsets", function()
				local data = util.random_bytes(100)
				local uuid = staged("nm", { data })
				local st = assert(env.d:get_content(updir("nm", uuid, "hashstates/sha256/100")))
				for _, name in ipairs({ "0x64", "abc", "100.0" }) do
					assert(env.d:put_content(updir("nm", uuid, "hashstates/sha256/" .. name), st))
				end
				local r = assert(env.store:resume("nm", uuid))
				assert.equals(0, r:bytes_reread())
				assert(r:finish(digest(data)))
			end)

			it("does not trust a lower state whose pending bytes differ from the data (samples/bogus)", function()
				local dir, tried = samples_dir()
				if not dir then
					pending("samples not found at " .. tried .. ": set LUP_SAMPLES to the samples directory")
					return
				end
				local c1 = read_file(dir .. "/small/chunk1.bin")
				local c2 = read_file(dir .. "/small/chunk2.bin")
				local bogus = read_file(dir .. "/bogus/hashstate.500")
				local uuid = staged("test/img", { c1, c2 })
				assert(env.d:delete(updir("test/img", uuid, "hashstates")))
				assert(env.d:put_content(updir("test/img", uuid, "hashstates/sha256/500"), bogus))
				local r = assert(env.store:resume("test/img", uuid))
				local skips = events("hashstate.skip")
				assert.equals(1, #skips)
				assert.equals(500, skips[1].offset)
				-- what "largest state <= size + gap" would give
				local bad, err = r:finish(digest(c2))
				assert.is_nil(bad)
				assert.equals("DIGEST_INVALID", err.code)
				local res = assert(r:finish(
					"sha256:ba4a9d6c6a20ee9bcc6bf0add6ed257571cd39c28f2223b0a4d46c196bc96d6f"))
				assert.equals(1500, res.size)
				assert.equals(digest(c1 .. c2), res.digest)
			end)

			it("refuses and removes an upload older than max_age", function()
				local uuid = staged("old", { "abc" })
				assert(env.d:put_content(updir("old", uuid, "startedat"), "2020-01-01T00:00:00Z"))
				local s = layerup.open(env.d, { max_age = 3600, log = env.log })
				local r, err = s:resume("old", uuid)
				assert.is_nil(r)
				assert.equals("BLOB_UPLOAD_UNKNOWN", err.code)
				assert.is_false(exists(env.d, updir("old", uuid)))
				local ev = events("upload.expired")
				assert.equals(1, #ev)
				assert.equals(1577836800, ev[1].started_at)
				s:close()
			end)
		end)

		describe("finish", function()
			local malformed = {
				"", "sha256", "sha256:", ":abc", "sha256" .. ("a"):rep(64),
				"sha256:" .. ("A"):rep(64), "SHA256:" .. ("a"):rep(64),
				"sha256:" .. ("a"):rep(63), "sha256:" .. ("a"):rep(65),
				"sha256:" .. ("g"):rep(64), "md5:d41d8cd98f00b204e9800998ecf8427e",
				"sha1:da39a3ee5e6b4b0d3255bfef95601890afd80709",
				"sha512:" .. ("a"):rep(64), "sha256:" .. ("a"):rep(63) .. " ",
				" sha256:" .. ("a"):rep(64), "sha256:" .. ("a"):rep(64) .. "\n",
				"sha256::" .. ("a"):rep(63), "sha256:" .. ("a"):rep(32) .. "\0" .. ("a"):rep(31),
				digest("abc") .. "\0", digest("abc") .. "\0junk",
			}
			for _, bad in ipairs(malformed) do
				it(("rejects the malformed digest %q with DIGEST_INVALID, leaving the upload intact"):format(bad), function()
					local u = assert(env.store:start("f"))
					assert(u:write("abc"))
					local res, err = u:finish(bad)
					assert.is_nil(res)
					assert.equals("DIGEST_INVALID", err.code)
					assert.equals(6, u:write("def"))
					assert(u:finish(digest("abcdef")))
				end)
			end

			it("rejects a size that does not match with SIZE_INVALID, leaving the upload intact (9.11)", function()
				local u = assert(env.store:start("f"))
				assert(u:write("abcd"))
				for _, size in ipairs({ 0, 3, 5, 1000 }) do
					local res, err = u:finish(digest("abcd"), { size = size })
					assert.is_nil(res)
					assert.equals("SIZE_INVALID", err.code)
				end
				assert.is_true(exists(env.d, updir("f", u.uuid, "data")))
				assert.equals(5, u:write("e"))
				local res = assert(u:finish(digest("abcde"), { size = 5 }))
				assert.equals(5, res.size)
			end)

			it("rejects the wrong digest and can then finish with the right one", function()
				local data = util.random_bytes(5000)
				local u = assert(env.store:start("f"))
				assert(u:write(data))
				local res, err = u:finish(digest(data .. "x"))
				assert.is_nil(res)
				assert.equals("DIGEST_INVALID", err.code)
				assert.is_false(exists(env.d, blob_path(digest(data .. "x"))))
				assert.is_false(exists(env.d, blob_path(digest(data))))
				local failed = events("upload.finish_failed")
				assert.equals(1, #failed)
				assert.equals("DIGEST_INVALID", failed[1].code)
				res = assert(u:finish(digest(data)))
				assert.equals(digest(data), res.digest)
				assert.equals(data, env.d:get_content(blob_path(res.digest)))
			end)

			it("rejects the wrong digest and can then be cancelled", function()
				local u = assert(env.store:start("f"))
				assert(u:write("abc"))
				assert.is_nil((u:finish(digest("abd"))))
				assert.is_true(u:cancel())
				assert.is_false(exists(env.d, updir("f", u.uuid)))
				assert.is_false(exists(env.d, blob_path(digest("abc"))))
			end)

			it("rejects the wrong digest after a resume too, and accepts the right one", function()
				local data = util.random_bytes(999)
				local uuid = staged("f", { data })
				local r = assert(env.store:resume("f", uuid))
				-- Another last byte (the random one may be NUL itself).
				local last = data:sub(999) == "\0" and "\1" or "\0"
				local res, err = r:finish(digest(data:sub(1, 998) .. last))
				assert.is_nil(res)
				assert.equals("DIGEST_INVALID", err.code)
				r:close()
				r = assert(env.store:resume("f", uuid))
				assert(r:finish(digest(data)))
			end)

			it("stores the blob, writes a 71-byte link and removes the upload directory", function()
				local data = util.random_bytes(4097)
				local d = digest(data)
				local u = assert(env.store:start("my/repo"))
				assert(u:write(data))
				local res = assert(u:finish(d))
				assert.same({ digest = d, size = 4097 }, res)
				assert.equals(data, env.d:get_content(blob_path(d)))
				local link = assert(env.d:get_content(link_path("my/repo", d)))
				assert.equals(71, #link)
				assert.equals(d, link)
				assert.is_false(exists(env.d, updir("my/repo", u.uuid)))
				assert.same({ digest = d, size = 4097 }, env.store:stat(d, "my/repo"))
				local r, err = env.store:resume("my/repo", u.uuid)
				assert.is_nil(r)
				assert.equals("BLOB_UPLOAD_UNKNOWN", err.code)
			end)

			for _, alg in ipairs({ "sha512", "sha384" }) do
				it("verifies a " .. alg .. " digest and links it as an alias of the sha256 blob", function()
					local data = util.random_bytes(3333)
					local canon = digest(data)
					local other = digest(data, alg)
					local u = assert(env.store:start("alias"))
					assert(u:write(data))
					local bad, err = u:finish(digest(data .. "x", alg))
					assert.is_nil(bad)
					assert.equals("DIGEST_INVALID", err.code)
					local res = assert(u:finish(other))
					assert.equals(canon, res.digest)
					assert.equals(3333, res.size)
					assert.equals(canon, env.d:get_content(link_path("alias", other)))
					assert.equals(canon, env.d:get_content(link_path("alias", canon)))
					assert.equals(data, env.d:get_content(blob_path(canon)))
					assert.same({ digest = canon, size = 3333 }, env.store:stat(other, "alias"))
					local ev = events("upload.finish")
					assert.equals(other, ev[#ev].requested)
					assert.equals(canon, ev[#ev].digest)
				end)
			end

			it("stores the empty blob", function()
				local u = assert(env.store:start("e"))
				local res = assert(u:finish(EMPTY))
				assert.same({ digest = EMPTY, size = 0 }, res)
				assert.equals("", env.d:get_content(blob_path(EMPTY)))
				assert.equals(EMPTY, env.d:get_content(link_path("e", EMPTY)))
				assert.is_false(exists(env.d, updir("e", u.uuid)))
			end)

			it("stores the empty blob after a resume", function()
				local u = assert(env.store:start("e"))
				u:close()
				local r = assert(env.store:resume("e", u.uuid))
				assert.is_nil((r:finish(digest("x"))))
				assert(r:finish(EMPTY))
				assert.equals("", env.d:get_content(blob_path(EMPTY)))
			end)

			it("shares the blob of identical uploads (dedup)", function()
				local data = util.random_bytes(2048)
				local d = digest(data)
				local u1 = assert(env.store:start("one"))
				assert(u1:write(data))
				assert(u1:finish(d))
				assert.equals(0, #events("blob.dedup"))
				local u2 = assert(env.store:start("two"))
				assert(u2:write(data:sub(1, 1000)))
				assert(u2:write(data:sub(1001)))
				local res = assert(u2:finish(d))
				assert.same({ digest = d, size = 2048 }, res)
				local dd = events("blob.dedup")
				assert.equals(1, #dd)
				assert.equals(d, dd[1].digest)
				assert.equals(2048, dd[1].size)
				local fin = events("upload.finish")
				assert.is_false(fin[1].dedup)
				assert.is_true(fin[2].dedup)
				assert.same({ V2 .. "/blobs/sha256/" .. d:sub(8, 9) .. "/" .. d:sub(8) },
					env.d:list(V2 .. "/blobs/sha256/" .. d:sub(8, 9)))
				assert.same({ blob_path(d) }, env.d:list(V2 .. "/blobs/sha256/" .. d:sub(8, 9) .. "/" .. d:sub(8)))
				assert.equals(data, env.d:get_content(blob_path(d)))
				assert.equals(d, env.d:get_content(link_path("two", d)))
				assert.is_false(exists(env.d, updir("two", u2.uuid)))
			end)

			it("reads no upload data when the hash ran in one session", function()
				local s, stats = counted()
				local data = util.random_bytes(100000)
				local u = assert(s:start("z"))
				for i = 1, #data, 7000 do
					assert(u:write(data:sub(i, i + 6999)))
				end
				assert(u:finish(digest(data)))
				assert.equals(0, u:bytes_reread())
				assert.equals(0, stats.read["/_uploads/"])
				assert.equals(0, stats.got["/_uploads/"])
				local fin = events("upload.finish")
				assert.equals(0, fin[#fin].bytes_reread)
				s:close()
			end)

			it("reads no upload data when the state matches the data size (counting driver)", function()
				local data = util.random_bytes(70000)
				local uuid = staged("z", { data:sub(1, 30000), data:sub(30001) })
				local s, stats = counted()
				local r = assert(s:resume("z", uuid))
				assert(r:finish(digest(data)))
				assert.equals(0, r:bytes_reread())
				assert.equals(0, stats.read["/_uploads/"])
				-- only the 108-byte state was fetched
				assert.equals(108, stats.got["/_uploads/"] - 20) -- + the 20-byte startedat
				s:close()
			end)

			it("gives no false DIGEST_INVALID on a buffering driver whose writer size lags (9.11)", function()
				-- The core tracks the size itself; the registry reset its
				-- hash when the writer's Size() lagged behind.
				local s = counted({ lag = 4096 })
				local data = util.random_bytes(30000)
				local u = assert(s:start("lag"))
				for i = 1, #data, 1000 do
					assert.equals(math.min(i + 999, #data), u:write(data:sub(i, i + 999)))
				end
				assert.equals(#data, u:size())
				u:close()
				local r = assert(s:resume("lag", u.uuid))
				assert.equals(#data, r:size())
				assert.equals(0, r:bytes_reread())
				assert(r:write("a"))
				assert(r:write("b"))
				assert(r:finish(digest(data .. "ab")))
				assert.equals(data .. "ab", env.d:get_content(blob_path(digest(data .. "ab"))))
				s:close()
			end)

			it("finishes a big upload written in many sessions", function()
				local data = util.random_bytes(3 * 1024 * 1024 + 7)
				local u = assert(env.store:start("big"))
				local uuid = u.uuid
				local pos = 1
				for _, n in ipairs({ 1, 63, 64, 65, 1000000, 2 * 1024 * 1024 }) do
					assert.equals(pos - 1 + n, u:write(data:sub(pos, pos + n - 1)))
					pos = pos + n
					u:close()
					u = assert(env.store:resume("big", uuid))
					assert.equals(0, u:bytes_reread())
				end
				assert(u:write(data:sub(pos)))
				local res = assert(u:finish(digest(data), { size = #data }))
				assert.equals(#data, res.size)
				assert.equals(0, u:bytes_reread())
			end)

			it("makes every method but close/cancel raise after a successful finish", function()
				local u = assert(env.store:start("f"))
				assert(u:write("a"))
				assert(u:finish(digest("a")))
				for _, f in ipairs({
					function() return u:write("b") end,
					function() return u:finish(digest("a")) end,
				}) do
					local ok, msg = pcall(f)
					assert.is_false(ok)
					assert.matches("attempt to use a closed upload", msg)
				end
				assert.is_true(u:close())
			end)
		end)

		describe("cancel", function()
			it("removes the whole upload directory and is idempotent", function()
				local u = assert(env.store:start("c"))
				assert(u:write("abc"))
				u:close()
				u = assert(env.store:resume("c", u.uuid))
				assert(u:write("def"))
				assert.is_true(u:cancel())
				assert.is_false(exists(env.d, updir("c", u.uuid)))
				assert.is_true(u:cancel())
				assert.is_true(u:close())
				local r, err = env.store:resume("c", u.uuid)
				assert.is_nil(r)
				assert.equals("BLOB_UPLOAD_UNKNOWN", err.code)
				assert.equals(1, #events("upload.cancel"))
			end)

			it("works on a closed handle", function()
				local u = assert(env.store:start("c"))
				assert(u:write("abc"))
				u:close()
				assert.is_true(u:cancel())
				assert.is_false(exists(env.d, updir("c", u.uuid)))
				assert.is_true(u:cancel())
			end)

			it("on a closed handle does not pull the upload from under another writer", function()
				local u = assert(env.store:start("c"))
				u:close()
				local r = assert(env.store:resume("c", u.uuid))
				local ok, err = u:cancel()
				assert.is_nil(ok)
				assert.equals("LOCKED", err.code)
				assert.is_true(exists(env.d, updir("c", u.uuid, "data")))
				r:close()
				assert.is_true(u:cancel())
				assert.is_false(exists(env.d, updir("c", u.uuid)))
			end)

			it("is a no-op after a finish", function()
				local u = assert(env.store:start("c"))
				assert(u:write("abc"))
				assert(u:finish(digest("abc")))
				assert.is_true(u:cancel())
				assert.equals("abc", env.d:get_content(blob_path(digest("abc"))))
				assert.equals(digest("abc"), env.d:get_content(link_path("c", digest("abc"))))
				assert.equals(0, #events("upload.cancel"))
			end)

			it("lets go of the lock so the uuid can no longer be resumed but the repo is usable", function()
				local u = assert(env.store:start("c"))
				assert(u:cancel())
				local u2 = assert(env.store:start("c"))
				assert(u2:write("x"))
				assert(u2:finish(digest("x")))
			end)
		end)

		describe("log events", function()
			it("reports start, close, resume, finish and cancel with their fields", function()
				local u = assert(env.store:start("ev/x"))
				local uuid = u.uuid
				assert(u:write("hello"))
				u:close()
				local r = assert(env.store:resume("ev/x", uuid))
				local f = assert(r:finish(digest("hello")))
				local c = assert(env.store:start("ev/x"))
				c:cancel()

				local names = {}
				for _, e in ipairs(env.events) do
					names[#names + 1] = e.event
				end
				assert.same({ "upload.start", "upload.close", "upload.resume", "blob.link",
					"upload.finish", "upload.start", "upload.cancel" }, names)

				local s = events("upload.start")[1]
				assert.same({ repo = "ev/x", uuid = uuid }, s)
				assert.same({ repo = "ev/x", uuid = uuid, offset = 5 }, events("upload.close")[1])
				assert.same({ repo = "ev/x", uuid = uuid, offset = 5, restored = "exact", bytes_reread = 0 },
					events("upload.resume")[1])
				local fin = events("upload.finish")[1]
				assert.equals("ev/x", fin.repo)
				assert.equals(uuid, fin.uuid)
				assert.equals(f.digest, fin.digest)
				assert.equals(f.digest, fin.requested)
				assert.equals(5, fin.size)
				assert.equals(0, fin.bytes_reread)
				assert.is_number(fin.duration_ms)
				assert.is_true(fin.duration_ms >= 0)
				assert.is_false(fin.dedup)
				assert.same({ repo = "ev/x", digest = f.digest, canonical = f.digest }, events("blob.link")[1])
				assert.same({ repo = "ev/x", uuid = c.uuid }, events("upload.cancel")[1])
			end)

			it("reports a failed finish with its code and message", function()
				local u = assert(env.store:start("ev"))
				assert(u:write("x"))
				assert.is_nil((u:finish(digest("y"))))
				local failed = events("upload.finish_failed")
				assert.equals(1, #failed)
				assert.equals("DIGEST_INVALID", failed[1].code)
				assert.equals(u.uuid, failed[1].uuid)
				assert.is_string(failed[1].message)
				u:cancel()
			end)
		end)
	end)
end)
