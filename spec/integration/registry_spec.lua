-- Byte compatibility with the real Docker Distribution registry (2.8,
-- Debian docker-registry) and skopeo: layerup writes what the registry
-- serves, each resumes uploads the other started, purge cleans up after
-- the registry, verify checks a tree the registry wrote, and both agree on
-- which repository names and digests are valid.

local cjson = require "cjson"
local util = require "integration.helpers.util"
local R = require "integration.helpers.registry"
local oci = require "integration.helpers.oci"
local skopeo = require "integration.helpers.skopeo"

local KiB, MiB = 1024, 1024 * 1024
local V2 = "/docker/registry/v2"

local function need_layerup()
	local ok, m = pcall(require, "layerup")
	assert(ok, "the layerup module does not load (build it with make): " .. tostring(m))
	return m
end

-- Without the real registry there is nothing to be compatible with: the
-- suite reports one skipped test with the reason (TAP "# SKIP").
if not R.available() then
	describe("interop with Docker Distribution 2.8 and skopeo", function()
		pending("docker-registry, curl or openssl not installed (run `make deps` as root)")
	end)
	return
end

-- The tests that drive skopeo are skipped (with the reason) without it.
local function need_skopeo()
	if skopeo.available() then
		return true
	end
	pending("skopeo not installed (run `make deps` as root)")
	return false
end

-- Fail with the error's text when a layerup call returned nil, err.
local function ok(v, err)
	if v == nil then
		error("layerup call failed: " .. tostring(err), 2)
	end
	return v
end

local function uploads_dir(root, repo, uuid)
	return root .. V2 .. "/repositories/" .. repo .. "/_uploads" .. (uuid and ("/" .. uuid) or "")
end

