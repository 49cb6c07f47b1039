-- Unit specs for layerup.log (no core needed).

local cjson = require "cjson"
local log = require "layerup.log"

local function collector()
	local lines = {}
	return function(line)
		lines[#lines + 1] = line
	end, lines
end

local function fixed_clock()
	return "2024-01-02T03:04:05Z"
end

describe("layerup.log.json", function()
	it("writes one JSON object per event with ts, event and the fields", function()
		local out, lines = collector()
		local sink = log.json(out, { clock = fixed_clock })
		sink("upload.finish", { repo = "a/b", size = 3, dedup = false, digest = "sha256:00" })
		sink("upload.start", nil)
		assert.are.equal(2, #lines)
		assert.are.same({
			ts = "2024-01-02T03:04:05Z", event = "upload.finish",
			repo = "a/b", size = 3, dedup = false, digest = "sha256:00",
		}, cjson.decode(lines[1]))
		assert.are.same({ ts = "2024-01-02T03:04:05Z", event = "upload.start" }, cjson.decode(lines[2]))
		assert.is_nil(lines[1]:find("\n", 1, true))
	end)

	it("puts ts and event first and sorts the fields", function()
		local out, lines = collector()
		log.json(out, { clock = function() return 1 end })("e", { b = 1, a = 2 })
		assert.are.equal('{"ts":1,"event":"e","a":2,"b":1}', lines[1])
	end)

	it("uses an RFC 3339 UTC timestamp with milliseconds by default", function()
		local out, lines = collector()
		log.json(out)("e", {})
		assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$", cjson.decode(lines[1]).ts)
		log.logfmt(out)("e", {})
		assert.matches("^ts=%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ ", lines[2])
	end)

	it("writes integer milliseconds and unescaped slashes", function()
		local out, lines = collector()
		log.json(out, { clock = fixed_clock })("upload.finish", { duration_ms = 12.6, repo = "a/b", p = "x\\/y" })
		assert.are.equal('{"ts":"2024-01-02T03:04:05Z","event":"upload.finish","duration_ms":13,"p":"x\\\\/y","repo":"a/b"}', lines[1])
		assert.are.equal("x\\/y", cjson.decode(lines[1]).p)
	end)

	it("escapes awkward strings and survives unencodable values", function()
		local out, lines = collector()
		local err = setmetatable({ code = "IO", message = "x" }, { __tostring = function() return "IO: x" end })
		log.json(out, { clock = fixed_clock })("e", {
			msg = 'quote " backslash \\ newline \n tab \t',
			fn = print,
			err = err,
			event = "shadowed",
		})
		local t = cjson.decode(lines[1])
		assert.are.equal('quote " backslash \\ newline \n tab \t', t.msg)
		assert.matches("^function", t.fn)
		assert.are.same({ code = "IO", message = "x" }, t.err)
		assert.are.equal("e", t.event)
		assert.are.equal("shadowed", t["field.event"])
	end)

	it("writes to a Lua file handle", function()
		local path = os.tmpname()
		local f = assert(io.open(path, "w"))
		log.json(f, { clock = fixed_clock })("a.b", { n = 1 })
		f:close()
		local text = assert(io.open(path)):read("a")
		os.remove(path)
		assert.are.equal('{"ts":"2024-01-02T03:04:05Z","event":"a.b","n":1}\n', text)
	end)

	it("never raises, even when the output does", function()
		local sink = log.json(function() error("disk full") end)
		assert.has_no_error(function() sink("e", { a = 1 }) end)
		local f = assert(io.tmpfile())
		local sink2 = log.json(f)
		f:close()
		assert.has_no_error(function() sink2("e", {}) end)
	end)

	it("raises on misuse at construction", function()
		assert.has_error(function() log.json(42) end)
	end)
end)

describe("layerup.log.logfmt", function()
	it("writes key=value pairs, quoting only when needed", function()
		local out, lines = collector()
		log.logfmt(out, { clock = fixed_clock })("upload.finish", {
			repo = "a/b", size = 3, msg = "quoted when needed", empty = "", ok = true,
			q = 'say "hi"\n',
		})
		assert.are.equal('ts=2024-01-02T03:04:05Z event=upload.finish empty="" msg="quoted when needed" '
			.. 'ok=true q="say \\"hi\\"\\n" repo=a/b size=3', lines[1])
	end)

	it("prints floats short", function()
		local out, lines = collector()
		log.logfmt(out, { clock = fixed_clock })("e", { delay = 0.0088134282008754, n = 2.0 })
		assert.are.equal("ts=2024-01-02T03:04:05Z event=e delay=0.00881343 n=2", lines[1])
	end)

	it("quotes values holding '=' and renders tables as JSON", function()
		local out, lines = collector()
		log.logfmt(out, { clock = fixed_clock })("e", { a = "x=y", t = { 1, 2 } })
		assert.are.equal('ts=2024-01-02T03:04:05Z event=e a="x=y" t=[1,2]', lines[1])
	end)
end)

describe("layerup.log.memory", function()
	it("records events with a copy of their fields", function()
		local sink, records = log.memory()
		local fields = { repo = "a/b" }
		sink("upload.start", fields)
		fields.repo = "changed"
		sink("finish.retry", { attempt = 1 })
		sink("finish.retry", { attempt = 2 })
		assert.are.equal(3, #records)
		assert.are.equal("upload.start", records[1].event)
		assert.are.equal("a/b", records[1].fields.repo)
		assert.are.equal(2, records:count("finish.retry"))
		assert.are.equal(1, records:find("finish.retry").fields.attempt)
		assert.is_nil(records:find("nothing"))
	end)
end)

describe("layerup.log.fanout", function()
	it("calls every sink even when one raises", function()
		local a, ra = log.memory()
		local b, rb = log.memory()
		local sink = log.fanout(a, function() error("boom") end, nil, b)
		assert.has_no_error(function() sink("e", { x = 1 }) end)
		assert.are.equal(1, #ra)
		assert.are.equal(1, #rb)
	end)
end)

describe("layerup.log.filter", function()
	local function run(which, events)
		local sink, records = log.memory()
		local f = log.filter(which, sink)
		for _, e in ipairs(events) do
			f(e, {})
		end
		local got = {}
		for i, r in ipairs(records) do
			got[i] = r.event
		end
		return got
	end
	local events = { "upload.start", "upload.finish", "finish.retry", "blob.dedup" }

	it("passes events matching a Lua pattern", function()
		assert.are.same({ "upload.start", "upload.finish" }, run("^upload%.", events))
	end)

	it("passes events in a list or set", function()
		assert.are.same({ "upload.finish", "finish.retry" }, run({ "finish.retry", "upload.finish" }, events))
		assert.are.same({ "blob.dedup" }, run({ ["blob.dedup"] = true, ["upload.start"] = false }, events))
	end)

	it("passes events accepted by a predicate, ignoring a raising one", function()
		assert.are.same({ "blob.dedup" }, run(function(e) return e:find("blob") end, events))
		assert.are.same({}, run(function() error("bad predicate") end, events))
	end)

	it("raises on misuse", function()
		assert.has_error(function() log.filter(42, log.null) end)
	end)
end)
