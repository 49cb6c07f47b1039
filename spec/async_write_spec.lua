-- Large writes are hashed on a worker thread after write() returns, while
-- the caller prepares the next buffer (lup_upload_write_async).  These specs
-- pin what that must not change: the digest, failure handling mid-stream,
-- and the source string's lifetime (the binding anchors it).
local layerup = require "layerup"
local util = require "helpers.util"
local stores = require "helpers.stores"

local MiB = 1024 * 1024

-- Distinct pseudo-random chunks, each large enough for the worker.
local function chunks(count, size)
	local out = {}
	for i = 1, count do
		out[i] = util.random_bytes(size - i) .. string.char(i)
	end
	return out
end

stores.each_driver(function(drv)
	describe("background hashing on the " .. drv.name .. " driver", function()
		local env = stores.per_test(drv, "async", { record = true, seed = 4242 })

		it("gives the digest of every byte even when each string is dropped at once", function()
			local h = layerup.hasher()
			local up = assert(env.store:start("a/b"))
			for i, c in ipairs(chunks(6, MiB)) do
				h:update(c)
				assert.equal(up:size() + #c, up:write(c))
				c = nil -- luacheck: ignore
				if i % 2 == 0 then
					collectgarbage()
				end
			end
			local r = assert(up:finish(h:digest()))
			assert.equal(h:digest(), r.digest)
			assert.equal(0, up:bytes_reread())
		end)

		it("saves a hash state that covers the last background write", function()
			local data = table.concat(chunks(3, MiB))
			local up = assert(env.store:start("a/b"))
			assert(up:write(data:sub(1, 2 * MiB)))
			assert(up:write(data:sub(2 * MiB + 1)))
			local uuid = up.uuid
			assert(up:close())
			local up2 = assert(env.store:resume("a/b", uuid))
			assert.equal(#data, up2:size())
			assert.equal(0, up2:bytes_reread())
			assert(up2:finish(util.digest(data)))
		end)

		it("reads a file through two buffers to the right digest", function()
			local data = table.concat(chunks(5, MiB)) .. "tail"
			local path = os.tmpname()
			local f = assert(io.open(path, "wb"))
			f:write(data)
			f:close()
			f = assert(io.open(path, "rb"))
			local up = assert(env.store:start("a/b"))
			assert.equal(#data, up:read_from(f, MiB))
			f:close()
			os.remove(path)
			assert(up:finish(util.digest(data), { size = #data }))
		end)

		it("keeps the bytes before a failed large write and resumes from them", function()
			local faults = layerup.middleware.faults
			local d = faults(env.d, { op = "writer.write", nth = 3, partial = true })
			local store = layerup.open(d, { retry = false })
			local parts = chunks(4, MiB)
			local data = table.concat(parts)
			local up = assert(store:start("a/b"))
			assert(up:write(parts[1]))
			assert(up:write(parts[2]))
			local size, err = up:write(parts[3])
			assert.is_nil(size)
			assert.equal("IO", err.code)
			-- Half of the third buffer reached the data: size says so.
			local kept = up:size()
			assert.is_true(kept > 2 * MiB and kept < 3 * MiB)
			local uuid = up.uuid
			assert(up:close())
			local up2 = assert(store:resume("a/b", uuid))
			assert.equal(kept, up2:size())
			assert.equal(0, up2:bytes_reread())
			assert(up2:write(data:sub(kept + 1)))
			assert(up2:finish(util.digest(data)))
			store:close()
		end)
	end)
end)

describe("upload:read_from with a limit", function()
	local env = stores.per_test(stores.drivers[2], "limit", { seed = 99 })

	local function source(data)
		local path = os.tmpname()
		local f = assert(io.open(path, "wb"))
		f:write(data)
		f:close()
		return assert(io.open(path, "rb")), path
	end

	it("copies exactly limit bytes per call, like one request body each", function()
		local data = util.random_bytes(3 * MiB + 12345)
		local f, path = source(data)
		local up = assert(env.store:start("a/b"))
		-- three "PATCH bodies" of uneven sizes, then the rest
		assert.equal(MiB + 1, up:read_from(f, 256 * 1024, MiB + 1))
		assert.equal(0, up:read_from(f, 256 * 1024, 0))
		assert.equal(7, up:read_from(f, nil, 7))
		assert.equal(MiB + 1 + 7, up:size())
		assert.equal(#data - MiB - 8, up:read_from(f))
		f:close()
		os.remove(path)
		assert(up:finish(util.digest(data), { size = #data }))
	end)

	it("stops at the end of the file before the limit", function()
		local f, path = source("short")
		local up = assert(env.store:start("a/b"))
		assert.equal(5, up:read_from(f, 4, 1000))
		f:close()
		os.remove(path)
		assert(up:finish(util.digest("short")))
	end)

	it("refuses a limit for function sources and a negative limit", function()
		local up = assert(env.store:start("a/b"))
		assert.has_error(function() up:read_from(function() end, 10, 5) end)
		local f, path = source("x")
		assert.has_error(function() up:read_from(f, 10, -1) end)
		f:close()
		os.remove(path)
		assert(up:cancel())
	end)
end)
