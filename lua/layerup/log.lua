-- layerup.log: log sinks, i.e. functions log(event, fields) that the core
-- calls with dotted event names ("upload.finish", "finish.retry", ...).
-- Every sink built here swallows its own errors: a full disk or a broken
-- pipe in logging must never fail an upload.

local cjson = require "cjson"

local M = {}

-- Our own cjson instance: configuring it does not change the global one.
local json = cjson.new()
json.encode_invalid_numbers(true)
json.encode_sparse_array(true)

local function now_utc()
	return os.date("!%Y-%m-%dT%H:%M:%SZ")
end

-- An output: a Lua file handle, a path (opened for append) or a function
-- receiving each line without its newline.
local function output(file_or_fn)
	local t = type(file_or_fn)
	if t == "function" then
		return file_or_fn
	end
	local f = file_or_fn
	if t == "string" then
		local err
		f, err = io.open(file_or_fn, "a")
		if not f then
			error("layerup.log: cannot open " .. tostring(err), 3)
		end
		f:setvbuf("line")
	elseif io.type(f) ~= "file" then
		error("layerup.log: file, path or function expected", 3)
	end
	return function(line)
		f:write(line, "\n")
	end
end

-- Field names in a stable order, so that lines are comparable.
local function sorted_keys(fields)
	local keys = {}
	for k in pairs(fields or {}) do
		keys[#keys + 1] = tostring(k)
	end
	table.sort(keys)
	return keys
end

local function field(fields, key)
	local v = fields[key]
	if v == nil then
		v = fields[tonumber(key)]
	end
	return v
end

-- A value cjson can encode (userdata, functions, cycles become strings).
local function json_value(v)
	local ok, s = pcall(json.encode, v)
	if ok then
		return s
	end
	return json.encode(tostring(v))
end

-- Wrap a sink so that it never raises.
function M.safe(sink)
	return function(event, fields)
		pcall(sink, event, fields)
	end
end

-- JSON lines: {"ts":"2024-01-02T03:04:05Z","event":"upload.finish",<fields>}
-- with ts and event first and the fields sorted by name.  A field named ts
-- or event is written as "field.ts" / "field.event".
-- opts.clock() -> ts value replaces the UTC timestamp (tests).
function M.json(file_or_fn, opts)
	local write = output(file_or_fn)
	local clock = opts and opts.clock or now_utc
	return M.safe(function(event, fields)
		fields = fields or {}
		local parts = {
			'"ts":' .. json_value(clock()),
			'"event":' .. json_value(tostring(event)),
		}
		for _, k in ipairs(sorted_keys(fields)) do
			local name = (k == "ts" or k == "event") and "field." .. k or k
			parts[#parts + 1] = json.encode(name) .. ":" .. json_value(field(fields, k))
		end
		write("{" .. table.concat(parts, ",") .. "}")
	end)
end

-- logfmt value: bare when it is a simple token, else quoted and escaped.
local function logfmt_value(v)
	local t = type(v)
	-- a float (Lua 5.4), or any non-integral number (LuaJIT: all doubles)
	local float = t == "number" and (math.type and math.type(v) == "float" or
		(not math.type and v ~= math.floor(v)))
	if float and v == v and v ~= math.huge and v ~= -math.huge then
		return ("%.6g"):format(v) -- short enough to read; JSON keeps them exact
	elseif t == "number" or t == "boolean" then
		return tostring(v)
	end
	local s = t == "table" and json_value(v) or tostring(v)
	if s ~= "" and not s:find('[%s="\\%c]') then
		return s
	end
	s = s:gsub('[\\"%c]', function(c)
		if c == "\\" or c == '"' then
			return "\\" .. c
		elseif c == "\n" then
			return "\\n"
		elseif c == "\t" then
			return "\\t"
		elseif c == "\r" then
			return "\\r"
		end
		return ("\\u%04x"):format(c:byte())
	end)
	return '"' .. s .. '"'
end

-- logfmt: ts=... event=upload.finish repo=a/b size=3 msg="quoted when needed"
function M.logfmt(file_or_fn, opts)
	local write = output(file_or_fn)
	local clock = opts and opts.clock or now_utc
	return M.safe(function(event, fields)
		fields = fields or {}
		local parts = {
			"ts=" .. logfmt_value(clock()),
			"event=" .. logfmt_value(tostring(event)),
		}
		for _, k in ipairs(sorted_keys(fields)) do
			local name = k:gsub("[%s=\"%c]", "_")
			if name == "ts" or name == "event" then
				name = "field." .. name
			end
			parts[#parts + 1] = name .. "=" .. logfmt_value(field(fields, k))
		end
		write(table.concat(parts, " "))
	end)
end

-- Call every sink (nil entries are skipped); one failing sink does not
-- keep the others from seeing the event.
function M.fanout(...)
	local sinks = {}
	for i = 1, select("#", ...) do
		local s = select(i, ...)
		if s ~= nil then
			sinks[#sinks + 1] = s
		end
	end
	return function(event, fields)
		for _, s in ipairs(sinks) do
			pcall(s, event, fields)
		end
	end
end

-- For tests: returns sink, records where records is a list of
-- {event=, fields=} (fields copied at the time of the call).
-- records:count(event) / records:find(event) help assertions.
local records_mt = {
	__index = {
		count = function(self, event)
			local n = 0
			for _, r in ipairs(self) do
				if r.event == event then
					n = n + 1
				end
			end
			return n
		end,
		find = function(self, event)
			for _, r in ipairs(self) do
				if r.event == event then
					return r
				end
			end
		end,
	},
}

function M.memory()
	local records = setmetatable({}, records_mt)
	local function sink(event, fields)
		local copy = {}
		for k, v in pairs(fields or {}) do
			copy[k] = v
		end
		records[#records + 1] = { event = event, fields = copy }
	end
	return sink, records
end

-- Pass on only some events.  which is a Lua pattern searched in the event
-- name ("^upload%."), a list or set of exact names
-- ({"upload.finish", "finish.retry"} or {["upload.finish"]=true}), or a
-- predicate function(event, fields) -> bool.
function M.filter(which, sink)
	local match
	if type(which) == "string" then
		match = function(event)
			return tostring(event):find(which) ~= nil
		end
	elseif type(which) == "table" then
		local set = {}
		for k, v in pairs(which) do
			if type(k) == "number" then
				set[v] = true
			elseif v then
				set[k] = true
			end
		end
		match = function(event)
			return set[event] == true
		end
	elseif type(which) == "function" then
		match = which
	else
		error("layerup.log.filter: pattern, set or function expected", 2)
	end
	return function(event, fields)
		local ok, yes = pcall(match, event, fields)
		if ok and yes then
			pcall(sink, event, fields)
		end
	end
end

-- Discard everything.
function M.null() end

return M
