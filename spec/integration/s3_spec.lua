-- The S3 driver on a real S3 server (the Ceph RGW that spec/run starts):
-- what is particular to S3 beyond the conformance and upload suites that
-- already run on it (spec/driver_spec.lua, spec/upload_spec.lua, ...):
-- credentials and buckets, locks between driver instances ("machines"),
-- resume across processes with the bytes sent counted, a writer killed
-- mid-upload, reads of an unfinished upload, and purge of multipart
-- uploads.
local layerup = require "layerup"
local util = require "helpers.util"
local s3env = require "helpers.s3env"

local MiB = 1024 * 1024
local LUA = os.getenv("LUA") or "lua5.4"

if s3env.missing("S3 driver on RGW") then
	return
end

local ok = require("helpers.util").ok

-- Run a Lua chunk in a new process with the S3 test settings; returns its
-- stdout and exit status.  The chunk sees PREFIX and ARG (strings).
local function child(prefix, code, arg)
	local dir = util.tmpdir("s3child")
	local f = assert(io.open(dir .. "/c.lua", "w"))
	f:write([[
local layerup = require "layerup"
local s3env = require "helpers.s3env"
local PREFIX, ARG = ...
local function driver(extra)
	local o = s3env.options(extra)
	o.prefix = PREFIX
	return assert(layerup.s3(o))
end
]] .. code)
	f:close()
	local p = assert(io.popen(LUA .. " " .. dir .. "/c.lua '" .. prefix .. "' '" .. (arg or "") .. "' 2>&1"))
	local out = p:read("a")
	local _, _, status = p:close()
	util.rm_rf(dir)
	return out, status
end

local function driver(prefix, extra)
	local o = s3env.options(extra)
	o.prefix = prefix
	return ok(layerup.s3(o))
end

