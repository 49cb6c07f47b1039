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
-- spooling (read_body, before the upload is opened): the spooled temp
-- file is copied into the upload with upload:read_from (in the thread pool
-- when larger than inline_finish), so a client that goes away mid-body
-- stores nothing of it (a size limit that stops the copy keeps the pieces
-- written before the refused one).  Over HTTP/1.1 a client that goes
-- away mid-body keeps every byte received: the upload is closed at its new
-- size and resumes from there.
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
--   limit(repo) -> max blob bytes | nil        (checked before reading a body;
--                                               caps a chunked one as it arrives)
--   admit = layerup.admit.* rule               (store option, before the upload exists)
--   max_size, max_age, fsync                   (store options)
--   purge_interval = seconds | "1h"            periodic purge in worker 0
--   purge_older_than = seconds | "7d"          its cut-off (default max_age, else 7d)
--   purge = { every =, older_than = }          the same two keys, older spelling
--   log = "error_log" | "off" | function(event, fields)
--                                              engine events: nginx's error log
--                                              (default), nowhere, or a sink
--   access_log = "/path/access.json"           one JSON object per request
--                                              (with the request's engine events)
--   chunk_min, max_manifest, lock_wait         (layerup.oci options)
--   worker_header = true                       (X-Layerup-Worker: pid, for tests)
--   threads = false                            (finish inline, not in the thread pool)
--   inline_finish = bytes                      (uploads up to this size finish inline,
--                                               spooled HTTP/2 bodies up to it are
--                                               copied inline; default 4 MiB)
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
local layerup_core  -- layerup (valid_repo, valid_uuid)
local app           -- per worker

local function log_level(name)
	local t = { debug = ngx.DEBUG, info = ngx.INFO, notice = ngx.NOTICE, warn = ngx.WARN,
		error = ngx.ERR, err = ngx.ERR }
	return t[name or "info"] or ngx.INFO
end

-- Engine events -> error log, one key=value line each.
local function error_log_line(event, fields)
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

---------------------------------------------------------------------------
-- The JSON access log: one line per request (method, path, repository,
-- status, bytes, upload id, digest, duration, the request's engine
-- events), and one line per engine event outside a request.  Opened once
-- per worker (O_APPEND: workers share the file), buffered, one write(2)
-- per line flushed at the end of each request: page-cache writes of a few
-- hundred bytes, never a wait on the disk.

local json -- a private cjson instance
local access_fh, access_failed

local function json_encode(v)
	if not json then
		json = require("cjson").new()
		json.encode_invalid_numbers(true)
		json.encode_sparse_array(true)
	end
	local ok, s = pcall(json.encode, v)
	if not ok then
		return nil
	end
	return (s:gsub("\\/", "/")) -- cjson escapes "/"; a real backslash is always doubled
end

local function access_write(obj)
	local path = settings.conf.access_log
	if not path or access_failed then
		return
	end
	if not access_fh then
		local err
		access_fh, err = io.open(path, "a")
		if not access_fh then
			access_failed = true
			ngx.log(ngx.ERR, "layerup: cannot open access_log ", path, ": ", tostring(err))
			return
		end
		access_fh:setvbuf("full", 64 * 1024)
	end
	local line = json_encode(obj)
	if line then
		access_fh:write(line, "\n")
		access_fh:flush()
	end
end

local function utc_now()
	local t = ngx.now()
	local s = math.floor(t)
	return os.date("!%Y-%m-%dT%H:%M:%S", s) .. (".%03dZ"):format(math.floor((t - s) * 1000))
end

-- Plain copies (a field may be a table the engine reuses).
local function plain_fields(fields)
	local t = {}
	for k, v in pairs(fields or {}) do
		local ty = type(v)
		if ty == "number" or ty == "string" or ty == "boolean" then
			t[tostring(k)] = v
		else
			t[tostring(k)] = tostring(v)
		end
	end
	return t
end

-- The request's own record (ngx.ctx), or nil outside a request.
local function request_ctx()
	local phase = ngx.get_phase()
	if phase == "content" or phase == "log" or phase == "rewrite" or phase == "access" then
		local ctx = ngx.ctx
		ctx.layerup = ctx.layerup or {}
		return ctx.layerup
	end
	return nil
end

-- The engine's log policy in nginx: every sink configured.
local function engine_log(event, fields)
	local conf = settings.conf
	local mode = conf.log
	if mode == nil or mode == "error_log" then
		error_log_line(event, fields)
	elseif type(mode) == "function" then
		pcall(mode, event, fields)
	end
	if conf.access_log then
		local rc = request_ctx()
		if rc then
			local ev = rc.events or {}
			rc.events = ev
			if #ev < 100 then
				local f = plain_fields(fields)
				f.event = event
				ev[#ev + 1] = f
			end
		else
			local f = plain_fields(fields)
			f.ts, f.event, f.worker = utc_now(), event, ngx.worker.pid()
			access_write(f)
		end
	end
end
M._engine_log = engine_log

-- log_by_lua: the request's line (also for blob GETs that nginx served
-- itself after ngx.exec, whose ngx.ctx is gone: the original URI stays).
function M.log_request()
	if not settings.conf.access_log then
		return
	end
	local rc = ngx.ctx.layerup or {}
	local uri = ngx.var.request_uri or ""
	local path = uri:match("^[^?]*")
	local repo, kind, ref = path:match("^/v2/(.+)/(blobs)/uploads/([^/]*)$")
	if not repo then
		repo, kind, ref = path:match("^/v2/(.+)/(%a+)/([^/]+)$")
	end
	local t = {
		ts = utc_now(),
		method = ngx.req.get_method(),
		path = path,
		repository = rc.repo or repo,
		status = rc.status or ngx.status,
		bytes_in = rc.bytes_in or 0,
		bytes_out = tonumber(ngx.var.bytes_sent) or 0,
		upload = rc.uuid or (kind == "blobs" and ref and ref:match("^%x+%-%x+%-%x+%-%x+%-%x+$")) or nil,
		digest = rc.digest or (kind == "blobs" and ref and ref:find("^%w+:") and ref) or nil,
		duration_ms = math.floor((ngx.now() - ngx.req.start_time()) * 1000 + 0.5),
		worker = ngx.worker.pid(),
		events = rc.events,
	}
	if rc.bytes_out then -- a response written by hand on the raw socket
		t.bytes_out = rc.bytes_out
	end
	access_write(t)
end

-- The purge settings: {every, older_than} in seconds, or nil.
local function purge_settings(conf)
	local p = type(conf.purge) == "table" and conf.purge or {}
	local every = conf.purge_interval or p.every
	if not every then
		return nil
	end
	local units = require "layerup.units"
	local e, err = units.duration(every)
	assert(e and e > 0, "purge_interval: " .. tostring(err or "must be positive"))
	local older = conf.purge_older_than or p.older_than or conf.max_age or 7 * 86400
	local o, oerr = units.duration(older)
	assert(o, "purge_older_than: " .. tostring(oerr))
	return { every = e, older_than = o }
end

-- init{root=, config=, purge_socket=}: in the master, before the fork.
-- purge_socket ("unix:/path/layerup.sock") is where the purge timer sends
-- its request so that the purge runs in the thread pool (see below).
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
	local mode = settings.conf.log
	assert(mode == nil or mode == "error_log" or mode == "off" or type(mode) == "function",
		"log must be \"error_log\", \"off\" or a function(event, fields)")
	assert(settings.conf.access_log == nil or type(settings.conf.access_log) == "string",
		"access_log must be a path")
	settings.purge = purge_settings(settings.conf)
	settings.purge_socket = opts.purge_socket or settings.conf.purge_socket
	-- Load the modules in the master: shared copy-on-write by the workers.
	layerup_core = require "layerup"
	require "layerup.oci"
	-- Also the thread module: the inline fallbacks call it in the worker,
	-- which may not be able to read the Lua tree once it runs as ROOT's
	-- owner.
	require "layerup.worker"
end

-- With fsync on and the thread pool there, bodies are written through a
-- second store without fsync and made durable in a worker thread
-- (host.sync): the fsync of a PATCH's data never runs in the event loop.
local function threads_on()
	return settings.conf.threads ~= false and ngx.run_worker_thread ~= nil
end

local function open_app()
	if app then
		return app
	end
	local layerup = require "layerup"
	local oci = require "layerup.oci"
	local conf = settings.conf
	local function store_opts(fsync)
		return {
			admit = conf.admit, max_size = conf.max_size, max_age = conf.max_age,
			fsync = fsync, link = conf.link, retry = conf.retry, log = engine_log,
		}
	end
	local store = assert(layerup.open(settings.root, store_opts(conf.fsync)))
	local patch_store
	if conf.fsync and threads_on() then
		patch_store = assert(layerup.open(settings.root, store_opts(false)))
	end
	app = oci.new {
		store = store, patch_store = patch_store, authorize = conf.authorize, limit = conf.limit,
		chunk_min = conf.chunk_min, max_manifest = conf.max_manifest, lock_wait = conf.lock_wait,
	}
	return app
end

---------------------------------------------------------------------------
-- Work in the `layerup` thread pool (layerup.worker), replaying the
-- engine events it collected.  Returns ok, done, result: ok false when no
-- thread could run it (pool missing, out of VMs).

local function in_thread(op, ...)
	local ok, done, res, events = ngx.run_worker_thread("layerup", "layerup.worker", op,
		settings.root, settings.config, ...)
	if not ok then
		return false, done
	end
	for _, e in ipairs(events or {}) do
		engine_log(e.event, e.fields)
	end
	return true, done, res
end

-- in_thread, retrying while the upload is LOCKED (a status request
-- between the caller's close and the thread's resume) for up to
-- lock_wait seconds, with ngx.sleep between tries, as layerup.oci does.
local function in_thread_waiting(app, op, ...)
	local waited, delay = 0, 0.02
	while true do
		local ok, done, res = in_thread(op, ...)
		if not ok or done or type(res) ~= "table" or res.code ~= "LOCKED"
			or waited >= (app.lock_wait or 2) then
			return ok, done, res
		end
		ngx.sleep(delay)
		waited = waited + delay
		delay = math.min(delay * 2, 0.25)
	end
end

---------------------------------------------------------------------------
-- The periodic purge: a timer in worker 0 only (ngx.worker.id() == 0; a
-- respawned worker 0 gets the id again and re-arms it in init_worker).  A
-- shared-dict entry per tick keeps two workers 0 (old and new during a
-- reload) from both purging in one interval; the engine's upload locks
-- make an overlap harmless anyway (a held upload is skipped).  The purge
-- itself runs in the thread pool: run_worker_thread is unsafe in timers on
-- lua-nginx-module 0.10.23, so the timer sends a request to the purge
-- location on purge_socket (a unix socket under the prefix) whose content
-- handler hands the purge to a thread.  Without purge_socket it runs
-- inline in the timer.

local purge_running = false

local function purge_summary(how, started, res, err, timer)
	local f = { how = how, older_than = settings.purge.older_than, timer_worker = timer,
		duration_ms = math.floor((ngx.now() - started) * 1000 + 0.5) }
	if res then
		f.purged = #res
		f.kept = res.kept -- (thread only: counted from its purge.skip events)
	else
		f.error = type(err) == "table" and tostring(err.message or err.code) or tostring(err)
	end
	engine_log(res and "purge.run" or "purge.failed", f)
end

-- Run the purge here (a request in a content phase: in a thread).
local function purge_now(timer)
	ngx.update_time()
	local started = ngx.now()
	local older = settings.purge.older_than
	if threads_on() and ngx.get_phase() == "content" then
		local ok, done, res = in_thread("purge", older)
		if ok then
			purge_summary("thread", started, done and res or nil, not done and res or nil, timer)
			return done
		end
		ngx.log(ngx.WARN, "layerup: no worker thread (", tostring(done), "): purging inline")
	end
	local a = open_app()
	local res, err = a.store:purge { older_than = older }
	purge_summary("inline", started, res, err, timer)
	return res ~= nil
end

-- content_by_lua of the purge location (reachable on purge_socket only).
function M.purge_request()
	if not settings.purge then
		ngx.status = 404
		return ngx.exit(ngx.HTTP_OK)
	end
	local ok = purge_now(tonumber(ngx.var.arg_worker)) -- the timer's worker
	ngx.status = ok and 200 or 500
	ngx.header["Content-Type"] = "text/plain"
	ngx.print(ok and "purged\n" or "purge failed\n")
	return ngx.exit(ngx.HTTP_OK)
end

local function purge_tick(premature)
	if premature or purge_running then
		return
	end
	local every = settings.purge.every
	local dict = ngx.shared.layerup
	if dict and not dict:add("purge.tick", ngx.worker.pid(), every * 0.9) then
		return -- purged in this interval already (a reload's other worker 0)
	end
	purge_running = true
	local ok, err = pcall(function()
		local sockpath = settings.purge_socket
		local me = ngx.worker.pid()
		if not sockpath then
			purge_now(me)
			return
		end
		local sock = ngx.socket.tcp()
		sock:settimeout(3600 * 1000)
		local cok, cerr = sock:connect(sockpath)
		if not cok then
			ngx.log(ngx.WARN, "layerup: purge: cannot reach ", sockpath, " (", tostring(cerr), "): purging inline")
			purge_now(me)
			return
		end
		sock:send("POST /_layerup/purge?worker=" .. me .. " HTTP/1.0\r\nHost: layerup\r\nContent-Length: 0\r\n\r\n")
		local line = sock:receive("*l")
		sock:close()
		if not (line and line:find("^HTTP/%d%.%d 200")) then
			ngx.log(ngx.WARN, "layerup: purge request answered ", tostring(line))
		end
	end)
	purge_running = false
	if not ok then
		ngx.log(ngx.ERR, "layerup: purge timer: ", tostring(err))
	end
end

function M.init_worker()
	local id = ngx.worker.id() -- nil without a master process: one worker
	if not settings.purge or (id ~= nil and id ~= 0) then
		return
	end
	local ok, err = ngx.timer.every(settings.purge.every, purge_tick)
	if not ok then
		ngx.log(ngx.ERR, "layerup: cannot start the purge timer: ", tostring(err))
	end
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
	local body_taken -- host.body() was called
	local h2 = ngx.req.http_version() == 2

	local rc = request_ctx() or {} -- this request's access-log record
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

	local pump_body = not h2 and (chunked and pump_chunked or
		(content_length and content_length > 0 and pump_cl)) or nil
	if pump_body then
		function host.pump(u)
			body_taken = true
			local before = u:size()
			local ok, err, gone = pump_body(u)
			local after = u:size()
			if before and after and after > before then
				rc.bytes_in = (rc.bytes_in or 0) + (after - before)
			end
			return ok, err, gone
		end
	end

	local body_reader
	function host.body()
		body_taken = true
		local read, spooled = body_reader()
		if not read or not settings.conf.access_log then
			return read, spooled
		end
		if spooled then -- copied whole by read_from, not piece by piece
			rc.bytes_in = req.content_length
		end
		return function(max)
			local piece, err, partial = read(max)
			if piece then
				rc.bytes_in = (rc.bytes_in or 0) + #piece
			elseif partial then
				rc.bytes_in = (rc.bytes_in or 0) + #partial
			end
			return piece, err, partial
		end, spooled
	end
	function body_reader()
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
		if h2 then
			-- HTTP/2: ngx.req.socket() raises "http v2 not supported yet"
			-- on 0.10.23, so nginx de-frames the body and spools it (in
			-- memory up to client_body_buffer_size, else to a temp file
			-- under client_body_temp_path).  A small body is one piece; a
			-- spooled one is handed over as an open file, which pump()
			-- copies with upload:read_from (C buffers, no Lua strings),
			-- and which the reader below also serves piece by piece.
			ngx.req.read_body()
			local data = ngx.req.get_body_data()
			if data then
				local given = false
				return function()
					if given then return nil end
					given = true
					return data
				end
			end
			local file = ngx.req.get_body_file()
			if not file then
				return nil -- no body
			end
			local fh, ferr = io.open(file, "rb")
			if not fh then
				return function() return nil, "spooled body " .. file .. ": " .. tostring(ferr) end
			end
			local done = false
			return function(max)
				if done then return nil end
				local piece = fh:read(max or PIECE)
				if not piece then
					done = true
					fh:close()
					return nil
				end
				return piece
			end, fh
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

	-- A spooled HTTP/2 body above inline_finish is copied into the upload
	-- in the thread pool (layerup.worker.append: resume, check the offset,
	-- cap, read_from, close), after layerup.oci closed its handle; only
	-- the temp file's path and names cross.  LOCKED (a status request
	-- between the close and the thread's resume) is retried like oci.
	-- Inline (once, with a warning) when no thread can run it.
	local function offload_from(file)
		return function(repo, uuid, offset, limit)
			rc.repo, rc.uuid = repo, uuid
			local ok, done, res = in_thread_waiting(a, "append", repo, uuid, offset, file, limit)
			if not ok then
				ngx.log(ngx.WARN, "layerup: no worker thread (", tostring(done), "): copying the body inline")
				res, done = require("layerup.worker").append_with(a.store, repo, uuid, offset, file, limit)
				if not res then
					return nil, done
				end
			elseif not done then
				return nil, res
			else
				ngx.log(ngx.INFO, "layerup: copied ", res - offset, " bytes in a worker thread repo=", repo,
					" uuid=", uuid)
			end
			rc.bytes_in = res - offset
			return res
		end
	end

	-- HTTP/2: layerup.oci spools the body before it opens the upload (see
	-- host.body): a client that goes away mid-body then aborts a request
	-- that holds no upload lock.
	if h2 then
		function host.prefetch_body()
			body_taken = true
			ngx.req.read_body()
			local data = ngx.req.get_body_data()
			local file = not data and ngx.req.get_body_file()
			local size
			if file then
				local fh = io.open(file, "rb")
				if fh then
					size = fh:seek("end")
					fh:close()
				end
			end
			-- A body sent without Content-Length has a known size now:
			-- the size policy (limit) can judge it before it is stored.
			if req.content_length == nil then
				req.content_length = data and #data or size
			end
			if size and threads_on() and size > (settings.conf.inline_finish or 4 * 1024 * 1024) then
				return offload_from(file)
			end
		end
	end

	function host.respond(status, rh, body)
		-- HTTP/2, answered before a small body was read (416, 401, 413
		-- ...): take the body first.  Otherwise nginx ends the stream
		-- with RST_STREAM NO_ERROR while the client may still be sending,
		-- which is allowed but which clients such as curl 7.88 report as
		-- a failure (error 92) instead of giving the response.
		if h2 and not body_taken and content_length and content_length > 0
			and content_length <= 1024 * 1024 then
			body_taken = true
			ngx.req.read_body()
		end
		if settings.conf.worker_header then -- tests: which worker answered
			rh["X-Layerup-Worker"] = tostring(ngx.worker.pid())
		end
		rc.status = status
		rc.uuid = rh["Docker-Upload-UUID"] or rc.uuid
		rc.digest = rh["Docker-Content-Digest"] or rc.digest
		if raw then
			local out = { ("HTTP/1.1 %d %s\r\n"):format(status, REASONS[status] or "Status") }
			for k, v in pairs(rh) do
				out[#out + 1] = k .. ": " .. clean(v) .. "\r\n"
			end
			out[#out + 1] = "Connection: close\r\n\r\n"
			if type(body) == "string" then
				out[#out + 1] = body
			end
			local msg = table.concat(out)
			rc.bytes_out = #msg
			raw:send(msg)
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
		rc.repo, rc.uuid = repo, uuid
		-- Small blobs finish faster inline than the thread hop costs,
		-- unless fsync is on: then the syncs dominate.
		if not threads_on() or (not settings.conf.fsync
			and size and size <= (settings.conf.inline_finish or 4 * 1024 * 1024)) then
			return finish_inline(repo, uuid, dg)
		end
		local ok, done, res = in_thread("finish", repo, uuid, dg)
		if not ok then
			ngx.log(ngx.WARN, "layerup: no worker thread (", tostring(done), "): finishing inline")
			return finish_inline(repo, uuid, dg)
		end
		ngx.log(ngx.INFO, "layerup: finished in a worker thread repo=", repo, " uuid=", uuid)
		if done then
			return res
		end
		return nil, res
	end

	-- A resume re-hashes the data past the newest hash state (a worker
	-- killed mid-PATCH leaves up to the whole body unhashed): when that gap
	-- is longer than inline_finish, resume + close in a thread first (it
	-- re-hashes and saves a state at the full size), so the resume below
	-- is exact.  Costs a stat and a listing on the filesystem driver.
	function host.prepare(repo, uuid)
		if not threads_on() or not layerup_core.valid_repo(repo) or not layerup_core.valid_uuid(uuid) then
			return
		end
		local d = a.driver
		local base = "/docker/registry/v2/repositories/" .. repo .. "/_uploads/" .. uuid
		local st = d and d:stat(base .. "/data")
		if not st or st.dir then
			return
		end
		local newest = 0
		for _, p in ipairs(d:list(base .. "/hashstates/sha256") or {}) do
			local off = tonumber(p:match("/(%d+)$") or "")
			if off and off > newest and off <= st.size then newest = off end
		end
		if st.size - newest <= (settings.conf.inline_finish or 4 * 1024 * 1024) then
			return
		end
		local ok, done, res = in_thread("sync", repo, uuid)
		if ok and done then
			ngx.log(ngx.INFO, "layerup: re-hashed ", st.size - newest, " bytes in a worker thread repo=",
				repo, " uuid=", uuid)
		elseif ok and type(res) == "table" and res.code ~= "LOCKED" then
			ngx.log(ngx.WARN, "layerup: re-hash in a worker thread failed: ", tostring(res.message))
		end
	end

	-- With fsync on: make a body written through the store without fsync
	-- durable (resume + close on the fsync store: the data file, its
	-- directory) in a worker thread, retrying a LOCKED upload like oci.
	if a.patch_store then
		function host.sync(repo, uuid)
			rc.repo, rc.uuid = repo, uuid
			local ok, done, res = in_thread_waiting(a, "sync", repo, uuid)
			if not ok then
				ngx.log(ngx.WARN, "layerup: no worker thread (", tostring(done), "): syncing inline")
				local u, err = a.store:resume(repo, uuid)
				if not u then return nil, err end
				return u:close()
			end
			if not done then
				return nil, res
			end
			ngx.log(ngx.INFO, "layerup: synced in a worker thread repo=", repo, " uuid=", uuid)
			return true
		end
	end

	function host.log(level, event, fields)
		local parts = { event }
		for k, v in pairs(fields or {}) do
			parts[#parts + 1] = tostring(k) .. "=" .. tostring(v)
		end
		ngx.log(log_level(level), "layerup: ", table.concat(parts, " "))
		if settings.conf.access_log and rc.events ~= false then
			rc.events = rc.events or {}
			local f = plain_fields(fields)
			f.event = event
			rc.events[#rc.events + 1] = f
		end
	end

	a:handle(req, host)
	if raw then
		return ngx.exit(ngx.OK)
	end
	return ngx.exit(ngx.HTTP_OK)
end

M._chunked_reader = chunked_reader -- for tests
return M
