-- A host for layerup.oci in plain Lua: requests are tables, bodies are
-- strings cut into pieces (or a list of pieces, optionally ending in an
-- error to simulate a client that goes away), responses are collected.
local oci = require "layerup.oci"

local M = {}

-- fakehost.new(app) -> h;  h:req{method=, path=, query=, headers=, body=,
-- pieces=, fail_after=, file=, offload=, before_copy=} -> {status, headers, body}
function M.new(app)
	local h = { app = app, logs = {}, slept = 0 }

	function h:req(r)
		local pieces = r.pieces
		if not pieces and r.body then
			pieces = {}
			local step = r.piece or 7
			for i = 1, #r.body, step do
				pieces[#pieces + 1] = r.body:sub(i, i + step - 1)
			end
		end
		local headers = {}
		for k, v in pairs(r.headers or {}) do
			headers[k:lower()] = v
		end
		local req = {
			method = r.method or "GET",
			path = r.path,
			query = r.query or {},
			headers = headers,
			content_length = r.content_length,
		}
		if req.content_length == nil and r.body and not r.chunked then
			req.content_length = #r.body
		end
		local res = { headers = {} }
		local host = {}
		function host.body()
			if not pieces then
				return nil
			end
			local i = 0
			-- r.file: also hand the body over as an open file (like nginx's
			-- HTTP/2 spooling); h.reader_calls counts uses of the reader.
			local fh
			if r.file and r.body then
				fh = assert(io.tmpfile())
				fh:write(r.body)
				fh:seek("set", 0)
			end
			h.reader_calls = 0
			return function()
				h.reader_calls = h.reader_calls + 1
				i = i + 1
				local p = pieces[i]
				if p == nil then
					if r.error then
						return nil, r.error, r.partial
					end
					return nil
				end
				return p
			end, fh
		end
		-- r.offload: the body is copied elsewhere after oci closed the
		-- upload (like the nginx host's thread copy of a spooled HTTP/2
		-- body), here inline through layerup.worker.append_with on the
		-- app's store; r.before_copy(repo, uuid) runs first (a request
		-- that gets in between).  h.copies counts the copies.
		if r.offload then
			function host.prefetch_body()
				return function(repo, uuid, offset, limit)
					h.copies = (h.copies or 0) + 1
					if r.before_copy then
						r.before_copy(repo, uuid)
					end
					local path = os.tmpname()
					local fh = assert(io.open(path, "wb"))
					fh:write(r.body or "")
					fh:close()
					local size, err = require("layerup.worker").append_with(h.app.store, repo, uuid, offset,
						path, limit)
					os.remove(path)
					return size, err
				end
			end
		end
		function host.respond(status, hdrs, body)
			res.status = status
			res.headers = hdrs
			if type(body) == "function" then
				local parts = {}
				for piece in body do
					parts[#parts + 1] = piece
				end
				body = table.concat(parts)
			end
			res.body = body
			return true
		end
		function host.sleep(s)
			h.slept = h.slept + s
		end
		function host.log(level, event, fields)
			h.logs[#h.logs + 1] = { level = level, event = event, fields = fields }
		end
		if r.send_blob then
			host.send_blob = r.send_blob
		end
		local ok, err = h.app:handle(req, host)
		res.ok, res.err = ok, err
		if res.body and res.body ~= "" and (res.headers["Content-Type"] or ""):find("json", 1, true) then
			res.json = require("cjson").decode(res.body)
		end
		return res
	end

	return h
end

M.oci = oci
return M
