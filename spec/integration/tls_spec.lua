-- `layerup serve --tls-cert FILE --tls-key FILE`: the main listener speaks
-- HTTPS only, offering HTTP/2 (ALPN h2) and HTTP/1.1.  A throw-away CA and
-- a server certificate for 127.0.0.1 (IP SAN) are made with the openssl CLI
-- in the spec's temp dir; every client verifies against that CA.
--   - curl --http2: /v2/ and a multi-MiB upload over HTTP/2 (the request
--     bodies nginx spools), HTTP/1.1 Content-Length and chunked bodies
--     (the raw request socket under TLS, with Expect: 100-continue), and
--     a client killed mid-body over TLS: bytes kept, upload resumed;
--   - skopeo copy into https:// and back out, digests identical, and which
--     protocol it spoke (containers/image 5.23 builds its own
--     http.Transport with a TLS config and no ForceAttemptHTTP2, so Go does
--     not offer h2: HTTP/1.1; asserted, so a change shows up here);
--   - podman push/pull over https:// with --cert-dir (same library, same
--     protocol);
--   - examples/nginx/layerup.conf with its TLS lines passes nginx -t;
--   - plain HTTP to the TLS port: nginx's 400, nothing stored;
--   - a wrong, garbage or missing key: serve exits non-zero and says why,
--     nothing left running.
-- Run as root, ROOT belongs to nobody and the key stays root-only (0600):
-- the master reads it before the workers (nobody) start.  Servers on
-- 127.0.0.1 at free ports, stopped by PID.

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

local why = N.unavailable() or (not util.have("openssl") and "openssl CLI not installed") or nil
local is_root = util.run("id -u"):match("^%s*0%s*$") ~= nil

-- A CA, and a server certificate for IP 127.0.0.1 signed by it; a second,
-- unrelated key.  Returns {ca=, cert=, key=, other_key=, dir=}.
local function make_pki(dir)
	util.mkdirp(dir)
	local p = function(n) return q(dir .. "/" .. n) end
	local ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
	util.must(("openssl req -x509 %s -days 2 -subj /CN=layerup-test-ca -keyout %s -out %s"
		.. " -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign")
		:format(ec, p("ca.key"), p("ca.crt")))
	util.must(("openssl req %s -subj /CN=127.0.0.1 -keyout %s -out %s"):format(ec, p("server.key"), p("server.csr")))
	util.write_file(dir .. "/ext.cnf", "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
		.. "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n")
	util.must(("openssl x509 -req -in %s -CA %s -CAkey %s -CAcreateserial -days 2 -extfile %s -out %s")
		:format(p("server.csr"), p("ca.crt"), p("ca.key"), p("ext.cnf"), p("server.crt")))
	util.must(("openssl genpkey -algorithm ec -pkeyopt ec_paramgen_curve:P-256 -out %s"):format(p("other.key")))
	util.must("chmod 600 " .. p("server.key") .. " " .. p("other.key") .. " " .. p("ca.key"))
	-- skopeo's cert dir: *.crt files are CAs
	util.mkdirp(dir .. "/certs.d")
	util.must(("cp %s %s"):format(p("ca.crt"), q(dir .. "/certs.d/ca.crt")))
	return { dir = dir, ca = dir .. "/ca.crt", cert = dir .. "/server.crt", key = dir .. "/server.key",
		other_key = dir .. "/other.key", cert_dir = dir .. "/certs.d" }
end

