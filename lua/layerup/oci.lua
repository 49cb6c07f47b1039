-- layerup.oci - the OCI Distribution Specification v1.1 over a layerup
-- store, in the registry's v2 storage layout.  Host-agnostic: it never
-- touches `ngx`; a host (layerup.host.nginx, a test's fake host) hands it a
-- request table and a few functions:
--
--   local app = require("layerup.oci").new{ store = store, ... }
--   app:handle(req, host)
--
--   req  = { method = "PATCH", path = "/v2/a/b/blobs/uploads/<uuid>" (raw,
--            not percent-decoded), query = { digest = "..." } (decoded),
--            headers = { ["content-range"] = "0-9", ... } (lowercase keys),
--            content_length = n | nil, chunked = bool }
--   host.body()                   -> read() -> piece | nil (end) | nil, err, partial
--                                    [, file: the whole body in an open file, which
--                                    uploads copy with upload:read_from instead]
--   host.prefetch_body()          optional: take the whole body now (before an
--                                  upload is opened); host.body() then serves it.
--                                  It may return copy(repo, uuid, offset, limit):
--                                  the body is then copied into the upload
--                                  elsewhere (a worker thread), after this request
--                                  closed its handle: copy resumes the upload,
--                                  refuses one no longer at offset (RANGE_INVALID
--                                  with err.offset), caps it at limit (bytes or
--                                  nil), copies, closes it durably and returns
--                                  the new size | nil, err
--   host.pump(u)                  optional: stream the upload body into u itself
--                                 -> true | nil, write error | nil, message, true
--                                 (body failed; every byte received written)
--   host.respond(status, headers, body)   body: nil, a string, or an
--                                          iterator returning pieces then nil
--   host.send_blob(ctx) -> true   optional fast path for blob GET/HEAD:
--                                  ctx = {repo, digest, size, path, headers,
--                                  method}; false to let oci serve it
--   host.sleep(seconds)           optional (LOCKED back-off)
--   host.log(level, event, fields) optional
--   host.finish(repo, uuid, digest, size) optional: finish the (closed) upload
--                                  elsewhere, e.g. in a worker thread, so the
--                                  gap re-hash, verify and move block no
--                                  event loop; returns {digest, size} | nil, err
--   host.prepare(repo, uuid)      optional, before every resume: e.g. re-hash
--                                  a long gap (data past its newest hash
--                                  state, after a crash) elsewhere first
--   host.sync(repo, uuid)         optional, with opts.patch_store: make the
--                                  (closed) upload's bytes durable elsewhere
--                                  (a worker thread); true | nil, err
--
-- Options of new{}: store (required), authorize(ctx) -> true | false,
-- status, headers, message (ctx = {method, repo, action = "pull"|"push"|
-- "delete", headers}), limit(repo) -> max bytes per blob | nil, max_manifest
-- (bytes, default 4 MiB), chunk_min (OCI-Chunk-Min-Length), lock_wait
-- (seconds to retry a LOCKED upload, default 2), patch_store (a store on
-- the same root without fsync: PATCH and PUT bodies are written and closed
-- through it, then host.sync / host.finish make them durable elsewhere, so
-- the fsync never runs where the request does).
--
-- Upload URLs carry only the uuid: every request resumes the upload from
-- storage, so any worker on any machine continues it.  Lua 5.1 syntax plus
-- goto: runs unchanged on Lua 5.4 and LuaJIT.

local M = { _VERSION = "0.1" }
local mt = { __index = M }

local json_ok, cjson = pcall(require, "cjson.safe")
if not json_ok then
	json_ok, cjson = pcall(require, "cjson")
end
local layerup = require "layerup"

local V2 = "/docker/registry/v2"
local API_VERSION = "registry/2.0"
local MANIFEST_MAX = 4 * 1024 * 1024
local PIECE = 64 * 1024

local concat, floor, tostring, tonumber = table.concat, math.floor, tostring, tonumber

M.MEDIA = {
	oci_manifest = "application/vnd.oci.image.manifest.v1+json",
	oci_index = "application/vnd.oci.image.index.v1+json",
	docker_manifest = "application/vnd.docker.distribution.manifest.v2+json",
	docker_list = "application/vnd.docker.distribution.manifest.list.v2+json",
}
local INDEX_TYPES = {
	[M.MEDIA.oci_index] = true,
	[M.MEDIA.docker_list] = true,
}

-- Spec error codes -> HTTP status.
M.STATUS = {
	BLOB_UNKNOWN = 404, BLOB_UPLOAD_INVALID = 404, BLOB_UPLOAD_UNKNOWN = 404,
	DIGEST_INVALID = 400, MANIFEST_BLOB_UNKNOWN = 400, MANIFEST_INVALID = 400,
	MANIFEST_UNKNOWN = 404, NAME_INVALID = 400, NAME_UNKNOWN = 404,
	SIZE_INVALID = 400, UNAUTHORIZED = 401, DENIED = 403, UNSUPPORTED = 405,
	TOOMANYREQUESTS = 429, RANGE_INVALID = 416, UNKNOWN = 500, UNAVAILABLE = 503,
	TAG_INVALID = 400,
}

---------------------------------------------------------------------------
-- JSON output: a small encoder (arrays are tables marked with M.array).

local array_mt = {}
function M.array(t)
	return setmetatable(t or {}, array_mt)
end

local escapes = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
	["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }
local function json_string(s)
	return '"' .. s:gsub('[%c"\\]', function(c)
		return escapes[c] or ("\\u%04x"):format(c:byte())
	end) .. '"'
end

local function encode(v, out)
	local t = type(v)
	if t == "string" then
		out[#out + 1] = json_string(v)
	elseif t == "number" then
		if v ~= v or v == math.huge or v == -math.huge then
			out[#out + 1] = "null"
		elseif v == floor(v) and v > -2 ^ 53 and v < 2 ^ 53 then
			out[#out + 1] = ("%.0f"):format(v)
		else
			out[#out + 1] = ("%.17g"):format(v)
		end
	elseif t == "boolean" then
		out[#out + 1] = tostring(v)
	elseif t == "table" then
		if getmetatable(v) == array_mt or (v[1] ~= nil) then
			out[#out + 1] = "["
			for i = 1, #v do
				if i > 1 then out[#out + 1] = "," end
				encode(v[i], out)
			end
			out[#out + 1] = "]"
		else
			local keys = {}
			for k in pairs(v) do
				keys[#keys + 1] = tostring(k)
			end
			table.sort(keys)
			out[#out + 1] = "{"
			for i, k in ipairs(keys) do
				if i > 1 then out[#out + 1] = "," end
				out[#out + 1] = json_string(k)
				out[#out + 1] = ":"
				encode(v[k], out)
			end
			out[#out + 1] = "}"
		end
	else
		out[#out + 1] = "null"
	end
end

function M.json(v)
	local out = {}
	encode(v, out)
	return concat(out)
end

local function json_decode(s)
	if not json_ok then
		return nil, "no JSON decoder (lua-cjson) installed"
	end
	local ok, v, err = pcall(cjson.decode, s)
	if not ok then
		return nil, v
	end
	if v == nil then
		return nil, err or "invalid JSON"
	end
	return v
end

---------------------------------------------------------------------------
-- Grammar checks (before any path is built).

local DIGEST_HEX = { sha256 = 64, sha384 = 96, sha512 = 128 }

function M.valid_digest(s)
	if type(s) ~= "string" then return false end
	local alg, hex = s:match("^([a-z0-9]+):([0-9a-f]+)$")
	return alg ~= nil and DIGEST_HEX[alg] == #hex
end

function M.valid_tag(s)
	return type(s) == "string" and #s <= 128 and s:match("^[%w_][%w_.%-]*$") ~= nil
end

local function valid_name(s)
	return type(s) == "string" and #s <= 255 and layerup.valid_repo(s)
end
M.valid_name = valid_name

local function digest_parts(dg)
	return dg:match("^([^:]+):(.+)$")
end

local function blob_data_path(dg)
	local alg, hex = digest_parts(dg)
	return ("%s/blobs/%s/%s/%s/data"):format(V2, alg, hex:sub(1, 2), hex)
end
M.blob_data_path = blob_data_path

local function repo_path(name)
	return V2 .. "/repositories/" .. name
end

local function revision_link(name, dg)
	local alg, hex = digest_parts(dg)
	return ("%s/_manifests/revisions/%s/%s/link"):format(repo_path(name), alg, hex)
end

local function tag_dir(name, tag)
	return repo_path(name) .. "/_manifests/tags/" .. tag
end

---------------------------------------------------------------------------
-- Responses.

local App = {}
App.__index = App

function M.new(opts)
	assert(type(opts) == "table" and opts.store, "layerup.oci.new: opts.store is required")
	local self = setmetatable({
		store = opts.store,
		patch_store = opts.patch_store,
		driver = opts.store:driver(),
		authorize = opts.authorize,
		limit = opts.limit,
		max_manifest = opts.max_manifest or MANIFEST_MAX,
		chunk_min = opts.chunk_min,
		lock_wait = opts.lock_wait or 2,
	}, App)
	return self
end
mt.__call = M.new

-- One request's context: what every response needs.
local function ctx_new(app, req, host)
	return { app = app, req = req, host = host }
end

local function respond(c, status, headers, body)
	headers = headers or {}
	headers["Docker-Distribution-API-Version"] = API_VERSION
	if body == nil and headers["Content-Length"] == nil then
		headers["Content-Length"] = "0"
	end
	if c.req.method == "HEAD" and type(body) == "string" then
		headers["Content-Length"] = headers["Content-Length"] or tostring(#body)
		body = nil
	end
	c.responded = true
	return c.host.respond(status, headers, body)
end

local function fail(c, code, message, status, headers, detail)
	headers = headers or {}
	local body = M.json { errors = M.array { { code = code, message = message or code, detail = detail } } }
	headers["Content-Type"] = "application/json"
	headers["Content-Length"] = tostring(#body)
	return respond(c, status or M.STATUS[code] or 500, headers, body)
end
M.fail = fail

-- Engine error -> OCI error.
local ENGINE = {
	BLOB_UNKNOWN = "BLOB_UNKNOWN", BLOB_UPLOAD_INVALID = "BLOB_UPLOAD_INVALID",
	BLOB_UPLOAD_UNKNOWN = "BLOB_UPLOAD_UNKNOWN", DIGEST_INVALID = "DIGEST_INVALID",
	NAME_INVALID = "NAME_INVALID", SIZE_INVALID = "SIZE_INVALID",
	RANGE_INVALID = "RANGE_INVALID", DENIED = "DENIED", UNSUPPORTED = "UNSUPPORTED",
	PATH_NOT_FOUND = "BLOB_UNKNOWN", INVALID_PATH = "NAME_INVALID",
	INVALID_OFFSET = "RANGE_INVALID", LOCKED = "TOOMANYREQUESTS",
}

local function fail_engine(c, err, fallback, headers)
	local code = type(err) == "table" and err.code or nil
	local message = type(err) == "table" and err.message or tostring(err)
	local oci_code = ENGINE[code] or fallback or "UNKNOWN"
	local status = type(err) == "table" and err.status or nil
	if oci_code == "UNKNOWN" and type(err) == "table" and err.transient then
		oci_code = "UNAVAILABLE"
	end
	if oci_code == "TOOMANYREQUESTS" then
		headers = headers or {}
		headers["Retry-After"] = "1"
	end
	if oci_code == "UNKNOWN" and c.host.log then
		c.host.log("error", "oci.error", { code = code, message = message })
	end
	return fail(c, oci_code, message, status, headers)
end

---------------------------------------------------------------------------
-- Helpers on uploads.

local function upload_location(name, uuid)
	return "/v2/" .. name .. "/blobs/uploads/" .. uuid
end

local function range_header(size)
	return "0-" .. tostring(size > 0 and size - 1 or 0)
end

local function upload_headers(name, uuid, size, app)
	local h = {
		["Location"] = upload_location(name, uuid),
		["Range"] = range_header(size),
		["Docker-Upload-UUID"] = uuid,
	}
	if app.chunk_min then
		h["OCI-Chunk-Min-Length"] = tostring(app.chunk_min)
	end
	return h
end

-- Resume, retrying LOCKED for up to lock_wait seconds when the host can
-- sleep without blocking (another request of the same upload finishing).
local function resume(c, name, uuid, store)
	local waited, delay = 0, 0.05
	store = store or c.app.store
	if c.host.prepare then
		c.host.prepare(name, uuid)
	end
	while true do
		local u, err = store:resume(name, uuid)
		if u or type(err) ~= "table" or err.code ~= "LOCKED" or not c.host.sleep
			or waited >= c.app.lock_wait then
			return u, err
		end
		c.host.sleep(delay)
		waited = waited + delay
		delay = math.min(delay * 2, 0.5)
	end
end

-- Copy the request body into u.  Returns true, or nil, err, gone where
-- gone says the client went away (every received byte is written).
local function write_failed(werr)
	if type(werr) == "table" and werr.code == "SIZE_INVALID" then
		return nil, { code = "SIZE_INVALID", message = werr.message, status = 413 }
	end
	return nil, werr
end

local function pump(c, u)
	if c.host.pump then
		-- The host streams the body into u itself (host.pump(u) -> true |
		-- nil, write error | nil, message, true when the body failed).
		local ok, err, gone = c.host.pump(u)
		if ok then
			return true
		end
		if gone then
			return nil, { code = "BLOB_UPLOAD_INVALID", message = "request body: " .. tostring(err) }, true
		end
		return write_failed(err)
	end
	local read, file
	if c.host.body then
		read, file = c.host.body()
	end
	if not read then
		return true
	end
	if file then
		-- The host has the whole body in a file (nginx's HTTP/2 spooling):
		-- the engine copies it without Lua strings.
		local n, werr = u:read_from(file)
		file:close()
		if not n then
			return write_failed(werr)
		end
		return true
	end
	while true do
		local piece, err, partial = read(PIECE)
		if piece == nil then
			if err == nil then
				return true
			end
			if partial and #partial > 0 then
				local ok, werr = u:write(partial)
				if not ok then
					return write_failed(werr)
				end
			end
			return nil, { code = "BLOB_UPLOAD_INVALID", message = "request body: " .. tostring(err) }, true
		end
		if #piece > 0 then
			local ok, werr = u:write(piece)
			if not ok then
				return write_failed(werr)
			end
		end
	end
end

-- A host that takes a body whole before handing it over (nginx's HTTP/2
-- spooling) reads it here, before an upload is opened: a client that goes
-- away meanwhile ends the request where no upload is held (else the
-- aborted request would keep its upload locked until a garbage collection).
local function prefetch(c)
	if c.host.prefetch_body then
		c.offload = c.host.prefetch_body()
	end
end

-- "start-end" (optionally "bytes " / "bytes=" prefixed) -> start, end.
local function parse_range(s)
	if type(s) ~= "string" then return nil end
	local a, b = s:match("^%s*bytes[ =]?(%d+)%-(%d+)%s*$")
	if not a then
		a, b = s:match("^%s*(%d+)%-(%d+)%s*$")
	end
	if not a or #a > 15 or #b > 15 then return nil end
	return tonumber(a), tonumber(b)
end
M.parse_range = parse_range

-- Content-Range / Content-Length / size limit checks before the body is
-- read.  Returns true, or responds and returns nil.  The repository's
-- limit (c.limit) also caps upload u (when given) for the body to come: a
-- body of unknown length (chunked, or lying) stops there with 413 and the
-- upload keeps what it had before the refused write, resumable.
local function check_body(c, name, uuid, size, u)
	local req = c.req
	local cr = req.headers["content-range"]
	local cl = req.content_length
	if cr then
		local a, b = parse_range(cr)
		if not a or a > b or a ~= size then
			return fail(c, "RANGE_INVALID",
				("Content-Range %s does not continue the upload at offset %d"):format(cr, size),
				416, uuid and upload_headers(name, uuid, size, c.app) or nil) and nil
		end
		if cl and cl ~= b - a + 1 then
			return fail(c, "SIZE_INVALID",
				("Content-Length %d does not match Content-Range %s"):format(cl, cr)) and nil
		end
	end
	local limit = c.app.limit and c.app.limit(name)
	c.limit = limit
	if limit and cl and size + cl > limit then
		return fail(c, "SIZE_INVALID",
			("blob would be %d bytes, more than the %d allowed in %s"):format(size + cl, limit, name),
			413) and nil
	end
	if limit and u then
		u:set_max_size(limit)
	end
	return true
end

-- Copy the body elsewhere (c.offload, from host.prefetch_body): u is
-- closed first, so that the copy can resume it.  Returns the new size, or
-- nil, err.
local function offload(c, name, uuid, u)
	local size = u:size()
	local ok, err = u:close()
	if not ok then
		return nil, err
	end
	return c.offload(name, uuid, size, c.limit)
end

-- Answer a failed offload: 416 with the current Range when the upload
-- moved on meanwhile (another request appended), 413 past the size limit.
local function fail_offload(c, name, uuid, err)
	if type(err) == "table" and err.code == "RANGE_INVALID" and tonumber(err.offset) then
		return fail(c, "RANGE_INVALID", err.message, 416, upload_headers(name, uuid, tonumber(err.offset), c.app))
	end
	local _, e = write_failed(err)
	return fail_engine(c, e)
end

-- Finish the closed upload (in the host when it offers it), or nil, err.
-- 201 for a blob now in the repository (info: finish's {digest, size}).
local function blob_created(c, name, info)
	return respond(c, 201, {
		["Location"] = "/v2/" .. name .. "/blobs/" .. info.digest,
		["Docker-Content-Digest"] = info.digest,
	})
end

local function finish_closed(c, name, uuid, dg, size)
	if c.host.finish then
		return c.host.finish(name, uuid, dg, size)
	end
	local u, err = resume(c, name, uuid)
	if not u then
		return nil, err
	end
	local info, ferr = u:finish(dg)
	u:close()
	return info, ferr
end

-- Remove a closed upload (best effort: a failed monolithic push).
local function cancel_closed(c, name, uuid)
	local u = resume(c, name, uuid)
	if u then
		u:cancel()
		u:close()
	end
end

---------------------------------------------------------------------------
-- Handlers.

local H = {}

function H.base(c)
	return respond(c, 200, { ["Content-Type"] = "application/json", ["Content-Length"] = "2" }, "{}")
end

-- POST /v2/<name>/blobs/uploads/
function H.upload_start(c, name)
	local app, q = c.app, c.req.query
	-- Cross-repository mount; automatic when `from` is absent.
	if q.mount then
		if M.valid_digest(q.mount) then
			local info
			if q.from and valid_name(q.from) then
				info = app.store:mount(q.from, name, q.mount)
			elseif not q.from then
				local st = app.store:stat(q.mount)
				if st and app.store:link(name, st.digest) then
					info = st
				end
			end
			if info then
				return blob_created(c, name, info)
			end
		end
		-- Otherwise a normal upload (the spec's fallback).
	end
	if q.digest and not M.valid_digest(q.digest) then
		return fail(c, "DIGEST_INVALID", "invalid digest " .. q.digest)
	end
	if q.digest and not check_body(c, name, nil, 0) then
		return
	end
	if q.digest then
		prefetch(c)
	end
	local u, err = app.store:start(name)
	if not u then
		return fail_engine(c, err)
	end
	local uuid = u.uuid
	if q.digest and c.limit then
		u:set_max_size(c.limit)
	end
	if q.digest and c.offload then -- monolithic, the body copied elsewhere
		local size, oerr = offload(c, name, uuid, u)
		if not size then
			cancel_closed(c, name, uuid)
			return fail_offload(c, name, uuid, oerr)
		end
		local info, ferr = finish_closed(c, name, uuid, q.digest, size)
		if not info then
			cancel_closed(c, name, uuid)
			return fail_engine(c, ferr)
		end
		return blob_created(c, name, info)
	end
	if q.digest then -- monolithic
		local ok, perr = pump(c, u)
		if not ok then
			u:cancel()
			return fail_engine(c, perr)
		end
		local info, ferr = u:finish(q.digest)
		if not info then
			u:cancel()
			return fail_engine(c, ferr)
		end
		u:close()
		return blob_created(c, name, info)
	end
	u:close()
	return respond(c, 202, upload_headers(name, uuid, 0, app))
end

-- GET/HEAD upload status.
function H.upload_status(c, name, uuid)
	local u, err = resume(c, name, uuid)
	if not u then
		return fail_engine(c, err)
	end
	local size = u:size()
	u:close()
	return respond(c, 204, upload_headers(name, uuid, size, c.app))
end

-- PATCH: append the body (streamed), honouring Content-Range.
function H.upload_patch(c, name, uuid)
	prefetch(c)
	local nosync = c.app.patch_store and c.host.sync
	local u, err = resume(c, name, uuid, nosync and c.app.patch_store or nil)
	if not u then
		return fail_engine(c, err)
	end
	local size = u:size()
	if not check_body(c, name, uuid, size, u) then
		u:close()
		return
	end
	if c.offload then
		-- Copied and closed durably elsewhere: no host.sync.
		local nsize, oerr = offload(c, name, uuid, u)
		if not nsize then
			return fail_offload(c, name, uuid, oerr)
		end
		return respond(c, 202, upload_headers(name, uuid, nsize, c.app))
	end
	local ok, perr, gone = pump(c, u)
	size = u:size()
	local cok, cerr = u:close()
	if cok and nosync then
		-- Durable before it is acknowledged (also the bytes an
		-- interrupted body left).
		cok, cerr = c.host.sync(name, uuid)
	end
	if not ok then
		if gone and c.host.log then
			c.host.log("warn", "oci.body_interrupted", { repo = name, uuid = uuid, size = size,
				message = perr.message })
		end
		return fail_engine(c, perr)
	end
	if not cok then
		return fail_engine(c, cerr)
	end
	return respond(c, 202, upload_headers(name, uuid, size, c.app))
end

-- PUT ?digest=: optional final chunk, then finish.
function H.upload_put(c, name, uuid)
	local dg = c.req.query.digest
	if not dg or dg == "" then
		return fail(c, "DIGEST_INVALID", "digest missing")
	end
	if not M.valid_digest(dg) then
		return fail(c, "DIGEST_INVALID", "invalid digest " .. dg)
	end
	prefetch(c)
	-- The final chunk through the store without fsync when finish runs
	-- elsewhere (it makes the data durable before the move).
	local nosync = c.app.patch_store and c.host.finish
	local u, err = resume(c, name, uuid, nosync and c.app.patch_store or nil)
	if not u then
		return fail_engine(c, err)
	end
	if not check_body(c, name, uuid, u:size(), u) then
		u:close()
		return
	end
	local info, ferr
	if c.offload then
		local size, oerr = offload(c, name, uuid, u)
		if not size then
			return fail_offload(c, name, uuid, oerr)
		end
		info, ferr = finish_closed(c, name, uuid, dg, size)
		if not info then
			return fail_engine(c, ferr)
		end
		return blob_created(c, name, info)
	end
	local ok, perr = pump(c, u)
	if not ok then
		u:close()
		return fail_engine(c, perr)
	end
	if c.host.finish then
		-- The host runs finish elsewhere (a worker thread): hand over by
		-- closing here; it resumes the upload by name.
		local size = u:size()
		local cok, cerr = u:close()
		if not cok then
			return fail_engine(c, cerr)
		end
		info, ferr = c.host.finish(name, uuid, dg, size)
	else
		info, ferr = u:finish(dg)
		u:close()
	end
	if not info then
		return fail_engine(c, ferr)
	end
	return blob_created(c, name, info)
end

function H.upload_cancel(c, name, uuid)
	local u, err = resume(c, name, uuid)
	if not u then
		return fail_engine(c, err)
	end
	local ok, cerr = u:cancel()
	u:close()
	if not ok then
		return fail_engine(c, cerr)
	end
	return respond(c, 204, { ["Docker-Upload-UUID"] = uuid })
end

-- Blob HEAD/GET with Range.
function H.blob_get(c, name, dg)
	local app = c.app
	local info, err = app.store:stat(dg, name)
	if not info then
		return fail_engine(c, err, "BLOB_UNKNOWN")
	end
	local size = info.size
	local headers = {
		["Docker-Content-Digest"] = info.digest,
		["Content-Type"] = "application/octet-stream",
		["Accept-Ranges"] = "bytes",
		["Etag"] = '"' .. info.digest .. '"',
	}
	local first, last = 0, size - 1
	local status = 200
	local range = c.req.headers["range"]
	if range then
		local a, b = range:match("^%s*bytes=(%d*)%-(%d*)%s*$")
		local ok = a ~= nil and (a ~= "" or b ~= "") and #a <= 15 and #b <= 15
		if ok then
			if a == "" then -- suffix: the last b bytes
				local n = tonumber(b)
				first, last = math.max(size - n, 0), size - 1
				ok = n > 0 and size > 0
			else
				first = tonumber(a)
				last = b ~= "" and math.min(tonumber(b), size - 1) or size - 1
				ok = first < size and first <= (b ~= "" and tonumber(b) or first)
			end
		end
		if not ok then
			headers["Content-Range"] = "bytes */" .. size
			return fail(c, "RANGE_INVALID", "unsatisfiable range " .. range, 416, headers)
		end
		status = 206
		headers["Content-Range"] = ("bytes %d-%d/%d"):format(first, last, size)
	end
	local length = size > 0 and last - first + 1 or 0
	headers["Content-Length"] = tostring(length)
	if c.host.send_blob and c.host.send_blob {
		repo = name, digest = info.digest, size = size, path = blob_data_path(info.digest),
		headers = headers, method = c.req.method, status = status,
	} then
		c.responded = true
		return true
	end
	if c.req.method == "HEAD" or length == 0 then
		return respond(c, status, headers, nil)
	end
	local r, rerr = app.driver:reader(blob_data_path(info.digest), first)
	if not r then
		return fail_engine(c, rerr, "BLOB_UNKNOWN")
	end
	local left = length
	return respond(c, status, headers, function()
		if left <= 0 then
			r:close()
			return nil
		end
		local piece = r:read(math.min(left, 256 * 1024))
		if not piece then
			r:close()
			left = 0
			return nil
		end
		left = left - #piece
		return piece
	end)
end

function H.blob_delete(c, name, dg)
	local info, err = c.app.store:stat(dg, name)
	if not info then
		return fail_engine(c, err, "BLOB_UNKNOWN")
	end
	local ok, uerr = c.app.store:unlink(name, dg)
	if not ok then
		return fail_engine(c, uerr)
	end
	return respond(c, 202, { ["Docker-Content-Digest"] = info.digest })
end

---------------------------------------------------------------------------
-- Manifests in the registry layout.

local function read_link(d, path)
	local s = d:get_content(path)
	if s and M.valid_digest(s) then
		return s
	end
	return nil
end

-- reference (tag or digest) -> digest | nil
local function resolve(app, name, ref)
	local d = app.driver
	if M.valid_digest(ref) then
		if d:get_content(revision_link(name, ref)) then
			return ref
		end
		return nil
	end
	return read_link(d, tag_dir(name, ref) .. "/current/link")
end

local function sha256_hex(s)
	local h = layerup.hasher("sha256")
	h:update(s)
	return h:digest()
end

-- The manifest's media type: its own mediaType, else the Content-Type.
local function media_type_of(m, content_type)
	if type(m) == "table" and type(m.mediaType) == "string" then
		return m.mediaType
	end
	if content_type and content_type ~= "" then
		return (content_type:gsub("%s*;.*$", ""))
	end
	return M.MEDIA.oci_manifest
end

-- Every blob (config, layers) or manifest (index entries) a manifest
-- references must exist in the repository.
local function check_references(app, name, m, mtype)
	local missing
	local function need_blob(desc)
		if type(desc) ~= "table" or not M.valid_digest(desc.digest) then
			return "MANIFEST_INVALID", "descriptor without a valid digest"
		end
		if not app.store:stat(desc.digest, name) then
			missing = desc.digest
			return "MANIFEST_BLOB_UNKNOWN", "blob unknown to registry: " .. desc.digest
		end
	end
	if INDEX_TYPES[mtype] then
		if type(m.manifests) ~= "table" then
			return "MANIFEST_INVALID", "index without manifests"
		end
		for _, desc in ipairs(m.manifests) do
			if type(desc) ~= "table" or not M.valid_digest(desc.digest) then
				return "MANIFEST_INVALID", "descriptor without a valid digest"
			end
			if not app.driver:get_content(revision_link(name, desc.digest)) then
				return "MANIFEST_BLOB_UNKNOWN", "manifest unknown to registry: " .. desc.digest
			end
		end
		return nil
	end
	if m.config ~= nil then
		local code, msg = need_blob(m.config)
		if code then return code, msg end
	end
	if m.layers ~= nil then
		if type(m.layers) ~= "table" then
			return "MANIFEST_INVALID", "layers must be an array"
		end
		for _, desc in ipairs(m.layers) do
			local code, msg = need_blob(desc)
			if code then return code, msg end
		end
	end
	if m.blobs ~= nil and type(m.blobs) == "table" then
		for _, desc in ipairs(m.blobs) do
			local code, msg = need_blob(desc)
			if code then return code, msg end
		end
	end
	return nil, nil, missing
end

local function read_body_string(c, max)
	local read = c.host.body and c.host.body()
	if not read then
		return ""
	end
	local parts, n = {}, 0
	while true do
		local piece, err = read(PIECE)
		if piece == nil then
			if err then
				return nil, "request body: " .. tostring(err)
			end
			break
		end
		n = n + #piece
		if n > max then
			return nil, "too large", true
		end
		parts[#parts + 1] = piece
	end
	return concat(parts)
end

function H.manifest_put(c, name, ref)
	local app, d = c.app, c.app.driver
	local is_digest = M.valid_digest(ref)
	if not is_digest and not M.valid_tag(ref) then
		return fail(c, ref:find(":", 1, true) and "DIGEST_INVALID" or "TAG_INVALID",
			"invalid reference " .. ref, 400)
	end
	local cl = c.req.content_length
	if cl and cl > app.max_manifest then
		return fail(c, "SIZE_INVALID", ("manifest larger than %d bytes"):format(app.max_manifest), 413)
	end
	local body, berr, too_large = read_body_string(c, app.max_manifest)
	if not body then
		if too_large then
			return fail(c, "SIZE_INVALID", ("manifest larger than %d bytes"):format(app.max_manifest), 413)
		end
		return fail(c, "MANIFEST_INVALID", berr)
	end
	local m, jerr = json_decode(body)
	if type(m) ~= "table" then
		return fail(c, "MANIFEST_INVALID", "manifest is not a JSON object: " .. tostring(jerr))
	end
	if m.schemaVersion ~= 2 then
		return fail(c, "MANIFEST_INVALID", "schemaVersion must be 2")
	end
	local mtype = media_type_of(m, c.req.headers["content-type"])
	local code, msg = check_references(app, name, m, mtype)
	if code then
		return fail(c, code, msg)
	end
	local dg = sha256_hex(body)
	if is_digest and ref ~= dg then
		local alg = digest_parts(ref)
		local ok = false
		if alg ~= "sha256" then
			local h = layerup.hasher(alg)
			h:update(body)
			ok = h:digest() == ref
		end
		if not ok then
			return fail(c, "DIGEST_INVALID", "manifest digest " .. dg .. " does not match " .. ref)
		end
	end
	-- The content as a blob, then the revision link, then the tag.
	local data_path = blob_data_path(dg)
	if not d:stat(data_path) then
		local ok, err = d:put_content(data_path, body)
		if not ok then return fail_engine(c, err) end
	end
	local links = { revision_link(name, dg) }
	if is_digest and ref ~= dg then
		links[#links + 1] = revision_link(name, ref)
	end
	if not is_digest then
		local alg, hex = digest_parts(dg)
		links[#links + 1] = ("%s/index/%s/%s/link"):format(tag_dir(name, ref), alg, hex)
		links[#links + 1] = tag_dir(name, ref) .. "/current/link"
	end
	for _, p in ipairs(links) do
		local ok, err = d:put_content(p, dg)
		if not ok then return fail_engine(c, err) end
	end
	local headers = {
		["Location"] = "/v2/" .. name .. "/manifests/" .. dg,
		["Docker-Content-Digest"] = dg,
	}
	if type(m.subject) == "table" and M.valid_digest(m.subject.digest) then
		headers["OCI-Subject"] = m.subject.digest
	end
	return respond(c, 201, headers)
end

function H.manifest_get(c, name, ref)
	local app = c.app
	if not M.valid_digest(ref) and not M.valid_tag(ref) then
		return fail(c, ref:find(":", 1, true) and "DIGEST_INVALID" or "TAG_INVALID",
			"invalid reference " .. ref, 400)
	end
	local dg = resolve(app, name, ref)
	local body = dg and app.driver:get_content(blob_data_path(dg))
	if not body then
		return fail(c, "MANIFEST_UNKNOWN", "manifest unknown: " .. ref)
	end
	local m = json_decode(body)
	local headers = {
		["Content-Type"] = media_type_of(m, nil),
		["Docker-Content-Digest"] = dg,
		["Content-Length"] = tostring(#body),
		["Etag"] = '"' .. dg .. '"',
	}
	return respond(c, 200, headers, c.req.method == "HEAD" and nil or body)
end

function H.manifest_delete(c, name, ref)
	local app, d = c.app, c.app.driver
	if M.valid_digest(ref) then
		if not d:get_content(revision_link(name, ref)) then
			return fail(c, "MANIFEST_UNKNOWN", "manifest unknown: " .. ref)
		end
		local alg, hex = digest_parts(ref)
		d:delete(("%s/_manifests/revisions/%s/%s"):format(repo_path(name), alg, hex))
		-- Tags pointing at it go too (as the registry does).
		local tags = d:list(repo_path(name) .. "/_manifests/tags") or {}
		for _, dir in ipairs(tags) do
			if read_link(d, dir .. "/current/link") == ref then
				d:delete(dir)
			else
				d:delete(("%s/index/%s/%s"):format(dir, alg, hex))
			end
		end
		return respond(c, 202, {})
	end
	if not M.valid_tag(ref) then
		return fail(c, "TAG_INVALID", "invalid reference " .. ref, 400)
	end
	if not d:get_content(tag_dir(name, ref) .. "/current/link") then
		return fail(c, "MANIFEST_UNKNOWN", "manifest unknown: " .. ref)
	end
	local ok, err = d:delete(tag_dir(name, ref))
	if not ok then
		return fail_engine(c, err)
	end
	return respond(c, 202, {})
end

-- Percent-encode a query value for Link headers.
local function qenc(s)
	return (s:gsub("[^%w%-._~]", function(ch) return ("%%%02X"):format(ch:byte()) end))
end

function H.tags_list(c, name)
	local app, d = c.app, c.app.driver
	local q = c.req.query
	local dirs = d:list(repo_path(name) .. "/_manifests/tags")
	if not dirs then
		if not d:stat(repo_path(name)) then
			return fail(c, "NAME_UNKNOWN", "repository name not known to registry: " .. name)
		end
		dirs = {}
	end
	local tags = {}
	for _, p in ipairs(dirs) do
		local t = p:match("([^/]+)$")
		if t and d:get_content(p .. "/current/link") then
			tags[#tags + 1] = t
		end
	end
	table.sort(tags)
	local n
	if q.n ~= nil then
		n = tonumber(q.n)
		if not n or n < 0 or n ~= floor(n) then
			return fail(c, "UNSUPPORTED", "n must be a non-negative integer", 400)
		end
	end
	local last = q.last
	local out = {}
	local more = false
	for _, t in ipairs(tags) do
		if not last or t > last then
			if n and #out >= n then
				more = true
				break
			end
			out[#out + 1] = t
		end
	end
	local headers = { ["Content-Type"] = "application/json" }
	if more and #out > 0 then
		headers["Link"] = ('</v2/%s/tags/list?n=%d&last=%s>; rel="next"'):format(name, n, qenc(out[#out]))
	end
	local body = M.json { name = name, tags = M.array(out) }
	headers["Content-Length"] = tostring(#body)
	return respond(c, 200, headers, body)
end

function H.referrers(c, name, dg)
	local app, d = c.app, c.app.driver
	if not M.valid_digest(dg) then
		return fail(c, "DIGEST_INVALID", "invalid digest " .. dg)
	end
	local want = c.req.query.artifactType
	local list = M.array()
	local algs = d:list(repo_path(name) .. "/_manifests/revisions") or {}
	for _, adir in ipairs(algs) do
		for _, rdir in ipairs(d:list(adir) or {}) do
			local rev = read_link(d, rdir .. "/link")
			local body = rev and d:get_content(blob_data_path(rev))
			local m = body and json_decode(body)
			if type(m) == "table" and type(m.subject) == "table" and m.subject.digest == dg then
				local atype = m.artifactType
				if atype == nil and type(m.config) == "table" then
					atype = m.config.mediaType
				end
				if not want or want == atype then
					list[#list + 1] = {
						mediaType = media_type_of(m, nil), digest = rev, size = #body,
						artifactType = atype, annotations = m.annotations,
					}
				end
			end
		end
	end
	table.sort(list, function(a, b) return a.digest < b.digest end)
	local body = M.json { schemaVersion = 2, mediaType = M.MEDIA.oci_index, manifests = list }
	local headers = { ["Content-Type"] = M.MEDIA.oci_index, ["Content-Length"] = tostring(#body) }
	if want then
		headers["OCI-Filters-Applied"] = "artifactType"
	end
	return respond(c, 200, headers, body)
end

---------------------------------------------------------------------------
-- Router.  Names contain '/', so routes are anchored from the right.

local ROUTES = {
	{ "^/v2/(.+)/blobs/uploads/?$", "uploads", { POST = "upload_start" }, "push" },
	{ "^/v2/(.+)/blobs/uploads/([^/]+)$", "upload", {
		GET = "upload_status", HEAD = "upload_status", PATCH = "upload_patch",
		PUT = "upload_put", DELETE = "upload_cancel" }, "push" },
	{ "^/v2/(.+)/blobs/([^/]+)$", "blob", { GET = "blob_get", HEAD = "blob_get",
		DELETE = "blob_delete" }, "pull" },
	{ "^/v2/(.+)/manifests/([^/]+)$", "manifest", { GET = "manifest_get",
		HEAD = "manifest_get", PUT = "manifest_put", DELETE = "manifest_delete" }, "pull" },
	{ "^/v2/(.+)/tags/list$", "tags", { GET = "tags_list", HEAD = "tags_list" }, "pull" },
	{ "^/v2/(.+)/referrers/([^/]+)$", "referrers", { GET = "referrers", HEAD = "referrers" }, "pull" },
}

local function action_for(method, default)
	if method == "DELETE" then return "delete" end
	if method == "GET" or method == "HEAD" then return "pull" end
	if method == "POST" or method == "PUT" or method == "PATCH" then return "push" end
	return default
end

function App:route(req)
	local path = req.path
	if path == "/v2" or path == "/v2/" then
		return "base", {}, { GET = true, HEAD = true }
	end
	for _, r in ipairs(ROUTES) do
		local name, arg = path:match(r[1])
		if name then
			return r[2], { name, arg }, r[3]
		end
	end
	return nil
end

local function allow_list(methods)
	local t = {}
	for m in pairs(methods) do t[#t + 1] = m end
	table.sort(t)
	return concat(t, ", ")
end

function App:dispatch(c)
	local req = c.req
	local kind, args, methods = self:route(req)
	if not kind then
		return fail(c, "NAME_UNKNOWN", "no such endpoint: " .. req.method .. " " .. req.path, 404)
	end
	if kind == "base" then
		if not methods[req.method] then
			return fail(c, "UNSUPPORTED", "method not allowed", 405, { Allow = "GET, HEAD" })
		end
		if self.authorize then
			local ok, status, headers, message = self.authorize { method = req.method, action = "pull",
				headers = req.headers }
			if not ok then
				status = status or 401
				return fail(c, status == 401 and "UNAUTHORIZED" or "DENIED", message or "access denied",
					status, headers)
			end
		end
		return H.base(c)
	end
	local handler = methods[req.method]
	if not handler then
		return fail(c, "UNSUPPORTED", "method " .. req.method .. " not allowed here", 405,
			{ Allow = allow_list(methods) })
	end
	local name, arg = args[1], args[2]
	if not valid_name(name) then
		return fail(c, "NAME_INVALID", "invalid repository name", 400)
	end
	if self.authorize then
		local ok, status, headers, message = self.authorize {
			method = req.method, repo = name, action = action_for(req.method, "pull"),
			headers = req.headers,
		}
		if not ok then
			status = status or 403
			return fail(c, status == 401 and "UNAUTHORIZED" or "DENIED", message or "access denied",
				status, headers)
		end
	end
	if kind == "upload" and not layerup.valid_uuid(arg) then
		return fail(c, "BLOB_UPLOAD_UNKNOWN", "upload unknown", 404)
	end
	if kind == "blob" and not M.valid_digest(arg) then
		return fail(c, "DIGEST_INVALID", "invalid digest", 400)
	end
	return H[handler](c, name, arg)
end

-- Handle one request.  Never raises: a Lua error becomes a JSON 500
-- UNKNOWN (unless a response was already started) and is logged.
function App:handle(req, host)
	req.query = req.query or {}
	req.headers = req.headers or {}
	local c = ctx_new(self, req, host)
	local ok, err = xpcall(function() return self:dispatch(c) end, debug.traceback)
	if not ok then
		if host.log then
			host.log("error", "oci.crash", { message = tostring(err) })
		end
		if not c.responded then
			pcall(fail, c, "UNKNOWN", "internal error", 500)
		end
		return false, err
	end
	return true
end

return M
