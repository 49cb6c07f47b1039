-- bench/s3_worker.lua - the layerup side of the S3 benchmarks (bench/s3):
-- one workload per process, S3 settings from S3_* variables (what
-- tools/s3-rgw prints).  Prints "metric value" lines on stdout.
--
--   s3_worker.lua stream  PREFIX FILE DIGEST          one upload, 8 MiB writes
--   s3_worker.lua memory  PREFIX FILE SIZE            SIZE bytes: FILE's first
--                         8 MiB written over and over (peak RSS)
--   s3_worker.lua chunk   PREFIX FILE OFFSET LEN [UUID] one 64 MiB chunk: start
--                         or resume UUID, write, close (prints uuid)
--   s3_worker.lua finish  PREFIX UUID DIGEST
--   s3_worker.lua small   PREFIX N [FIRST]            N 4 KiB blobs (numbered
--                         from FIRST, 1: distinct blobs across rounds)
--
-- Metrics: wall_s, finish_ms, cpu_s (user+system of this process),
-- sent, received, requests (the driver's counters), kinds (requests by S3
-- operation), hwm_kib (VmHWM).
local layerup = require "layerup"

local WRITE = 8 * 1024 * 1024

local function check(v, err, what)
	if v == nil then
		io.stderr:write(("s3 bench worker: %s: %s\n"):format(what, tostring(err)))
		os.exit(2)
	end
	return v
end

local function now()
	local p = io.popen("date +%s.%N")
	local t = tonumber(p:read("l"))
	p:close()
	return t
end

local function cpu_s()
	local f = io.open("/proc/self/stat")
	local s = f:read("a")
	f:close()
	local rest = s:match("%) (.*)$")
	local fields = {}
	for w in rest:gmatch("%S+") do fields[#fields + 1] = w end
	-- utime, stime are fields 14 and 15 of stat; 12 and 13 after "(comm) "
	return (tonumber(fields[12]) + tonumber(fields[13])) / 100
end

local function hwm()
	for line in io.lines("/proc/self/status") do
		local v = line:match("^VmHWM:%s*(%d+)")
		if v then return tonumber(v) end
	end
	return 0
end

local function driver(prefix)
	return check(layerup.s3 {
		endpoint = os.getenv("S3_ENDPOINT"), bucket = os.getenv("S3_BUCKET"),
		region = os.getenv("S3_REGION"), access_key = os.getenv("S3_ACCESS_KEY"),
		secret_key = os.getenv("S3_SECRET_KEY"), prefix = prefix,
	}, nil, "layerup.s3")
end

local function report(d, t0, c0, extra)
	local c = layerup.s3_counters(d)
	io.write(("wall_s %.3f\ncpu_s %.2f\nsent %d\nreceived %d\nrequests %d\nhwm_kib %d\n"):format(
		now() - t0, cpu_s() - c0, c.bytes_sent, c.bytes_received, c.requests, hwm()))
	-- requests by S3 operation, one word: Kind=n,Kind=n
	local kinds = {}
	for k, v in pairs(c.by_kind) do kinds[#kinds + 1] = k .. "=" .. v end
	table.sort(kinds)
	io.write("kinds ", table.concat(kinds, ","), "\n")
	for k, v in pairs(extra or {}) do io.write(k, " ", tostring(v), "\n") end
end

local cmd, prefix = arg[1], arg[2]
local d = driver(prefix)
local store = check(layerup.open(d), nil, "open")

if cmd == "stream" then
	local file, digest = arg[3], arg[4]
	local f = check(io.open(file, "rb"), nil, file)
	local t0, c0 = now(), cpu_s()
	local up = check(store:start("bench/s3"), nil, "start")
	while true do
		local s = f:read(WRITE)
		if not s then break end
		check(up:write(s), nil, "write")
	end
	local tf = now()
	check(up:finish(digest), nil, "finish")
	report(d, t0, c0, { finish_ms = string.format("%.1f", (now() - tf) * 1000) })
elseif cmd == "memory" then
	-- Peak RSS of one upload of SIZE bytes that makes no garbage of its
	-- own: the first 8 MiB of FILE written over and over, then finish
	-- (the engine's memory, not Lua's uncollected read buffers).
	local file, size = arg[3], tonumber(arg[4])
	local f = check(io.open(file, "rb"), nil, file)
	local block = check(f:read(WRITE), nil, "read")
	f:close()
	assert(#block == WRITE and size % WRITE == 0, "8 MiB blocks")
	local h = layerup.hasher()
	for _ = 1, size / WRITE do h:update(block) end
	local digest = h:digest()
	collectgarbage()
	local t0, c0 = now(), cpu_s()
	local up = check(store:start("bench/s3"), nil, "start")
	for _ = 1, size / WRITE do check(up:write(block), nil, "write") end
	check(up:finish(digest), nil, "finish")
	report(d, t0, c0)
elseif cmd == "chunk" then
	local file, off, len, uuid = arg[3], tonumber(arg[4]), tonumber(arg[5]), arg[6]
	local f = check(io.open(file, "rb"), nil, file)
	f:seek("set", off)
	local t0, c0 = now(), cpu_s()
	local up
	if uuid and uuid ~= "" then
		up = check(store:resume("bench/s3", uuid), nil, "resume")
		assert(up:size() == off, "resumed at " .. up:size() .. ", expected " .. off)
	else
		up = check(store:start("bench/s3"), nil, "start")
	end
	local left = len
	while left > 0 do
		local s = f:read(math.min(WRITE, left))
		if not s then break end
		check(up:write(s), nil, "write")
		left = left - #s
	end
	check(up:close(), nil, "close")
	report(d, t0, c0, { uuid = up.uuid, bytes_reread = up:bytes_reread() })
elseif cmd == "finish" then
	local uuid, digest = arg[3], arg[4]
	local t0, c0 = now(), cpu_s()
	local up = check(store:resume("bench/s3", uuid), nil, "resume")
	check(up:finish(digest), nil, "finish")
	report(d, t0, c0, { finish_ms = string.format("%.1f", (now() - t0) * 1000), bytes_reread = up:bytes_reread() })
elseif cmd == "small" then
	local n, first = tonumber(arg[3]), tonumber(arg[4] or 1)
	local t0, c0 = now(), cpu_s()
	for i = first, first + n - 1 do
		local blob = ("%08d"):format(i) .. string.rep("s", 4096 - 8)
		local h = layerup.hasher()
		h:update(blob)
		local up = check(store:start("bench/small"), nil, "start")
		check(up:write(blob), nil, "write")
		check(up:finish(h:digest()), nil, "finish")
	end
	local wall = now() - t0
	report(d, t0, c0, { blobs_per_s = string.format("%.1f", n / wall) })
else
	io.stderr:write("usage: s3_worker.lua stream|chunk|finish|small PREFIX ...\n")
	os.exit(2)
end
