-- layerup.cli.output: errors, exit codes and the output conventions of the
-- command line (text and --json).
--
-- Conventions (README "Command line"):
--   * Results go to stdout; notes, progress and errors to stderr.
--   * With --json stdout carries exactly one JSON document, also on error:
--     {"error":{"code":..,"message":..,"hint":..?}}.  Keys are the same as
--     the text output's ("digest: ..." <-> "digest").
--   * Every `path` is a filesystem path: ROOT as given + the layout path.
--   * Times: RFC 3339 UTC in text, unix seconds (integer) in JSON.

local M = {}

M.EXIT = { ok = 0, failed = 1, usage = 2, damage = 3, interrupted = 130 }

-- Raised (as a table) by fail(); the dispatcher turns it into the exit code.
local Failure = {}
Failure.__index = Failure
Failure.__tostring = function(f) return f.code .. ": " .. f.message end
M.Failure = Failure

function M.is_failure(e) return getmetatable(e) == Failure end

function M.failure(exit, code, message, hint)
	return setmetatable({ exit = exit, code = code, message = message, hint = hint }, Failure)
end

function M.fail(exit, code, message, hint)
	error(M.failure(exit, code, message, hint), 0)
end

function M.usage(message) M.fail(M.EXIT.usage, "USAGE", message) end

local function err_code(err)
	return type(err) == "table" and err.code or "IO"
end

local function err_message(err)
	if type(err) == "table" then return tostring(err.message or err.code) end
	return tostring(err)
end
M.err_message = err_message

-- v, err from the store API: return v or raise err as an operation failure.
function M.check(v, err, ...)
	if v == nil then M.fail(M.EXIT.failed, err_code(err), err_message(err)) end
	return v, err, ...
end

-- The interpreter turns SIGINT (and, with core.forward_signals, SIGTERM and
-- SIGHUP) into the error "interrupted!".
function M.is_interrupt(e)
	return type(e) == "string" and e:find("interrupted!$") ~= nil
end

-- JSON ---------------------------------------------------------------------

local ARRAY = {} -- metatable marking a JSON array (so {} encodes as [])

function M.array(t) return setmetatable(t or {}, ARRAY) end

-- JSON with sorted keys (stable output), explicit arrays, and "/" left as
-- it is (cjson escapes it as "\/", which is valid but unreadable).
local function to_json(v)
	local cjson = require "cjson"
	if type(v) ~= "table" then
		return (cjson.encode(v):gsub("\\/", "/"))
	end
	local parts = {}
	if getmetatable(v) == ARRAY then
		for i = 1, #v do parts[i] = to_json(v[i]) end
		return "[" .. table.concat(parts, ",") .. "]"
	end
	local keys = {}
	for k in pairs(v) do keys[#keys + 1] = tostring(k) end
	table.sort(keys)
	for i, k in ipairs(keys) do
		parts[i] = to_json(k) .. ":" .. to_json(v[k])
	end
	return "{" .. table.concat(parts, ",") .. "}"
end
M.to_json = to_json

-- Text helpers ---------------------------------------------------------------

function M.human(n)
	local units = { "B", "KiB", "MiB", "GiB", "TiB" }
	local i = 1
	while n >= 1024 and i < #units do n, i = n / 1024, i + 1 end
	return i == 1 and ("%d B"):format(n) or ("%.1f %s"):format(n, units[i])
end

function M.iso_time(t)
	return t and os.date("!%Y-%m-%dT%H:%M:%SZ", t) or "-"
end

-- Quote for a POSIX shell when needed (hints are copy-pasted).
function M.shell_quote(s)
	s = tostring(s)
	if s:match("^[%w%./_:@%%+=,-]+$") then return s end
	return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- Writers bound to a run context --------------------------------------------

-- A result on stdout.
function M.say(ctx, fmt, ...)
	ctx.out:write(fmt:format(...), "\n")
end

-- A note on stderr (silenced by --quiet).
function M.note(ctx, fmt, ...)
	if ctx.quiet then return end
	ctx.err:write(ctx.prog_name, ": ", fmt:format(...), "\n")
end

-- An error line on stderr (never silenced).
function M.error_line(ctx, fmt, ...)
	ctx.err:write(ctx.prog_name, ": ", fmt:format(...), "\n")
end

function M.emit_json(ctx, v)
	ctx.out:write(to_json(v), "\n")
end

-- A record: text "key: value" lines in the order of keys, or one JSON
-- object with the same keys.  Absent (nil) values are left out of both.
function M.record(ctx, r, keys)
	if ctx.json then return M.emit_json(ctx, r) end
	local width = 0
	for _, k in ipairs(keys) do
		if r[k] ~= nil and #k > width then width = #k end
	end
	for _, k in ipairs(keys) do
		local v = r[k]
		if v ~= nil then
			M.say(ctx, "%-" .. (width + 1) .. "s %s", k .. ":", tostring(v))
		end
	end
end

-- A failure as the user sees it: stderr line(s), and with --json the error
-- object on stdout too.
function M.report_failure(ctx, f)
	M.error_line(ctx, "%s: %s", f.code, f.message)
	if f.hint then M.error_line(ctx, "%s", f.hint) end
	if ctx.json then
		M.emit_json(ctx, { error = { code = f.code, message = f.message, hint = f.hint } })
	end
end

return M
