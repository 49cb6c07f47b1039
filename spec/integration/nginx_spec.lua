-- The nginx host (bin/layerup serve: nginx + lua-nginx-module + LuaJIT +
-- layerup.oci) against real clients: skopeo pushes and pulls a multi-layer
-- image (a 64 MiB layer, an empty blob), docker-registry 2.8 serves what it
-- wrote, interrupted pushes resume on another worker, Content-Range errors
-- give 416, 8 pushers run at once, hostile requests get 4xx, and the
-- authorize / admission / size policies refuse without leaving anything.
-- Every server runs on 127.0.0.1 at a free port and is stopped by PID.

local util = require "integration.helpers.util"
local R = require "integration.helpers.registry"
local N = require "integration.helpers.nginx"
local oci = require "integration.helpers.oci"
local skopeo = require "integration.helpers.skopeo"

local KiB, MiB = 1024, 1024 * 1024
local V2 = "/docker/registry/v2"
local q = util.q

local CONFIG = [[
local layerup = require "layerup"
return {
	worker_header = true,
	admit = layerup.admit.deny { "denied/*" },
	limit = function(repo)
		if repo:find("^small/") then return 1024 * 1024 end
	end,
	authorize = function(ctx)
		if ctx.repo and ctx.repo:find("^secret/") then
			if ctx.headers.authorization ~= "Basic dGVzdDp0ZXN0" then
				return false, 401, { ["WWW-Authenticate"] = 'Basic realm="layerup"' }
			end
		end
		if ctx.repo and ctx.repo:find("^readonly/") and ctx.action ~= "pull" then
			return false, 403
		end
		return true
	end,
}
]]

local why = N.unavailable()
if not why and not skopeo.available() then
	why = "skopeo not installed"
end
if not why and not R.available() then
	why = "docker-registry not installed"
end

