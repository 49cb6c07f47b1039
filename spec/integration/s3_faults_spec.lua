-- Faults on S3 (the Ceph RGW that spec/run starts): an injected 503
-- SlowDown sequence retried by the store's retry policy (a fault-injecting
-- proxy in front of RGW), RGW stopped mid-upload and started again (the
-- upload resumes), and an eventually consistent view (the lag middleware
-- around the S3 driver: a stat after the move is retried, not failed).

local util = require "integration.helpers.util"
local s3env = require "helpers.s3env"

local MiB = 1024 * 1024

if s3env.missing("S3 faults") then
	return
end

local layerup = require "layerup"
local lag = require "layerup.middleware.lag"

local ok = require("helpers.util").ok

-- Retries quickly, many times: the tests count retries, not seconds.
local function quick_retry(attempts)
	return layerup.retry.backoff { attempts = attempts or 8, base = 0.01, factor = 2, max = 0.2, jitter = 0 }
end

-- The fault proxy (helpers/s3faults.py) in front of the RGW endpoint.
local Proxy = {}
Proxy.__index = Proxy

local function start_proxy(endpoint)
	local upstream = assert(endpoint:match(":(%d+)/?$"), endpoint)
	local dir = util.tmpdir("s3faults")
	local script = util.repo_root() .. "/spec/integration/helpers/s3faults.py"
	util.must(("python3 %s %s %s %s </dev/null >%s 2>&1 &"):format(util.q(script), upstream,
		util.q(dir .. "/pid"), util.q(dir .. "/port"), util.q(dir .. "/log")))
	local port
	for _ = 1, 100 do
		port = tonumber(util.read_file(dir .. "/port") or "")
		if port and util.read_file(dir .. "/pid") then
			break
		end
		util.sleep(0.05)
	end
	assert(port, "the fault proxy did not start: " .. tostring(util.read_file(dir .. "/log")))
	local self = setmetatable({ dir = dir, port = port, pid = tonumber(util.read_file(dir .. "/pid")) }, Proxy)
	self.endpoint = "http://127.0.0.1:" .. port
	return self
end

function Proxy:control(path)
	local out = util.must("curl -sS --max-time 5 " .. util.q(self.endpoint .. "/__faults/" .. path))
	local i, f, a = out:match("injected=(%d+) forwarded=(%d+) armed=(%d+)")
	return { injected = tonumber(i), forwarded = tonumber(f), armed = tonumber(a) }
end

function Proxy:arm(n, status, code, method)
	return self:control(("arm?n=%d&status=%d&code=%s%s"):format(n, status or 503, code or "SlowDown",
		method and ("&method=" .. method) or ""))
end

function Proxy:stop()
	if self.pid then
		util.exec("kill -TERM " .. self.pid .. " 2>/dev/null")
		for _ = 1, 50 do
			if not util.alive(self.pid) then break end
			util.sleep(0.05)
		end
		self.pid = nil
	end
	util.rmrf(self.dir)
end

