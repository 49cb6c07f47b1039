-- guarded_spec.lua: one guarded path for every storage operation of the
-- store (issue 8, "One guarded path"): reads and cleanup deletes are
-- retried under the retry policy with the driver.retry event like every
-- other op; and expiry (max_age) takes the upload's lock before it removes
-- anything (defect 3).
local layerup = require "layerup"
local faults = require "layerup.middleware.faults"
local util = require "helpers.util"
local stores = require "helpers.stores"

local updir = stores.updir
local digest = util.digest

local OLD = "2020-01-01T00:00:00Z"

local function exists(d, path)
	return d:stat(path) ~= nil
end

-- A retry policy that retries transient errors twice without waiting.
local function retry(attempt, err)
	if attempt < 3 and type(err) == "table" and err.transient then
		return 0
	end
end

stores.each_driver(function(drv)
	describe("guarded storage path on the " .. drv.name .. " driver", function()
		local env = stores.per_test(drv, "guarded", { record = true })

		local function retries(op)
			local n = 0
			for _, f in ipairs(stores.events(env, "driver.retry")) do
				if f.op == op then n = n + 1 end
			end
			return n
		end

		it("retries a failed read of upload data (re-hash on resume) with driver.retry", function()
			local data = util.random_bytes(3000)
			local u = assert(env.store:start("g/read"))
			assert(u:write(data))
			assert(u:close())
			-- no state left: resume re-hashes the data through a reader
			assert(env.d:delete(updir("g/read", u.uuid, "hashstates")))
			local fd = faults(env.d, { op = "reader.read", path = "/data$", nth = 1, transient = true })
			local s = layerup.open(fd, { log = env.log, retry = retry })
			local r = assert(s:resume("g/read", u.uuid))
			assert.equals(1, retries("read"))
			local ev = stores.events(env, "upload.resume")
			assert.equals(3000, ev[#ev].bytes_reread)
			-- the hash was rebuilt by that resume: finish reads nothing
			local before = r:bytes_reread()
			assert(r:finish(digest(data)))
			assert.equals(before, r:bytes_reread())
			s:close()
		end)

		it("retries the cleanup delete of a failed start with driver.retry", function()
			local fd = faults(env.d, {
				{ op = "writer", path = "/data$", nth = 1 },
				{ op = "delete", nth = 1, transient = true },
			})
			local s = layerup.open(fd, { log = env.log, retry = retry })
			local u, err = s:start("g/start")
			assert.is_nil(u)
			assert.equals("IO", err.code)
			assert.equals(1, retries("delete"))
			local list = env.d:list(stores.V2 .. "/repositories/g/start/_uploads")
			assert.same({}, list or {})
			s:close()
		end)

		do
			it("expires an upload only under its lock: a held upload is LOCKED and keeps its bytes (defect 3)", function()
				local u = assert(env.store:start("g/old"))
				assert(u:write("abc"))
				assert(env.d:put_content(updir("g/old", u.uuid, "startedat"), OLD))
				local s = layerup.open(env.d, { max_age = 3600, log = env.log })
				local r, err = s:resume("g/old", u.uuid)
				assert.is_nil(r)
				assert.equals("LOCKED", err.code)
				assert.equals(0, #stores.events(env, "upload.expired"))
				assert.equals(4, u:write("d"))
				assert(u:close())
				assert.equals("abcd", env.d:get_content(updir("g/old", u.uuid, "data")))
				-- released: now it expires
				r, err = s:resume("g/old", u.uuid)
				assert.is_nil(r)
				assert.equals("BLOB_UPLOAD_UNKNOWN", err.code)
				assert.is_false(exists(env.d, updir("g/old", u.uuid)))
				assert.equals(1, #stores.events(env, "upload.expired"))
				s:close()
			end)
		end
	end)
end)

describe("the store's sources", function()
	it("call drivers only through the guarded lup_s_* layer", function()
		local p = assert(io.popen("ls src/store/*.c"))
		local n = 0
		for file in p:lines() do
			n = n + 1
			local text = util.read_file(file)
			if file:match("store%.c$") then
				-- the layer itself: lup_driver_* only inside its section
				text = text:gsub("/%*\n %* The guarded path%..-\nint lup_read_startedat", "")
			end
			for call in text:gmatch("lup_driver_(%w+)%s*%(") do
				assert.is_true(call == "retain" or call == "release",
					file .. " calls lup_driver_" .. call .. " directly")
			end
			assert.is_nil(text:find("->driver->", 1, true), file .. " calls a driver method")
		end
		p:close()
		assert.is_true(n >= 5)
	end)
end)
