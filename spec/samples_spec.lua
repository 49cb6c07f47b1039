-- samples_spec.lua: uploads started by the real registry (samples/, see
-- samples/INDEX.md) resume and finish here to the documented digest, and
-- the hash states we write are byte-identical to the registry's.  Upload
-- directories are built by hand the way the registry left them:
-- startedat from startedat.example, data = the chunks received so far,
-- hashstates/sha256/<n> = the sample state files.
-- Samples: $LUP_SAMPLES, else ../shared/samples from the repo root, else
-- spec/fixtures/samples (helpers/util.lua samples_dir).  The "big" data
-- is generated with openssl as INDEX.md describes.
local layerup = require "layerup"
local util = require "helpers.util"
local stores = require "helpers.stores"

local V2 = stores.V2
local REPO = "test/img"

local read_file, digest = util.read_file, util.digest

local function updir(uuid, leaf)
	return stores.updir(REPO, uuid, leaf)
end

local blob_path = stores.blob_path

-- Unix seconds of "YYYY-MM-DDTHH:MM:SSZ" (days_from_civil, no os.time:
-- that one is local time).
local function utc_seconds(s)
	local y, m, d, hh, mm, ss = s:match("^(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)Z$")
	y, m, d = tonumber(y), tonumber(m), tonumber(d)
	y = m <= 2 and y - 1 or y
	local floor = math.floor
	local era = floor((y >= 0 and y or y - 399) / 400)
	local yoe = y - era * 400
	local doy = floor((153 * (m + (m > 2 and -3 or 9)) + 2) / 5) + d - 1
	local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
	local days = era * 146097 + doe - 719468
	return days * 86400 + tonumber(hh) * 3600 + tonumber(mm) * 60 + tonumber(ss)
end

-- The blob digest INDEX.md documents for an upload ("small", "big").
local function index_digest(dir, name)
	for line in io.lines(dir .. "/INDEX.md") do
		if line:match("^| " .. name .. " |") then
			return line:match("`(sha256:%x+)`")
		end
	end
end

-- `gen SEED N` of INDEX.md into path, with openssl.
local function gen(seed, n, path)
	local cmd = ("head -c %d /dev/zero | openssl enc -aes-128-ctr -nosalt -K " ..
		"$(printf %%s '%s' | sha256sum | cut -c1-32) -iv 00000000000000000000000000000000 > '%s'")
		:format(n, seed, path)
	return os.execute(cmd)
end

local function have_openssl()
	return os.execute("command -v openssl >/dev/null 2>&1 && command -v sha256sum >/dev/null 2>&1")
end

local SAMPLES, tried = util.samples_dir()

if not SAMPLES then
	describe("real-registry samples", function()
		pending("samples not found at " .. tried .. ": set LUP_SAMPLES to the samples directory")
	end)
	return
end

