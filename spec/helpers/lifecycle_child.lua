-- helpers/lifecycle_child.lua: the other process of the crash and race
-- specs (spec/finish_restart_spec.lua, spec/race_spec.lua).  Run with the
-- specs' LUA_PATH/LUA_CPATH:
--
--   lua lifecycle_child.lua kill ROOT REPO K DATA [UUID]
--       start an upload and write DATA (or resume UUID, which holds DATA),
--       print its uuid, then finish it through
--       a driver that SIGKILLs this process just before its K-th operation
--       (counted from the finish on); prints "done" when the finish ends
--       before operation K.
--   lua lifecycle_child.lua race ROOT REPO UUID OP READY GO [DIGEST]
--       create READY, wait for GO to exist, then do OP on the upload and
--       print one line: "<op> ok [size]" or "<op> <CODE>".  OP: finish,
--       cancel (resume then cancel), ccancel (resume, close, cancel through
--       the closed handle: the re-lock path), resume, purge (older_than 0),
--       expire (resume on a store with max_age 1).
local layerup = require "layerup"
local mw = require "layerup.middleware"

local mode = arg[1]

local function out(...)
	io.stdout:write(table.concat({ ... }, " "), "\n")
	io.stdout:flush()
end

-- This process's pid, read from /proc/self (no posix module needed).
local function mypid()
	local f = assert(io.open("/proc/self/stat"))
	local pid = f:read("l"):match("^(%d+)")
	f:close()
	return pid
end

local function exists(path)
	local f = io.open(path)
	if f then f:close() end
	return f ~= nil
end

if mode == "kill" then
	local root, repo, k, data = arg[2], arg[3], tonumber(arg[4]), arg[5]
	local armed, count, pid = false, 0, mypid()
	local d = mw.wrap(layerup.filesystem(root), function(op, path, call, ...)
		if armed then
			count = count + 1
			if count == k then
				io.stdout:flush()
				os.execute("kill -9 " .. pid)
				-- not reached; if it were, never do the op
				while true do end
			end
		end
		return call(...)
	end)
	local store = layerup.open(d)
	local u
	if arg[6] then
		u = assert(store:resume(repo, arg[6]))
	else
		u = assert(store:start(repo))
		assert(u:write(data))
	end
	out(u.uuid)
	local h = layerup.hasher("sha256")
	h:update(data)
	armed = true
	local res, err = u:finish(h:digest())
	armed = false
	out(res and "done" or ("failed " .. tostring(err and err.code)))
	os.exit(0)
elseif mode == "race" then
	local root, repo, uuid, op, ready, go, dg = arg[2], arg[3], arg[4], arg[5], arg[6], arg[7], arg[8]
	local store = layerup.open(layerup.filesystem(root), op == "expire" and { max_age = 1 } or nil)
	assert(io.open(ready, "w")):close()
	local deadline = os.time() + 30
	while not exists(go) do
		if os.time() > deadline then out(op, "NOGO") os.exit(1) end
	end
	local function code(err)
		return type(err) == "table" and tostring(err.code) or tostring(err)
	end
	-- Resume, waiting out LOCKED a little (another child holds it briefly).
	local function resume(s)
		local u, err
		for _ = 1, 200 do
			u, err = s:resume(repo, uuid)
			if u or code(err) ~= "LOCKED" then break end
		end
		return u, err
	end
	if op == "purge" then
		local list, err = store:purge { older_than = 0 }
		if not list then out(op, code(err)) os.exit(0) end
		local hit = false
		for _, e in ipairs(list) do hit = hit or e.uuid == uuid end
		out(op, hit and "ok" or "none")
		os.exit(0)
	end
	local u, err = resume(store)
	if not u then out(op, code(err)) os.exit(0) end
	if op == "resume" or op == "expire" then
		out(op, "ok", tostring(u:size()))
		u:close()
	elseif op == "finish" then
		local res, ferr = u:finish(dg)
		out(op, res and "ok" or code(ferr))
	elseif op == "cancel" then
		local ok, cerr = u:cancel()
		out(op, ok and "ok" or code(cerr))
	elseif op == "ccancel" then
		u:close()
		local ok, cerr = u:cancel()
		out(op, ok and "ok" or code(cerr))
	end
	os.exit(0)
end
error("lifecycle_child: unknown mode " .. tostring(mode))
