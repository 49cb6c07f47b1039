-- spec/torture/run.lua - `make torture`: every part of lib.lua at full
-- size, its figures, its failures, and one line "N passed, N failed"
-- (a trial passes when none of its checks failed).  Exit status 1 when any
-- trial failed.
--
-- Sizes (environment): TORTURE_CRASH (crash points, default 1000),
-- TORTURE_RACE (race trials, default 1000), TORTURE_PARTS (comma list of
-- crash,ioerr,race,hostile; default all), TORTURE_SEED.
local dir = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = dir .. "/?.lua;" .. package.path
local T = require "lib"

local crash_n = tonumber(os.getenv("TORTURE_CRASH") or "") or 1000
local race_n = tonumber(os.getenv("TORTURE_RACE") or "") or 1000
local seed = tonumber(os.getenv("TORTURE_SEED") or "") or os.time()
local parts = {}
for p in (os.getenv("TORTURE_PARTS") or "crash,ioerr,race,hostile"):gmatch("[^,]+") do parts[p] = true end

local function clock()
	local p = io.popen("date +%s.%N")
	local s = p:read("l")
	p:close()
	return tonumber(s)
end

local function fmt(v)
	if type(v) ~= "table" then return tostring(v) end
	local keys = {}
	for k in pairs(v) do keys[#keys + 1] = k end
	table.sort(keys)
	local out = {}
	for _, k in ipairs(keys) do out[#out + 1] = ("%s=%s"):format(k, fmt(v[k])) end
	return "{" .. table.concat(out, ", ") .. "}"
end

local function progress(every)
	local last = 0
	return function(r)
		if r.trials - last >= every then
			last = r.trials
			io.stderr:write(("  %s: %d trials, %d failed\n"):format(r.name, r.trials, T.failed_trials(r)))
		end
	end
end

print(("torture: seed %d, crash points %d, race trials %d"):format(seed, crash_n, race_n))
local pass, failn = 0, 0
local t_all = clock()
local function report(r, t0)
	local failed = T.failed_trials(r)
	pass = pass + r.trials - failed
	failn = failn + failed
	print(("== %s: %d trials, %d failed, %.0f s"):format(r.name, r.trials, failed, clock() - t0))
	local keys = {}
	for k in pairs(r.figures) do keys[#keys + 1] = k end
	table.sort(keys)
	for _, k in ipairs(keys) do
		if k ~= "outcomes" then print(("   %-16s %s"):format(k, fmt(r.figures[k]))) end
	end
	if r.figures.outcomes then
		print("   outcomes:")
		local os_ = {}
		for k, v in pairs(r.figures.outcomes) do os_[#os_ + 1] = ("%6d  %s"):format(v, k) end
		table.sort(os_, function(a, b) return a:sub(9) < b:sub(9) end)
		for _, l in ipairs(os_) do print("   " .. l) end
	end
	if #r.failures > 0 then
		local by = {}
		for _, f in ipairs(r.failures) do
			local k = f.defect and ("defect " .. f.defect) or "no open defect"
			by[k] = (by[k] or 0) + 1
		end
		print("   failures by cause: " .. fmt(by))
		print(T.summary(r, 25))
	end
	io.stdout:flush()
end

if parts.crash then
	local t0 = clock()
	report(T.crash { boundaries = "all", random = math.floor(crash_n / 4), total = crash_n, seed = seed,
		progress = progress(100) }, t0)
	print(("   operations per life: %s"):format(fmt(T.ops)))
end
if parts.ioerr then
	local t0 = clock()
	report(T.ioerr { ks = "all", progress = progress(50) }, t0)
end
if parts.race then
	local t0 = clock()
	report(T.race { trials = race_n, seed = seed, progress = progress(100) }, t0)
end
if parts.hostile then
	local t0 = clock()
	report(T.hostile {}, t0)
end
print(("torture: %.0f s"):format(clock() - t_all))
print(("%d passed, %d failed"):format(pass, failn))
os.exit(failn == 0 and 0 or 1)
