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
		return { code = err.code, message = err.message, transient = err.transient }
	end
	return { code = "IO", message = tostring(err) }
end

-- finish(root, config, repo, uuid, digest)
function M.finish(root, config, repo, uuid, digest)
	events = {}
	local ok, res, err = pcall(function()
		local store = store_for(root, config)
		local u, rerr = store:resume(repo, uuid)
		if not u then
			return nil, rerr
		end
		local info, ferr = u:finish(digest)
		u:close()
		return info, ferr
	end)
	local ev = events
	events = nil
	if not ok then
		return false, { code = "IO", message = tostring(res) }, ev
	end
	if not res then
		return false, plain_error(err), ev
	end
	return true, { digest = res.digest, size = res.size }, ev
end

return M
