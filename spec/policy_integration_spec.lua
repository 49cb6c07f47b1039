-- End-to-end specs: the Lua policies and middleware driving the C core.
-- Lag and fault injection run on the core's memory driver; sleeps are
-- recorded instead of slept, so nothing here depends on timing.

local layerup = require "layerup"
local cjson = require "cjson"
local retry = require "layerup.retry"
local link = require "layerup.link"
local log = require "layerup.log"
local admit = require "layerup.admit"
local limits = require "layerup.limits"
local trace = require "layerup.middleware.trace"
local faults = require "layerup.middleware.faults"
local lag = require "layerup.middleware.lag"

-- sha256 through coreutils: independent of the code under test.
local function sha256(data)
	local path = os.tmpname()
	local f = assert(io.open(path, "wb"))
	f:write(data)
	f:close()
	local p = assert(io.popen("sha256sum " .. path))
	local hex = p:read("a"):match("^(%x+)")
	p:close()
	os.remove(path)
	return "sha256:" .. hex
end

-- Deterministic, non-repeating test content.
local function content(n)
	local parts, i = {}, 0
	while #parts * 16 < n do
		i = i + 1
		parts[#parts + 1] = ("%015d\n"):format(i * 7919)
	end
	return table.concat(parts):sub(1, n)
end

local function read_blob(store, repo, digest)
	local r = assert(store:open(repo, digest))
	local out = {}
	for chunk in function() return r:read(65536) end do
		out[#out + 1] = chunk
	end
	r:close()
	return table.concat(out)
end

local function recorder()
	local sleeps = {}
	return function(s) sleeps[#sleeps + 1] = s end, sleeps
end

describe("eventual consistency (lag middleware)", function()
	local DATA = "hello"
	local DIGEST = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"

	it("makes finish fail when retrying is disabled", function()
		local sink, records = log.memory()
		local d = lag(layerup.memory(), 2)
		local store = assert(layerup.open(d, { retry = false, log = sink }))
		local u = assert(store:start("a/b"))
		assert.are.equal(5, u:write(DATA))
		local res, err = u:finish(DIGEST)
		assert.is_nil(res)
		assert.are.equal("BLOB_UPLOAD_INVALID", err.code)
		assert.are.equal(0, records:count("finish.retry"))
		assert.are.equal(0, records:count("upload.finish"))
		assert.is_nil(store:stat(DIGEST))
	end)

	local function finish_with(opts_retry)
		local sink, records = log.memory()
		local sleep, sleeps = recorder()
		local inner = layerup.memory()
		local d = lag(inner, 2)
		local opts = { log = sink, sleep = sleep }
		opts.retry = opts_retry
		local store = assert(layerup.open(d, opts))
		local u = assert(store:start("a/b"))
		u:write(DATA)
		local res, err = u:finish(DIGEST)
		return res, err, records, sleeps, inner
	end

	local function check_success(res, err, records, sleeps, inner)
		assert.is_nil(err)
		assert.are.same({ digest = DIGEST, size = 5 }, { digest = res.digest, size = res.size })
		assert.are.equal(2, records:count("finish.retry"))
		local attempts = {}
		for _, r in ipairs(records) do
			if r.event == "finish.retry" then
				attempts[#attempts + 1] = r.fields.attempt
				assert.are.equal("BLOB_UPLOAD_INVALID", r.fields.code)
				assert.are.equal("a/b", r.fields.repo)
				assert.is_true(r.fields.delay > 0)
				assert.are.equal(r.fields.delay, sleeps[#attempts])
			end
		end
		assert.are.same({ 1, 2 }, attempts)
		assert.are.equal(1, records:count("upload.finish"))
		-- read back without the lag
		assert.are.equal(DATA, read_blob(layerup.open(inner), "a/b", DIGEST))
	end

	it("lets finish succeed with layerup.retry.default, logging each retry", function()
		check_success(finish_with(retry.default))
	end)

	it("retries by default (no retry option)", function()
		check_success(finish_with(nil))
	end)

	it("gives up when the lag outlasts the attempts", function()
		local sink, records = log.memory()
		local sleep = recorder()
		local d = lag(layerup.memory(), 10)
		local store = assert(layerup.open(d, {
			log = sink, sleep = sleep,
			retry = retry.backoff { attempts = 3, jitter = 0 },
		}))
		local u = assert(store:start("a/b"))
		u:write(DATA)
		local res, err = u:finish(DIGEST)
		assert.is_nil(res)
		assert.are.equal("BLOB_UPLOAD_INVALID", err.code)
		assert.are.equal(2, records:count("finish.retry"))
		assert.are.equal(1, records:count("upload.finish_failed"))
	end)
end)

describe("fault injection (faults middleware)", function()
	local DATA = content(256 * 1024 + 123)
	local CHUNK = 16 * 1024

	local function write_chunks(u, data, from)
		for off = from or 0, #data - 1, CHUNK do
			local n, err = u:write(data:sub(off + 1, off + CHUNK))
			if not n then
				return nil, err
			end
		end
		return true
	end

	it("retries a transient write failure in the middle of a chunked upload", function()
		local sink, records = log.memory()
		local sleep, sleeps = recorder()
		local d, state = faults(layerup.memory(), { op = "writer.write", nth = 3, transient = true })
		local store = assert(layerup.open(d, { log = sink, sleep = sleep, retry = retry.default }))
		local u = assert(store:start("lib/app"))
		assert.is_true(write_chunks(u, DATA))
		local res = assert(u:finish(sha256(DATA)))
		assert.are.equal(sha256(DATA), res.digest)
		assert.are.equal(#DATA, res.size)
		assert.are.equal(1, state.failures)
		assert.is_true(records:count("driver.retry") >= 1)
		assert.is_true(#sleeps >= 1)
		assert.are.equal(DATA, read_blob(store, "lib/app", res.digest))
	end)

	it("survives a transient short write (part of the bytes landed)", function()
		local d, state = faults(layerup.memory(),
			{ op = "writer.write", nth = 2, transient = true, partial = true })
		local store = assert(layerup.open(d, { sleep = function() end, retry = retry.default }))
		local u = assert(store:start("lib/app"))
		assert.is_true(write_chunks(u, DATA))
		local res, err = u:finish(sha256(DATA))
		assert.is_nil(err)
		assert.are.equal(1, state.failures)
		assert.are.equal(DATA, read_blob(store, "lib/app", res.digest))
	end)

	it("reports a permanent failure clearly, and the upload resumes with nothing lost", function()
		local d, state = faults(layerup.memory(), { op = "writer.write", nth = 4 })
		local store = assert(layerup.open(d, { sleep = function() end }))
		local u = assert(store:start("lib/app"))
		local ok, err = write_chunks(u, DATA)
		assert.is_nil(ok)
		assert.are.equal("IO", err.code)
		assert.is_falsy(err.transient)
		assert.matches("injected permanent failure", tostring(err), 1, true)
		assert.are.equal(1, state.failures)
		local uuid = u.uuid
		u:close()

		local u2 = assert(store:resume("lib/app", uuid))
		local have = u2:size()
		assert.is_true(have > 0 and have < #DATA)
		-- what was kept is exactly the start of the data
		local kept = store:driver():get_content(
			"/docker/registry/v2/repositories/lib/app/_uploads/" .. uuid .. "/data")
		assert.are.equal(have, #kept)
		assert.is_true(kept == DATA:sub(1, have))
		assert.is_true(write_chunks(u2, DATA:sub(have + 1)))
		local res = assert(u2:finish(sha256(DATA)))
		assert.are.equal(#DATA, res.size)
		assert.are.equal(DATA, read_blob(store, "lib/app", res.digest))
	end)
end)

describe("policies through layerup.open", function()
	it("admit: refused repositories get DENIED with the reason", function()
		local store
		store = assert(layerup.open(layerup.memory(), {
			admit = admit.all(admit.deny "tmp/*", admit.limit_per_repo(function() return store end, 1)),
		}))
		local u, err = store:start("tmp/x")
		assert.is_nil(u)
		assert.are.equal("DENIED", err.code)
		assert.matches("tmp/*", err.message, 1, true)
		local first = assert(store:start("prod/x"))
		local second, err2 = store:start("prod/x")
		assert.is_nil(second)
		assert.matches("limit 1", err2.message, 1, true)
		first:cancel()
		assert.is_truthy(store:start("prod/x"))
	end)

	it("link.mirror links the blob into the second repository", function()
		local store = assert(layerup.open(layerup.memory(), { link = link.mirror "cache/all" }))
		local u = assert(store:start("a/b"))
		u:write("abc")
		local res = assert(u:finish(sha256("abc")))
		assert.are.equal(3, store:stat(res.digest, "a/b").size)
		assert.are.equal(3, store:stat(res.digest, "cache/all").size)
		assert.is_nil(store:stat(res.digest, "c/d"))
	end)

	it("link.read_only refuses a finish into the namespace with DENIED", function()
		local store = assert(layerup.open(layerup.memory(), { link = link.read_only "frozen" }))
		local u = assert(store:start("frozen/app"))
		u:write("abc")
		local res, err = u:finish(sha256("abc"))
		assert.is_nil(res)
		assert.are.equal("DENIED", err.code)
		assert.matches("read-only", err.message, 1, true)
		assert.is_nil(store:stat(sha256("abc"), "frozen/app"))
	end)

	it("log.json records the core's events as JSON lines", function()
		local lines = {}
		local store = assert(layerup.open(layerup.memory(), {
			log = log.json(function(l) lines[#lines + 1] = l end),
		}))
		local u = assert(store:start("a/b"))
		u:write("abc")
		assert(u:finish(sha256("abc")))
		local events = {}
		for i, l in ipairs(lines) do
			local t = cjson.decode(l)
			events[i] = t.event
			if t.event == "upload.finish" then
				assert.are.equal(sha256("abc"), t.digest)
				assert.are.equal(3, t.size)
				assert.are.equal("a/b", t.repo)
			end
		end
		assert.are.equal("upload.start", events[1])
		assert.are.equal("upload.finish", events[#events])
	end)

	it("a raising log sink does not break the upload", function()
		local store = assert(layerup.open(layerup.memory(), { log = function() error("sink down") end }))
		local u = assert(store:start("a/b"))
		u:write("abc")
		assert.is_truthy(u:finish(sha256("abc")))
	end)

	it("limits.opts feeds max_size", function()
		local opts = assert(limits.opts { max_size = "1KiB" })
		local store = assert(layerup.open(layerup.memory(), opts))
		local u = assert(store:start("a/b"))
		assert.are.equal(1000, u:write(("x"):rep(1000)))
		local n, err = u:write(("x"):rep(100))
		assert.is_nil(n)
		assert.are.equal("SIZE_INVALID", err.code)
	end)

	it("trace sees the driver ops of an upload", function()
		local sink, records = log.memory()
		local store = assert(layerup.open(trace(layerup.memory(), sink)))
		local u = assert(store:start("a/b"))
		u:write("abc")
		assert(u:finish(sha256("abc")))
		local ops = {}
		for _, r in ipairs(records) do
			assert.are.equal("driver.op", r.event)
			ops[r.fields.op] = true
		end
		assert.is_true(ops["writer.write"])
		assert.is_true(ops.move)
		assert.is_true(ops.put_content)
	end)
end)
