-- upload:write_chunked(raw): the C de-chunker (src/core/dechunk.c) that the
-- nginx host feeds with raw bytes of a `Transfer-Encoding: chunked` body.
-- The same framing cases as the Lua reader (spec/host_nginx_spec.lua), on a
-- real store, with the raw bytes split at every size an attacker or a slow
-- network can choose; the upload keeps exactly the payload before an error.
local layerup = require "layerup"
local util = require "helpers.util"

local chunked = util.chunked

describe("upload:write_chunked", function()
	local dir, store

	before_each(function()
		dir = util.tmpdir("wchunk")
		store = assert(layerup.open(dir))
	end)

	after_each(function()
		store:close()
		util.rm_rf(dir)
	end)

	-- Feed raw in pieces of step bytes: the payload kept (checked through
	-- the upload's size and a finish with its digest), done, error (the
	-- decoder stops at the end of the body or at an error).
	local n = 0
	local function feed(raw, step, expected)
		n = n + 1
		local u = assert(store:start("w/c" .. n))
		local done, err
		local pos = 1
		while pos <= #raw do
			local piece = raw:sub(pos, pos + step - 1)
			pos = pos + step
			local ok, ferr = u:write_chunked(piece)
			assert(ok ~= nil, tostring(ferr))
			if ok then done = true break end
			if ferr then err = ferr break end
		end
		if expected then
			assert.equal(#expected, u:size())
			local info, ferr = u:finish(util.digest(expected))
			assert(info, tostring(ferr))
		else
			u:cancel()
		end
		return done, err
	end

	it("de-chunks bodies split at any size, large chunks hashed on the worker", function()
		local parts = { "hello", (" "):rep(1000), util.random_bytes(70000), "!", util.random_bytes(300000) }
		local body = table.concat(parts)
		local raw = chunked(parts)
		for _, step in ipairs { 1, 2, 3, 7, 4096, 65536, 65537, #raw } do
			local done, err = feed(raw, step, body)
			assert.is_nil(err, step)
			assert.is_true(done, step)
		end
	end)

	it("gives the digest of the payload", function()
		local parts = { util.random_bytes(200000), util.random_bytes(100), util.random_bytes(65536) }
		local u = assert(store:start("w/d"))
		local raw = chunked(parts)
		for pos = 1, #raw, 10000 do
			local ok = u:write_chunked(raw:sub(pos, pos + 9999))
			collectgarbage() -- the anchored piece must survive its hash
			if ok then break end
		end
		local info = assert(u:finish(util.digest(table.concat(parts))))
		assert.equal(200000 + 100 + 65536, info.size)
	end)

	it("accepts upper-case hex, chunk extensions, blanks, bare LF lines and trailers", function()
		for _, step in ipairs { 1, 5, 100 } do
			local done, err = feed("A ;name=value\r\n0123456789\r\n0\r\nX-Trailer: 1\r\nY: 2\r\n\r\n", step,
				"0123456789")
			assert.is_nil(err)
			assert.is_true(done)
			done = feed("3\nabc\r\n0\n\n", step, "abc")
			assert.is_true(done)
		end
	end)

	it("ends an empty body at the last chunk and ignores what follows it", function()
		local done = feed("0\r\n\r\n", 1, "")
		assert.is_true(done)
		local u = assert(store:start("w/e"))
		assert.is_true(u:write_chunked("1\r\na\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n"))
		assert.is_true(u:write_chunked("more after the end"))
		assert.equal(1, u:size())
		u:cancel()
	end)

	it("refuses a bad size line, keeping the chunks before it", function()
		for _, bad in ipairs { "zz\r\n", "-1\r\n", "\r\n", "0x10\r\n", "1234567890abc\r\n", " \r\n",
			"5 x\r\n", "5\rx", "+5\r\n" } do
			for _, step in ipairs { 1, 4, 1000 } do
				local done, err = feed("5\r\nhello\r\n" .. bad .. "more\r\n0\r\n\r\n", step, "hello")
				assert.is_nil(done, bad)
				assert.truthy(err and err:find("framing", 1, true), bad)
			end
		end
	end)

	it("refuses data longer than its chunk size (no CRLF after it)", function()
		local done, err = feed("3\r\nabcXX\r\n0\r\n\r\n", 2, "abc")
		assert.is_nil(done)
		assert.truthy(err:find("missing CRLF", 1, true))
	end)

	it("keeps the bytes of a body cut off mid-chunk", function()
		local done, err = feed("10\r\n0123456", 3, "0123456")
		assert.is_nil(done)
		assert.is_nil(err)
	end)

	it("bounds the trailers and the line length", function()
		local done, err = feed("1\r\na\r\n0\r\n" .. ("T: x\r\n"):rep(200) .. "\r\n", 64, "a")
		assert.is_nil(done)
		assert.truthy(err:find("too many trailers", 1, true))
		done, err = feed("1;" .. ("e"):rep(5000) .. "\r\na\r\n0\r\n\r\n", 1000, "")
		assert.is_nil(done)
		assert.truthy(err:find("line too long", 1, true))
		done, err = feed("1\r\na\r\n0\r\nT: " .. ("x"):rep(5000) .. "\r\n\r\n", 1000, "a")
		assert.is_nil(done)
		assert.truthy(err:find("line too long", 1, true))
	end)

	it("refuses sizes of more than 12 hex digits, accepts 12", function()
		local done, err = feed("1000000000000\r\nx", 100, "")
		assert.is_nil(done)
		assert.truthy(err:find("too large", 1, true))
		local u = assert(store:start("w/big"))
		assert.is_false(u:write_chunked("000000000001\r\nz"))
		assert.equal(1, u:size())
		u:cancel()
	end)

	it("stops at the handle's cap (set_max_size): the chunks before it kept, at most the cap", function()
		local u = assert(store:start("w/cap"))
		assert.is_true(u:set_max_size(10))
		local ok, err = u:write_chunked("4\r\nabcd\r\n4\r\nefgh\r\n4\r\nijkl\r\n0\r\n\r\n")
		assert.is_nil(ok)
		assert.equal("SIZE_INVALID", err.code)
		assert.truthy(err.message:find("limit of 10 bytes", 1, true))
		assert.equal(8, u:size())
		local uuid = u.uuid
		assert(u:close())
		-- the cap is the handle's: a resumed one has none until it sets it
		u = assert(store:resume("w/cap", uuid))
		assert(u:set_max_size(10))
		assert.is_true(u:write_chunked("2\r\nij\r\n0\r\n\r\n")) -- exactly 10
		assert.equal(10, u:size())
		assert.is_nil(u:write("k"))
		assert(u:set_max_size(nil))
		assert.equal(11, u:write("k"))
		for _, bad in ipairs { -1, 0 / 0, 1.5, "10", math.huge } do
			assert.has_error(function() u:set_max_size(bad) end)
		end
		assert(u:finish(util.digest("abcdefghijk")))
		assert.has_error(function() u:set_max_size(1) end)
	end)

	it("reports a write failure as nil, err and raises on misuse", function()
		local small = assert(layerup.open(dir, { max_size = 4 }))
		local u = assert(small:start("w/m"))
		local ok, err = u:write_chunked("8\r\n12345678\r\n0\r\n\r\n")
		assert.is_nil(ok)
		assert.equal("SIZE_INVALID", err.code)
		u:cancel()
		small:close()
		u = assert(store:start("w/x"))
		assert.has_error(function() u:write_chunked({}) end)
		u:close()
		assert.has_error(function() u:write_chunked("0\r\n\r\n") end)
	end)
end)