describe("S3 faults", function()
	it("an injected 503 SlowDown sequence is retried by the store's policy", function()
		local proxy = start_proxy(s3env.options().endpoint)
		finally(function() proxy:stop() end)
		local d = ok(layerup.s3(s3env.options { endpoint = proxy.endpoint, prefix = s3env.prefix("slowdown") }))
		local retries = {}
		local store = ok(layerup.open(d, {
			retry = quick_retry(8),
			log = function(ev, f)
				if ev == "driver.retry" or ev == "finish.retry" then retries[#retries + 1] = f end
			end,
		}))
		local data = util.random_bytes(6 * MiB + 3)
		-- 3 SlowDowns on the first requests of each phase
		proxy:arm(3)
		local up = ok(store:start("lib/slow"))
		proxy:arm(3, 503, "SlowDown", "PUT")
		ok(up:write(data))
		ok(up:close())
		proxy:arm(3)
		up = ok(store:resume("lib/slow", up.uuid))
		proxy:arm(2, 500, "InternalError")
		local info = ok(up:finish(util.sha256(data)))
		assert.are.equal(#data, info.size)
		local st = proxy:control("stats")
		assert.are.equal(11, st.injected)
		assert.are.equal(0, st.armed)
		assert.is_true(#retries > 0, "no retry was logged")
		-- the blob is whole
		local r = ok(store:open("lib/slow", info.digest))
		local got = {}
		while true do
			local c = r:read(MiB)
			if not c then break end
			got[#got + 1] = c
		end
		r:close()
		assert.is_true(table.concat(got) == data)
	end)

	it("without retries, SlowDown is a transient error that names the code", function()
		local proxy = start_proxy(s3env.options().endpoint)
		finally(function() proxy:stop() end)
		local d = ok(layerup.s3(s3env.options { endpoint = proxy.endpoint, prefix = s3env.prefix("slowdown") }))
		proxy:arm(1)
		local v, err = d:put_content("/a", "x")
		assert.is_nil(v)
		assert.is_true(err.transient, "not transient: " .. tostring(err))
		assert.truthy(err.message:find("SlowDown", 1, true), err.message)
		-- the next one reaches RGW
		ok(d:put_content("/a", "x"))
		assert.are.equal("x", ok(d:get_content("/a")))
	end)

	it("RGW stopped mid-upload then started again: the upload resumes and finishes", function()
		local rgw_dir = os.getenv("LUP_TEST_S3_RGW_DIR")
		if not rgw_dir or rgw_dir == "" then
			pending("the RGW was not started by spec/run (no LUP_TEST_S3_RGW_DIR)")
			return
		end
		local tool = util.q(util.repo_root() .. "/tools/s3-rgw")
		local prefix = s3env.prefix("outage")
		local data = util.random_bytes(13 * MiB + 7)
		local store = ok(layerup.open(ok(layerup.s3(s3env.options {
			prefix = prefix, part_size = 5 * MiB, timeout = 5, lock_ttl = 2 })), { retry = quick_retry(2) }))
		local up = ok(store:start("lib/outage"))
		ok(up:write(data:sub(1, 6 * MiB)))
		util.must(tool .. " stop-rgw " .. util.q(rgw_dir))
		local restarted = false
		finally(function()
			if not restarted then util.exec(tool .. " start-rgw " .. util.q(rgw_dir)) end
		end)
		-- the next part cannot go out: a transient failure, not a hang
		local v, err = up:write(data:sub(6 * MiB + 1, 12 * MiB))
		if v then v, err = up:close() end
		assert.is_nil(v)
		assert.is_true(err.transient == true, tostring(err))
		up:cancel() -- let go locally (the server is down: the upload stays)
		store:close()
		util.must(tool .. " start-rgw " .. util.q(rgw_dir))
		restarted = true
		-- a fresh driver (another "machine") continues from what RGW kept
		local d2 = ok(layerup.s3(s3env.options { prefix = prefix, part_size = 5 * MiB, lock_ttl = 1 }))
		local store2 = ok(layerup.open(d2, { retry = quick_retry(20) }))
		local ups = ok(store2:uploads("lib/outage"))
		assert.are.equal(1, #ups)
		-- the first writer's lease (lock_ttl 2 s) runs out: it is renewed no more
		local up2, rerr
		for _ = 1, 60 do
			up2, rerr = store2:resume("lib/outage", up.uuid)
			if up2 or rerr.code ~= "LOCKED" then break end
			util.sleep(1)
		end
		ok(up2, rerr)
		local have = up2:size()
		assert.is_true(have >= 5 * MiB and have <= 6 * MiB, "size " .. have)
		ok(up2:write(data:sub(have + 1)))
		local info = ok(up2:finish(util.sha256(data)))
		assert.are.equal(#data, info.size)
	end)

	it("an eventually consistent view (lag middleware around S3): stat after the move is retried", function()
		local d = ok(layerup.s3(s3env.options { prefix = s3env.prefix("lag") }))
		local lagged, state = lag(d, 2)
		local retries = 0
		local store = ok(layerup.open(lagged, {
			retry = quick_retry(10),
			log = function(ev) if ev == "finish.retry" or ev == "driver.retry" then retries = retries + 1 end end,
		}))
		local data = util.random_bytes(3 * MiB + 1)
		local up = ok(store:start("lib/lag"))
		ok(up:write(data))
		local info = ok(up:finish(util.sha256(data)))
		assert.are.equal(#data, info.size)
		assert.is_true(state.hidden > 0, "the middleware hid nothing")
		assert.is_true(retries > 0, "nothing was retried")
		-- without retries the same lag fails the finish
		local store2 = ok(layerup.open(lag(d, 2), { retry = false }))
		up = ok(store2:start("lib/lag"))
		ok(up:write(data .. "x"))
		local v, err = up:finish(util.sha256(data .. "x"))
		assert.is_nil(v)
		assert.is_table(err)
	end)
end)
