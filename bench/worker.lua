-- bench/worker.lua - the layerup side of the benchmarks: one workload per
-- process, driven by bench/run.  Prints "metric value" lines on stdout
-- (numbers only; times in seconds or milliseconds as the name says), and
-- diagnostics on stderr.
--
--   worker.lua stream  ROOT SRC SIZE FSYNC(0|1) MODE(file|mem|read_from) REPO DIGEST
--   worker.lua chunked ROOT SRC SIZE CHUNK FSYNC REPO DIGEST [read_from|write]
--   worker.lua gap_prepare ROOT SRC SIZE GAP REPO      (prints "uuid <id>")
--   worker.lua gap_finish  ROOT REPO UUID DIGEST SIZE
--   worker.lua small   ROOT SUMS DIR N REPO
--   worker.lua memory  ROOT BLOCKFILE SIZE REPO DIGEST
--
-- Needs LUA_CPATH to find layerup/core.so and benchclock.so (built by
-- bench/run), LUA_PATH to find lua/layerup/init.lua.

local layerup = require "layerup"
local clock = require "benchclock"

local WRITE = 8 * 1024 * 1024   -- the write size of every streaming workload

local function check(v, err, what)
	if v == nil then
		io.stderr:write(("bench worker: %s: %s\n"):format(what, tostring(err)))
		os.exit(2)
	end
	return v
end

local function out(k, v)
	if math.type(v) == "float" then
		io.write(("%s %.6f\n"):format(k, v))
	else
		io.write(("%s %s\n"):format(k, tostring(v)))
	end
end

-- Counters of /proc/self/io: rchar counts every byte returned by read(2)
-- (page cache hits included), read_bytes only what came from the device.
local function proc_io()
	local t = {}
	local f = io.open("/proc/self/io", "r")
	if not f then return { rchar = 0, read_bytes = 0 } end
	for line in f:lines() do
		local k, v = line:match("^(%w+):%s*(%d+)")
		if k then t[k] = tonumber(v) end
	end
	f:close()
	return t
end

local function proc_status(key)
	local f = check(io.open("/proc/self/status", "r"), "cannot open", "/proc/self/status")
	for line in f:lines() do
		local v = line:match("^" .. key .. ":%s*(%d+) kB")
		if v then f:close(); return tonumber(v) end
	end
	f:close()
	return 0
end

local function cpu_out(u0, s0)
	local u1, s1 = clock.cpu()
	out("cpu_user_s", u1 - u0)
	out("cpu_sys_s", s1 - s0)
end

