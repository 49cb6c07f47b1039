-- vm: lua5.4 only: the CLI (bin/layerup) runs on lua5.4
-- spec/cli_spec.lua - the `layerup` command: every subcommand, bad input,
-- --json output, LAYERUP_ROOT, exit codes (in-process and as a program).

local cjson = require "cjson"
local layerup = require "layerup"
local cli = require "layerup.cli"
local H = require "helpers.cli"
local util = require "helpers.util"
local stores = require "helpers.stores"

local V2 = stores.V2
local sha256 = util.digest

local blob_file, open_upload = H.blob_file, H.open_upload

describe("layerup cli", function()
	local root, file, data

	before_each(function() root, file, data = H.scratch() end)
	after_each(function() H.unscratch(root, file) end)

	describe("help and usage", function()
		it("prints the top-level help with every command and exits 0", function()
			local code, out = H.run { "--help" }
			assert.equal(0, code)
			assert.matches("Usage: layerup COMMAND", out, 1, true)
			for _, name in ipairs(cli.commands) do
				assert.matches("\n  " .. name .. "[ \n]", out)
			end
			assert.matches("130 interrupted", out, 1, true)
		end)

		it("prints each command's help", function()
			for _, name in ipairs(cli.commands) do
				local code, out = H.run { name, "--help" }
				assert.equal(0, code, name)
				assert.matches("Usage: layerup " .. name .. " ", out, 1, true)
				assert.matches("--json", out, 1, true)
			end
			local code, out = H.run { "help", "purge" }
			assert.equal(0, code)
			assert.matches("--older-than", out, 1, true)
		end)

		it("is a usage error without a command or with an unknown one", function()
			local code, _, err = H.run {}
			assert.equal(2, code)
			assert.matches("layerup: USAGE: no command given", err, 1, true)
			code, _, err = H.run { "frobnicate" }
			assert.equal(2, code)
			assert.matches("layerup: USAGE: unknown command", err, 1, true)
		end)

		it("rejects unknown flags on every command", function()
			for _, name in ipairs(cli.commands) do
				local code, _, err = H.run { name, root, "--no-such-flag" }
				assert.equal(2, code, name)
				assert.matches("^layerup: USAGE: ", err)
			end
		end)

		it("rejects a value on a flag and a missing option value", function()
			local code = H.run { "purge", root, "--older-than", "1d", "--dry-run=yes" }
			assert.equal(2, code)
			code = H.run { "purge", root, "--older-than" }
			assert.equal(2, code)
		end)

		it("accepts common options before the command", function()
			local code, out = H.run { "--json", "uploads", root }
			assert.equal(0, code)
			assert.equal("[]", out:gsub("%s", ""))
			assert.equal(0, (H.run { "push", root, "demo/app", file }))
			code, out = H.run { "--root", root, "verify" }
			assert.equal(0, code)
			assert.matches("checked: ok", out, 1, true)
		end)

		it("rejects wrong numbers of arguments", function()
			assert.equal(2, (H.run { "push", root, "a", file, "extra" }))
			assert.equal(2, (H.run { "cat", root }))
			assert.equal(2, (H.run { "verify", root, "x" }))
		end)
	end)

	describe("value syntax", function()
		it("parses sizes", function()
			assert.equal(4 * 1048576, cli.parse_size("4MiB"))
			assert.equal(512 * 1024, cli.parse_size("512KiB"))
			assert.equal(1048576, cli.parse_size("1048576"))
			assert.equal(2 << 30, cli.parse_size("2g"))
			assert.equal(1000, cli.parse_size("1kB"))
			assert.is_nil(cli.parse_size("4XB"))
			assert.is_nil(cli.parse_size("-1"))
			assert.equal(1572864, cli.parse_size("1.5MiB"))
			assert.is_nil(cli.parse_size("1.3B"))
			assert.is_nil(cli.parse_size(""))
		end)

		it("parses durations", function()
			assert.equal(90, cli.parse_duration("90s"))
			assert.equal(15 * 60, cli.parse_duration("15m"))
			assert.equal(36 * 3600, cli.parse_duration("36h"))
			assert.equal(7 * 86400, cli.parse_duration("7d"))
			assert.equal(5400, cli.parse_duration("1h30m"))
			assert.equal(0, cli.parse_duration("0s"))
			assert.equal(7, cli.parse_duration("7"))
			assert.equal(5400, cli.parse_duration("1.5h"))
			for _, bad in ipairs { "", "7x", "d", "-1d", "1h-30m", "h1", "1h30" } do
				assert.is_nil(cli.parse_duration(bad), bad)
			end
		end)

		it("checks repository names like the distribution grammar", function()
			for _, ok in ipairs { "a", "demo/app", "a.b_c__d--e/f-1", ("a"):rep(255) } do
				assert.is_true(cli.valid_repo(ok), ok)
			end
			for _, bad in ipairs { "", "../x", "Foo", "a//b", "a/", "/a", "-a", "a-", "a..b",
				"a___b", "a b", "a/../b", ("a"):rep(256) } do
				assert.is_false(cli.valid_repo(bad), bad)
			end
		end)

		it("checks upload ids", function()
			assert.is_true(cli.valid_uuid("0f6bd16c-4a8e-4bd0-9b4e-1c0f2bb43d65"))
			for _, bad in ipairs { "not-a-uuid", "0F6BD16C-4A8E-4BD0-9B4E-1C0F2BB43D65",
				"../../etc/passwd", "0f6bd16c4a8e4bd09b4e1c0f2bb43d65", "" } do
				assert.is_false(cli.valid_uuid(bad), bad)
			end
		end)
	end)

	describe("push", function()
		it("uploads a file, prints the digest and the blob's place", function()
			local code, out, err = H.run { "push", root, "demo/app", file }
			assert.equal(0, code, err)
			local digest = sha256(data)
			assert.matches("digest: " .. digest, out, 1, true)
			assert.matches("path:   " .. blob_file(root, digest), out, 1, true)
			assert.equal(data, H.read(blob_file(root, digest)))
			assert.equal("", err)  -- quiet when stderr is not a terminal
		end)

		it("writes JSON that parses, and deduplicates a second push", function()
			local code, out = H.run { "push", root, "demo/app", file, "--json" }
			assert.equal(0, code)
			local r = cjson.decode(out)
			assert.equal(sha256(data), r.digest)
			assert.equal(#data, r.size)
			assert.equal("demo/app", r.repo)
			assert.equal(blob_file(root, r.digest), r.path)
			assert.is_false(r.dedup)
			assert.is_true(cli.valid_uuid(r.uuid))
			code, out = H.run { "push", root, "other/repo", file, "--json" }
			assert.equal(0, code)
			assert.is_true(cjson.decode(out).dedup)
		end)

		it("closes and resumes the upload after every --chunk bytes", function()
			-- Count store:resume calls through a wrapped module.
			local resumes = 0
			local wrapped = setmetatable({
				open = function(...)
					local store, err = layerup.open(...)
					if not store then return nil, err end
					return setmetatable({}, { __index = function(_, k)
						local v = store[k]
						if type(v) ~= "function" then return v end
						return function(_, ...)
							if k == "resume" then resumes = resumes + 1 end
							return v(store, ...)
						end
					end })
				end,
			}, { __index = layerup })
			H.write(file, data:sub(1, 4500))
			local code, out, err = H.run({ "push", root, "demo/app", file, "--chunk", "1000" },
				{ layerup = wrapped })
			assert.equal(0, code, err)
			assert.equal(4, resumes)  -- after 1000, 2000, 3000 and 4000 bytes
			assert.matches(sha256(data:sub(1, 4500)), out, 1, true)
		end)

		it("shows progress and the resume command on a terminal only", function()
			local code, _, err = H.run({ "push", root, "demo/app", file, "--chunk", "1000" }, { tty = true })
			assert.equal(0, code)
			assert.matches("100%% [^\n]* ETA ", err)
			assert.matches("to resume after a crash: layerup resume " .. root .. " demo/app ", err, 1, true)
		end)

		it("pushes an empty file", function()
			H.write(file, "")
			local code, out = H.run { "push", root, "demo/app", file, "--json" }
			assert.equal(0, code)
			assert.equal(sha256(""), cjson.decode(out).digest)
			assert.equal(0, cjson.decode(out).size)
		end)

		it("rejects bad chunk sizes", function()
			for _, bad in ipairs { "0", "4XB", "-1", "0.5B", "16777217T" } do
				local code, _, err = H.run { "push", root, "demo/app", file, "--chunk", bad }
				assert.equal(2, code, bad)
				assert.matches("bad --chunk", err, 1, true)
			end
		end)

		it("rejects hostile repository names before touching the store", function()
			for _, bad in ipairs { "../x", "Foo", "a//b", "a/../../etc", "" } do
				local code, _, err = H.run { "push", root, bad, file }
				assert.equal(2, code, bad)
				assert.matches("layerup: NAME_INVALID: ", err, 1, true)
			end
			assert.is_nil(H.read(root .. V2 .. "/repositories"))  -- nothing created
		end)

		it("fails with exit 1 when FILE cannot be read", function()
			local code, _, err = H.run { "push", root, "demo/app", root .. "/missing" }
			assert.equal(1, code)
			assert.matches("^layerup: IO: cannot open ", err)
		end)

		it("continues an upload given by --resume", function()
			local uuid = open_upload(root, "demo/app", data:sub(1, 1234))
			local code, out, err = H.run { "push", root, "demo/app", file, "--resume", uuid, "--json" }
			assert.equal(0, code, err)
			local r = cjson.decode(out)
			assert.equal(uuid, r.uuid)
			assert.equal(sha256(data), r.digest)
		end)
	end)

	describe("LAYERUP_ROOT and --root", function()
		it("takes ROOT from the environment when it is omitted", function()
			local env = { LAYERUP_ROOT = root }
			local code, out = H.run({ "push", "demo/app", file, "--json" }, { env = env })
			assert.equal(0, code)
			local digest = cjson.decode(out).digest
			code, out = H.run({ "stat", "demo/app", digest, "--json" }, { env = env })
			assert.equal(0, code)
			assert.equal(#data, cjson.decode(out).size)
			code, out = H.run({ "uploads", "--json" }, { env = env })
			assert.equal(0, code)
			assert.equal("[]", out:gsub("%s", ""))
		end)

		it("prefers a positional ROOT over the environment", function()
			local other = H.tmpdir()
			local code = H.run({ "push", root, "demo/app", file }, { env = { LAYERUP_ROOT = other } })
			assert.equal(0, code)
			assert.equal(data, H.read(blob_file(root, sha256(data))))
			assert.is_nil(H.read(blob_file(other, sha256(data))))
			H.rm(other)
		end)

		it("has no positional ROOT when --root is given", function()
			local uuid = open_upload(root, "demo/app", "x")
			local code, out = H.run { "uploads", "--root", root, "demo/app", "--json" }
			assert.equal(0, code)
			assert.equal(uuid, cjson.decode(out)[1].uuid)
			code = H.run { "uploads", "--root", root, root, "demo/app" }
			assert.equal(2, code)
		end)

		it("names the missing argument, not ROOT (exit 2)", function()
			local code, _, err = H.run { "push" }
			assert.equal(2, code)
			assert.matches("layerup: USAGE: push: missing ROOT", err, 1, true)
			code, _, err = H.run { "push", "demo/app", file }
			assert.equal(2, code)
			assert.matches("layerup: USAGE: push: missing FILE\n", err)
			code, _, err = H.run({ "push", "demo/app" }, { env = { LAYERUP_ROOT = root } })
			assert.equal(2, code)
			assert.matches("push: missing FILE", err, 1, true)
			code, _, err = H.run { "finish", root, "demo/app" }
			assert.equal(2, code)
			assert.matches("finish: missing UUID", err, 1, true)
		end)

		it("fails when the root does not exist or is not a directory", function()
			for _, args in ipairs {
				{ "uploads", root .. "/nope" },
				{ "verify", root .. "/nope" },
				{ "stat", root .. "/nope", sha256("") },
				{ "purge", root .. "/nope", "--older-than", "1d" },
				{ "uploads", file },
			} do
				local code, _, err = H.run(args)
				assert.equal(1, code, args[1])
				assert.matches("^layerup: PATH_NOT_FOUND: store root ", err)
			end
		end)
	end)

	describe("uploads, resume, finish, cancel", function()
		it("lists uploads in progress, by repository", function()
			local u1 = open_upload(root, "a/one", "hello")
			local u2 = open_upload(root, "b/two", "")
			local code, out = H.run { "uploads", root, "--json" }
			assert.equal(0, code)
			local list = cjson.decode(out)
			assert.equal(2, #list)
			assert.same({ "a/one", u1, 5 }, { list[1].repo, list[1].uuid, list[1].size })
			assert.same({ "b/two", u2, 0 }, { list[2].repo, list[2].uuid, list[2].size })
			assert.is_true(math.abs(list[1].started_at - os.time()) < 3600)
			code, out = H.run { "uploads", root, "b/two" }
			assert.equal(0, code)
			assert.matches(u2, out, 1, true)
			assert.is_nil(out:find(u1, 1, true))
			assert.equal(2, (H.run { "uploads", root, "B/Two" }))
		end)

		it("resumes from the upload's offset and finishes", function()
			local uuid = open_upload(root, "demo/app", data:sub(1, 3000))
			local code, out, err = H.run { "resume", root, "demo/app", uuid, file, "--chunk", "512" }
			assert.equal(0, code, err)
			assert.matches("digest: " .. sha256(data), out, 1, true)
			assert.equal(data, H.read(blob_file(root, sha256(data))))
			code, out = H.run { "uploads", root, "--json" }
			assert.equal("[]", out:gsub("%s", ""))
		end)

		it("refuses to resume with a file shorter than the upload", function()
			local uuid = open_upload(root, "demo/app", data .. "more")
			local code, _, err = H.run { "resume", root, "demo/app", uuid, file }
			assert.equal(1, code)
			assert.matches("layerup: SIZE_INVALID: ", err, 1, true)
			-- resuming again cannot help: the hint says to cancel
			assert.is_nil(err:find("to resume", 1, true))
			assert.matches("remove it with: layerup cancel " .. root .. " demo/app " .. uuid, err, 1, true)
		end)

		it("rejects ids that are not UUIDs and unknown uploads", function()
			for _, cmd in ipairs {
				{ "resume", root, "demo/app", "not-a-uuid", file },
				{ "finish", root, "demo/app", "../../../etc", sha256("") },
				{ "cancel", root, "demo/app", "0F6BD16C-4A8E-4BD0-9B4E-1C0F2BB43D65" },
				{ "push", root, "demo/app", file, "--resume", "xyz" },
			} do
				local code, _, err = H.run(cmd)
				assert.equal(2, code, cmd[1])
				assert.matches("layerup: BLOB_UPLOAD_UNKNOWN: invalid upload id", err, 1, true)
			end
			local code, _, err = H.run { "cancel", root, "demo/app", "0f6bd16c-4a8e-4bd0-9b4e-1c0f2bb43d65" }
			assert.equal(1, code)
			assert.matches("layerup: BLOB_UPLOAD_UNKNOWN: ", err, 1, true)
		end)

		it("finishes an upload, checking digest and size", function()
			local uuid = open_upload(root, "demo/app", data)
			local code, _, err = H.run { "finish", root, "demo/app", uuid, sha256("other") }
			assert.equal(1, code)
			assert.matches("layerup: DIGEST_INVALID: ", err, 1, true)
			code, _, err = H.run { "finish", root, "demo/app", uuid, sha256(data), "--size", "4999" }
			assert.equal(1, code)
			assert.matches("layerup: SIZE_INVALID: ", err, 1, true)
			assert.equal(2, (H.run { "finish", root, "demo/app", uuid, "sha256" }))
			assert.equal(2, (H.run { "finish", root, "demo/app", uuid, sha256(data), "--size", "x" }))
			-- the failed attempts left the upload in place
			local out
			code, out = H.run { "finish", root, "demo/app", uuid, sha256(data), "--size", "5000", "--json" }
			assert.equal(0, code)
			local r = cjson.decode(out)
			assert.same({ sha256(data), 5000 }, { r.digest, r.size })
			assert.equal(data, H.read(r.path))
		end)

		it("cancels an upload", function()
			local uuid = open_upload(root, "demo/app", "abc")
			local code, out = H.run { "cancel", root, "demo/app", uuid, "--json" }
			assert.equal(0, code)
			assert.same({ repo = "demo/app", uuid = uuid, cancelled = true }, cjson.decode(out))
			assert.is_nil(H.read(root .. V2 .. "/repositories/demo/app/_uploads/" .. uuid .. "/data"))
			assert.equal(1, (H.run { "cancel", root, "demo/app", uuid }))
		end)
	end)

	describe("purge", function()
		local function backdate(repo, uuid)
			H.write(("%s%s/repositories/%s/_uploads/%s/startedat"):format(root, V2, repo, uuid),
				"2020-01-01T00:00:00Z")
		end

		it("removes uploads older than the cut-off, listing them first on --dry-run", function()
			local old = open_upload(root, "demo/app", "old")
			local new = open_upload(root, "demo/app", "new")
			backdate("demo/app", old)
			local code, out = H.run { "purge", root, "--older-than", "7d", "--dry-run", "--json" }
			assert.equal(0, code)
			local r = cjson.decode(out)
			assert.is_true(r.dry_run)
			assert.equal(1, #r.uploads)
			assert.equal(old, r.uploads[1].uuid)
			code, out = H.run { "uploads", root, "--json" }
			assert.equal(2, #cjson.decode(out))
			code, out = H.run { "purge", root, "--older-than", "36h" }
			assert.equal(0, code)
			assert.matches("removed demo/app " .. old, out, 1, true)
			code, out = H.run { "uploads", root, "--json" }
			local left = cjson.decode(out)
			assert.equal(1, #left)
			assert.equal(new, left[1].uuid)
		end)

		it("encodes an empty result as an empty JSON list", function()
			local code, out = H.run { "purge", root, "--older-than", "90s", "--json" }
			assert.equal(0, code)
			assert.equal('{"dry_run":false,"kept":[],"temporaries":[],"uploads":[]}', out:gsub("%s", ""))
		end)

		it("rejects bad or missing durations", function()
			for _, bad in ipairs { "7x", "", "d", "-1d", "soon", "1h30", "9007199254740992" } do
				local code, _, err = H.run { "purge", root, "--older-than=" .. bad }
				assert.equal(2, code, bad)
				assert.matches("^layerup: USAGE: ", err)
			end
			local code, _, err = H.run { "purge", root }
			assert.equal(2, code)
			assert.matches("needs --older-than", err, 1, true)
		end)
	end)

	describe("stat and cat", function()
		before_each(function()
			assert.equal(0, (H.run { "push", root, "demo/app", file }))
		end)

		it("stats a blob, in the store and in a repository", function()
			local code, out = H.run { "stat", root, sha256(data), "--json" }
			assert.equal(0, code)
			local r = cjson.decode(out)
			assert.same({ sha256(data), #data, blob_file(root, sha256(data)) }, { r.digest, r.size, r.path })
			assert.equal(0, (H.run { "stat", root, "demo/app", sha256(data) }))
			local err
			code, _, err = H.run { "stat", root, "other/repo", sha256(data) }
			assert.equal(1, code)
			assert.matches("layerup: BLOB_UNKNOWN: ", err, 1, true)
			code, _, err = H.run { "stat", root, sha256("nope") }
			assert.equal(1, code)
			assert.matches("layerup: BLOB_UNKNOWN: ", err, 1, true)
			code, _, err = H.run { "stat", root, "md5:abc" }
			assert.equal(2, code)  -- a malformed digest is a usage error everywhere
			code, _, err = H.run { "stat", root, "not a digest" }
			assert.equal(2, code)
			assert.matches("layerup: DIGEST_INVALID: ", err, 1, true)
		end)

		it("streams a blob to stdout", function()
			local code, out = H.run { "cat", root, "demo/app", sha256(data) }
			assert.equal(0, code)
			assert.equal(data, out)
			assert.equal(1, (H.run { "cat", root, "other/repo", sha256(data) }))
			assert.equal(2, (H.run { "cat", root, "../x", sha256(data) }))
		end)
	end)

	describe("verify", function()
		it("passes on a healthy store", function()
			assert.equal(0, (H.run { "push", root, "demo/app", file }))
			open_upload(root, "demo/app", "in progress")
			local code, out = H.run { "verify", root, "--json" }
			assert.equal(0, code)
			local r = cjson.decode(out)
			assert.same({ true, 1, 1, 1, 0 }, { r.ok, r.blobs, r.links, r.uploads, #r.problems })
		end)

		it("fails on a directory that is not a store (exit 1)", function()
			local code, out, err = H.run { "verify", root }
			assert.equal(1, code)
			assert.equal("", out)
			assert.matches("layerup: PATH_NOT_FOUND: not a store", err, 1, true)
			code, out = H.run { "verify", root, "--json" }
			assert.equal(1, code)
			assert.equal("PATH_NOT_FOUND", cjson.decode(out).error.code)
		end)

		it("passes on an empty store", function()
			H.write(root .. V2 .. "/repositories/.keep", "")
			local code, out = H.run { "verify", root }
			assert.equal(0, code)
			assert.matches("0 blobs, 0 links, 0 manifests, 0 uploads checked: ok", out, 1, true)
		end)

		it("finds corrupt blobs, dangling links and orphan uploads (exit 3)", function()
			assert.equal(0, (H.run { "push", root, "demo/app", file }))
			local other = H.bytes(100, 5)
			local other_file = root .. "/other.bin"
			H.write(other_file, other)
			assert.equal(0, (H.run { "push", root, "demo/two", other_file }))
			-- corrupt the first blob, delete the second (its link dangles)
			H.write(blob_file(root, sha256(data)), "garbage")
			H.rm(blob_file(root, sha256(other)):match("^(.*)/data$"))
			-- an upload directory holding only a hash state
			H.write(root .. V2 .. "/repositories/demo/app/_uploads/" ..
				"0f6bd16c-4a8e-4bd0-9b4e-1c0f2bb43d65/hashstates/sha256/100", ("\0"):rep(108))
			local code, out = H.run { "verify", root, "--json" }
			assert.equal(3, code)
			local r = cjson.decode(out)
			assert.is_false(r.ok)
			local kinds = {}
			for _, p in ipairs(r.problems) do kinds[#kinds + 1] = p.kind end
			table.sort(kinds)
			assert.same({ "blob.corrupt", "link.dangling", "upload.orphan" }, kinds)
			code, out = H.run { "verify", root }
			assert.equal(3, code)
			assert.matches("DAMAGE blob.corrupt ", out, 1, true)
			assert.matches("3 problem(s)", out, 1, true)
		end)
	end)

	describe("as a program", function()
		it("exits with the documented codes", function()
			assert.equal(0, (H.exec { "--help" }))
			assert.equal(2, (H.exec { "push", root, "demo/app", file, "--bogus" }))
			assert.equal(2, (H.exec { "purge", root, "--older-than", "7x" }))
			assert.equal(1, (H.exec { "uploads", root .. "/missing" }))
			local code, out = H.exec { "push", root, "demo/app", file }
			assert.equal(0, code)
			assert.matches(sha256(data), out, 1, true)
			H.write(blob_file(root, sha256(data)), "garbage")
			assert.equal(3, (H.exec { "verify", root }))
		end)

		it("reads LAYERUP_ROOT from the environment", function()
			local code, out = H.exec({ "push", "demo/app", file, "--json" },
				"LAYERUP_ROOT=" .. H.quote(root))
			assert.equal(0, code)
			assert.equal(data, H.read(cjson.decode(out).path))
		end)

		it("keeps the upload on Ctrl-C, exits 130 and prints the resume command", function()
			local code, big = H.interrupted_push(root, file, "INT")
			assert.equal(130, code)
			local err = H.read(root .. "/err")
			assert.matches("layerup: INTERRUPTED: upload ", err, 1, true)
			-- the hint names the command as it was invoked (bin/layerup)
			local cmd = err:match("to resume: (bin/layerup resume [^\n]+)")
			assert.truthy(cmd, err)
			local uuid = cmd:match("demo/app (%x+%-[%x-]+) ")
			assert.truthy(cli.valid_uuid(uuid), cmd)
			-- the upload is there, closed at a chunk boundary, and resumes
			local _, listed = H.run { "uploads", root, "--json" }
			local list = cjson.decode(listed)
			assert.equal(1, #list)
			assert.equal(uuid, list[1].uuid)
			assert.is_true(list[1].size > 0 and list[1].size < #big)
			local rc, out, rerr = H.run { "resume", root, "demo/app", uuid, file }
			assert.equal(0, rc, rerr)
			assert.matches("digest: " .. sha256(big), out, 1, true)
		end)
	end)
end)
