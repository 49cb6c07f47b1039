-- store_spec.lua: blob operations of the store (stat, open, link, unlink,
-- mount) and the upload listing, on the filesystem, C memory and Lua
-- drivers.  Layout facts: reference/distribution-2.8.md sections 1.1, 1.2.
local layerup = require "layerup"
local util = require "helpers.util"
local stores = require "helpers.stores"

local V2 = stores.V2

local link_path = stores.link_path

local digest = util.digest

stores.each_driver(function(drv)
	describe("store on the " .. drv.name .. " driver", function()
		local env = stores.per_test(drv, "store", { seed = 99 })

		-- Upload data into repo; returns the canonical digest.
		local function put(repo, data, requested)
			local u = assert(env.store:start(repo))
			assert(u:write(data))
			return assert(u:finish(requested or digest(data))).digest
		end

		local function read_all(r)
			local parts = {}
			while true do
				local s = r:read(1000)
				if not s then
					break
				end
				parts[#parts + 1] = s
			end
			r:close()
			return table.concat(parts)
		end

		describe("stat", function()
			it("finds a blob by sha256 globally and through a repository link", function()
				local data = util.random_bytes(1234)
				local d = put("src", data)
				assert.same({ digest = d, size = 1234 }, env.store:stat(d))
				assert.same({ digest = d, size = 1234 }, env.store:stat(d, "src"))
			end)

			it("gives BLOB_UNKNOWN for a blob not linked in the repository", function()
				local d = put("src", "abc")
				local res, err = env.store:stat(d, "other")
				assert.is_nil(res)
				assert.equals("BLOB_UNKNOWN", err.code)
				res, err = env.store:stat(d, "sr")
				assert.is_nil(res)
				assert.equals("BLOB_UNKNOWN", err.code)
			end)

			it("gives BLOB_UNKNOWN for an absent blob", function()
				local res, err = env.store:stat(digest("never"))
				assert.is_nil(res)
				assert.equals("BLOB_UNKNOWN", err.code)
				res, err = env.store:stat(digest("never"), "src")
				assert.is_nil(res)
				assert.equals("BLOB_UNKNOWN", err.code)
			end)

			it("gives BLOB_UNKNOWN when the link names a blob that is gone", function()
				local d = put("src", "abc")
				assert(env.d:delete(V2 .. "/blobs"))
				local res, err = env.store:stat(d, "src")
				assert.is_nil(res)
				assert.equals("BLOB_UNKNOWN", err.code)
			end)

			it("needs a repository for a non-sha256 digest", function()
				local data = util.random_bytes(100)
				local canon = put("src", data, digest(data, "sha512"))
				local res, err = env.store:stat(digest(data, "sha512"))
				assert.is_nil(res)
				assert.equals("BLOB_UNKNOWN", err.code)
				assert.same({ digest = canon, size = 100 }, env.store:stat(digest(data, "sha512"), "src"))
			end)

			it("checks the digest and the repository name", function()
				local res, err = env.store:stat("sha256:xyz")
				assert.is_nil(res)
				assert.equals("DIGEST_INVALID", err.code)
				res, err = env.store:stat(digest("a"), "../x")
				assert.is_nil(res)
				assert.equals("NAME_INVALID", err.code)
			end)

			it("treats a corrupt link file as unknown", function()
				local d = put("src", "abc")
				assert(env.d:put_content(link_path("src", d), d .. "\n"))
				local res, err = env.store:stat(d, "src")
				assert.is_nil(res)
				assert.equals("BLOB_UNKNOWN", err.code)
			end)
		end)

		describe("open", function()
			it("streams the blob's bytes", function()
				local data = util.random_bytes(300001)
				local d = put("src", data)
				local r = assert(env.store:open("src", d))
				assert.equals(data, read_all(r))
			end)

			it("opens through an alias digest", function()
				local data = util.random_bytes(777)
				put("src", data, digest(data, "sha384"))
				local r = assert(env.store:open("src", digest(data, "sha384")))
				assert.equals(data, read_all(r))
			end)

			it("streams the empty blob", function()
				local e = put("src", "")
				local r = assert(env.store:open("src", e))
				assert.equals("", read_all(r))
			end)

			it("gives BLOB_UNKNOWN when not linked in the repository", function()
				local d = put("src", "abc")
				local r, err = env.store:open("other", d)
				assert.is_nil(r)
				assert.equals("BLOB_UNKNOWN", err.code)
			end)
		end)

		describe("link and unlink", function()
			it("links an existing blob into another repository with a 71-byte link", function()
				local d = put("src", "payload")
				assert.is_true(env.store:link("dst/x", d))
				assert.equals(d, env.d:get_content(link_path("dst/x", d)))
				assert.same({ digest = d, size = 7 }, env.store:stat(d, "dst/x"))
			end)

			it("refuses to link an absent blob or a bad name", function()
				local ok, err = env.store:link("dst", digest("nothing"))
				assert.is_nil(ok)
				assert.equals("BLOB_UNKNOWN", err.code)
				assert.is_nil(env.d:stat(link_path("dst", digest("nothing"))))
				ok, err = env.store:link("Dst", put("src", "a"))
				assert.is_nil(ok)
				assert.equals("NAME_INVALID", err.code)
			end)

			it("unlinks: the repository forgets the blob, the blob stays", function()
				local d = put("src", "abc")
				assert(env.store:link("dst", d))
				assert.is_true(env.store:unlink("src", d))
				local res, err = env.store:stat(d, "src")
				assert.is_nil(res)
				assert.equals("BLOB_UNKNOWN", err.code)
				assert.same({ digest = d, size = 3 }, env.store:stat(d))
				assert.same({ digest = d, size = 3 }, env.store:stat(d, "dst"))
				local ok
				ok, err = env.store:unlink("src", d)
				assert.is_nil(ok)
				assert.equals("BLOB_UNKNOWN", err.code)
			end)

			it("unlinking one digest leaves the others of the repository", function()
				local d1 = put("src", "one")
				local d2 = put("src", "two")
				assert(env.store:unlink("src", d1))
				assert.same({ digest = d2, size = 3 }, env.store:stat(d2, "src"))
			end)
		end)

		describe("mount", function()
			it("links a blob of one repository into another", function()
				local data = util.random_bytes(4321)
				local d = put("from/a", data)
				assert.same({ digest = d, size = 4321 }, env.store:mount("from/a", "to/b", d))
				assert.equals(d, env.d:get_content(link_path("to/b", d)))
				assert.same({ digest = d, size = 4321 }, env.store:stat(d, "to/b"))
				-- removing it from the source leaves the destination
				assert(env.store:unlink("from/a", d))
				assert.same({ digest = d, size = 4321 }, env.store:stat(d, "to/b"))
			end)

			it("gives BLOB_UNKNOWN when the source repository does not have it", function()
				local d = put("from/a", "abc")
				local res, err = env.store:mount("elsewhere", "to/b", d)
				assert.is_nil(res)
				assert.equals("BLOB_UNKNOWN", err.code)
				assert.is_nil(env.d:stat(link_path("to/b", d)))
			end)

			it("mounts through an alias digest as the canonical blob", function()
				local data = util.random_bytes(50)
				local d = put("from", data, digest(data, "sha512"))
				local res = assert(env.store:mount("from", "to", digest(data, "sha512")))
				assert.same({ digest = d, size = 50 }, res)
				assert.same({ digest = d, size = 50 }, env.store:stat(d, "to"))
			end)

			it("checks both names", function()
				local d = put("from", "x")
				local res, err = env.store:mount("from", "To", d)
				assert.is_nil(res)
				assert.equals("NAME_INVALID", err.code)
				res, err = env.store:mount("../from", "to", d)
				assert.is_nil(res)
				assert.equals("NAME_INVALID", err.code)
			end)
		end)

		describe("uploads", function()
			it("is empty for an empty store", function()
				assert.same({}, env.store:uploads())
				assert.same({}, env.store:uploads("nothing/here"))
			end)

			it("lists uploads sorted by repo then uuid with their start time and size", function()
				local made = {}
				for _, spec in ipairs({ { "b", 3 }, { "a/x", 0 }, { "a", 10 }, { "b", 1 }, { "a", 2 }, { "ab", 5 } }) do
					local u = assert(env.store:start(spec[1]))
					assert(u:write(string.rep("z", spec[2])))
					made[#made + 1] = { repo = spec[1], uuid = u.uuid, started_at = u.started_at, size = spec[2] }
					u:close()
				end
				table.sort(made, function(x, y)
					if x.repo ~= y.repo then
						return x.repo < y.repo
					end
					return x.uuid < y.uuid
				end)
				assert.same(made, env.store:uploads())
				local only_a = {}
				for _, m in ipairs(made) do
					if m.repo == "a" then
						only_a[#only_a + 1] = m
					end
				end
				assert.equals(2, #only_a)
				assert.same(only_a, env.store:uploads("a"))
			end)

			it("shows the size of an upload in progress and forgets finished and cancelled ones", function()
				local u1 = assert(env.store:start("r"))
				local u2 = assert(env.store:start("r"))
				assert(u1:write("abc"))
				u1:close()
				assert(u2:write("defgh"))
				u2:close()
				local list = env.store:uploads("r")
				assert.equals(2, #list)
				local r = assert(env.store:resume("r", u1.uuid))
				assert(r:finish(digest("abc")))
				assert(u2:cancel())
				assert.same({}, env.store:uploads("r"))
			end)

			it("ignores directories that are not uuids and files outside _uploads", function()
				local u = assert(env.store:start("r"))
				u:close()
				local base = V2 .. "/repositories/r/_uploads/"
				assert(env.d:put_content(base .. "not-a-uuid/data", "x"))
				assert(env.d:put_content(base .. u.uuid:upper() .. "/data", "x"))
				assert(env.d:put_content(V2 .. "/repositories/r/_importants/" .. u.uuid .. "/data", "x"))
				local list = env.store:uploads()
				assert.equals(1, #list)
				assert.equals(u.uuid, list[1].uuid)
			end)

			it("rejects an invalid repository filter", function()
				local list, err = env.store:uploads("Bad")
				assert.is_nil(list)
				assert.equals("NAME_INVALID", err.code)
			end)
		end)

		it("hands out its driver", function()
			assert.equals(env.d, env.store:driver())
		end)
	end)
end)
