-- spec/cli_conventions_spec.lua - the command line's conventions (issue 9
-- "The command line", issue 8 defects 11 and 12): each behaviour with its
-- exit code, in-process and as a program.

local cjson = require "cjson"
local layerup = require "layerup"
local H = require "helpers.cli"
local util = require "helpers.util"
local stores = require "helpers.stores"

local V2 = stores.V2
local sha256 = util.digest
local q = H.quote

local blob_file, open_upload = H.blob_file, H.open_upload

local function count(s, pat)
	local n = 0
	for _ in s:gmatch(pat) do n = n + 1 end
	return n
end

local function uploads(root)
	local _, out = H.run { "uploads", root, "--json" }
	return cjson.decode(out)
end

-- The prefix that runs a command as an unprivileged user, or nil (not
-- root, no setpriv, or a checkout that user cannot read).
local function as_nobody()
	local prefix = "setpriv --reuid=65534 --regid=65534 --clear-groups env"
	local me = io.popen("id -u"):read("l")
	if me ~= "0" or H.sh("command -v setpriv >/dev/null") ~= 0 then return nil end
	if H.sh(prefix .. " lua5.4 -e 'require \"layerup.cli\"; require \"layerup.core\"' " ..
		"&& " .. prefix .. " test -r bin/layerup >/dev/null 2>&1") ~= 0 then
		return nil
	end
	return prefix
end

