-- layerup.host.nginx - the nginx (lua-nginx-module / OpenResty) adapter for
-- layerup.oci.  nginx.conf:
--
--   init_by_lua_block { require("layerup.host.nginx").init{ root = "/srv/registry",
--                                                           config = "/etc/layerup.lua" } }
--   init_worker_by_lua_block { require("layerup.host.nginx").init_worker() }
--   location /v2 { client_max_body_size 0; lua_socket_buffer_size 256k;
--                  content_by_lua_block { require("layerup.host.nginx").serve() } }
--   location /_layerup_blobs/ { internal; alias /srv/registry/docker/registry/v2/blobs/;
--                               default_type application/octet-stream; }
--
-- Bodies are streamed into the upload in 64 KiB pieces, never buffered
-- whole: Content-Length bodies through ngx.req.socket(); chunked bodies
-- (docker, skopeo) through the raw socket and the de-chunker below, which
-- answers `Expect: 100-continue` itself and writes the response by hand
-- (the connection closes after it); HTTP/2 falls back to nginx's body
-- spooling (read_body).  A client that goes away mid-body keeps every byte
-- received: the upload is closed at its new size and resumes from there.
--
-- Stateless: every request resumes its upload from storage (any worker,
-- any machine on shared storage).  The store is opened once per worker,
-- after the fork.  Nothing Lua-side yields inside C: the engine's policies
-- (log, admit, link) are plain functions; waits for a LOCKED upload use
-- ngx.sleep from layerup.oci, outside the engine.
--
-- The config file (a Lua chunk returning a table, loaded once in the
-- master before the fork) may hold:
--   authorize(ctx) -> true | false, status, headers, message
--   limit(repo) -> max blob bytes | nil        (checked before reading a body)
--   admit = layerup.admit.* rule               (store option, before the upload exists)
--   max_size, max_age, fsync                   (store options)
--   purge = { every = seconds, older_than = seconds }   (one worker at a time)
--   chunk_min, max_manifest, lock_wait         (layerup.oci options)
--   worker_header = true                       (X-Layerup-Worker: pid, for tests)
--   threads = false                            (finish inline, not in the thread pool)
--   inline_finish = bytes                      (uploads up to this size finish inline;
--                                               default 4 MiB)
--   send_blob = false                          (blob GET through Lua, not sendfile)

local M = {}

local ngx = ngx
-- Bodies are received in 64 KiB pieces: they stay in the CPU cache from
-- the receive through the write and the hash (the engine hashes each on
-- its worker thread while the next is received: lup_upload_write_async).
-- Larger pieces cost more (measured, see README "nginx / OpenResty"):
-- LuaJIT allocates strings of 128 KiB and more with mmap, so every piece
-- would page-fault, and copies into bigger buffers leave the cache.
local PIECE = 64 * 1024

local settings = {} -- from init (master, before the fork)
local app           -- per worker

local function log_level(name)
	local t = { debug = ngx.DEBUG, info = ngx.INFO, notice = ngx.NOTICE, warn = ngx.WARN,
		error = ngx.ERR, err = ngx.ERR }
	return t[name or "info"] or ngx.INFO
end

