-- spec/torture/race_child.lua ROOT ROLE UUID DIGEST OUT SPIN DELAY_AT DELAY_US
-- One side of a race on upload UUID of lib.lua's repository.  Writes a
-- byte into the FIFO "ready" next to OUT, waits for EOF on stdin (the
-- barrier that releases both sides together), spins SPIN iterations to vary
-- the interleaving (and stalls its DELAY_AT-th storage operation DELAY_US
-- microseconds, through the fault driver, to force a schedule), then acts
-- and writes "<step> ok <value>" / "<step> err <CODE> <message>" lines to
-- OUT.out, ending with "done ok".
--   resume  resume, close
--   write   resume, write 2 bytes, close
--   finish  resume, finish DIGEST
--   cancel  resume, cancel
--   purge   purge{older_than = 3600} (the upload was started in 2000)
--   expire  resume on a store with max_age = 3600
local dir = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = dir .. "/?.lua;" .. package.path
local layerup = require "layerup"
local T = require "lib"

local root, role, uuid, digest, out, spin = arg[1], arg[2], arg[3], arg[4], arg[5], tonumber(arg[6])
local f = assert(io.open(out .. ".out", "w"))
f:setvbuf("no")
local function say(step, v, err)
	if v then
		f:write(step, " ok ", tostring(v == true and "" or v), "\n")
	else
		f:write(step, " err ", tostring(err and err.code), " ", tostring(err and err.message), "\n")
	end
	return v
end

local d = assert(layerup.fault(assert(layerup.filesystem(root)),
	{ delay_at = tonumber(arg[7]) or 0, delay_us = tonumber(arg[8]) or 0 }))
local store = assert(layerup.open(d, role == "expire" and { max_age = 3600 } or nil))
local ready = assert(io.open(out:match("^(.*)/[^/]*$") .. "/ready", "w"))
ready:write("x")
ready:close()
io.read("a")
local x = 0
for i = 1, spin do x = x + i end

if role == "purge" then
	local res, err = store:purge { older_than = 3600 }
	say("purge", res and #res, err)
else
	local u, err = store:resume(T.REPO, uuid)
	if role == "expire" then
		say("expire", u and u:size(), err)
	else
		say("resume", u and u:size(), err)
	end
	if u then
		if role == "resume" then
			say("close", u:close())
		elseif role == "write" then
			local n, e = u:write("zz")
			say("write", n, e)
			say("close", u:close())
		elseif role == "finish" then
			local b, e = u:finish(digest)
			say("finish", b and b.size, e)
		elseif role == "cancel" then
			say("cancel", u:cancel())
		end
		u:close()
	end
end
store:close()
f:write("done ok ", tostring(x > -1), "\n")
f:close()
