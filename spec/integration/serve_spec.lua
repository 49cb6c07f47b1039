-- `layerup serve` end to end, started the way `make serve` starts it (from
-- the checkout, no LUA_PATH/LUA_CPATH, a ROOT that does not exist yet),
-- with real clients: it prints its URL once /v2/ answers, skopeo and
-- podman push to it and pull back, and SIGTERM to its PID stops nginx's
-- master and workers and removes the private prefix.  Then HTTP/2
-- (`--http2 ADDR:PORT`, h2c with prior knowledge): uploads whose bodies
-- nginx spools (read_body) and the engine copies from the spooled file,
-- streamed bodies without Content-Length, an upload continued across
-- HTTP/1.1 and HTTP/2, manifests; and, run as root, a ROOT owned by
-- another user (workers run as that user and must reach the temp paths).
-- Servers on 127.0.0.1 at free ports, stopped by PID.

local cjson = require "cjson"
local util = require "integration.helpers.util"
local R = require "integration.helpers.registry"
local N = require "integration.helpers.nginx"
local oci = require "integration.helpers.oci"
local skopeo = require "integration.helpers.skopeo"
local podman = require "integration.helpers.podman"

local MiB = 1024 * 1024
local V2 = "/docker/registry/v2"
local q = util.q
local TOP = util.repo_root()

local why = N.unavailable()
local is_root = util.run("id -u"):match("^%s*0%s*$") ~= nil

