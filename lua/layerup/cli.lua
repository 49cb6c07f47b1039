-- layerup/cli.lua - the `layerup` command: subcommands over the store API.
--
-- run(argv [, env]) -> exit code.  bin/layerup calls os.exit(run(arg));
-- specs call it in-process and pass env = {stdout=, stderr=, getenv=,
-- isatty=, layerup=} (every field optional) to capture output, fake the
-- environment or stub the module.
--
-- Exit codes: 0 ok, 1 operation failed, 2 usage error, 3 verify found
-- damage, 130 interrupted.  Errors print "layerup: CODE: message" on stderr.
--
-- Interrupts: the standard lua5.4 interpreter turns SIGINT into the error
-- "interrupted!" raised at the next Lua instruction (lua.c sets a hook), so
-- a Ctrl-C during push lands between two writes: we close the upload
-- (persisting its hash state) and print the `layerup resume` command.  A
-- second Ctrl-C, SIGTERM or SIGKILL end the process at once; the upload is
-- still resumable (the store re-hashes from its last saved state).

local M = {}

M.EXIT = { ok = 0, failed = 1, usage = 2, damage = 3, interrupted = 130 }

local LAYOUT = "/docker/registry/v2"
local PIECE = 1 << 20              -- bytes per read and write call
local DEFAULT_CHUNK = "16MiB"      -- push closes and resumes this often

-- Errors ------------------------------------------------------------------

-- Raised (as a table) by fail(); run() turns it into the exit code.
local Failure = {}
Failure.__index = Failure
Failure.__tostring = function(f) return f.code .. ": " .. f.message end

local function fail(exit, code, message)
	error(setmetatable({ exit = exit, code = code, message = message }, Failure), 0)
end

local function usage(message) fail(M.EXIT.usage, "USAGE", message) end

-- v, err from the store API: return v or raise err as an operation failure.
local function check(v, err, ...)
	if v == nil then
		local code = type(err) == "table" and err.code or "IO"
		local msg = type(err) == "table" and err.message or tostring(err)
		fail(M.EXIT.failed, code, msg)
	end
	return v, err, ...
end

local function is_interrupt(e)
	return type(e) == "string" and e:find("interrupted!$") ~= nil
end

-- Value syntax --------------------------------------------------------------

local UNITS = {
	[""] = 1, b = 1,
	k = 1 << 10, kib = 1 << 10, m = 1 << 20, mib = 1 << 20,
	g = 1 << 30, gib = 1 << 30, t = 1 << 40, tib = 1 << 40,
	kb = 1000, mb = 1000 * 1000, gb = 1000 * 1000 * 1000,
}

-- "4MiB", "512KiB", "1048576", "1G" -> integer bytes, or nil.
function M.parse_size(s)
	local n, unit = tostring(s):match("^(%d+)(%a*)$")
	local mul = n and UNITS[unit:lower()]
	if not mul or #n > 15 then return nil end
	return math.tointeger(tonumber(n) * mul)
end

local SECONDS = { s = 1, m = 60, h = 3600, d = 86400, w = 7 * 86400 }

-- "90s", "15m", "36h", "7d", "2w", "1h30m" -> integer seconds, or nil.
function M.parse_duration(s)
	s = tostring(s)
	if s == "" or not s:match("^[%dsmhdw]+$") then return nil end
	local total, rest = 0, s
	while rest ~= "" do
		local n, unit, tail = rest:match("^(%d+)([smhdw])(.*)$")
		if not n or #n > 12 then return nil end
		total = total + tonumber(n) * SECONDS[unit]
		rest = tail
	end
	return math.tointeger(total)
end

-- Repository names and upload ids: the core's grammars (layerup.core), so
-- that hostile input becomes a usage error before any I/O.  The core is
-- loaded here on first use; help needs no core.
local function load_module(name)
	local ok, m = pcall(require, name)
	if not ok then
		fail(M.EXIT.failed, "UNSUPPORTED", "cannot load the layerup module: " ..
			tostring(m):gsub("\n.*", ""))
	end
	return m
end

local function core()
	return load_module("layerup.core")
end

function M.valid_repo(name)
	return core().valid_repo(name)
end

function M.valid_uuid(s)
	return core().valid_uuid(s)
end

