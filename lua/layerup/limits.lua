-- layerup.limits: human-friendly sizes and durations for the limits the
-- core enforces (layerup.open options max_size and max_age).
--   limits.parse_size("4MiB")    -> 4194304          | nil, err
--   limits.parse_duration("36h") -> 129600 (seconds) | nil, err
--   limits.opts{max_size = "4GiB", max_age = "7d"} -> {max_size=, max_age=}

local M = {}

local error_mt = {
	__tostring = function(e)
		return tostring(e.code) .. ": " .. tostring(e.message)
	end,
}

-- Not a core code: these errors come from reading configuration.
local function bad(message)
	return nil, setmetatable({ code = "INVALID_ARGUMENT", message = message }, error_mt)
end

-- Sizes and durations follow the rules of layerup.units (one parser for
-- the library and the command line).
local units = require "layerup.units"

-- "4MiB", "1.5 GB", "512", 512 -> bytes (an integer).
function M.parse_size(s)
	local n, msg = units.size(s)
	if n == nil then
		return bad(msg)
	end
	return n
end

-- "36h", "1h30m", "90", "1.5d", 90 -> seconds (an integer when whole).
function M.parse_duration(s)
	local n, msg = units.duration(s)
	if n == nil then
		return bad(msg)
	end
	return n
end

-- Opts fragments for layerup.open; each accepts a number or a string.
function M.max_size(v)
	local n, err = M.parse_size(v)
	if not n then
		error("limits.max_size: " .. err.message, 2)
	end
	return { max_size = n }
end

-- The core counts max_age in whole seconds: a fraction rounds up.
local function whole_seconds(n)
	return math.tointeger(math.ceil(n)) or n
end

function M.max_age(v)
	local n, err = M.parse_duration(v)
	if not n then
		error("limits.max_age: " .. err.message, 2)
	end
	return { max_age = whole_seconds(n) }
end

-- Merge {max_size=, max_age=} (strings or numbers) into opts (a new table
-- unless into is given): nil, err for a bad value, so a CLI can report it.
function M.opts(spec, into)
	local out = into or {}
	if spec.max_size ~= nil then
		local n, err = M.parse_size(spec.max_size)
		if not n then
			return nil, err
		end
		out.max_size = n
	end
	if spec.max_age ~= nil then
		local n, err = M.parse_duration(spec.max_age)
		if not n then
			return nil, err
		end
		out.max_age = whole_seconds(n)
	end
	return out
end

-- 1536 -> "1.5KiB", 3 -> "3B": for messages and listings.
function M.format_size(n)
	local units = { "B", "KiB", "MiB", "GiB", "TiB" }
	local v, i = n, 1
	while v >= 1024 and i < #units do
		v = v / 1024
		i = i + 1
	end
	if i == 1 then
		return ("%dB"):format(n)
	end
	return (("%.1f"):format(v):gsub("%.0$", "")) .. units[i]
end

return M