describe("the nginx host", function()
	if why then
		it("runs", function() pending(why) end)
		return
	end

	local work, root, host, sk

	lazy_setup(function()
		work = util.tmpdir("nginx-int")
		root = work .. "/root"
		util.mkdirp(root)
		host = N.start(root, { workers = 2, config = CONFIG, read_timeout = 2 })
		sk = skopeo.new(work .. "/skopeo")
	end)

	lazy_teardown(function()
		if host then host:stop() end
		if work then util.rmrf(work) end
	end)

	it("serves from a checkout without LUA_PATH/LUA_CPATH in the environment (make serve)", function()
		local root2 = work .. "/root-clean"
		util.mkdirp(root2)
		local h2 = N.start(root2, { workers = 1, clean_env = true })
		local ok, r = pcall(h2.http, h2, "GET", "/v2/")
		h2:stop()
		assert(ok, tostring(r))
		assert.equal(200, r.status)
	end)

	local function uploads_left(repo)
		local out = util.run("find " .. q(root .. V2 .. "/repositories/" .. repo .. "/_uploads")
			.. " -mindepth 1 -maxdepth 1 2>/dev/null")
		return out
	end

	it("takes a skopeo push of a multi-layer image and gives it back; registry 2.8 serves the same root", function()
		local img = oci.generate(work .. "/img", { 64 * MiB, 0, 1 * KiB, 300 * KiB }, "v1")
		local host_ref = "docker://127.0.0.1:" .. host.port .. "/test/img:v1"
		local out, rc = sk.copy("oci:" .. img.dir .. ":v1", host_ref)
		assert(rc == 0, "skopeo push failed: " .. out .. "\n" .. host:error_log():sub(-3000))
		-- manifest and blobs by digest
		local r = host:http("GET", "/v2/test/img/manifests/v1",
			{ headers = { "Accept: application/vnd.oci.image.manifest.v1+json" } })
		assert.equal(200, r.status)
		assert.equal(img.manifest.digest, r.headers["docker-content-digest"])
		for _, b in ipairs(img.blobs) do
			r = host:http("HEAD", "/v2/test/img/blobs/" .. b.digest)
			assert.equal(200, r.status, b.digest)
			assert.equal(tostring(b.size), r.headers["content-length"])
		end
		assert.equal("", uploads_left("test/img"))
		-- finish ran in the worker-thread pool; its events were replayed
		local elog = host:error_log()
		assert.truthy(elog:find("upload.finish", 1, true))
		assert.truthy(elog:find("finished in a worker thread repo=test/img", 1, true)) -- the 64 MiB layer
		assert.is_nil(elog:find("finishing inline", 1, true))
		-- back out
		out, rc = sk.copy(host_ref, "oci:" .. work .. "/out:v1")
		assert(rc == 0, "skopeo pull failed: " .. out)
		local function same_image(dir)
			local back = oci.read(dir, "v1")
			assert.equal(img.manifest.digest, back.manifest.digest)
			assert.equal(img.manifest.digest, back.manifest.actual)
			local blobs = { back.config }
			for i, l in ipairs(back.layers) do blobs[i + 1] = l end
			assert.equal(#img.blobs, #blobs)
			for i, b in ipairs(blobs) do
				assert.equal(img.blobs[i].digest, b.digest, "blob " .. i)
				assert.equal(b.digest, b.actual, "blob " .. i)
			end
		end
		same_image(work .. "/out")
		-- the registry serves what this host wrote
		local reg = R.start(root)
		local ok, err = pcall(function()
			local o2, rc2 = sk.copy("docker://127.0.0.1:" .. reg.port .. "/test/img:v1", "oci:" .. work .. "/out2:v1")
			assert(rc2 == 0, "pull from registry 2.8 failed: " .. o2)
			same_image(work .. "/out2")
		end)
		reg:stop()
		assert(ok, err)
	end)

	it("keeps the bytes of a PATCH whose client was killed; the resume lands on the other worker", function()
		local data = util.random_bytes(24 * MiB)
		local file = work .. "/big.bin"
		util.write_file(file, data)
		local uuid, loc = R.start_upload(host, "resume/me")
		-- a PATCH whose client sends 10 MiB of 24, then is killed
		local head = ("PATCH %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"):format(loc, #data)
		util.write_file(file, head .. data:sub(1, 10 * MiB))
		local pidf = work .. "/client.pid"
		util.must(("sh -c %s"):format(q(("bash -c %s </dev/null >/dev/null 2>&1 & echo $! > %s"):format(
			q(("exec 3<>/dev/tcp/127.0.0.1/%d; cat %s >&3; sleep 60"):format(host.port, q(file))), q(pidf)))))
		local cpid = tonumber(util.read_file(pidf))
		util.sleep(1.5)
		util.exec("kill -KILL " .. cpid .. " 2>/dev/null")
		-- the server notices the disconnect and closes the upload at its size
		local size
		for _ = 1, 50 do
			local r = host:http("GET", loc)
			if r.status == 204 then
				size = tonumber(r.headers["range"]:match("%-(%d+)$")) + 1
				if host:error_log():find("oci.body_interrupted", 1, true) then break end
			end
			util.sleep(0.1)
		end
		assert(size == 10 * MiB, "size " .. tostring(size) .. "\n" .. host:error_log():sub(-2000))
		local interrupted = host:error_log():match("%[warn%] (%d+)#%d+: [^\n]*oci.body_interrupted[^\n]*" .. uuid:gsub("%-", "%%-"))
		assert.truthy(interrupted, "no oci.body_interrupted in the error log")
		-- resume: the rest in 16 PATCHes, each on a new connection
		local seen, other = {}, false
		local rest = data:sub(size + 1)
		local step = math.ceil(#rest / 16)
		local off = size
		for i = 1, #rest, step do
			local part = rest:sub(i, i + step - 1)
			local r = host:http("PATCH", loc, { body = part,
				headers = { ("Content-Range: %d-%d"):format(off, off + #part - 1) } })
			assert.equal(202, r.status, r.body)
			off = off + #part
			assert.equal("0-" .. (off - 1), r.headers["range"])
			local w = r.headers["x-layerup-worker"]
			seen[w] = true
			if w ~= interrupted then other = true end
		end
		assert.is_true(other, "no resume PATCH landed on another worker")
		local dg = util.sha256(data)
		local r = host:http("PUT", loc .. "?digest=" .. dg)
		assert.equal(201, r.status, r.body)
		assert.equal(dg, r.headers["docker-content-digest"])
		assert.equal(dg, util.sha256_file(root .. V2 .. "/blobs/sha256/" .. dg:sub(8, 9) .. "/" .. dg:sub(8) .. "/data"))
		assert.equal(404, host:http("GET", "/v2/resume/me/blobs/uploads/" .. uuid).status)
	end)

	it("answers a Content-Range gap or overlap with 416 and the current Range", function()
		local _, loc = R.start_upload(host, "range/test")
		local r = host:http("PATCH", loc, { body = ("a"):rep(100), headers = { "Content-Range: 0-99" } })
		assert.equal(202, r.status)
		for _, cr in ipairs { "101-110", "50-59", "0-9", "200-100" } do
			r = host:http("PATCH", loc, { body = ("b"):rep(10), headers = { "Content-Range: " .. cr } })
			assert.equal(416, r.status, cr)
			assert.equal("0-99", r.headers["range"])
			assert.same({ "RANGE_INVALID" }, N.error_codes(r.body))
		end
		assert.equal("0-99", host:http("GET", loc).headers["range"])
	end)

	it("streams a chunked PATCH through the raw socket, answering Expect: 100-continue", function()
		local data = util.random_bytes(3 * MiB + 17)
		local file = work .. "/chunked.bin"
		util.write_file(file, data)
		local uuid, loc = R.start_upload(host, "chunked/x")
		local r = host:curl(("-X PATCH -H 'Transfer-Encoding: chunked' -H 'Expect: 100-continue' -T %s %s%s")
			:format(q(file), host.base, loc))
		assert.equal(202, r.status, r.body .. (r.err or ""))
		assert.equal("0-" .. (#data - 1), r.headers["range"])
		assert.equal(uuid, r.headers["docker-upload-uuid"])
		local dg = util.sha256(data)
		assert.equal(201, host:http("PUT", loc .. "?digest=" .. dg).status)
	end)

	it("lets 8 concurrent pushers share layers: every push succeeds, one blob per digest", function()
		local img = oci.generate(work .. "/shared", { 2 * MiB, 512 * KiB, 10 * KiB }, "s")
		local pids, logs = {}, {}
		for i = 1, 8 do
			logs[i] = work .. "/push" .. i .. ".log"
			local cmd = ("%s skopeo --command-timeout 300s --policy %s --registries.d %s --tmpdir %s copy --dest-tls-verify=false --dest-no-creds --dest-oci-accept-uncompressed-layers --preserve-digests %s %s > %s 2>&1; echo $? >> %s")
				:format(("env HOME=%s XDG_RUNTIME_DIR=%s XDG_CONFIG_HOME=%s CONTAINERS_REGISTRIES_CONF=%s REGISTRY_AUTH_FILE=%s")
					:format(q(sk.dir .. "/home"), q(sk.dir .. "/run"), q(sk.dir .. "/config"),
						q(sk.dir .. "/registries.conf"), q(sk.dir .. "/auth.json")),
					q(sk.dir .. "/policy.json"), q(sk.dir .. "/registries.d"), q(sk.dir .. "/tmp"),
					q("oci:" .. img.dir .. ":s"), q("docker://127.0.0.1:" .. host.port .. "/many/p" .. i .. ":s"),
					q(logs[i]), q(logs[i]))
			local pidf = work .. "/p" .. i .. ".pid"
			util.must("sh -c " .. q("( " .. cmd .. " ) </dev/null >/dev/null 2>&1 & echo $! > " .. q(pidf)))
			pids[i] = tonumber(util.read_file(pidf))
		end
		for _, pid in ipairs(pids) do
			for _ = 1, 1200 do
				if not util.alive(pid) then break end
				util.sleep(0.1)
			end
		end
		for i = 1, 8 do
			local log = util.read_file(logs[i]) or ""
			assert(log:match("0%s*$"), "push " .. i .. " failed: " .. log)
			local r = host:http("HEAD", "/v2/many/p" .. i .. "/manifests/s")
			assert.equal(200, r.status)
			assert.equal(img.manifest.digest, r.headers["docker-content-digest"])
			assert.equal("", uploads_left("many/p" .. i))
		end
		for _, b in ipairs(img.blobs) do
			local dir = root .. V2 .. "/blobs/sha256/" .. b.digest:sub(8, 9)
			local out = util.run("ls " .. q(dir))
			local n = 0
			for name in out:gmatch("[^\n]+") do
				if name == b.digest:sub(8) then n = n + 1 end
			end
			assert.equal(1, n)
			assert.equal(b.digest, util.sha256_file(dir .. "/" .. b.digest:sub(8) .. "/data"))
		end
	end)

	describe("hostile requests", function()
		it("names with traversal (also percent-encoded) and header injection give 4xx and touch nothing", function()
			for _, name in ipairs { "../../etc", "a/../../../b", "a/%2e%2e/%2e%2e/b", "..%2f..%2fx", "a%00b",
				"a%0d%0aX-Injected:%20yes", "UPPER/case", "a//b" } do
				local r = host:curl(("-X POST %s/v2/%s/blobs/uploads/"):format(host.base, name))
				assert(r.status >= 400 and r.status < 500, name .. " gave " .. r.status)
				assert.is_nil(r.headers["x-injected"])
			end
			assert.is_nil(util.read_file(root .. "/etc"))
			local out = util.run("find " .. q(root) .. " -name '*_uploads*' -path '*%*' 2>/dev/null")
			assert.equal("", out)
		end)

		it("bad digests give 400 DIGEST_INVALID, never 500", function()
			local _, loc = R.start_upload(host, "hostile/d")
			for _, dg in ipairs { "sha256:zz", "sha256:" .. ("A"):rep(64), "md5:abc", "sha256%3A" .. ("0"):rep(64) } do
				local r = host:http("PUT", loc .. "?digest=" .. dg)
				assert.equal(400, r.status, dg)
				r = host:http("GET", "/v2/hostile/d/blobs/" .. dg)
				assert(r.status == 400 or r.status == 404, dg .. " gave " .. r.status)
				r = host:http("GET", "/v2/hostile/d/manifests/" .. dg)
				assert(r.status >= 400 and r.status < 500, dg .. " gave " .. r.status)
			end
		end)

		it("chunked framing errors end the body: the upload keeps what arrived whole", function()
			local _, loc = R.start_upload(host, "hostile/chunk")
			local status = host:raw("PATCH " .. loc .. " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
				.. "5\r\nhello\r\nzz\r\nmore\r\n0\r\n\r\n")
			assert(status and status >= 400 and status < 500, "status " .. tostring(status))
			assert.equal("0-4", host:http("GET", loc).headers["range"])
			status = host:raw("PATCH " .. loc .. " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
				.. "3\r\nabcXX")
			assert(status and status >= 400, "status " .. tostring(status))
			assert.equal("0-7", host:http("GET", loc).headers["range"])
		end)

		it("a lying Content-Length (shorter than the body) leaves the extra bytes out", function()
			local _, loc = R.start_upload(host, "hostile/cl")
			local status, out = host:raw("PATCH " .. loc .. " HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n"
				.. "abcdEXTRA-GARBAGE\r\n\r\n")
			assert.equal(202, status, out)
			assert.equal("0-3", host:http("GET", loc).headers["range"])
		end)

		it("a client that stalls mid-body times out and the upload keeps its bytes", function()
			local _, loc = R.start_upload(host, "hostile/stall")
			host:raw("PATCH " .. loc .. " HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" .. ("s"):rep(300),
				{ stall = 4, wait = 1 })
			local r
			for _ = 1, 30 do
				r = host:http("GET", loc)
				if r.headers["range"] == "0-299" then break end
				util.sleep(0.2)
			end
			assert.equal("0-299", r.headers["range"])
		end)
	end)

	it("accepts examples/nginx/layerup.conf and policy.lua (nginx -t)", function()
		local top = util.repo_root()
		local build = os.getenv("BUILD") or (top .. "/build")
		local dir = work .. "/example"
		util.mkdirp(dir .. "/logs")
		local conf = util.read_file(top .. "/examples/nginx/layerup.conf")
			:gsub("/srv/layerup/build", build):gsub("/srv/layerup", top)
			:gsub("/srv/registry", root):gsub("/etc/layerup/policy.lua", top .. "/examples/nginx/policy.lua")
		util.write_file(dir .. "/nginx.conf", table.concat({
			"load_module /usr/lib/nginx/modules/ndk_http_module.so;",
			"load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;",
			"pid " .. dir .. "/nginx.pid;", "events {}", conf }, "\n"))
		local out, rc = util.run("nginx -t -p " .. q(dir) .. " -c " .. q(dir .. "/nginx.conf")
			.. " -e " .. q(dir .. "/error.log") .. " 2>&1")
		assert(rc == 0, out)
	end)

	describe("policies", function()
		it("authorize: 401 with WWW-Authenticate without credentials, 403 for a read-only push", function()
			local r = host:http("POST", "/v2/secret/x/blobs/uploads/")
			assert.equal(401, r.status)
			assert.equal('Basic realm="layerup"', r.headers["www-authenticate"])
			assert.same({ "UNAUTHORIZED" }, N.error_codes(r.body))
			r = host:http("POST", "/v2/secret/x/blobs/uploads/", { headers = { "Authorization: Basic dGVzdDp0ZXN0" } })
			assert.equal(202, r.status)
			r = host:http("POST", "/v2/readonly/x/blobs/uploads/")
			assert.equal(403, r.status)
			assert.same({ "DENIED" }, N.error_codes(r.body))
			assert.is_nil(util.read_file(root .. V2 .. "/repositories/readonly/x/_uploads"))
			assert.equal("", util.run("ls " .. q(root .. V2 .. "/repositories/readonly") .. " 2>/dev/null"))
		end)

		it("admission refuses with 403 and size limits with 413 before the body, leaving nothing", function()
			local r = host:http("POST", "/v2/denied/x/blobs/uploads/")
			assert.equal(403, r.status)
			assert.equal("", util.run("ls " .. q(root .. V2 .. "/repositories/denied") .. " 2>/dev/null"))
			local big = util.random_bytes(MiB + 1)
			r = host:http("POST", "/v2/small/x/blobs/uploads/?digest=" .. util.sha256(big), { body = big })
			assert.equal(413, r.status)
			assert.same({ "SIZE_INVALID" }, N.error_codes(r.body))
			assert.equal("", uploads_left("small/x"))
			local _, loc = R.start_upload(host, "small/y")
			r = host:http("PATCH", loc, { body = big })
			assert.equal(413, r.status)
			assert.equal("0-0", host:http("GET", loc).headers["range"])
		end)
	end)
end)
