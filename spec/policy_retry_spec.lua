-- Unit specs for layerup.retry (no core needed).

local retry = require "layerup.retry"

local transient = { code = "IO", message = "timeout", transient = true }
local permanent = { code = "IO", message = "disk on fire", transient = false }

describe("layerup.retry.backoff", function()
	it("doubles the delay and gives up after the last attempt", function()
		local r = retry.backoff { attempts = 5, base = 0.05, factor = 2, max = 2, jitter = 0 }
		assert.are.equal(0.05, r(1, transient, "put_content"))
		assert.are.equal(0.1, r(2, transient, "put_content"))
		assert.are.equal(0.2, r(3, transient, "put_content"))
		assert.are.equal(0.4, r(4, transient, "put_content"))
		assert.is_nil(r(5, transient, "put_content"))
		assert.is_nil(r(6, transient, "put_content"))
	end)

	it("caps the delay at max", function()
		local r = retry.backoff { attempts = 10, base = 1, factor = 3, max = 5, jitter = 0 }
		assert.are.equal(1, r(1, transient))
		assert.are.equal(3, r(2, transient))
		assert.are.equal(5, r(3, transient))
		assert.are.equal(5, r(9, transient))
	end)

	it("never retries with attempts = 1", function()
		local r = retry.backoff { attempts = 1, jitter = 0 }
		assert.is_nil(r(1, transient, "stat"))
	end)

	it("retries transient errors only, outside finish validation", function()
		local r = retry.backoff { jitter = 0 }
		assert.is_nil(r(1, permanent, "put_content"))
		assert.is_nil(r(1, { code = "PATH_NOT_FOUND", message = "x" }, "stat"))
		assert.is_nil(r(1, "a plain string error", "stat"))
		assert.is_nil(r(1, nil, "stat"))
		assert.is_number(r(1, transient, "stat"))
	end)

	it("retries what eventual consistency explains during finish validation", function()
		local r = retry.backoff { jitter = 0 }
		for _, code in ipairs { "PATH_NOT_FOUND", "BLOB_UNKNOWN", "SIZE_INVALID", "IO" } do
			assert.are.equal(0.05, r(1, { code = code, message = "lagging" }, "finish.validate"), code)
		end
	end)

	it("never retries errors about the request itself", function()
		local r = retry.backoff { jitter = 0 }
		for _, code in ipairs { "DIGEST_INVALID", "NAME_INVALID", "DENIED", "UNSUPPORTED", "RANGE_INVALID" } do
			local err = { code = code, message = "no", transient = true }
			assert.is_nil(r(1, err, "finish.validate"), code)
			assert.is_nil(r(1, err, "put_content"), code)
		end
	end)

	it("accepts a custom retryable predicate", function()
		local r = retry.backoff {
			jitter = 0,
			retryable = function(err, op)
				return op == "list" and err.code == "PATH_NOT_FOUND"
			end,
		}
		assert.are.equal(0.05, r(1, { code = "PATH_NOT_FOUND" }, "list"))
		assert.is_nil(r(1, transient, "stat"))
	end)

	it("spreads delays within +-jitter, reproducibly for a seed", function()
		local a = retry.backoff { attempts = 100, base = 1, factor = 1, max = 10, jitter = 0.2, seed = 42 }
		local b = retry.backoff { attempts = 100, base = 1, factor = 1, max = 10, jitter = 0.2, seed = 42 }
		local c = retry.backoff { attempts = 100, base = 1, factor = 1, max = 10, jitter = 0.2, seed = 43 }
		local seq_a, differs_from_c, distinct = {}, false, {}
		for i = 1, 50 do
			local da = a(i, transient)
			seq_a[i] = da
			assert.are.equal(da, b(i, transient))
			if c(i, transient) ~= da then
				differs_from_c = true
			end
			assert.is_true(da >= 0.8 and da <= 1.2, tostring(da))
			distinct[da] = true
		end
		assert.is_true(differs_from_c)
		local n = 0
		for _ in pairs(distinct) do
			n = n + 1
		end
		assert.is_true(n > 40, "jitter should vary the delays")
	end)

	it("keeps jittered delays at or below max", function()
		local r = retry.backoff { attempts = 50, base = 2, factor = 2, max = 2, jitter = 0.5, seed = 1 }
		for i = 1, 49 do
			local delay = r(i, transient)
			assert.is_true(delay <= 2 and delay >= 1, tostring(delay))
		end
	end)

	it("does not touch the global math.random state", function()
		math.randomseed(7)
		local expected = { math.random(), math.random() }
		math.randomseed(7)
		local r = retry.backoff { jitter = 0.5, seed = 99 }
		r(1, transient)
		r(2, transient)
		assert.are.same(expected, { math.random(), math.random() })
	end)

	it("raises on nonsense options and attempts", function()
		assert.has_error(function() retry.backoff { attempts = 0 } end)
		assert.has_error(function() retry.backoff { factor = 0.5 } end)
		assert.has_error(function() retry.backoff { jitter = 2 } end)
		assert.has_error(function() retry.backoff { base = "1" } end)
		local r = retry.backoff {}
		assert.has_error(function() r(0, transient) end)
	end)
end)

describe("layerup.retry.default and none", function()
	it("default retries a transient error a few times with small delays", function()
		local delays = {}
		for attempt = 1, 10 do
			local d = retry.default(attempt, transient, "put_content")
			if not d then
				break
			end
			delays[#delays + 1] = d
		end
		assert.are.equal(4, #delays)
		assert.is_true(delays[1] >= 0.04 and delays[1] <= 0.06)
		assert.is_true(delays[4] >= 0.32 and delays[4] <= 0.48)
	end)

	it("default gives up on a digest mismatch at once", function()
		assert.is_nil(retry.default(1, { code = "DIGEST_INVALID", message = "x" }, "finish.validate"))
	end)

	it("none never retries", function()
		assert.is_nil(retry.none(1, transient, "finish.validate"))
	end)
end)

describe("layerup.retry.prng", function()
	it("yields numbers in [0, 1), reproducibly", function()
		local a, b = retry.prng(5), retry.prng(5)
		for _ = 1, 1000 do
			local x = a()
			assert.are.equal(x, b())
			assert.is_true(x >= 0 and x < 1)
		end
	end)
end)
