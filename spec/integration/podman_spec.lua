-- podman against the nginx host (bin/layerup serve): an image of real tar
-- layers (one of 17 MiB, an empty one) goes from an OCI layout into
-- podman's storage, `podman push` sends it to the host, a fresh podman
-- storage pulls it back (podman verifies every layer against the config's
-- diff_ids: the same image ID means the same content).  A second push of
-- the same image uploads nothing; a push into another repository mounts
-- the layers instead of uploading them.  podman runs daemonless with its
-- state under the test's directory (integration/helpers/podman.lua); the
-- host on 127.0.0.1 at a free port, stopped by PID.

local cjson = require "cjson"
local util = require "integration.helpers.util"
local N = require "integration.helpers.nginx"
local oci = require "integration.helpers.oci"
local podman = require "integration.helpers.podman"

local MiB = 1024 * 1024
local V2 = "/docker/registry/v2"
local q = util.q

local why = N.unavailable() or podman.unavailable()

describe("podman and the nginx host", function()
	if why then
		it("runs", function() pending(why) end)
		return
	end

	local work, root, host, pm, img, iid

	lazy_setup(function()
		work = util.tmpdir("podman-int")
		root = work .. "/root"
		util.mkdirp(root)
		host = N.start(root, { workers = 2 })
		pm = podman.new(work .. "/podman")
		iid, img = podman.image(pm, { 17 * MiB, 1024, 0, 300 * 1024 })
	end)

	lazy_teardown(function()
		if host then host:stop() end
		if work then util.rmrf(work) end
	end)

	-- Engine "upload.start" events in the host's error log (one per blob
	-- upload begun, on any worker).
	local function uploads_started()
		local n = 0
		for _ in host:error_log():gmatch("layerup: upload%.start") do n = n + 1 end
		return n
	end

	local function push(repo_tag)
		local dgfile = work .. "/digest." .. repo_tag:gsub("[^%w]", "_")
		local out, rc = pm(("push --tls-verify=false --signature-policy %s --digestfile %s %s %s")
			:format(q(pm.policy), q(dgfile), iid, q("127.0.0.1:" .. host.port .. "/" .. repo_tag)))
		assert(rc == 0, "podman push failed: " .. out .. "\n" .. host:error_log():sub(-3000))
		return (util.read_file(dgfile) or ""):gsub("%s+$", ""), out
	end

	local function manifest_of(repo, ref)
		local r = host:curl(("-H %s %s"):format(q("Accept: " .. oci.MANIFEST_TYPE),
			q(host.base .. "/v2/" .. repo .. "/manifests/" .. ref)))
		assert.equal(200, r.status, r.body)
		return cjson.decode(r.body), r
	end

	local function blob_path(dg)
		return root .. V2 .. "/blobs/sha256/" .. dg:sub(8, 9) .. "/" .. dg:sub(8) .. "/data"
	end

	local function linked(repo, dg)
		return util.exists(root .. V2 .. "/repositories/" .. repo .. "/_layers/sha256/" .. dg:sub(8) .. "/link")
	end

	-- A fresh podman storage pulls repo:tag; returns its image ID.
	local function pull_fresh(ref)
		local other = podman.new(util.tmpdir("podman-pull"))
		local out, rc = other(("pull -q --tls-verify=false --signature-policy %s %s")
			:format(q(other.policy), q("127.0.0.1:" .. host.port .. "/" .. ref)))
		util.rmrf(other.dir)
		assert(rc == 0, "podman pull failed: " .. out)
		return out:match("(%x+)%s*$")
	end

	it("pushes a multi-layer image (a 17 MiB layer, an empty one) that a fresh podman pulls back", function()
		assert.equal(img.config.digest:sub(8), iid)
		local before = uploads_started()
		local dg = push("pm/img:v1")
		local m, r = manifest_of("pm/img", "v1")
		assert.equal(dg, r.headers["docker-content-digest"])
		assert.equal(img.config.digest, m.config.digest)
		assert.equal(#img.layers, #m.layers)
		-- podman compresses the layers itself: other digests than the
		-- layout's, each stored whole under its digest.
		local biggest = 0
		for _, l in ipairs(m.layers) do
			local p = blob_path(l.digest)
			assert.equal(l.digest, util.sha256_file(p))
			assert.equal(l.size, util.size(p))
			assert.is_true(linked("pm/img", l.digest))
			if l.size > biggest then biggest = l.size end
		end
		assert.is_true(biggest >= 16 * MiB, "largest layer " .. biggest)
		assert.equal(img.config.digest, util.sha256_file(blob_path(img.config.digest)))
		-- one upload per blob: the layers and the config
		assert.equal(#m.layers + 1, uploads_started() - before)
		assert.equal("", util.run("ls " .. q(root .. V2 .. "/repositories/pm/img/_uploads") .. " 2>/dev/null"))
		assert.equal(iid, pull_fresh("pm/img:v1"))
	end)

	it("a second push of the same image uploads nothing (every blob is there)", function()
		local m1 = manifest_of("pm/img", "v1")
		local snap = util.snapshot(root .. V2 .. "/blobs")
		local before = uploads_started()
		local dg = push("pm/img:v1")
		assert.equal(0, uploads_started() - before)
		assert.same(snap, util.snapshot(root .. V2 .. "/blobs"))
		local m2, r = manifest_of("pm/img", "v1")
		assert.equal(dg, r.headers["docker-content-digest"])
		assert.same(m1, m2)
	end)

	it("a push into a second repository mounts the layers from the first", function()
		local before = uploads_started()
		push("other/copy:v2")
		local m = manifest_of("other/copy", "v2")
		for _, l in ipairs(m.layers) do
			assert.is_true(linked("other/copy", l.digest))
		end
		-- The layers are mounted (cross-repository POST ?mount=&from=);
		-- podman 4.3 sends the config again (it does not try to mount it).
		assert.is_true(uploads_started() - before <= 1, "uploads: " .. (uploads_started() - before))
		assert.equal(iid, pull_fresh("other/copy:v2"))
	end)
end)
