-- Specs for the driver middleware (trace, faults, lag).  Most run on a
-- small driver written in Lua with {raw = true}, so they need no core; the
-- last block wraps the core's memory driver through layerup.driver.

local mw = require "layerup.middleware"
local trace = require "layerup.middleware.trace"
local faults = require "layerup.middleware.faults"
local lag = require "layerup.middleware.lag"

-- A minimal in-memory driver table (the Lua driver protocol).
local function table_driver()
	local files = {}
	local function nf(path)
		return nil, { code = "PATH_NOT_FOUND", message = "no such path: " .. path }
	end
	local d = { name = "luamem", files = files }
	function d:get_content(path)
		if files[path] == nil then return nf(path) end
		return files[path]
	end
	function d:put_content(path, data)
		files[path] = data
		return true
	end
	function d:stat(path)
		if files[path] then
			return { path = path, size = #files[path], mtime = 0, dir = false }
		end
		for p in pairs(files) do
			if p:sub(1, #path + 1) == path .. "/" then
				return { path = path, size = 0, mtime = 0, dir = true }
			end
		end
		return nf(path)
	end
	function d:list(path)
		local seen, out = {}, {}
		local prefix = path == "/" and "/" or path .. "/"
		for p in pairs(files) do
			if p:sub(1, #prefix) == prefix then
				local child = prefix .. p:sub(#prefix + 1):match("^[^/]+")
				if not seen[child] then
					seen[child] = true
					out[#out + 1] = child
				end
			end
		end
		if #out == 0 then return nf(path) end
		table.sort(out)
		return out
	end
	function d:move(src, dst)
		if files[src] == nil then return nf(src) end
		files[dst], files[src] = files[src], nil
		return true
	end
	function d:delete(path)
		local found = false
		for p in pairs(files) do
			if p == path or p:sub(1, #path + 1) == path .. "/" then
				files[p] = nil
				found = true
			end
		end
		if not found then return nf(path) end
		return true
	end
	function d:reader(path, offset)
		if files[path] == nil then return nf(path) end
		local pos = offset + 1
		return {
			read = function(_, n)
				local s = files[path]:sub(pos, pos + n - 1)
				pos = pos + #s
				if s == "" then return nil end
				return s
			end,
			close = function() return true end,
		}
	end
	function d:writer(path, append)
		if not append or files[path] == nil then files[path] = "" end
		return {
			write = function(_, s)
				files[path] = files[path] .. s
				return true
			end,
			size = function() return #files[path] end,
			commit = function() return true end,
			cancel = function() files[path] = nil; return true end,
			close = function() return true end,
		}
	end
	return d
end

describe("layerup.middleware.wrap", function()
	it("forwards every op and lets around change arguments and results", function()
		local inner = table_driver()
		local seen = {}
		local d = mw.wrap(inner, function(op, path, call, ...)
			seen[#seen + 1] = op .. " " .. tostring(path)
			if op == "put_content" then
				local p, data = ...
				return call(p, data:upper())
			end
			return call(...)
		end, { raw = true, name = "upper" })
		assert.are.equal("upper", d.name)
		assert.is_true(d:put_content("/a/b", "hello"))
		assert.are.equal("HELLO", d:get_content("/a/b"))
		local w = d:writer("/a/c", false)
		w:write("xy")
		assert.are.equal(2, w:size())
		w:commit()
		w:close()
		local r = d:reader("/a/c", 1)
		assert.are.equal("y", r:read(10))
		assert.is_nil(r:read(10))
		r:close()
		assert.are.same({ "/a/b", "/a/c" }, d:list("/a"))
		assert.is_true(d:move("/a/c", "/a/d"))
		assert.is_true(d:delete("/a"))
		local st, err = d:stat("/a")
		assert.is_nil(st)
		assert.are.equal("PATH_NOT_FOUND", err.code)
		assert.are.same({
			"put_content /a/b", "get_content /a/b", "writer /a/c", "writer.write /a/c",
			"writer.size /a/c", "writer.commit /a/c", "writer.close /a/c", "reader /a/c",
			"reader.read /a/c", "reader.read /a/c", "reader.close /a/c", "list /a",
			"move /a/c", "delete /a", "stat /a",
		}, seen)
	end)
end)

describe("layerup.middleware.trace", function()
	it("logs each op with its path, bytes, code and duration", function()
		local events = {}
		local d = trace(table_driver(), function(event, fields)
			events[#events + 1] = { event = event, fields = fields }
		end, { raw = true })
		d:put_content("/x", "abc")
		assert.are.equal("abc", d:get_content("/x"))
		assert.is_nil(d:get_content("/missing"))
		d:move("/x", "/y")
		local r = d:reader("/y", 0)
		r:read(2)
		r:read(2)
		r:read(2)
		local w = d:writer("/z", false)
		w:write("hello")
		w:commit()

		local f = {}
		for i, e in ipairs(events) do
			assert.are.equal("driver.op", e.event)
			assert.is_number(e.fields.duration_ms)
			assert.is_true(e.fields.duration_ms >= 0)
			f[i] = e.fields
		end
		assert.are.same({ "put_content", "/x", 3, "OK" }, { f[1].op, f[1].path, f[1].bytes, f[1].code })
		assert.are.same({ "get_content", 3, "OK" }, { f[2].op, f[2].bytes, f[2].code })
		assert.are.same({ "get_content", "/missing", "PATH_NOT_FOUND" }, { f[3].op, f[3].path, f[3].code })
		assert.is_nil(f[3].bytes)
		assert.are.same({ "move", "/x", "/y" }, { f[4].op, f[4].path, f[4].to })
		assert.are.equal("reader", f[5].op)
		assert.are.same({ "reader.read", 2 }, { f[6].op, f[6].bytes })
		assert.are.same({ "reader.read", 1 }, { f[7].op, f[7].bytes })
		assert.are.same({ "reader.read", true, "OK" }, { f[8].op, f[8].eof, f[8].code })
		assert.are.same({ "writer.write", "/z", 5 }, { f[10].op, f[10].path, f[10].bytes })
		assert.are.same({ "writer.commit", "OK" }, { f[11].op, f[11].code })
		assert.are.equal(11, #events)
	end)

	it("keeps working when the log function raises", function()
		local d = trace(table_driver(), function() error("log down") end, { raw = true })
		assert.is_true(d:put_content("/x", "1"))
		assert.are.equal("1", d:get_content("/x"))
	end)
end)

describe("layerup.middleware.faults", function()
	it("fails exactly the nth call of an op, without forwarding it", function()
		local inner = table_driver()
		local d, state = faults(inner, { op = "put_content", nth = 2, transient = true }, { raw = true })
		assert.is_true(d:put_content("/1", "a"))
		local ok, err = d:put_content("/2", "b")
		assert.is_nil(ok)
		assert.are.equal("IO", err.code)
		assert.is_true(err.transient)
		assert.matches("transient", tostring(err))
		assert.is_nil(inner.files["/2"])
		assert.is_true(d:put_content("/2", "b"))
		assert.are.equal(1, state.failures)
		assert.are.equal(3, state.specs[1].calls)
	end)

	it("fails several calls in a row with times, permanent by default", function()
		local d = faults(table_driver(), { op = "writer.write", nth = 2, times = 2, code = "DENIED" }, { raw = true })
		local w = d:writer("/w", false)
		local results = {}
		for i = 1, 4 do
			local ok, err = w:write("x")
			results[i] = ok and "ok" or (err.code .. (err.transient and "!t" or "!p"))
		end
		assert.are.same({ "ok", "DENIED!p", "DENIED!p", "ok" }, results)
		assert.are.equal(2, w:size())
	end)

	it("counts only calls on matching paths", function()
		local d = faults(table_driver(), { op = "get_content", nth = 1, path = "/data$" }, { raw = true })
		d:put_content("/u/data", "1")
		d:put_content("/u/startedat", "2")
		assert.are.equal("2", d:get_content("/u/startedat"))
		assert.is_nil(d:get_content("/u/data"))
		assert.are.equal("1", d:get_content("/u/data"))
	end)

	it("fails with a probability, reproducibly for a seed", function()
		local function pattern(seed)
			local d = faults(table_driver(), { op = "put_content", p = 0.1, seed = seed }, { raw = true })
			local out = {}
			for i = 1, 1000 do
				out[i] = d:put_content("/p", "x") and "." or "F"
			end
			return table.concat(out)
		end
		local a = pattern(42)
		assert.are.equal(a, pattern(42))
		assert.are_not.equal(a, pattern(7))
		local _, fails = a:gsub("F", "")
		assert.is_true(fails > 50 and fails < 150, tostring(fails))
	end)

	it("leaves a short write behind with partial = true", function()
		local inner = table_driver()
		local d = faults(inner, { op = "writer.write", nth = 2, partial = true, transient = true }, { raw = true })
		local w = d:writer("/w", false)
		assert.is_true(w:write("abcd"))
		assert.is_nil(w:write("efgh"))
		assert.are.equal("abcdef", inner.files["/w"])
		assert.are.equal(6, w:size())
	end)

	it("injects into reader.read and writer.commit", function()
		local d = faults(table_driver(), {
			{ op = "reader.read", nth = 1 },
			{ op = "writer.commit", nth = 1, transient = true },
		}, { raw = true })
		local w = d:writer("/f", false)
		w:write("data")
		local ok, err = w:commit()
		assert.is_nil(ok)
		assert.is_true(err.transient)
		assert.is_true(w:commit())
		local r = d:reader("/f", 0)
		assert.is_nil(r:read(4))
		assert.are.equal("data", r:read(4))
	end)

	it("raises on a spec without op or trigger", function()
		assert.has_error(function() faults(table_driver(), { nth = 1 }, { raw = true }) end)
		assert.has_error(function() faults(table_driver(), { op = "stat" }, { raw = true }) end)
	end)
end)

describe("layerup.middleware.lag", function()
	it("hides a new path from the next n reads, then shows it", function()
		local d, state = lag(table_driver(), 2, { raw = true })
		d:put_content("/a/x", "1")
		local v, err = d:get_content("/a/x")
		assert.is_nil(v)
		assert.are.equal("PATH_NOT_FOUND", err.code)
		assert.is_nil(d:stat("/a/x"))
		assert.are.equal("1", d:get_content("/a/x"))
		assert.are.equal(1, d:stat("/a/x").size)
		assert.are.equal(2, state.hidden)
	end)

	it("hides new children from list and readers", function()
		local d = lag(table_driver(), 1, { raw = true })
		d:put_content("/a/old", "o")
		d:get_content("/a/old") -- uses up the lag of /a/old
		d:put_content("/a/new", "n")
		assert.are.same({ "/a/old" }, d:list("/a"))
		assert.are.same({ "/a/new", "/a/old" }, d:list("/a"))
		d:put_content("/b", "z")
		assert.is_nil(d:reader("/b", 0))
		assert.are.equal("z", d:reader("/b", 0):read(5))
	end)

	it("lags committed writers and move destinations, forgets deleted paths", function()
		local d, state = lag(table_driver(), 1, { raw = true })
		local w = d:writer("/u/data", false)
		w:write("abc")
		assert.are.equal("abc", d:get_content("/u/data")) -- not committed yet: not lagged
		w:commit()
		w:close()
		assert.is_not_nil(state.pending["/u/data"])
		assert.is_true(d:move("/u/data", "/blobs/x"))
		assert.is_nil(state.pending["/u/data"])
		assert.is_nil(d:stat("/blobs/x"))
		assert.are.equal(3, d:stat("/blobs/x").size)
		d:put_content("/t/1", "x")
		d:delete("/t")
		assert.is_nil(state.pending["/t/1"])
	end)

	it("with n = 0 changes nothing", function()
		local d = lag(table_driver(), 0, { raw = true })
		d:put_content("/x", "1")
		assert.are.equal("1", d:get_content("/x"))
	end)
end)

describe("middleware on a core driver", function()
	local layerup = require "layerup"

	it("wraps a driver userdata into a driver userdata", function()
		local events = {}
		local inner = layerup.memory()
		local d = trace(inner, function(_, f) events[#events + 1] = f.op .. ":" .. f.code end)
		assert.are.equal("userdata", type(d))
		assert.is_truthy(d:put_content("/a/b", "xyz"))
		assert.are.equal("xyz", d:get_content("/a/b"))
		assert.are.equal("xyz", inner:get_content("/a/b"))
		local w = assert(d:writer("/a/c", false))
		assert.is_truthy(w:write("12345"))
		assert.is_truthy(w:commit())
		w:close()
		local r = assert(d:reader("/a/c", 2))
		assert.are.equal("345", r:read(10))
		r:close()
		local _, err = d:get_content("/nope")
		assert.are.equal("PATH_NOT_FOUND", err.code)
		assert.is_truthy(events[1]:find("^put_content:OK"))
		local joined = table.concat(events, " ")
		assert.matches("writer.write:OK", joined, 1, true)
		assert.matches("reader.read:OK", joined, 1, true)
		assert.matches("get_content:PATH_NOT_FOUND", joined, 1, true)
	end)
end)
