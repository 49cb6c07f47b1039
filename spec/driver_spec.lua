-- driver_spec.lua: the driver conformance suite.  One suite, run unchanged
-- against the filesystem driver, the memory driver and a pure-Lua driver
-- (helpers/memdriver.lua through layerup.driver).  It covers every test of
-- the registry's driver testsuite (reference/distribution-2.8.md §5.5) plus
-- what we add ("." and ".." rejected, locks, empty streams).  Like the
-- registry's TearDownTest, every case must leave the store empty.
--
-- Then: the Lua binding's own behaviour (handles, errors) and what is
-- particular to drivers written in Lua.
local layerup = require "layerup"
local util = require "helpers.util"
local vm = require "helpers.vm"
local memdriver = require "helpers.memdriver"
local counting = require "helpers.counting"
local s3env = require "helpers.s3env"

local KiB, MiB = 1024, 1024 * 1024

math.randomseed(20240601)

local drivers = {
	{
		label = "filesystem",
		make = function()
			local dir = util.tmpdir("driver")
			-- root does not exist yet: the driver creates it
			local d = assert(layerup.filesystem(dir .. "/root"))
			return d, function()
				util.rm_rf(dir)
			end
		end,
	},
	{
		label = "memory",
		make = function()
			return layerup.memory()
		end,
	},
	{
		label = "lua",
		make = function()
			return layerup.driver(memdriver.new { name = "luamem" })
		end,
	},
}
if s3env.options() then
	drivers[#drivers + 1] = {
		label = "s3",
		mtime_step = 1.1,
		make = function()
			return assert(layerup.s3(s3env.options { prefix = s3env.prefix("driver") }))
		end,
	}
end

-- err is a layerup error with this code whose message names the driver.
local function assert_error(d, code, ok, err)
	assert.is_nil(ok)
	assert.is_table(err, "expected an error table")
	assert.equal(code, err.code, tostring(err))
	assert.is_string(err.message)
	assert.truthy(err.message:find(d.name, 1, true),
		"message does not name the driver: " .. err.message)
	assert.equal(err.code .. ": " .. err.message, tostring(err))
	return err
end