-- Engine events -> error log, one key=value line each.
local function engine_log(event, fields)
	local parts = { event }
	for k, v in pairs(fields or {}) do
		parts[#parts + 1] = tostring(k) .. "=" .. tostring(v)
	end
	local lvl = ngx.INFO
	if event:find("failed", 1, true) or event:find("skip", 1, true) or event:find("retry", 1, true) then
		lvl = ngx.WARN
	end
	ngx.log(lvl, "layerup: ", table.concat(parts, " "))
end

function M.init(opts)
	settings.root = assert(opts.root, "layerup.host.nginx.init: root is required")
	settings.conf = {}
	settings.config = opts.config or ""
	if opts.config and opts.config ~= "" then
		local chunk = assert(loadfile(opts.config))
		local conf = chunk()
		assert(type(conf) == "table", opts.config .. " must return a table")
		settings.conf = conf
	end
	-- Load the modules in the master: shared copy-on-write by the workers.
	require "layerup"
	require "layerup.oci"
end

local function open_app()
	if app then
		return app
	end
	local layerup = require "layerup"
	local oci = require "layerup.oci"
	local conf = settings.conf
	local store = assert(layerup.open(settings.root, {
		admit = conf.admit, max_size = conf.max_size, max_age = conf.max_age,
		fsync = conf.fsync, link = conf.link, retry = conf.retry,
		log = conf.log or engine_log,
	}))
	app = oci.new {
		store = store, authorize = conf.authorize, limit = conf.limit,
		chunk_min = conf.chunk_min, max_manifest = conf.max_manifest, lock_wait = conf.lock_wait,
	}
	return app
end

-- A periodic purge of stale uploads in one worker at a time (a shared
-- dict entry elects it).  It runs inline in the timer: run_worker_thread
-- is unsafe in timers on lua-nginx-module 0.10.23.
function M.init_worker()
	local purge = settings.conf.purge
	if not purge or not purge.every then
		return
	end
	local dict = ngx.shared.layerup
	ngx.timer.every(purge.every, function(premature)
		if premature then return end
		if dict and not dict:add("purge", ngx.worker.pid(), purge.every * 0.9) then
			return
		end
		local a = open_app()
		local ok, err = a.store:purge { older_than = purge.older_than or 7 * 86400 }
		if not ok then
			ngx.log(ngx.WARN, "layerup: purge failed: ", tostring(err))
		end
	end)
end

---------------------------------------------------------------------------
-- Bodies.

-- Content-Length body from the request socket.
local function cl_reader(sock, length)
	local left = length
	return function(max)
		if left <= 0 then
			return nil
		end
		local n = max or PIECE
		if n > left then n = left end
		local data, err, partial = sock:receive(n)
		if not data then
			left = 0
			return nil, err or "read failed", partial
		end
		left = left - #data
		return data
	end
end

-- Chunked body from the raw socket: "<hex>[;ext]\r\n<data>\r\n" ... "0\r\n"
-- [trailers] "\r\n".  Framing errors end the body with an error (the bytes
-- of complete pieces before it are kept, like a disconnect).
local function chunked_reader(sock)
	local left = 0     -- bytes left in the current chunk
	local done = false
	local function fail(err, partial)
		done = true
		return nil, err, partial
	end
	return function(max)
		if done then
			return nil
		end
		if left == 0 then
			local line, err = sock:receive("*l")
			if not line then
				return fail(err or "read failed")
			end
			-- "<hex>" optionally followed by ";ext": nothing else.
			local hex, rest = line:match("^(%x+)(.*)$")
			if not hex or #hex > 12 or not (rest == "" or rest:find("^[ \t]*;")) then
				return fail("chunked framing error: bad chunk size line")
			end
			left = tonumber(hex, 16)
			if left == 0 then
				-- trailers until the empty line
				for _ = 1, 100 do
					local t, terr = sock:receive("*l")
					if not t then
						return fail(terr or "read failed")
					end
					if t == "" then
						done = true
						return nil
					end
				end
				return fail("chunked framing error: too many trailers")
			end
		end
		local n = max or PIECE
		if n > left then n = left end
		local data, err, partial = sock:receive(n)
		if not data then
			return fail(err or "read failed", partial)
		end
		left = left - #data
		if left == 0 then
			local crlf, cerr = sock:receive(2)
			if crlf ~= "\r\n" then
				-- The chunk's bytes arrived whole: keep them, then fail.
				return fail(crlf and "chunked framing error: missing CRLF after chunk"
					or (cerr or "read failed"), data)
			end
		end
		return data
	end
end

local REASONS = {
	[100] = "Continue", [200] = "OK", [201] = "Created", [202] = "Accepted", [204] = "No Content",
	[206] = "Partial Content", [400] = "Bad Request", [401] = "Unauthorized", [403] = "Forbidden",
	[404] = "Not Found", [405] = "Method Not Allowed", [413] = "Payload Too Large",
	[416] = "Range Not Satisfiable", [429] = "Too Many Requests", [500] = "Internal Server Error",
	[503] = "Service Unavailable",
}

-- Header values never carry CR/LF (names come from the grammar, but be
-- sure: a response header must never be split).
local function clean(v)
	return (tostring(v):gsub("[\r\n]", " "))
end

---------------------------------------------------------------------------
-- One request.

function M.serve()
	local a = open_app()
	local method = ngx.req.get_method()
	local uri = ngx.var.request_uri or "/"
	local path = uri:match("^[^?]*")
	local hdrs = ngx.req.get_headers(100)
	local headers = {}
	for k, v in pairs(hdrs) do
		if type(v) == "table" then v = v[1] end
		headers[k:lower()] = v
	end
	local query = ngx.req.get_uri_args(100)
	for k, v in pairs(query) do
		if type(v) == "table" then query[k] = v[1] end
		if v == true then query[k] = "" end
	end
	local te = (headers["transfer-encoding"] or ""):lower()
	local chunked = te:find("chunked", 1, true) ~= nil
	local cl = headers["content-length"]
	local content_length
	if cl then
		if not cl:match("^%d+$") or #cl > 15 then
			ngx.status = 400
			ngx.header["Content-Type"] = "application/json"
			ngx.print('{"errors":[{"code":"SIZE_INVALID","message":"bad Content-Length"}]}')
			return ngx.exit(ngx.HTTP_OK)
		end
		content_length = tonumber(cl)
	end
	local req = { method = method, path = path, query = query, headers = headers,
		content_length = not chunked and content_length or nil, chunked = chunked }
	local raw -- the raw socket once the chunked path took it
	local h2 = ngx.req.http_version() == 2

	local host = {}

	-- Stream the body straight into upload u (layerup.oci calls this
	-- instead of body() when set): Content-Length bodies in 64 KiB
	-- receives, chunked ones as raw bytes de-chunked in C
	-- (u:write_chunked).  Returns true; nil, err (a write failed); or
	-- nil, message, true (the body failed: client gone, timeout, framing),
	-- after writing every payload byte received.
	local function pump_cl(u)
		local sock, err = ngx.req.socket()
		if not sock then
			return nil, "no request socket: " .. tostring(err), true
		end
		local left = content_length
		while left > 0 do
			local data, rerr, partial = sock:receive(left < PIECE and left or PIECE)
			if not data then
				if partial and #partial > 0 then
					local ok, werr = u:write(partial)
					if not ok then return nil, werr end
				end
				return nil, rerr or "read failed", true
			end
			left = left - #data
			local ok, werr = u:write(data)
			if not ok then return nil, werr end
		end
		return true
	end

	local function pump_chunked(u)
		local sock, err = ngx.req.socket(true)
		if not sock then
			return nil, "no request socket: " .. tostring(err), true
		end
		raw = sock
		if (headers["expect"] or ""):lower() == "100-continue" then
			sock:send("HTTP/1.1 100 Continue\r\n\r\n")
		end
		while true do
			local data, rerr = sock:receiveany(PIECE)
			if not data then
				return nil, rerr or "read failed", true
			end
			local done, ferr = u:write_chunked(data)
			if done == nil then return nil, ferr end
			if done then return true end
			if ferr then return nil, ferr, true end
		end
	end

	if not h2 then
		if chunked then
			host.pump = pump_chunked
		elseif content_length and content_length > 0 then
			host.pump = pump_cl
		end
	end

	function host.body()
		if chunked and not h2 then
			local sock, err = ngx.req.socket(true)
			if not sock then
				return function() return nil, "no request socket: " .. tostring(err) end
			end
			raw = sock
			if (headers["expect"] or ""):lower() == "100-continue" then
				sock:send("HTTP/1.1 100 Continue\r\n\r\n")
			end
			return chunked_reader(sock)
		end
		if h2 or (chunked and h2) then
			-- HTTP/2: nginx spools the body; read it back in pieces.
			ngx.req.read_body()
			local data = ngx.req.get_body_data()
			local file = not data and ngx.req.get_body_file()
			local fh = file and io.open(file, "rb")
			local done = false
			return function(max)
				if done then return nil end
				if data then
					done = true
					return data
				end
				if not fh then
					done = true
					return nil
				end
				local piece = fh:read(max or PIECE)
				if not piece then
					fh:close()
					done = true
				end
				return piece
			end
		end
		if not content_length or content_length == 0 then
			return nil
		end
		local sock, err = ngx.req.socket()
		if not sock then
			return function() return nil, "no request socket: " .. tostring(err) end
		end
		return cl_reader(sock, content_length)
	end

	function host.respond(status, rh, body)
		if settings.conf.worker_header then -- tests: which worker answered
			rh["X-Layerup-Worker"] = tostring(ngx.worker.pid())
		end
		if raw then
			local out = { ("HTTP/1.1 %d %s\r\n"):format(status, REASONS[status] or "Status") }
			for k, v in pairs(rh) do
				out[#out + 1] = k .. ": " .. clean(v) .. "\r\n"
			end
			out[#out + 1] = "Connection: close\r\n\r\n"
			if type(body) == "string" then
				out[#out + 1] = body
			end
			raw:send(table.concat(out))
			return true
		end
		ngx.status = status
		for k, v in pairs(rh) do
			ngx.header[k] = clean(v)
		end
		if type(body) == "string" then
			ngx.print(body)
		elseif type(body) == "function" then
			for piece in body do
				ngx.print(piece)
				ngx.flush(true)
			end
		end
		return true
	end

	-- Blob GET/HEAD: nginx serves the file (sendfile, ranges, HEAD).
	if settings.conf.send_blob ~= false then
		function host.send_blob(ctx)
			if raw or ctx.size == 0 then
				return false
			end
			ngx.header["Docker-Content-Digest"] = ctx.digest
			ngx.header["Docker-Distribution-API-Version"] = "registry/2.0"
			local rel = ctx.path:match("^/docker/registry/v2/blobs/(.+)$")
			if not rel then
				return false
			end
			ngx.exec("/_layerup_blobs/" .. rel)
			return true
		end
	end

	function host.sleep(s)
		ngx.sleep(s)
	end

	-- finish (gap re-hash, verify, move, links) in the `layerup` thread
	-- pool; inline when the pool is missing or out of VMs.
	local function finish_inline(repo, uuid, dg)
		local u, err = a.store:resume(repo, uuid)
		if not u then return nil, err end
		local info, ferr = u:finish(dg)
		u:close()
		return info, ferr
	end
	function host.finish(repo, uuid, dg, size)
		-- Small blobs finish faster inline than the thread hop costs.
		if settings.conf.threads == false or not ngx.run_worker_thread
			or (size and size <= (settings.conf.inline_finish or 4 * 1024 * 1024)) then
			return finish_inline(repo, uuid, dg)
		end
		local ok, done, res, events = ngx.run_worker_thread("layerup", "layerup.worker", "finish",
			settings.root, settings.config, repo, uuid, dg)
		if not ok then
			ngx.log(ngx.WARN, "layerup: no worker thread (", tostring(done), "): finishing inline")
			return finish_inline(repo, uuid, dg)
		end
		ngx.log(ngx.INFO, "layerup: finished in a worker thread repo=", repo, " uuid=", uuid)
		for _, e in ipairs(events or {}) do
			engine_log(e.event, e.fields)
		end
		if done then
			return res
		end
		return nil, res
	end

	function host.log(level, event, fields)
		local parts = { event }
		for k, v in pairs(fields or {}) do
			parts[#parts + 1] = tostring(k) .. "=" .. tostring(v)
		end
		ngx.log(log_level(level), "layerup: ", table.concat(parts, " "))
	end

	a:handle(req, host)
	if raw then
		return ngx.exit(ngx.OK)
	end
	return ngx.exit(ngx.HTTP_OK)
end

M._chunked_reader = chunked_reader -- for tests
return M
