-- spec/oci_hooks_spec.lua - layerup.oci's host hooks for work done
-- elsewhere (what the nginx host runs in worker threads): host.sync after a
-- PATCH written through opts.patch_store (the store without fsync),
-- host.finish after a PUT's final chunk written the same way, and
-- host.prepare before every resume.  Runs under lua5.4 and luajit.

local layerup = require "layerup"
local oci = require "layerup.oci"

local function tmpdir()
	local p = assert(io.popen("mktemp -d"))
	local d = p:read("*l")
	p:close()
	return d
end

local function sha256(s)
	local h = layerup.hasher("sha256")
	h:update(s)
	return h:digest()
end

describe("layerup.oci host hooks", function()
	local dir, store, nosync, app, calls

	before_each(function()
		dir = tmpdir()
		store = assert(layerup.open(dir, { fsync = true, retry = false }))
		nosync = assert(layerup.open(dir, { retry = false }))
		app = oci.new { store = store, patch_store = nosync, lock_wait = 0 }
		calls = {}
	end)

	after_each(function()
		store:close()
		nosync:close()
		os.execute("rm -rf '" .. dir .. "'")
	end)

	-- One request; hooks = {sync=, finish=, prepare=} (false: absent).
	local function req(method, path, opts)
		opts = opts or {}
		local res = {}
		local host = {}
		function host.body()
			if not opts.body then return nil end
			local done = false
			return function()
				if done then
					if opts.error then return nil, opts.error, opts.partial end
					return nil
				end
				done = true
				return opts.body
			end
		end
		function host.respond(status, headers, body)
			res.status, res.headers, res.body = status, headers, body
			return true
		end
		function host.prepare(repo, uuid)
			calls[#calls + 1] = { "prepare", repo, uuid }
		end
		if opts.sync ~= false then
			function host.sync(repo, uuid)
				-- the request's handle is closed: the upload resumes here
				local u, err = store:resume(repo, uuid)
				calls[#calls + 1] = { "sync", repo, uuid, u and u:size() or err.code }
				if u then u:close() end
				if opts.sync_fails then
					return nil, { code = "IO", message = "sync failed" }
				end
				return true
			end
		end
		if opts.finish then
			function host.finish(repo, uuid, dg, size)
				calls[#calls + 1] = { "finish", repo, uuid, size }
				local u = assert(store:resume(repo, uuid))
				local info, err = u:finish(dg)
				u:close()
				return info, err
			end
		end
		app:handle({ method = method, path = path, query = opts.query or {}, headers = opts.headers or {},
			content_length = opts.body and #opts.body or nil }, host)
		return res
	end

	local function start()
		local r = req("POST", "/v2/h/r/blobs/uploads/")
		assert.equal(202, r.status)
		return r.headers["Docker-Upload-UUID"]
	end

	it("syncs a PATCH after its handle is closed, before the 202", function()
		local uuid = start()
		calls = {}
		local r = req("PATCH", "/v2/h/r/blobs/uploads/" .. uuid, { body = "hello" })
		assert.equal(202, r.status)
		assert.equal("0-4", r.headers["Range"])
		assert.same({ { "prepare", "h/r", uuid }, { "sync", "h/r", uuid, 5 } }, calls)
	end)

	it("answers an error, not 202, when the sync fails", function()
		local uuid = start()
		local r = req("PATCH", "/v2/h/r/blobs/uploads/" .. uuid, { body = "hello", sync_fails = true })
		assert.is_true(r.status >= 500)
	end)

	it("syncs the bytes an interrupted body left", function()
		local uuid = start()
		calls = {}
		local r = req("PATCH", "/v2/h/r/blobs/uploads/" .. uuid,
			{ body = "abc", error = "closed", partial = "de" })
		assert.is_true(r.status >= 400)
		assert.same({ "sync", "h/r", uuid, 5 }, calls[2])
	end)

	it("does not sync without patch_store (the store fsyncs its own close)", function()
		app = oci.new { store = store }
		local uuid = start()
		calls = {}
		assert.equal(202, req("PATCH", "/v2/h/r/blobs/uploads/" .. uuid, { body = "x" }).status)
		assert.same({ { "prepare", "h/r", uuid } }, calls)
	end)

	it("writes a PUT's final chunk through patch_store and hands finish the closed upload", function()
		local uuid = start()
		assert.equal(202, req("PATCH", "/v2/h/r/blobs/uploads/" .. uuid, { body = "abc" }).status)
		calls = {}
		local dg = sha256("abcdef")
		local r = req("PUT", "/v2/h/r/blobs/uploads/" .. uuid, { body = "def", query = { digest = dg }, finish = true })
		assert.equal(201, r.status)
		assert.equal(dg, r.headers["Docker-Content-Digest"])
		assert.same({ { "prepare", "h/r", uuid }, { "finish", "h/r", uuid, 6 } }, calls)
	end)

	it("calls prepare before the resume of a status request and a cancel", function()
		local uuid = start()
		calls = {}
		assert.equal(204, req("GET", "/v2/h/r/blobs/uploads/" .. uuid).status)
		assert.equal(204, req("DELETE", "/v2/h/r/blobs/uploads/" .. uuid).status)
		assert.same({ { "prepare", "h/r", uuid }, { "prepare", "h/r", uuid } }, calls)
	end)
end)