describe("layerup cli conventions", function()
	local root, file, data

	before_each(function() root, file, data = H.scratch() end)
	after_each(function() H.unscratch(root, file) end)

	describe("out-of-range sizes and durations are usage errors (exit 2)", function()
		it("finish --size 16777216T (it became 0)", function()
			local uuid = open_upload(root, "demo/app", data)
			local code, _, err = H.run { "finish", root, "demo/app", uuid, sha256(data), "--size", "16777216T" }
			assert.equal(2, code)
			assert.matches("layerup: USAGE: bad --size: ", err, 1, true)
			assert.matches("too large", err, 1, true)
			assert.equal(1, #uploads(root)) -- nothing happened to the upload
		end)

		it("push --chunk 16777217T (it was accepted)", function()
			local code, _, err = H.run { "push", root, "demo/app", file, "--chunk", "16777217T" }
			assert.equal(2, code)
			assert.matches("bad --chunk", err, 1, true)
			assert.is_nil(H.read(root .. V2 .. "/repositories/demo/app/_layers"))
		end)

		it("--max-size and --older-than past 2^53, negative or NaN", function()
			for _, args in ipairs {
				{ "push", root, "demo/app", file, "--max-size", "16777216T" },
				{ "push", root, "demo/app", file, "--max-size", "-1" },
				{ "push", root, "demo/app", file, "--chunk", "nan" },
				{ "push", root, "demo/app", file, "--chunk", "9007199254740992" },
				{ "purge", root, "--older-than", "9007199254740992" },
				{ "purge", root, "--older-than", "-5s" },
				{ "purge", root, "--older-than", "inf" },
			} do
				local code, _, err = H.run(args)
				assert.equal(2, code, table.concat(args, " "))
				assert.matches("^layerup: USAGE: bad %-%-", err)
			end
		end)

		it("the same units as the library: 8M, 1.5MiB, 2kB", function()
			local code, _, err = H.run { "push", root, "demo/app", file, "--chunk", "1.5KiB" }
			assert.equal(0, code, err)
			code, _, err = H.run { "push", root, "x/y", file, "--max-size", "4kB", "--force" }
			assert.equal(1, code)
			assert.matches("layerup: SIZE_INVALID: ", err, 1, true)
		end)
	end)

	describe("purge on a store it cannot modify", function()
		local function backdated(repo)
			local uuid = open_upload(root, repo, "old")
			H.write(("%s%s/repositories/%s/_uploads/%s/startedat"):format(root, V2, repo, uuid),
				"2020-01-01T00:00:00Z")
			return uuid
		end

		it("exits 1 naming what could not be removed; removes the rest", function()
			local stuck = backdated("demo/stuck")
			local other = backdated("demo/other")
			-- A store whose deletes fail below demo/stuck (a real driver with
			-- the faults middleware).
			local mw = require "layerup.middleware"
			local wrapped = setmetatable({
				open = function(r, o)
					local d = mw.faults(layerup.filesystem(r), {
						op = "delete", nth = 1, times = 1000, path = "demo/stuck", code = "IO",
						message = "permission denied" })
					return layerup.open(d, o)
				end,
			}, { __index = layerup })
			local code, out, err = H.run({ "purge", root, "--older-than", "1d" }, { layerup = wrapped })
			assert.equal(1, code)
			assert.matches("kept demo/stuck " .. stuck .. ": ", err, 1, true)
			assert.matches("permission denied", err, 1, true)
			assert.matches("PURGE_INCOMPLETE: 1 item(s)", err, 1, true)
			assert.matches("removed demo/other " .. other, out, 1, true)
			assert.is_nil(out:find(stuck, 1, true))
			local left = uploads(root)
			assert.equal(1, #left)
			assert.equal(stuck, left[1].uuid)
			-- --json names them too
			code, out = H.run({ "purge", root, "--older-than", "1d", "--json" }, { layerup = wrapped })
			assert.equal(1, code)
			local r = cjson.decode(out)
			assert.equal(0, #r.uploads)
			assert.same({ "demo/stuck", stuck }, { r.kept[1].repo, r.kept[1].uuid })
		end)

		it("lists and removes stale temporaries (.lup~) too", function()
			assert.equal(0, (H.run { "push", root, "demo/app", file }))
			local tmp = root .. V2 .. "/repositories/demo/app/_layers/.lup~0123456789abcdef"
			H.write(tmp, "partial")
			assert.equal(0, H.sh("touch -m -d '2 hours ago' " .. q(tmp)))
			local code, out = H.run { "purge", root, "--older-than", "1h", "--dry-run", "--json" }
			assert.equal(0, code)
			local r = cjson.decode(out)
			assert.same({ tmp, 7, false }, { r.temporaries[1].path, r.temporaries[1].size, r.temporaries[1].removed })
			assert.truthy(H.read(tmp))
			code, out = H.run { "purge", root, "--older-than", "1h" }
			assert.equal(0, code)
			assert.matches("removed temporary " .. tmp .. "  7 bytes", out, 1, true)
			assert.is_nil(H.read(tmp))
		end)

		it("as another user on a root-owned store, after a dry run that lists it", function()
			local nobody = as_nobody()
			if not nobody then
				pending("needs root, setpriv and a checkout an unprivileged user can read")
				return
			end
			local uuid = backdated("demo/app")
			H.sh("chmod -R a+rX " .. q(root) .. " && chmod a+rx " .. q(root:match("^(.*)/[^/]*$")))
			local code, out = H.exec({ "purge", root, "--older-than", "1d", "--dry-run" }, nobody)
			assert.equal(0, code)
			assert.matches("would remove demo/app " .. uuid, out, 1, true)
			local err
			code, out, err = H.exec({ "purge", root, "--older-than", "1d" }, nobody)
			assert.equal(1, code, err)
			assert.matches("kept demo/app " .. uuid, err, 1, true)
			assert.equal(1, #uploads(root))
		end)
	end)

	describe("stdin, stdout and files", function()
		it("push - reads stdin", function()
			local f = assert(io.open(file, "rb"))
			local code, out, err = H.run({ "push", root, "demo/app", "-", "--json" }, { stdin = f })
			f:close()
			assert.equal(0, code, err)
			assert.equal(sha256(data), cjson.decode(out).digest)
			code, out = H.exec({ "push", root, "other/repo", "-" }, nil, file)
			assert.equal(0, code)
			assert.matches("digest: " .. sha256(data), out, 1, true)
		end)

		it("cat -o FILE writes the blob to FILE; -o - to stdout", function()
			assert.equal(0, (H.run { "push", root, "demo/app", file }))
			local dest = root .. "/copy.bin"
			local code, out = H.run { "cat", root, "demo/app", sha256(data), "-o", dest }
			assert.equal(0, code)
			assert.equal("", out)
			assert.equal(data, H.read(dest))
			code, out = H.run({ "cat", root, "demo/app", sha256(data), "-o", "-" }, { tty = true })
			assert.equal(0, code)
			assert.equal(data, out)
			code = H.run { "cat", root, "demo/app", sha256(data), "-o", root .. "/no/such/dir/x" }
			assert.equal(1, code)
		end)

		it("cat refuses binary to a terminal (exit 1), text is fine", function()
			assert.equal(0, (H.run { "push", root, "demo/app", file }))
			local code, out, err = H.run({ "cat", root, "demo/app", sha256(data) },
				{ tty = { stdout = true } })
			assert.equal(1, code)
			assert.equal("", out)
			assert.matches("layerup: BINARY: ", err, 1, true)
			H.write(file, "plain text\n")
			assert.equal(0, (H.run { "push", root, "demo/app", file }))
			code, out = H.run({ "cat", root, "demo/app", sha256("plain text\n") }, { tty = { stdout = true } })
			assert.equal(0, code)
			assert.equal("plain text\n", out)
		end)

		it("push of a directory or a missing file fails (exit 1) before any upload exists", function()
			for _, bad in ipairs { root .. "/adir", root .. "/missing" } do
				if bad:match("adir$") then H.sh("mkdir -p " .. q(bad)) end
				local code, _, err = H.run { "push", root, "demo/app", bad }
				assert.equal(1, code, bad)
				assert.matches("^layerup: IO: ", err)
				assert.is_nil(H.read(root .. V2 .. "/repositories/demo/app/_uploads"))
			end
			local code, _, err = H.exec { "push", root, "demo/app", root }
			assert.equal(1, code)
			assert.matches("is a directory", err, 1, true)
		end)

		it("push of an unreadable file fails (exit 1) before any upload exists", function()
			local nobody = as_nobody()
			if not nobody then
				pending("needs root, setpriv and a checkout an unprivileged user can read")
				return
			end
			H.sh("chmod 000 " .. q(file) .. " && chmod a+rwx " .. q(root))
			local code, _, err = H.exec({ "push", root, "demo/app", file }, nobody)
			assert.equal(1, code)
			assert.matches("^layerup: IO: cannot open ", err)
			assert.is_nil(H.read(root .. V2 .. "/repositories/demo/app/_uploads"))
		end)
	end)

	describe("push of a blob that exists", function()
		it("skips the transfer in the same repository, mounts from another, --force uploads", function()
			local code, out = H.run { "push", root, "demo/app", file, "--json" }
			assert.equal(0, code)
			local first = cjson.decode(out)
			assert.is_false(first.dedup)
			-- again: no upload is created (no uuid), dedup reported
			local starts = 0
			local counting = setmetatable({ open = function(...)
				local s = assert(layerup.open(...))
				return setmetatable({}, { __index = function(_, k)
					local v = s[k]
					if type(v) ~= "function" then return v end
					return function(_, ...)
						if k == "start" then starts = starts + 1 end
						return v(s, ...)
					end
				end })
			end }, { __index = layerup })
			code, out = H.run({ "push", root, "demo/app", file, "--json" }, { layerup = counting })
			assert.equal(0, code)
			local r = cjson.decode(out)
			assert.equal(0, starts)
			assert.same({ true, false, first.digest, #data, first.path }, { r.dedup, r.mounted, r.digest, r.size, r.path })
			assert.is_nil(r.uuid)
			-- another repository: linked from the store, nothing transferred
			code, out = H.run({ "push", root, "other/repo", file, "--json" }, { layerup = counting })
			assert.equal(0, code)
			r = cjson.decode(out)
			assert.equal(0, starts)
			assert.is_true(r.dedup and r.mounted)
			assert.equal(0, (H.run { "stat", root, "other/repo", first.digest }))
			-- --force: a real upload
			code, out = H.run({ "push", root, "demo/app", file, "--json", "--force" }, { layerup = counting })
			assert.equal(0, code)
			assert.equal(1, starts)
			assert.is_true(cjson.decode(out).dedup)
			assert.is_string(cjson.decode(out).uuid)
		end)
	end)

	describe("hints", function()
		-- From stdin the size is not known up front, so --max-size stops the
		-- transfer midway and the upload is kept.
		it("name the command as invoked", function()
			local f = assert(io.open(file, "rb"))
			local code, _, err = H.run({ "push", root, "demo/app", "-", "--max-size", "1KiB", "--chunk", "512" },
				{ prog = "/opt/lup/bin/layerup", stdin = f })
			f:close()
			assert.equal(1, code)
			assert.matches("layerup: SIZE_INVALID: ", err, 1, true)
			local uuid = uploads(root)[1].uuid
			assert.matches("to resume: /opt/lup/bin/layerup resume " .. root .. " demo/app " .. uuid .. " -",
				err, 1, true)
		end)

		it("bare name when $PATH finds the command", function()
			local dir = H.tmpdir()
			assert(H.sh(("ln -s %s %s/layerup"):format(q(os.getenv("PWD") .. "/bin/layerup"), q(dir))) == 0)
			local code = H.sh(("PATH=%s layerup push %s demo/app - --max-size 1KiB <%s 2>%s/err"):format(
				q(dir .. ":" .. os.getenv("PATH")), q(root), q(file), q(dir)))
			local err = H.read(dir .. "/err")
			H.rm(dir)
			assert.equal(1, code, err)
			assert.matches("to resume: layerup resume ", err, 1, true)
		end)

		it("say to cancel when the upload holds other bytes than FILE (exit 1)", function()
			local uuid = open_upload(root, "demo/app", ("x"):rep(100))
			local code, _, err = H.run { "resume", root, "demo/app", uuid, file }
			assert.equal(1, code)
			assert.matches("layerup: DIGEST_INVALID: upload " .. uuid .. " does not hold the start of", err, 1, true)
			assert.matches("remove it with: layerup cancel " .. root .. " demo/app " .. uuid, err, 1, true)
			assert.is_nil(err:find("to resume", 1, true))
		end)
	end)

	describe("usage errors (exit 2)", function()
		it("print the help hint exactly once", function()
			for _, args in ipairs {
				{}, { "frobnicate" }, { "push", root, "demo/app", file, "--bogus" },
				{ "push" }, { "purge", root }, { "stat", root, "nope" }, { "--bogus" },
			} do
				local code, out, err = H.run(args)
				assert.equal(2, code, table.concat(args, " "))
				assert.equal("", out)
				assert.equal(1, count(err, "%-%-help"), err)
				assert.equal(2, count(err, "\n"), err)
			end
		end)

		it("suggest the nearest subcommand", function()
			for typo, want in pairs { pussh = "push", verfy = "verify", uplods = "uploads",
				cancle = "cancel", res = "resume", stats = "stat" } do
				local code, _, err = H.run { typo, root }
				assert.equal(2, code)
				assert.matches("did you mean `" .. want .. "`?", err, 1, true)
			end
			local _, _, err = H.run { "xyzzyq" }
			assert.is_nil(err:find("did you mean", 1, true))
		end)

		it("a malformed digest, everywhere", function()
			local uuid = open_upload(root, "demo/app", data)
			for _, args in ipairs {
				{ "finish", root, "demo/app", uuid, "sha256:abc" },
				{ "finish", root, "demo/app", uuid, "md5:" .. ("a"):rep(32) },
				{ "stat", root, "SHA256:" .. ("a"):rep(64) },
				{ "stat", root, "demo/app", "sha256:" .. ("A"):rep(64) },
				{ "cat", root, "demo/app", "sha512:00" },
			} do
				local code, _, err = H.run(args)
				assert.equal(2, code, table.concat(args, " "))
				assert.matches("layerup: DIGEST_INVALID: invalid digest", err, 1, true)
			end
		end)
	end)

	describe("version, quiet, verbose, progress", function()
		it("--version and `version` print the version (exit 0)", function()
			local core = require "layerup.core"
			for _, args in ipairs { { "--version" }, { "version" } } do
				local code, out = H.run(args)
				assert.equal(0, code)
				assert.equal("layerup " .. core._VERSION .. "\n", out)
			end
			local code, out = H.exec { "--version" }
			assert.equal(0, code)
			assert.matches("^layerup %d+%.%d+%.%d+\n$", out)
		end)

		it("-q silences notes and progress, -v logs events, --[no-]progress forces", function()
			local code, _, err = H.run({ "push", root, "demo/app", file, "-q" }, { tty = true })
			assert.equal(0, code)
			assert.equal("", err)
			code, _, err = H.run({ "push", root, "a/b", file, "--no-progress", "--force" }, { tty = true })
			assert.equal(0, code)
			assert.is_nil(err:find("ETA", 1, true))
			assert.matches("to resume after a crash", err, 1, true)
			code, _, err = H.run { "push", root, "c/d", file, "--progress", "--force" }
			assert.equal(0, code)
			assert.matches("100%% [^\n]* ETA ", err)
			code, _, err = H.run { "push", root, "e/f", file, "-v", "--force" }
			assert.equal(0, code)
			assert.matches("upload.start", err, 1, true)
			assert.matches("upload.finish", err, 1, true)
			-- errors are never silenced
			code, _, err = H.run { "stat", root, "-q", sha256("nope") }
			assert.equal(1, code)
			assert.matches("layerup: BLOB_UNKNOWN: ", err, 1, true)
		end)
	end)

	describe("interrupts", function()
		for _, sig in ipairs { "TERM", "HUP" } do
			it("SIG" .. sig .. " keeps the upload like Ctrl-C: exit 130 and the resume command", function()
				local code, big = H.interrupted_push(root, file, sig)
				assert.equal(130, code)
				local err = H.read(root .. "/err")
				assert.matches("layerup: INTERRUPTED: upload ", err, 1, true)
				local uuid = err:match("to resume: bin/layerup resume %S+ demo/app (%x+%-[%x-]+) ")
				assert.truthy(uuid, err)
				local list = uploads(root)
				assert.equal(1, #list)
				assert.equal(uuid, list[1].uuid)
				local rc, out = H.run { "resume", root, "demo/app", uuid, file }
				assert.equal(0, rc)
				assert.matches("digest: " .. sha256(big), out, 1, true)
			end)
		end
	end)

	describe("cancel of an upload that is gone", function()
		it("is BLOB_UPLOAD_UNKNOWN, exit 1, every time", function()
			local uuid = open_upload(root, "demo/app", "abc")
			assert.equal(0, (H.run { "cancel", root, "demo/app", uuid }))
			for _ = 1, 2 do
				local code, out, err = H.run { "cancel", root, "demo/app", uuid, "--json" }
				assert.equal(1, code)
				assert.matches("layerup: BLOB_UPLOAD_UNKNOWN: ", err, 1, true)
				assert.equal("BLOB_UPLOAD_UNKNOWN", cjson.decode(out).error.code)
			end
		end)
	end)

	describe("stat and cat", function()
		it("take REPO before DIGEST", function()
			assert.equal(0, (H.run { "push", root, "demo/app", file }))
			local code, out = H.run { "stat", root, "demo/app", sha256(data), "--json" }
			assert.equal(0, code)
			assert.equal("demo/app", cjson.decode(out).repo)
			code, out = H.run { "cat", root, "demo/app", sha256(data) }
			assert.equal(0, code)
			assert.equal(data, out)
			-- with $LAYERUP_ROOT: REPO DIGEST for both
			local env = { env = { LAYERUP_ROOT = root } }
			assert.equal(0, (H.run({ "stat", "demo/app", sha256(data) }, env)))
			assert.equal(0, (H.run({ "cat", "demo/app", sha256(data) }, env)))
			assert.equal(0, (H.run({ "stat", sha256(data) }, env)))
		end)
	end)

	describe("--json", function()
		local function text_keys(out)
			local keys = {}
			for k in out:gmatch("([%w_]+):%s+[^\n]*\n") do keys[#keys + 1] = k end
			table.sort(keys)
			return keys
		end
		local function json_keys(out)
			local keys = {}
			for k in pairs(cjson.decode(out)) do keys[#keys + 1] = k end
			table.sort(keys)
			return keys
		end

		it("uses the text output's key names (push, finish, stat)", function()
			local _, t = H.run { "push", root, "demo/app", file }
			local _, j = H.run { "push", root, "x/y", file, "--json", "--force" }
			assert.same(text_keys(t), json_keys(j))
			local uuid = open_upload(root, "demo/app", data)
			_, t = H.run { "finish", root, "demo/app", uuid, sha256(data) }
			assert.matches("dedup:  true", t, 1, true) -- dedup reported by finish
			uuid = open_upload(root, "demo/app", data)
			_, j = H.run { "finish", root, "demo/app", uuid, sha256(data), "--json" }
			assert.same(text_keys(t), json_keys(j))
			assert.is_true(cjson.decode(j).dedup)
			_, t = H.run { "stat", root, "demo/app", sha256(data) }
			_, j = H.run { "stat", root, "demo/app", sha256(data), "--json" }
			assert.same(text_keys(t), json_keys(j))
			-- one path convention: ROOT + the layout path, in text and JSON
			assert.matches("path:   " .. blob_file(root, sha256(data)), t, 1, true)
			assert.equal(blob_file(root, sha256(data)), cjson.decode(j).path)
			assert.is_nil(j:find("\\/", 1, true))
		end)

		it("puts errors on stdout as {error = {code, message}}", function()
			for _, c in ipairs {
				{ { "stat", root, sha256("nope") }, 1, "BLOB_UNKNOWN" },
				{ { "uploads", root .. "/none" }, 1, "PATH_NOT_FOUND" },
				{ { "push", root, "Bad", file }, 2, "NAME_INVALID" },
				{ { "push", root, "demo/app", file, "--bogus" }, 2, "USAGE" },
				{ { "frob" }, 2, "USAGE" },
			} do
				local code, out, err = H.run((function()
					local a = { table.unpack(c[1]) }
					a[#a + 1] = "--json"
					return a
				end)())
				assert.equal(c[2], code, c[1][1])
				local e = cjson.decode(out).error
				assert.equal(c[3], e.code, out)
				assert.is_string(e.message)
				assert.matches("layerup: " .. c[3] .. ": ", err, 1, true)
			end
		end)

		it("keeps the same keys for uploads, purge and verify as documented", function()
			open_upload(root, "demo/app", "abc")
			local _, out = H.run { "uploads", root, "--json" }
			local row = cjson.decode(out)[1]
			assert.same({ "repo", "size", "started_at", "uuid" }, (function()
				local k = {}
				for n in pairs(row) do k[#k + 1] = n end
				table.sort(k)
				return k
			end)())
			_, out = H.run { "verify", root, "--json" }
			local v = cjson.decode(out)
			assert.same({ true, 1 }, { v.ok, v.uploads })
			assert.equal(0, #v.warnings)
		end)
	end)

	describe("policies from the command line", function()
		it("--config FILE.lua returns layerup.open options (a script's policy, unchanged)", function()
			local log = root .. "/events.log"
			local conf = root .. "/conf.lua"
			H.write(conf, ([[
				local layerup = require "layerup"
				return {
					max_size = layerup.limits.parse_size("4KiB"),
					log = layerup.log.logfmt(%q),
				}
			]]):format(log))
			local code, _, err = H.run { "push", root, "demo/app", file, "--config", conf }
			assert.equal(1, code)
			assert.matches("layerup: SIZE_INVALID: ", err, 1, true)
			-- flags on top of the file
			code = H.run { "push", root, "demo/app", file, "--config", conf, "--max-size", "1MiB" }
			assert.equal(0, code)
			assert.matches("upload.start", H.read(log), 1, true)
		end)

		it("--max-size refuses a file that is too large before an upload exists (exit 1)", function()
			local code, _, err = H.run { "push", root, "demo/app", file, "--max-size", "4KiB" }
			assert.equal(1, code)
			assert.matches("layerup: SIZE_INVALID: ", err, 1, true)
			assert.equal(0, #uploads(root))
			assert.equal(0, (H.run { "push", root, "demo/app", file, "--max-size", "5000" }))
		end)

		it("a broken --config is a usage error (exit 2)", function()
			local conf = root .. "/conf.lua"
			for _, body in ipairs { "return {", "return 42", "error('boom')" } do
				H.write(conf, body)
				local code, _, err = H.run { "push", root, "demo/app", file, "--config", conf }
				assert.equal(2, code, body)
				assert.matches("^layerup: USAGE: %-%-config", err)
			end
			assert.equal(2, (H.run { "push", root, "demo/app", file, "--config", root .. "/none.lua" }))
		end)

		it("--log json|logfmt[:FILE]", function()
			local log = root .. "/log.json"
			local code = H.run { "push", root, "demo/app", file, "--log", "json:" .. log }
			assert.equal(0, code)
			local events = {}
			for line in H.read(log):gmatch("[^\n]+") do
				events[#events + 1] = cjson.decode(line).event
			end
			assert.truthy(#events >= 2)
			local _, _, err = H.run { "push", root, "x/y", file, "--log", "logfmt", "--force" }
			assert.matches("upload.finish", err, 1, true)
			assert.equal(2, (H.run { "push", root, "demo/app", file, "--log", "xml" }))
		end)
	end)

	describe("verify", function()
		local function digest_dir(hex) return hex:sub(1, 2) .. "/" .. hex end

		it("warns about the registry's cancel leftover (a lone hashstates/sha256/0), exit 0", function()
			assert.equal(0, (H.run { "push", root, "demo/app", file }))
			local dir = root .. V2 .. "/repositories/demo/app/_uploads/0f6bd16c-4a8e-4bd0-9b4e-1c0f2bb43d65"
			H.write(dir .. "/hashstates/sha256/0", ("\0"):rep(108))
			local code, out = H.run { "verify", root }
			assert.equal(0, code)
			assert.matches("WARNING upload.cancelled " .. dir, out, 1, true)
			assert.matches("checked: ok", out, 1, true)
			code, out = H.run { "verify", root, "--json" }
			assert.equal(0, code)
			local r = cjson.decode(out)
			assert.equal(1, #r.warnings)
			assert.equal(0, #r.problems)
		end)

		it("checks manifest revision and tag links (exit 3)", function()
			assert.equal(0, (H.run { "push", root, "demo/app", file }))
			local have = sha256(data):sub(8)
			local gone = sha256("no such manifest"):sub(8)
			local m = root .. V2 .. "/repositories/demo/app/_manifests"
			H.write(m .. "/revisions/sha256/" .. have .. "/link", "sha256:" .. have)
			H.write(m .. "/tags/good/current/link", "sha256:" .. have)
			H.write(m .. "/tags/good/index/sha256/" .. have .. "/link", "sha256:" .. have)
			local code, out = H.run { "verify", root, "--json" }
			assert.equal(0, code, out)
			assert.equal(3, cjson.decode(out).manifests)
			H.write(m .. "/revisions/sha256/" .. gone .. "/link", "sha256:" .. gone)
			H.write(m .. "/tags/bad/current/link", "garbage")
			code, out = H.run { "verify", root, "--json" }
			assert.equal(3, code)
			local kinds = {}
			for _, p in ipairs(cjson.decode(out).problems) do kinds[#kinds + 1] = p.kind end
			table.sort(kinds)
			assert.same({ "manifest.dangling", "manifest.malformed" }, kinds)
			assert.is_nil(digest_dir(have):find("/", 4, true))
		end)
	end)
end)
