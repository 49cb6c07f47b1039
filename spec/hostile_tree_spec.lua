-- hostile_tree_spec.lua: a store tree someone else has tampered with
-- (issue 8, defects 1, 2 and 10).  Symlinks below the root are never
-- followed: nothing outside the root is read, written, moved or deleted,
-- and the operation that meets one fails with INVALID_PATH.  Walks
-- (uploads, purge, verify) never descend through a symlink and always end;
-- they report it as tree.symlink.  Files where directories belong give
-- clear errors.  Stale ".lup~" temporaries are removed by purge and
-- reported by verify.
--
-- Every case runs with both resolvers of the filesystem driver: openat2
-- (where the kernel has it) and the portable O_NOFOLLOW walk.  Walks that
-- could loop run `bin/layerup` under timeout(1), so a regression fails
-- instead of hanging the suite.
local layerup = require "layerup"
local util = require "helpers.util"
local H = require "helpers.cli"

local V2 = "/docker/registry/v2"
local q = H.quote

local function sh(cmd)
	assert(H.sh(cmd) == 0, "failed: " .. cmd)
end

local function read(path)
	local f = io.open(path, "rb")
	if not f then return nil end
	local s = f:read("a")
	f:close()
	return s
end

local function write(path, s)
	local f = assert(io.open(path, "wb"))
	f:write(s)
	f:close()
end

local function is_link(path)
	return H.sh("test -L " .. q(path)) == 0
end

-- Every entry under dir (find output, sorted), to prove "untouched".
local function snapshot(dir)
	local p = assert(io.popen("cd " .. q(dir) .. " && find . | LC_ALL=C sort"))
	local s = p:read("a")
	p:close()
	return s
end

