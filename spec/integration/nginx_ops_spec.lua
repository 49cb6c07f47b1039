-- The nginx host's operations (bin/layerup serve): the periodic purge in
-- one worker through the thread pool (stale uploads go, one held by a
-- writer stays, one purge per interval, a killed worker 0 takes it up
-- again), the JSON access log of a push, fsync'd PATCH closes and finishes
-- in worker threads, and a long re-hash gap healed in a thread before the
-- resume.  Every server runs on 127.0.0.1 at a free port, stopped by PID.

local util = require "integration.helpers.util"
local N = require "integration.helpers.nginx"
local cjson = require "cjson"
local layerup = require "layerup"

local V2 = "/docker/registry/v2"
local MiB = 1024 * 1024

local why = N.unavailable()

-- JSON lines of path: every line must parse.
local function json_lines(path)
	local t = {}
	for line in (util.read_file(path) or ""):gmatch("[^\n]+") do
		local ok, v = pcall(cjson.decode, line)
		assert(ok, "not a JSON line: " .. line)
		t[#t + 1] = v
	end
	return t
end

local function iso_seconds(ts)
	local h, m, s = ts:match("T(%d+):(%d+):([%d%.]+)Z$")
	return tonumber(h) * 3600 + tonumber(m) * 60 + tonumber(s)
end

local function upload_dir(root, repo, uuid)
	return root .. V2 .. "/repositories/" .. repo .. "/_uploads/" .. uuid
end

-- A line of text holding every one of the plain strings.
local function line_with(text, ...)
	local want = { ... }
	for line in text:gmatch("[^\n]+") do
		local all = true
		for _, w in ipairs(want) do
			if not line:find(w, 1, true) then all = false break end
		end
		if all then return line end
	end
end

local function wait_for(pred, seconds)
	for _ = 1, seconds * 10 do
		if pred() then return true end
		util.sleep(0.1)
	end
	return pred()
end

describe("the nginx host's operations", function()
	if why then
		it("runs", function() pending(why) end)
		return
	end

	describe("purge", function()
		local work, root, host, alog

		lazy_setup(function()
			work = util.tmpdir("nginx-ops")
			root = work .. "/root"
			alog = work .. "/access.json"
			util.mkdirp(root)
			host = N.start(root, { workers = 2, config = ([[
return { purge_interval = 1, purge_older_than = 2, access_log = %q }
]]):format(alog) })
		end)

		lazy_teardown(function()
			if host then host:stop() end
			if work then util.rmrf(work) end
		end)

		local function purge_runs()
			local runs = {}
			for _, l in ipairs(json_lines(alog)) do
				for _, e in ipairs(l.events or {}) do
					if e.event == "purge.run" then
						e.at = iso_seconds(l.ts)
						runs[#runs + 1] = e
					end
				end
			end
			return runs
		end

		it("removes stale uploads in a worker thread, keeps one held by a writer, once per interval", function()
			local stale = {}
			for i = 1, 3 do
				stale[i] = host:start_upload("ops/stale")
			end
			local live = host:start_upload("ops/live")
			local r = host:http("PATCH", "/v2/ops/live/blobs/uploads/" .. live, { body = "abc" })
			assert.equal(202, r.status)
			-- a writer outside nginx holds the live upload (its lock)
			local store = assert(layerup.open(root))
			local u = assert(store:resume("ops/live", live))
			local t0 = os.time()
			local gone = wait_for(function()
				for _, id in ipairs(stale) do
					if util.exists(upload_dir(root, "ops/stale", id)) then return false end
				end
				return true
			end, 10)
			assert(gone, "stale uploads not purged:\n" .. host:error_log():sub(-3000))
			-- at least one more run while the writer holds it
			local n = #purge_runs()
			assert(wait_for(function() return #purge_runs() > n end, 5))
			assert.truthy(util.exists(upload_dir(root, "ops/live", live) .. "/data"))
			assert(u:write("def"))
			assert(u:close())
			local elapsed = os.time() - t0 + 1
			local elog = host:error_log()
			assert.truthy(line_with(elog, "purge.skip", live))
			assert.truthy(line_with(elog, "purge.delete", stale[1]))
			-- in the thread pool, timed by one worker, at most once per interval
			local runs = purge_runs()
			local timer = runs[1].timer_worker
			local purged = 0
			for i, run in ipairs(runs) do
				assert.equal("thread", run.how)
				assert.equal(timer, run.timer_worker)
				purged = purged + run.purged
				if i > 1 then
					assert(run.at - runs[i - 1].at >= 0.5,
						("two purges %.3f s apart"):format(run.at - runs[i - 1].at))
				end
			end
			assert.equal(3, purged)
			assert(#runs <= elapsed + 3, #runs .. " purges in about " .. elapsed .. " s")
			local found = false
			for _, w in ipairs(host:workers()) do
				if w == timer then found = true end
			end
			assert(found, "the purging timer is not in a worker of this nginx")
			-- the writer's bytes are all there
			local r2 = host:http("GET", "/v2/ops/live/blobs/uploads/" .. live)
			assert.equal(204, r2.status)
			assert.equal("0-5", r2.headers["range"])
		end)

		it("goes on after worker 0 is killed: the respawned worker 0 times it", function()
			local runs = purge_runs()
			local timer = runs[#runs].timer_worker
			util.exec(("kill -KILL %d"):format(timer))
			local new
			assert(wait_for(function()
				local rs = purge_runs()
				local last = rs[#rs]
				if last.timer_worker ~= timer then
					new = last.timer_worker
					return true
				end
			end, 10), "no purge after worker 0 was killed")
			assert.are_not.equal(timer, new)
			local stale = host:start_upload("ops/stale2")
			assert(wait_for(function()
				return not util.exists(upload_dir(root, "ops/stale2", stale))
			end, 10), "no purge by the respawned worker")
		end)
	end)

	describe("logging and threads", function()
		local work, root, host, alog

		lazy_setup(function()
			work = util.tmpdir("nginx-ops")
			root = work .. "/root"
			alog = work .. "/access.json"
			util.mkdirp(root)
			host = N.start(root, { workers = 1, http2 = true, config = ([[
return { fsync = true, access_log = %q }
]]):format(alog) })
		end)

		lazy_teardown(function()
			if host then host:stop() end
			if work then util.rmrf(work) end
		end)

		it("writes one JSON line per request of a push, with its engine events", function()
			local data = util.random_bytes(300 * 1024)
			local dg = util.sha256(data)
			local uuid, loc = host:start_upload("ops/logged")
			assert.equal(202, host:http("PATCH", loc, { body = data:sub(1, 100000) }).status)
			-- a chunked PATCH goes through the raw socket (response by hand)
			local f = work .. "/part2"
			util.write_file(f, data:sub(100001))
			local r = host:curl(("-X PATCH -H 'Transfer-Encoding: chunked' -H 'Content-Type: application/octet-stream' --data-binary @%s %s")
				:format(util.q(f), util.q(host.base .. loc)))
			assert.equal(202, r.status)
			assert.equal(201, host:http("PUT", loc .. "?digest=" .. dg).status)
			assert.equal(200, host:http("GET", "/v2/ops/logged/blobs/" .. dg).status)
			assert.equal(404, host:http("GET", "/v2/ops/logged/blobs/sha256:" .. ("0"):rep(64)).status)
			local lines = json_lines(alog)
			local by = {}
			for _, l in ipairs(lines) do
				assert.is_string(l.ts)
				assert.is_number(l.duration_ms)
				assert.is_number(l.worker)
				if l.repository == "ops/logged" then
					by[#by + 1] = l
				end
			end
			assert.equal(6, #by)
			local post, patch1, patch2, put, get, miss = by[1], by[2], by[3], by[4], by[5], by[6]
			assert.same({ "POST", 202, uuid }, { post.method, post.status, post.upload })
			assert.equal("/v2/ops/logged/blobs/uploads/", post.path)
			assert.same({ "PATCH", 202, uuid, 100000 }, { patch1.method, patch1.status, patch1.upload, patch1.bytes_in })
			assert.same({ "PATCH", 202, uuid, #data - 100000 }, { patch2.method, patch2.status, patch2.upload, patch2.bytes_in })
			assert(patch2.bytes_out > 0)
			assert.same({ "PUT", 201, uuid, dg }, { put.method, put.status, put.upload, put.digest })
			assert.same({ "GET", 200, dg }, { get.method, get.status, get.digest })
			assert(get.bytes_out >= #data, "GET bytes_out " .. tostring(get.bytes_out))
			assert.same({ "GET", 404 }, { miss.method, miss.status })
			local function has(line, event)
				for _, e in ipairs(line.events or {}) do
					if e.event == event then return e end
				end
			end
			assert.truthy(has(post, "upload.start"))
			assert.truthy(has(patch1, "upload.close"))
			local fin = has(put, "upload.finish")
			assert.truthy(fin)
			assert.equal(dg, fin.digest)
			assert.equal(#data, fin.size)
		end)

		it("with fsync on, closes a PATCH and finishes even a small blob in worker threads", function()
			local data = util.random_bytes(64 * 1024)
			local dg = util.sha256(data)
			local uuid, loc = host:start_upload("ops/sync")
			assert.equal(202, host:http("PATCH", loc, { body = data }).status)
			local elog = host:error_log()
			assert.truthy(elog:find("synced in a worker thread repo=ops/sync uuid=" .. uuid, 1, true))
			assert.equal(201, host:http("PUT", loc .. "?digest=" .. dg).status)
			elog = host:error_log()
			assert.truthy(elog:find("finished in a worker thread repo=ops/sync uuid=" .. uuid, 1, true))
			assert.is_nil(elog:find("inline", 1, true))
			local r = host:http("GET", "/v2/ops/sync/blobs/" .. dg)
			assert.equal(data, r.body)
		end)

		it("with fsync on, copies a spooled HTTP/2 body in a worker thread that closes it durably", function()
			local body = work .. "/h2body"
			util.must(("head -c %d /dev/urandom >%s"):format(5 * MiB + 7, util.q(body)))
			local dg = util.sha256_file(body)
			local r = host:curl("--http2-prior-knowledge -X POST " .. util.q(host.h2base .. "/v2/ops/h2/blobs/uploads/"))
			assert.equal(202, r.status, r.body)
			local loc = r.headers.location
			local uuid = loc:match("([^/]+)$")
			r = host:curl(("--http2-prior-knowledge -X PATCH --data-binary @%s %s"):format(util.q(body),
				util.q(host.h2base .. loc)))
			assert.equal(202, r.status, r.body)
			assert.equal("0-" .. (5 * MiB + 6), r.headers.range)
			local elog = host:error_log()
			assert.truthy(elog:find("copied " .. (5 * MiB + 7) .. " bytes in a worker thread repo=ops/h2 uuid="
				.. uuid, 1, true))
			-- closed on the fsync store by the thread: no extra sync
			assert.is_nil(elog:find("synced in a worker thread repo=ops/h2", 1, true))
			local patch
			for _, l in ipairs(json_lines(alog)) do
				if l.method == "PATCH" and l.upload == uuid then patch = l end
			end
			assert.equal(5 * MiB + 7, patch.bytes_in)
			local closes = 0
			for _, e in ipairs(patch.events) do
				if e.event == "upload.close" then closes = closes + 1 end
			end
			assert.equal(2, closes) -- the request's handle, then the thread's
			r = host:curl("--http2-prior-knowledge -X PUT " .. util.q(host.h2base .. loc .. "?digest=" .. dg))
			assert.equal(201, r.status, r.body)
		end)

		it("re-hashes a long gap (data past its newest hash state) in a thread before the resume", function()
			local head = util.random_bytes(1000)
			local uuid, loc = host:start_upload("ops/gap")
			assert.equal(202, host:http("PATCH", loc, { body = head }).status)
			-- what a worker killed mid-PATCH leaves: bytes after the last state
			local tail = util.random_bytes(5 * MiB)
			local fh = assert(io.open(upload_dir(root, "ops/gap", uuid) .. "/data", "ab"))
			fh:write(tail)
			fh:close()
			local r = host:http("GET", loc)
			assert.equal(204, r.status)
			assert.equal("0-" .. (#head + #tail - 1), r.headers["range"])
			assert.truthy(host:error_log():find("re-hashed " .. #tail .. " bytes in a worker thread repo=ops/gap uuid="
				.. uuid, 1, true))
			local dg = util.sha256(head .. tail)
			assert.equal(201, host:http("PUT", loc .. "?digest=" .. dg).status)
			local fin
			for _, l in ipairs(json_lines(alog)) do
				if l.method == "PUT" and l.upload == uuid then fin = l end
			end
			for _, e in ipairs(fin.events) do
				if e.event == "upload.finish" then
					assert.equal(0, e.bytes_reread) -- the resume was exact
				end
			end
		end)
	end)
end)
