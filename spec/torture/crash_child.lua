-- spec/torture/crash_child.lua ROOT REPORT FSYNC CRASH_AT CRASH_AFTER TORN
-- Runs the upload lives of lib.lua on a fault driver that kills this
-- process at operation CRASH_AT (0: never).  Every step is written to
-- REPORT, unbuffered, before and after it happens: what was sent and what
-- was acknowledged when the kill came.
local dir = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = dir .. "/?.lua;" .. package.path
local layerup = require "layerup"
local T = require "lib"

local root, report = arg[1], arg[2]
local fsync, crash_at = arg[3] == "1", tonumber(arg[4])
local f = assert(io.open(report, "a"))
f:setvbuf("no")

local d = assert(layerup.fault(assert(layerup.filesystem(root, { fsync = fsync })), {
	crash_at = crash_at, crash_after = arg[5] == "1", torn = arg[6] == "1",
}))
local store = assert(layerup.open(d))
local ok, e = pcall(T.lifecycle, store, function(label, ev, v)
	f:write(label, " ", ev, " ", tostring(v), "\n")
end)
if not ok then
	io.stderr:write("lifecycle failed without a crash: ", tostring(e.phase or e), " ",
		tostring(e.err), "\n")
	os.exit(1)
end
os.exit(0)
