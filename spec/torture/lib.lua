-- spec/torture/lib.lua - the torture harness shared by `make torture`
-- (tools/torture) and its short version in `make test`
-- (spec/torture_spec.lua).
--
-- Four parts, each a function returning a result table
--   {name =, trials =, failures = {{msg =, defect = N|nil}, ...}, figures = {...}}
--   crash(opts)    SIGKILL at every driver-operation boundary of an upload's
--                  life (start / write / close / purge / resume / finish /
--                  cancel), torn writes and kills at random moments; then a
--                  fresh process resumes or finishes
--   ioerr(opts)    fail operation k of the same life, for every k
--   race(opts)     resume vs finish / cancel / purge / expiry, finish vs
--                  cancel, resume vs resume: two processes started together
--   hostile(opts)  symlinks, loops, a symlinked root, files where
--                  directories belong, via the CLI under `timeout`
-- A failure that an open defect of issue 8 explains carries its number
-- (`defect`), so the short version can mark it as known.
local layerup = require "layerup"

local T = {}

local V2 = "/docker/registry/v2"
T.V2 = V2
local REPO, REPO2 = "torture/crash", "torture/other"
T.REPO = REPO

local HERE = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "spec/torture"
local TOP = HERE .. "/../.."
local LUA = os.getenv("LUA") or "lua5.4"
T.TOP = TOP

-- Shell plumbing ----------------------------------------------------------

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
T.q = q

local function sh(cmd)
	local ok, how, code = os.execute(cmd)
	if how == "signal" then return 128 + code end
	return ok and 0 or code
end
T.sh = sh

local function read(path)
	local f = io.open(path, "rb")
	if not f then return nil end
	local s = f:read("a")
	f:close()
	return s
end
T.read = read

local function write(path, s)
	local f = assert(io.open(path, "wb"))
	assert(f:write(s))
	assert(f:close())
end