local function events(env, name)
	local out = {}
	for _, e in ipairs(env.events) do
		if e.event == name then out[#out + 1] = e.fields end
	end
	return out
end

for _, resolve in ipairs({ "auto", "walk" }) do
	local ENV = resolve == "walk" and "LAYERUP_FS_RESOLVE=walk " or ""

	describe("a hostile tree (" .. resolve .. " resolver)", function()
		local env

		-- A store at env.root, and a directory env.out beside it that
		-- nothing may touch: it holds "victim" and "sub/keep".
		before_each(function()
			env = { dir = util.tmpdir("hostile"), events = {} }
			env.root = env.dir .. "/root"
			env.out = env.dir .. "/out"
			env.v2 = env.root .. V2
			sh("mkdir -p " .. q(env.out .. "/sub") .. " " .. q(env.v2))
			write(env.out .. "/victim", "secret")
			write(env.out .. "/sub/keep", "keep")
			env.before = snapshot(env.out)
			env.d = assert(layerup.filesystem(env.root, { resolve = resolve }))
			env.store = assert(layerup.open(env.d, {
				log = function(event, fields)
					env.events[#env.events + 1] = { event = event, fields = fields }
				end,
			}))
		end)

		after_each(function()
			env.store:close()
			env.d:close()
			collectgarbage()
			util.rm_rf(env.dir)
			env = nil
		end)

		local function untouched()
			assert.equals(env.before, snapshot(env.out))
			assert.equals("secret", read(env.out .. "/victim"))
			assert.equals("keep", read(env.out .. "/sub/keep"))
		end

		local function updir(repo, uuid)
			return env.v2 .. "/repositories/" .. repo .. "/_uploads/" .. uuid
		end

		-- Push data to repo (start, write, finish): the digest.
		local function push(repo, data)
			local u = assert(env.store:start(repo))
			assert(u:write(data))
			return assert(u:finish(util.digest(data))).digest
		end

		it("uses the resolver it was asked for", function()
			if resolve == "walk" then
				assert.equals("walk", env.d:resolver())
			else
				assert.is_not_nil(env.d:resolver())
			end
			assert.is_nil(layerup.memory():resolver())
			assert.has_error(function() layerup.filesystem(env.root, { resolve = "nope" }) end)
		end)

		it("(a) close never writes or deletes through a symlinked hashstates/sha256", function()
			write(env.out .. "/5", "not a state")
			env.before = snapshot(env.out)
			local u = assert(env.store:start("r"))
			assert(u:write("hello"))
			sh("mkdir -p " .. q(updir("r", u.uuid) .. "/hashstates"))
			sh("ln -s " .. q(env.out) .. " " .. q(updir("r", u.uuid) .. "/hashstates/sha256"))
			local ok, err = u:close()
			assert.is_nil(ok)
			assert.equals("INVALID_PATH", err.code)
			assert.matches("hashstates/sha256 is a symlink %(not followed%)", err.message)
			untouched()
			-- the upload itself is still good: resume re-hashes the data
			local u2 = assert(env.store:resume("r", u.uuid))
			assert.equals(5, u2:size())
			assert.equals(util.digest("hello"), assert(u2:finish(util.digest("hello"))).digest)
			untouched()
		end)

		it("(b) resume, write and finish never touch a file that data links to", function()
			local u = assert(env.store:start("r"))
			assert(u:write("abc"))
			local data = updir("r", u.uuid) .. "/data"
			sh("rm " .. q(data) .. " && ln -s " .. q(env.out .. "/victim") .. " " .. q(data))
			-- finish on the open handle: the link is not moved into blobs/
			local ok, err = u:finish(util.digest("abc"))
			assert.is_nil(ok)
			assert.equals("INVALID_PATH", err.code)
			assert.matches("data is a symlink %(not followed%)", err.message)
			-- and the store says so through its log policy
			local ev = events(env, "tree.symlink")
			assert.is_true(#ev >= 1)
			assert.equals(V2 .. "/repositories/r/_uploads/" .. u.uuid .. "/data", ev[1].path)
			assert.matches("is a symlink", ev[1].message)
			assert.equals("", (snapshot(env.v2):gsub("[^\n]*repositories[^\n]*\n", ""):gsub("^%.\n", "")))
			-- resume does not report (or append to) the victim (once u
			-- has let go of the upload's lock)
			u:close()
			local u2, rerr = env.store:resume("r", u.uuid)
			assert.is_nil(u2)
			assert.equals("INVALID_PATH", rerr.code)
			untouched()
			assert.is_true(is_link(data))
			-- cancel removes the link, never its target
			assert(u:cancel())
			untouched()
		end)

		it("(c) a blob whose data links elsewhere is never read", function()
			local digest = push("r", "public")
			local hex = digest:sub(8)
			local data = env.v2 .. "/blobs/sha256/" .. hex:sub(1, 2) .. "/" .. hex .. "/data"
			sh("rm " .. q(data) .. " && ln -s " .. q(env.out .. "/victim") .. " " .. q(data))
			local r, err = env.store:open("r", digest)
			assert.is_nil(r)
			assert.equals("INVALID_PATH", err.code)
			assert.equals(data:sub(#env.root + 1), events(env, "tree.symlink")[1].path)
			local st, serr = env.store:stat(digest, "r")
			assert.is_nil(st)
			assert.equals("INVALID_PATH", serr.code)
			-- the CLI's cat says so and prints nothing of the victim
			local code, out, stderr = H.exec({ "cat", "--root", env.root, "r", digest }, ENV)
			assert.is_not.equals(0, code)
			assert.equals("", out)
			assert.matches("symlink", stderr)
			untouched()
		end)

		it("(d) a symlinked repository, _layers or blobs/ directory gets nothing", function()
			sh("mkdir -p " .. q(env.v2 .. "/repositories"))
			sh("ln -s " .. q(env.out) .. " " .. q(env.v2 .. "/repositories/evil"))
			local u, err = env.store:start("evil")
			assert.is_nil(u)
			assert.equals("INVALID_PATH", err.code)
			assert.matches("repositories/evil is a symlink", err.message)
			untouched()

			-- _layers of a real repository links elsewhere: no link there
			push("good", "warm-up")
			sh("ln -s " .. q(env.out) .. " " .. q(env.v2 .. "/repositories/good2"))
			sh("mkdir -p " .. q(env.v2 .. "/repositories/r3"))
			sh("ln -s " .. q(env.out) .. " " .. q(env.v2 .. "/repositories/r3/_layers"))
			local u3 = assert(env.store:start("r3"))
			assert(u3:write("layered"))
			local ok, ferr = u3:finish(util.digest("layered"))
			assert.is_nil(ok)
			assert.equals("INVALID_PATH", ferr.code)
			untouched()
			assert.is_nil(env.store:link("r3", util.digest("warm-up")))
			assert.is_nil(env.store:mount("good", "good2", util.digest("warm-up")))
			untouched()

			-- blobs/ itself links elsewhere: no blob written there
			sh("rm -rf " .. q(env.v2 .. "/blobs") .. " && ln -s " .. q(env.out) .. " " .. q(env.v2 .. "/blobs"))
			local u2 = assert(env.store:start("good"))
			assert(u2:write("payload"))
			local ok2, berr = u2:finish(util.digest("payload"))
			assert.is_nil(ok2)
			assert.equals("INVALID_PATH", berr.code)
			assert.matches("blobs is a symlink", berr.message)
			untouched()
			assert(u2:cancel())
			untouched()
		end)

		it("works through a symlinked root", function()
			local link = env.dir .. "/root-link"
			sh("ln -s " .. q(env.root) .. " " .. q(link))
			local s = assert(layerup.open(assert(layerup.filesystem(link, { resolve = resolve }))))
			local u = assert(s:start("via/link"))
			assert(u:write("through the link"))
			local digest = assert(u:finish(util.digest("through the link"))).digest
			local r = assert(s:open("via/link", digest))
			assert.equals("through the link", r:read(100))
			r:close()
			assert.equals(0, #assert(s:uploads()))
			assert(assert(s:start("via/link")):cancel())
			s:close()
			local code, out = H.exec({ "verify", "--root", link }, ENV .. "timeout 60 ")
			assert.equals(0, code, out)
			assert.matches("1 blobs, 1 links, 0 uploads checked: ok", out)
		end)

		it("files where directories belong give clear errors, not crashes", function()
			-- _uploads is a regular file
			sh("mkdir -p " .. q(env.v2 .. "/repositories/f"))
			write(env.v2 .. "/repositories/f/_uploads", "file")
			local u, err = env.store:start("f")
			assert.is_nil(u)
			assert.equals("IO", err.code)
			assert.matches("not a directory: .*/repositories/f/_uploads", err.message)
			assert.same({}, assert(env.store:uploads()))
			assert.same({}, assert(env.store:purge { older_than = 0 }))
			-- blobs/sha256 is a regular file: finish fails, cancel cleans
			sh("mkdir -p " .. q(env.v2 .. "/blobs"))
			write(env.v2 .. "/blobs/sha256", "file")
			local u2 = assert(env.store:start("g"))
			assert(u2:write("x"))
			local ok, ferr = u2:finish(util.digest("x"))
			assert.is_nil(ok)
			assert.equals("IO", ferr.code)
			assert.matches("not a directory: .*/blobs/sha256", ferr.message)
			local r, oerr = env.store:open("g", util.digest("x"))
			assert.is_nil(r)
			assert.is_string(oerr.code)
			assert(u2:cancel())
			local code = H.exec({ "verify", "--root", env.root }, ENV .. "timeout 60 ")
			assert.is_true(code == 0 or code == 3, "verify exit " .. code)
		end)

		it("walks skip symlinks, say so (tree.symlink) and never list what lies beyond", function()
			-- out/ looks like a repository with an old upload in it
			local fake = env.out .. "/_uploads/0b9e9c4e-7f52-4a57-9d8a-3f4c1a2b3c4d"
			sh("mkdir -p " .. q(fake))
			write(fake .. "/startedat", "2020-01-01T00:00:00Z")
			write(fake .. "/data", "")
			env.before = snapshot(env.out)
			sh("mkdir -p " .. q(env.v2 .. "/repositories/ok"))
			sh("ln -s " .. q(env.out) .. " " .. q(env.v2 .. "/repositories/ok/linked"))
			local real = assert(env.store:start("ok"))
			real:close()
			local list = assert(env.store:uploads())
			assert.equals(1, #list)
			assert.equals("ok", list[1].repo)
			local ev = events(env, "tree.symlink")
			assert.equals(1, #ev)
			assert.equals(V2 .. "/repositories/ok/linked", ev[1].path)
			assert.equals(0, #assert(env.store:purge { older_than = 3600 }))
			untouched()
			-- verify reports the link and stays out of it
			local code, out = H.exec({ "verify", "--root", env.root }, ENV .. "timeout 60 ")
			assert.equals(3, code)
			assert.matches("DAMAGE tree.symlink " .. V2:gsub("%p", "%%%0") .. "/repositories/ok/linked", out)
			untouched()
		end)

		it("a symlinked upload directory is listed as debris and purge removes only the link", function()
			local fake = env.out .. "/up"
			sh("mkdir -p " .. q(fake))
			write(fake .. "/startedat", "2020-01-01T00:00:00Z")
			write(fake .. "/data", "")
			env.before = snapshot(env.out)
			local uuid = "0b9e9c4e-7f52-4a57-9d8a-3f4c1a2b3c4d"
			sh("mkdir -p " .. q(env.v2 .. "/repositories/r/_uploads"))
			sh("ln -s " .. q(fake) .. " " .. q(updir("r", uuid)))
			assert.is_nil(env.store:resume("r", uuid))
			local gone = assert(env.store:purge { older_than = 3600 })
			assert.equals(1, #gone)
			assert.is_false(is_link(updir("r", uuid)))
			assert.is_true(#events(env, "tree.symlink") >= 1)
			untouched()
		end)

		it("loops and a link to / end every walk (uploads, purge, verify) and walk nothing outside", function()
			local repos = env.v2 .. "/repositories"
			sh("mkdir -p " .. q(repos))
			sh("ln -s . " .. q(repos .. "/l1") .. " && ln -s . " .. q(repos .. "/l2"))
			sh("ln -s / " .. q(repos .. "/x"))
			sh("mkdir -p " .. q(repos .. "/deep/a") .. " && ln -s .. " .. q(repos .. "/deep/a/up"))
			local u = assert(env.store:start("real"))
			u:close()
			local code, out, err = H.exec({ "uploads", "--root", env.root }, ENV .. "timeout 60 ")
			assert.equals(0, code, err)
			assert.is_truthy(out:find("real", 1, true) and out:find(u.uuid, 1, true), out)
			assert.is_nil(out:find("l1", 1, true))
			code, out, err = H.exec({ "verify", "--root", env.root }, ENV .. "timeout 60 ")
			assert.equals(3, code, err)
			for _, l in ipairs({ "l1", "l2", "x", "deep/a/up" }) do
				assert.matches("DAMAGE tree.symlink " .. (V2 .. "/repositories/" .. l):gsub("%p", "%%%0") .. ":", out)
			end
			code, out, err = H.exec({ "purge", "--root", env.root, "--older-than", "1s", "--dry-run" },
				ENV .. "timeout 60 ")
			assert.equals(0, code, err)
			-- in-process too, now that the walks are known to end
			assert.equals(1, #assert(env.store:uploads()))
			assert.equals(4, #events(env, "tree.symlink"))
			assert.equals(0, #assert(env.store:purge { older_than = 3600 }))
			assert.is_true(is_link(repos .. "/x"))
		end)

		it("recursive removal deletes links inside the tree, never their targets", function()
			local u = assert(env.store:start("r"))
			assert(u:write("abc"))
			local dir = updir("r", u.uuid)
			sh("mkdir -p " .. q(dir .. "/hashstates"))
			sh("ln -s " .. q(env.out) .. " " .. q(dir .. "/hashstates/sha512"))
			sh("ln -s " .. q(env.out .. "/victim") .. " " .. q(dir .. "/extra"))
			sh("mkdir -p " .. q(dir .. "/nested/deeper") .. " && ln -s " .. q(env.out) .. " " ..
				q(dir .. "/nested/deeper/out"))
			assert(u:cancel())
			assert.is_nil(read(dir .. "/startedat"))
			assert.equals(1, H.sh("test -e " .. q(dir)))
			untouched()
		end)

		it("purge removes stale temporaries (defect 10) and verify reports them", function()
			local digest = push("r", "linked blob")
			local hex = digest:sub(8)
			local layer = env.v2 .. "/repositories/r/_layers/sha256/" .. hex
			local blobdir = env.v2 .. "/blobs/sha256/" .. hex:sub(1, 2) .. "/" .. hex
			local keep = assert(env.store:start("r"))
			keep:close()
			local stale = {
				layer .. "/.lup~0123456789abcdef",
				blobdir .. "/.lup~00000000000000aa",
				updir("r", keep.uuid) .. "/.lup~1111111111111111",
			}
			for _, p in ipairs(stale) do
				write(p, "partial")
				sh("touch -m -d '2 hours ago' " .. q(p))
			end
			local fresh = layer .. "/.lup~fedcba9876543210"
			write(fresh, "in flight")
			-- a stale temporary outside (through a symlink): not ours
			write(env.out .. "/.lup~2222222222222222", "x")
			sh("touch -m -d '2 hours ago' " .. q(env.out .. "/.lup~2222222222222222"))
			sh("ln -s " .. q(env.out) .. " " .. q(env.v2 .. "/repositories/r/_layers/sha256/zz"))
			env.before = snapshot(env.out)

			local code, out = H.exec({ "verify", "--root", env.root }, ENV .. "timeout 60 ")
			assert.equals(3, code)
			for _, p in ipairs(stale) do
				assert.matches("DAMAGE temporary.stale " .. p:sub(#env.root + 1):gsub("%p", "%%%0"), out)
			end
			assert.is_nil(out:find("fedcba9876543210", 1, true))
			assert.is_nil(out:find("2222222222222222", 1, true))

			-- a dry run removes nothing and says what it would
			assert.same({}, assert(env.store:purge { older_than = 3600, dry_run = true }))
			local ev = events(env, "purge.temporary")
			assert.equals(3, #ev)
			assert.is_true(ev[1].dry_run)
			assert.is_false(ev[1].removed)
			for _, p in ipairs(stale) do assert.equals("partial", read(p)) end

			env.events = {}
			assert.same({}, assert(env.store:purge { older_than = 3600 }))
			ev = events(env, "purge.temporary")
			assert.equals(3, #ev)
			assert.is_true(ev[1].removed)
			assert.equals(7, ev[1].size)
			for _, p in ipairs(stale) do assert.is_nil(read(p)) end
			assert.equals("in flight", read(fresh))
			untouched()
			-- the upload the temporary sat in is still there and well
			assert(env.store:resume("r", keep.uuid)):close()
			sh("rm " .. q(fresh) .. " " .. q(env.v2 .. "/repositories/r/_layers/sha256/zz"))
			code, out = H.exec({ "verify", "--root", env.root }, ENV .. "timeout 60 ")
			assert.equals(0, code, out)
		end)
	end)
end

describe("the filesystem driver's temporaries()", function()
	it("is the filesystem driver's only and checks its arguments", function()
		local dir = util.tmpdir("hostile")
		local d = assert(layerup.filesystem(dir))
		assert.same({}, assert(d:temporaries("/")))
		local _, err = d:temporaries("/missing")
		assert.equals("PATH_NOT_FOUND", err.code)
		_, err = d:temporaries("/../etc")
		assert.equals("INVALID_PATH", err.code)
		assert.has_error(function() d:temporaries("/", -1) end)
		assert.has_error(function() d:temporaries("/", 0 / 0) end)
		_, err = layerup.memory():temporaries("/")
		assert.equals("UNSUPPORTED", err.code)
		d:close()
		util.rm_rf(dir)
	end)
end)
