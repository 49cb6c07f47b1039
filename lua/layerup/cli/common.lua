-- layerup.cli.common: what the commands share: the layerup module (loaded
-- on first use, so help and usage errors need no core), argument checks
-- with the core's grammars, opening the store with the policies given on
-- the command line, and filesystem paths from the core's layout.

local out = require "layerup.cli.output"
local units = require "layerup.units"

local M = {}
local EXIT = out.EXIT

local function load_module(name)
	local ok, m = pcall(require, name)
	if not ok then
		out.fail(EXIT.failed, "UNSUPPORTED", "cannot load the layerup module: " ..
			tostring(m):gsub("\n.*", ""))
	end
	return m
end

function M.core() return load_module("layerup.core") end

function M.lib(ctx)
	if not ctx.module then ctx.module = load_module("layerup") end
	return ctx.module
end

function M.layout(ctx)
	local L = M.lib(ctx)
	return L.layout or M.core().layout
end

-- Names -----------------------------------------------------------------------

function M.need_repo(s)
	if not M.core().valid_repo(s) then
		out.fail(EXIT.usage, "NAME_INVALID", ("invalid repository name %q"):format(s))
	end
	return s
end

function M.need_uuid(s)
	if not M.core().valid_uuid(s) then
		out.fail(EXIT.usage, "BLOB_UPLOAD_UNKNOWN", ("invalid upload id %q (want a lowercase UUID)"):format(s))
	end
	return s
end

-- The core's digest grammar: sha256/sha384/sha512 and lowercase hex of the
-- right length.  Anything else is a usage error, whatever the command.
function M.need_digest(s)
	if not M.core().layout.valid_digest(s) then
		out.fail(EXIT.usage, "DIGEST_INVALID",
			("invalid digest %q (want sha256:<64 lowercase hex>, or sha384/sha512)"):format(s))
	end
	return s
end

function M.need_size(s, flag)
	local n, msg = units.size(s)
	if not n then out.usage(("bad %s: %s"):format(flag, msg)) end
	return n
end

function M.need_duration(s, flag)
	local n, msg = units.duration(s)
	if not n then out.usage(("bad %s: %s"):format(flag, msg)) end
	return n
end

-- Uploads as --json rows (uploads and purge write the same keys).
function M.upload_rows(list)
	local rows = out.array()
	for i, u in ipairs(list) do
		rows[i] = { repo = u.repo, uuid = u.uuid, size = u.size, started_at = u.started_at }
	end
	return rows
end

-- Paths ---------------------------------------------------------------------

-- A layout path (relative to the driver's root) where a person finds it:
-- ROOT/docker/... for a directory, s3://BUCKET/PREFIX/docker/... on S3.
function M.fs_path(ctx, p)
	if p == nil then return nil end
	return require("layerup.root").display(ctx.root, p)
end

function M.blob_path(ctx, digest)
	local p = M.layout(ctx).blob_data(digest)
	return M.fs_path(ctx, p)
end

-- The store ------------------------------------------------------------------

local function is_dir(path)
	local f = io.open(path, "r")
	if not f then return false, "missing" end
	-- Reading a directory fails with EISDIR (21): the cheap portable test.
	local _, _, errno = f:read(0)
	f:close()
	return errno == 21, "file"
end
M.is_dir = is_dir

-- ROOT as a driver: a directory, or s3://BUCKET/PREFIX (the S3 driver,
-- configured from the AWS_* variables).  A malformed URL is a usage error.
function M.open_driver(ctx)
	local R = require "layerup.root"
	local parsed, why = R.parse(ctx.root)
	if not parsed then out.usage(why) end
	return out.check(R.open(ctx.root, M.lib(ctx)))
end

-- The store root must exist (except for push, whose driver creates it).
-- An s3:// ROOT has no directory to check: its driver answers.
function M.need_root_dir(ctx)
	if require("layerup.root").is_url(ctx.root) then return end
	local ok, why = is_dir(ctx.root)
	if not ok then
		out.fail(EXIT.failed, "PATH_NOT_FOUND", ("store root %s %s"):format(ctx.root,
			why == "missing" and "does not exist" or "is not a directory"))
	end
end

-- The options for layerup.open: --config FILE first, then --max-size,
-- --log and -v on top.  Bad values are usage errors.
local function store_options(ctx, a)
	local o = {}
	if a.opts.config then
		local chunk, lerr = loadfile(a.opts.config)
		if not chunk then out.usage(("--config: %s"):format(lerr)) end
		local ok, res = pcall(chunk)
		if not ok then out.usage(("--config %s: %s"):format(a.opts.config, tostring(res))) end
		if type(res) ~= "table" then
			out.usage(("--config %s must return a table of layerup.open options, got %s")
				:format(a.opts.config, type(res)))
		end
		for k, v in pairs(res) do o[k] = v end
	end
	if a.opts["max-size"] then o.max_size = M.need_size(a.opts["max-size"], "--max-size") end
	local spec = a.opts.log
	if spec then
		local fmt, file = spec:match("^(%a+):(.+)$")
		fmt = fmt or spec
		if fmt ~= "json" and fmt ~= "logfmt" then
			out.usage(("bad --log %q (json or logfmt, optionally :FILE)"):format(spec))
		end
		local sink = M.lib(ctx).log[fmt]
		local ok, fn = pcall(sink, file or function(line) ctx.err:write(line, "\n") end)
		if not ok then out.usage(("--log: %s"):format(tostring(fn):gsub("^.-: ", ""))) end
		o.log = fn
	elseif ctx.verbose then
		o.log = M.lib(ctx).log.logfmt(function(line) ctx.err:write(line, "\n") end)
	end
	return o
end

-- open_store(ctx, a [, {create=, on_event=}]) -> store.  on_event(event,
-- fields) sees every log event besides the log policy.
function M.open_store(ctx, a, how)
	how = how or {}
	if not how.create then M.need_root_dir(ctx) end
	local o = store_options(ctx, a)
	if how.on_event then
		local user = o.log
		o.log = function(event, fields)
			how.on_event(event, fields)
			if user then user(event, fields) end
		end
	end
	local target = ctx.root
	if require("layerup.root").is_url(ctx.root) then target = M.open_driver(ctx) end
	local ok, store, err = pcall(M.lib(ctx).open, target, o)
	if not ok then
		-- layerup.open raises for misuse: options of the wrong name or type.
		out.usage(("store options: %s"):format(tostring(store)))
	end
	return out.check(store, err)
end

return M
