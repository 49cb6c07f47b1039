-- examples/nginx/policy.lua - policies for layerup.host.nginx (the
-- `config` of init{} in layerup.conf, or `layerup serve --config`).  Loaded
-- once in the nginx master; functions run in the workers.  Every function
-- here is plain Lua: no ngx.sleep or cosockets (the engine calls some of
-- them from C, where LuaJIT cannot yield).
local layerup = require "layerup"

local users = { ["Basic " .. "Y2k6c2VjcmV0"] = "ci" } -- ci:secret

return {
	-- Per request, before anything is read: true, or false, status, headers.
	authorize = function(ctx)
		if ctx.action == "pull" then
			return true
		end
		local who = users[ctx.headers.authorization or ""]
		if not who then
			return false, 401, { ["WWW-Authenticate"] = 'Basic realm="registry"' }
		end
		if ctx.repo and ctx.repo:find("^library/") and who ~= "admin" then
			return false, 403
		end
		return true
	end,

	-- Before an upload exists (store policy).
	admit = layerup.admit.deny { "tmp/*" },

	-- Largest blob per repository, checked against Content-Length before
	-- the body is read (413); max_size is the engine's hard limit for
	-- bodies of unknown length (chunked).
	limit = function(repo)
		return repo:find("^small/") and 64 * 1024 * 1024 or nil
	end,
	max_size = 16 * 1024 * 1024 * 1024,

	-- Uploads idle longer than this are gone on resume, and purged every
	-- hour by worker 0 (purge_older_than defaults to max_age).
	max_age = "7d",
	purge_interval = "1h",

	-- Data and hash states fsync'd before a PATCH or PUT is acknowledged
	-- (in worker threads, off the event loop).
	fsync = true,

	-- Engine events to nginx's error log (the default), and one JSON
	-- object per request to this file.
	log = "error_log",
	access_log = "/var/log/nginx/layerup.json",
}
