-- A Ceph RGW on three OSDs (pools of size 3, min_size 2) with one OSD
-- killed (SIGKILL, by its pid) in the middle of an upload: the gateway
-- keeps serving, the upload goes on, another process resumes and finishes
-- it, the blob matches its digest, and it still does once the OSD is back.
--
-- Needs the 3-OSD cluster that `make test-s3-osd` starts (spec/run with
-- S3_RGW_OSDS=3); under `make test` (one OSD) it is skipped.

local util = require "integration.helpers.util"
local s3env = require "helpers.s3env"

local MiB = 1024 * 1024
local LUA = os.getenv("LUA") or "lua5.4"

local rgw_dir = os.getenv("LUP_TEST_S3_RGW_DIR") or ""
if not s3env.options() or rgw_dir == "" or os.getenv("LUP_TEST_S3_RGW_OSDS") ~= "3" then
	describe("S3 on RGW with an OSD killed", function()
		pending("needs the 3-OSD Ceph RGW that `make test-s3-osd` starts")
	end)
	return
end

local layerup = require "layerup"

local function ok(v, err)
	if v == nil then
		error("layerup call failed: " .. tostring(err), 2)
	end
	return v
end

local tool = util.q(util.repo_root() .. "/tools/s3-rgw")

local function osds_up()
	return tonumber((util.must(tool .. " osds-up " .. util.q(rgw_dir)):match("%d+")))
end

local function wait_osds(n, seconds)
	for _ = 1, seconds * 2 do
		if osds_up() == n then
			return true
		end
		util.sleep(0.5)
	end
	return false
end

-- sha256 of the blob as the store reads it back.
local function read_digest(store, repo, digest)
	local r = ok(store:open(repo, digest))
	local chunks = {}
	while true do
		local c = r:read(4 * MiB)
		if not c then break end
		chunks[#chunks + 1] = c
	end
	r:close()
	return util.sha256(table.concat(chunks))
end

describe("S3 on RGW with an OSD killed", function()
	it("keeps an upload going with one of three OSDs killed; another process resumes and finishes it", function()
		local prefix = s3env.prefix("osd")
		local data = util.random_bytes(40 * MiB + 4321)
		local digest = util.sha256(data)
		local dir = util.tmpdir("s3osd")
		finally(function() util.rmrf(dir) end)
		util.write_file(dir .. "/blob", data)
		assert.are.equal(3, osds_up())

		local retry = layerup.retry.backoff { attempts = 10, base = 0.2, factor = 2, max = 2, jitter = 0 }
		local store = ok(layerup.open(ok(layerup.s3(s3env.options {
			prefix = prefix, part_size = 5 * MiB, timeout = 60 })), { retry = retry }))
		local up = ok(store:start("lib/osd"))
		ok(up:write(data:sub(1, 12 * MiB)))

		-- kill osd.1 by its pid (no clean shutdown: its memstore is lost)
		local pid = assert(tonumber(util.read_file(rgw_dir .. "/run/osd.1.pid") or ""), "no osd.1 pid")
		assert.is_true(util.alive(pid))
		util.must("kill -KILL " .. pid)
		local restarted = false
		finally(function()
			if not restarted then util.exec(tool .. " start-osd " .. util.q(rgw_dir) .. " 1") end
		end)
		for _ = 1, 100 do
			if not util.alive(pid) then break end
			util.sleep(0.1)
		end
		assert.is_false(util.alive(pid), "osd.1 still runs")

		-- the upload goes on through the two OSDs left
		ok(up:write(data:sub(12 * MiB + 1, 28 * MiB)))
		ok(up:close())
		assert.is_true(wait_osds(2, 60), "the monitor never marked osd.1 down")

		-- another process (a fresh driver: another machine) resumes,
		-- sends the rest and finishes
		local f = assert(io.open(dir .. "/child.lua", "w"))
		f:write([[
local layerup = require "layerup"
local s3env = require "helpers.s3env"
local prefix, uuid, blob, digest = ...
local o = s3env.options { part_size = 5 * 1024 * 1024, timeout = 60 }
o.prefix = prefix
local s = assert(layerup.open(assert(layerup.s3(o))))
local u = assert(s:resume("lib/osd", uuid))
local f = assert(io.open(blob, "rb"))
local have = u:size()
f:seek("set", have)
assert(u:write(f:read("a")))
local info = assert(u:finish(digest))
print(have, info.digest, info.size, u:bytes_reread())
]])
		f:close()
		local out = util.must(("%s %s %s %s %s %s"):format(LUA, util.q(dir .. "/child.lua"), util.q(prefix),
			util.q(up.uuid), util.q(dir .. "/blob"), util.q(digest)), true)
		local have, got, size, reread = out:match("(%d+)%s+(%S+)%s+(%d+)%s+(%d+)")
		assert.are.equal(28 * MiB, tonumber(have), out)
		assert.are.equal(digest, got)
		assert.are.equal(#data, tonumber(size))
		assert.are.equal(0, tonumber(reread), "the resume re-read upload data")
		assert.are.equal(digest, read_digest(store, "lib/osd", digest))

		-- osd.1 comes back (empty: memstore) and recovers; the blob stays whole
		util.must(tool .. " start-osd " .. util.q(rgw_dir) .. " 1")
		restarted = true
		assert.is_true(wait_osds(3, 60), "osd.1 did not come back up")
		assert.are.equal(digest, read_digest(store, "lib/osd", digest))
		store:close()
	end)
end)
