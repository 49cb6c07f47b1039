-- spec/oci_spec.lua - layerup.oci (the OCI Distribution API over a store)
-- through a fake host, on the memory and filesystem drivers.  Runs under
-- lua5.4 and luajit (spec/run).

local layerup = require "layerup"
local oci = require "layerup.oci"
local fakehost = require "helpers.fakehost"
local cjson = require "cjson"

local function sha256(s)
	local h = layerup.hasher("sha256")
	h:update(s)
	return h:digest()
end

local UUID_RE = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"

local function tmpdir()
	local p = assert(io.popen("mktemp -d"))
	local d = p:read("*l")
	p:close()
	return d
end

local drivers = {
	{ label = "memory", make = function() return layerup.memory() end },
	{ label = "filesystem", make = function()
		local dir = tmpdir()
		return layerup.filesystem(dir), function() os.execute("rm -rf '" .. dir .. "'") end
	end },
}

for _, dspec in ipairs(drivers) do
describe("layerup.oci on the " .. dspec.label .. " driver", function()
	local d, cleanup, store, app, h

	local function setup(opts)
		d, cleanup = dspec.make()
		store = assert(layerup.open(d, { retry = false }))
		opts = opts or {}
		opts.store = store
		app = oci.new(opts)
		h = fakehost.new(app)
	end

	before_each(function() setup() end)
	after_each(function()
		store:close()
		if cleanup then cleanup() end
	end)

	local function start(name)
		local r = h:req { method = "POST", path = "/v2/" .. name .. "/blobs/uploads/" }
		assert.equal(202, r.status)
		return r.headers["Docker-Upload-UUID"], r
	end

	local function push_blob(name, data)
		local dg = sha256(data)
		local r = h:req { method = "POST", path = "/v2/" .. name .. "/blobs/uploads/",
			query = { digest = dg }, body = data }
		assert.equal(201, r.status, r.body)
		return dg
	end

	local function put_manifest(name, ref, m, ctype)
		local body = type(m) == "string" and m or cjson.encode(m)
		return h:req { method = "PUT", path = "/v2/" .. name .. "/manifests/" .. ref,
			headers = { ["Content-Type"] = ctype or oci.MEDIA.oci_manifest }, body = body }, body
	end

	local function image(name, n)
		local cfg = push_blob(name, '{"architecture":"amd64","os":"linux"}')
		local layers = {}
		for i = 1, n or 2 do
			local data = ("layer %d of %s "):format(i, name):rep(100)
			layers[i] = { mediaType = "application/vnd.oci.image.layer.v1.tar", digest = push_blob(name, data),
				size = #data }
		end
		return { schemaVersion = 2, mediaType = oci.MEDIA.oci_manifest,
			config = { mediaType = "application/vnd.oci.image.config.v1+json", digest = cfg, size = 37 },
			layers = layers }
	end

	describe("base and routing", function()
		it("answers GET /v2/ with the API version header", function()
			local r = h:req { path = "/v2/" }
			assert.equal(200, r.status)
			assert.equal("registry/2.0", r.headers["Docker-Distribution-API-Version"])
			assert.equal("{}", r.body)
		end)

		it("answers unknown routes with 404 and unknown methods with 405 + Allow, as JSON", function()
			local r = h:req { path = "/v3/" }
			assert.equal(404, r.status)
			assert.equal("application/json", r.headers["Content-Type"])
			r = h:req { method = "POST", path = "/v2/a/manifests/latest" }
			assert.equal(405, r.status)
			assert.equal("UNSUPPORTED", r.json.errors[1].code)
			assert.equal("DELETE, GET, HEAD, PUT", r.headers.Allow)
		end)

		it("refuses traversal and malformed names with 400 NAME_INVALID, never touching storage", function()
			for _, name in ipairs { "../etc", "a/../../b", "a/%2e%2e/b", "..%2F..%2Fx", "A/b", "a//b",
				"a/b/", "a\r\nX-Injected: 1", "-a" } do
				local r = h:req { method = "POST", path = "/v2/" .. name .. "/blobs/uploads/" }
				assert(r.status == 400 or r.status == 404, name .. " gave " .. tostring(r.status))
				assert.is_nil(r.headers["X-Injected"])
			end
			assert.same({}, store:uploads())
		end)

		it("answers bad digests with 400 DIGEST_INVALID", function()
			for _, dg in ipairs { "sha256:xyz", "sha256:" .. ("A"):rep(64), "md5:" .. ("0"):rep(32),
				"sha256:" .. ("0"):rep(63) } do
				local r = h:req { path = "/v2/a/blobs/" .. dg }
				assert.equal(400, r.status, dg)
				assert.equal("DIGEST_INVALID", r.json.errors[1].code)
			end
			-- a digest with slashes matches no route at all
			local r = h:req { path = "/v2/a/blobs/sha256:../../../x" }
			assert.equal(404, r.status)
			assert.equal("NAME_UNKNOWN", r.json.errors[1].code)
		end)

		it("turns a Lua error inside a handler into a JSON 500 UNKNOWN", function()
			local bad = oci.new { store = store, authorize = function() error("boom") end }
			local hb = fakehost.new(bad)
			local r = hb:req { path = "/v2/a/tags/list" }
			assert.equal(500, r.status)
			assert.equal("UNKNOWN", r.json.errors[1].code)
			assert.equal("oci.crash", hb.logs[1].event)
		end)
	end)

	describe("blob uploads", function()
		it("POST starts an upload: 202, Location with only the uuid, Range 0-0", function()
			local uuid, r = start("a/b")
			assert.matches(UUID_RE, uuid)
			assert.equal("/v2/a/b/blobs/uploads/" .. uuid, r.headers.Location)
			assert.equal("0-0", r.headers.Range)
		end)

		it("PATCH appends, GET reports 204 + Range + Location, PUT finishes with 201", function()
			local uuid = start("a/b")
			local url = "/v2/a/b/blobs/uploads/" .. uuid
			local r = h:req { method = "PATCH", path = url, body = "hello " }
			assert.equal(202, r.status)
			assert.equal("0-5", r.headers.Range)
			r = h:req { method = "PATCH", path = url, body = "world", headers = { ["Content-Range"] = "6-10" } }
			assert.equal(202, r.status, r.body)
			assert.equal("0-10", r.headers.Range)
			r = h:req { method = "GET", path = url }
			assert.equal(204, r.status)
			assert.equal("0-10", r.headers.Range)
			assert.equal(url, r.headers.Location)
			local dg = sha256("hello world!")
			r = h:req { method = "PUT", path = url, query = { digest = dg }, body = "!" }
			assert.equal(201, r.status, r.body)
			assert.equal(dg, r.headers["Docker-Content-Digest"])
			assert.equal("/v2/a/b/blobs/" .. dg, r.headers.Location)
			r = h:req { path = "/v2/a/b/blobs/" .. dg }
			assert.equal(200, r.status)
			assert.equal("hello world!", r.body)
			r = h:req { method = "GET", path = url }
			assert.equal(404, r.status)
			assert.equal("BLOB_UPLOAD_UNKNOWN", r.json.errors[1].code)
		end)

		it("answers a Content-Range gap or overlap with 416 and the current Range, storing nothing", function()
			local uuid = start("a")
			local url = "/v2/a/blobs/uploads/" .. uuid
			assert.equal(202, h:req { method = "PATCH", path = url, body = "0123456789" }.status)
			for _, cr in ipairs { "11-20", "5-14", "0-9", "10-5", "junk", "bytes=12-13" } do
				local r = h:req { method = "PATCH", path = url, body = "abcdefghij",
					headers = { ["Content-Range"] = cr } }
				assert.equal(416, r.status, cr)
				assert.equal("RANGE_INVALID", r.json.errors[1].code)
				assert.equal("0-9", r.headers.Range)
				assert.equal(url, r.headers.Location)
			end
			local r = h:req { method = "GET", path = url }
			assert.equal("0-9", r.headers.Range)
			-- A lying Content-Length.
			r = h:req { method = "PATCH", path = url, body = "abc", content_length = 5,
				headers = { ["Content-Range"] = "10-12" } }
			assert.equal(400, r.status)
			assert.equal("SIZE_INVALID", r.json.errors[1].code)
		end)

		it("keeps every byte of a body the client broke off, and resumes from there", function()
			local uuid = start("a")
			local url = "/v2/a/blobs/uploads/" .. uuid
			local r = h:req { method = "PATCH", path = url, pieces = { "abc", "def" },
				error = "client aborted", partial = "gh", chunked = true }
			assert.is_true(r.status >= 400)
			r = h:req { method = "GET", path = url }
			assert.equal("0-7", r.headers.Range)
			r = h:req { method = "PATCH", path = url, body = "ij", headers = { ["Content-Range"] = "8-9" } }
			assert.equal(202, r.status)
			r = h:req { method = "PUT", path = url, query = { digest = sha256("abcdefghij") } }
			assert.equal(201, r.status, r.body)
		end)

		it("answers a stale upload URL with 204 status when it still exists, 404 once finished", function()
			local uuid = start("a")
			local url = "/v2/a/blobs/uploads/" .. uuid
			h:req { method = "PATCH", path = url, body = "xyz" }
			local r = h:req { method = "HEAD", path = url }
			assert.equal(204, r.status)
			assert.equal("0-2", r.headers.Range)
		end)

		it("PUT without digest: 400 DIGEST_INVALID and the upload stays; wrong digest: 400", function()
			local uuid = start("a")
			local url = "/v2/a/blobs/uploads/" .. uuid
			h:req { method = "PATCH", path = url, body = "data" }
			local r = h:req { method = "PUT", path = url }
			assert.equal(400, r.status)
			assert.equal("DIGEST_INVALID", r.json.errors[1].code)
			r = h:req { method = "PUT", path = url, query = { digest = sha256("other") } }
			assert.equal(400, r.status)
			assert.equal("DIGEST_INVALID", r.json.errors[1].code)
		end)

		it("DELETE cancels: 204, then 404", function()
			local uuid = start("a")
			local url = "/v2/a/blobs/uploads/" .. uuid
			assert.equal(204, h:req { method = "DELETE", path = url }.status)
			assert.equal(404, h:req { method = "DELETE", path = url }.status)
			assert.same({}, store:uploads())
		end)

		it("answers malformed upload ids with 404 BLOB_UPLOAD_UNKNOWN", function()
			for _, id in ipairs { "x", "..", "00000000-0000-0000-0000-00000000000G", "%2e%2e" } do
				local r = h:req { path = "/v2/a/blobs/uploads/" .. id }
				assert.equal(404, r.status, id)
				assert.equal("BLOB_UPLOAD_UNKNOWN", r.json.errors[1].code)
			end
		end)

		it("monolithic POST ?digest= stores the blob in one request (also empty)", function()
			local dg = push_blob("m/one", "monolithic body")
			local r = h:req { method = "HEAD", path = "/v2/m/one/blobs/" .. dg }
			assert.equal(200, r.status)
			assert.equal("15", r.headers["Content-Length"])
			assert.is_nil(r.body)
			local empty = push_blob("m/one", "")
			assert.equal("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", empty)
			r = h:req { path = "/v2/m/one/blobs/" .. empty }
			assert.equal(200, r.status)
			assert.equal("", r.body or "")
			-- a wrong digest leaves nothing behind
			r = h:req { method = "POST", path = "/v2/m/one/blobs/uploads/", query = { digest = sha256("x") },
				body = "y" }
			assert.equal(400, r.status)
			assert.same({}, store:uploads())
		end)

		it("mounts across repositories (201), automatically without from, else falls back to 202", function()
			local dg = push_blob("src", "shared layer")
			local r = h:req { method = "POST", path = "/v2/dst/blobs/uploads/", query = { mount = dg, from = "src" } }
			assert.equal(201, r.status)
			assert.equal("/v2/dst/blobs/" .. dg, r.headers.Location)
			assert.equal(200, h:req { path = "/v2/dst/blobs/" .. dg }.status)
			r = h:req { method = "POST", path = "/v2/auto/blobs/uploads/", query = { mount = dg } }
			assert.equal(201, r.status)
			r = h:req { method = "POST", path = "/v2/dst2/blobs/uploads/", query = { mount = sha256("nope"),
				from = "src" } }
			assert.equal(202, r.status)
			r = h:req { method = "POST", path = "/v2/dst3/blobs/uploads/", query = { mount = dg, from = "../x" } }
			assert.equal(202, r.status)
		end)

		it("refuses a body over the per-repository limit with 413 before reading it", function()
			setup { limit = function(repo) return repo == "small" and 10 or nil end }
			local r = h:req { method = "POST", path = "/v2/small/blobs/uploads/", query = { digest = sha256(("x"):rep(11)) },
				body = ("x"):rep(11) }
			assert.equal(413, r.status)
			assert.equal("SIZE_INVALID", r.json.errors[1].code)
			assert.same({}, store:uploads())
			local uuid = start("small")
			r = h:req { method = "PATCH", path = "/v2/small/blobs/uploads/" .. uuid, body = ("x"):rep(11) }
			assert.equal(413, r.status)
			r = h:req { path = "/v2/small/blobs/uploads/" .. uuid }
			assert.equal("0-0", r.headers.Range)
		end)

		it("holds the per-repository limit for chunked bodies: 413, the upload kept at most at the limit", function()
			setup { limit = function(repo) return repo:find("^small") and 10 or nil end }
			local uuid = start("small")
			local url = "/v2/small/blobs/uploads/" .. uuid
			local data = "0123456789abcdefghij"
			-- 7-byte pieces: 7 fit, the next piece would pass 10
			local r = h:req { method = "PATCH", path = url, body = data, chunked = true }
			assert.equal(413, r.status)
			assert.equal("SIZE_INVALID", r.json.errors[1].code)
			r = h:req { path = url }
			assert.equal(204, r.status)
			assert.equal("0-6", r.headers.Range)
			-- resumed by an in-limit PATCH up to exactly the limit
			r = h:req { method = "PATCH", path = url, body = data:sub(8, 10), chunked = true }
			assert.equal(202, r.status, r.body)
			assert.equal("0-9", r.headers.Range)
			r = h:req { method = "PATCH", path = url, body = "x", chunked = true }
			assert.equal(413, r.status)
			assert.equal("0-9", h:req { path = url }.headers.Range)
			r = h:req { method = "PUT", path = url, query = { digest = sha256(data:sub(1, 10)) } }
			assert.equal(201, r.status, r.body)
			-- a final chunk of PUT ?digest= past the limit: 413, the upload stays
			uuid = start("small2")
			url = "/v2/small2/blobs/uploads/" .. uuid
			r = h:req { method = "PUT", path = url, query = { digest = sha256(data) }, body = data, chunked = true }
			assert.equal(413, r.status)
			assert.equal("SIZE_INVALID", r.json.errors[1].code)
			assert.equal("0-6", h:req { path = url }.headers.Range)
			r = h:req { method = "PUT", path = url, query = { digest = sha256(data:sub(1, 10)) },
				body = data:sub(8, 10), chunked = true }
			assert.equal(201, r.status, r.body)
			-- monolithic POST ?digest= with a chunked body past the limit: nothing left
			r = h:req { method = "POST", path = "/v2/small3/blobs/uploads/", query = { digest = sha256(data) },
				body = data, chunked = true }
			assert.equal(413, r.status)
			assert.equal("SIZE_INVALID", r.json.errors[1].code)
			assert.same({}, store:uploads("small3"))
			r = h:req { method = "POST", path = "/v2/small3/blobs/uploads/", query = { digest = sha256(data:sub(1, 10)) },
				body = data:sub(1, 10), chunked = true }
			assert.equal(201, r.status, r.body)
			-- other repositories are not capped
			uuid = start("big")
			r = h:req { method = "PATCH", path = "/v2/big/blobs/uploads/" .. uuid, body = data, chunked = true }
			assert.equal(202, r.status, r.body)
			assert.equal("0-19", r.headers.Range)
		end)

		it("lets the host copy a body elsewhere after closing the upload (offload)", function()
			setup { limit = function(repo) return repo:find("^small") and 10 or nil end }
			local data = ("offloaded body "):rep(1000)
			local uuid = start("o")
			local url = "/v2/o/blobs/uploads/" .. uuid
			local r = h:req { method = "PATCH", path = url, body = data:sub(1, 5000), offload = true }
			assert.equal(202, r.status, r.body)
			assert.equal("0-4999", r.headers.Range)
			assert.equal(1, h.copies)
			-- the upload is not held: a status request goes through
			assert.equal("0-4999", h:req { path = url }.headers.Range)
			-- another request appended between the close and the copy: 416
			r = h:req { method = "PATCH", path = url, body = data:sub(5001), offload = true,
				before_copy = function(repo, id)
					local u = assert(store:resume(repo, id))
					assert(u:write(data:sub(5001, 5001)))
					assert(u:close())
				end }
			assert.equal(416, r.status, r.body)
			assert.equal("RANGE_INVALID", r.json.errors[1].code)
			assert.equal("0-5000", r.headers.Range)
			r = h:req { method = "PUT", path = url, query = { digest = sha256(data) }, body = data:sub(5002),
				offload = true }
			assert.equal(201, r.status, r.body)
			assert.equal(sha256(data), r.headers["Docker-Content-Digest"])
			assert.equal(data, h:req { path = "/v2/o/blobs/" .. sha256(data) }.body)
			-- monolithic
			r = h:req { method = "POST", path = "/v2/o/blobs/uploads/", query = { digest = sha256("abc") },
				body = "abc", offload = true }
			assert.equal(201, r.status, r.body)
			r = h:req { method = "POST", path = "/v2/o/blobs/uploads/", query = { digest = sha256("abd") },
				body = "abc", offload = true }
			assert.equal(400, r.status)
			assert.equal("DIGEST_INVALID", r.json.errors[1].code)
			assert.same({}, store:uploads("o"))
			-- the limit caps the copy of a body of unknown length: 413, nothing of it stored
			uuid = start("small")
			url = "/v2/small/blobs/uploads/" .. uuid
			r = h:req { method = "PATCH", path = url, body = ("y"):rep(11), chunked = true, offload = true }
			assert.equal(413, r.status)
			assert.equal("SIZE_INVALID", r.json.errors[1].code)
			assert.equal("0-0", h:req { path = url }.headers.Range)
			r = h:req { method = "PATCH", path = url, body = ("y"):rep(10), chunked = true, offload = true }
			assert.equal(202, r.status, r.body)
			assert.equal("0-9", r.headers.Range)
			r = h:req { method = "POST", path = "/v2/small/blobs/uploads/", query = { digest = sha256(("y"):rep(11)) },
				body = ("y"):rep(11), chunked = true, offload = true }
			assert.equal(413, r.status)
			assert.same({ uuid }, (function()
				local t = {}
				for _, up in ipairs(store:uploads("small")) do t[#t + 1] = up.uuid end
				return t
			end)())
		end)

		it("enforces the store's max_size on a chunked body (413)", function()
			store:close()
			store = assert(layerup.open(d, { retry = false, max_size = 8 }))
			app = oci.new { store = store }
			h = fakehost.new(app)
			local uuid = start("c")
			local r = h:req { method = "PATCH", path = "/v2/c/blobs/uploads/" .. uuid, body = ("z"):rep(20),
				chunked = true }
			assert.equal(413, r.status)
			assert.equal("SIZE_INVALID", r.json.errors[1].code)
		end)

		it("copies a body the host hands over as a file with read_from (HTTP/2 spooling), not the reader", function()
			local data = ("spooled body "):rep(10000)
			local uuid = start("f")
			local r = h:req { method = "PATCH", path = "/v2/f/blobs/uploads/" .. uuid, body = data, file = true,
				content_length = false, chunked = true }
			assert.equal(202, r.status, r.body)
			assert.equal(0, h.reader_calls)
			assert.equal("0-" .. (#data - 1), r.headers.Range)
			local dg = sha256(data)
			r = h:req { method = "PUT", path = "/v2/f/blobs/uploads/" .. uuid, query = { digest = dg } }
			assert.equal(201, r.status, r.body)
			r = h:req { path = "/v2/f/blobs/" .. dg }
			assert.equal(data, r.body)
			-- monolithic, and the store's size limit through read_from
			r = h:req { method = "POST", path = "/v2/f/blobs/uploads/", query = { digest = sha256("abc") },
				body = "abc", file = true }
			assert.equal(201, r.status, r.body)
			assert.equal(0, h.reader_calls)
			store:close()
			store = assert(layerup.open(d, { retry = false, max_size = 8 }))
			app = oci.new { store = store }
			h = fakehost.new(app)
			uuid = start("f")
			r = h:req { method = "PATCH", path = "/v2/f/blobs/uploads/" .. uuid, body = ("z"):rep(20),
				file = true, chunked = true }
			assert.equal(413, r.status)
			assert.equal("SIZE_INVALID", r.json.errors[1].code)
			assert.equal(0, h.reader_calls)
		end)
	end)

	describe("blob reads", function()
		it("serves ranges: 206 with Content-Range, 416 with bytes */size when unsatisfiable", function()
			local dg = push_blob("r", "0123456789")
			local url = "/v2/r/blobs/" .. dg
			local r = h:req { path = url, headers = { Range = "bytes=2-5" } }
			assert.equal(206, r.status)
			assert.equal("2345", r.body)
			assert.equal("bytes 2-5/10", r.headers["Content-Range"])
			r = h:req { path = url, headers = { Range = "bytes=7-" } }
			assert.equal("789", r.body)
			r = h:req { path = url, headers = { Range = "bytes=-2" } }
			assert.equal("89", r.body)
			r = h:req { path = url, headers = { Range = "bytes=8-100" } }
			assert.equal("89", r.body)
			for _, bad in ipairs { "bytes=10-", "bytes=5-2", "bytes=x", "items=1-2", "bytes=-0" } do
				r = h:req { path = url, headers = { Range = bad } }
				assert.equal(416, r.status, bad)
				assert.equal("bytes */10", r.headers["Content-Range"])
			end
		end)

		it("answers 404 BLOB_UNKNOWN for a blob not linked in the repository", function()
			local dg = push_blob("one", "only here")
			local r = h:req { path = "/v2/two/blobs/" .. dg }
			assert.equal(404, r.status)
			assert.equal("BLOB_UNKNOWN", r.json.errors[1].code)
		end)

		it("hands GET to the host's send_blob with the data path and headers", function()
			local dg = push_blob("s", "sendfile me")
			local got
			local r = h:req { path = "/v2/s/blobs/" .. dg, send_blob = function(ctx) got = ctx; return true end }
			assert.is_nil(r.status)
			assert.equal(oci.blob_data_path(dg), got.path)
			assert.equal(11, got.size)
			assert.equal(dg, got.headers["Docker-Content-Digest"])
		end)

		it("DELETE unlinks the blob from the repository (202), then 404", function()
			local dg = push_blob("del", "bye")
			assert.equal(202, h:req { method = "DELETE", path = "/v2/del/blobs/" .. dg }.status)
			assert.equal(404, h:req { path = "/v2/del/blobs/" .. dg }.status)
			assert.equal(404, h:req { method = "DELETE", path = "/v2/del/blobs/" .. dg }.status)
		end)
	end)

	describe("manifests", function()
		it("PUT by tag writes the registry layout; GET/HEAD by tag and digest", function()
			local m = image("img/x")
			local r, body = put_manifest("img/x", "latest", m)
			assert.equal(201, r.status, r.body)
			local dg = sha256(body)
			assert.equal(dg, r.headers["Docker-Content-Digest"])
			local hex = dg:sub(8)
			local base = "/docker/registry/v2/repositories/img/x/_manifests"
			assert.equal(dg, d:get_content(base .. "/revisions/sha256/" .. hex .. "/link"))
			assert.equal(dg, d:get_content(base .. "/tags/latest/current/link"))
			assert.equal(dg, d:get_content(base .. "/tags/latest/index/sha256/" .. hex .. "/link"))
			assert.equal(body, d:get_content(oci.blob_data_path(dg)))
			for _, ref in ipairs { "latest", dg } do
				r = h:req { path = "/v2/img/x/manifests/" .. ref }
				assert.equal(200, r.status)
				assert.equal(body, r.body)
				assert.equal(oci.MEDIA.oci_manifest, r.headers["Content-Type"])
				assert.equal(dg, r.headers["Docker-Content-Digest"])
				r = h:req { method = "HEAD", path = "/v2/img/x/manifests/" .. ref }
				assert.equal(200, r.status)
				assert.equal(tostring(#body), r.headers["Content-Length"])
			end
		end)

		it("refuses manifests with unknown blobs (MANIFEST_BLOB_UNKNOWN), bad JSON, wrong digest, too large", function()
			local m = image("v")
			m.layers[1].digest = sha256("not pushed")
			local r = put_manifest("v", "t", m)
			assert.equal(400, r.status)
			assert.equal("MANIFEST_BLOB_UNKNOWN", r.json.errors[1].code)
			r = put_manifest("v", "t", "{not json")
			assert.equal("MANIFEST_INVALID", r.json.errors[1].code)
			r = put_manifest("v", "t", "[1,2]")
			assert.equal("MANIFEST_INVALID", r.json.errors[1].code)
			r = put_manifest("v", sha256("other"), image("v"))
			assert.equal("DIGEST_INVALID", r.json.errors[1].code)
			r = put_manifest("v", "bad tag!", image("v"))
			assert.equal(400, r.status)
			r = put_manifest("v", "sha256:zz", image("v"))
			assert.equal(400, r.status)
			setup { max_manifest = 100 }
			r = put_manifest("v", "t", image("v"))
			assert.equal(413, r.status)
			assert.equal(404, h:req { path = "/v2/v/manifests/t" }.status)
		end)

		it("answers unknown manifests with 404 MANIFEST_UNKNOWN and bad references with 400, never 500", function()
			local r = h:req { path = "/v2/none/manifests/latest" }
			assert.equal(404, r.status)
			assert.equal("MANIFEST_UNKNOWN", r.json.errors[1].code)
			for _, ref in ipairs { "sha256:abc", "..", "a%2Fb", ":" } do
				r = h:req { path = "/v2/none/manifests/" .. ref }
				assert.equal(400, r.status, ref)
			end
		end)

		it("PUT by digest, DELETE by tag and by digest", function()
			local body = cjson.encode(image("del/m"))
			local dg = sha256(body)
			local r = put_manifest("del/m", dg, body)
			assert.equal(201, r.status, r.body)
			assert.equal(201, put_manifest("del/m", "v1", body).status)
			assert.equal(202, h:req { method = "DELETE", path = "/v2/del/m/manifests/v1" }.status)
			assert.equal(404, h:req { path = "/v2/del/m/manifests/v1" }.status)
			assert.equal(200, h:req { path = "/v2/del/m/manifests/" .. dg }.status)
			assert.equal(201, put_manifest("del/m", "v2", body).status)
			assert.equal(202, h:req { method = "DELETE", path = "/v2/del/m/manifests/" .. dg }.status)
			assert.equal(404, h:req { path = "/v2/del/m/manifests/" .. dg }.status)
			assert.equal(404, h:req { path = "/v2/del/m/manifests/v2" }.status)
		end)

		it("accepts an index whose manifests exist, refuses one whose do not", function()
			local _, body = put_manifest("ix", "amd64", image("ix"))
			local index = { schemaVersion = 2, mediaType = oci.MEDIA.oci_index, manifests = {
				{ mediaType = oci.MEDIA.oci_manifest, digest = sha256(body), size = #body } } }
			local r = put_manifest("ix", "multi", index, oci.MEDIA.oci_index)
			assert.equal(201, r.status, r.body)
			assert.equal(oci.MEDIA.oci_index, h:req { path = "/v2/ix/manifests/multi" }.headers["Content-Type"])
			index.manifests[1].digest = sha256("missing")
			r = put_manifest("ix", "broken", index, oci.MEDIA.oci_index)
			assert.equal("MANIFEST_BLOB_UNKNOWN", r.json.errors[1].code)
		end)
	end)

	describe("tags and referrers", function()
		it("lists tags sorted with n/last pagination and Link headers", function()
			local body = cjson.encode(image("t/r"))
			for _, tag in ipairs { "v3", "latest", "v1", "alpha", "v2" } do
				assert.equal(201, put_manifest("t/r", tag, body).status)
			end
			local r = h:req { path = "/v2/t/r/tags/list" }
			assert.equal(200, r.status)
			assert.same({ "alpha", "latest", "v1", "v2", "v3" }, r.json.tags)
			assert.equal("t/r", r.json.name)
			r = h:req { path = "/v2/t/r/tags/list", query = { n = "2" } }
			assert.same({ "alpha", "latest" }, r.json.tags)
			assert.equal('</v2/t/r/tags/list?n=2&last=latest>; rel="next"', r.headers.Link)
			r = h:req { path = "/v2/t/r/tags/list", query = { n = "2", last = "latest" } }
			assert.same({ "v1", "v2" }, r.json.tags)
			r = h:req { path = "/v2/t/r/tags/list", query = { n = "2", last = "v2" } }
			assert.same({ "v3" }, r.json.tags)
			assert.is_nil(r.headers.Link)
			r = h:req { path = "/v2/t/r/tags/list", query = { n = "0" } }
			assert.equal("[]", r.body:match('"tags":(%[%])'))
			assert.equal(404, h:req { path = "/v2/nothing/tags/list" }.status)
		end)

		it("lists referrers of a subject, filters by artifactType, empty index for unknown digests", function()
			local _, subject_body = put_manifest("ref", "base", image("ref"))
			local sdg = sha256(subject_body)
			local art = image("ref", 1)
			art.artifactType = "application/vnd.example.sbom"
			art.subject = { mediaType = oci.MEDIA.oci_manifest, digest = sdg, size = #subject_body }
			local r, abody = put_manifest("ref", sha256(cjson.encode(art)), art)
			-- the digest of what was really sent
			r, abody = put_manifest("ref", sha256(abody), abody)
			assert.equal(201, r.status, r.body)
			assert.equal(sdg, r.headers["OCI-Subject"])
			r = h:req { path = "/v2/ref/referrers/" .. sdg }
			assert.equal(200, r.status)
			assert.equal(oci.MEDIA.oci_index, r.headers["Content-Type"])
			assert.equal(1, #r.json.manifests)
			assert.equal(sha256(abody), r.json.manifests[1].digest)
			assert.equal("application/vnd.example.sbom", r.json.manifests[1].artifactType)
			r = h:req { path = "/v2/ref/referrers/" .. sdg, query = { artifactType = "other/type" } }
			assert.equal(0, #r.json.manifests)
			assert.equal("artifactType", r.headers["OCI-Filters-Applied"])
			r = h:req { path = "/v2/ref/referrers/" .. sha256("unknown") }
			assert.equal(200, r.status)
			assert.equal(0, #r.json.manifests)
		end)
	end)

	describe("policies", function()
		it("authorize: 401 with WWW-Authenticate or 403, and nothing stored", function()
			setup { authorize = function(ctx)
				if ctx.repo == "locked" then
					return false, 401, { ["WWW-Authenticate"] = 'Basic realm="layerup"' }
				end
				if ctx.action == "push" and ctx.repo == "ro" then
					return false, 403
				end
				return true
			end }
			local r = h:req { method = "POST", path = "/v2/locked/blobs/uploads/" }
			assert.equal(401, r.status)
			assert.equal("UNAUTHORIZED", r.json.errors[1].code)
			assert.equal('Basic realm="layerup"', r.headers["WWW-Authenticate"])
			r = h:req { method = "POST", path = "/v2/ro/blobs/uploads/" }
			assert.equal(403, r.status)
			assert.equal("DENIED", r.json.errors[1].code)
			assert.equal(404, h:req { path = "/v2/ro/manifests/x" }.status) -- pull allowed
			assert.same({}, store:uploads())
		end)

		it("admission through the store: DENIED 403 before any upload exists", function()
			store:close()
			store = assert(layerup.open(d, { retry = false, admit = layerup.admit.deny { "tmp/*" } }))
			h = fakehost.new(oci.new { store = store })
			local r = h:req { method = "POST", path = "/v2/tmp/x/blobs/uploads/" }
			assert.equal(403, r.status)
			assert.equal("DENIED", r.json.errors[1].code)
			assert.same({}, store:uploads())
		end)

		it("a LOCKED upload is retried with the host's sleep, then answered 429 + Retry-After", function()
			local uuid = start("lk")
			local held = assert(store:resume("lk", uuid))
			local r = h:req { method = "PATCH", path = "/v2/lk/blobs/uploads/" .. uuid, body = "x" }
			assert.equal(429, r.status)
			assert.equal("TOOMANYREQUESTS", r.json.errors[1].code)
			assert.equal("1", r.headers["Retry-After"])
			assert.is_true(h.slept >= 2)
			held:close()
			r = h:req { method = "PATCH", path = "/v2/lk/blobs/uploads/" .. uuid, body = "x" }
			assert.equal(202, r.status)
		end)
	end)
end)
end

describe("layerup.oci.json", function()
	it("encodes strings with escapes, arrays, sorted objects and integers", function()
		assert.equal('{"a":[1,2.5,"x\\"\\n"],"b":[],"c":true}',
			oci.json { c = true, a = { 1, 2.5, 'x"\n' }, b = oci.array() })
	end)
end)