-- Request lines of nginx's combined access log: {method, path, proto, status, agent}.
local function access_lines(log)
	local t = {}
	for line in log:gmatch("[^\n]+") do
		local m, p, proto, st, agent = line:match('"(%u+) (%S+) (HTTP/[%d.]+)" (%d+) %d+ "[^"]*" "([^"]*)"')
		if m then
			t[#t + 1] = { method = m, path = p, proto = proto, status = tonumber(st), agent = agent }
		end
	end
	return t
end

local function blob_path(root, dg)
	return root .. V2 .. "/blobs/sha256/" .. dg:sub(8, 9) .. "/" .. dg:sub(8) .. "/data"
end

describe("layerup serve --tls-cert/--tls-key (HTTPS, HTTP/2 by ALPN)", function()
	if why then
		it("runs", function() pending(why) end)
		return
	end

	local work, root, pki, host

	lazy_setup(function()
		work = util.tmpdir("tls-int")
		pki = make_pki(work .. "/pki")
		root = work .. "/root"
		util.mkdirp(root)
		if is_root then
			util.must("chmod 711 " .. q(work))
			util.must("chown nobody " .. q(root))
		end
		host = N.start(root, { workers = 2, tls = { cert = pki.cert, key = pki.key }, access_log = true })
		if is_root then
			-- the workers (nobody) spool HTTP/2 bodies under the prefix,
			-- inside the helper's own 0700 temp dir
			util.must("chmod 711 " .. q(host.dir))
		end
	end)

	lazy_teardown(function()
		if host then host:stop() end
		if work then util.rmrf(work) end
	end)

	-- curl verifying against the test CA (N.curl: status, proto, headers,
	-- body, err).
	local function call(args)
		return N.curl(nil, "--cacert " .. q(pki.ca) .. " " .. args)
	end

	local function file_of(n)
		local p = work .. "/body" .. n
		util.must(("head -c %d /dev/urandom >%s"):format(n, q(p)))
		return p, util.sha256_file(p)
	end

	it("prints an https:// URL; /v2/ answers over HTTP/2 and HTTP/1.1, verified against the CA", function()
		local out = util.read_file(host.dir .. "/serve.log")
		assert.truthy(out:find("at https://127.0.0.1:" .. host.port .. "/v2/ (nginx pid", 1, true), out)
		local r = call("--http2 " .. q(host.base .. "/v2/"))
		assert.equal(200, r.status, r.err)
		assert.equal("2", r.proto)
		assert.equal("registry/2.0", r.headers["docker-distribution-api-version"])
		r = call("--http1.1 " .. q(host.base .. "/v2/"))
		assert.equal(200, r.status, r.err)
		assert.equal("1.1", r.proto)
		-- without the CA, curl refuses the certificate (60): it is ours
		local _, rc = util.run("curl -s -o /dev/null " .. q(host.base .. "/v2/"))
		assert.equal(60, rc)
		-- the key is used where it is, never copied into the prefix
		local conf = util.read_file(host.prefix .. "/nginx.conf")
		assert.truthy(conf:find('ssl_certificate_key "' .. pki.key .. '";', 1, true), conf)
		local key = util.read_file(pki.key)
		local copies = util.run(("grep -rlF %s %s"):format(q(key:match("\n(%S+)")), q(host.prefix)))
		assert.equal("", copies)
		if is_root then
			for _, w in ipairs(host:workers()) do
				assert.equal("nobody", util.run("ps -o user= -p " .. w):match("%S+"))
			end
			assert.equal("600 root", util.run("stat -c '%a %U' " .. q(pki.key)):match("^(.-)%s*$"))
		end
	end)

	it("a 6 MiB PATCH and PUT over HTTP/2 land with the right digest", function()
		local body, dg = file_of(6 * MiB)
		local r = call("--http2 -X POST " .. q(host.base .. "/v2/tls/h2/blobs/uploads/"))
		assert.equal(202, r.status, r.err .. r.body)
		assert.equal("2", r.proto)
		local loc = r.headers.location
		r = call(("--http2 -X PATCH -H 'Content-Type: application/octet-stream' --data-binary @%s %s")
			:format(q(body), q(host.base .. loc)))
		assert.equal(202, r.status, r.err .. r.body .. host:error_log():sub(-2000))
		assert.equal("2", r.proto)
		assert.equal("0-" .. (6 * MiB - 1), r.headers.range)
		r = call("--http2 -X PUT " .. q(host.base .. loc .. "?digest=" .. dg))
		assert.equal(201, r.status, r.err .. r.body)
		assert.equal(dg, r.headers["docker-content-digest"])
		assert.equal(dg, util.sha256_file(blob_path(root, dg)))
		-- a streamed body (no Content-Length: DATA frames to the end)
		local body2, dg2 = file_of(3 * MiB + 17)
		r = call("--http2 -X POST " .. q(host.base .. "/v2/tls/h2/blobs/uploads/"))
		loc = r.headers.location
		r = call(("--http2 -X PATCH -T - %s <%s"):format(q(host.base .. loc), q(body2)))
		assert.equal(202, r.status, r.err .. r.body)
		r = call("--http2 -X PUT " .. q(host.base .. loc .. "?digest=" .. dg2))
		assert.equal(201, r.status, r.err .. r.body)
		-- read back over HTTP/2 (nginx's own file serving)
		r = call("--http2 " .. q(host.base .. "/v2/tls/h2/blobs/" .. dg))
		assert.equal(200, r.status)
		assert.equal("2", r.proto)
		assert.equal(dg, util.sha256(r.body))
		-- nginx saw HTTP/2 requests
		local seen = 0
		for _, l in ipairs(access_lines(host:access_log())) do
			if l.method == "PATCH" and l.path:find("^/v2/tls/h2/") then
				assert.equal("HTTP/2.0", l.proto)
				assert.equal(202, l.status)
				seen = seen + 1
			end
		end
		assert.equal(2, seen)
	end)

	it("HTTP/1.1 over TLS: Content-Length and chunked bodies (with 100-continue) stream in", function()
		local body, dg = file_of(5 * MiB + 5)
		util.must(("head -c %d %s >%s && tail -c +%d %s >%s"):format(2 * MiB, q(body), q(work .. "/c1"),
			2 * MiB + 1, q(body), q(work .. "/c2")))
		local r = call("--http1.1 -X POST " .. q(host.base .. "/v2/tls/h1/blobs/uploads/"))
		assert.equal(202, r.status, r.err)
		local loc = r.headers.location
		r = call(("--http1.1 -H 'Expect:' -X PATCH --data-binary @%s %s"):format(q(work .. "/c1"), q(host.base .. loc)))
		assert.equal(202, r.status, r.err .. r.body)
		assert.equal("1.1", r.proto)
		assert.equal("0-" .. (2 * MiB - 1), r.headers.range)
		r = call(("--http1.1 -H 'Expect: 100-continue' -H 'Transfer-Encoding: chunked' -X PATCH -T %s %s")
			:format(q(work .. "/c2"), q(host.base .. loc)))
		assert.equal(202, r.status, r.err .. r.body)
		assert.equal("0-" .. (5 * MiB + 4), r.headers.range)
		r = call("--http1.1 -X PUT " .. q(host.base .. loc .. "?digest=" .. dg))
		assert.equal(201, r.status, r.err .. r.body)
		assert.equal(dg, util.sha256_file(blob_path(root, dg)))
	end)

	it("a client killed mid-body over TLS (Content-Length and chunked): bytes kept, resumed to the right digest", function()
		local body, dg = file_of(24 * MiB)
		for _, mode in ipairs { "cl", "chunked" } do
			local r = call("--http1.1 -X POST " .. q(host.base .. "/v2/tls/cut-" .. mode .. "/blobs/uploads/"))
			assert.equal(202, r.status, r.err)
			local loc = r.headers.location
			local te = mode == "chunked" and "-H 'Transfer-Encoding: chunked' " or ""
			-- about 1 s at 8 MB/s, then the client is gone
			local _, rc = util.run(("timeout 1 curl -s --http1.1 --cacert %s --limit-rate 8M -H 'Expect:' %s-X PATCH -T %s -o /dev/null %s")
				:format(q(pki.ca), te, q(body), q(host.base .. loc)))
			assert.equal(124, rc)
			local have
			for _ = 1, 50 do -- the worker notices the close, then unlocks
				r = call("--http1.1 " .. q(host.base .. loc))
				if r.status == 204 then
					have = tonumber(r.headers.range:match("^0%-(%d+)$"))
					if have then break end
				end
				util.sleep(0.1)
			end
			assert.equal(204, r.status, mode .. ": " .. r.body)
			assert.is_truthy(have, mode .. ": range " .. tostring(r.headers.range))
			have = have + 1
			assert.is_true(have > 0 and have < 24 * MiB, mode .. ": kept " .. have)
			local rest = work .. "/rest"
			util.must(("tail -c +%d %s >%s"):format(have + 1, q(body), q(rest)))
			r = call(("--http1.1 -H 'Expect:' %s-H 'Content-Range: %d-%d' -X PATCH -T %s %s")
				:format(te, have, 24 * MiB - 1, q(rest), q(host.base .. loc)))
			assert.equal(202, r.status, mode .. ": " .. r.err .. r.body)
			assert.equal("0-" .. (24 * MiB - 1), r.headers.range)
			r = call("--http1.1 -X PUT " .. q(host.base .. loc .. "?digest=" .. dg))
			assert.equal(201, r.status, mode .. ": " .. r.body)
		end
		assert.equal(dg, util.sha256_file(blob_path(root, dg)))
	end)

	it("skopeo copies a multi-layer image in over https:// and back out, digests identical", function()
		if not skopeo.available() then
			return pending("skopeo not installed")
		end
		local img = oci.generate(work .. "/img", { 5 * MiB, 0, 1024, 300 * 1024 }, "v1")
		local sk = skopeo.new(work .. "/skopeo", { cert_dir = pki.cert_dir })
		local before = #access_lines(host:access_log())
		local ref = "docker://127.0.0.1:" .. host.port .. "/tls/sk:v1"
		local out, rc = sk.copy("oci:" .. img.dir .. ":v1", ref)
		assert(rc == 0, "skopeo push: " .. out)
		out, rc = sk.copy(ref, "oci:" .. work .. "/skback:v1")
		assert(rc == 0, "skopeo pull: " .. out)
		local back = oci.read(work .. "/skback", "v1")
		assert.equal(img.manifest.digest, back.manifest.digest)
		assert.equal(img.config.digest, back.config.actual)
		for i, l in ipairs(img.layers) do
			assert.equal(l.digest, back.layers[i].actual)
			assert.equal(l.digest, util.sha256_file(blob_path(root, l.digest)))
		end
		-- Every skopeo request came over TLS (this port speaks nothing
		-- else), none failed with a 400 (no plain-HTTP fallback), and all
		-- were HTTP/1.1: containers/image 5.23 (Debian 12's skopeo 1.9)
		-- sets its own TLSClientConfig on an http.Transport without
		-- ForceAttemptHTTP2, so Go's client never offers h2.  If this
		-- changes, skopeo's bodies take the HTTP/2 (spooled) path: see
		-- README "HTTP/2".
		local lines, protos, patches = access_lines(host:access_log()), {}, 0
		for i = before + 1, #lines do
			local l = lines[i]
			if l.agent:find("^skopeo/") then
				protos[l.proto] = (protos[l.proto] or 0) + 1
				assert.is_true(l.status ~= 400, l.method .. " " .. l.path)
				if l.method == "PATCH" then patches = patches + 1 end
			end
		end
		assert.is_true(patches >= #img.layers, "skopeo PATCHes seen: " .. patches)
		assert.same({ ["HTTP/1.1"] = protos["HTTP/1.1"] }, protos)
	end)

	it("podman pushes over https:// (verified with --cert-dir) and pulls the same image back", function()
		local pwhy = podman.unavailable()
		if pwhy then
			return pending(pwhy)
		end
		local pm = podman.new(work .. "/podman")
		local iid, img = podman.image(pm, { 2 * MiB, 0 })
		local out, rc
		local before = #access_lines(host:access_log())
		local ref = "127.0.0.1:" .. host.port .. "/tls/pm:v1"
		out, rc = pm(("push --cert-dir %s --signature-policy %s %s %s")
			:format(q(pki.cert_dir), q(pm.policy), iid, q(ref)))
		assert(rc == 0, "podman push: " .. out)
		local other = podman.new(work .. "/podman2")
		out, rc = other(("pull -q --cert-dir %s --signature-policy %s %s")
			:format(q(pki.cert_dir), q(other.policy), q(ref)))
		assert(rc == 0, "podman pull: " .. out)
		assert.equal(iid, out:match("(%x+)%s*$"))
		-- the same containers/image 5.23 as skopeo: HTTP/1.1 over TLS
		local lines, protos, n = access_lines(host:access_log()), {}, 0
		for i = before + 1, #lines do
			if lines[i].agent:find("podman", 1, true) or lines[i].agent:find("containers/", 1, true) then
				protos[lines[i].proto] = true
				n = n + 1
			end
		end
		assert.is_true(n > 0, "no podman requests in the access log")
		assert.same({ ["HTTP/1.1"] = true }, protos)
	end)

	it("plain HTTP to the TLS port gets nginx's 400 and stores nothing", function()
		local plain = "http://127.0.0.1:" .. host.port
		local r = call("-X POST " .. q(plain .. "/v2/plain/x/blobs/uploads/"))
		assert.equal(400, r.status)
		assert.truthy(r.body:find("plain HTTP request was sent to HTTPS port", 1, true), r.body)
		local _, rc = util.run("test -e " .. q(root .. V2 .. "/repositories/plain"))
		assert.is_true(rc ~= 0, "a repository appeared")
		-- an upload begun over HTTPS, then a plain-HTTP PATCH with a body:
		-- refused, the upload stays empty
		r = call("--http2 -X POST " .. q(host.base .. "/v2/tls/plain/blobs/uploads/"))
		assert.equal(202, r.status)
		local loc = r.headers.location
		local body = file_of(64 * 1024)
		r = call(("-X PATCH --data-binary @%s %s"):format(q(body), q(plain .. loc)))
		assert.equal(400, r.status)
		local status, raw = host:raw("PATCH " .. loc .. " HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
		assert.equal(400, status, raw)
		r = call("--http2 " .. q(host.base .. loc))
		assert.equal(204, r.status)
		assert.equal("0-0", r.headers.range)
	end)
end)

describe("examples/nginx/layerup.conf with its TLS lines", function()
	if why then
		it("runs", function() pending(why) end)
		return
	end

	it("is accepted by nginx -t (certificate and key loaded)", function()
		local work = util.tmpdir("tls-example")
		local ok, err = pcall(function()
			local pki = make_pki(work .. "/pki")
			local build = os.getenv("BUILD") or (TOP .. "/build")
			local text = assert(util.read_file(TOP .. "/examples/nginx/layerup.conf"))
			local n = 0
			local conf = text:gsub("\n(%s*)#   ((%a[%w_]*) [^\n]*)", function(ind, line, word)
				if word == "listen" or word:find("^ssl_") then
					n = n + 1
					return "\n" .. ind .. line
				end
			end)
			assert.equal(5, n, "TLS lines found in the example")
			conf = conf:gsub("/etc/layerup/tls/registry%.crt", pki.cert):gsub("/etc/layerup/tls/registry%.key", pki.key)
				:gsub("/srv/layerup/build", build):gsub("/srv/layerup", TOP)
				:gsub("/srv/registry", work .. "/root"):gsub("/etc/layerup/policy.lua", TOP .. "/examples/nginx/policy.lua")
			util.mkdirp(work .. "/logs")
			util.write_file(work .. "/nginx.conf", table.concat({
				"load_module /usr/lib/nginx/modules/ndk_http_module.so;",
				"load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;",
				"pid " .. work .. "/nginx.pid;", "events {}", conf }, "\n"))
			assert.truthy(conf:find("\n%s*listen 443 ssl http2 reuseport;"), conf)
			local out, rc = util.run("nginx -t -p " .. q(work) .. " -c " .. q(work .. "/nginx.conf")
				.. " -e " .. q(work .. "/error.log") .. " 2>&1")
			assert(rc == 0, out)
			-- and it does load them: the other key is refused
			util.write_file(work .. "/nginx.conf", (util.read_file(work .. "/nginx.conf")
				:gsub(pki.key:gsub("%p", "%%%0"), pki.other_key)))
			out, rc = util.run("nginx -t -p " .. q(work) .. " -c " .. q(work .. "/nginx.conf")
				.. " -e " .. q(work .. "/error.log") .. " 2>&1")
			assert(rc ~= 0 and out:find("key values mismatch", 1, true), out)
		end)
		util.rmrf(work)
		assert(ok, err)
	end)
end)

describe("layerup serve with a bad TLS key", function()
	if why then
		it("runs", function() pending(why) end)
		return
	end

	local work, pki

	lazy_setup(function()
		work = util.tmpdir("tls-bad")
		pki = make_pki(work .. "/pki")
	end)

	lazy_teardown(function()
		if work then util.rmrf(work) end
	end)

	-- Pids of processes whose command line mentions s.
	local function procs_with(s)
		local t = {}
		for pid in util.run("ls /proc"):gmatch("%d+") do
			local cmd = util.read_file("/proc/" .. pid .. "/cmdline")
			if cmd and cmd:find(s, 1, true) and tonumber(pid) ~= util.getpid() then
				t[#t + 1] = tonumber(pid)
			end
		end
		return t
	end

	-- Runs serve in the foreground (killed after 30 s if it came up);
	-- returns its output and exit code.  tag names a prefix dir of its own.
	local function serve(tag, cert, key)
		local prefix = work .. "/prefix-" .. tag
		util.mkdirp(prefix)
		local cmd = ("cd %s && BUILD=%s timeout 30 lua5.4 bin/layerup serve %s --listen 127.0.0.1:%d --prefix %s%s%s 2>&1 </dev/null")
			:format(q(TOP), q(os.getenv("BUILD") or (TOP .. "/build")), q(work .. "/root"), R.free_port(), q(prefix),
				cert and (" --tls-cert " .. q(cert)) or "", key and (" --tls-key " .. q(key)) or "")
		local out, rc = util.run(cmd)
		return out, rc, prefix
	end

	it("a key that does not match the certificate: exit non-zero with nginx's reason, nothing running", function()
		local out, rc, prefix = serve("mismatch", pki.cert, pki.other_key)
		assert.is_true(rc ~= 0 and rc ~= 124, "rc " .. rc .. ": " .. out)
		assert.truthy(out:find("nginx exited with status", 1, true), out)
		assert.truthy(out:find("[emerg]", 1, true) and out:find("key values mismatch", 1, true), out)
		assert.is_falsy(out:find("layerup: serving", 1, true), out)
		assert.same({}, procs_with(prefix))
	end)

	it("a key file that is no key: exit non-zero, nothing running", function()
		util.write_file(work .. "/garbage.key", "not a key\n")
		local out, rc, prefix = serve("garbage", pki.cert, work .. "/garbage.key")
		assert.is_true(rc ~= 0 and rc ~= 124, "rc " .. rc .. ": " .. out)
		assert.truthy(out:find("cannot load certificate key", 1, true), out)
		assert.same({}, procs_with(prefix))
	end)

	it("an encrypted key: exit 1 before nginx starts (it would prompt for the pass phrase)", function()
		util.must(("openssl pkey -in %s -aes256 -passout pass:secret -out %s")
			:format(q(pki.key), q(work .. "/enc.key")))
		local out, rc, prefix = serve("encrypted", pki.cert, work .. "/enc.key")
		assert.equal(1, rc, out)
		assert.truthy(out:find("--tls-key " .. work .. "/enc.key is encrypted", 1, true), out)
		assert.is_falsy(out:find("pass phrase", 1, true), out)
		assert.is_false(util.exists(prefix .. "/nginx.conf"))
		-- the traditional PEM encryption (Proc-Type header) too
		util.must(("openssl pkey -in %s -traditional -aes256 -passout pass:secret -out %s")
			:format(q(pki.key), q(work .. "/enc2.key")))
		out, rc = serve("encrypted2", pki.cert, work .. "/enc2.key")
		assert.equal(1, rc, out)
		assert.truthy(out:find("is encrypted", 1, true), out)
	end)

	it("a missing key or certificate file: exit 1 before nginx starts", function()
		local out, rc, prefix = serve("missing", pki.cert, work .. "/nope.key")
		assert.equal(1, rc, out)
		assert.truthy(out:find("cannot read --tls-key " .. work .. "/nope.key: ", 1, true), out)
		assert.is_false(util.exists(prefix .. "/nginx.conf"))
		out, rc = serve("missing2", work .. "/nope.crt", pki.key)
		assert.equal(1, rc, out)
		assert.truthy(out:find("cannot read --tls-cert ", 1, true), out)
	end)

	it("--tls-cert without --tls-key, or a path nginx.conf cannot hold: usage error (2)", function()
		local out, rc = serve("half", pki.cert, nil)
		assert.equal(2, rc, out)
		assert.truthy(out:find("--tls-cert and --tls-key go together", 1, true), out)
		out, rc = serve("dollar", pki.cert, work .. "/k$ey")
		assert.equal(2, rc, out)
		assert.truthy(out:find("--tls-key must be a file name", 1, true), out)
	end)
end)