stores.each_driver(function(drv)
	describe("real-registry samples on the " .. drv.name .. " driver", function()
		local env
		local small = {
			c1 = read_file(SAMPLES .. "/small/chunk1.bin"),
			c2 = read_file(SAMPLES .. "/small/chunk2.bin"),
			startedat = read_file(SAMPLES .. "/small/startedat.example"),
			digest = index_digest(SAMPLES, "small"),
			state = {
				[0] = read_file(SAMPLES .. "/small/hashstate.0"),
				[1000] = read_file(SAMPLES .. "/small/hashstate.1000"),
				[1500] = read_file(SAMPLES .. "/small/hashstate.1500"),
			},
		}

		before_each(function()
			-- env.tmp holds the store's root (filesystem) and generated
			-- data; stores.cleanup removes it as env.dir.
			env = { tmp = util.tmpdir("samples") }
			env.dir = env.tmp
			env.d = stores.driver(drv, env.tmp .. "/store")
			env.store = layerup.open(env.d, { log = stores.record(env) })
		end)

		after_each(function()
			stores.cleanup(env)
			env = nil
		end)

		local function last_resume()
			for i = #env.events, 1, -1 do
				if env.events[i].event == "upload.resume" then
					return env.events[i].fields
				end
			end
		end

		-- An upload directory as the registry leaves it.
		local function build(uuid, startedat, data, states)
			assert(env.d:put_content(updir(uuid, "startedat"), startedat))
			assert(env.d:put_content(updir(uuid, "data"), data))
			for off, content in pairs(states) do
				assert(env.d:put_content(updir(uuid, "hashstates/sha256/" .. off), content))
			end
		end

		it("documents the small digest consistently", function()
			assert.equals("sha256:ba4a9d6c6a20ee9bcc6bf0add6ed257571cd39c28f2223b0a4d46c196bc96d6f", small.digest)
			assert.equals(small.digest, digest(small.c1 .. small.c2))
			assert.equals(20, #small.startedat)
		end)

		it("writes hash states byte-identical to the registry's", function()
			local u = assert(env.store:start(REPO))
			assert(u:write(small.c1))
			u:close()
			assert.equals(small.state[1000], env.d:get_content(updir(u.uuid, "hashstates/sha256/1000")))
			u = assert(env.store:resume(REPO, u.uuid))
			assert(u:write(small.c2))
			u:close()
			assert.equals(small.state[1500], env.d:get_content(updir(u.uuid, "hashstates/sha256/1500")))
		end)

		it("resumes a registry upload stopped after chunk 1 and finishes it without re-reading", function()
			local uuid = "3f2a1b0c-9d8e-4f7a-8b6c-5d4e3f2a1b0c"
			build(uuid, small.startedat, small.c1, { [0] = small.state[0], [1000] = small.state[1000] })
			local u = assert(env.store:resume(REPO, uuid))
			assert.equals(1000, u:size())
			assert.equals(0, u:bytes_reread())
			assert.equals("exact", last_resume().restored)
			assert.equals(utc_seconds(small.startedat), u.started_at)
			assert.equals(1500, u:write(small.c2))
			local res = assert(u:finish(small.digest, { size = 1500 }))
			assert.same({ digest = small.digest, size = 1500 }, res)
			assert.equals(0, u:bytes_reread())
			assert.equals(small.c1 .. small.c2, env.d:get_content(blob_path(small.digest)))
			assert.equals(small.digest, env.d:get_content(V2 .. "/repositories/" .. REPO ..
				"/_layers/sha256/" .. small.digest:sub(8) .. "/link"))
			assert.is_nil(env.d:stat(updir(uuid)))
		end)

		it("finishes a complete registry upload from its exact state without re-reading", function()
			local uuid = "4a3b2c1d-0e9f-4a8b-9c7d-6e5f4a3b2c1d"
			build(uuid, small.startedat, small.c1 .. small.c2,
				{ [0] = small.state[0], [1000] = small.state[1000], [1500] = small.state[1500] })
			local u = assert(env.store:resume(REPO, uuid))
			assert.equals(1500, u:size())
			assert.equals(0, u:bytes_reread())
			assert(u:finish(small.digest))
			assert.equals(0, u:bytes_reread())
		end)

		it("finishes from the lower registry state plus the gap when the newest is missing", function()
			local uuid = "5b4c3d2e-1f0a-4b9c-ad8e-7f6a5b4c3d2e"
			build(uuid, small.startedat, small.c1 .. small.c2,
				{ [0] = small.state[0], [1000] = small.state[1000] })
			local u = assert(env.store:resume(REPO, uuid))
			assert.equals("gap", last_resume().restored)
			local reread = u:bytes_reread()
			assert.is_true(reread >= 500 and reread <= 500 + 63, "reread " .. reread)
			assert(u:finish(small.digest))
		end)

		it("finishes with only the initial state (full re-hash)", function()
			local uuid = "6c5d4e3f-2a1b-4c0d-be9f-8a7b6c5d4e3f"
			build(uuid, small.startedat, small.c1 .. small.c2, { [0] = small.state[0] })
			local u = assert(env.store:resume(REPO, uuid))
			assert.equals("none", last_resume().restored)
			assert.equals(1500, u:bytes_reread())
			assert(u:finish(small.digest))
		end)

		it("does not trust bogus/hashstate.500 (hash of chunk 2 alone named 500)", function()
			local uuid = "7d6e5f4a-3b2c-4d1e-8f0a-9b8c7d6e5f4a"
			build(uuid, small.startedat, small.c1 .. small.c2,
				{ [0] = small.state[0], [500] = read_file(SAMPLES .. "/bogus/hashstate.500") })
			local u = assert(env.store:resume(REPO, uuid))
			local res, err = u:finish(digest(small.c2))
			assert.is_nil(res)
			assert.equals("DIGEST_INVALID", err.code)
			assert(u:finish(small.digest))
			assert.equals(small.c1 .. small.c2, env.d:get_content(blob_path(small.digest)))
		end)

		describe("big (generated with openssl)", function()
			local big_digest = index_digest(SAMPLES, "big")
			local c1_path, c2_path

			before_each(function()
				if not have_openssl() then
					return
				end
				c1_path, c2_path = env.tmp .. "/big1", env.tmp .. "/big2"
				assert(gen("peer-chunk-1", 3145728, c1_path))
				assert(gen("peer-chunk-2", 1048583, c2_path))
			end)

			it("regenerates the small chunks exactly (the generator is right)", function()
				if not have_openssl() then
					pending("openssl or sha256sum not installed")
					return
				end
				assert(gen("peer-small-1", 1000, env.tmp .. "/s1"))
				assert.equals(small.c1, read_file(env.tmp .. "/s1"))
			end)

			it("resumes after the 3 MiB chunk from the registry's state and finishes to the documented digest", function()
				if not have_openssl() then
					pending("openssl or sha256sum not installed")
					return
				end
				assert.equals("sha256:fb1c7a865fb238f34da728a0be3f6cf96a45081ca06c21ad9308bd42081b825f", big_digest)
				local uuid = "8e7f6a5b-4c3d-4e2f-9a1b-0c9d8e7f6a5b"
				build(uuid, read_file(SAMPLES .. "/big/startedat.example"), read_file(c1_path), {
					[0] = read_file(SAMPLES .. "/big/hashstate.0"),
					[3145728] = read_file(SAMPLES .. "/big/hashstate.3145728"),
				})
				local u = assert(env.store:resume(REPO, uuid))
				assert.equals(3145728, u:size())
				assert.equals(0, u:bytes_reread())
				local f = assert(io.open(c2_path, "rb"))
				assert.equals(1048583, u:read_from(f, 65536))
				f:close()
				u:close()
				-- our state after chunk 2 is the registry's, byte for byte
				assert.equals(read_file(SAMPLES .. "/big/hashstate.4194311"),
					env.d:get_content(updir(uuid, "hashstates/sha256/4194311")))
				u = assert(env.store:resume(REPO, uuid))
				assert.equals(0, u:bytes_reread())
				local res = assert(u:finish(big_digest, { size = 4194311 }))
				assert.same({ digest = big_digest, size = 4194311 }, res)
				assert.equals(0, u:bytes_reread())
				assert.equals(4194311, env.d:stat(blob_path(big_digest)).size)
			end)

			it("finishes a complete big upload from the registry's final state without re-reading", function()
				if not have_openssl() then
					pending("openssl or sha256sum not installed")
					return
				end
				local uuid = "9f8a7b6c-5d4e-4f3a-8b2c-1d0e9f8a7b6c"
				build(uuid, read_file(SAMPLES .. "/big/startedat.example"), read_file(c1_path) .. read_file(c2_path), {
					[0] = read_file(SAMPLES .. "/big/hashstate.0"),
					[3145728] = read_file(SAMPLES .. "/big/hashstate.3145728"),
					[4194311] = read_file(SAMPLES .. "/big/hashstate.4194311"),
				})
				local u = assert(env.store:resume(REPO, uuid))
				assert.equals(4194311, u:size())
				assert.equals(0, u:bytes_reread())
				assert(u:finish(big_digest))
				assert.equals(0, u:bytes_reread())
			end)

			it("finishes a big upload from the 3 MiB state plus the 1 MiB gap", function()
				if not have_openssl() then
					pending("openssl or sha256sum not installed")
					return
				end
				local uuid = "0a9b8c7d-6e5f-4a4b-9c3d-2e1f0a9b8c7d"
				build(uuid, read_file(SAMPLES .. "/big/startedat.example"), read_file(c1_path) .. read_file(c2_path), {
					[3145728] = read_file(SAMPLES .. "/big/hashstate.3145728"),
				})
				local u = assert(env.store:resume(REPO, uuid))
				assert.equals("gap", last_resume().restored)
				assert.equals(1048583, u:bytes_reread()) -- 3145728 % 64 == 0: no pending bytes
				assert(u:finish(big_digest))
			end)
		end)
	end)
end, { "filesystem", "memory" })
