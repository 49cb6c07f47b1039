-- layerup.limits: human-friendly sizes and durations for the limits the
-- core enforces (layerup.open options max_size and max_age).
--   limits.parse_size("4MiB")    -> 4194304          | nil, err
--   limits.parse_duration("36h") -> 129600 (seconds) | nil, err
--   limits.opts{max_size = "4GiB", max_age = "7d"} -> {max_size=, max_age=}

local M = {}
local compat = require "layerup.compat"

local error_mt = {
	__tostring = function(e)
		return tostring(e.code) .. ": " .. tostring(e.message)
	end,
}

-- Not a core code: these errors come from reading configuration.
local function bad(message)
	return nil, setmetatable({ code = "INVALID_ARGUMENT", message = message }, error_mt)
end

-- Units, case-insensitive.  KB/MB/... are decimal, KiB/MiB/... binary.
local size_units = {
	[""] = 1, b = 1,
	kb = 1000, mb = 1000 ^ 2, gb = 1000 ^ 3, tb = 1000 ^ 4,
	kib = 1024, mib = 1024 ^ 2, gib = 1024 ^ 3, tib = 1024 ^ 4,
}

-- "4MiB", "1.5 GB", "512", 512 -> bytes (an integer).
function M.parse_size(s)
	if compat.mtype(s) == "integer" then
		if s < 0 then
			return bad("size must not be negative")
		end
		return s
	end
	if type(s) ~= "string" then
		return bad("size expected, got " .. type(s))
	end
	local num, unit = s:match("^%s*(%d+%.?%d*)%s*(%a*)%s*$")
	if not num then
		return bad(("bad size %q (expected e.g. 512, 4MiB, 1.5GB)"):format(s))
	end
	local mult = size_units[unit:lower()]
	if not mult then
		return bad(("bad size unit %q in %q (B, KB, KiB, MB, MiB, GB, GiB, TB, TiB)"):format(unit, s))
	end
	local v = tonumber(num) * mult
	-- 2^63 does not fit an integer; floats beyond 2^53 lose bytes.
	if v >= 2 ^ 53 then
		return bad(("size %q is too large"):format(s))
	end
	local n = compat.tointeger(v)
	if not n then
		return bad(("size %q is not a whole number of bytes"):format(s))
	end
	return n
end

local duration_units = {
	[""] = 1, s = 1, m = 60, h = 3600, d = 86400, w = 604800,
}

-- "36h", "1h30m", "90", "1.5d", 90 -> seconds (an integer when whole).
function M.parse_duration(s)
	if type(s) == "number" then
		if s ~= s or s < 0 or s == math.huge then
			return bad("duration must be a finite number >= 0")
		end
		return s
	end
	if type(s) ~= "string" then
		return bad("duration expected, got " .. type(s))
	end
	local rest = s:match("^%s*(.-)%s*$")
	if rest == "" then
		return bad("empty duration")
	end
	local total, seen_bare = 0, false
	local pos = 1
	while pos <= #rest do
		local num, unit, nxt = rest:match("^(%d+%.?%d*)(%a*)()", pos)
		if not num or not duration_units[unit] or seen_bare then
			return bad(("bad duration %q (expected e.g. 90, 30s, 15m, 36h, 7d, 2w, 1h30m)"):format(s))
		end
		-- a bare number is seconds, and only valid on its own
		seen_bare = unit == ""
		if seen_bare and pos ~= 1 then
			return bad(("bad duration %q: unit missing after %s"):format(s, num))
		end
		total = total + tonumber(num) * duration_units[unit]
		pos = nxt
	end
	return compat.tointeger(total) or total
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
	return compat.tointeger(math.ceil(n)) or n
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
