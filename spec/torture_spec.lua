-- torture_spec.lua: the short version of `make torture` (spec/torture/lib.lua)
-- inside `make test`, a few seconds per part, plus the fault driver itself.
--
-- A failure that an issue-8 defect still open on this branch explains is
-- reported as pending ("known: defect N"); any other failure fails.  When a
-- defect's fix lands, its number leaves KNOWN and its failures fail again.
if jit then
	describe("torture (short)", function()
		pending("LuaJIT: the torture children are lua5.4 programs; the lua5.4 pass runs this suite")
	end)
	return
end
local layerup = require "layerup"
local T = require "torture.lib"

-- Issue 8 defects not fixed on this branch yet (all fixed now: keep it for
-- the next defect the torture finds before its fix lands).
local KNOWN = {}

-- Real failures fail the test; known ones make it pending.
local function judge(r)
	local real, known = T.split(r, KNOWN)
	if #real > 0 then
		local rr = { failures = real }
		error(("%d of %d %s trials failed:\n%s"):format(T.failed_trials(rr), r.trials, r.name,
			T.summary(rr, 15)), 0)
	end
	if #known > 0 then
		local nums, seen = {}, {}
		for _, f in ipairs(known) do
			if not seen[f.defect] then
				seen[f.defect] = true
				nums[#nums + 1] = f.defect
			end
		end
		table.sort(nums)
		pending(("known: defect %s of issue 8 (%d checks), e.g. %s"):format(
			table.concat(nums, ", "), #known, known[1].msg:sub(1, 200)))
	end
end

describe("fault driver", function()
	local dir

	before_each(function() dir = T.tmpdir("fault") end)
	after_each(function() T.rm(dir) end)

	it("counts every operation and fails exactly the k-th with the code asked", function()
		local d = layerup.fault(assert(layerup.filesystem(dir)), { record = true })
		assert(d:put_content("/a/b", "xyz"))
		assert.equals("xyz", d:get_content("/a/b"))
		local w = assert(d:writer("/a/c", false))
		assert(w:write("12"))
		assert(w:commit())
		assert(w:close())
		local info = layerup.fault_info(d)
		assert.same({ "put_content /a/b", "get_content /a/b", "writer /a/c", "writer.write /a/c",
			"writer.commit /a/c", "writer.close /a/c" }, info.trace)
		assert.equals(6, info.ops)
		assert.equals(0, info.injected)

		local f = layerup.fault(assert(layerup.filesystem(dir)), { fail_at = 2, fail_code = "PATH_NOT_FOUND" })
		assert(f:stat("/a/b"))
		local ok, err = f:get_content("/a/b")
		assert.is_nil(ok)
		assert.equals("PATH_NOT_FOUND", err.code)
		assert.matches("injected fault at operation 2 %(get_content%)", err.message)
		assert.equals("xyz", f:get_content("/a/b")) -- only once
		assert.equals(1, layerup.fault_info(f).injected)
	end)

	it("fails from fail_at on with fail_count = 0, and a torn write leaves half", function()
		local f = layerup.fault(assert(layerup.filesystem(dir)), { fail_at = 3, fail_count = 0, torn = true, transient = true })
		local w = assert(f:writer("/t", false))
		assert(w:write("ab"))
		local ok, err = w:write("123456")
		assert.is_nil(ok)
		assert.is_true(err.transient)
		assert.equals(5, w:size()) -- "ab" and half of "123456"
		assert.is_nil(w:commit())
		w:close()
		assert.is_nil(f:stat("/t"))
		assert.equals("ab123", T.read(dir .. "/t"))
	end)

	it("kills the process at the crash point, and only there", function()
		local code = T.sh(("exec 2>/dev/null; %s -e %s"):format(os.getenv("LUA") or "lua5.4", T.q(([[
			local l = require "layerup"
			local d = l.fault(l.filesystem(%q), {crash_at = 2})
			d:put_content("/one", "1")
			d:put_content("/two", "2")
			os.exit(0)]]):format(dir))))
		assert.equals(137, code)
		assert.equals("1", T.read(dir .. "/one"))
		assert.is_nil(T.read(dir .. "/two"))
	end)

	it("refuses bad options", function()
		local d = assert(layerup.filesystem(dir))
		assert.has_error(function() layerup.fault(d, { crash_at = -1 }) end)
		assert.has_error(function() layerup.fault(d, { fail_at = 0 / 0 }) end)
		assert.has_error(function() layerup.fault(d, { fail_at = 1.5 }) end)
		assert.has_error(function() layerup.fault(d, { fail_code = "NOPE" }) end)
		assert.has_error(function() layerup.fault(d, { delay_at = 1, delay_us = -5 }) end)
		assert.has_error(function() layerup.fault_info(d) end)
	end)
end)

describe("torture checks", function()
	it("catch a hash state that does not match the data below its offset", function()
		local root = T.tmpdir("neg")
		local store = assert(layerup.open(root))
		local u = assert(store:start("a/b"))
		assert(u:write(("x"):rep(5000)))
		assert(u:close())
		store:close()
		local fails = {}
		local function fail(msg, defect) fails[#fails + 1] = { msg = msg, defect = defect } end
		assert.equals(1, T.check_states(root, fail))
		assert.same({}, fails)
		-- Same length, other bytes: the state no longer vouches for them.
		local f = assert(io.open(root .. T.V2 .. "/repositories/a/b/_uploads/" .. u.uuid .. "/data", "wb"))
		f:write(("y"):rep(5000))
		f:close()
		assert.equals(1, T.check_states(root, fail))
		assert.equals(1, #fails)
		assert.matches("does not match the data", fails[1].msg)
		T.rm(root)
	end)
end)

describe("torture (short)", function()
	it("crash: SIGKILL at operation boundaries, torn writes and random moments, then recovery", function()
		local r = T.crash { boundaries = 2, focus = T.FINISH_OPS, timed = 2, seed = 1 }
		assert.is_true(r.trials >= 10)
		assert.equals(0, r.figures.wrong_blobs)
		assert.equals(0, r.figures.lost_bytes)
		judge(r)
	end)

	it("I/O-error sweep: a failure at operation k, once or persistent, ends clear and recoverable", function()
		local r = T.ioerr { ks = 4, focus = T.FINISH_OPS }
		assert.is_true(r.trials >= 12)
		assert.equals(0, r.figures.wrong_blobs)
		assert.equals(0, r.figures.lost_bytes)
		judge(r)
	end)

	it("race: resume vs finish, cancel, purge, expiry; finish vs cancel; resume vs resume", function()
		local r = T.race { trials = 2 * #T.PAIRS, seed = 3 }
		assert.equals(2 * #T.PAIRS, r.figures.trials)
		judge(r)
	end)

	it("hostile trees: symlinks, loops, a symlinked root, files where directories belong", function()
		-- Known hangs cost a timeout each: not run while their defect is open.
		local r = T.hostile { skip = function(case)
			if case.slow and case.defect and KNOWN[case.defect] then
				return "hangs until defect " .. case.defect .. " is fixed"
			end
		end }
		assert.equals(#T.HOSTILE, r.trials)
		judge(r)
	end)
end)
