-- The store option hash_thread = false (hosts such as nginx workers may
-- forbid extra threads): large writes, plain and read_from, are hashed on
-- the caller's thread, no thread is ever started, and digests still match.
-- With the default a worker thread exists while a large upload is open.
local layerup = require "layerup"
local util = require "helpers.util"

local MiB = 1024 * 1024

-- Threads of this Lua process (/proc/self/task is read by the process
-- itself, so "self" is the interpreter running busted).
local function threads()
	local f = assert(io.open("/proc/self/stat"))
	local pid = f:read("l"):match("^(%d+)")
	f:close()
	local p = assert(io.popen("ls /proc/" .. pid .. "/task | wc -l"))
	local n = tonumber(p:read("l"))
	p:close()
	return n
end

describe("store option hash_thread", function()
	local root

	before_each(function()
		math.randomseed(99)
		root = util.tmpdir("hashthread")
	end)

	after_each(function()
		util.rm_rf(root)
	end)

	local function push(opts)
		local store = assert(layerup.open(root, opts))
		local data = util.random_bytes(2 * MiB)
		local before = threads()
		local up = assert(store:start("t/threads"))
		assert(up:write(data:sub(1, MiB)))
		assert(up:write(data:sub(MiB + 1)))
		local during = threads()
		local blob = assert(up:finish(layerup.hasher():update(data):digest()))
		assert.equal(2 * MiB, blob.size)
		store:close()
		return during - before
	end

	it("starts a hash worker for large writes by default", function()
		assert.equal(1, push({}))
	end)

	it("never starts a thread when it is false, and digests still match", function()
		assert.equal(0, push({ hash_thread = false }))
	end)

	it("takes only a boolean, naming the option otherwise", function()
		local ok, err = pcall(layerup.open, root, { hash_thread = 0 })
		assert.is_false(ok)
		assert.matches("hash_thread", tostring(err))
	end)
end)
