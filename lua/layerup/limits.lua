-- layerup.limits: human-friendly sizes and durations for the limits the
-- core enforces (layerup.open options max_size and max_age).
--   limits.parse_size("4MiB")    -> 4194304          | nil, err
--   limits.parse_duration("36h") -> 129600 (seconds) | nil, err
--   limits.opts{max_size = "4GiB", max_age = "7d"} -> {max_size=, max_age=}

local core = require "layerup.core"
-- Sizes and durations follow the rules of layerup.units (one parser for
-- the library and the command line); limits only wraps its answers.
local units = require "layerup.units"

local M = {}

-- INVALID_ARGUMENT: not a core failure, these come from reading
-- configuration; the error type is the core's (layerup.error).
local function bad(message)
	return nil, core.error("INVALID_ARGUMENT", message)
end

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

-- The core counts max_age in whole seconds: a fraction rounds up (n is in
-- range, so units hands the ceiling back as an integer where Lua has them).
local function whole_seconds(n)
	return (units.duration(math.ceil(n)))
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
M.format_size = units.format_size

return M