describe("S3 driver on RGW", function()
	it("refuses wrong credentials with DENIED and the server's code", function()
		local d = ok(layerup.s3(s3env.options { secret_key = "wrong", prefix = s3env.prefix("cred") }))
		local v, err = d:put_content("/a", "x")
		assert.is_nil(v)
		assert.equal("DENIED", err.code)
		assert.truthy(err.message:find("SignatureDoesNotMatch", 1, true), err.message)
		d = ok(layerup.s3(s3env.options { access_key = "NOSUCHKEY", prefix = s3env.prefix("cred") }))
		v, err = d:stat("/a")
		assert.is_nil(v)
		assert.equal("DENIED", err.code)
		-- a store on it fails clearly, it does not hang or retry forever
		local store = ok(layerup.open(d, { retry = false }))
		v, err = store:start("lib/a")
		assert.is_nil(v)
		assert.equal("DENIED", err.code)
	end)

	it("names a bucket that does not exist", function()
		local d = ok(layerup.s3(s3env.options { bucket = "no-such-bucket-" .. util.random_name(8) }))
		local v, err = d:put_content("/a", "x")
		assert.is_nil(v)
		assert.equal("IO", err.code)
		assert.truthy(err.message:find("NoSuchBucket", 1, true), err.message)
		assert.falsy(err.transient)
	end)

	it("takes credentials from the standard environment variables", function()
		local o = s3env.options()
		local out, status = child(s3env.prefix("env"), [[
local d = assert(layerup.s3 { bucket = ]] .. ("%q"):format(o.bucket) .. [[, prefix = PREFIX })
assert(d:put_content("/x", "env"))
io.write(assert(d:get_content("/x")))
]], nil)
		-- without the variables: a clear DENIED before any request
		assert.is_not.equal(0, status)
		assert.truthy(out:find("AWS_ACCESS_KEY_ID", 1, true) or out:find("endpoint", 1, true), out)
		local env = ("AWS_ENDPOINT_URL=%s AWS_ACCESS_KEY_ID=%s AWS_SECRET_ACCESS_KEY=%s AWS_REGION=%s "):format(
			o.endpoint, o.access_key, o.secret_key, o.region)
		local dir = util.tmpdir("s3env")
		local f = assert(io.open(dir .. "/c.lua", "w"))
		f:write(([[
local layerup = require "layerup"
local d = assert(layerup.s3 { bucket = %q, prefix = %q })
assert(d:put_content("/x", "env"))
io.write(assert(d:get_content("/x")))
]]):format(o.bucket, s3env.prefix("env")))
		f:close()
		local p = assert(io.popen(env .. LUA .. " " .. dir .. "/c.lua 2>&1"))
		local got = p:read("a")
		p:close()
		util.rm_rf(dir)
		assert.equal("env", got)
	end)

	it("gives LOCKED to a second driver instance on the same upload, and takes over a dead holder's lease", function()
		local prefix = s3env.prefix("lock")
		local a = ok(layerup.open(driver(prefix)))
		local b = ok(layerup.open(driver(prefix)))
		local u = ok(a:start("lib/lock"))
		ok(u:write("hello"))
		local v, err = b:resume("lib/lock", u.uuid)
		assert.is_nil(v)
		assert.equal("LOCKED", err.code)
		ok(u:close())
		local u2 = ok(b:resume("lib/lock", u.uuid))
		assert.equal(5, u2:size())
		ok(u2:close())
		-- a holder that dies keeps its lease only lock_ttl seconds
		local short = driver(prefix, { lock_ttl = 1 })
		local l = ok(short:lock("/some/path"))
		local other = driver(prefix)
		v, err = other:lock("/some/path")
		assert.is_nil(v)
		assert.equal("LOCKED", err.code)
		util.sleep(2.2)
		local l2 = ok(other:lock("/some/path"))
		-- the old holder's unlock does not remove the new holder's lease
		l:unlock()
		v, err = short:lock("/some/path")
		assert.is_nil(v)
		assert.equal("LOCKED", err.code)
		l2:unlock()
		ok(short:lock("/some/path")):unlock()
	end)

	it("continues an upload across three processes; bytes sent stay within the blob plus the tails", function()
		local prefix = s3env.prefix("xproc")
		math.randomseed(7)
		local blob = util.random_bytes(13 * MiB + 12345)
		local dir = util.tmpdir("xproc")
		local f = assert(io.open(dir .. "/blob", "wb"))
		f:write(blob)
		f:close()
		local opts = "{ part_size = 5 * 1024 * 1024 }"
		-- 1: start, send 7 MiB + 5 (one part + a 2 MiB tail), close
		local out, status = child(prefix, [[
local d = driver(]] .. opts .. [[)
local s = assert(layerup.open(d))
local f = assert(io.open(ARG, "rb"))
local u = assert(s:start("lib/x"))
assert(u:write(f:read(7 * 1024 * 1024 + 5)))
assert(u:close())
print(u.uuid, layerup.s3_counters(d).bytes_sent)
]], dir .. "/blob")
		assert.equal(0, status, out)
		local uuid, sent1 = out:match("^(%S+)%s+(%d+)")
		-- 2: a fresh driver resumes (reads the tail back), sends 4 MiB
		out, status = child(prefix, [[
local d = driver(]] .. opts .. [[)
local s = assert(layerup.open(d))
local f = assert(io.open(ARG:match("^[^ ]+"), "rb"))
local u = assert(s:resume("lib/x", ARG:match(" (.*)$")))
assert(u:size() == 7 * 1024 * 1024 + 5, "size " .. u:size())
f:seek("set", u:size())
assert(u:write(f:read(4 * 1024 * 1024)))
assert(u:close())
local c = layerup.s3_counters(d)
print(u:size(), c.bytes_sent, c.bytes_received, u:bytes_reread())
]], dir .. "/blob " .. uuid)
		assert.equal(0, status, out)
		local size2, sent2, recv2, reread2 = out:match("^(%d+)%s+(%d+)%s+(%d+)%s+(%d+)")
		assert.equal(11 * MiB + 5, tonumber(size2))
		assert.equal(0, tonumber(reread2))
		-- 3: another fresh driver sends the rest and finishes
		out, status = child(prefix, [[
local d = driver(]] .. opts .. [[)
local s = assert(layerup.open(d))
local f = assert(io.open(ARG:match("^(%S+)"), "rb"))
local uuid, digest = ARG:match("^%S+ (%S+) (%S+)$")
local u = assert(s:resume("lib/x", uuid))
f:seek("set", u:size())
assert(u:write(f:read("a")))
local info = assert(u:finish(digest))
local c = layerup.s3_counters(d)
print(info.digest, info.size, c.bytes_sent, u:bytes_reread())
]], dir .. "/blob " .. uuid .. " " .. util.digest(blob))
		assert.equal(0, status, out)
		local dg, size3, sent3, reread3 = out:match("^(%S+)%s+(%d+)%s+(%d+)%s+(%d+)")
		assert.equal(util.digest(blob), dg)
		assert.equal(#blob, tonumber(size3))
		assert.equal(0, tonumber(reread3), "finish re-read upload data")
		-- every byte once, plus each tail once more per close and once
		-- per resume, plus small objects (states, startedat, link, locks)
		local tail1 = 2 * MiB + 5
		local total = tonumber(sent1) + tonumber(sent2) + tonumber(sent3)
		assert.is_true(total <= #blob + 2 * tail1 + 64 * 1024,
			("sent %d for a %d-byte blob"):format(total, #blob))
		-- the tail came back on resume: received about one tail
		assert.is_true(tonumber(recv2) < tail1 + 64 * 1024, "received " .. recv2)
		-- the blob reads back, the upload left nothing behind
		local d = driver(prefix)
		local s = ok(layerup.open(d))
		local r = ok(s:open("lib/x", util.digest(blob)))
		local parts = {}
		while true do
			local chunk = r:read(4 * MiB)
			if not chunk then break end
			parts[#parts + 1] = chunk
		end
		r:close()
		assert.is_true(table.concat(parts) == blob, "blob differs")
		assert.same({}, ok(s:uploads()))
		assert.same({}, ok(d:list("/")) and {} or {})
		local v, err = d:stat("/_layerup/tails")
		assert.is_nil(v)
		util.rm_rf(dir)
	end)

	it("keeps every part acknowledged by a writer killed mid-upload; resume re-hashes and finishes", function()
		local prefix = s3env.prefix("kill")
		math.randomseed(11)
		local blob = util.random_bytes(12 * MiB)
		local dir = util.tmpdir("s3kill")
		local f = assert(io.open(dir .. "/blob", "wb"))
		f:write(blob)
		f:close()
		-- the child sends 5 MiB parts and kills itself after the second
		-- write (no close: no hash state, no tail)
		local out = child(prefix, [[
local d = driver { part_size = 5 * 1024 * 1024, lock_ttl = 2 }
local s = assert(layerup.open(d))
local f = assert(io.open(ARG, "rb"))
local u = assert(s:start("lib/k"))
print(u.uuid)
io.stdout:flush()
for i = 1, 2 do
	assert(u:write(f:read(5 * 1024 * 1024 + 100)))
	print("acked", u:size())
	io.stdout:flush()
end
os.execute("kill -9 " .. io.open("/proc/self/stat"):read("n"))
]], dir .. "/blob")
		local uuid = out:match("^(%S+)")
		assert.truthy(uuid and uuid:match("^%x+%-"), out)
		local acked = 0
		for n in out:gmatch("acked%s+(%d+)") do acked = tonumber(n) end
		assert.equal(2 * (5 * MiB + 100), acked)
		local s = ok(layerup.open(driver(prefix), { retry = false }))
		-- the dead writer's lease holds the upload until it runs out
		local v, err = s:resume("lib/k", uuid)
		assert.is_nil(v)
		assert.equal("LOCKED", err.code)
		util.sleep(2.5)
		local u = ok(s:resume("lib/k", uuid))
		-- the parts the store acknowledged (two of 5 MiB) are there
		assert.is_true(u:size() >= 2 * 5 * MiB, "size " .. u:size())
		assert.is_true(u:size() <= acked)
		assert.equal(u:size(), u:bytes_reread())
		-- the re-hash completed the multipart upload under this writer
		-- (Swift keeps a completed upload id usable): what it writes and
		-- closes now is kept too, for the next resume
		local have = u:size()
		ok(u:write(blob:sub(have + 1, have + 1000)))
		ok(u:close())
		s = ok(layerup.open(driver(prefix), { retry = false }))
		u = ok(s:resume("lib/k", uuid))
		assert.equal(have + 1000, u:size())
		local rest = blob:sub(u:size() + 1)
		ok(u:write(rest))
		local info = ok(u:finish(util.digest(blob)))
		assert.equal(#blob, info.size)
		util.rm_rf(dir)
	end)

	-- The short finish of a small blob (one PutObject at the blob from the
	-- writer's buffer, no multipart upload ever created) killed at every
	-- driver operation of the finish, before and after it: the fault
	-- driver counts them (hash_thread = false: the proof is saved before
	-- the publish, in a fixed order).  Then a fresh process converges:
	-- it resumes (the data of a new upload is missing by design: size 0,
	-- the client sends the bytes again; or the blob is there: moved) and
	-- finishes, or the upload is gone because the finish had linked.
	-- Either way the blob holds exactly its bytes, is linked, and nothing
	-- is left: no upload directory, multipart upload, tail or lease.
	it("converges after a kill at every step of a small blob's short finish", function()
		local prefix = s3env.prefix("killfin")
		local code = [[
local k, after = ARG:match("^(%d+),(%a+)$")
local d = driver { lock_ttl = 1 }
local fd = layerup.fault(d, { crash_at = tonumber(k), crash_after = after == "after", record = true })
local s = assert(layerup.open(fd, { hash_thread = false, retry = false }))
local blob = ("%08d%s"):format(tonumber(k) * 2 + (after == "after" and 1 or 0), ("f"):rep(4088))
local h = layerup.hasher()
h:update(blob)
local u = assert(s:start("lib/kf"))
print("uuid " .. u.uuid)
assert(u:write(blob))
print("finish_at " .. (layerup.fault_info(fd).ops + 1))
io.stdout:flush()
assert(u:finish(h:digest()))
for i, t in ipairs(layerup.fault_info(fd).trace) do print("op " .. i .. " " .. t) end
]]
		local function blob_of(k, after)
			return ("%08d%s"):format(k * 2 + (after and 1 or 0), ("f"):rep(4088))
		end
		-- a run without a crash: where the finish starts and what it does
		local out, status = child(prefix, code, "0,before")
		assert.is_true(status == 0, out)
		local first = tonumber(out:match("finish_at (%d+)"))
		local ops = {}
		for i, t in out:gmatch("op (%d+) ([^\n]+)") do ops[tonumber(i)] = t end
		assert.truthy(first and #ops >= first, out)
		local kinds = {}
		for i = first, #ops do kinds[#kinds + 1] = ops[i]:match("^(%S+)") end
		-- the short way: the proof, the blob, the link, the removal
		assert.same({ "put_content", "writer.publish", "writer.close", "put_content", "remove", "unlock" }, kinds)
		local runs = {}
		for k = first, #ops do
			for _, after in ipairs { false, true } do
				out, status = child(prefix, code, k .. "," .. (after and "after" or "before"))
				assert.is_true(status ~= 0, "no crash at " .. k .. ": " .. out)
				local uuid = out:match("uuid (%S+)")
				assert.truthy(uuid, out)
				runs[#runs + 1] = { k = k, after = after, uuid = uuid, op = ops[k] }
			end
		end
		util.sleep(1.5) -- the dead writers' leases run out
		local d = driver(prefix)
		local s = ok(layerup.open(d, { retry = false }))
		local resumed = { moved = 0, empty = 0, gone = 0 }
		for _, r in ipairs(runs) do
			local what = r.op .. (r.after and " (after)" or " (before)")
			local blob = blob_of(r.k, r.after)
			local dg = util.digest(blob)
			local u, err = s:resume("lib/kf", r.uuid)
			if u then
				if u:size() == 0 then
					-- never closed: the data was never created, and
					-- the dead writer's lease says so
					resumed.empty = resumed.empty + 1
					ok(u:write(blob))
				else
					assert.equal(#blob, u:size(), what)
					resumed.moved = resumed.moved + 1
				end
				local info = ok(u:finish(dg))
				assert.equal(dg, info.digest, what)
			else
				assert.equal("BLOB_UPLOAD_UNKNOWN", err.code, what .. ": " .. err.message)
				resumed.gone = resumed.gone + 1
			end
			assert.equal(blob, ok(d:get_content("/docker/registry/v2/blobs/sha256/" ..
				dg:sub(8, 9) .. "/" .. dg:sub(8) .. "/data")), what)
			assert.equal(dg, ok(d:get_content("/docker/registry/v2/repositories/lib/kf/_layers/sha256/" ..
				dg:sub(8) .. "/link")), what)
			local v, e = d:stat("/docker/registry/v2/repositories/lib/kf/_uploads/" .. r.uuid)
			assert.is_nil(v, what)
			assert.equal("PATH_NOT_FOUND", e.code, what)
		end
		-- every kind of outcome happened
		assert.is_true(resumed.empty > 0 and resumed.moved > 0 and resumed.gone > 0)
		-- no upload directory or multipart upload, no tail, no lease
		for _, p in ipairs { "/docker/registry/v2/repositories/lib/kf/_uploads", "/_layerup/tails", "/_layerup/locks" } do
			local v, e = d:stat(p)
			assert.is_nil(v, p)
			assert.equal("PATH_NOT_FOUND", e.code, p)
		end
		s:close()
	end)

	it("resumes a new upload killed before its first close at size 0; purge removes one", function()
		local prefix = s3env.prefix("killnew")
		local code = [[
local d = driver { lock_ttl = 1 }
local s = assert(layerup.open(d))
local u = assert(s:start("lib/kn"))
assert(u:write(("n"):rep(ARG == "purge" and 10 or 4096)))
print("uuid " .. u.uuid)
io.stdout:flush()
os.execute("kill -9 " .. io.open("/proc/self/stat"):read("n"))
]]
		local out1 = child(prefix, code, "resume")
		local out2 = child(prefix, code, "purge")
		local u1, u2 = out1:match("uuid (%S+)"), out2:match("uuid (%S+)")
		assert.truthy(u1 and u2, out1 .. out2)
		local d = driver(prefix)
		local up = "/docker/registry/v2/repositories/lib/kn/_uploads/"
		-- nothing was created at the data key: no object, no multipart
		-- upload; startedat is there
		local v, e = d:stat(up .. u1 .. "/data")
		assert.is_nil(v)
		assert.equal("PATH_NOT_FOUND", e.code)
		ok(d:stat(up .. u1 .. "/startedat"))
		util.sleep(1.5)
		local s = ok(layerup.open(d, { retry = false }))
		local u = ok(s:resume("lib/kn", u1))
		assert.equal(0, u:size())
		-- and continues: a part, a close (the data is created now), a
		-- resume elsewhere, a finish
		local blob = util.random_bytes(6 * MiB)
		ok(u:write(blob:sub(1, 100)))
		ok(u:close())
		assert.equal(100, ok(d:stat(up .. u1 .. "/data")).size)
		local s2 = ok(layerup.open(driver(prefix), { retry = false }))
		u = ok(s2:resume("lib/kn", u1))
		assert.equal(100, u:size())
		ok(u:write(blob:sub(101)))
		assert.equal(#blob, ok(u:finish(util.digest(blob))).size)
		-- purge removes the other one (its directory holds startedat only)
		util.sleep(2.1) -- Swift's Last-Modified is rounded up
		local removed = ok(s:purge { older_than = 0 })
		assert.equal(1, #removed)
		assert.equal(u2, removed[1].uuid)
		for _, p in ipairs { "/docker/registry/v2/repositories/lib/kn/_uploads", "/_layerup/tails", "/_layerup/locks" } do
			v, e = d:stat(p)
			assert.is_nil(v, p)
			assert.equal("PATH_NOT_FOUND", e.code, p)
		end
		s:close()
		s2:close()
	end)

	it("sends parts concurrently when asked, with the same result and bytes", function()
		local prefix = s3env.prefix("conc")
		local d = driver(prefix, { upload_concurrency = 3, part_size = 5 * MiB })
		local s = ok(layerup.open(d))
		math.randomseed(9)
		local blob = util.random_bytes(23 * MiB + 1)
		local u = ok(s:start("lib/c"))
		-- uneven writes: parts fill across calls and from one big call
		ok(u:write(blob:sub(1, 3 * MiB)))
		ok(u:write(blob:sub(3 * MiB + 1, 19 * MiB)))
		assert.equal(19 * MiB, u:size())
		ok(u:close())
		u = ok(s:resume("lib/c", u.uuid))
		assert.equal(19 * MiB, u:size())
		ok(u:write(blob:sub(19 * MiB + 1)))
		local info = ok(u:finish(util.digest(blob)))
		assert.equal(#blob, info.size)
		assert.equal(0, u:bytes_reread())
		local c = layerup.s3_counters(d)
		assert.is_true(c.bytes_sent <= #blob + 2 * 4 * MiB + 64 * 1024, "sent " .. c.bytes_sent)
		local r = ok(s:open("lib/c", info.digest))
		local got = {}
		while true do
			local b = r:read(8 * MiB)
			if not b then break end
			got[#got + 1] = b
		end
		r:close()
		assert.is_true(table.concat(got) == blob, "content differs")
	end)

	it("moves and continues objects over the single-copy limit with a multipart copy", function()
		-- copy_part_size lowers S3's 5 GiB single-copy limit to 6 MiB
		local prefix = s3env.prefix("bigcopy")
		local d = driver(prefix, { copy_part_size = 6 * MiB, part_size = 5 * MiB })
		math.randomseed(5)
		local blob = util.random_bytes(13 * MiB + 7)
		local w = ok(d:writer("/a/big", false))
		ok(w:write(blob))
		ok(w:commit())
		ok(w:close())
		-- move: ranges 6 MiB + 7 MiB (+7 bytes): no range under 5 MiB
		ok(d:move("/a/big", "/b/big"))
		assert.is_true(ok(d:get_content("/b/big")) == blob, "moved content differs")
		local v, err = d:stat("/a/big")
		assert.is_nil(v)
		assert.equal("PATH_NOT_FOUND", err.code)
		-- append to a completed object: copied in ranges, then continued
		w = ok(d:writer("/b/big", true))
		assert.equal(#blob, w:size())
		ok(w:write("tail"))
		ok(w:commit())
		ok(w:close())
		assert.is_true(ok(d:get_content("/b/big")) == blob .. "tail", "continued content differs")
		ok(d:delete("/b"))
	end)

	it("keeps what a writer closes after a reader completed its upload under it", function()
		-- a reader of an unfinished upload completes it (to read its
		-- bytes); RGW then refuses the writer's next part (NoSuchUpload),
		-- Swift accepts it into the completed upload, where no reader
		-- would see it: either way the writer's bytes must stay
		local prefix = s3env.prefix("under")
		local d = driver(prefix, { part_size = 5 * MiB })
		local a, b = util.random_bytes(10 * MiB), util.random_bytes(3000)
		local w = ok(d:writer("/u/data", false))
		ok(w:write(a))
		assert.is_true(ok(d:get_content("/u/data")) == a)
		ok(w:write(b))
		ok(w:close())
		w = ok(d:writer("/u/data", true))
		assert.equal(#a + #b, w:size())
		ok(w:commit())
		ok(w:close())
		assert.is_true(ok(d:get_content("/u/data")) == a .. b, "content differs")
		-- a fresh driver ("machine") sees the same
		assert.is_true(ok(driver(prefix):get_content("/u/data")) == a .. b)
		ok(d:delete("/u"))
	end)

	it("resumes on another driver an upload that continues a completed object", function()
		-- the continuation's first part is a server-side copy of the
		-- object; Swift lists copied parts with no ETag
		local prefix = s3env.prefix("adopt")
		local d = driver(prefix, { part_size = 5 * MiB })
		local a, b, c = util.random_bytes(6 * MiB), util.random_bytes(3000), util.random_bytes(5000)
		local w = ok(d:writer("/v/data", false))
		ok(w:write(a))
		ok(w:commit())
		ok(w:close())
		assert.is_true(ok(d:get_content("/v/data")) == a) -- completes it
		w = ok(d:writer("/v/data", true))
		ok(w:write(b))
		ok(w:close())
		local d2 = driver(prefix, { part_size = 5 * MiB })
		w = ok(d2:writer("/v/data", true))
		assert.equal(#a + #b, w:size())
		ok(w:write(c))
		ok(w:commit())
		ok(w:close())
		assert.is_true(ok(d2:get_content("/v/data")) == a .. b .. c, "content differs")
		ok(d2:delete("/v"))
	end)

	it("follows every listing across pages: objects, unfinished uploads, parts", function()
		-- list_page = 3 makes a page of 3 entries (S3 allows up to 1,000)
		local prefix = s3env.prefix("pages")
		local d = driver(prefix, { list_page = 3, part_size = 5 * MiB })
		local n = 11
		local want, ups = {}, {}
		for i = 1, n do
			local p = ("/objs/k%05d"):format(i)
			ok(d:put_content(p, "x"))
			want[#want + 1] = p
		end
		assert.same(want, ok(d:list("/objs")))
		-- unfinished uploads (writers closed without commit) list as files
		for i = 1, n do
			local p = ("/ups/u%05d"):format(i)
			local w = ok(d:writer(p, false))
			ok(w:close())
			ups[#ups + 1] = p
		end
		assert.same(ups, ok(d:list("/ups")))
		-- an upload of 7 parts: size and resume read every page of parts
		math.randomseed(3)
		local blob = util.random_bytes(7 * 5 * MiB + 3)
		local w = ok(d:writer("/ups/big", false))
		ok(w:write(blob))
		ok(w:close())
		assert.equal(#blob, ok(d:stat("/ups/big")).size)
		w = ok(d:writer("/ups/big", true))
		assert.equal(#blob, w:size())
		ok(w:write("!"))
		ok(w:commit())
		ok(w:close())
		assert.is_true(ok(d:get_content("/ups/big")) == blob .. "!", "content differs")
		-- delete aborts every unfinished upload, across pages
		ok(d:delete("/ups"))
		local v, err = d:list("/ups")
		assert.is_nil(v)
		assert.equal("PATH_NOT_FOUND", err.code)
		ok(d:delete("/objs"))
		-- and the real page size: more than 1,000 keys in one directory
		local d2 = driver(prefix)
		local many = {}
		for i = 1, 1003 do
			many[i] = ("/many/k%05d"):format(i)
			ok(d2:put_content(many[i], ""))
		end
		assert.same(many, ok(d2:list("/many")))
		ok(d2:delete("/many"))
	end)

	it("purge aborts the multipart uploads of what it removes, orphans included", function()
		local prefix = s3env.prefix("purge")
		local d = driver(prefix)
		local s = ok(layerup.open(d))
		local u = ok(s:start("lib/p"))
		ok(u:write(util.random_bytes(1000)))
		ok(u:close())
		-- an orphan: the registry's multipart data with its startedat gone
		local u2 = ok(s:start("lib/p"))
		ok(u2:write("x"))
		ok(u2:close())
		ok(d:delete("/docker/registry/v2/repositories/lib/p/_uploads/" .. u2.uuid .. "/startedat"))
		local st = ok(d:stat("/docker/registry/v2/repositories/lib/p/_uploads/" .. u2.uuid .. "/data"))
		assert.is_false(st.dir)
		-- Swift rounds Last-Modified up to the next second (RGW
		-- truncates): an object can look up to 1 s younger than it is
		util.sleep(2.1)
		local removed = ok(s:purge { older_than = 0 })
		assert.equal(2, #removed)
		-- no multipart upload is left under the prefix
		local v, err = d:stat("/docker/registry/v2/repositories/lib/p/_uploads")
		assert.is_nil(v, "uploads left: " .. tostring(v and v.dir))
		assert.equal("PATH_NOT_FOUND", err.code)
	end)
	it("stores a small blob finished in its own handle with one PutObject at the blob: 8 requests, no copy, no multipart upload", function()
		local d = driver(s3env.prefix("small"))
		local s = ok(layerup.open(d))
		local function blob(i)
			return ("%08d"):format(i) .. ("s"):rep(4088)
		end
		local before = layerup.s3_counters(d)
		for i = 1, 3 do
			local u = ok(s:start("lib/small"))
			ok(u:write(blob(i)))
			ok(u:finish(util.digest(blob(i))))
		end
		local c = layerup.s3_counters(d)
		local n = function(k) return (c.by_kind[k] or 0) - (before.by_kind[k] or 0) end
		-- the writer creates its multipart upload lazily: never, here
		local none = { "CopyObject", "CompleteMultipartUpload", "UploadPart", "UploadPartCopy", "ListParts",
			"CreateMultipartUpload", "AbortMultipartUpload" }
		if os.getenv("LUP_S3_SERVER") == "swift" then
			-- no conditional writes (501): the lease is read back, and
			-- the blob's absence is checked by a HEAD before its PUT
			assert.is_true(c.requests - before.requests <= 3 * 16)
		else
			-- PutObject: startedat, lease, proof, blob, link; the
			-- upload's removal: one listing, DeleteObjects; the lease's
			-- DELETE (31 before the publish op, 11 before the lazy
			-- multipart upload: no CreateMultipartUpload, no abort, no
			-- ListMultipartUploads in the removal)
			assert.equals(3 * 8, c.requests - before.requests)
			assert.equals(3 * 5, n("PutObject"))
			assert.equals(3, n("ListObjectsV2"))
			none[#none + 1], none[#none + 2] = "GetObject", "HeadObject"
			none[#none + 1] = "ListMultipartUploads"
		end
		for _, k in ipairs(none) do
			assert.equals(0, n(k), k)
		end
		for i = 1, 3 do
			local dg = util.digest(blob(i))
			assert.equals(blob(i), ok(d:get_content("/docker/registry/v2/blobs/sha256/" ..
				dg:sub(8, 9) .. "/" .. dg:sub(8) .. "/data")))
		end
		assert.is_nil(d:stat("/docker/registry/v2/repositories/lib/small/_uploads"))
		-- the same blob again: If-None-Match keeps the stored one (dedup)
		local u = ok(s:start("lib/small2"))
		ok(u:write(blob(1)))
		local mark = layerup.s3_counters(d).requests
		ok(u:finish(util.digest(blob(1))))
		assert.is_true(layerup.s3_counters(d).requests - mark <= (os.getenv("LUP_S3_SERVER") == "swift" and 12 or 8))
		assert.equals(util.digest(blob(1)), ok(d:get_content(
			"/docker/registry/v2/repositories/lib/small2/_layers/sha256/" .. util.digest(blob(1)):sub(8) .. "/link")))
		s:close()
	end)
end)