-- Start `bin/layerup serve ROOT --listen 127.0.0.1:PORT [extra]` as the
-- Makefile's serve target does: from the checkout, bin/layerup run
-- directly (its #! line), BUILD set, no Lua search paths in the
-- environment.  extra: more arguments, or a function(port) giving them.
-- Returns {pid=, port=, base=, log=, dir=, out=}.
local function start_serve(root, dir, extra, top, build)
	top = top or TOP
	build = build or os.getenv("BUILD") or (TOP .. "/build")
	local last
	for _ = 1, 5 do
		local s = { dir = dir, port = R.free_port(), log = dir .. "/serve.log" }
		s.base = "http://127.0.0.1:" .. s.port
		local cmd = ("cd %s && exec env -u LUA_PATH -u LUA_CPATH -u LUA_PATH_5_4 -u LUA_CPATH_5_4 BUILD=%s "
			.. "bin/layerup serve %s --listen 127.0.0.1:%d%s")
			:format(q(top), q(build), q(root), s.port,
				type(extra) == "function" and extra(s.port) or extra or "")
		util.must(("sh -c %s"):format(q(("sh -c %s >%s 2>&1 </dev/null & echo $! >%s")
			:format(q(cmd), q(s.log), q(dir .. "/serve.pid")))))
		s.pid = tonumber(util.read_file(dir .. "/serve.pid"))
		for _ = 1, 100 do
			if not util.alive(s.pid) then break end
			local out = util.read_file(s.log) or ""
			if out:find("layerup: serving", 1, true) then
				s.out = out
				return s
			end
			util.sleep(0.1)
		end
		last = util.read_file(s.log) or ""
		util.exec("kill -TERM " .. s.pid .. " 2>/dev/null")
		for _ = 1, 50 do
			if not util.alive(s.pid) then break end
			util.sleep(0.1)
		end
	end
	error("layerup serve did not come up:\n" .. tostring(last))
end

local wait_gone = util.wait_gone

local function children(pid)
	local t = {}
	for p in util.run("cat /proc/" .. pid .. "/task/*/children 2>/dev/null"):gmatch("%d+") do
		t[#t + 1] = tonumber(p)
	end
	return t
end

-- The nginx master below the serve process (serve -> sh -> nginx).
local function stop_serve(s)
	util.exec("kill -TERM " .. s.pid .. " 2>/dev/null")
	local gone = wait_gone(s.pid)
	if not gone then
		util.exec("kill -KILL " .. s.pid .. " 2>/dev/null")
	end
	return gone
end

local function curl(args)
	return N.curl(nil, args)
end

describe("layerup serve as `make serve` runs it", function()
	if why then
		it("runs", function() pending(why) end)
		return
	end

	local work, root, s, master, prefix, workers, shell

	lazy_setup(function()
		work = util.tmpdir("serve-int")
		root = work .. "/var/registry" -- does not exist yet: serve creates it
		s = start_serve(root, work)
	end)

	lazy_teardown(function()
		if s and util.alive(s.pid) then stop_serve(s) end
		if master and util.alive(master) then util.exec("kill -KILL " .. master .. " 2>/dev/null") end
		if work then util.rmrf(work) end
	end)

	it("prints its URL once /v2/ answers, with the nginx master's pid and its prefix", function()
		local line = s.out:match("[^\n]*layerup: serving[^\n]*")
		local _, url, pid, pfx = line:match("^layerup: serving (.-) at (%S+) %(nginx pid (%d+), prefix (.-)%)$")
		assert.equal(s.base .. "/v2/", url, line)
		master, prefix = tonumber(pid), pfx
		-- ROOT as given, created
		assert.equal(root, line:match("^layerup: serving (.-) at "))
		local _, rc = util.run("test -d " .. q(root))
		assert.equal(0, rc)
		local r = curl(q(url))
		assert.equal(200, r.status)
		assert.equal("registry/2.0", r.headers["docker-distribution-api-version"])
		assert.is_true(util.alive(master))
		workers = children(master)
		-- serve -> sh (forwards signals, watches serve) -> nginx master
		shell = tonumber(util.read_file("/proc/" .. master .. "/stat"):match("^%d+ %b() %a (%d+)"))
		assert.is_true(shell ~= s.pid and util.alive(shell))
		assert.equal(2, #workers)
		-- nginx's files live in the private prefix
		assert.is_true(util.exists(prefix .. "/nginx.pid"))
		assert.equal(master, tonumber(util.read_file(prefix .. "/nginx.pid")))
	end)

	it("takes a skopeo push and gives the image back", function()
		if not skopeo.available() then
			return pending("skopeo not installed")
		end
		local img = oci.generate(work .. "/img", { 3 * MiB, 0, 1024 }, "v1")
		local sk = skopeo.new(work .. "/skopeo")
		local ref = "docker://127.0.0.1:" .. s.port .. "/sk/img:v1"
		local out, rc = sk.copy("oci:" .. img.dir .. ":v1", ref)
		assert(rc == 0, "skopeo push: " .. out)
		out, rc = sk.copy(ref, "oci:" .. work .. "/back:v1")
		assert(rc == 0, "skopeo pull: " .. out)
		local back = oci.read(work .. "/back", "v1")
		assert.equal(img.manifest.digest, back.manifest.digest)
		for i, l in ipairs(img.layers) do
			assert.equal(l.digest, back.layers[i].actual)
		end
	end)

	it("takes a podman push and podman pulls it back", function()
		local pwhy = podman.unavailable()
		if pwhy then
			return pending(pwhy)
		end
		local pm = podman.new(work .. "/podman")
		local iid, img = podman.image(pm, { 2 * MiB, 0 })
		local out, rc
		out, rc = pm(("push --tls-verify=false --signature-policy %s %s %s")
			:format(q(pm.policy), iid, q("127.0.0.1:" .. s.port .. "/pm/img:v1")))
		assert(rc == 0, "podman push: " .. out)
		local other = podman.new(work .. "/podman2")
		out, rc = other(("pull -q --tls-verify=false --signature-policy %s %s")
			:format(q(other.policy), q("127.0.0.1:" .. s.port .. "/pm/img:v1")))
		assert(rc == 0, "podman pull: " .. out)
		assert.equal(iid, out:match("(%x+)%s*$"))
	end)

	it("stops master and workers on SIGTERM and removes its prefix", function()
		assert.is_truthy(master, "the first test found the master")
		assert.is_true(stop_serve(s), "serve process still alive")
		assert.is_true(wait_gone(master), "nginx master still alive")
		for _, w in ipairs(workers) do
			assert.is_true(wait_gone(w), "nginx worker " .. w .. " still alive")
		end
		assert.is_true(wait_gone(shell), "serve's shell still alive")
		local _, rc = util.run("test -e " .. q(prefix))
		assert.is_true(rc ~= 0, "prefix left behind: " .. prefix)
		_, rc = util.run("curl -s -o /dev/null --max-time 2 " .. q(s.base .. "/v2/"))
		assert.equal(7, rc) -- nothing listens any more
	end)
end)

describe("layerup serve, run as root, on a ROOT owned by another user", function()
	if why or not is_root then
		it("runs", function() pending(why or "needs root (workers run as the owner of ROOT)") end)
		return
	end

	it("runs its workers as that user, who reaches nginx's temp paths (HTTP/2 bodies spool there)", function()
		local work = util.tmpdir("serve-user")
		util.must("chmod 711 " .. q(work)) -- the workers traverse it to ROOT
		local root = work .. "/registry"
		util.mkdirp(root)
		util.must("chown nobody " .. q(root))
		local s
		local ok, err = pcall(function()
			s = start_serve(root, work, function(port) return " --http2 127.0.0.1:" .. (port + 1) end)
			local h2 = s.out:match("layerup: HTTP/2 %(h2c, prior knowledge%) at (http://[%d.:]+)/v2/")
			assert.is_truthy(h2, s.out)
			local master = tonumber(s.out:match("nginx pid (%d+)"))
			for _, w in ipairs(children(master)) do
				assert.equal("nobody", util.run("ps -o user= -p " .. w):match("%S+"))
			end
			local body = work .. "/body"
			util.write_file(body, util.random_bytes(3 * MiB)) -- > client_body_buffer_size
			local dg = util.sha256_file(body)
			local r = curl(("--http2-prior-knowledge -X POST %s"):format(q(h2 .. "/v2/u/b/blobs/uploads/")))
			assert.equal(202, r.status, r.body)
			local loc = r.headers.location
			r = curl(("--http2-prior-knowledge -X PATCH --data-binary @%s %s"):format(q(body), q(h2 .. loc)))
			assert.equal(202, r.status, r.body)
			r = curl(("--http2-prior-knowledge -X PUT %s"):format(q(h2 .. loc .. "?digest=" .. dg)))
			assert.equal(201, r.status, r.body)
			local data = root .. V2 .. "/blobs/sha256/" .. dg:sub(8, 9) .. "/" .. dg:sub(8) .. "/data"
			assert.equal(dg, util.sha256_file(data))
			assert.equal("nobody", util.run("stat -c %U " .. q(data)):match("%S+"))
		end)
		local stopped = not s or stop_serve(s)
		util.rmrf(work)
		assert(ok, err)
		assert.is_true(stopped)
	end)
end)

describe("HTTP/2 (serve --http2: h2c, prior knowledge)", function()
	if why then
		it("runs", function() pending(why) end)
		return
	end

	local work, root, host

	lazy_setup(function()
		work = util.tmpdir("h2-int")
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

	local function h2(args)
		return host:curl("--http2-prior-knowledge " .. args)
	end

	local function start_upload(repo)
		local r = h2("-X POST " .. q(host.h2base .. "/v2/" .. repo .. "/blobs/uploads/"))
		assert.equal(202, r.status, r.body)
		return r.headers.location
	end

	local function get_blob(repo, dg)
		local r = h2(q(host.h2base .. "/v2/" .. repo .. "/blobs/" .. dg))
		return r, util.sha256(r.body)
	end

	local function file_of(n)
		local p = work .. "/body" .. n
		util.must(("head -c %d /dev/urandom >%s"):format(n, q(p)))
		return p, util.sha256_file(p)
	end

	it("POST, PATCH of 6 MiB (spooled to a file), PUT; GET gives the same bytes", function()
		local body, dg = file_of(6 * MiB)
		local loc = start_upload("h2/a")
		local r = h2(("-X PATCH -H 'Content-Type: application/octet-stream' --data-binary @%s %s")
			:format(q(body), q(host.h2base .. loc)))
		assert.equal(202, r.status, r.body)
		assert.equal("0-" .. (6 * MiB - 1), r.headers.range)
		r = h2("-X PUT " .. q(host.h2base .. loc .. "?digest=" .. dg))
		assert.equal(201, r.status, r.body)
		assert.equal(dg, r.headers["docker-content-digest"])
		local g, got = get_blob("h2/a", dg)
		assert.equal(200, g.status)
		assert.equal(dg, got)
		assert.truthy(host:error_log():find("HTTP/2.0", 1, true))
	end)

	it("a streamed body without Content-Length (DATA frames until the end of the stream)", function()
		local body, dg = file_of(5 * MiB + 123)
		local loc = start_upload("h2/b")
		-- curl -T - reads stdin: no Content-Length on HTTP/2
		local r = host:curl(("--http2-prior-knowledge -X PATCH -T - %s <%s"):format(q(host.h2base .. loc), q(body)))
		assert.equal(202, r.status, r.body)
		assert.equal("0-" .. (5 * MiB + 122), r.headers.range)
		r = h2("-X PUT " .. q(host.h2base .. loc .. "?digest=" .. dg))
		assert.equal(201, r.status, r.body)
		local _, got = get_blob("h2/b", dg)
		assert.equal(dg, got)
	end)

	it("an upload continued across HTTP/1.1 (chunked) and HTTP/2, with Content-Range checked", function()
		local body, dg = file_of(4 * MiB)
		util.must(("head -c %d %s >%s && tail -c %d %s >%s"):format(3 * MiB, q(body), q(work .. "/p1"),
			MiB, q(body), q(work .. "/p2")))
		local r = host:curl("-X POST " .. q(host.base .. "/v2/h2/c/blobs/uploads/"))
		assert.equal(202, r.status)
		local loc = r.headers.location
		r = host:curl(("-X PATCH -H 'Transfer-Encoding: chunked' -T %s %s"):format(q(work .. "/p1"), q(host.base .. loc)))
		assert.equal(202, r.status, r.body)
		-- a gap over HTTP/2: 416 with the current range, nothing written.
		-- The host reads a small body before it answers: else nginx ends
		-- the stream with RST_STREAM NO_ERROR while curl still sends, and
		-- curl 7.88 then reports error 92 (it did in most of these tries).
		util.write_file(work .. "/gap", "0123456789")
		for _ = 1, 5 do
			r = h2(("-X PATCH -H 'Content-Range: %d-%d' --data-binary @%s %s")
				:format(3 * MiB + 1, 3 * MiB + 10, q(work .. "/gap"), q(host.h2base .. loc)))
			assert.equal(416, r.status, tostring(r.err) .. r.body)
			assert.equal("0-" .. (3 * MiB - 1), r.headers.range)
		end
		r = h2(("-X PATCH -H 'Content-Range: %d-%d' --data-binary @%s %s")
			:format(3 * MiB + 1, 4 * MiB, q(work .. "/p2"), q(host.h2base .. loc)))
		assert.equal(416, r.status, tostring(r.err) .. r.body)
		r = h2(("-X PATCH -H 'Content-Range: %d-%d' --data-binary @%s %s")
			:format(3 * MiB, 4 * MiB - 1, q(work .. "/p2"), q(host.h2base .. loc)))
		assert.equal(202, r.status, r.body)
		assert.equal("0-" .. (4 * MiB - 1), r.headers.range)
		r = h2("-X PUT " .. q(host.h2base .. loc .. "?digest=" .. dg))
		assert.equal(201, r.status, r.body)
		local _, got = get_blob("h2/c", dg)
		assert.equal(dg, got)
	end)

	it("a client that goes away mid-body leaves the upload unlocked and where it was", function()
		local body = file_of(40 * MiB)
		local small = file_of(100 * 1024)
		local loc = start_upload("h2/e")
		local r = h2(("-X PATCH --data-binary @%s %s"):format(q(small), q(host.h2base .. loc)))
		assert.equal(202, r.status, r.body)
		-- killed after about 1 s at 8 MB/s: nginx was still spooling
		local _, rc = util.run(("timeout 1 curl -s --http2-prior-knowledge --limit-rate 8M -X PATCH --data-binary @%s -o /dev/null %s")
			:format(q(body), q(host.h2base .. loc)))
		assert.equal(124, rc)
		-- every later request on it goes through at once (no 429 LOCKED)
		for _ = 1, 4 do
			r = h2(q(host.h2base .. loc))
			assert.equal(204, r.status, r.body)
			assert.equal("0-102399", r.headers.range)
		end
		r = h2(("-X PATCH --data-binary @%s %s"):format(q(small), q(host.h2base .. loc)))
		assert.equal(202, r.status, r.body)
		assert.equal("0-204799", r.headers.range)
	end)

	it("the size policy judges a body without Content-Length once it is spooled: 413, nothing stored", function()
		local body = file_of(2 * MiB)
		local loc = start_upload("small/h2")
		local r = host:curl(("--http2-prior-knowledge -X PATCH -T - %s <%s"):format(q(host.h2base .. loc), q(body)))
		assert.equal(413, r.status, r.body)
		assert.same({ "SIZE_INVALID" }, N.error_codes(r.body))
		r = h2(q(host.h2base .. loc))
		assert.equal(204, r.status)
		assert.equal("0-0", r.headers.range)
		local ok = file_of(1000)
		r = host:curl(("--http2-prior-knowledge -X PATCH -T - %s <%s"):format(q(host.h2base .. loc), q(ok)))
		assert.equal(202, r.status, r.body)
		assert.equal("0-999", r.headers.range)
	end)

	it("monolithic POST ?digest= with a small body (kept in memory), a wrong digest refused", function()
		local body, dg = file_of(100 * 1024)
		local r = h2(("-X POST --data-binary @%s %s"):format(q(body),
			q(host.h2base .. "/v2/h2/d/blobs/uploads/?digest=" .. dg)))
		assert.equal(201, r.status, r.body)
		local _, got = get_blob("h2/d", dg)
		assert.equal(dg, got)
		local bad = "sha256:" .. ("0"):rep(64)
		r = h2(("-X POST --data-binary @%s %s"):format(q(body), q(host.h2base .. "/v2/h2/d/blobs/uploads/?digest=" .. bad)))
		assert.equal(400, r.status)
		assert.same({ "DIGEST_INVALID" }, N.error_codes(r.body))
		assert.equal("", util.run("ls " .. q(root .. V2 .. "/repositories/h2/d/_uploads") .. " 2>/dev/null"))
	end)

	it("a manifest PUT and GET over HTTP/2", function()
		local cfg = '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
		local cdg = util.sha256(cfg)
		util.write_file(work .. "/cfg", cfg)
		local r = h2(("-X POST --data-binary @%s %s"):format(q(work .. "/cfg"),
			q(host.h2base .. "/v2/h2/m/blobs/uploads/?digest=" .. cdg)))
		assert.equal(201, r.status, r.body)
		local m = ('{"schemaVersion":2,"mediaType":"%s","config":{"mediaType":"%s","digest":"%s","size":%d},"layers":[]}')
			:format(oci.MANIFEST_TYPE, oci.CONFIG_TYPE, cdg, #cfg)
		util.write_file(work .. "/m", m)
		r = h2(("-X PUT -H %s --data-binary @%s %s"):format(q("Content-Type: " .. oci.MANIFEST_TYPE),
			q(work .. "/m"), q(host.h2base .. "/v2/h2/m/manifests/v1")))
		assert.equal(201, r.status, r.body)
		assert.equal(util.sha256(m), r.headers["docker-content-digest"])
		r = h2(("-H %s %s"):format(q("Accept: " .. oci.MANIFEST_TYPE), q(host.h2base .. "/v2/h2/m/manifests/v1")))
		assert.equal(200, r.status)
		assert.equal(m, r.body)
		assert.equal(cdg, cjson.decode(r.body).config.digest)
	end)
end)

-- Run as root from a checkout the workers' user cannot read (a clone under
-- /root, mktemp -d's 0700) with a root-only config: the thread-pool VMs,
-- which load layerup.worker, core.so and the config as that user, must
-- still work (serve stages copies under its prefix), not fall back inline.
describe("layerup serve from a checkout the workers cannot read", function()
	local has_nobody = util.exec("id nobody >/dev/null 2>&1")
	if why or not is_root or not (has_nobody == true or has_nobody == 0) then
		it("runs", function() pending(why or "needs root and a user nobody") end)
		return
	end

	local work, top, root, s

	lazy_setup(function()
		work = util.tmpdir("serve-private")
		util.must("chmod 0700 " .. q(work))
		top = work .. "/checkout"
		local build = os.getenv("BUILD") or (TOP .. "/build")
		util.must(("mkdir -p %s/build && cp -R %s/bin %s/lua %s/ && cp -R %s/layerup %s/luajit %s/build/")
			:format(q(top), q(TOP), q(TOP), q(top), q(build), q(build), q(top)))
		util.write_file(top .. "/conf.lua", "return { inline_finish = 0 }\n")
		util.must("chmod 0600 " .. q(top .. "/conf.lua"))
		-- ROOT itself where nobody can reach it.
		local pub = util.tmpdir("serve-public")
		util.must("chmod 0711 " .. q(pub))
		root = pub .. "/registry"
		util.must(("mkdir -p %s && chown nobody %s"):format(q(root), q(root)))
		s = start_serve(root, work, " --config conf.lua --log-level info", top, top .. "/build")
	end)

	lazy_teardown(function()
		if s then stop_serve(s) end
		if root then util.rmrf(root:match("^(.*)/registry$")) end
		if work then util.rmrf(work) end
	end)

	it("finishes in a worker thread, not inline", function()
		local body = work .. "/body"
		local data = util.random_bytes(100 * 1024)
		util.write_file(body, data)
		local dg = util.sha256(data)
		local r = N.curl(nil, ("-X POST %s"):format(q(s.base .. "/v2/private/a/blobs/uploads/")))
		assert.equal(202, r.status, r.body)
		local loc = r.headers.location
		r = N.curl(nil, ("-X PUT --data-binary @%s %s"):format(q(body),
			q(s.base .. loc .. (loc:find("?", 1, true) and "&" or "?") .. "digest=" .. dg)))
		assert.equal(201, r.status, r.body)
		local prefix = assert(s.out:match("prefix (%S+)%)"), s.out)
		local log = util.read_file(prefix .. "/error.log") or ""
		assert.truthy(log:find("finished in a worker thread", 1, true), log)
		assert.falsy(log:find("no worker thread", 1, true), log)
		assert.equal(dg, util.sha256_file(root .. V2 .. "/blobs/sha256/" .. dg:sub(8, 9) .. "/" .. dg:sub(8) .. "/data"))
	end)
end)