-- Read everything from r in chunks of n.
local function read_all(r, n)
	local parts = {}
	while true do
		local s, err = r:read(n or 64 * KiB)
		assert.is_nil(err)
		if not s then
			break
		end
		assert.is_true(#s > 0)
		parts[#parts + 1] = s
	end
	return table.concat(parts)
end

-- Write data through a writer, commit, close, read back with a reader.
local function stream_round_trip(d, path, data)
	local w = assert(d:writer(path, false))
	local chunk = 64 * KiB
	for i = 1, #data, chunk do
		assert.is_true(w:write(data:sub(i, i + chunk - 1)))
	end
	assert.equal(#data, w:size())
	assert.is_true(w:commit())
	assert.is_true(w:close())
	local r = assert(d:reader(path, 0))
	local got = read_all(r)
	r:close()
	return got
end

local function same_bytes(expected, got)
	-- assert.equal on megabytes prints megabytes: compare first.
	if expected ~= got then
		error(string.format("content differs: expected %d bytes, got %d",
			#expected, got and #got or -1), 2)
	end
end

for _, spec in ipairs(drivers) do
	describe("driver conformance (" .. spec.label .. ")", function()
		local d, cleanup

		setup(function()
			d, cleanup = spec.make()
		end)

		teardown(function()
			d:close()
			if cleanup then
				cleanup()
			end
		end)

		-- TearDownTest: the store is empty after every case.
		after_each(function()
			local children = assert(d:list("/"))
			for _, p in ipairs(children) do
				d:delete(p)
			end
			assert.same({}, children, "a test left files behind")
		end)

		-- Fresh top-level names so that cases cannot see each other.
		local function rpath(...)
			local parts = { "/" .. util.random_name(12) }
			for i = 1, select("#", ...) do
				parts[#parts + 1] = select(i, ...)
			end
			return table.concat(parts, "/")
		end

		-- Like the registry's deletePath: directories may stay behind on
		-- the filesystem when their last file moves away.
		local function remove_top(p)
			local ok, err = d:delete(p:match("^/[^/]+"))
			assert(ok or err.code == "PATH_NOT_FOUND", err)
		end

		it("has a name", function()
			assert.is_string(d.name)
			assert.is_true(#d.name > 0)
			assert.truthy(tostring(d):find("layerup.driver (" .. d.name .. "): ", 1, true))
		end)

		it("lists an empty root (TestRootExists)", function()
			assert.same({}, assert(d:list("/")))
			local st = assert(d:stat("/"))
			assert.is_true(st.dir)
		end)

		it("accepts valid paths (TestValidPaths)", function()
			local contents = util.random_bytes(64)
			for _, p in ipairs {
				"/a", "/2", "/aa", "/a.a", "/0-9/abcdefg", "/abcdefg/z.75",
				"/abc/1.2.3.4.5-6_zyx/123.z/4", "/docker/docker-registry",
				"/123.abc", "/abc./abc", "/.abc", "/a--b", "/a-.b", "/_.abc",
				"/Docker/docker-registry", "/Abc/Cba",
			} do
				assert.is_true(d:put_content(p, contents), p)
				assert.equal(contents, d:get_content(p), p)
				assert.is_true(d:delete(p:match("^/[^/]+")), p)
			end
		end)

		it("rejects invalid paths (TestInvalidPaths, plus . and ..)", function()
			local invalid = {
				"", "/", "abc", "123.abc", "//bcd", "/abc_123/",
				"/..", "/.", "/a/../b", "/a/./b", "/a/..", "/../a",
				"/a b", "/a:b", "/a//b", "/a\0b", "/a/\0",
			}
			for _, p in ipairs(invalid) do
				local err = assert_error(d, "INVALID_PATH", d:put_content(p, "x"))
				if not p:find("\0", 1, true) then
					assert.equal(p, err.path or "")
				end
				assert_error(d, "INVALID_PATH", d:get_content(p))
				assert_error(d, "INVALID_PATH", d:reader(p, 0))
				assert_error(d, "INVALID_PATH", d:writer(p, false))
				assert_error(d, "INVALID_PATH", d:delete(p))
				assert_error(d, "INVALID_PATH", d:move(p, "/ok"))
				assert_error(d, "INVALID_PATH", d:move("/ok", p))
				assert_error(d, "INVALID_PATH", d:lock(p))
				if p ~= "/" then -- stat and list accept the root
					assert_error(d, "INVALID_PATH", d:stat(p))
					assert_error(d, "INVALID_PATH", d:list(p))
				end
			end
			-- nothing was created by any of these
			assert.same({}, assert(d:list("/")))
		end)

		describe("round trips through put_content/get_content", function()
			for _, case in ipairs {
				{ "TestWriteRead1", "a" },
				{ "TestWriteRead2", "\xc3\x9f" },
				{ "TestWriteRead3", 32 },
				{ "TestWriteRead4", MiB },
				{ "TestWriteReadNonUTF8", "\x80\x80\x80\x80" },
				{ "empty", "" },
				{ "NUL bytes", "\0a\0\0b\0" },
			} do
				it(case[1], function()
					local data = case[2]
					if type(data) == "number" then
						data = util.random_bytes(data)
					end
					local p = rpath("file")
					assert.is_true(d:put_content(p, data))
					same_bytes(data, d:get_content(p))
					assert.equal(#data, assert(d:stat(p)).size)
					assert.is_true(d:delete(p:match("^/[^/]+")))
				end)
			end
		end)

		it("truncates on put_content (TestTruncate)", function()
			local p = rpath("file")
			assert.is_true(d:put_content(p, util.random_bytes(MiB)))
			local small = util.random_bytes(KiB)
			assert.is_true(d:put_content(p, small))
			same_bytes(small, d:get_content(p))
			assert.is_true(d:delete(p))
			remove_top(p)
		end)

		it("overwrites fully on repeated put_content (TestPutContentMultipleTimes)", function()
			local p = rpath("file")
			assert.is_true(d:put_content(p, util.random_bytes(4096)))
			local second = util.random_bytes(2048)
			assert.is_true(d:put_content(p, second))
			same_bytes(second, d:get_content(p))
			assert.equal(2048, assert(d:stat(p)).size)
			assert.is_true(d:delete(p))
			remove_top(p)
		end)

		it("reports a missing file (TestReadNonexistent)", function()
			local p = rpath("missing")
			local err = assert_error(d, "PATH_NOT_FOUND", d:get_content(p))
			assert.equal(p, err.path)
		end)

		describe("round trips through writer/reader", function()
			for _, case in ipairs {
				{ "TestWriteReadStreams1", "a" },
				{ "TestWriteReadStreams2", "\xc3\x9f" },
				{ "TestWriteReadStreams3", 32 },
				{ "TestWriteReadStreams4", MiB },
				{ "TestWriteReadStreamsNonUTF8", "\x80\x80\x80\x80" },
				{ "an empty stream", "" },
			} do
				it(case[1], function()
					local data = case[2]
					if type(data) == "number" then
						data = util.random_bytes(data)
					end
					local p = rpath("stream")
					same_bytes(data, stream_round_trip(d, p, data))
					same_bytes(data, d:get_content(p))
					assert.is_true(d:delete(p))
					remove_top(p)
				end)
			end

			-- The registry streams 5 GiB (skipped in -short); we stream
			-- 32 MiB of distinct 1 MiB chunks and compare chunk by chunk.
			it("a large stream (TestWriteReadLargeStreams, scaled)", function()
				local p, block, n = rpath("large"), util.random_bytes(MiB), 32
				local function chunk(i)
					return string.pack(">I4", i) .. block:sub(5)
				end
				local w = assert(d:writer(p, false))
				for i = 1, n do
					assert.is_true(w:write(chunk(i)))
				end
				assert.equal(n * MiB, w:size())
				assert.is_true(w:commit())
				assert.is_true(w:close())
				local r = assert(d:reader(p, 0))
				for i = 1, n do
					same_bytes(chunk(i), r:read(MiB))
				end
				assert.is_nil(r:read(1))
				r:close()
				assert.is_true(d:delete(p))
				remove_top(p)
			end)
		end)

		it("reads from offsets (TestReaderWithOffset)", function()
			local p = rpath("offset")
			local c1, c2, c3 = util.random_bytes(32), util.random_bytes(32), util.random_bytes(32)
			assert.is_true(d:put_content(p, c1 .. c2 .. c3))

			for _, case in ipairs { { 0, c1 .. c2 .. c3 }, { 32, c2 .. c3 }, { 64, c3 } } do
				local r = assert(d:reader(p, case[1]))
				same_bytes(case[2], read_all(r, 7))
				r:close()
			end

			local r, err = d:reader(p, -1)
			assert.is_nil(r)
			assert_error(d, "INVALID_OFFSET", r, err)
			assert.equal(-1, err.offset)
			assert.equal(p, err.path)

			-- at the end: an empty reader
			r = assert(d:reader(p, 96))
			assert.is_nil(r:read(10))
			r:close()

			-- one byte before the end
			r = assert(d:reader(p, 95))
			assert.equal(c3:sub(32), r:read(10))
			assert.is_nil(r:read(10))
			r:close()

			-- past the end: an empty reader too
			r = assert(d:reader(p, 1000))
			assert.is_nil(r:read(10))
			r:close()

			assert.is_true(d:delete(p))
			remove_top(p)
		end)

		-- testContinueStreamAppend: sizes are reported before writing.
		local function continue_stream_append(chunk_size)
			local p = rpath("append")
			local c1 = util.random_bytes(chunk_size)
			local c2 = util.random_bytes(chunk_size)
			local c3 = util.random_bytes(chunk_size)
			local full = c1 .. c2 .. c3

			local w = assert(d:writer(p, false))
			assert.is_true(w:write(c1))
			assert.equal(chunk_size, w:size())
			assert.is_true(w:close())

			w = assert(d:writer(p, true))
			assert.equal(chunk_size, w:size())
			assert.is_true(w:write(c2))
			assert.equal(2 * chunk_size, w:size())
			assert.is_true(w:close())

			w = assert(d:writer(p, true))
			assert.equal(2 * chunk_size, w:size())
			assert.is_true(w:write(c3))
			assert.equal(3 * chunk_size, w:size())
			assert.is_true(w:commit())
			assert.is_true(w:close())

			same_bytes(full, d:get_content(p))
			assert.is_true(d:delete(p))
			remove_top(p)
		end

		it("continues a stream with small chunks (TestContinueStreamAppendSmall)", function()
			continue_stream_append(32)
		end)

		it("continues a stream with large chunks (TestContinueStreamAppendLarge)", function()
			continue_stream_append(10 * MiB)
		end)

		it("reports a missing file to readers (TestReadNonexistentStream)", function()
			local p = rpath("missing")
			local err = assert_error(d, "PATH_NOT_FOUND", d:reader(p, 0))
			assert.equal(p, err.path)
			assert_error(d, "PATH_NOT_FOUND", d:reader(p, 64))
		end)

		it("lists direct children (TestList)", function()
			local missing = rpath("nonexistent")
			local err = assert_error(d, "PATH_NOT_FOUND", d:list(missing))
			assert.equal(missing, err.path)

			local root = rpath()
			local parent = root .. "/" .. util.random_name(10)
			local expected = {}
			for i = 1, 50 do
				local p = parent .. "/" .. util.random_name(8) .. i
				expected[i] = p
				assert.is_true(d:put_content(p, util.random_bytes(32)))
			end
			table.sort(expected)

			assert.same({ root }, assert(d:list("/")))
			assert.same({ parent }, assert(d:list(root)))
			-- sorted by the driver (the registry sorts in the test)
			assert.same(expected, assert(d:list(parent)))

			assert.is_true(d:delete(root))
		end)

		it("lists files and directories together, sorted", function()
			local root = rpath()
			for _, name in ipairs { "b", "a/x", "c/y/z", "a0" } do
				assert.is_true(d:put_content(root .. "/" .. name, "1"))
			end
			assert.same({ root .. "/a", root .. "/a0", root .. "/b", root .. "/c" },
				assert(d:list(root)))
			assert.is_true(d:delete(root))
		end)

		it("moves (TestMove)", function()
			local src, dst = rpath("src"), rpath("dir", "dst")
			local data = util.random_bytes(32)
			assert.is_true(d:put_content(src, data))
			assert.is_true(d:move(src, dst))
			same_bytes(data, d:get_content(dst))
			assert_error(d, "PATH_NOT_FOUND", d:get_content(src))
			assert.is_true(d:delete(dst:match("^/[^/]+")))
			remove_top(src)
		end)

		it("moves over an existing file (TestMoveOverwrite)", function()
			local src, dst = rpath("src"), rpath("dst")
			local data = util.random_bytes(32)
			assert.is_true(d:put_content(src, data))
			assert.is_true(d:put_content(dst, util.random_bytes(64)))
			assert.is_true(d:move(src, dst))
			same_bytes(data, d:get_content(dst))
			assert_error(d, "PATH_NOT_FOUND", d:get_content(src))
			assert.is_true(d:delete(dst:match("^/[^/]+")))
			remove_top(src)
		end)

		it("leaves the destination alone when the source is missing (TestMoveNonexistent)", function()
			local src, dst = rpath("src"), rpath("dst")
			local data = util.random_bytes(32)
			assert.is_true(d:put_content(dst, data))
			local err = assert_error(d, "PATH_NOT_FOUND", d:move(src, dst))
			assert.equal(src, err.path)
			same_bytes(data, d:get_content(dst))
			assert.is_true(d:delete(dst:match("^/[^/]+")))
		end)

		it("refuses to move below a file (TestMoveInvalid)", function()
			local notadir = rpath()
			assert.is_true(d:put_content(notadir, "x"))
			local ok, err = d:move(notadir .. "/foo", notadir .. "/bar")
			assert.is_nil(ok)
			assert.is_table(err)
			assert.truthy(err.message:find(d.name, 1, true))
			assert.equal("x", d:get_content(notadir))
			assert.is_true(d:delete(notadir))
		end)

		it("deletes (TestDelete)", function()
			local p = rpath("file")
			assert.is_true(d:put_content(p, util.random_bytes(32)))
			assert.is_true(d:delete(p))
			remove_top(p)
			assert_error(d, "PATH_NOT_FOUND", d:get_content(p))
			-- the now empty parent directory is gone or empty
			local children = d:list(p:match("^/[^/]+"))
			assert.is_true(children == nil or #children == 0)
			remove_top(p)
		end)

		it("reports deleting a missing path (TestDeleteNonexistent)", function()
			local p = rpath("missing")
			local err = assert_error(d, "PATH_NOT_FOUND", d:delete(p))
			assert.equal(p, err.path)
		end)

		it("deletes folders recursively (TestDeleteFolder)", function()
			local dir = rpath("dir")
			local f1, f2, f3 = dir .. "/f1", dir .. "/f2", dir .. "/sub/f3"
			for _, f in ipairs { f1, f2, f3 } do
				assert.is_true(d:put_content(f, util.random_bytes(32)))
			end
			assert.is_true(d:delete(f1))
			assert_error(d, "PATH_NOT_FOUND", d:get_content(f1))
			assert.is_string(d:get_content(f2))
			assert.is_string(d:get_content(f3))
			assert.is_true(d:delete(dir))
			for _, f in ipairs { f1, f2, f3 } do
				assert_error(d, "PATH_NOT_FOUND", d:get_content(f))
			end
			assert_error(d, "PATH_NOT_FOUND", d:stat(dir))
			remove_top(dir)
		end)

		it("spares siblings sharing a prefix (TestDeleteOnlyDeletesSubpaths)", function()
			local dir = rpath()
			local f, fsuffix = dir .. "/f", dir .. "/fsuffix"
			local dd, ddsuffix = dir .. "/d/f", dir .. "/dsuffix/f"
			for _, p in ipairs { f, fsuffix, dd, ddsuffix } do
				assert.is_true(d:put_content(p, "data"))
			end
			assert.is_true(d:delete(f))
			assert_error(d, "PATH_NOT_FOUND", d:get_content(f))
			assert.equal("data", d:get_content(fsuffix))
			assert.is_true(d:delete(dir .. "/d"))
			assert_error(d, "PATH_NOT_FOUND", d:get_content(dd))
			assert.equal("data", d:get_content(ddsuffix))
			assert.is_true(d:delete(dir))
		end)

		it("stats files and directories (TestStatCall)", function()
			local dir = rpath("dir")
			local file = dir .. "/file"
			local err = assert_error(d, "PATH_NOT_FOUND", d:stat(dir))
			assert.equal(dir, err.path)
			assert_error(d, "PATH_NOT_FOUND", d:stat(file))

			assert.is_true(d:put_content(file, util.random_bytes(4096)))
			local st = assert(d:stat(file))
			assert.equal(file, st.path)
			assert.equal(4096, st.size)
			assert.is_false(st.dir)
			assert.is_number(st.mtime)
			assert.is_true(math.type(st.mtime_ns) == "integer")
			assert.is_true(st.mtime_ns > 0)
			assert.is_true(math.abs(st.mtime - os.time()) < 300)

			-- registry: sleep 10 s, re-put, expect a strictly later mtime;
			-- sub-second timestamps make 20 ms enough (S3's Last-Modified
			-- has whole seconds)
			util.sleep(spec.mtime_step or 0.02)
			assert.is_true(d:put_content(file, util.random_bytes(4096)))
			local st2 = assert(d:stat(file))
			assert.is_true(st2.mtime_ns > st.mtime_ns,
				("mtime did not advance: %d -> %d"):format(st.mtime_ns, st2.mtime_ns))
			assert.is_true(st2.mtime > st.mtime)

			local dst = assert(d:stat(dir))
			assert.equal(dir, dst.path)
			assert.equal(0, dst.size)
			assert.is_true(dst.dir)

			assert.is_true(d:delete(dir:match("^/[^/]+")))
		end)

		it("serves interleaved readers at random offsets (TestConcurrentStreamReads)", function()
			local p, size = rpath("shared"), 4 * MiB
			local data = util.random_bytes(size)
			assert.is_true(d:put_content(p, data))
			local readers = {}
			for i = 1, 10 do
				local off = math.random(0, size - 1)
				readers[i] = { off = off, r = assert(d:reader(p, off)), parts = {} }
			end
			-- Lua has no threads: interleave reads round-robin instead.
			local live = #readers
			while live > 0 do
				live = 0
				for _, rd in ipairs(readers) do
					if not rd.done then
						local s = rd.r:read(math.random(1, 256 * KiB))
						if s then
							rd.parts[#rd.parts + 1] = s
							live = live + 1
						else
							rd.done = true
						end
					end
				end
			end
			for _, rd in ipairs(readers) do
				same_bytes(data:sub(rd.off + 1), table.concat(rd.parts))
				rd.r:close()
			end
			assert.is_true(d:delete(p))
			remove_top(p)
		end)

		it("writes interleaved streams (TestConcurrentFileStreams)", function()
			local n, chunk = 8, 64 * KiB
			local streams = {}
			for i = 1, n do
				streams[i] = {
					path = rpath("stream" .. i),
					data = util.random_bytes(n * chunk),
				}
				streams[i].w = assert(d:writer(streams[i].path, false))
			end
			for off = 1, n * chunk, chunk do
				for _, s in ipairs(streams) do
					assert.is_true(s.w:write(s.data:sub(off, off + chunk - 1)))
				end
			end
			for _, s in ipairs(streams) do
				assert.is_true(s.w:commit())
				assert.is_true(s.w:close())
			end
			for _, s in ipairs(streams) do
				local r = assert(d:reader(s.path, 0))
				same_bytes(s.data, read_all(r))
				r:close()
				assert.is_true(d:delete(s.path:match("^/[^/]+")))
			end
		end)

		it("cancels a writer: the content is removed", function()
			local p = rpath("cancel")
			local w = assert(d:writer(p, false))
			assert.is_true(w:write("abc"))
			assert.is_true(w:cancel())
			assert.is_true(w:close())
			assert_error(d, "PATH_NOT_FOUND", d:get_content(p))
			remove_top(p)
		end)

		it("keeps what a closed writer wrote for an append writer", function()
			local p = rpath("flush")
			local w = assert(d:writer(p, false))
			assert.is_true(w:write("abc"))
			assert.is_true(w:close())
			w = assert(d:writer(p, true))
			assert.equal(3, w:size())
			assert.is_true(w:write("def"))
			assert.is_true(w:commit())
			assert.is_true(w:close())
			assert.equal("abcdef", d:get_content(p))
			assert.is_true(d:delete(p))
			remove_top(p)
		end)

		it("refuses writes after commit or cancel", function()
			local p = rpath("done")
			local w = assert(d:writer(p, false))
			assert.is_true(w:commit())
			assert_error(d, "IO", w:write("x"))
			assert_error(d, "IO", w:commit())
			assert_error(d, "IO", w:cancel())
			assert.is_true(w:close())
			assert.is_true(w:close()) -- idempotent
			assert.has_error(function() w:write("x") end, "attempt to use a closed writer")
			assert.equal("", d:get_content(p))
			assert.is_true(d:delete(p))
			remove_top(p)
		end)

		it("locks a directory exclusively, across a file replaced inside it (upload locks)", function()
			local f = rpath("updir/startedat")
			local dir = f:match("^(.*)/[^/]+$")
			assert.is_true(d:put_content(f, "x"))
			local l1 = assert(d:lock(dir))
			assert_error(d, "LOCKED", d:lock(dir))
			assert.is_true(d:put_content(f, "y")) -- replaced (a rename on disk)
			assert_error(d, "LOCKED", d:lock(dir))
			assert.is_true(l1:unlock())
			local l2 = assert(d:lock(dir))
			l2:unlock()
			assert.is_true(d:delete(dir))
			remove_top(f)
		end)

		it("locks a path exclusively (LOCKED on a second handle)", function()
			local p = rpath("data")
			assert.is_true(d:put_content(p, "x"))
			local l1 = assert(d:lock(p))
			assert_error(d, "LOCKED", d:lock(p))
			-- another path is independent
			local other = rpath("other")
			assert.is_true(d:put_content(other, "y"))
			local l2 = assert(d:lock(other))
			assert.is_true(l1:unlock())
			assert.is_true(l1:unlock()) -- idempotent
			local l3 = assert(d:lock(p))
			l3:unlock()
			l2:unlock()
			assert.is_true(d:delete(p))
			remove_top(p)
			assert.is_true(d:delete(other))
			remove_top(p)
			remove_top(other)
		end)
	end)
end

describe("Lua binding of drivers", function()
	it("exports the constructors and error codes", function()
		assert.is_function(layerup.filesystem)
		assert.is_function(layerup.memory)
		assert.is_function(layerup.driver)
		assert.equal("PATH_NOT_FOUND", layerup.error_codes.PATH_NOT_FOUND)
		assert.equal("LOCKED", layerup.error_codes.LOCKED)
		assert.is_nil(layerup.error_codes.NOPE)
	end)

	it("builds error objects", function()
		local e = layerup.error("PATH_NOT_FOUND", "gone", "/x")
		assert.same({ code = "PATH_NOT_FOUND", message = "gone", path = "/x" }, e)
		assert.equal("PATH_NOT_FOUND: gone", tostring(e))
		assert.has_error(function() layerup.error("NOPE", "x") end)
	end)

	it("raises on bad argument types", function()
		local d = layerup.memory()
		assert.has_error(function() d:get_content(42 == 42 and {} or nil) end)
		assert.has_error(function() d:put_content("/a", nil) end)
		assert.has_error(function() d.get_content({}, "/a") end)
		assert.has_error(function() layerup.filesystem() end)
		assert.has_error(function() layerup.filesystem("/tmp/x", "fsync") end)
		assert.has_error(function() layerup.filesystem("/tmp/x", { fsync = "yes" }) end)
		local r = assert(d:put_content("/a", "abc") and d:reader("/a", 0))
		assert.has_error(function() r:read(0) end)
		assert.has_error(function() r:read("x") end)
		r:close()
		d:delete("/a")
	end)

	it("returns nil, err when a filesystem root cannot be created", function()
		local dir = util.tmpdir("fsroot")
		local f = assert(io.open(dir .. "/file", "w"))
		f:close()
		local d, err = layerup.filesystem(dir .. "/file/root")
		assert.is_nil(d)
		assert.is_table(err)
		assert.is_string(err.code)
		assert.truthy(err.message:find("filesystem", 1, true))
		-- a NUL byte would cut the root short: refused
		d, err = layerup.filesystem(dir .. "/x\0y")
		assert.is_nil(d)
		assert.equal("INVALID_PATH", err.code)
		util.rm_rf(dir)
	end)

	it("creates the filesystem root and honours fsync", function()
		local dir = util.tmpdir("fsroot")
		local d = assert(layerup.filesystem(dir .. "/a/b", { fsync = true }))
		assert.is_true(d:put_content("/x", "1"))
		assert.equal("1", util.read_file(dir .. "/a/b/x"))
		d:close()
		util.rm_rf(dir)
	end)

	it("closes a driver early and idempotently", function()
		local d = layerup.memory()
		assert.equal("inmemory", d.name)
		assert.is_true(d:close())
		assert.is_true(d:close())
		assert.has_error(function() return d.name end, "attempt to use a closed driver")
		assert.has_error(function() d:get_content("/a") end, "attempt to use a closed driver")
		assert.truthy(tostring(d):find("layerup.driver (closed): ", 1, true))
	end)

	it("keeps readers, writers and locks working after d:close()", function()
		local d = layerup.memory()
		assert.is_true(d:put_content("/a", "hello"))
		local r = assert(d:reader("/a", 1))
		local w = assert(d:writer("/b", false))
		local l = assert(d:lock("/a"))
		d:close()
		collectgarbage()
		collectgarbage()
		assert.equal("ello", r:read(10))
		assert.is_true(w:write("x"))
		assert.is_true(w:commit())
		assert.is_true(w:close())
		assert.is_true(l:unlock())
		r:close()
	end)

	it("closes readers; a closed reader raises", function()
		local d = layerup.memory()
		assert.is_true(d:put_content("/a", "abc"))
		local r = assert(d:reader("/a", 0))
		assert.truthy(tostring(r):find("layerup.reader (inmemory): ", 1, true))
		assert.is_true(r:close())
		assert.is_true(r:close())
		assert.truthy(tostring(r):find("layerup.reader (closed): ", 1, true))
		assert.has_error(function() r:read(1) end, "attempt to use a closed reader")
		vm.with_close(assert(d:reader("/a", 0)), function(r2)
			assert.equal("abc", r2:read(3))
		end)
		d:close()
	end)

	it("reads up to n bytes and defaults n", function()
		local d = layerup.memory()
		local data = util.random_bytes(200 * KiB)
		assert.is_true(d:put_content("/a", data))
		local r = assert(d:reader("/a", 0))
		assert.equal(64 * KiB, #r:read())
		assert.equal(data:sub(64 * KiB + 1, 64 * KiB + 100 * KiB), r:read(100 * KiB))
		assert.equal(data:sub(164 * KiB + 1), r:read(1e9))
		assert.is_nil(r:read(1))
		r:close()
		d:close()
	end)

	it("flushes a writer that is garbage-collected without close", function()
		for _, spec in ipairs(drivers) do
			local d, cleanup = spec.make()
			do
				local w = assert(d:writer("/gc", false))
				assert.is_true(w:write("abc"))
			end
			collectgarbage()
			collectgarbage()
			local w = assert(d:writer("/gc", true))
			assert.equal(3, w:size(), spec.label)
			assert.is_true(w:commit())
			assert.is_true(w:close())
			assert.equal("abc", d:get_content("/gc"))
			vm.with_close(assert(d:writer("/gc2", false)), function(w2)
				assert.is_true(w2:write("x"))
				assert.truthy(tostring(w2):find("layerup.writer (" .. d.name .. "): ", 1, true))
			end)
			local w3 = assert(d:writer("/gc2", true))
			assert.equal(1, w3:size(), spec.label)
			w3:close()
			d:close()
			if cleanup then
				cleanup()
			end
		end
	end)
end)

describe("layerup.driver(tbl)", function()
	local function complete(extra)
		local t = memdriver.new { name = "t" }
		for k, v in pairs(extra or {}) do
			t[k] = v
		end
		return t
	end

	it("refuses a table without the required functions", function()
		for _, fn in ipairs { "get_content", "put_content", "stat", "list",
			"move", "delete", "reader", "writer" } do
			local t = complete()
			t[fn] = nil
			assert.has_error(function() layerup.driver(t) end,
				"layerup.driver: " .. fn .. " must be a function")
		end
		assert.has_error(function() layerup.driver() end)
		assert.has_error(function() layerup.driver(complete { name = 5 }) end)
		assert.has_error(function() layerup.driver(complete { lock = function() end }) end,
			"layerup.driver: lock and unlock go together")
	end)

	it("accepts callable tables and defaults the name to lua", function()
		local t = complete()
		t.name = nil
		local get = t.get_content
		t.get_content = setmetatable({}, { __call = function(_, self, p)
			return get(self, p)
		end })
		local d = layerup.driver(t)
		assert.equal("lua", d.name)
		assert.is_true(d:put_content("/a", "x"))
		assert.equal("x", d:get_content("/a"))
	end)

	it("calls functions method-style with the contract's arguments", function()
		local seen = {}
		local t = complete()
		local orig = {}
		for _, fn in ipairs { "get_content", "put_content", "stat", "list",
			"move", "delete", "reader", "writer" } do
			orig[fn] = t[fn]
			t[fn] = function(self, ...)
				assert(self == t, "self is the table")
				seen[#seen + 1] = { fn, ... }
				return orig[fn](self, ...)
			end
		end
		local d = layerup.driver(t)
		d:put_content("/a/b", "xy")
		d:get_content("/a/b")
		d:stat("/a")
		d:list("/a")
		d:reader("/a/b", 1):close()
		d:writer("/a/c", true):close()
		d:move("/a/c", "/a/d")
		d:delete("/a")
		assert.same({
			{ "put_content", "/a/b", "xy" },
			{ "get_content", "/a/b" },
			{ "stat", "/a" },
			{ "list", "/a" },
			{ "reader", "/a/b", 1 },
			{ "writer", "/a/c", true },
			{ "move", "/a/c", "/a/d" },
			{ "delete", "/a" },
		}, seen)
	end)

	it("turns raised errors into IO with the message", function()
		local d = layerup.driver(complete { get_content = function() error("boom") end })
		local err = assert_error(d, "IO", d:get_content("/a"))
		assert.truthy(err.message:find("boom", 1, true))
		assert.equal("/a", err.path)

		d = layerup.driver(complete { stat = function() error({ code = "PATH_NOT_FOUND", message = "tbl" }) end })
		err = assert_error(d, "IO", d:stat("/a"))
		assert.truthy(err.message:find("tbl", 1, true))

		d = layerup.driver(complete { list = function() error(setmetatable({}, {})) end })
		assert_error(d, "IO", d:list("/"))
	end)

	it("turns returned errors into error objects", function()
		local d = layerup.driver(complete { get_content = function() return nil, "plain string" end })
		local err = assert_error(d, "IO", d:get_content("/a"))
		assert.equal("t: plain string", err.message)

		d = layerup.driver(complete { get_content = function()
			return nil, { code = "PATH_NOT_FOUND", message = "gone", transient = true }
		end })
		err = assert_error(d, "PATH_NOT_FOUND", d:get_content("/a"))
		assert.equal("t: gone", err.message) -- the name once, in front
		assert.is_true(err.transient)
		assert.equal("/a", err.path)

		d = layerup.driver(complete { get_content = function() return nil end })
		err = assert_error(d, "IO", d:get_content("/a"))
		assert.equal("t: get_content failed", err.message)

		d = layerup.driver(complete { delete = function() return false, { code = "NOPE" } end })
		assert_error(d, "IO", d:delete("/a"))

		-- an error object from another layerup driver passes through
		local inner = layerup.memory()
		d = layerup.driver(complete { get_content = function(_, p) return inner:get_content(p) end })
		err = assert_error(d, "PATH_NOT_FOUND", d:get_content("/zz"))
		assert.equal("t: inmemory: Path not found: /zz", err.message)
	end)

	it("rejects results of the wrong type", function()
		local d = layerup.driver(complete { get_content = function() return 42 end })
		assert_error(d, "IO", d:get_content("/a"))
		d = layerup.driver(complete { stat = function() return "big" end })
		assert_error(d, "IO", d:stat("/a"))
		d = layerup.driver(complete { stat = function() return { size = "big" } end })
		assert_error(d, "IO", d:stat("/a"))
		d = layerup.driver(complete { list = function() return { "/a", 7 } end })
		assert_error(d, "IO", d:list("/"))
		d = layerup.driver(complete { reader = function()
			return { read = function() return {} end }
		end })
		local r = assert(d:reader("/a", 0))
		assert_error(d, "IO", r:read(1))
		r:close() -- no close function on the object: fine
	end)

	it("converts stat times (seconds, integer or float, or mtime_ns)", function()
		local st = { size = 3, mtime = 1700000000, dir = false }
		local d = layerup.driver(complete { stat = function() return st end })
		assert.equal(1700000000 * 1000000000, d:stat("/a").mtime_ns)
		st = { size = 3, mtime = 1700000000.25 }
		assert.equal(1700000000250000000, d:stat("/a").mtime_ns)
		st = { size = 3, mtime_ns = 1700000000123456789 }
		local got = d:stat("/a")
		assert.equal(1700000000123456789, got.mtime_ns)
		assert.is_false(got.dir)
		assert.equal("/a", got.path)
	end)

	it("buffers what a Lua reader returns beyond n", function()
		local d = layerup.driver(complete { reader = function(_, _, off)
			local sent = false
			return { read = function()
				if sent then return nil end
				sent = true
				return ("0123456789"):sub(off + 1)
			end }
		end })
		local r = assert(d:reader("/a", 2))
		assert.equal("234", r:read(3))
		assert.equal("5", r:read(1))
		assert.equal("6789", r:read(100))
		assert.is_nil(r:read(1))
		r:close()
	end)

	it("reports reader and writer errors with the driver name", function()
		local t = complete()
		t.reader = function()
			return { read = function() return nil, { code = "IO", message = "disk on fire", transient = true } end }
		end
		t.writer = function()
			return {
				write = function() error("full") end,
				size = function() error("no size") end,
				commit = function() return nil, "nope" end,
				cancel = function() return true end,
				close = function() return nil, "flush failed" end,
			}
		end
		local d = layerup.driver(t)
		local r = assert(d:reader("/a", 0))
		local err = assert_error(d, "IO", r:read(1))
		assert.equal("t: disk on fire", err.message)
		assert.is_true(err.transient)
		r:close()
		local w = assert(d:writer("/a", false))
		err = assert_error(d, "IO", w:write("x"))
		assert.truthy(err.message:find("full", 1, true))
		assert_error(d, "IO", w:commit())
		assert_error(d, "IO", w:size())
		err = assert_error(d, "IO", w:close())
		assert.equal("t: flush failed", err.message)
		assert.is_true(w:close()) -- closed anyway
	end)

	it("calls the table's lock and unlock when it has them", function()
		local held, log = {}, {}
		local d = layerup.driver(complete {
			lock = function(_, p)
				if held[p] then
					return nil, { code = "LOCKED", message = "busy: " .. p }
				end
				local token = { path = p }
				held[p] = token
				log[#log + 1] = "lock " .. p
				return token
			end,
			unlock = function(_, token)
				assert(held[token.path] == token, "unlock gets the token back")
				held[token.path] = nil
				log[#log + 1] = "unlock " .. token.path
			end,
		})
		assert.is_true(d:put_content("/a", "x"))
		local l = assert(d:lock("/a"))
		local err = assert_error(d, "LOCKED", d:lock("/a"))
		assert.equal("t: busy: /a", err.message)
		l:unlock()
		assert.same({ "lock /a", "unlock /a" }, log)
		d:close()
	end)

	it("never lets a yield escape into C", function()
		local d = layerup.driver(complete { get_content = function() coroutine.yield() end })
		local co = coroutine.wrap(function() return d:get_content("/a") end)
		local ok, err = co()
		assert.is_nil(ok)
		assert.equal("IO", err.code)
		assert.truthy(err.message:find("yield", 1, true))
	end)

	it("allows nested calls into the same driver", function()
		local t = complete()
		local d
		local get = t.get_content
		t.get_content = function(self, p)
			local st = assert(d:stat(p)) -- re-enters this driver
			return get(self, p) .. ":" .. st.size
		end
		d = layerup.driver(t)
		assert.is_true(d:put_content("/a", "abc"))
		assert.equal("abc:3", d:get_content("/a"))
		-- the dedicated thread's stack is balanced after many calls
		for _ = 1, 1000 do
			d:get_content("/a")
			d:get_content("/missing")
		end
		assert.equal("abc:3", d:get_content("/a"))
	end)

	it("survives a Lua driver closing its own last handle mid-call", function()
		local d
		local t = complete()
		t.get_content = function()
			d:close()
			collectgarbage()
			collectgarbage()
			return "still here"
		end
		d = layerup.driver(t)
		assert.equal("still here", d:get_content("/a"))
		assert.has_error(function() d:get_content("/a") end, "attempt to use a closed driver")
	end)

	it("keeps the C driver and the table alive while handles need them", function()
		local d = layerup.driver(memdriver.new())
		assert.is_true(d:put_content("/a", "hello"))
		local r = assert(d:reader("/a", 0))
		local w = assert(d:writer("/b", false))
		d:close()
		d = nil -- luacheck: ignore
		collectgarbage()
		collectgarbage()
		assert.equal("hello", r:read(10))
		assert.is_true(w:write("x"))
		assert.is_true(w:close())
		r:close()
	end)
end)

describe("helpers.counting", function()
	for _, base in ipairs { "lua", "memory" } do
		it("counts calls and bytes per path pattern over a " .. base .. " base", function()
			local inner = base == "lua" and memdriver.new() or layerup.memory()
			local tbl, stats = counting.new(inner, { "/x/", "/y/" })
			local d = layerup.driver(tbl)
			assert.equal("counting", d.name)
			assert.is_true(d:put_content("/x/a", "12345"))
			assert.is_true(d:put_content("/y/b", "123"))
			assert.equal("12345", d:get_content("/x/a"))
			local r = assert(d:reader("/y/b", 1))
			assert.equal("23", r:read(10))
			r:close()
			assert.equal(2, stats.calls.put_content)
			assert.equal(1, stats.calls.get_content)
			assert.equal(5, stats.got["/x/"])
			assert.equal(0, stats.got["/y/"])
			assert.equal(2, stats.read["/y/"])
			assert.equal(2, stats.read_total)

			local err = assert_error(d, "PATH_NOT_FOUND", d:stat("/x/zz"))
			assert.equal("/x/zz", err.path)

			local w = assert(d:writer("/x/c", false))
			assert.is_true(w:write("abc"))
			assert.is_true(w:commit())
			assert.is_true(w:close())
			assert.equal("abc", d:get_content("/x/c"))

			assert.is_true(d:put_content("/x/lk", "1"))
			local l = assert(d:lock("/x/lk"))
			assert_error(d, "LOCKED", d:lock("/x/lk"))
			l:unlock()
			assert.truthy(d:lock("/x/lk")):unlock()

			stats.reset()
			assert.equal(0, stats.total_calls())
			assert.equal(0, stats.read_total)
			d:close()
		end)
	end
end)
