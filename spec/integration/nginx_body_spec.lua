-- Request bodies in the nginx host (bin/layerup serve) against curl: the
-- per-repository size policy limit(repo) on chunked bodies (PATCH, the
-- final chunk of PUT ?digest=, monolithic POST ?digest=): 413
-- SIZE_INVALID, the upload kept at most at the limit and resumable; and
-- HTTP/2 bodies that nginx spooled to a file, copied into the upload in
-- the thread pool (layerup.worker.append) above inline_finish.  Every
-- server runs on 127.0.0.1 at a free port and is stopped by PID.

local util = require "integration.helpers.util"
local N = require "integration.helpers.nginx"

local MiB = 1024 * 1024
local V2 = "/docker/registry/v2"
local q = util.q

local why = N.unavailable()

describe("request bodies in the nginx host", function()
	if why then
		it("runs", function() pending(why) end)
		return
	end

	local work, root, host

	lazy_setup(function()
		work = util.tmpdir("nginx-body")
		root = work .. "/root"
		util.mkdirp(root)
		host = N.start(root, { workers = 2, http2 = true, config = [[
return { limit = function(repo) if repo:find("^small/") then return 1024 * 1024 end end }
]] })
	end)

	lazy_teardown(function()
		if host then host:stop() end
		if work then util.rmrf(work) end
	end)

	-- n random bytes in a file; its path and digest.
	local n_files = 0
	local function file_of(n)
		n_files = n_files + 1
		local p = work .. "/body" .. n_files
		util.must(("head -c %d /dev/urandom >%s"):format(n, q(p)))
		return p, util.sha256_file(p)
	end

	-- bytes [from, to] (1-based, inclusive) of file src into a new file
	local function slice(src, from, to)
		n_files = n_files + 1
		local p = work .. "/slice" .. n_files
		util.must(("tail -c +%d %s | head -c %d >%s"):format(from, q(src), to - from + 1, q(p)))
		return p, util.sha256_file(p)
	end

	local function start_upload(repo, base)
		local r = host:curl((base == host.h2base and "--http2-prior-knowledge " or "") .. "-X POST "
			.. q((base or host.base) .. "/v2/" .. repo .. "/blobs/uploads/"))
		assert.equal(202, r.status, r.body)
		return r.headers.location
	end

	local function chunked(method, url, file)
		return host:curl(("-X %s -H 'Transfer-Encoding: chunked' -H 'Content-Type: application/octet-stream' -T %s %s")
			:format(method, q(file), q(host.base .. url)))
	end

	local function h2(args)
		return host:curl("--http2-prior-knowledge " .. args)
	end

	local function range_end(loc)
		local r = host:curl(q(host.base .. loc))
		assert.equal(204, r.status, r.body)
		local last = tonumber((r.headers.range or ""):match("^0%-(%d+)$"))
		assert(last, "no Range: " .. tostring(r.headers.range))
		return last
	end

	local function uploads_left(repo)
		return util.run("ls " .. q(root .. V2 .. "/repositories/" .. repo .. "/_uploads") .. " 2>/dev/null")
	end

	describe("limit(repo) on chunked bodies", function()
		it("a chunked PATCH past the limit: 413, the upload kept at most at the limit, resumed to exactly it", function()
			local body, dg_over = file_of(MiB + 300 * 1024)
			local loc = start_upload("small/patch")
			local r = chunked("PATCH", loc, body)
			assert.equal(413, r.status, tostring(r.err) .. r.body)
			assert.same({ "SIZE_INVALID" }, N.error_codes(r.body))
			local last = range_end(loc)
			assert(last < MiB, "kept " .. (last + 1) .. " bytes, limit " .. MiB)
			local size = util.size(root .. V2 .. "/repositories/small/patch/_uploads/"
				.. loc:match("([^/]+)$") .. "/data")
			assert(size and size <= MiB, "data size " .. tostring(size))
			-- an in-limit PATCH from there to exactly the limit passes
			local rest = slice(body, last + 2, MiB)
			r = chunked("PATCH", loc, rest)
			assert.equal(202, r.status, r.body)
			assert.equal("0-" .. (MiB - 1), r.headers.range)
			-- not one byte more
			util.write_file(work .. "/one", "x")
			r = chunked("PATCH", loc, work .. "/one")
			assert.equal(413, r.status, r.body)
			assert.equal(MiB - 1, range_end(loc))
			local _, dg = slice(body, 1, MiB)
			assert.are_not.equal(dg_over, dg)
			r = host:curl("-X PUT " .. q(host.base .. loc .. "?digest=" .. dg))
			assert.equal(201, r.status, r.body)
			r = host:curl(q(host.base .. "/v2/small/patch/blobs/" .. dg))
			assert.equal(200, r.status)
			assert.equal(dg, util.sha256(r.body))
		end)

		it("a chunked body of exactly the limit passes in one PATCH", function()
			local body, dg = file_of(MiB)
			local loc = start_upload("small/exact")
			local r = chunked("PATCH", loc, body)
			assert.equal(202, r.status, r.body)
			assert.equal("0-" .. (MiB - 1), r.headers.range)
			r = host:curl("-X PUT " .. q(host.base .. loc .. "?digest=" .. dg))
			assert.equal(201, r.status, r.body)
		end)

		it("a chunked final PUT past the limit: 413, the upload stays, a right final chunk finishes it", function()
			local body = file_of(MiB + 100 * 1024)
			local _, dg_limit = slice(body, 1, MiB)
			local loc = start_upload("small/put")
			local head = slice(body, 1, 512 * 1024)
			local r = chunked("PATCH", loc, head)
			assert.equal(202, r.status, r.body)
			local tail_over = slice(body, 512 * 1024 + 1, MiB + 100 * 1024)
			r = chunked("PUT", loc .. "?digest=" .. dg_limit, tail_over)
			assert.equal(413, r.status, tostring(r.err) .. r.body)
			assert.same({ "SIZE_INVALID" }, N.error_codes(r.body))
			local last = range_end(loc)
			assert(last >= 512 * 1024 - 1 and last < MiB, "Range end " .. last)
			r = chunked("PUT", loc .. "?digest=" .. dg_limit, slice(body, last + 2, MiB))
			assert.equal(201, r.status, r.body)
			assert.equal(dg_limit, r.headers["docker-content-digest"])
			assert.equal("", uploads_left("small/put"))
		end)

		it("a chunked monolithic POST ?digest= past the limit: 413 and nothing left", function()
			local body, dg = file_of(MiB + 1)
			local r = host:curl(("-X POST -H 'Transfer-Encoding: chunked' --data-binary @%s %s")
				:format(q(body), q(host.base .. "/v2/small/mono/blobs/uploads/?digest=" .. dg)))
			assert.equal(413, r.status, tostring(r.err) .. r.body)
			assert.same({ "SIZE_INVALID" }, N.error_codes(r.body))
			assert.equal("", uploads_left("small/mono"))
			local ok, dg_ok = slice(body, 1, MiB)
			r = host:curl(("-X POST -H 'Transfer-Encoding: chunked' --data-binary @%s %s")
				:format(q(ok), q(host.base .. "/v2/small/mono/blobs/uploads/?digest=" .. dg_ok)))
			assert.equal(201, r.status, r.body)
		end)
	end)

	describe("HTTP/2 spooled bodies", function()
		local function copied_in_thread(loc, n)
			return host:error_log():find("copied " .. n .. " bytes in a worker thread repo=", 1, true)
				and host:error_log():find("uuid=" .. loc:match("([^/]+)$"), 1, true)
		end

		it("a multi-MiB PATCH is copied into the upload in a worker thread, resumed by a second one", function()
			local body, dg = file_of(13 * MiB + 5)
			local p1 = slice(body, 1, 6 * MiB)
			local p2 = slice(body, 6 * MiB + 1, 13 * MiB + 5)
			local loc = start_upload("h2/thread", host.h2base)
			local r = h2(("-X PATCH -H 'Content-Type: application/octet-stream' --data-binary @%s %s")
				:format(q(p1), q(host.h2base .. loc)))
			assert.equal(202, r.status, r.body)
			assert.equal("0-" .. (6 * MiB - 1), r.headers.range)
			assert.truthy(copied_in_thread(loc, 6 * MiB), host:error_log():sub(-2000))
			-- resumed over HTTP/2 (Content-Range), again in a thread
			r = h2(("-X PATCH -H 'Content-Range: %d-%d' --data-binary @%s %s")
				:format(6 * MiB, 13 * MiB + 4, q(p2), q(host.h2base .. loc)))
			assert.equal(202, r.status, r.body)
			assert.equal("0-" .. (13 * MiB + 4), r.headers.range)
			assert.truthy(copied_in_thread(loc, 7 * MiB + 5))
			r = h2("-X PUT " .. q(host.h2base .. loc .. "?digest=" .. dg))
			assert.equal(201, r.status, r.body)
			assert.equal(dg, r.headers["docker-content-digest"])
			r = h2(q(host.h2base .. "/v2/h2/thread/blobs/" .. dg))
			assert.equal(200, r.status)
			assert.equal(dg, util.sha256(r.body))
		end)

		it("a final PUT chunk and a monolithic POST of several MiB go through the thread too", function()
			local body, dg = file_of(9 * MiB)
			local loc = start_upload("h2/put", host.h2base)
			local r = h2(("-X PATCH --data-binary @%s %s"):format(q(slice(body, 1, MiB)), q(host.h2base .. loc)))
			assert.equal(202, r.status, r.body)
			r = h2(("-X PUT --data-binary @%s %s"):format(q(slice(body, MiB + 1, 9 * MiB)),
				q(host.h2base .. loc .. "?digest=" .. dg)))
			assert.equal(201, r.status, r.body)
			assert.equal(dg, r.headers["docker-content-digest"])
			assert.truthy(copied_in_thread(loc, 8 * MiB))
			local mono, mdg = file_of(5 * MiB)
			r = h2(("-X POST --data-binary @%s %s"):format(q(mono),
				q(host.h2base .. "/v2/h2/mono/blobs/uploads/?digest=" .. mdg)))
			assert.equal(201, r.status, r.body)
			assert.equal(mdg, r.headers["docker-content-digest"])
			assert.truthy(host:error_log():find("copied " .. 5 * MiB .. " bytes in a worker thread repo=h2/mono", 1, true))
			-- a wrong digest: 400 and nothing left
			r = h2(("-X POST --data-binary @%s %s"):format(q(mono),
				q(host.h2base .. "/v2/h2/mono2/blobs/uploads/?digest=" .. dg)))
			assert.equal(400, r.status, r.body)
			assert.equal("", uploads_left("h2/mono2"))
			r = h2(q(host.h2base .. "/v2/h2/mono/blobs/" .. mdg))
			assert.equal(mdg, util.sha256(r.body))
		end)

		it("a small spooled body stays inline", function()
			local body, dg = file_of(2 * MiB)
			local loc = start_upload("h2/small", host.h2base)
			local r = h2(("-X PATCH --data-binary @%s %s"):format(q(body), q(host.h2base .. loc)))
			assert.equal(202, r.status, r.body)
			assert.is_nil(copied_in_thread(loc, 2 * MiB))
			r = h2("-X PUT " .. q(host.h2base .. loc .. "?digest=" .. dg))
			assert.equal(201, r.status, r.body)
		end)
	end)
end)
