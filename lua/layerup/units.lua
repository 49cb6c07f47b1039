-- layerup.units: the one parser for sizes and durations, used by the
-- command line (--chunk, --size, --max-size, --older-than) and by
-- layerup.limits (max_size, max_age).
--
--   units.size("4MiB")      -> 4194304          | nil, message
--   units.duration("1h30m") -> 5400 (seconds)   | nil, message
--
-- The rules (one set for both):
--   * A number is decimal digits with an optional fraction ("1.5"); no
--     sign, no exponent, no hex.  Blanks around the value are ignored, and
--     sizes allow blanks between number and unit ("4 MiB").
--   * Units are case-insensitive.
--   * Sizes: B (or none) bytes; kB MB GB TB PB decimal (powers of 1000);
--     KiB MiB GiB TiB PiB and the single letters K M G T P binary (powers
--     of 1024, as dd, docker and rsync read them).  The result must be a
--     whole number of bytes ("1.5KiB" = 1536; "0.3B" is refused).
--   * Durations: s m h d w (seconds, minutes, hours, days, weeks), summed
--     when several are written ("1h30m"); a bare number is seconds and only
--     valid alone ("90").  Fractions are allowed ("1.5h" = 5400); the result
--     may be fractional ("0.5s" = 0.5).
--   * Range: 0 <= value < 2^53.  Above that a Lua number loses units and
--     the C core's int64 could overflow, so it is refused, never wrapped
--     or rounded.  Lua numbers are accepted as they are when in range
--     (sizes: whole numbers only); NaN and infinities are refused.
--
-- Runs on Lua 5.1+/LuaJIT (no integer-only operations): results are
-- integers on 5.3+ when whole.

local M = {}

M.MAX = 2 ^ 53 -- exclusive upper bound of every value

local tointeger = math.tointeger or function(n)
	if n == math.floor(n) then
		return n
	end
	return nil
end

-- A whole number in range as an integer (Lua 5.3+), else the number.
local function whole(n)
	return tointeger(n) or n
end

local SIZE = {
	[""] = 1, b = 1,
	kb = 1e3, mb = 1e6, gb = 1e9, tb = 1e12, pb = 1e15,
	k = 1024, m = 1024 ^ 2, g = 1024 ^ 3, t = 1024 ^ 4, p = 1024 ^ 5,
	kib = 1024, mib = 1024 ^ 2, gib = 1024 ^ 3, tib = 1024 ^ 4, pib = 1024 ^ 5,
}

local DURATION = { s = 1, m = 60, h = 3600, d = 86400, w = 604800 }

local function finite(n)
	return n == n and n ~= math.huge and n ~= -math.huge
end

local function number_ok(n, what)
	if not finite(n) then
		return nil, ("%s must be a finite number"):format(what)
	end
	if n < 0 then
		return nil, ("%s must not be negative"):format(what)
	end
	if n >= M.MAX then
		return nil, ("%s is too large (the limit is 2^53)"):format(what)
	end
	return true
end

-- "4MiB", "1.5 GB", "512", 512 -> whole bytes, or nil, message.
function M.size(v)
	if type(v) == "number" then
		local ok, msg = number_ok(v, "size")
		if not ok then
			return nil, msg
		end
		if v ~= math.floor(v) then
			return nil, "size must be a whole number of bytes"
		end
		return whole(v)
	end
	if type(v) ~= "string" then
		return nil, "size expected, got " .. type(v)
	end
	local num, unit = v:match("^%s*(%d+%.?%d*)%s*(%a*)%s*$")
	if not num then
		return nil, ("bad size %q (expected e.g. 512, 4MiB, 1.5GB, 8M)"):format(v)
	end
	local mul = SIZE[unit:lower()]
	if not mul then
		return nil, ("bad size unit %q in %q (B, kB, KiB, K, MB, MiB, M, GB, GiB, G, TB, TiB, T, PB, PiB, P)")
			:format(unit, v)
	end
	-- In floats: integer arithmetic would wrap silently past 2^63.
	local n = (tonumber(num) + 0.0) * mul
	if not finite(n) or n >= M.MAX then
		return nil, ("size %q is too large (the limit is 2^53 bytes)"):format(v)
	end
	if n ~= math.floor(n) then
		return nil, ("size %q is not a whole number of bytes"):format(v)
	end
	return whole(n)
end

-- "36h", "1h30m", "90", "1.5d", 90 -> seconds, or nil, message.
function M.duration(v)
	if type(v) == "number" then
		local ok, msg = number_ok(v, "duration")
		if not ok then
			return nil, msg
		end
		return whole(v)
	end
	if type(v) ~= "string" then
		return nil, "duration expected, got " .. type(v)
	end
	local s = v:match("^%s*(.-)%s*$")
	if s == "" then
		return nil, "empty duration"
	end
	local syntax = ("bad duration %q (expected e.g. 90, 30s, 15m, 36h, 7d, 2w, 1h30m)"):format(v)
	if s:match("^%d+%.?%d*$") then
		local n = tonumber(s) + 0.0
		if n >= M.MAX then
			return nil, ("duration %q is too large (the limit is 2^53 seconds)"):format(v)
		end
		return whole(n)
	end
	local total, pos = 0, 1
	while pos <= #s do
		local num, unit, nxt = s:match("^(%d+%.?%d*)(%a+)()", pos)
		local mul = unit and DURATION[unit:lower()]
		if not mul then
			return nil, syntax
		end
		total = total + (tonumber(num) + 0.0) * mul
		pos = nxt
	end
	if not finite(total) or total >= M.MAX then
		return nil, ("duration %q is too large (the limit is 2^53 seconds)"):format(v)
	end
	return whole(total)
end

-- 1536 -> "1.5KiB", 3 -> "3B": for messages and listings.
function M.format_size(n)
	local names = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" }
	local v, i = n, 1
	while v >= 1024 and i < #names do
		v = v / 1024
		i = i + 1
	end
	if i == 1 then
		return ("%dB"):format(n)
	end
	return (("%.1f"):format(v):gsub("%.0$", "")) .. names[i]
end

return M
