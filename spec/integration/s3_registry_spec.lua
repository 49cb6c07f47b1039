-- Interop on S3: Docker Distribution 2.8.2 (Debian docker-registry) with its
-- own `s3` storage driver on the same bucket and prefix as layerup's S3
-- driver (the Ceph RGW that spec/run starts).  The registry serves what
-- layerup uploaded, appends to and commits uploads layerup started, and
-- layerup finishes uploads the registry started without re-reading data.

local util = require "integration.helpers.util"
local R = require "integration.helpers.registry"
local s3env = require "helpers.s3env"

local KiB, MiB = 1024, 1024 * 1024

if s3env.missing("registry interop on S3") then
	return
end

local layerup = require "layerup"

local ok = require("helpers.util").ok

describe("registry interop on S3", function()
	local prefix, reg

	local function driver(extra)
		local o = s3env.options(extra)
		o.prefix = prefix
		return ok(layerup.s3(o))
	end

	lazy_setup(function()
		assert(R.available(), "docker-registry, curl and openssl are required (run `make deps` as root)")
		prefix = s3env.prefix("registry")
		local o = s3env.options()
		o.prefix = prefix
		reg = R.start(nil, util.tmpdir("reg-s3"), { s3 = o })
		reg.owns_dir = true
	end)

	lazy_teardown(function()
		if reg then
			reg:stop()
		end
	end)

	-- GET the blob through the registry; returns status, bytes.
	local function fetch(repo, digest)
		local dir = util.tmpdir("s3reg-get")
		local out = dir .. "/blob"
		local r = reg:http("GET", "/v2/" .. repo .. "/blobs/" .. digest, { out_file = out })
		local body = util.read_file(out)
		util.rmrf(dir)
		return r.status, body, r
	end

	it("serves blobs that layerup uploaded: empty, small, multipart with a short last part", function()
		local d = driver { part_size = 5 * MiB }
		local store = ok(layerup.open(d))
		local repo = "interop/s3-pushed"
		for _, n in ipairs { 0, 3 * KiB + 1, 11 * MiB + 77 } do
			local data = util.random_bytes(n)
			local digest = util.sha256(data)
			local up = ok(store:start(repo))
			-- written in two sessions: the second resumes a stored tail
			ok(up:write(data:sub(1, n // 2)))
			ok(up:close())
			up = ok(store:resume(repo, up.uuid))
			ok(up:write(data:sub(n // 2 + 1)))
			ok(up:finish(digest))
			local status, body = fetch(repo, digest)
			assert.are.equal(200, status, "blob of " .. n .. " bytes")
			assert.are.equal(n, #body)
			assert.is_true(body == data, "the registry served other bytes")
			local r = reg:http("HEAD", "/v2/" .. repo .. "/blobs/" .. digest)
			assert.are.equal(200, r.status)
			assert.are.equal(tostring(n), r.headers["content-length"])
		end
		store:close()
	end)

	-- layerup starts and closes an upload; returns uuid, startedat.
	local function layerup_started(repo, part, part_size)
		local d = driver { part_size = part_size or 5 * MiB }
		local store = ok(layerup.open(d))
		local up = ok(store:start(repo))
		ok(up:write(part))
		ok(up:close())
		local started = ok(d:get_content("/docker/registry/v2/repositories/" .. repo .. "/_uploads/" .. up.uuid .. "/startedat"))
		store:close()
		return up.uuid, started
	end

	it("the registry appends to an upload layerup started (short tail and full parts) and commits it", function()
		for i, cut in ipairs { 2 * MiB + 3, 6 * MiB + 5 } do
			local repo = "interop/s3-layerup-started-" .. i
			local data = util.random_bytes(cut + 3 * MiB + 11)
			local digest = util.sha256(data)
			local uuid, started = layerup_started(repo, data:sub(1, cut))
			local tok = R.state_token(repo, uuid, cut, started)
			local r = reg:http("PATCH", R.upload_path(repo, uuid, tok), { body = data:sub(cut + 1) })
			assert.are.equal(202, r.status, r.body)
			assert.are.equal("0-" .. (#data - 1), r.headers["range"])
			local before = reg:rchar()
			r = reg:http("PUT", reg:location(r) .. "&digest=" .. digest)
			local delta = reg:rchar() - before
			assert.are.equal(201, r.status, r.body)
			assert.are.equal(digest, r.headers["docker-content-digest"])
			-- committed from the hash state: the blob was not read back
			assert.is_true(delta < 256 * KiB, "registry read " .. delta .. " bytes during the PUT")
			local status, body = fetch(repo, digest)
			assert.are.equal(200, status)
			assert.is_true(body == data, "the registry served other bytes")
		end
	end)

	-- layerup's writer creates the multipart upload that is the registry's
	-- `data` lazily: an upload that died before its first close has none.
	it("an upload layerup started that died before its first close: the registry cannot resume it; layerup resumes it at 0, and once closed the registry appends and commits", function()
		local repo = "interop/s3-layerup-killed"
		local dir = util.tmpdir("s3reg-kill")
		util.write_file(dir .. "/c.lua", [[
local layerup = require "layerup"
local s3env = require "helpers.s3env"
local o = s3env.options { lock_ttl = 1 }
o.prefix = ...
local s = assert(layerup.open(assert(layerup.s3(o))))
local u = assert(s:start("]] .. repo .. [["))
assert(u:write(("k"):rep(1000)))
print("uuid " .. u.uuid)
io.stdout:flush()
os.execute("kill -9 " .. io.open("/proc/self/stat"):read("n"))
]])
		local out = util.run((os.getenv("LUA") or "lua5.4") .. " " .. util.q(dir .. "/c.lua") .. " " .. util.q(prefix), true)
		util.rmrf(dir)
		local uuid = out:match("uuid (%S+)")
		assert.truthy(uuid, out)
		local d = driver()
		local base = "/docker/registry/v2/repositories/" .. repo .. "/_uploads/" .. uuid
		local v, e = d:stat(base .. "/data")
		assert.is_nil(v)
		assert.are.equal("PATH_NOT_FOUND", e.code)
		local started = ok(d:get_content(base .. "/startedat"))
		-- 2.8's S3 writer finds no multipart upload to append to: its
		-- PathNotFound is not "upload unknown" to the registry, so it
		-- answers 500 UNKNOWN naming the data path (a GET of the status
		-- and a PATCH alike)
		local tok0 = R.state_token(repo, uuid, 0, started)
		local r = reg:http("GET", R.upload_path(repo, uuid, tok0))
		assert.are.equal(500, r.status, r.body)
		assert.truthy(r.body:find("/_uploads/" .. uuid .. "/data", 1, true), r.body)
		r = reg:http("PATCH", R.upload_path(repo, uuid, tok0), { body = "x" })
		assert.are.equal(500, r.status, r.body)
		-- and leaves it alone
		assert.are.same({ base .. "/startedat" }, ok(d:list(base)))
		-- layerup resumes it at 0 once the dead writer's lease ran out
		util.sleep(1.5)
		local data = util.random_bytes(3 * MiB + 5)
		local digest = util.sha256(data)
		local store = ok(layerup.open(d, { retry = false }))
		local up = ok(store:resume(repo, uuid))
		assert.are.equal(0, up:size())
		ok(up:write(data:sub(1, MiB)))
		ok(up:close())
		store:close()
		-- closed, it has its multipart upload: the registry continues it
		r = reg:http("PATCH", R.upload_path(repo, uuid, R.state_token(repo, uuid, MiB, started)), { body = data:sub(MiB + 1) })
		assert.are.equal(202, r.status, r.body)
		r = reg:http("PUT", reg:location(r) .. "&digest=" .. digest)
		assert.are.equal(201, r.status, r.body)
		local status, body = fetch(repo, digest)
		assert.are.equal(200, status)
		assert.is_true(body == data, "the registry served other bytes")
	end)

	it("the registry commits a whole upload layerup wrote, from layerup's hash state", function()
		local repo = "interop/s3-layerup-written"
		local data = util.random_bytes(7 * MiB + 999)
		local digest = util.sha256(data)
		local uuid, started = layerup_started(repo, data)
		local tok = R.state_token(repo, uuid, #data, started)
		local before = reg:rchar()
		local r = reg:http("PUT", R.upload_path(repo, uuid, tok) .. "&digest=" .. digest)
		local delta = reg:rchar() - before
		assert.are.equal(201, r.status, r.body)
		-- from layerup's hash state, without reading the 7 MiB back
		assert.is_true(delta < 256 * KiB, "registry read " .. delta .. " bytes during the PUT")
		local status, body = fetch(repo, digest)
		assert.are.equal(200, status)
		assert.is_true(body == data, "the registry served other bytes")
	end)

	it("layerup finishes uploads the registry started without re-reading them", function()
		-- 6 MiB: one full part from the registry; 2 MiB: a short last part
		-- layerup cannot append to (it completes and continues from the
		-- object server-side, as the registry itself does)
		for i, cut in ipairs { 6 * MiB + 13, 2 * MiB + 13 } do
			local repo = "interop/s3-registry-started-" .. i
			local data = util.random_bytes(cut + 4 * MiB + 7)
			local digest = util.sha256(data)
			local uuid, loc = reg:start_upload(repo)
			local r = reg:http("PATCH", loc, { body = data:sub(1, cut) })
			assert.are.equal(202, r.status, r.body)
			assert.are.equal("0-" .. (cut - 1), r.headers["range"])

			local d = driver { part_size = 5 * MiB }
			local events = {}
			local store = ok(layerup.open(d, {
				log = function(ev, f) events[#events + 1] = { ev = ev, f = f } end,
			}))
			local up = ok(store:resume(repo, uuid))
			assert.are.equal(cut, up:size())
			local before = layerup.s3_counters(d).bytes_received
			ok(up:write(data:sub(cut + 1)))
			local info = ok(up:finish(digest))
			assert.are.equal(digest, info.digest)
			assert.are.equal(0, up:bytes_reread())
			-- nothing of the upload came back from the store (states and
			-- small objects only)
			local recv = layerup.s3_counters(d).bytes_received - before
			assert.is_true(recv < 64 * KiB, "received " .. recv .. " bytes")
			local restored
			for _, e in ipairs(events) do
				if e.ev == "upload.resume" then
					restored = e.f.restored
				end
			end
			assert.are.equal("exact", restored)
			store:close()
			local status, body = fetch(repo, digest)
			assert.are.equal(200, status)
			assert.is_true(body == data, "the registry served other bytes")
		end
	end)
end)