-- Files below dir, relative, sorted.
local function files_below(dir)
	local out = util.must("cd " .. util.q(dir) .. " && find . -type f | LC_ALL=C sort")
	local t = {}
	for line in out:gmatch("[^\n]+") do
		t[#t + 1] = line:gsub("^%./", "")
	end
	return t
end

local function is_dir(path)
	local _, rc = util.run("test -d " .. util.q(path))
	return rc == 0
end

-- Split s into n nearly equal chunks (n >= 1).
local function chunks(s, n)
	local t, step = {}, math.max(1, math.ceil(#s / n))
	for i = 1, #s, step do
		t[#t + 1] = s:sub(i, i + step - 1)
	end
	if #t == 0 then
		t[1] = ""
	end
	return t
end

-- Percent-encode a query value.
local function qenc(s)
	return (s:gsub("[^%w%-._~:]", function(c) return ("%%%02X"):format(c:byte()) end))
end

-- Run bin/layerup with args; returns output, exit code.
local function layerup_cli(args)
	local bin = util.repo_root() .. "/bin/layerup"
	local first = (util.read_file(bin) or ""):match("^[^\n]*") or ""
	local cmd = first:match("^#!") and util.q(bin) or ((os.getenv("LUA") or "lua5.4") .. " " .. util.q(bin))
	return util.run(cmd .. " " .. args .. " 2>&1", true)
end

-- A packager may build and run the unit specs without the peers: then this
-- suite is one skipped test that names what is missing, not a failure.
local function missing_tools()
	local missing = {}
	if not R.available() then
		missing[#missing + 1] = "docker-registry, curl or openssl"
	end
	if not skopeo.available() then
		missing[#missing + 1] = "skopeo"
	end
	return #missing > 0 and table.concat(missing, " and ") or nil
end

local missing = missing_tools()
if missing then
	describe("interop with Docker Distribution 2.8 and skopeo", function()
		pending("not run: " .. missing .. " not installed (`make deps` as root installs the Debian packages docker-registry and skopeo)")
	end)
	return
end

describe("interop with Docker Distribution 2.8 and skopeo", function()
	local work, root, reg, img, sk

	lazy_setup(function()
		work = util.tmpdir("interop")
		root = work .. "/root"
		reg = R.start(root, util.tmpdir("reg"))
		reg.owns_dir = true
		img = oci.generate(work .. "/img", { 0, 1 * KiB, 300 * KiB, 2 * MiB })
		if skopeo.available() then
			sk = skopeo.new(work .. "/skopeo")
		end
	end)

	lazy_teardown(function()
		if reg then
			reg:stop()
		end
		if work then
			util.rmrf(work)
		end
	end)

	it("builds _state tokens the registry accepts (harness check)", function()
		local uuid, loc = reg:start_upload("interop/token")
		local tok = loc:match("_state=([^&]+)"):gsub("%%3D", "=")
		local mac, json = R.decode_token(tok)
		local st = cjson.decode(json)
		assert.are.equal("interop/token", st.Name)
		assert.are.equal(uuid, st.UUID)
		assert.are.equal(0, st.Offset)
		-- Same fields and secret give the registry's exact token.
		assert.are.equal(tok, R.state_token(st.Name, st.UUID, st.Offset, st.StartedAt))
		assert.are.equal(32, #mac)
		-- Our own token (different StartedAt form) is accepted ...
		local mine = R.state_token("interop/token", uuid, 0, "2020-01-01T00:00:00Z")
		local r = reg:http("GET", R.upload_path("interop/token", uuid, mine))
		assert.are.equal(204, r.status)
		assert.are.equal(uuid, r.headers["docker-upload-uuid"])
		-- ... and one with another secret or offset is not.
		local bad = R.state_token("interop/token", uuid, 0, "2020-01-01T00:00:00Z", "wrong-secret")
		r = reg:http("GET", R.upload_path("interop/token", uuid, bad))
		assert.are.equal(404, r.status)
		assert.are.same({ "BLOB_UPLOAD_INVALID" }, R.error_codes(r.body))
		r = reg:http("DELETE", R.upload_path("interop/token", uuid, mine))
		assert.are.equal(204, r.status)
	end)

	it("layerup writes, the registry serves, skopeo pulls", function()
		if not need_skopeo() then
			return
		end
		local layerup = need_layerup()
		local repo = "interop/pushed-by-layerup"
		local store = ok(layerup.open(root))
		for i, b in ipairs(img.blobs) do
			local data = assert(util.read_file(b.path))
			local up = ok(store:start(repo))
			local uuid = up.uuid
			-- Resumed chunks: write, close, resume, write ... finish.
			local parts = chunks(data, i + 1)
			for k, c in ipairs(parts) do
				if k > 1 then
					up = ok(store:resume(repo, uuid))
					assert.are.equal(#table.concat(parts, "", 1, k - 1), up:size())
				end
				assert.are.equal(ok(up:write(c)), up:size())
				if k < #parts then
					ok(up:close())
				end
			end
			assert.are.equal(#data, up:size())
			local res = ok(up:finish(b.digest))
			assert.are.equal(b.digest, res.digest)
			assert.are.equal(b.size, res.size)
			assert.is_false(is_dir(uploads_dir(root, repo, uuid)))
			local link = root .. V2 .. "/repositories/" .. repo .. "/_layers/sha256/" .. b.digest:sub(8) .. "/link"
			assert.are.equal(b.digest, util.read_file(link))
		end
		store:close()

		-- The registry refuses a manifest unless every blob is linked.
		local r = reg:http("PUT", "/v2/" .. repo .. "/manifests/latest",
			{ body_file = img.manifest.path, headers = { "Content-Type: " .. oci.MANIFEST_TYPE } })
		assert.are.equal(201, r.status, r.body)
		assert.are.equal(img.manifest.digest, r.headers["docker-content-digest"])

		-- The registry serves each blob byte for byte.
		for _, b in ipairs(img.blobs) do
			local out = work .. "/served-" .. b.digest:sub(8)
			r = reg:http("GET", "/v2/" .. repo .. "/blobs/" .. b.digest, { out_file = out })
			assert.are.equal(200, r.status)
			assert.are.equal(b.digest, util.sha256_file(out))
			assert.are.equal(b.size, util.size(out))
		end

		local out, rc = sk.copy("docker://127.0.0.1:" .. reg.port .. "/" .. repo .. ":latest",
			"oci:" .. work .. "/pulled:latest")
		assert.are.equal(0, rc, out)
		local pulled = oci.read(work .. "/pulled")
		assert.are.equal(img.manifest.digest, pulled.manifest.digest)
		assert.are.equal(img.manifest.digest, pulled.manifest.actual)
		assert.are.equal(img.config.digest, pulled.config.actual)
		assert.are.equal(#img.layers, #pulled.layers)
		for i, l in ipairs(img.layers) do
			assert.are.equal(l.digest, pulled.layers[i].digest)
			assert.are.equal(l.digest, pulled.layers[i].actual)
			assert.are.equal(l.size, pulled.layers[i].actual_size)
		end
	end)

	it("the registry starts an upload, layerup resumes and finishes it without re-reading", function()
		local layerup = need_layerup()
		local repo = "interop/registry-started"
		local data = util.random_bytes(1536 * KiB + 77)
		local cut = 700 * KiB + 13
		local digest = util.sha256(data)

		local uuid, loc = reg:start_upload(repo)
		local r = reg:http("PATCH", loc, { body = data:sub(1, cut) })
		assert.are.equal(202, r.status, r.body)
		assert.are.equal("0-" .. (cut - 1), r.headers["range"])
		-- The registry left its Go hash state at the offset.
		local hs = uploads_dir(root, repo, uuid) .. "/hashstates/sha256/" .. cut
		assert.are.equal(108, util.size(hs))

		-- Count upload data read back through the driver.
		local fs = layerup.filesystem(root)
		local counted, state_reads = 0, 0
		local function upload_data(path)
			return path:find("/_uploads/", 1, true) ~= nil and path:match("/data$") ~= nil
		end
		-- A Lua driver forwarding every op to the filesystem driver (locks
		-- included, so the flock semantics stay).
		local wrap = { name = "counting" }
		for _, op in ipairs { "put_content", "stat", "list", "move", "delete", "writer" } do
			wrap[op] = function(_, ...) return fs[op](fs, ...) end
		end
		function wrap:lock(path) return fs:lock(path) end
		function wrap:unlock(token) return token:unlock() end
		function wrap:reader(path, offset)
			local rd, err = fs:reader(path, offset)
			if not rd then
				return nil, err
			end
			local watch = upload_data(path)
			if path:find("/hashstates/", 1, true) then
				state_reads = state_reads + 1
			end
			return {
				read = function(_, n)
					local s, e = rd:read(n)
					if s and watch then
						counted = counted + #s
					end
					return s, e
				end,
				close = function() return rd:close() end,
			}
		end
		function wrap:get_content(path)
			local s, err = fs:get_content(path)
			if s and upload_data(path) then
				counted = counted + #s
			end
			if path:find("/hashstates/", 1, true) then
				state_reads = state_reads + 1
			end
			return s, err
		end
		local events = {}
		local store = ok(layerup.open(layerup.driver(wrap), {
			log = function(ev, f) events[#events + 1] = { ev = ev, f = f } end,
		}))
		local up = ok(store:resume(repo, uuid))
		assert.are.equal(cut, up:size())
		local rest = data:sub(cut + 1)
		ok(up:write(rest:sub(1, 100 * KiB)))
		ok(up:write(rest:sub(100 * KiB + 1)))
		assert.are.equal(#data, up:size())
		assert.are.equal(0, up:bytes_reread())
		local res = ok(up:finish(digest))
		assert.are.equal(digest, res.digest)
		assert.are.equal(#data, res.size)
		store:close()
		-- The wrapper was in the path: the registry's state was read ...
		assert.is_true(state_reads > 0, "no hash state was read through the driver")
		-- ... and no upload data.
		assert.are.equal(0, counted)
		local saw_resume, saw_finish = false, false
		for _, e in ipairs(events) do
			if e.ev == "upload.resume" then
				saw_resume = true
				assert.are.equal("exact", e.f.restored)
				assert.are.equal(0, e.f.bytes_reread)
			elseif e.ev == "upload.finish" then
				saw_finish = true
				assert.are.equal(0, e.f.bytes_reread)
			end
		end
		assert.is_true(saw_resume and saw_finish)

		local out = work .. "/registry-started.blob"
		r = reg:http("GET", "/v2/" .. repo .. "/blobs/" .. digest, { out_file = out })
		assert.are.equal(200, r.status)
		assert.are.equal(digest, util.sha256_file(out))
		assert.are.equal(#data, util.size(out))
	end)

	-- Start and write part of an upload with layerup in two sessions.
	local function layerup_started(layerup, repo, part)
		local store = ok(layerup.open(root))
		local up = ok(store:start(repo))
		local uuid = up.uuid
		local half = #part // 2
		ok(up:write(part:sub(1, half)))
		ok(up:close())
		up = ok(store:resume(repo, uuid))
		ok(up:write(part:sub(half + 1)))
		ok(up:close())
		store:close()
		local started = util.read_file(uploads_dir(root, repo, uuid) .. "/startedat")
		assert.is_truthy(started:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$"), started)
		return uuid, started
	end

	it("layerup starts an upload, the registry appends and commits it without re-reading", function()
		local layerup = need_layerup()
		local repo = "interop/layerup-started"
		local data = util.random_bytes(3 * MiB + 5)
		local cut = 2 * MiB + 3
		local digest = util.sha256(data)
		local uuid, started = layerup_started(layerup, repo, data:sub(1, cut))

		local tok = R.state_token(repo, uuid, cut, started)
		local r = reg:http("PATCH", R.upload_path(repo, uuid, tok), { body = data:sub(cut + 1) })
		assert.are.equal(202, r.status, r.body)
		assert.are.equal("0-" .. (#data - 1), r.headers["range"])
		local loc = reg:location(r)

		local before = reg:rchar()
		r = reg:http("PUT", loc .. "&digest=" .. digest)
		local delta = reg:rchar() - before
		assert.are.equal(201, r.status, r.body)
		assert.are.equal(digest, r.headers["docker-content-digest"])
		-- A re-hash would read all 3 MiB; a commit from the hash state
		-- reads the request, a state file and startedat.
		assert.is_true(delta < 64 * KiB, "registry read " .. delta .. " bytes during the PUT")

		local out = work .. "/layerup-started.blob"
		r = reg:http("GET", "/v2/" .. repo .. "/blobs/" .. digest, { out_file = out })
		assert.are.equal(200, r.status)
		assert.are.equal(digest, util.sha256_file(out))
	end)

	it("the registry commits a whole upload written by layerup from layerup's hash state", function()
		local layerup = need_layerup()
		local repo = "interop/layerup-written"
		local data = util.random_bytes(2 * MiB + 999)
		local digest = util.sha256(data)
		local uuid, started = layerup_started(layerup, repo, data)
		local tok = R.state_token(repo, uuid, #data, started)
		local before = reg:rchar()
		local r = reg:http("PUT", R.upload_path(repo, uuid, tok) .. "&digest=" .. digest)
		local delta = reg:rchar() - before
		assert.are.equal(201, r.status, r.body)
		assert.are.equal(digest, r.headers["docker-content-digest"])
		assert.is_true(delta < 64 * KiB, "registry read " .. delta .. " bytes during the PUT")
		local out = work .. "/layerup-written.blob"
		r = reg:http("GET", "/v2/" .. repo .. "/blobs/" .. digest, { out_file = out })
		assert.are.equal(200, r.status)
		assert.are.equal(digest, util.sha256_file(out))
	end)

	-- Issue 8, defect 7: layerup dies before its first close (data, no
	-- state); the registry appends `m` bytes, finds no state at the size and
	-- saves the state of its m bytes alone, named m; layerup resumes, writes
	-- more and is interrupted (closes); the registry then commits.  It
	-- trusts the state at the exact size, so that one must be right.
	for _, case in ipairs {
		{ "aligned", 4 * MiB },          -- no pending bytes to check
		{ "not aligned", 4 * MiB + 100 }, -- pending bytes that differ
	} do
		it("the registry commits after its gap state and an interrupted layerup resume (" .. case[1] .. ")", function()
			local layerup = need_layerup()
			local repo = "interop/gap-" .. case[1]:gsub(" ", "-")
			local a, m, c = util.random_bytes(1 * MiB + 13), util.random_bytes(case[2]), util.random_bytes(300 * KiB + 7)
			local data = a .. m .. c
			local digest = util.sha256(data)
			local dir

			-- layerup starts, writes, and dies before its first close.
			local store = ok(layerup.open(root))
			local up = ok(store:start(repo))
			local uuid = up.uuid
			dir = uploads_dir(root, repo, uuid)
			ok(up:write(a))
			ok(up:close())
			util.must("rm -r " .. util.q(dir .. "/hashstates"))
			local started = util.read_file(dir .. "/startedat")

			-- The registry appends m bytes and saves a state named m.
			local r = reg:http("PATCH", R.upload_path(repo, uuid, R.state_token(repo, uuid, #a, started)),
				{ body = m })
			assert.are.equal(202, r.status, r.body)
			assert.are.equal("0-" .. (#a + #m - 1), r.headers["range"])
			assert.are.same({ "data", "hashstates/sha256/" .. #m, "startedat" }, files_below(dir))

			-- layerup resumes, writes more and is interrupted.
			up = ok(store:resume(repo, uuid))
			assert.are.equal(#a + #m, up:size())
			ok(up:write(c))
			ok(up:close())
			store:close()
			assert.are.same({ "data", "hashstates/sha256/" .. #data, "startedat" }, files_below(dir))

			-- The registry commits the right digest from that state.
			local before = reg:rchar()
			r = reg:http("PUT", R.upload_path(repo, uuid, R.state_token(repo, uuid, #data, started))
				.. "&digest=" .. digest)
			local delta = reg:rchar() - before
			assert.are.equal(201, r.status, r.body)
			assert.are.equal(digest, r.headers["docker-content-digest"])
			assert.is_true(delta < 64 * KiB, "registry read " .. delta .. " bytes during the PUT")
			local out = work .. "/gap-" .. #m .. ".blob"
			r = reg:http("GET", "/v2/" .. repo .. "/blobs/" .. digest, { out_file = out })
			assert.are.equal(200, r.status)
			assert.are.equal(digest, util.sha256_file(out))
		end)
	end

	it("purge cleans up after the registry and touches nothing else", function()
		if not need_skopeo() then
			return
		end
		local layerup = need_layerup()
		local repo = "interop/cleanup"
		local OLD = "2020-01-01T00:00:00Z"

		-- Something outside _uploads to protect: a committed blob + manifest.
		local img_repo = "interop/cleanup-img"
		local out, rc = sk.copy("oci:" .. img.dir .. ":latest",
			"docker://127.0.0.1:" .. reg.port .. "/" .. img_repo .. ":latest")
		assert.are.equal(0, rc, out)

		-- An upload DELETEd through the registry leaves an orphan holding
		-- only hashstates/sha256/0 (no startedat).
		local function orphan()
			local uuid, loc = reg:start_upload(repo)
			local r = reg:http("PATCH", loc, { body = util.random_bytes(5000) })
			assert.are.equal(202, r.status)
			r = reg:http("DELETE", reg:location(r))
			assert.are.equal(204, r.status)
			local dir = uploads_dir(root, repo, uuid)
			assert.are.same({ "hashstates/sha256/0" }, files_below(dir))
			-- Only its modification time can age it.
			util.must("find " .. util.q(dir) .. " -exec touch -h -d " .. OLD .. " {} +")
			return uuid
		end
		-- An upload the registry abandoned long ago.
		local function abandoned()
			local uuid, loc = reg:start_upload(repo)
			local r = reg:http("PATCH", loc, { body = util.random_bytes(7000) })
			assert.are.equal(202, r.status)
			util.write_file(uploads_dir(root, repo, uuid) .. "/startedat", OLD)
			return uuid
		end

		local orphan_id, old_id = orphan(), abandoned()
		local fresh_id, fresh_loc = reg:start_upload(repo)
		local store = ok(layerup.open(root))
		local mine = ok(store:start(repo))
		local mine_id = mine.uuid
		ok(mine:write("fresh layerup upload"))
		ok(mine:close())

		local outside = util.snapshot(root, "/_uploads")
		local want = { old_id, orphan_id }
		table.sort(want)
		local function purged_ids(list)
			local ids = {}
			for _, e in ipairs(list) do
				assert.are.equal(repo, e.repo)
				ids[#ids + 1] = e.uuid
			end
			table.sort(ids)
			return ids
		end

		local dry = ok(store:purge { older_than = 3600, dry_run = true })
		assert.are.same(want, purged_ids(dry))
		assert.is_true(is_dir(uploads_dir(root, repo, orphan_id)))
		assert.is_true(is_dir(uploads_dir(root, repo, old_id)))

		local gone = ok(store:purge { older_than = 3600 })
		assert.are.same(want, purged_ids(gone))
		assert.is_false(is_dir(uploads_dir(root, repo, orphan_id)))
		assert.is_false(is_dir(uploads_dir(root, repo, old_id)))
		assert.is_true(is_dir(uploads_dir(root, repo, fresh_id)))
		assert.is_true(is_dir(uploads_dir(root, repo, mine_id)))
		assert.are.same(outside, util.snapshot(root, "/_uploads"))

		-- The registry agrees: the purged upload is unknown, the fresh one alive.
		local tok = R.state_token(repo, old_id, 7000, OLD)
		local r = reg:http("GET", R.upload_path(repo, old_id, tok))
		assert.are.equal(404, r.status)
		assert.are.same({ "BLOB_UPLOAD_UNKNOWN" }, R.error_codes(r.body))
		r = reg:http("GET", fresh_loc)
		assert.are.equal(204, r.status)
		-- ... and still serves the image.
		r = reg:http("HEAD", "/v2/" .. img_repo .. "/manifests/latest",
			{ headers = { "Accept: " .. oci.MANIFEST_TYPE } })
		assert.are.equal(200, r.status)
		assert.are.equal(img.manifest.digest, r.headers["docker-content-digest"])

		-- The command line does the same, if it is there.
		if util.exists(util.repo_root() .. "/bin/layerup") then
			local o2, a2 = orphan(), abandoned()
			local cli_out, cli_rc = layerup_cli("purge " .. util.q(root) .. " --older-than 1h")
			assert.are.equal(0, cli_rc, cli_out)
			assert.is_false(is_dir(uploads_dir(root, repo, o2)))
			assert.is_false(is_dir(uploads_dir(root, repo, a2)))
			assert.is_true(is_dir(uploads_dir(root, repo, fresh_id)))
			assert.is_true(is_dir(uploads_dir(root, repo, mine_id)))
			assert.are.same(outside, util.snapshot(root, "/_uploads"))
		end
		ok(ok(store:resume(repo, mine_id)):cancel())
		assert.are.equal(204, reg:http("DELETE", fresh_loc).status)
		store:close()
	end)

	it("verify passes on a tree skopeo pushed into the registry and names a corrupted blob", function()
		if not need_skopeo() then
			return
		end
		local root5 = work .. "/root5"
		local reg5 = R.start(root5)
		finally(function() reg5:stop() end)
		local repo = "interop/verify-me"
		local out, rc = sk.copy("oci:" .. img.dir .. ":latest",
			"docker://127.0.0.1:" .. reg5.port .. "/" .. repo .. ":latest")
		assert.are.equal(0, rc, out)
		reg5:stop()
		assert.is_true(util.exists(util.repo_root() .. "/bin/layerup"), "bin/layerup is missing")

		out, rc = layerup_cli("verify " .. util.q(root5))
		assert.are.equal(0, rc, out)

		-- Flip one byte in the middle of the 300 KiB layer.
		local victim = img.layers[3]
		local path = root5 .. V2 .. "/blobs/sha256/" .. victim.digest:sub(8, 9) .. "/" .. victim.digest:sub(8) .. "/data"
		local f = assert(io.open(path, "r+b"))
		local at = victim.size // 2
		f:seek("set", at)
		local c = f:read(1)
		f:seek("set", at)
		f:write(string.char(c:byte() ~ 0x5a))
		f:close()
		assert.are_not.equal(victim.digest, util.sha256_file(path))

		out, rc = layerup_cli("verify " .. util.q(root5))
		assert.are_not.equal(0, rc, out)
		assert.is_truthy(out:find(victim.digest:sub(8), 1, true), "verify output does not name the blob:\n" .. out)
	end)

	it("accepts exactly the repository names the registry accepts", function()
		local layerup = need_layerup()
		local store = ok(layerup.open(root))
		local long = ("a"):rep(100) .. "/" .. ("b"):rep(100) .. "/" .. ("c"):rep(53)
		assert.are.equal(255, #long)
		local names = {
			-- valid
			{ "a", true }, { "a/b/c", true }, { "my.org/some-team/app__x", true }, { "a.b", true },
			{ "a_b", true }, { "a__b", true }, { "a-b", true }, { "a--b", true }, { "a---b", true },
			{ "0", true }, { "9a/b0", true }, { "library/ubuntu", true }, { "a.b.c/d-e_f", true },
			{ long, true },
			-- invalid
			{ "A", false }, { "a/B", false }, { "Abc", false }, { "a//b", false }, { "-a", false },
			{ "a-", false }, { "a..b", false }, { "a.", false }, { ".a", false }, { "_a", false },
			{ "a_", false }, { "a___b", false }, { "a/", false }, { "a/-b", false }, { "a-/b", false },
			{ "a/.b", false }, { "a:b", false }, { "a@b", false }, { "a/../b", false }, { "a/./b", false },
			{ "..", false }, { "a.-b", false }, { "a-.b", false }, { "a._b", false },
			{ long .. "c", false },
		}
		local mismatches = {}
		for _, case in ipairs(names) do
			local name, expect = case[1], case[2]
			local r = reg:http("POST", "/v2/" .. name .. "/blobs/uploads/")
			local reg_ok = r.status == 202
			if reg_ok then
				assert.are.equal(204, reg:http("DELETE", reg:location(r)).status)
			end
			local up, err = store:start(name)
			local lu_ok = up ~= nil
			if up then
				ok(up:cancel())
			elseif err.code ~= "NAME_INVALID" then
				mismatches[#mismatches + 1] = ("%q: layerup said %s, not NAME_INVALID"):format(name, tostring(err))
			end
			if reg_ok ~= expect then
				mismatches[#mismatches + 1] = ("%q: registry %s (HTTP %d), expected %s")
					:format(name, reg_ok and "accepts" or "rejects", r.status, expect and "accept" or "reject")
			end
			if lu_ok ~= reg_ok then
				mismatches[#mismatches + 1] = ("%q: registry %s (HTTP %d), layerup %s")
					:format(name, reg_ok and "accepts" or "rejects", r.status, lu_ok and "accepts" or "rejects")
			end
		end
		store:close()
		assert.are.same({}, mismatches)
	end)

	it("rejects exactly the digests the registry rejects on finish", function()
		local layerup = need_layerup()
		local repo = "interop/digests"
		local data = util.random_bytes(4000)
		local digest = util.sha256(data)
		local hex = digest:sub(8)
		local uuid, loc = reg:start_upload(repo)
		local r = reg:http("PATCH", loc, { body = data })
		assert.are.equal(202, r.status)
		loc = reg:location(r)
		local store = ok(layerup.open(root))
		local up = ok(store:start(repo))
		ok(up:write(data))

		local bad = {
			"sha256:" .. hex:upper(), "sha256:" .. hex:sub(1, 63), "sha256:" .. hex .. "0", "sha256:", "",
			"md5:d41d8cd98f00b204e9800998ecf8427e", "sha256" .. hex, hex, "sha256:" .. ("g"):rep(64),
			":" .. hex, "SHA256:" .. hex, "sha256: " .. hex, "sha512:" .. hex, "sha256:" .. hex .. "\n",
			-- well-formed, wrong content
			"sha256:" .. ("0"):rep(64), "sha512:" .. ("0"):rep(128),
		}
		local mismatches = {}
		for _, d in ipairs(bad) do
			r = reg:http("PUT", loc .. "&digest=" .. qenc(d))
			local codes = R.error_codes(r.body)
			if r.status ~= 400 or codes[1] ~= "DIGEST_INVALID" then
				mismatches[#mismatches + 1] = ("%q: registry gave %d %s"):format(d, r.status, r.body)
			end
			local res, err = up:finish(d)
			if res or err.code ~= "DIGEST_INVALID" then
				mismatches[#mismatches + 1] = ("%q: layerup gave %s"):format(d, res and "success" or tostring(err))
			end
		end
		assert.are.same({}, mismatches)

		-- Both uploads survive the rejections and finish with the right digest.
		r = reg:http("PUT", loc .. "&digest=" .. digest)
		assert.are.equal(201, r.status, r.body)
		assert.are.equal(digest, r.headers["docker-content-digest"])
		local res = ok(up:finish(digest))
		assert.are.equal(digest, res.digest)
		assert.are.equal(#data, res.size)
		store:close()
		assert.is_false(is_dir(uploads_dir(root, repo, uuid)))
	end)
end)
