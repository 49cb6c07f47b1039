-- layerup.limits: human-friendly sizes and durations for the limits the
-- core enforces (layerup.open options max_size and max_age).
--   limits.parse_size("4MiB")    -> 4194304          | nil, err
--   limits.parse_duration("36h") -> 129600 (seconds) | nil, err
--   limits.opts{max_size = "4GiB", max_age = "7d"} -> {max_size=, max_age=}

local core = require "layerup.core"

local M = {}

-- An integer-valued number (Lua 5.4 integers and floats, LuaJIT doubles).
local function whole(v)
	return type(v) == "number" and v == v and v ~= math.huge and v ~= -math.huge
		and math.floor(v) == v
end

-- v as an integer where the Lua has them (5.3+), else v itself.
local tointeger = math.tointeger or function(v)
	return whole(v) and v or nil
end

-- INVALID_ARGUMENT: not a core failure, these come from reading
-- configuration; the error type is the core's (layerup.error).
local function bad(message)
	return nil, core.error("INVALID_ARGUMENT", message)
end

-- Units, case-insensitive.  KB/MB/... are decimal, KiB/MiB/... binary.
local size_units = {
	[""] = 1, b = 1,
	kb = 1000, mb = 1000 ^ 2, gb = 1000 ^ 3, tb = 1000 ^ 4,
	kib = 1024, mib = 1024 ^ 2, gib = 1024 ^ 3, tib = 1024 ^ 4,
}

-- "4MiB", "1.5 GB", "512", 512 -> bytes (an integer).
function M.parse_size(s)
	if type(s) == "number" then
		if not whole(s) or s < 0 or s >= 2 ^ 53 then
			return bad(("size must be a whole number of bytes in [0, 2^53), got %s"):format(tostring(s)))
		end
		return tointeger(s)
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
	local n = tointeger(v)
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
		if s ~= s or s < 0 or s >= 2 ^ 53 then
			return bad("duration must be a number of seconds in [0, 2^53)")
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
	if total >= 2 ^ 53 then
		return bad(("duration %q is too long"):format(s))
	end
	return tointeger(total) or total
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
	return tointeger(math.ceil(n)) or n
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

-- Per-repository size limits, before any byte is written.
--   rules: {["library/*"] = "1GiB", ["ci/**"] = 200 * 2^20} or a list
--          {{"library/*", "1GiB"}, ...}; patterns as in layerup.admit
--          (exact name, glob, Lua pattern), sizes as parse_size takes.
-- When several rules match a repository the smallest limit applies (so
-- the order of a table's keys does not matter).
--
-- limits.repo_max_size(rules [, {require_size = bool}]) -> admit policy:
-- refuses store:start(repo, {size = N}) when N exceeds the repository's
-- limit.  An upload of unknown size is admitted (refused with
-- require_size); repo_max_size_link then refuses it at finish.
-- limits.repo_max_size_link(rules [, base_rule]) -> link policy: refuses a
-- finish whose blob is over the limit (the data is already in the store:
-- the blob stays, unlinked, and purge/verify see it as any unlinked blob).
local function size_rules(rules, who)
	if type(rules) ~= "table" then
		error(who .. ": table of pattern = size rules expected", 3)
	end
	local admit = require "layerup.admit"
	local list = {}
	local function add(pattern, size)
		local n, err = M.parse_size(size)
		if not n then
			error(("%s: rule %s: %s"):format(who, tostring(pattern), err.message), 4)
		end
		list[#list + 1] = { pattern = pattern, size = n, match = admit.matcher(pattern) }
	end
	if rules[1] ~= nil then
		for _, r in ipairs(rules) do
			if type(r) ~= "table" then
				error(who .. ": each rule is {pattern, size}", 3)
			end
			add(r[1], r[2])
		end
	else
		for pattern, size in pairs(rules) do
			add(pattern, size)
		end
	end
	-- The limit of repo: the smallest of the matching rules, or nil.
	return function(repo)
		local best
		for _, r in ipairs(list) do
			if r.match(repo) and (not best or r.size < best.size) then
				best = r
			end
		end
		return best
	end
end

local function over(repo, size, r)
	return ("upload of %s to %s exceeds the repository limit of %s (rule %s)"):format(
		M.format_size(size), repo, M.format_size(r.size), r.pattern)
end

function M.repo_max_size(rules, opts)
	local limit_of = size_rules(rules, "limits.repo_max_size")
	local require_size = opts and opts.require_size
	return function(ctx)
		local repo = type(ctx) == "table" and tostring(ctx.repo or "") or tostring(ctx)
		local r = limit_of(repo)
		if not r then
			return true
		end
		local size = type(ctx) == "table" and ctx.size or nil
		if size == nil then
			if require_size then
				return false, ("repository %s needs the upload size up front (limit %s)"):format(
					repo, M.format_size(r.size))
			end
			return true
		end
		if size > r.size then
			return false, over(repo, size, r)
		end
		return true
	end
end

function M.repo_max_size_link(rules, base_rule)
	local limit_of = size_rules(rules, "limits.repo_max_size_link")
	base_rule = base_rule or require("layerup.link").default
	return function(ctx)
		local r = limit_of(ctx.repo)
		if r and ctx.size > r.size then
			return nil, core.error("SIZE_INVALID", over(ctx.repo, ctx.size, r))
		end
		return base_rule(ctx)
	end
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