-- Digest syntax of the distribution spec (algorithm support is the core's).
function M.valid_digest(s)
	return type(s) == "string"
		and s:match("^[a-z0-9]+[a-z0-9.+_-]*:[a-zA-Z0-9=_-]+$") ~= nil
end

local function need_repo(s)
	if not M.valid_repo(s) then
		fail(M.EXIT.usage, "NAME_INVALID", ("invalid repository name %q"):format(s))
	end
	return s
end

local function need_uuid(s)
	if not M.valid_uuid(s) then
		fail(M.EXIT.usage, "BLOB_UPLOAD_UNKNOWN", ("invalid upload id %q (want a lowercase UUID)"):format(s))
	end
	return s
end

local function need_digest(s)
	if not M.valid_digest(s) then
		fail(M.EXIT.usage, "DIGEST_INVALID", ("invalid digest %q (want ALG:HEX)"):format(s))
	end
	return s
end

-- Output helpers ------------------------------------------------------------

local ARRAY = {}  -- metatable marking a JSON array (so {} encodes as [])

local function array(t) return setmetatable(t or {}, ARRAY) end

-- JSON with sorted keys (stable output) and explicit arrays.
local function to_json(v)
	local cjson = require "cjson"
	if type(v) ~= "table" then return cjson.encode(v) end
	local parts = {}
	if getmetatable(v) == ARRAY then
		for i = 1, #v do parts[i] = to_json(v[i]) end
		return "[" .. table.concat(parts, ",") .. "]"
	end
	local keys = {}
	for k in pairs(v) do keys[#keys + 1] = tostring(k) end
	table.sort(keys)
	for i, k in ipairs(keys) do
		parts[i] = cjson.encode(k) .. ":" .. to_json(v[k])
	end
	return "{" .. table.concat(parts, ",") .. "}"
end

local function human(n)
	local units = { "B", "KiB", "MiB", "GiB", "TiB" }
	local i = 1
	while n >= 1024 and i < #units do n, i = n / 1024, i + 1 end
	return i == 1 and ("%d B"):format(n) or ("%.1f %s"):format(n, units[i])
end

local function iso_time(t)
	return t and os.date("!%Y-%m-%dT%H:%M:%SZ", t) or "-"
end

-- Quote for a POSIX shell when needed (the resume hint is copy-pasted).
local function shell_quote(s)
	if s:match("^[%w%./_:@%%+=,-]+$") then return s end
	return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function blob_path(root, digest)
	local hex = type(digest) == "string" and digest:match("^sha256:(%x+)$")
	if not hex then return nil end
	return require("layerup.root").display(root, LAYOUT .. "/blobs/sha256/" .. hex:sub(1, 2) ..
		"/" .. hex .. "/data")
end

-- Per-run context -------------------------------------------------------------

local function detect_tty(env)
	if env.isatty ~= nil then return env.isatty end
	local ok, term = pcall(require, "term")
	if ok and type(term) == "table" and term.isatty then
		return term.isatty(io.stderr) and true or false
	end
	-- The shell inherits our stderr, so `test -t 2` asks about it.
	return os.execute("test -t 2") == true
end

local function clock()
	local ok, system = pcall(require, "system")
	if ok and type(system) == "table" and system.monotime then
		return system.monotime
	end
	return os.time
end

local function new_ctx(env)
	env = env or {}
	local ctx = {
		out = env.stdout or io.stdout,
		err = env.stderr or io.stderr,
		getenv = env.getenv or os.getenv,
		module = env.layerup,
	}
	ctx.tty = function()
		if ctx.tty_cached == nil then ctx.tty_cached = detect_tty(env) end
		return ctx.tty_cached
	end
	return ctx
end

-- The layerup module, loaded on first use (help and usage errors need no core).
local function lib(ctx)
	if not ctx.module then
		ctx.module = load_module("layerup")
	end
	return ctx.module
end

local function say(ctx, fmt, ...)
	ctx.out:write(fmt:format(...), "\n")
end

local function note(ctx, fmt, ...)
	ctx.err:write("layerup: ", fmt:format(...), "\n")
end

-- cjson escapes every "/" as "\/"; a literal backslash is always "\\", so
-- turning "\/" back into "/" is safe and keeps paths readable.
local function emit_json(ctx, v)
	ctx.out:write((to_json(v):gsub("\\/", "/")), "\n")
end

-- The store root must exist (except for push, whose driver creates it).
local function need_root_dir(root)
	if require("layerup.root").is_url(root) then return end -- s3://: no directory
	local f = io.open(root, "r")
	if not f then
		fail(M.EXIT.failed, "PATH_NOT_FOUND", ("store root %s does not exist"):format(root))
	end
	-- Reading a directory fails with EISDIR (21): the cheap portable test.
	local _, _, errno = f:read(0)
	f:close()
	if errno ~= 21 then
		fail(M.EXIT.failed, "PATH_NOT_FOUND", ("store root %s is not a directory"):format(root))
	end
end

local function open_store(ctx, root, create)
	if not create then need_root_dir(root) end
	local R = require "layerup.root"
	if R.is_url(root) then
		-- s3://BUCKET/PREFIX: the S3 driver, configured from AWS_* variables
		return check(lib(ctx).open(check(R.open(root, lib(ctx)))))
	end
	return check(lib(ctx).open(root))
end

-- Commands ----------------------------------------------------------------------
--
-- Each command: name, args (required positionals after ROOT), optargs
-- (optional trailing ones), summary, text (help body), options (cliargs
-- definitions: {key, description, default, flag?}), run(ctx, a) -> exit.

local commands, order = {}, {}

local function command(def)
	commands[def.name] = def
	order[#order + 1] = def.name
end

-- A progress line on stderr (terminals only): bar, bytes, rate and ETA.
local function progress(ctx, total, start)
	if not ctx.tty() then return function() end end
	local now = clock()
	local t0, last, width = now(), nil, 0
	return function(done, final)
		local t = now()
		if not final and last and t - last < 0.2 then return end
		last = t
		local rate = t > t0 and (done - start) / (t - t0) or 0
		local line
		if total and total > 0 then
			local frac = math.min(done / total, 1)
			local fill = math.floor(frac * 24 + 0.5)
			local eta = "--:--"
			if rate > 0 then
				local s = math.floor((total - done) / rate + 0.5)
				eta = ("%d:%02d"):format(s // 60, s % 60)
			end
			line = ("[%s%s] %3d%% %s / %s  %s/s  ETA %s"):format(
				("#"):rep(fill), ("."):rep(24 - fill), math.floor(frac * 100),
				human(done), human(total), human(rate), eta)
		else
			line = ("%s  %s/s"):format(human(done), human(rate))
		end
		local pad = math.max(width - #line, 0)
		width = #line
		ctx.err:write("\r", line, (" "):rep(pad), final and "\n" or "")
	end
end

local function open_input(path)
	local f, msg = io.open(path, "rb")
	if not f then fail(M.EXIT.failed, "IO", "cannot open " .. msg) end
	-- Pipes and FIFOs have no size: then no ETA and no size check.
	local size = f:seek("end")
	if size then f:seek("set", 0) end
	return f, size
end

local function read_piece(f, n, path)
	local s, msg = f:read(n)
	if s == nil and msg then fail(M.EXIT.failed, "IO", ("reading %s: %s"):format(path, msg)) end
	return s
end

local function resume_hint(p)
	return ("layerup resume %s %s %s %s"):format(shell_quote(p.root),
		shell_quote(p.repo), p.uuid or p.up.uuid, shell_quote(p.file))
end

-- Copy p.f into the upload p.up (which holds p.up:size() bytes of it
-- already), closing and resuming every p.chunk bytes, then finish.
local function transfer(ctx, p)
	local L = lib(ctx)
	local h = L.hasher and check(L.hasher("sha256"))
	local digest
	if not h then
		if not L.sha256_file then
			fail(M.EXIT.failed, "UNSUPPORTED", "the layerup module has no hasher")
		end
		digest = check(L.sha256_file(p.file))
	end

	-- The bytes already in the upload: skip them in FILE, but hash them.
	local done = p.up:size()
	if p.size and done > p.size then
		fail(M.EXIT.failed, "SIZE_INVALID", ("upload %s holds %d bytes, more than %s has (%d)")
			:format(p.up.uuid, done, p.file, p.size))
	end
	local left = done
	while left > 0 do
		local s = read_piece(p.f, math.min(PIECE, left), p.file)
		if not s then
			fail(M.EXIT.failed, "SIZE_INVALID", ("upload %s holds %d bytes, more than %s has")
				:format(p.up.uuid, done, p.file))
		end
		if h then h:update(s) end
		left = left - #s
	end

	local show = progress(ctx, p.size, done)
	local since = 0
	while true do
		local s = read_piece(p.f, math.min(PIECE, p.chunk - since), p.file)
		if not s then break end
		if h then h:update(s) end
		check(p.up:write(s))
		done, since = done + #s, since + #s
		show(done)
		if since >= p.chunk then
			-- Checkpoint: persist the hash state and pick the upload up again,
			-- as a client that disconnects between chunks would.
			check(p.up:close())
			p.up = check(p.store:resume(p.repo, p.up.uuid))
			if p.up:size() ~= done then
				fail(M.EXIT.failed, "BLOB_UPLOAD_INVALID", ("upload %s holds %d bytes after resume, expected %d")
					:format(p.up.uuid, p.up:size(), done))
			end
			since = 0
		end
	end
	show(done, true)

	digest = digest or h:digest()
	local existed = p.store:stat(digest) ~= nil
	local opts = p.size and { size = p.size } or nil
	local desc = check(p.up:finish(digest, opts))
	return {
		digest = desc.digest or digest,
		size = desc.size or done,
		repo = p.repo,
		uuid = p.up.uuid,
		path = blob_path(p.root, desc.digest or digest),
		dedup = existed,
	}
end

-- Run transfer; on failure or Ctrl-C keep the upload resumable and say how.
local function guarded_transfer(ctx, p)
	p.uuid = p.up.uuid
	local ok, res = pcall(transfer, ctx, p)
	if ok then return res end
	local okc, size = pcall(p.up.size, p.up)
	pcall(p.up.close, p.up)
	local hint = "to resume: " .. resume_hint(p)
	if is_interrupt(res) then
		if ctx.tty() then ctx.err:write("\n") end
		local f = setmetatable({ exit = M.EXIT.interrupted, code = "INTERRUPTED",
			message = ("upload %s closed at %s bytes"):format(p.uuid, okc and size or "?"),
			hint = hint }, Failure)
		error(f, 0)
	end
	if getmetatable(res) == Failure then
		res.hint = ("upload %s kept; %s"):format(p.uuid, hint)
	end
	error(res, 0)
end

local function report_blob(ctx, a, r)
	if a.json then return emit_json(ctx, r) end
	say(ctx, "digest: %s", r.digest)
	say(ctx, "size:   %d", r.size)
	if r.repo then say(ctx, "repo:   %s", r.repo) end
	if r.path then say(ctx, "blob:   %s", r.path) end
	if r.dedup then say(ctx, "dedup:  the blob was already stored") end
end

local CHUNK_OPT = { "--chunk=SIZE", "close and resume the upload every SIZE bytes (4MiB, 512KiB, 1048576)", DEFAULT_CHUNK }

local function chunk_size(a)
	local n = M.parse_size(a.opts.chunk)
	if not n or n < 1 then usage(("bad --chunk size %q"):format(tostring(a.opts.chunk))) end
	return n
end

command {
	name = "push", args = { "REPO", "FILE" },
	summary = "upload FILE as a blob of REPO (chunked, resumable)",
	text = [[
Uploads FILE into the store at ROOT and links it into repository REPO.
The upload is closed and resumed every --chunk bytes, so an interruption
loses at most one chunk; Ctrl-C keeps the upload and prints the exact
`layerup resume` command.  Prints the digest and where the blob is stored.
FILE may be a pipe (no size check or ETA then).]],
	options = {
		CHUNK_OPT,
		{ "--resume=UUID", "continue this upload instead of starting a new one" },
	},
	run = function(ctx, a)
		local repo = need_repo(a.REPO)
		local chunk = chunk_size(a)
		local uuid = a.opts.resume and need_uuid(a.opts.resume)
		local f, size = open_input(a.FILE)
		local store = open_store(ctx, a.root, true)
		local up
		if uuid then
			up = check(store:resume(repo, uuid))
		else
			up = check(store:start(repo))
		end
		local p = { store = store, root = a.root, repo = repo, file = a.FILE, f = f,
			size = size, chunk = chunk, up = up }
		if ctx.tty() then
			p.uuid = up.uuid
			note(ctx, "upload %s started; to resume after a crash: %s", up.uuid, resume_hint(p))
		end
		local r = guarded_transfer(ctx, p)
		f:close()
		store:close()
		report_blob(ctx, a, r)
		return M.EXIT.ok
	end,
}

command {
	name = "resume", args = { "REPO", "UUID", "FILE" },
	summary = "continue an interrupted push of FILE",
	text = [[
Continues upload UUID of REPO from its current size: that many bytes of
FILE are skipped (but hashed), the rest is uploaded, then the blob is
finished as push does.]],
	options = { CHUNK_OPT },
	run = function(ctx, a)
		local repo, uuid = need_repo(a.REPO), need_uuid(a.UUID)
		local chunk = chunk_size(a)
		local f, size = open_input(a.FILE)
		local store = open_store(ctx, a.root)
		local up = check(store:resume(repo, uuid))
		local r = guarded_transfer(ctx, { store = store, root = a.root, repo = repo,
			file = a.FILE, f = f, size = size, chunk = chunk, up = up })
		f:close()
		store:close()
		report_blob(ctx, a, r)
		return M.EXIT.ok
	end,
}

command {
	name = "uploads", args = {}, optargs = { "REPO" },
	summary = "list uploads in progress (of REPO, or all)",
	text = [[
One line per upload: repository, upload id, bytes received, start time.
With $LAYERUP_ROOT and one argument, the argument is ROOT; write
`layerup uploads --root DIR REPO` to list one repository.]],
	run = function(ctx, a)
		if a.REPO then need_repo(a.REPO) end
		local store = open_store(ctx, a.root)
		local list = check(store:uploads(a.REPO))
		store:close()
		if a.json then
			local rows = array()
			for i, u in ipairs(list) do
				rows[i] = { repo = u.repo, uuid = u.uuid, size = u.size, started_at = u.started_at }
			end
			emit_json(ctx, rows)
		else
			for _, u in ipairs(list) do
				say(ctx, "%s  %s  %12d  %s", u.repo, u.uuid, u.size or 0, iso_time(u.started_at))
			end
		end
		return M.EXIT.ok
	end,
}

command {
	name = "finish", args = { "REPO", "UUID", "DIGEST" },
	summary = "complete an upload whose bytes are all there",
	text = [[
Verifies that upload UUID of REPO holds content with DIGEST (and --size
bytes, when given), moves it into the blob store and links it into REPO.
A failed finish leaves the upload in place.]],
	options = { { "--size=N", "the size the blob must have" } },
	run = function(ctx, a)
		local repo, uuid, digest = need_repo(a.REPO), need_uuid(a.UUID), need_digest(a.DIGEST)
		local opts
		if a.opts.size then
			local n = M.parse_size(a.opts.size)
			if not n then usage(("bad --size %q"):format(a.opts.size)) end
			opts = { size = n }
		end
		local store = open_store(ctx, a.root)
		local up = check(store:resume(repo, uuid))
		local desc, err = up:finish(digest, opts)
		if not desc then up:close() end
		check(desc, err)
		store:close()
		report_blob(ctx, a, { digest = desc.digest, size = desc.size, repo = repo,
			uuid = uuid, path = blob_path(a.root, desc.digest) })
		return M.EXIT.ok
	end,
}

command {
	name = "cancel", args = { "REPO", "UUID" },
	summary = "remove an upload and everything it holds",
	run = function(ctx, a)
		local repo, uuid = need_repo(a.REPO), need_uuid(a.UUID)
		local store = open_store(ctx, a.root)
		local up = check(store:resume(repo, uuid))
		check(up:cancel())
		store:close()
		if a.json then
			emit_json(ctx, { repo = repo, uuid = uuid, cancelled = true })
		else
			say(ctx, "cancelled %s %s", repo, uuid)
		end
		return M.EXIT.ok
	end,
}

command {
	name = "purge", args = {}, synopsis_tail = "--older-than DURATION [--dry-run]",
	summary = "remove uploads started longer ago than --older-than",
	text = [[
Removes every upload (including orphan directories) whose start lies more
than DURATION in the past.  DURATION: a number with a unit s, m, h, d or w,
or a sum of them (90s, 15m, 36h, 7d, 1h30m).]],
	options = {
		{ "--older-than=DURATION", "age cut-off (required)" },
		{ "--dry-run", "only list what would be removed", false, true },
	},
	run = function(ctx, a)
		local d = a.opts["older-than"]
		if not d then usage("purge needs --older-than DURATION") end
		local secs = M.parse_duration(d)
		if not secs then usage(("bad duration %q (examples: 90s, 15m, 36h, 7d)"):format(d)) end
		local dry = a.opts["dry-run"] and true or false
		local store = open_store(ctx, a.root)
		local list = check(store:purge { older_than = secs, dry_run = dry })
		store:close()
		if a.json then
			local rows = array()
			for i, u in ipairs(list) do
				rows[i] = { repo = u.repo, uuid = u.uuid, size = u.size, started_at = u.started_at }
			end
			emit_json(ctx, { dry_run = dry, uploads = rows })
		else
			for _, u in ipairs(list) do
				say(ctx, "%s %s %s  %d bytes  started %s", dry and "would remove" or "removed",
					u.repo, u.uuid, u.size or 0, iso_time(u.started_at))
			end
		end
		return M.EXIT.ok
	end,
}

command {
	name = "stat", args = { "DIGEST" }, optargs = { "REPO" },
	summary = "size and location of a blob (linked into REPO, if given)",
	-- `stat ROOT DIGEST` and `stat DIGEST REPO` (root from the environment)
	-- have the same shape: a digest in first place settles it.
	first_is_not_root = function(pos) return M.valid_digest(pos[1]) end,
	run = function(ctx, a)
		local digest = need_digest(a.DIGEST)
		if a.REPO then need_repo(a.REPO) end
		local store = open_store(ctx, a.root)
		local desc = check(store:stat(digest, a.REPO))
		store:close()
		report_blob(ctx, a, { digest = desc.digest, size = desc.size, repo = a.REPO,
			path = blob_path(a.root, desc.digest) })
		return M.EXIT.ok
	end,
}

command {
	name = "cat", args = { "REPO", "DIGEST" },
	summary = "write a blob linked into REPO to stdout",
	run = function(ctx, a)
		local repo, digest = need_repo(a.REPO), need_digest(a.DIGEST)
		local store = open_store(ctx, a.root)
		local r = check(store:open(repo, digest))
		while true do
			local s, err = r:read(PIECE)
			if s == nil then
				if err then r:close() check(nil, err) end
				break
			end
			ctx.out:write(s)
		end
		r:close()
		store:close()
		return M.EXIT.ok
	end,
}

-- verify --------------------------------------------------------------------------

local function basename(p) return (p:gsub("/+$", ""):match("([^/]+)$")) or p end

-- Child names of a directory; a missing one is empty, an unreadable one
-- is reported through problem().
-- A symlink below the root is never followed (the filesystem driver
-- refuses it with INVALID_PATH): reported as tree.symlink.
local function children(d, path, problem)
	local list, err = d:list(path)
	if not list and problem and not (type(err) == "table" and err.code == "PATH_NOT_FOUND") then
		local symlink = type(err) == "table" and err.code == "INVALID_PATH"
		problem(symlink and "tree.symlink" or "dir.unreadable", symlink and err.path or path,
			type(err) == "table" and (err.message or err.code) or tostring(err))
	end
	local out = {}
	for i, c in ipairs(list or {}) do out[i] = basename(c) end
	return out
end

local function exists(d, path) return d:stat(path) ~= nil end

-- stat(path), reporting a symlink met on the way as tree.symlink.
local function stat_or_symlink(d, path, problem)
	local st, err = d:stat(path)
	if not st and type(err) == "table" and err.code == "INVALID_PATH" then
		problem("tree.symlink", err.path or path, err.message or err.code)
		return nil, true
	end
	return st
end

-- Temporaries older than this are debris of a killed write (put_content
-- keeps one for milliseconds).
local STALE_TEMP_SECONDS = 60

local function hash_blob(ctx, d, path)
	local h = check(lib(ctx).hasher("sha256"))
	local r, err = d:reader(path, 0)
	if not r then return nil, err end
	while true do
		local s, rerr = r:read(PIECE)
		if s == nil then
			r:close()
			if rerr then return nil, rerr end
			break
		end
		h:update(s)
	end
	return h:digest()
end

local function verify(ctx, d)
	local problems = array()
	local counts = { blobs = 0, links = 0, uploads = 0 }
	local function problem(kind, path, msg)
		problems[#problems + 1] = { kind = kind, path = path, message = msg }
	end
	local function errmsg(e)
		return type(e) == "table" and (e.message or e.code) or tostring(e)
	end

	local blobs = LAYOUT .. "/blobs/sha256"
	for _, pre in ipairs(children(d, blobs, problem)) do
		for _, hex in ipairs(children(d, blobs .. "/" .. pre, problem)) do
			local dir = blobs .. "/" .. pre .. "/" .. hex
			counts.blobs = counts.blobs + 1
			local st, symlink
			if hex:match("^" .. ("[0-9a-f]"):rep(64) .. "$") and hex:sub(1, 2) == pre then
				st, symlink = stat_or_symlink(d, dir .. "/data", problem)
			end
			if symlink then
				-- reported; its target is not ours to read
			elseif not hex:match("^" .. ("[0-9a-f]"):rep(64) .. "$") or hex:sub(1, 2) ~= pre then
				problem("blob.misplaced", dir, "directory name is not the blob's sha256 under its prefix")
			elseif not st then
				problem("blob.no_data", dir, "blob directory without data")
			else
				local got, err = hash_blob(ctx, d, dir .. "/data")
				if not got then
					problem("blob.unreadable", dir .. "/data", errmsg(err))
				elseif got ~= "sha256:" .. hex then
					problem("blob.corrupt", dir .. "/data", "content hashes to " .. got)
				end
			end
		end
	end

	local function check_layers(path)
		for _, alg in ipairs(children(d, path, problem)) do
			for _, hex in ipairs(children(d, path .. "/" .. alg, problem)) do
				local link = path .. "/" .. alg .. "/" .. hex .. "/link"
				counts.links = counts.links + 1
				local target, lerr = d:get_content(link)
				if not target and type(lerr) == "table" and lerr.code == "INVALID_PATH" then
					problem("tree.symlink", lerr.path or link, lerr.message or lerr.code)
				elseif not target then
					problem("link.missing", link, "layer directory without a link file")
				elseif not target:match("^sha256:" .. ("[0-9a-f]"):rep(64) .. "$") then
					problem("link.malformed", link, ("link holds %q"):format(target:sub(1, 80)))
				elseif alg == "sha256" and target ~= "sha256:" .. hex then
					problem("link.mismatch", link, "link points at " .. target)
				elseif not exists(d, blob_path("", target)) then
					problem("link.dangling", link, "no blob " .. target)
				end
			end
		end
	end

	local function check_uploads(path)
		for _, id in ipairs(children(d, path, problem)) do
			local dir = path .. "/" .. id
			counts.uploads = counts.uploads + 1
			local _, symlink = stat_or_symlink(d, dir, problem)
			local missing = {}
			for _, f in ipairs(symlink and {} or { "startedat", "data" }) do
				local st, link = stat_or_symlink(d, dir .. "/" .. f, problem)
				if not st and not link then missing[#missing + 1] = f end
			end
			if #missing > 0 then
				problem("upload.orphan", dir, "upload without " .. table.concat(missing, " and ") ..
					" (`layerup purge` removes it)")
			end
		end
	end

	-- Repository names nest: any directory not starting with "_" may be a
	-- component; _layers and _uploads mark a repository.
	local function walk(path, depth)
		if depth > 64 then return end
		for _, c in ipairs(children(d, path, problem)) do
			if c == "_layers" then check_layers(path .. "/_layers")
			elseif c == "_uploads" then check_uploads(path .. "/_uploads")
			elseif c:sub(1, 1) ~= "_" then
				-- stray files between repository components are not ours
				-- never through a symlink: the walk always ends
				local st = stat_or_symlink(d, path .. "/" .. c, problem)
				if st and st.dir then walk(path .. "/" .. c, depth + 1) end
			end
		end
	end
	walk(LAYOUT .. "/repositories", 0)

	-- Stale temporaries (".lup~<hex>", left by a write killed before its
	-- rename): debris that `layerup purge` removes.
	counts.temporaries = 0
	if d.temporaries then
		for _, top in ipairs({ LAYOUT .. "/repositories", LAYOUT .. "/blobs" }) do
			for _, t in ipairs(d:temporaries(top, STALE_TEMP_SECONDS) or {}) do
				counts.temporaries = counts.temporaries + 1
				problem("temporary.stale", t.path, ("%d-byte temporary of an interrupted write " ..
					"(`layerup purge` removes it)"):format(t.size))
			end
		end
	end
	return counts, problems
end

command {
	name = "verify", args = {},
	summary = "re-hash every blob, check links and uploads",
	text = [[
Re-hashes every blob under blobs/sha256, checks that every _layers link
points at an existing blob, and reports orphan uploads (directories without
startedat or data), symlinks in the tree (never followed) and stale
temporary files of interrupted writes.  Exit status 3 when anything is
damaged.]],
	run = function(ctx, a)
		need_root_dir(a.root)
		local L = lib(ctx)
		if not L.hasher then fail(M.EXIT.failed, "UNSUPPORTED", "the layerup module has no hasher") end
		local d = check(require("layerup.root").open(a.root, L))
		local counts, problems = verify(ctx, d)
		if a.json then
			emit_json(ctx, { ok = #problems == 0, blobs = counts.blobs, links = counts.links,
				uploads = counts.uploads, problems = problems })
		else
			for _, p in ipairs(problems) do
				say(ctx, "DAMAGE %s %s: %s", p.kind, p.path, p.message)
			end
			say(ctx, "%d blobs, %d links, %d uploads checked: %s", counts.blobs, counts.links,
				counts.uploads, #problems == 0 and "ok" or (#problems .. " problem(s)"))
		end
		return #problems == 0 and M.EXIT.ok or M.EXIT.damage
	end,
}

-- Help and dispatch ------------------------------------------------------------------

local function synopsis(def)
	local s = "[ROOT]"
	for _, n in ipairs(def.args) do s = s .. " " .. n end
	for _, n in ipairs(def.optargs or {}) do s = s .. " [" .. n .. "]" end
	if def.synopsis_tail then s = s .. " " .. def.synopsis_tail end
	return s
end

local function top_help()
	local lines = {
		"Usage: layerup COMMAND [OPTIONS] [ROOT] ARGS...",
		"",
		"Resumable, content-addressed blob uploads into a Docker registry v2",
		"storage tree at ROOT.",
		"",
		"Commands:",
	}
	for _, name in ipairs(order) do
		local def = commands[name]
		lines[#lines + 1] = ("  %-8s %s"):format(name, synopsis(def))
		lines[#lines + 1] = ("           %s"):format(def.summary)
	end
	local tail = {
		"",
		"ROOT is the store's root directory.  It may be omitted when --root DIR or",
		"$LAYERUP_ROOT names it; --root DIR (on any command) means no positional ROOT.",
		"ROOT may also be s3://BUCKET/PREFIX: endpoint, region and credentials from",
		"AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.",
		"",
		"Common options: --root DIR, --json (machine-readable output), -h/--help.",
		"Exit status: 0 ok, 1 operation failed, 2 usage error, 3 verify found",
		"damage, 130 interrupted.  Errors print `layerup: CODE: message` on stderr.",
		"",
		"Run `layerup COMMAND --help` for a command's options.",
	}
	for _, l in ipairs(tail) do lines[#lines + 1] = l end
	return table.concat(lines, "\n") .. "\n"
end

local function build_parser(def)
	local cli = require("cliargs.core")()
	cli:set_name("layerup " .. def.name)
	cli:splat("ARGS", "positional arguments", nil, 999)
	for _, o in ipairs(def.options or {}) do
		if o[4] then cli:flag(o[1], o[2], o[3]) else cli:option(o[1], o[2], o[3]) end
	end
	cli:option("--root=DIR", "store root (default: $LAYERUP_ROOT when ROOT is omitted)")
	cli:flag("--json", "machine-readable output (JSON)")
	cli:flag("-h, --help", "show this help")
	return cli
end

local function command_help(def)
	local opts = build_parser(def).printer.generate_help()
	opts = opts:match("\n(OPTIONS:.*)$") or opts
	local s = ("Usage: layerup %s [OPTIONS] %s\n\n%s.\n"):format(def.name, synopsis(def),
		def.summary:sub(1, 1):upper() .. def.summary:sub(2))
	if def.text then s = s .. "\n" .. def.text .. "\n" end
	return s .. "\n" .. opts:gsub("OPTIONS: ?\n", "Options:\n")
end

-- Map positionals onto ROOT + named args (see top_help for the rule).
local function bind(ctx, def, pos, opts)
	local req, opt = #def.args, #(def.optargs or {})
	local n, root, first = #pos, nil, 1
	local function shape_ok(k) return k >= req and k <= req + opt end
	if opts.root then
		root = opts.root
		if not shape_ok(n) then
			usage(("%s takes %s (ROOT given by --root)"):format(def.name, synopsis(def):gsub("^%[ROOT%] ?", "")))
		end
	else
		local full, short = shape_ok(n - 1), shape_ok(n)
		if full and short and def.first_is_not_root and def.first_is_not_root(pos) then
			full = false
		end
		if full then
			root, first = pos[1], 2
		elseif short then
			root = ctx.getenv("LAYERUP_ROOT")
			if not root or root == "" then
				usage("no ROOT given (pass it first, or set --root or $LAYERUP_ROOT)")
			end
		else
			usage(("%s takes %s, got %d argument(s)"):format(def.name, synopsis(def), n))
		end
	end
	if root == "" then usage("ROOT is empty") end
	local a = { root = root, json = opts.json and true or false, opts = opts }
	local names = {}
	for _, v in ipairs(def.args) do names[#names + 1] = v end
	for _, v in ipairs(def.optargs or {}) do names[#names + 1] = v end
	for i = first, n do a[names[i - first + 1]] = pos[i] end
	return a
end

local function dispatch(ctx, argv)
	local name = argv[1]
	if name == nil then
		ctx.err:write(top_help())
		usage("no command given")
	end
	if name == "-h" or name == "--help" or name == "help" then
		local def = argv[2] and commands[argv[2]]
		ctx.out:write(def and command_help(def) or top_help())
		return M.EXIT.ok
	end
	-- Options before the command (`layerup --json uploads`): move the
	-- command name to the front.
	if name:sub(1, 1) == "-" then
		for i = 2, #argv do
			if commands[argv[i]] then
				table.insert(argv, 1, table.remove(argv, i))
				name = argv[1]
				break
			end
		end
	end
	local def = commands[name]
	if not def then
		usage(("unknown command %q (see `layerup --help`)"):format(name))
	end
	local rest = table.move(argv, 2, #argv, 1, {})
	for _, v in ipairs(rest) do
		if v == "-h" or v == "--help" then
			ctx.out:write(command_help(def))
			return M.EXIT.ok
		end
	end
	local parsed, perr = build_parser(def):parse(rest)
	if not parsed then usage(tostring(perr)) end
	local pos = parsed.ARGS
	if type(pos) ~= "table" then pos = { pos } end
	return def.run(ctx, bind(ctx, def, pos, parsed))
end

-- Run the command line argv (a list, like the global `arg`); returns the
-- exit code.  Never raises for user errors.
function M.run(argv, env)
	local ctx = new_ctx(env)
	local list = {}
	for i = 1, #(argv or {}) do list[i] = tostring(argv[i]) end
	local ok, res = xpcall(dispatch, function(e)
		if getmetatable(e) == Failure or is_interrupt(e) then return e end
		return debug.traceback(tostring(e), 2)
	end, ctx, list)
	if ok then return res end
	if getmetatable(res) == Failure then
		if res.code then
			note(ctx, "%s: %s", res.code, res.message)
			if res.hint then note(ctx, "%s", res.hint) end
			if res.code == "USAGE" then
				local hint = commands[list[1]] and ("layerup " .. list[1] .. " --help") or "layerup --help"
				note(ctx, "run `%s` for usage", hint)
			end
		end
		return res.exit
	end
	if is_interrupt(res) then
		note(ctx, "INTERRUPTED: stopped")
		return M.EXIT.interrupted
	end
	note(ctx, "INTERNAL: %s", tostring(res))
	return M.EXIT.failed
end

M.commands = order

return M
