-- layerup.worker - runs in nginx worker-thread Lua VMs
-- (ngx.run_worker_thread): whole blocking operations off the event loop.
-- Only plain data crosses: the store is rebuilt from its root and the
-- config file path (cached per thread VM), the upload is resumed by name
-- (the request closed its handle first).  Thread VMs have no ngx.log, so
-- engine events are collected and returned for the caller to log.
-- Returns true, result, events | false, {code=, message=, transient=}, events.

local M = {}

local stores = {} -- root .. "\0" .. config -> store
local events      -- collector of the running call

local function collect(event, fields)
	if events then
		events[#events + 1] = { event = event, fields = fields }
	end
end

local function store_for(root, config)
	local key = root .. "\0" .. (config or "")
	local s = stores[key]
	if s then
		return s
	end
	local layerup = require "layerup"
	local conf = {}
	if config and config ~= "" then
		conf = assert(loadfile(config))()
	end
	local err
	s, err = layerup.open(root, {
		admit = conf.admit, max_size = conf.max_size, max_age = conf.max_age,
		fsync = conf.fsync, link = conf.link, retry = conf.retry, log = collect,
	})
	if not s then
		error(tostring(err))
	end
	stores[key] = s
	return s
end

local function plain_error(err)
	if type(err) == "table" then
		return { code = err.code, message = err.message, transient = err.transient,
			offset = tonumber(err.offset) }
	end
	return { code = "IO", message = tostring(err) }
end

-- append_with(store, repo, uuid, offset, path, limit): copy the file at
-- path (a request body nginx spooled) into the upload, which must still
-- be at offset (else RANGE_INVALID with .offset = its size: another
-- request appended since the caller closed it), capped at limit bytes
-- (nil: no cap of its own), then close it (durably with fsync on).
-- Returns the new size | nil, err.  On a failed copy the bytes before the
-- failing write stay and the upload is closed at that size.
function M.append_with(store, repo, uuid, offset, path, limit)
	local u, rerr = store:resume(repo, uuid)
	if not u then
		return nil, rerr
	end
	local size = u:size()
	if size ~= offset then
		u:close()
		return nil, { code = "RANGE_INVALID", offset = size,
			message = ("upload %s is at offset %d, not %d"):format(uuid, size, offset) }
	end
	if limit then
		u:set_max_size(limit)
	end
	local fh, ferr = io.open(path, "rb")
	if not fh then
		u:close()
		return nil, { code = "IO", message = "spooled body " .. path .. ": " .. tostring(ferr) }
	end
	local n, werr = u:read_from(fh)
	fh:close()
	size = u:size()
	local cok, cerr = u:close()
	if not n then
		return nil, werr
	end
	if not cok then
		return nil, cerr
	end
	return size
end

-- Run fn(store) on the thread's store with the engine's events collected:
-- true, result, events | false, plain error, events.
local function run(root, config, fn)
	events = {}
	local ok, res, err = pcall(function()
		return fn(store_for(root, config))
	end)
	local ev = events
	events = nil
	if not ok then
		return false, { code = "IO", message = tostring(res) }, ev
	end
	if not res then
		return false, plain_error(err), ev
	end
	return true, res, ev
end

-- finish(root, config, repo, uuid, digest)
function M.finish(root, config, repo, uuid, digest)
	local ok, res, ev = run(root, config, function(store)
		local u, rerr = store:resume(repo, uuid)
		if not u then
			return nil, rerr
		end
		local info, ferr = u:finish(digest)
		u:close()
		return info, ferr
	end)
	if ok then
		res = { digest = res.digest, size = res.size }
	end
	return ok, res, ev
end

-- sync(root, config, repo, uuid): resume + close on the store (with the
-- config's fsync): the upload's data file and its directory are fsync'd.
function M.sync(root, config, repo, uuid)
	return run(root, config, function(store)
		local u, rerr = store:resume(repo, uuid)
		if not u then
			return nil, rerr
		end
		local size = u:size()
		local cok, cerr = u:close()
		if not cok then
			return nil, cerr
		end
		return size
	end)
end

-- append(root, config, repo, uuid, offset, path, limit): append_with on
-- the thread's store; the new size.
function M.append(root, config, repo, uuid, offset, path, limit)
	return run(root, config, function(store)
		return M.append_with(store, repo, uuid, offset, path, limit)
	end)
end

-- purge(root, config, older_than): store:purge in a thread; the list of
-- purged uploads ({repo, uuid, started_at, size}), .kept = how many it left.
function M.purge(root, config, older_than)
	local ok, res, ev = run(root, config, function(store)
		return store:purge { older_than = older_than }
	end)
	if not ok then
		return ok, res, ev
	end
	local list = {}
	for i, r in ipairs(res) do
		list[i] = { repo = r.repo, uuid = r.uuid, started_at = r.started_at, size = r.size }
	end
	list.kept = 0 -- uploads it left (held by a writer, ...): purge.skip events
	for _, e in ipairs(ev) do
		if e.event == "purge.skip" then
			list.kept = list.kept + 1
		end
	end
	return true, list, ev
end

return M
