-- spec/host_nginx_spec.lua - the nginx adapter's chunked-body de-chunker
-- (layerup.host.nginx) against a fake cosocket: valid framing in any
-- split, extensions and trailers, and every framing error an attacker can
-- send.  Runs under lua5.4 and luajit without nginx.

local host = require "layerup.host.nginx"
local util = require "helpers.util"
local dechunk = host._chunked_reader

-- A cosocket over a byte string, delivering at most `step` bytes per
-- read when step is set; "*l" reads a line (CR stripped, as ngx does).
-- At the end: nil, "closed", partial (like a client that went away).
local function fake_socket(data)
	local pos = 1
	local sock = {}
	function sock.receive(_, pat)
		if pat == "*l" then
			local nl = data:find("\n", pos, true)
			if not nl then
				local partial = data:sub(pos)
				pos = #data + 1
				return nil, "closed", partial
			end
			local line = data:sub(pos, nl - 1):gsub("\r$", "")
			pos = nl + 1
			return line
		end
		local n = pat
		if pos + n - 1 > #data then
			local partial = data:sub(pos)
			pos = #data + 1
			return nil, "closed", partial
		end
		local s = data:sub(pos, pos + n - 1)
		pos = pos + n
		return s
	end
	return sock
end

-- Drain a reader: body bytes kept (pieces + partial on error), error.
local function drain(data, max)
	local read = dechunk(fake_socket(data))
	local out = {}
	for _ = 1, 100000 do
		local piece, err, partial = read(max)
		if piece == nil then
			if partial then out[#out + 1] = partial end
			return table.concat(out), err
		end
		out[#out + 1] = piece
	end
	error("reader never ended")
end

local chunked = util.chunked

describe("layerup.host.nginx chunked reader", function()
	it("de-chunks bodies in any piece size", function()
		local parts = { "hello", (" "):rep(1000), ("x"):rep(70000), "!" }
		local body = table.concat(parts)
		for _, max in ipairs { 1, 7, 4096, 65536 } do
			local got, err = drain(chunked(parts), max)
			assert.is_nil(err)
			assert.equal(body, got)
		end
	end)

	it("accepts upper-case hex, chunk extensions and trailers", function()
		local got, err = drain("A;name=value\r\n0123456789\r\n0\r\nX-Trailer: 1\r\nY: 2\r\n\r\n")
		assert.is_nil(err)
		assert.equal("0123456789", got)
	end)

	it("ends an empty body at the last chunk", function()
		local got, err = drain("0\r\n\r\n")
		assert.is_nil(err)
		assert.equal("", got)
	end)

	it("refuses a bad size line, keeping the chunks before it", function()
		for _, bad in ipairs { "zz\r\n", "-1\r\n", "\r\n", "0x10\r\n", "1234567890abc\r\n", " \r\n" } do
			local got, err = drain("5\r\nhello\r\n" .. bad .. "more\r\n0\r\n\r\n")
			assert.equal("hello", got, bad)
			assert.truthy(err and err:find("framing", 1, true), bad)
		end
	end)

	it("refuses data longer than its chunk size (no CRLF after it)", function()
		local got, err = drain("3\r\nabcXX\r\n0\r\n\r\n")
		assert.equal("abc", got)
		assert.truthy(err:find("missing CRLF", 1, true))
	end)

	it("keeps the bytes of a body cut off mid-chunk", function()
		local got, err = drain("10\r\n0123456")
		assert.equal("0123456", got)
		assert.equal("closed", err)
		got, err = drain("5\r\nhello\r\n")
		assert.equal("hello", got)
		assert.equal("closed", err)
	end)

	it("bounds the trailers", function()
		local got, err = drain("1\r\na\r\n0\r\n" .. ("T: x\r\n"):rep(200) .. "\r\n")
		assert.equal("a", got)
		assert.truthy(err:find("too many trailers", 1, true))
	end)

	it("never reads past the terminating chunk", function()
		local sock = fake_socket("1\r\na\r\n0\r\n\r\nGET / HTTP/1.1\r\n")
		local read = dechunk(sock)
		assert.equal("a", read())
		assert.is_nil(read())
		assert.is_nil(read())
		assert.equal("GET / HTTP/1.1", sock:receive("*l"))
	end)
end)