-- Events of the core, kept for the numbers they carry (restored, bytes_reread).
local function logger(events)
	return function(ev, fields)
		events[#events + 1] = { ev = ev, f = fields }
	end
end

local function last_event(events, name)
	for i = #events, 1, -1 do
		if events[i].ev == name then return events[i].f end
	end
end

-- Finish and measure it: wall time, bytes re-read (by the engine's own
-- count and by the kernel's rchar), returning the blob info.
-- After finish the handle may refuse methods, so the engine's count comes
-- from bytes_reread() taken before and the upload.finish event after.
local function timed_finish(up, digest, size, events)
	local before = up:bytes_reread()
	local io0 = proc_io()
	local t0 = clock.now()
	local info = check(up:finish(digest, { size = size }))
	local t1 = clock.now()
	local io1 = proc_io()
	local ok, after = pcall(up.bytes_reread, up)
	if not ok then
		local ev = last_event(events, "upload.finish")
		-- the event's count is the handle's total or the finish's own
		after = ev and ev.bytes_reread or -1
		if after >= 0 and after < before then after = after + before end
	end
	local reread = after >= 0 and after - before or -1
	out("finish_ms", (t1 - t0) * 1e3)
	out("finish_bytes_reread", reread)
	out("finish_rchar", io1.rchar - io0.rchar)
	if info.digest ~= digest or info.size ~= size then
		io.stderr:write(("bench worker: finished %s/%d, expected %s/%d\n"):format(
			tostring(info.digest), tostring(info.size), digest, size))
		os.exit(2)
	end
	return reread
end

local cmd = {}

function cmd.stream(root, src, size, fsync, mode, repo, digest)
	size = math.tointeger(tonumber(size))
	local events = {}
	local store = check(layerup.open(root, { fsync = fsync == "1", retry = false,
		log = logger(events) }), nil, "open")
	local f = check(io.open(src, "rb"), nil, "open " .. src)
	local chunks
	if mode == "mem" then
		-- the data is already in memory: only the engine is measured
		chunks = {}
		for i = 1, (size + WRITE - 1) // WRITE do
			chunks[i] = f:read(math.min(WRITE, size - (i - 1) * WRITE))
		end
		collectgarbage()
	end
	local u0, s0 = clock.cpu()
	local t0 = clock.now()
	local up = check(store:start(repo))
	if mode == "file" then
		local left = size
		while left > 0 do
			local s = check(f:read(math.min(WRITE, left)), "short read", "read")
			check(up:write(s))
			left = left - #s
		end
	elseif mode == "mem" then
		for i = 1, #chunks do check(up:write(chunks[i])) end
	elseif mode == "read_from" then
		check(up:read_from(f, WRITE))
	else
		error("unknown mode " .. tostring(mode))
	end
	local tw = clock.now()
	timed_finish(up, digest, size, events)
	local t1 = clock.now()
	cpu_out(u0, s0)
	out("write_s", tw - t0)
	out("seconds", t1 - t0)
	out("mb_per_s", size / 1e6 / (t1 - t0))
	f:close()
	store:close()
end

-- mode "read_from" (default): each chunk is one upload:read_from(f, 8 MiB,
-- 64 MiB), the way a server streams a PATCH body of known length; mode
-- "write": each 8 MiB read with f:read into a Lua string, then upload:write.
function cmd.chunked(root, src, size, chunk, fsync, repo, digest, mode)
	mode = mode or "read_from"
	size = math.tointeger(tonumber(size))
	chunk = math.tointeger(tonumber(chunk))
	local events = {}
	local store = check(layerup.open(root, { fsync = fsync == "1", retry = false,
		log = logger(events) }), nil, "open")
	local f = check(io.open(src, "rb"), nil, "open " .. src)
	local u0, s0 = clock.cpu()
	local t0 = clock.now()
	-- POST: start, close
	local up = check(store:start(repo))
	local uuid = up.uuid
	check(up:close())
	-- PATCH per chunk: resume, write the chunk in 8 MiB writes, close
	local off = 0
	while off < size do
		up = check(store:resume(repo, uuid))
		local left = math.min(chunk, size - off)
		if mode == "read_from" then
			local n = check(up:read_from(f, WRITE, left))
			if n ~= left then
				io.stderr:write("bench worker: short read_from\n")
				os.exit(2)
			end
			off = off + n
		else
			while left > 0 do
				local s = check(f:read(math.min(WRITE, left)), "short read", "read")
				check(up:write(s))
				left = left - #s
				off = off + #s
			end
		end
		check(up:close())
	end
	-- PUT: resume, finish
	local tr = clock.now()
	up = check(store:resume(repo, uuid))
	timed_finish(up, digest, size, events)
	local t1 = clock.now()
	cpu_out(u0, s0)
	out("put_ms", (t1 - tr) * 1e3)
	out("seconds", t1 - t0)
	out("mb_per_s", size / 1e6 / (t1 - t0))
	f:close()
	store:close()
end

-- Upload SIZE-GAP bytes, close (hash state at SIZE-GAP), then append the
-- last GAP bytes to the upload's data file behind the engine's back: the
-- newest state is now GAP bytes behind the data.
function cmd.gap_prepare(root, src, size, gap, repo)
	size = math.tointeger(tonumber(size))
	gap = math.tointeger(tonumber(gap))
	local store = check(layerup.open(root, { retry = false }), nil, "open")
	local f = check(io.open(src, "rb"), nil, "open " .. src)
	local up = check(store:start(repo))
	local uuid = up.uuid
	local left = size - gap
	while left > 0 do
		local s = check(f:read(math.min(WRITE, left)), "short read", "read")
		check(up:write(s))
		left = left - #s
	end
	check(up:close())
	store:close()
	local path = ("%s/docker/registry/v2/repositories/%s/_uploads/%s/data"):format(root, repo, uuid)
	local d = check(io.open(path, "ab"), nil, "open " .. path)
	left = gap
	while left > 0 do
		local s = check(f:read(math.min(WRITE, left)), "short read", "read")
		check(d:write(s), nil, "append")
		left = left - #s
	end
	check(d:close(), nil, "close " .. path)
	f:close()
	out("uuid", uuid)
end

-- In a fresh process (as after a restart): resume and finish.
function cmd.gap_finish(root, repo, uuid, digest, size)
	size = math.tointeger(tonumber(size))
	local events = {}
	local store = check(layerup.open(root, { retry = false, log = logger(events) }), nil, "open")
	local io0 = proc_io()
	local t0 = clock.now()
	local up = check(store:resume(repo, uuid))
	local t1 = clock.now()
	local io1 = proc_io()
	local reread_resume = up:bytes_reread()
	out("resume_ms", (t1 - t0) * 1e3)
	out("resume_rchar", io1.rchar - io0.rchar)
	local reread_finish = timed_finish(up, digest, size, events)
	local t2 = clock.now()
	local io2 = proc_io()
	out("total_ms", (t2 - t0) * 1e3)
	out("bytes_reread", reread_resume + reread_finish)
	out("resume_bytes_reread", reread_resume)
	out("rchar", io2.rchar - io0.rchar)
	local ev = last_event(events, "upload.resume")
	out("restored_gap", (ev and ev.restored == "gap") and 1 or 0)
	if ev then
		io.stderr:write(("bench worker: upload.resume restored=%s offset=%s bytes_reread=%s\n"):format(
			tostring(ev.restored), tostring(ev.offset), tostring(ev.bytes_reread)))
	end
	store:close()
end

-- N small blobs: start, write, finish each, one process, one store.
function cmd.small(root, sums, dir, n, repo)
	n = math.tointeger(tonumber(n))
	local blobs = {}
	for line in io.lines(sums) do
		local hex, name = line:match("^(%x+)%s+%*?(%S+)")
		if hex then
			local f = check(io.open(dir .. "/" .. name, "rb"), nil, "open blob")
			blobs[#blobs + 1] = { digest = "sha256:" .. hex, data = f:read("a") }
			f:close()
			if #blobs == n then break end
		end
	end
	assert(#blobs == n, "not enough blobs in " .. sums)
	local store = check(layerup.open(root, { retry = false }), nil, "open")
	local u0, s0 = clock.cpu()
	local t0 = clock.now()
	for i = 1, n do
		local b = blobs[i]
		local up = check(store:start(repo))
		check(up:write(b.data))
		local info = check(up:finish(b.digest))
		if info.digest ~= b.digest then
			io.stderr:write("bench worker: digest mismatch on blob " .. i .. "\n")
			os.exit(2)
		end
		up:close()
	end
	local t1 = clock.now()
	cpu_out(u0, s0)
	out("seconds", t1 - t0)
	out("uploads_per_s", n / (t1 - t0))
	store:close()
end

-- Peak RSS of one streaming upload of SIZE bytes: the same 8 MiB block
-- written over and over (no per-write garbage), then finish.
function cmd.memory(root, blockfile, size, repo, digest)
	size = math.tointeger(tonumber(size))
	local f = check(io.open(blockfile, "rb"), nil, "open " .. blockfile)
	local block = f:read("a")
	f:close()
	assert(#block == WRITE, "block must be 8 MiB")
	local store = check(layerup.open(root, { retry = false }), nil, "open")
	collectgarbage()
	out("base_rss_kib", proc_status("VmRSS"))
	local up = check(store:start(repo))
	local left = size
	while left > 0 do
		local n = math.min(WRITE, left)
		check(up:write(n == WRITE and block or block:sub(1, n)))
		left = left - n
	end
	local info = check(up:finish(digest, { size = size }))
	assert(info.size == size)
	out("hwm_kib", proc_status("VmHWM"))
	store:close()
end

local name = arg[1]
if not cmd[name] then
	io.stderr:write("usage: worker.lua stream|chunked|gap_prepare|gap_finish|small|memory ...\n")
	os.exit(1)
end
cmd[name](table.unpack(arg, 2))
