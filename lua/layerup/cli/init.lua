-- layerup.cli: the `layerup` command's dispatcher.
--
-- run(argv [, env]) -> exit code.  bin/layerup calls os.exit(run(arg,
-- {forward_signals = true})); specs call it in-process and pass env =
-- {stdout=, stderr=, stdin=, getenv=, isatty=, layerup=, prog=} (every field
-- optional) to capture output, fake the environment or stub the module.
-- isatty is a boolean (both streams) or {stdout=, stderr=}.
--
-- The parts: cli/output.lua (errors, exit codes, text and JSON output),
-- cli/progress.lua (the progress line), cli/common.lua (names, the store,
-- paths), cli/transfer.lua (push and resume), cli/commands/*.lua (one file
-- per command), layerup.verify (the verifier) and layerup.units (sizes and
-- durations).
--
-- Exit codes: 0 ok, 1 operation failed, 2 usage error, 3 verify found
-- damage, 130 interrupted (SIGINT, SIGTERM or SIGHUP).
--
-- Interrupts: the lua5.4 interpreter turns SIGINT into the error
-- "interrupted!" raised at the next Lua instruction; core.forward_signals
-- gives SIGTERM and SIGHUP the same handler.  push and resume then close
-- the upload (persisting its hash state) and print the resume command.  A
-- second signal ends the process at once; the upload is still resumable.

local out = require "layerup.cli.output"
local units = require "layerup.units"

local M = {}

M.EXIT = out.EXIT

local ORDER = { "push", "resume", "uploads", "finish", "cancel", "purge", "stat", "cat",
	"verify", "completion", "version" }
local commands = {}
for _, name in ipairs(ORDER) do
	commands[name] = require("layerup.cli.commands." .. name)
end
M.commands = ORDER
M.definitions = commands

-- Compatibility for scripts and specs: the value grammars.
function M.parse_size(s) return (units.size(s)) end
function M.parse_duration(s) return (units.duration(s)) end
function M.valid_repo(s) return require("layerup.core").valid_repo(s) end
function M.valid_uuid(s) return require("layerup.core").valid_uuid(s) end
function M.valid_digest(s) return require("layerup.core").layout.valid_digest(s) end

-- Options every command takes: {spec, description, default, flag?}.
local GLOBAL = {
	{ "--root=DIR", "store root (default: $LAYERUP_ROOT when ROOT is omitted)" },
	{ "--json", "machine-readable output on stdout (errors too)", nil, true },
	{ "-q, --quiet", "no notes or progress on stderr (errors still)", nil, true },
	{ "-v, --verbose", "log the store's events on stderr (logfmt)", nil, true },
	{ "--[no-]progress", "force the progress line on or off (default: on a terminal)", nil, true },
	{ "--config=FILE", "a Lua file returning layerup.open options (policies)" },
	{ "--max-size=SIZE", "refuse uploads larger than SIZE (SIZE_INVALID)" },
	{ "--log=FORMAT", "log events (json or logfmt) on stderr; json:FILE or logfmt:FILE appends to FILE" },
	{ "-h, --help", "show this help", nil, true },
}
M.GLOBAL = GLOBAL

-- Context -----------------------------------------------------------------

local function shell_test_tty(fd)
	return os.execute("test -t " .. fd) == true
end

local function detect_tty(env, which)
	local v = env.isatty
	if type(v) == "table" then return v[which] and true or false end
	if v ~= nil then return v and true or false end
	local ok, term = pcall(require, "term")
	if ok and type(term) == "table" and term.isatty then
		return term.isatty(which == "stdout" and io.stdout or io.stderr) and true or false
	end
	-- The shell inherits our descriptors, so `test -t N` asks about them.
	return shell_test_tty(which == "stdout" and 1 or 2)
end

-- The name to print in hints: as invoked, shortened to the bare name when
-- that is what $PATH finds.
local function prog_name(arg0, getenv)
	if type(arg0) ~= "string" or arg0 == "" then return "layerup" end
	if not arg0:find("/", 1, true) then return arg0 end
	local base = arg0:match("([^/]+)$")
	for dir in (getenv("PATH") or ""):gmatch("[^:]+") do
		if dir:gsub("/+$", "") .. "/" .. base == arg0 then return base end
	end
	return arg0
end

local function new_ctx(env, argv)
	env = env or {}
	local ctx = {
		out = env.stdout or io.stdout,
		err = env.stderr or io.stderr,
		stdin = env.stdin or io.stdin,
		getenv = env.getenv or os.getenv,
		module = env.layerup,
	}
	ctx.prog = env.prog or prog_name(argv[0], ctx.getenv)
	ctx.prog_name = "layerup"
	local cache = {}
	local function tty(which)
		if cache[which] == nil then cache[which] = detect_tty(env, which) end
		return cache[which]
	end
	ctx.tty_err = function() return not ctx.quiet and tty("stderr") end
	ctx.tty_out = function() return tty("stdout") end
	ctx.show_progress = function()
		if ctx.quiet or ctx.progress == false then return false end
		if ctx.progress == true then return true end
		return tty("stderr")
	end
	return ctx
end

-- Help ------------------------------------------------------------------------

local function arg_name(spec) return type(spec) == "table" and spec[1] or spec end
local function arg_optional(spec) return type(spec) == "table" and spec.optional end

local function synopsis(def)
	local parts = {}
	if not def.no_root then parts[1] = "[ROOT]" end
	for _, a in ipairs(def.args) do
		parts[#parts + 1] = arg_optional(a) and ("[" .. arg_name(a) .. "]") or arg_name(a)
	end
	if def.synopsis_tail then parts[#parts + 1] = def.synopsis_tail end
	return table.concat(parts, " ")
end

function M.top_help()
	local lines = {
		"Usage: layerup COMMAND [OPTIONS] [ROOT] ARGS...",
		"",
		"Resumable, content-addressed blob uploads into a Docker registry v2",
		"storage tree at ROOT.",
		"",
		"Commands:",
	}
	for _, name in ipairs(ORDER) do
		local def = commands[name]
		lines[#lines + 1] = (("  %-10s %s"):format(name, synopsis(def)):gsub("%s+$", ""))
		lines[#lines + 1] = ("             %s"):format(def.summary)
	end
	local tail = {
		"",
		"ROOT is the store's root directory.  It may be omitted when --root DIR or",
		"$LAYERUP_ROOT names it; --root DIR (on any command) means no positional",
		"ROOT.  With $LAYERUP_ROOT set and an argument count that fits both ways,",
		"the first argument is ROOT when it is an existing directory (or s3://).",
		"ROOT may also be s3://BUCKET/PREFIX: endpoint, region and credentials from",
		"AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.",
		"",
		"Options for every command:",
	}
	for _, l in ipairs(tail) do lines[#lines + 1] = l end
	for _, o in ipairs(GLOBAL) do
		lines[#lines + 1] = ("  %-18s %s"):format(o[1]:gsub("=", " "), o[2])
	end
	local rest = {
		"  --version          print the version",
		"",
		"SIZE: a number with an optional unit: B, kB/MB/GB/TB/PB (powers of 1000),",
		"KiB/MiB/GiB/TiB/PiB or K/M/G/T/P (powers of 1024), case-insensitive;",
		"fractions are allowed when the result is whole bytes (1.5MiB).",
		"DURATION: s, m, h, d, w, summed (1h30m), or a bare number of seconds.",
		"Values of 2^53 or more are usage errors.",
		"",
		"Output: results on stdout, notes and errors on stderr.  With --json stdout",
		"holds one JSON document with the text output's key names; on error",
		"{\"error\":{\"code\":...,\"message\":...}}.  Paths are ROOT + the layout path",
		"(ROOT/docker/... or s3://BUCKET/PREFIX/docker/...).",
		"",
		"Exit status: 0 ok, 1 operation failed, 2 usage error (bad option, value,",
		"name, upload id or digest), 3 verify found damage, 130 interrupted",
		"(SIGINT, SIGTERM or SIGHUP: the upload is kept and the resume command",
		"printed).  Errors print `layerup: CODE: message` on stderr.",
		"",
		"Run `layerup COMMAND --help` for a command's options.",
	}
	for _, l in ipairs(rest) do lines[#lines + 1] = l end
	return table.concat(lines, "\n") .. "\n"
end

local STDIO = "\0-" -- stands for "-" while cliargs parses (it reads "-" as a flag)

local function build_parser(def)
	local cli = require("cliargs.core")()
	cli:set_name("layerup " .. def.name)
	cli:splat("ARGS", "positional arguments", nil, 999)
	local function add(o)
		if o[4] then cli:flag(o[1], o[2], o[3]) else cli:option(o[1], o[2], o[3]) end
	end
	for _, o in ipairs(def.options or {}) do add(o) end
	for _, o in ipairs(GLOBAL) do add(o) end
	return cli
end

function M.command_help(def)
	local lines = { ("Usage: layerup %s [OPTIONS] %s"):format(def.name, synopsis(def)), "",
		def.summary:sub(1, 1):upper() .. def.summary:sub(2) .. "." }
	if def.text then lines[#lines + 1] = "" lines[#lines + 1] = def.text end
	local function opt_lines(list)
		for _, o in ipairs(list) do
			local d = o[2]
			if o[3] and not o[4] then d = d .. " (default: " .. o[3] .. ")" end
			lines[#lines + 1] = ("  %-22s %s"):format(o[1]:gsub("=", " "), d)
		end
	end
	if def.options and #def.options > 0 then
		lines[#lines + 1] = ""
		lines[#lines + 1] = "Options:"
		opt_lines(def.options)
	end
	local names = {}
	for _, o in ipairs(GLOBAL) do names[#names + 1] = (o[1]:gsub("=.*", ""):match("(%%-%%-[^, ]+)$")) end
	lines[#lines + 1] = ""
	lines[#lines + 1] = "Common options (see `layerup --help`): " .. table.concat(names, " ")
	return table.concat(lines, "\n") .. "\n"
end

-- Suggestions -----------------------------------------------------------------

local function distance(a, b)
	local prev = {}
	for j = 0, #b do prev[j] = j end
	for i = 1, #a do
		local cur = { [0] = i }
		for j = 1, #b do
			local cost = a:sub(i, i) == b:sub(j, j) and 0 or 1
			cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
		end
		prev = cur
	end
	return prev[#b]
end

function M.suggest(name)
	local best, bd
	for _, c in ipairs(ORDER) do
		local d = distance(name, c)
		if c:sub(1, #name) == name and #name >= 2 then d = 0 end
		if not bd or d < bd then best, bd = c, d end
	end
	if bd and bd <= math.max(1, math.floor(#name / 3)) + 1 and bd < #name then return best end
	return nil
end

-- Binding positionals -------------------------------------------------------------

-- Map positionals onto ROOT + named args (see top_help for the rule).
local function bind(ctx, def, pos, opts)
	local specs = def.args
	local req, opt = 0, 0
	for _, s in ipairs(specs) do
		if arg_optional(s) then opt = opt + 1 else req = req + 1 end
	end
	local function fits(k) return k >= req and k <= req + opt end
	local root, first = nil, 1
	if def.no_root then
		root = nil
	elseif opts.root then
		root = opts.root
	else
		local env_root = ctx.getenv("LAYERUP_ROOT")
		if env_root == "" then env_root = nil end
		if env_root then
			local full, short = fits(#pos - 1), fits(#pos)
			if full and short then
				full = require("layerup.root").is_url(pos[1]) or require("layerup.cli.common").is_dir(pos[1])
			end
			if full then root, first = pos[1], 2 else root = env_root end
		else
			if #pos == 0 then
				out.usage(("%s: missing ROOT (pass it first, or set --root or $LAYERUP_ROOT)"):format(def.name))
			end
			root, first = pos[1], 2
		end
	end
	if root == "" then out.usage("ROOT is empty") end
	local n = #pos - first + 1
	if n < req then
		local k = 0
		for _, s in ipairs(specs) do
			if not arg_optional(s) then
				k = k + 1
				if k > n then out.usage(("%s: missing %s"):format(def.name, arg_name(s))) end
			end
		end
	end
	if n > req + opt then
		out.usage(("%s: unexpected argument %q (usage: %s %s)"):format(def.name,
			pos[first + req + opt], def.name, synopsis(def)))
	end
	local a = { root = root, opts = opts }
	local fill_opt = n - req
	local i = first
	for _, s in ipairs(specs) do
		if not arg_optional(s) or fill_opt > 0 then
			if arg_optional(s) then fill_opt = fill_opt - 1 end
			a[arg_name(s)] = pos[i]
			i = i + 1
		end
	end
	return a
end

-- Dispatch --------------------------------------------------------------------------

local function dispatch(ctx, argv)
	-- Options before the command (`layerup --json uploads`): move the
	-- command name to the front.
	if argv[1] and argv[1]:sub(1, 1) == "-" then
		for i = 2, #argv do
			if commands[argv[i]] or argv[i] == "help" then
				table.insert(argv, 1, table.remove(argv, i))
				break
			end
			-- an option's value is not a command name
		end
	end
	local name = argv[1]
	if name == "--version" or name == "-V" then name = "version" end
	if name == nil then out.usage("no command given") end
	if name == "-h" or name == "--help" or name == "help" then
		local def = argv[2] and commands[argv[2]]
		if argv[2] and not def and name == "help" then
			out.usage(("unknown command %q"):format(argv[2]))
		end
		ctx.out:write(def and M.command_help(def) or M.top_help())
		return out.EXIT.ok
	end
	local def = commands[name]
	if not def then
		if name:sub(1, 1) == "-" then out.usage(("unknown option %q before the command"):format(name)) end
		local s = M.suggest(name)
		out.usage(("unknown command %q%s"):format(name, s and ("; did you mean `" .. s .. "`?") or ""))
	end
	ctx.command = name
	local rest = {}
	for i = 2, #argv do
		local v = argv[i]
		if v == "-h" or v == "--help" then
			ctx.out:write(M.command_help(def))
			return out.EXIT.ok
		end
		rest[#rest + 1] = v == "-" and STDIO or v
	end
	local parsed, perr = build_parser(def):parse(rest)
	if not parsed then out.usage(tostring(perr)) end
	for k, v in pairs(parsed) do
		if v == STDIO then parsed[k] = "-" end
	end
	local pos = parsed.ARGS
	if type(pos) ~= "table" then pos = { pos } end
	for i, v in ipairs(pos) do
		if v == STDIO then pos[i] = "-" end
	end
	ctx.json = parsed.json and true or false
	ctx.quiet = parsed.quiet and true or false
	ctx.verbose = parsed.verbose and true or false
	ctx.progress = parsed.progress
	local a = bind(ctx, def, pos, parsed)
	ctx.root = a.root
	return def.run(ctx, a)
end

-- Run the command line argv (a list, like the global `arg`); returns the
-- exit code.  Never raises for user errors.
function M.run(argv, env)
	argv = argv or {}
	env = env or {}
	local list = {}
	for i = 1, #argv do list[i] = tostring(argv[i]) end
	list[0] = argv[0]
	local ctx = new_ctx(env, list)
	list[0] = nil
	-- Known before parsing, so that even a usage error comes as JSON.
	for _, v in ipairs(list) do
		if v == "--" then break end
		if v == "--json" then ctx.json = true end
	end
	if env.forward_signals then
		pcall(function() require("layerup.core").forward_signals() end)
	end
	local ok, res = xpcall(dispatch, function(e)
		if out.is_failure(e) or out.is_interrupt(e) then return e end
		return debug.traceback(tostring(e), 2)
	end, ctx, list)
	if ok then return res end
	if out.is_interrupt(res) then
		res = out.failure(out.EXIT.interrupted, "INTERRUPTED", "stopped")
	elseif not out.is_failure(res) then
		res = out.failure(out.EXIT.failed, "INTERNAL", tostring(res))
	end
	if res.code == "USAGE" or res.exit == out.EXIT.usage then
		local cmd = ctx.command and ("layerup " .. ctx.command .. " --help") or "layerup --help"
		res.hint = res.hint or ("run `%s` for usage"):format(cmd)
	end
	out.report_failure(ctx, res)
	return res.exit
end

return M