local function lines(cmd)
	local p = assert(io.popen(cmd))
	local out = {}
	for l in p:lines() do out[#out + 1] = l end
	p:close()
	return out
end

local function exists(path) return sh("test -e " .. q(path) .. " -o -L " .. q(path)) == 0 end

function T.tmpdir(tag)
	local d = lines("mktemp -d \"${TMPDIR:-/tmp}/layerup-torture-" .. (tag or "x") .. ".XXXXXX\"")[1]
	assert(d and d ~= "", "mktemp failed")
	return d
end

function T.rm(path) sh("rm -rf " .. q(path)) end

-- Run bin/layerup under a timeout: exit code, stdout, stderr.
function T.cli(args, secs)
	local parts = {}
	for i, a in ipairs(args) do parts[i] = q(a) end
	local out, err = os.tmpname(), os.tmpname()
	local code = sh(("timeout -k 2 %d %s %s/bin/layerup %s >%s 2>%s </dev/null"):format(
		secs or 60, LUA, q(TOP), table.concat(parts, " "), out, err))
	local o, e = read(out) or "", read(err) or ""
	os.remove(out)
	os.remove(err)
	return code, o, e
end

-- The CLI in this process (same code as bin/layerup, without starting a
-- program): exit code, stdout, stderr.
function T.cli_here(args)
	local cli = require "layerup.cli"
	local function sink()
		local t = { parts = {} }
		function t:write(...)
			for i = 1, select("#", ...) do self.parts[#self.parts + 1] = tostring(select(i, ...)) end
			return self
		end
		return t
	end
	local out, err = sink(), sink()
	local code = cli.run(args, { stdout = out, stderr = err, isatty = false,
		getenv = function() return nil end })
	return code, table.concat(out.parts), table.concat(err.parts)
end

-- Test data: deterministic, incompressible enough, cheap to build ---------

local function bytes(seed, n)
	local x, t = seed * 7919 + 1, {}
	for i = 1, 1024 do
		x = (x * 1103515245 + 12345) % 2147483648
		t[i] = string.char(x % 251)
	end
	local block, parts, have, i = table.concat(t), {}, 0, 0
	while have < n do
		i = i + 1
		local p = ("%d:%d|"):format(seed, i) .. block
		parts[#parts + 1] = p
		have = have + #p
	end
	return table.concat(parts):sub(1, n)
end
T.bytes = bytes

local function sha256(s) return layerup.hasher("sha256"):update(s):digest() end

-- The upload lives of the crash and I/O-error parts.  u1 is written in
-- three sessions (one write large enough to be hashed on the worker
-- thread), survives a purge of an abandoned upload and is finished; u2 is
-- cancelled; u3 pushes u1's bytes into a second repository (dedup).
-- Built on first use (race children need none of it).
local A1, A2, B, C, D, FULL
local function load_data()
	if FULL then return end
	A1, A2, B, C = bytes(1, 300000), bytes(2, 12345), bytes(3, 70001), bytes(4, 999)
	D = bytes(5, 5000)
	FULL = A1 .. A2 .. B .. C
	T.DATA = {
		u1 = { repo = REPO, data = FULL, digest = sha256(FULL), ends = "finish" },
		u2 = { repo = REPO, data = D, ends = "cancel" },
		u3 = { repo = REPO2, data = FULL, digest = sha256(FULL), ends = "finish" },
	}
end

-- Run the lives on store; rep(label, event, value) is called before and
-- after every step (what the process acknowledged).  Raises {phase=, err=}
-- on the first failure, after closing the handles it holds.
function T.lifecycle(store, rep)
	load_data()
	local open = {}
	local function chk(phase, v, err)
		if v == nil then error({ phase = phase, err = err }, 0) end
		return v
	end
	local function up_write(label, u, s)
		rep(label, "sent", u:size() + #s)
		local n = chk("write", u:write(s))
		rep(label, "acked", n)
	end
	local ok, e = pcall(function()
		local u = chk("start", store:start(REPO))
		open[1] = u
		rep("u1", "uuid", u.uuid)
		up_write("u1", u, A1)
		up_write("u1", u, A2)
		rep("u1", "phase", "close")
		chk("close", u:close())
		rep("u1", "acked_close", u:size())
		rep("u1", "phase", "purge")
		chk("purge", store:purge { older_than = 3600 })
		rep("u1", "phase", "resume")
		u = chk("resume", store:resume(REPO, u.uuid))
		open[1] = u
		up_write("u1", u, B)
		chk("close", u:close())
		rep("u1", "acked_close", u:size())
		u = chk("resume", store:resume(REPO, u.uuid))
		open[1] = u
		up_write("u1", u, C)
		rep("u1", "phase", "finish")
		chk("finish", u:finish(T.DATA.u1.digest, { size = #FULL }))
		rep("u1", "done", "finish")

		local u2 = chk("start", store:start(REPO))
		open[2] = u2
		rep("u2", "uuid", u2.uuid)
		up_write("u2", u2, D)
		chk("close", u2:close())
		rep("u2", "acked_close", u2:size())
		u2 = chk("resume", store:resume(REPO, u2.uuid))
		open[2] = u2
		rep("u2", "phase", "cancel")
		chk("cancel", u2:cancel())
		rep("u2", "done", "cancel")

		local u3 = chk("start", store:start(REPO2))
		open[3] = u3
		rep("u3", "uuid", u3.uuid)
		up_write("u3", u3, FULL)
		rep("u3", "phase", "finish")
		chk("finish", u3:finish(T.DATA.u3.digest))
		rep("u3", "done", "finish")
	end)
	for _, u in pairs(open) do pcall(u.close, u) end
	if not ok then error(e, 0) end
end

-- A fresh root with an abandoned upload (started in 2000) for purge.
local function setup_root(root)
	T.rm(root)
	assert(sh("mkdir -p " .. q(root)) == 0)
	local store = assert(layerup.open(root))
	local u = assert(store:start("torture/abandoned"))
	assert(u:write("left behind"))
	assert(u:close())
	write(root .. V2 .. "/repositories/torture/abandoned/_uploads/" .. u.uuid .. "/startedat",
		"2000-01-01T00:00:00Z")
	store:close()
end

-- Checks ------------------------------------------------------------------

-- Every blobs/**/data hashes to its path: no partial or wrong blob is ever
-- visible.  Returns the number of wrong blobs and their paths.
local function check_blobs(root)
	local bad = {}
	local base = root .. V2 .. "/blobs"
	for _, p in ipairs(lines("find " .. q(base) .. " -name data -type f 2>/dev/null")) do
		local hex = p:match("/sha256/%x%x/(%x+)/data$")
		local d = layerup.digest_file(p)
		if not hex or d ~= "sha256:" .. hex then bad[#bad + 1] = p:sub(#root + 1) end
	end
	return bad
end
T.check_blobs = check_blobs

-- Every hash state left under _uploads/ vouches for the data below its
-- offset (issue 8, defect 7: never a wrong state on storage).  Proof: in a
-- scratch root holding only the data up to the offset and that state,
-- resume takes the exact state, and finish with the true digest of those
-- bytes succeeds without reading any of them back (a wrong state would
-- make finish re-hash the data).  Returns the number of states checked.
local function check_states(root, fail)
	local n = 0
	local pat = "find " .. q(root .. V2 .. "/repositories") .. " -path '*/_uploads/*/hashstates/sha256/*' -type f 2>/dev/null"
	for _, p in ipairs(lines(pat)) do
		local repo, uuid, off = p:match("/repositories/(.-)/_uploads/([%x-]+)/hashstates/sha256/(%d+)$")
		-- (Not a state: a temporary a kill left behind, purge's job.)
		local dir = p:match("^(.*)/hashstates/sha256/%d+$")
		local data, state = dir and read(dir .. "/data"), read(p)
		off = tonumber(off)
		if repo and data and state and off and off <= #data then
			n = n + 1
			local scratch = T.tmpdir("state")
			local sdir = scratch .. V2 .. "/repositories/" .. repo .. "/_uploads/" .. uuid
			sh("mkdir -p " .. q(sdir .. "/hashstates/sha256"))
			write(sdir .. "/startedat", "2000-01-01T00:00:00Z")
			write(sdir .. "/data", data:sub(1, off))
			write(sdir .. "/hashstates/sha256/" .. off, state)
			local store = assert(layerup.open(scratch))
			local u, err = store:resume(repo, uuid)
			if not u then
				fail(("hash state %d of %s: resume: %s"):format(off, uuid, tostring(err)))
			else
				local ok, e = u:finish(sha256(data:sub(1, off)))
				if not ok then
					fail(("hash state %d of %s: finish: %s"):format(off, uuid, tostring(e)), 7)
				elseif u:bytes_reread() ~= 0 then
					fail(("hash state %d of %s does not match the data (finish re-read %d bytes)")
						:format(off, uuid, u:bytes_reread()), 7)
				end
				u:close()
			end
			store:close()
			T.rm(scratch)
		end
	end
	return n
end
T.check_states = check_states

local function linked(store, repo, digest, size)
	local st = store:stat(digest, repo)
	return st ~= nil and st.size == size
end

-- The recovery of a fresh process after a crash or a failed operation:
-- finish what was being finished, cancel what was being cancelled, resume
-- and finish everything else; account lost acknowledged bytes.
local function recover(root, states, fig, fail, how)
	load_data()
	local store = assert(layerup.open(root))
	for _, label in ipairs { "u1", "u2", "u3" } do
		local st, want = states[label], T.DATA[label]
		if st and st.uuid then
			local u, err = store:resume(want.repo, st.uuid)
			local acked = math.max(st.acked or 0, st.acked_close or 0)
			if st.done == "finish" then
				-- A finish acknowledged while its cleanup failed: resume may
				-- reopen what is left, at the full size, and finish again
				-- completes the cleanup; anything else is a ghost.
				if u then
					local ok, e = true, nil
					if u:size() ~= #want.data then
						fig.ghosts = (fig.ghosts or 0) + 1
						fail(("%s: resume reopened a finished upload at size %d"):format(label, u:size()), 6)
					else
						ok, e = u:finish(want.digest, { size = #want.data })
						if not ok then fail(label .. ": finish again after a failed cleanup: " .. tostring(e), 6) end
					end
					u:close()
					if ok and store:resume(want.repo, st.uuid) then
						fail(label .. ": upload still there after finishing twice", 6)
					end
				end
				if not linked(store, want.repo, want.digest, #want.data) then
					fail(label .. ": acknowledged finish but blob not linked")
				end
			elseif st.done == "cancel" then
				if u then fail(label .. ": upload still there after an acknowledged cancel"); u:close() end
			elseif u then
				local size = u:size()
				if size < acked then
					fig.lost_bytes = fig.lost_bytes + (acked - size)
					fail(("%s: resumed at %d, %d bytes were acknowledged"):format(label, size, acked))
				end
				if size > (st.sent or 0) then
					fail(("%s: resumed at %d, only %d bytes were sent"):format(label, size, st.sent or 0))
				end
				local data = read(root .. V2 .. "/repositories/" .. want.repo .. "/_uploads/" .. st.uuid .. "/data")
				-- No data file: a finish moved it into blobs/ (its bytes
				-- are checked there) and resume reopened the upload to
				-- complete that finish.
				if data == nil and not (st.phase == "finish" and size == #want.data) then
					fail(label .. ": resumed an upload without data at size " .. size, 6)
				elseif data ~= nil and data ~= want.data:sub(1, size) then
					fig.wrong_data = fig.wrong_data + 1
					fail(label .. ": upload data differs from what was sent")
				end
				if want.ends == "cancel" or st.phase == "cancel" or how == "cancel" then
					local ok, e = u:cancel()
					if not ok then fail(label .. ": cancel after recovery: " .. tostring(e)) end
				else
					local ok, e = true, nil
					if size < #want.data then ok, e = u:write(want.data:sub(size + 1)) end
					if ok then ok, e = u:finish(want.digest, { size = #want.data }) end
					if not ok then
						fail(label .. ": finish after recovery: " .. tostring(e))
					elseif not linked(store, want.repo, want.digest, #want.data) then
						fail(label .. ": finished after recovery but blob not linked")
					end
				end
				u:close()
			elseif err.code == "BLOB_UPLOAD_UNKNOWN" then
				if st.phase == "finish" then
					-- A finish was under way: it must have completed, or be
					-- completable (defect 4).
					if not linked(store, want.repo, want.digest, #want.data) then
						fig.unfinishable = fig.unfinishable + 1
						fail(label .. ": finish interrupted and cannot be completed: " .. tostring(err), 4)
					end
				elseif st.phase ~= "cancel" then
					fig.lost_uploads = fig.lost_uploads + 1
					fig.lost_bytes = fig.lost_bytes + acked
					fail(label .. ": acknowledged upload lost: " .. tostring(err))
				end
			else
				fail(label .. ": resume after recovery: " .. tostring(err))
			end
		end
	end
	store:close()
end

-- Time passes: whatever is left under _uploads/ looks old, then one purge
-- and verify must leave a clean tree.
local function purge_verify(root, fail, defect)
	local reps = root .. V2 .. "/repositories"
	for _, p in ipairs(lines("find " .. q(reps) .. " -path '*/_uploads/*/startedat' -type f 2>/dev/null")) do
		write(p, "2000-01-01T00:00:00Z")
	end
	sh("find " .. q(reps) .. " -path '*/_uploads/*' -exec touch -h -d 2000-01-01 {} + 2>/dev/null")
	sh("find " .. q(reps) .. " -name '.lup~*' -exec touch -h -d 2000-01-01 {} + 2>/dev/null")
	local code, _, err = T.cli_here({ "purge", root, "--older-than", "1h" })
	if code ~= 0 then fail("purge after recovery exited " .. code .. ": " .. err) end
	local left = lines("find " .. q(reps) .. " -path '*/_uploads/*' -prune -print 2>/dev/null")
	if #left > 0 then fail("purge left an upload: " .. left[1]:sub(#root + 1)) end
	local temps = lines("find " .. q(root) .. " -name '.lup~*' 2>/dev/null")
	if #temps > 0 then fail("stale temporary left after purge: " .. temps[1]:sub(#root + 1), 10) end
	local out
	code, out = T.cli_here({ "verify", root })
	if code ~= 0 then
		fail("verify after one purge exited " .. code .. ": " .. out:gsub("\n", " "):sub(1, 300), defect)
	end
end

-- Parse the report lines a child wrote before it died.
local function parse_report(path)
	local states = {}
	for l in (read(path) or ""):gmatch("[^\n]+") do
		local label, ev, v = l:match("^(%S+) (%S+) (%S+)$")
		if label then
			local st = states[label] or {}
			states[label] = st
			if ev == "sent" or ev == "acked" or ev == "acked_close" then v = tonumber(v) end
			st[ev] = v
		end
	end
	return states
end

local function new_result(name)
	local r = { name = name, trials = 0, failures = {}, figures = {} }
	return r
end

local function failer(r, where)
	return function(msg, defect)
		r.failures[#r.failures + 1] = { msg = where .. ": " .. msg, defect = defect, trial = where }
	end
end

-- Trials with at least one failure.
function T.failed_trials(r)
	local seen, n = {}, 0
	for _, f in ipairs(r.failures) do
		if not seen[f.trial or f.msg] then
			seen[f.trial or f.msg] = true
			n = n + 1
		end
	end
	return n
end

-- The op trace of the uninterrupted lives (so crash points can be named).
function T.trace(fsync)
	local root = T.tmpdir("trace")
	setup_root(root)
	local d = layerup.fault(assert(layerup.filesystem(root, { fsync = fsync })), { record = true })
	local store = assert(layerup.open(d))
	T.lifecycle(store, function() end)
	store:close()
	local info = layerup.fault_info(d)
	d:close()
	T.rm(root)
	return info.trace
end

local function clock()
	local p = io.popen("date +%s.%N")
	local t = tonumber(p:read("l"))
	p:close()
	return t
end

-- Seconds an uninterrupted crash child takes (the span for timed kills).
function T.child_time(fsync)
	local dir = T.tmpdir("time")
	setup_root(dir .. "/root")
	local t0 = clock()
	sh(("%s %s/crash_child.lua %s %s %d 0 0 0 >/dev/null 2>&1"):format(LUA, q(HERE), q(dir .. "/root"),
		q(dir .. "/report"), fsync and 1 or 0))
	local t = clock() - t0
	T.rm(dir)
	return math.max(0.01, math.min(t, 2))
end

-- count operation numbers spread evenly over the trace, plus every one
-- whose "op path" matches a pattern of focus.
function T.pick(trace, count, focus)
	local n, ks, seen = #trace, {}, {}
	local function add(k) if not seen[k] then seen[k] = true; ks[#ks + 1] = k end end
	for i = 1, count do add(math.max(1, math.floor(i * n / count))) end
	for k, op in ipairs(trace) do
		for _, pat in ipairs(focus or {}) do
			if op:match(pat) then add(k) end
		end
	end
	table.sort(ks)
	return ks
end

-- The operations of finish past its checks: where a kill or a failure
-- leaves the most to repair.
T.FINISH_OPS = { "^move ", "^put_content .*/link$", "^remove .*/_uploads/" }

-- Crash torture -----------------------------------------------------------
--
-- opts: points = list of {crash_at=, crash_after=, torn=, fsync=, kill_after=}
-- (kill_after: seconds, a SIGKILL from outside at a random moment).
function T.crash_points(opts)
	local pts = {}
	local per = opts.boundaries -- "all" or a count per fsync mode
	local rnd = opts.random or 0
	local timed = opts.timed or 0
	math.randomseed(opts.seed or 1)
	for _, fsync in ipairs { false, true } do
		local trace = T.trace(fsync)
		local n = #trace
		local ks = {}
		if per == "all" then
			for k = 1, n do ks[#ks + 1] = k end
		else
			ks = T.pick(trace, per, opts.focus)
		end
		for _, k in ipairs(ks) do
			pts[#pts + 1] = { crash_at = k, fsync = fsync, op = trace[k] }
			if trace[k]:match("^writer%.write") then
				pts[#pts + 1] = { crash_at = k, torn = true, fsync = fsync, op = trace[k] }
			end
		end
		-- After the very last operation too.
		if per == "all" then
			pts[#pts + 1] = { crash_at = n, crash_after = true, fsync = fsync, op = trace[n] }
		end
		for _ = 1, rnd do
			local k = math.random(1, n)
			pts[#pts + 1] = { crash_at = k, crash_after = math.random() < 0.5, fsync = fsync,
				torn = math.random() < 0.5, op = trace[k] }
		end
		T.ops = T.ops or {}
		T.ops[fsync and "fsync" or "nofsync"] = n
	end
	-- Kills at random moments, from outside, across the whole run; with
	-- opts.total, as many as make the total.
	if opts.total then timed = math.max(timed, opts.total - #pts) end
	local span = { [false] = T.child_time(false), [true] = T.child_time(true) }
	for i = 1, timed do
		local fsync = i % 2 == 0
		pts[#pts + 1] = { kill_after = span[fsync] * (0.05 + math.random()), fsync = fsync, op = "timer" }
	end
	return pts
end

function T.crash(opts)
	local r = new_result("crash")
	local fig = { points = 0, killed = 0, completed = 0, wrong_blobs = 0, lost_bytes = 0,
		lost_uploads = 0, wrong_data = 0, unfinishable = 0, fsync = 0, states_checked = 0 }
	r.figures = fig
	local dir = T.tmpdir("crash")
	local root, report = dir .. "/root", dir .. "/report"
	for i, p in ipairs(T.crash_points(opts)) do
		setup_root(root)
		os.remove(report)
		local args = ("%s %s/crash_child.lua %s %s %d %d %d %d"):format(LUA, q(HERE), q(root), q(report),
			p.fsync and 1 or 0, p.crash_at or 0, p.crash_after and 1 or 0, p.torn and 1 or 0)
		local code
		if p.kill_after then
			-- Not `timeout -s KILL`: it kills its own group and returns
			-- before the child is reaped (and its locks released).
			code = sh(("exec 2>/dev/null; %s >/dev/null 2>%s/stderr & pid=$!; sleep %.3f; kill -9 $pid; wait $pid")
				:format(args, q(dir), p.kill_after))
		else
			-- The shell's own "Killed" notice goes to /dev/null.
			code = sh("exec 2>/dev/null; " .. args .. " >/dev/null 2>" .. q(dir) .. "/stderr")
		end
		local where = ("point %d (%s%s%s%s)"):format(i, p.op or "?", p.torn and ", torn" or "",
			p.crash_after and ", after" or "", p.fsync and ", fsync" or "")
		local fail = failer(r, where)
		fig.points = fig.points + 1
		if p.fsync then fig.fsync = fig.fsync + 1 end
		if code == 137 then
			fig.killed = fig.killed + 1
		elseif code == 0 then
			fig.completed = fig.completed + 1
			if not p.kill_after then fail("the crash point was never reached") end
		else
			fail("child exited " .. code .. ": " .. (read(dir .. "/stderr") or ""))
		end
		local bad = check_blobs(root)
		if #bad > 0 then
			fig.wrong_blobs = fig.wrong_blobs + #bad
			fail("partial or wrong blob visible after the crash: " .. bad[1])
		end
		fig.states_checked = fig.states_checked + check_states(root, fail)
		local unfinishable = fig.unfinishable
		recover(root, parse_report(report), fig, fail)
		bad = check_blobs(root)
		if #bad > 0 then
			fig.wrong_blobs = fig.wrong_blobs + #bad
			fail("wrong blob after recovery: " .. bad[1])
		end
		-- An upload that could not be finished leaves its blob unlinked.
		purge_verify(root, fail, fig.unfinishable > unfinishable and 4 or nil)
		r.trials = r.trials + 1
		if opts.progress then opts.progress(r) end
	end
	T.rm(dir)
	return r
end

-- I/O-error sweep ---------------------------------------------------------
--
-- For every operation k of the lives: fail it once (and, with persistent,
-- fail it and everything after), with retries off.  The run must end in a
-- clear error (or tolerate it: a failed cleanup is logged, not fatal), and
-- a fresh store must then resume and finish every upload (after a one-off
-- failure) or cancel it (after a persistent one), and purge + verify must
-- be clean.
local DOCUMENTED = {}
for _, c in ipairs { "BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN", "DIGEST_INVALID",
	"NAME_INVALID", "SIZE_INVALID", "RANGE_INVALID", "DENIED", "UNSUPPORTED", "PATH_NOT_FOUND",
	"INVALID_PATH", "INVALID_OFFSET", "LOCKED", "IO" } do
	DOCUMENTED[c] = true
end

function T.ioerr(opts)
	local r = new_result("ioerr")
	local fig = { runs = 0, errors = 0, tolerated = 0, lost_bytes = 0, lost_uploads = 0, wrong_data = 0,
		unfinishable = 0, wrong_blobs = 0, codes = {}, states_checked = 0 }
	r.figures = fig
	local trace = T.trace(false)
	local n = #trace
	local ks = {}
	if opts.ks == "all" then
		for k = 1, n do ks[#ks + 1] = k end
	else
		ks = T.pick(trace, opts.ks, opts.focus)
	end
	local dir = T.tmpdir("ioerr")
	local root = dir .. "/root"
	for _, mode in ipairs(opts.modes or { "once", "persistent" }) do
		for _, k in ipairs(ks) do
			setup_root(root)
			local fail = failer(r, ("op %d %s (%s)"):format(k, mode, trace[k]))
			local d = layerup.fault(assert(layerup.filesystem(root)),
				{ fail_at = k, fail_count = mode == "once" and 1 or 0 })
			local store = assert(layerup.open(d, { retry = false }))
			local states = {}
			local ok, e = pcall(T.lifecycle, store, function(label, ev, v)
				states[label] = states[label] or {}
				states[label][ev] = v
			end)
			store:close()
			local injected = layerup.fault_info(d).injected
			d:close()
			collectgarbage()
			fig.runs = fig.runs + 1
			if ok then
				fig.tolerated = fig.tolerated + 1
			elseif type(e) ~= "table" or not e.err then
				fail("raised instead of returning an error: " .. tostring(e))
			else
				fig.errors = fig.errors + 1
				local code = type(e.err) == "table" and e.err.code
				fig.codes[tostring(code)] = (fig.codes[tostring(code)] or 0) + 1
				if not DOCUMENTED[code] or (e.err.message or "") == "" then
					fail(e.phase .. ": unclear error: " .. tostring(e.err))
				end
				if injected == 0 then fail(e.phase .. ": failed without an injected fault: " .. tostring(e.err)) end
			end
			local bad = check_blobs(root)
			if #bad > 0 then
				fig.wrong_blobs = fig.wrong_blobs + #bad
				fail("partial or wrong blob visible: " .. bad[1])
			end
			fig.states_checked = fig.states_checked + check_states(root, fail)
			-- Both ways out: resume + finish after a one-off failure,
			-- cancel after a persistent one.
			local unfinishable = fig.unfinishable
			recover(root, states, fig, fail, mode == "persistent" and "cancel" or "finish")
			purge_verify(root, fail, fig.unfinishable > unfinishable and 4 or nil)
			r.trials = r.trials + 1
			if opts.progress then opts.progress(r) end
		end
	end
	T.rm(dir)
	return r
end

-- Race torture ------------------------------------------------------------
--
-- Each trial: one closed upload (started in 2000, so purge and max_age see
-- it as old), then two processes released at the same moment.
T.PAIRS = {
	{ "resume", "finish" }, { "resume", "cancel" }, { "write", "purge" }, { "write", "expire" },
	{ "finish", "cancel" }, { "resume", "resume" },
}
local ALLOWED = { LOCKED = true, BLOB_UPLOAD_UNKNOWN = true }
local RACE_DATA = bytes(9, 3000)

local function parse_race(path)
	local out = {}
	for l in (read(path) or ""):gmatch("[^\n]+") do
		local step, res, rest = l:match("^(%S+) (%S+) ?(.*)$")
		if step then out[step] = { res = res, val = rest } end
	end
	return out
end

function T.race(opts)
	local r = new_result("race")
	local fig = { trials = 0, ghosts = 0, double_success = 0, bad_codes = 0, lost_acked = 0, pairs = {} }
	r.figures = fig
	local dir = T.tmpdir("race")
	local root = dir .. "/root"
	local digest = sha256(RACE_DATA)
	assert(sh("mkfifo " .. q(dir .. "/ready")) == 0)
	math.randomseed(opts.seed or 2)
	for t = 1, opts.trials do
		local pair = T.PAIRS[(t - 1) % #T.PAIRS + 1]
		local pname = pair[1] .. "/" .. pair[2]
		fig.pairs[pname] = (fig.pairs[pname] or 0) + 1
		T.rm(root)
		sh("mkdir -p " .. q(root))
		local store = assert(layerup.open(root))
		local u = assert(store:start(REPO))
		assert(u:write(RACE_DATA))
		assert(u:close())
		local uuid = u.uuid
		local updir = root .. V2 .. "/repositories/" .. REPO .. "/_uploads/" .. uuid
		write(updir .. "/startedat", "2000-01-01T00:00:00Z")
		store:close()
		for _, f in ipairs { "a", "b" } do os.remove(dir .. "/" .. f .. ".out") end
		-- Two trials in three stall one storage operation of one side
		-- (up to 20 ms): the schedules a free race rarely takes.
		local stall_side = math.random(1, 3)
		local function child(tag, role)
			local at, us = 0, 0
			if (tag == "a" and stall_side == 1) or (tag == "b" and stall_side == 2) then
				at, us = math.random(1, 12), math.random(100, 20000)
			end
			return ("%s %s/race_child.lua %s %s %s %s %s %d %d %d 2>>%s/stderr"):format(LUA, q(HERE), q(root),
				role, uuid, digest, q(dir .. "/" .. tag), math.random(0, opts.spin or 20000), at, us, q(dir))
		end
		-- Both children read their stdin (one pipe) to EOF before acting;
		-- the writer ends once both have written their byte into the ready
		-- FIFO (held open read-write: no EOF until both bytes are in),
		-- releasing them together.
		local barrier = ("exec 3<>%s; timeout 60 head -c 2 <&3 >/dev/null"):format(q(dir .. "/ready"))
		sh(("(%s) | { %s & %s & wait; }"):format(barrier, child("a", pair[1]), child("b", pair[2])))
		local ra, rb = parse_race(dir .. "/a.out"), parse_race(dir .. "/b.out")
		local defect = (pair[2] == "expire") and 3 or 6
		local fail = failer(r, ("trial %d %s"):format(t, pname))
		local outs = { { pair[1], ra }, { pair[2], rb } }
		local success = {}
		for _, o in ipairs(outs) do
			local role, res = o[1], o[2]
			if not res.done then fail(role .. " did not finish: " .. (read(dir .. "/stderr") or "")) end
			for step, v in pairs(res) do
				if v.res == "err" then
					local code = v.val:match("^(%S+)")
					if not ALLOWED[code] then
						fig.bad_codes = fig.bad_codes + 1
						fail(("%s: %s failed with an undocumented code: %s"):format(role, step, v.val), defect)
					end
				end
			end
			if res.resume and res.resume.res == "ok" and tonumber(res.resume.val) ~= #RACE_DATA then
				fig.ghosts = fig.ghosts + 1
				fail(("%s: resume gave a handle of size %s on an upload of %d bytes"):format(role,
					res.resume.val, #RACE_DATA), defect)
			end
			if res.finish and res.finish.res == "ok" then success.finish = true end
			if res.cancel and res.cancel.res == "ok" then success.cancel = true end
			if res.purge and res.purge.res == "ok" and tonumber(res.purge.val) > 0 then success.purge = true end
			if res.expire and res.expire.res == "err" and res.expire.val:match("^BLOB_UPLOAD_UNKNOWN") then
				success.expire = true
			end
		end
		local function brief(res)
			local t = {}
			for step, v in pairs(res) do
				if step ~= "done" then t[#t + 1] = step .. "=" .. (v.res == "ok" and "ok" or v.val:match("^(%S+)")) end
			end
			table.sort(t)
			return table.concat(t, ",")
		end
		local outcome = pname .. " " .. brief(ra) .. " | " .. brief(rb)
		fig.outcomes = fig.outcomes or {}
		fig.outcomes[outcome] = (fig.outcomes[outcome] or 0) + 1
		if success.finish and success.cancel then
			fig.double_success = fig.double_success + 1
			fail("finish and cancel both succeeded", 6)
		end
		-- Ghosts: an upload directory without startedat or data.
		if exists(updir) then
			if not exists(updir .. "/startedat") or not exists(updir .. "/data") then
				fig.ghosts = fig.ghosts + 1
				fail("ghost upload: " .. table.concat(lines("cd " .. q(updir) .. " && find . | sort"), " "), defect)
			elseif success.finish or success.cancel then
				fig.ghosts = fig.ghosts + 1
				fail("upload re-created after it was removed", defect)
			end
		end
		-- A writer's acknowledged close on an upload that was removed
		-- while it held it (and not after) is lost data.
		local ack = ra.close and ra.close.res == "ok" and ra.write and tonumber(ra.write.val)
		if ack and exists(updir .. "/data") then
			local sz = #(read(updir .. "/data") or "")
			if sz < ack then
				fig.lost_acked = fig.lost_acked + 1
				fail(("acknowledged %d bytes, the upload has %d"):format(ack, sz), defect)
			end
		end
		if success.finish then
			local st = assert(layerup.open(root))
			if not linked(st, REPO, digest, #RACE_DATA) then fail("finish succeeded but the blob is not linked") end
			st:close()
		end
		fig.trials = fig.trials + 1
		r.trials = r.trials + 1
		if opts.progress then opts.progress(r) end
	end
	T.rm(dir)
	return r
end

-- Hostile trees -----------------------------------------------------------
--
-- Each case builds a tree in its own directory next to a "bait" directory
-- outside the root, runs CLI commands under `timeout`, and checks: every
-- command terminates, exits 0-3 with a clear message (never a Lua
-- traceback), and nothing outside the root changed.

local function snapshot(path)
	return table.concat(lines("cd " .. q(path) .. " 2>/dev/null && find . -printf '%p %y %s %T@\\n' | sort"), "\n")
end

local function pushfile(dir, n)
	local f = dir .. "/layer.bin"
	write(f, bytes(11, n or 5000))
	return f, sha256(bytes(11, n or 5000))
end

-- A root with one finished blob and one closed upload; returns its parts.
local function base_tree(root)
	sh("mkdir -p " .. q(root))
	local store = assert(layerup.open(root))
	local data = bytes(12, 4000)
	local u = assert(store:start("hostile/app"))
	assert(u:write(data))
	local blob = assert(u:finish(sha256(data)))
	local u2 = assert(store:start("hostile/app"))
	assert(u2:write(bytes(13, 1000)))
	assert(u2:close())
	store:close()
	local hex = blob.digest:match("sha256:(%x+)")
	return {
		digest = blob.digest, uuid = u2.uuid,
		blobdir = root .. V2 .. "/blobs/sha256/" .. hex:sub(1, 2) .. "/" .. hex,
		updir = root .. V2 .. "/repositories/hostile/app/_uploads/" .. u2.uuid,
		repodir = root .. V2 .. "/repositories/hostile/app",
	}
end

local function run_cmds(c, root, cmds, fail, secs)
	local timed_out = false
	for _, args in ipairs(cmds) do
		local a = {}
		for i, x in ipairs(args) do a[i] = x:gsub("ROOT", root):gsub("UUID", c.uuid or "")
			:gsub("DIGEST", c.digest or ""):gsub("FILE", c.file or "") end
		local code, out, err = T.cli(a, secs or 10)
		local what = table.concat(args, " ")
		if code == 124 or code == 137 then
			timed_out = true
			fail(what .. ": did not terminate (timeout)", c.defect_loop or c.defect)
		elseif code > 3 then
			fail(what .. ": exit status " .. code .. ": " .. err, c.defect)
		elseif err:match("stack traceback") then
			fail(what .. ": raised: " .. err:sub(1, 200), c.defect)
		elseif code == 1 and not err:match("^layerup: %u") then
			fail(what .. ": failed without a clear message: " .. err:sub(1, 200), c.defect)
		end
		if c.check_out then c.check_out(what, code, out, fail) end
	end
	return timed_out
end

T.HOSTILE = {
	{
		name = "symlinked hashstates dir", defect = 1,
		build = function(c, root, bait)
			sh("rm -rf " .. q(c.updir .. "/hashstates/sha256"))
			sh("mkdir -p " .. q(bait .. "/states") .. " && echo keep >" .. q(bait .. "/states/100"))
			sh("ln -s " .. q(bait .. "/states") .. " " .. q(c.updir .. "/hashstates/sha256"))
		end,
		cmds = { { "resume", "ROOT", "hostile/app", "UUID", "FILE" }, { "verify", "ROOT" },
			{ "purge", "ROOT", "--older-than", "0s" }, { "cancel", "ROOT", "hostile/app", "UUID" } },
	},
	{
		name = "symlinked upload data", defect = 1,
		build = function(c, root, bait)
			write(bait .. "/secret", "outside the root\n")
			sh("rm -f " .. q(c.updir .. "/data") .. " && ln -s " .. q(bait .. "/secret") .. " " .. q(c.updir .. "/data"))
		end,
		cmds = { { "resume", "ROOT", "hostile/app", "UUID", "FILE" }, { "uploads", "ROOT" },
			{ "finish", "ROOT", "hostile/app", "UUID", "DIGEST" }, { "verify", "ROOT" } },
	},
	{
		name = "symlinked blob data", defect = 1,
		build = function(c, root, bait)
			write(bait .. "/secret", "outside the root\n")
			sh("rm -f " .. q(c.blobdir .. "/data") .. " && ln -s " .. q(bait .. "/secret") .. " " .. q(c.blobdir .. "/data"))
		end,
		cmds = { { "cat", "ROOT", "hostile/app", "DIGEST" }, { "stat", "ROOT", "DIGEST" }, { "verify", "ROOT" } },
		check_out = function(what, _, out, fail)
			if out:match("outside the root") then fail(what .. ": printed a file outside the root", 1) end
		end,
	},
	{
		name = "symlinked repository dir", defect = 1,
		build = function(c, root, bait)
			sh("mkdir -p " .. q(bait .. "/repo"))
			sh("ln -s " .. q(bait .. "/repo") .. " " .. q(root .. V2 .. "/repositories/evil"))
		end,
		cmds = { { "push", "ROOT", "evil", "FILE" }, { "uploads", "ROOT" }, { "verify", "ROOT" },
			{ "purge", "ROOT", "--older-than", "0s" } },
	},
	{
		name = "symlinked blobs dir", defect = 1,
		build = function(c, root, bait)
			sh("mv " .. q(root .. V2 .. "/blobs") .. " " .. q(bait .. "/blobs"))
			sh("ln -s " .. q(bait .. "/blobs") .. " " .. q(root .. V2 .. "/blobs"))
		end,
		cmds = { { "push", "ROOT", "hostile/app", "FILE" }, { "verify", "ROOT" } },
	},
	{
		name = "loops l1 -> ., l2 -> .", defect = 2, slow = true,
		build = function(c, root)
			sh("ln -s . " .. q(root .. V2 .. "/repositories/l1"))
			sh("ln -s . " .. q(root .. V2 .. "/repositories/l2"))
		end,
		cmds = { { "verify", "ROOT" }, { "uploads", "ROOT" }, { "purge", "ROOT", "--older-than", "0s" } },
	},
	{
		name = "repositories/x -> bait tree with an old upload", defect = 2,
		build = function(c, root, bait)
			-- A registry-shaped tree outside the root: purge must not
			-- remove its upload, verify must not walk it.
			local up = bait .. "/victim/_uploads/" .. c.uuid
			sh("mkdir -p " .. q(up))
			write(up .. "/startedat", "2000-01-01T00:00:00Z")
			write(up .. "/data", "victim")
			sh("ln -s " .. q(bait) .. " " .. q(root .. V2 .. "/repositories/x"))
		end,
		cmds = { { "uploads", "ROOT" }, { "purge", "ROOT", "--older-than", "1h" }, { "verify", "ROOT" } },
	},
	{
		name = "repositories/x -> /", defect = 2, slow = true, read_only = true,
		build = function(c, root)
			sh("ln -s / " .. q(root .. V2 .. "/repositories/x"))
		end,
		-- Read-only commands only: with the defect the walk is the host.
		cmds = { { "uploads", "ROOT" }, { "verify", "ROOT" } },
		secs = 5,
	},
	{
		name = "symlinked root (allowed: resolved once)",
		link_root = true,
		build = function() end,
		cmds = { { "push", "ROOT", "hostile/app", "FILE" }, { "verify", "ROOT" },
			{ "purge", "ROOT", "--older-than", "0s" }, { "uploads", "ROOT" } },
		must_succeed = true,
	},
	{
		name = "file where _uploads belongs",
		build = function(c, root)
			sh("rm -rf " .. q(c.repodir .. "/_uploads") .. " && echo x >" .. q(c.repodir .. "/_uploads"))
		end,
		cmds = { { "push", "ROOT", "hostile/app", "FILE" }, { "uploads", "ROOT" }, { "verify", "ROOT" },
			{ "purge", "ROOT", "--older-than", "0s" } },
	},
	{
		name = "file where blobs belongs",
		build = function(c, root)
			sh("rm -rf " .. q(root .. V2 .. "/blobs") .. " && echo x >" .. q(root .. V2 .. "/blobs"))
		end,
		cmds = { { "push", "ROOT", "hostile/app", "FILE" }, { "verify", "ROOT" } },
	},
	{
		name = "file where hashstates belongs",
		build = function(c)
			sh("rm -rf " .. q(c.updir .. "/hashstates") .. " && echo x >" .. q(c.updir .. "/hashstates"))
		end,
		cmds = { { "resume", "ROOT", "hostile/app", "UUID", "FILE" }, { "uploads", "ROOT" },
			{ "purge", "ROOT", "--older-than", "0s" }, { "verify", "ROOT" } },
	},
	{
		name = "file where repositories belongs",
		build = function(_, root)
			sh("rm -rf " .. q(root .. V2 .. "/repositories") .. " && echo x >" .. q(root .. V2 .. "/repositories"))
		end,
		cmds = { { "push", "ROOT", "hostile/app", "FILE" }, { "uploads", "ROOT" }, { "verify", "ROOT" },
			{ "purge", "ROOT", "--older-than", "0s" } },
	},
	{
		name = "directory where upload data belongs",
		build = function(c)
			sh("rm -f " .. q(c.updir .. "/data") .. " && mkdir -p " .. q(c.updir .. "/data/x"))
		end,
		cmds = { { "resume", "ROOT", "hostile/app", "UUID", "FILE" }, { "uploads", "ROOT" },
			{ "finish", "ROOT", "hostile/app", "UUID", "DIGEST" }, { "verify", "ROOT" } },
	},
}

-- opts.skip(case) -> reason | nil: cases not to run (known hangs).
function T.hostile(opts)
	local r = new_result("hostile")
	r.figures = { cases = 0, skipped = 0, timeouts = 0 }
	for _, case in ipairs(T.HOSTILE) do
		local reason = opts and opts.skip and opts.skip(case)
		if reason then
			r.figures.skipped = r.figures.skipped + 1
			r.failures[#r.failures + 1] = { msg = case.name .. ": not run (" .. reason .. ")",
				defect = case.defect, skipped = true }
		else
			local dir = T.tmpdir("hostile")
			local real, bait = dir .. "/real", dir .. "/bait"
			sh("mkdir -p " .. q(bait))
			local c = base_tree(real)
			for k, v in pairs(case) do c[k] = c[k] or v end
			c.file = pushfile(dir)
			local root = real
			if case.link_root then
				root = dir .. "/link"
				sh("ln -s real " .. q(root))
			end
			case.build(c, real, bait)
			local before = snapshot(bait)
			local fail = failer(r, case.name)
			local nfail = #r.failures
			if run_cmds(c, root, case.cmds, fail, case.secs) then
				r.figures.timeouts = r.figures.timeouts + 1
			end
			if snapshot(bait) ~= before then
				fail("changed something outside the root", case.defect or 1)
			end
			if case.must_succeed then
				local code, out = T.cli({ "verify", root })
				if code ~= 0 then fail("verify on a symlinked root: " .. out:sub(1, 200)) end
			end
			-- Clean up even through loops and foreign permissions.
			sh("chmod -R u+rwX " .. q(dir) .. " 2>/dev/null")
			T.rm(dir)
			r.figures.cases = r.figures.cases + 1
			if #r.failures == nfail then r.figures.passed = (r.figures.passed or 0) + 1 end
		end
		r.trials = r.trials + 1
	end
	return r
end

-- Reporting ---------------------------------------------------------------

-- Split failures into known (defect in the `known` set) and real ones.
function T.split(r, known)
	local real, kn = {}, {}
	for _, f in ipairs(r.failures) do
		if f.defect and known[f.defect] then kn[#kn + 1] = f else real[#real + 1] = f end
	end
	return real, kn
end

function T.summary(r, max)
	local out = {}
	for i, f in ipairs(r.failures) do
		if i > (max or 10) then
			out[#out + 1] = ("  ... and %d more"):format(#r.failures - i + 1)
			break
		end
		out[#out + 1] = "  " .. f.msg .. (f.defect and (" [defect " .. f.defect .. "]") or "")
	end
	return table.concat(out, "\n")
end

return T
