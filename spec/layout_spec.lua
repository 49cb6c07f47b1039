-- spec/layout_spec.lua - layerup.layout: the core's layout paths, so that
-- Lua tools never build a registry path by hand.

local layerup = require "layerup"
local H = require "helpers.cli"
local util = require "helpers.util"

local layout = layerup.layout
local UUID = "0f6bd16c-4a8e-4bd0-9b4e-1c0f2bb43d65"

describe("layerup.layout", function()
	it("names the places the store writes", function()
		local root = H.tmpdir()
		local store = assert(layerup.open(root))
		local up = assert(store:start("demo/app"))
		assert(up:write("hello"))
		assert(up:close())
		up = assert(store:resume("demo/app", up.uuid))
		assert.truthy(H.read(root .. layout.upload_file("demo/app", up.uuid, "data")))
		assert.truthy(H.read(root .. layout.upload_file("demo/app", up.uuid, "startedat")))
		assert.truthy(H.read(root .. layout.hashstate("demo/app", up.uuid, 5)))
		assert.equal(0, H.sh("test -d " .. H.quote(root .. layout.upload_dir("demo/app", up.uuid))))
		assert.equal(0, H.sh("test -d " .. H.quote(root .. layout.hashstate_dir("demo/app", up.uuid))))
		local d = util.digest("hello")
		assert(up:finish(d))
		store:close()
		assert.equal("hello", H.read(root .. layout.blob_data(d)))
		assert.equal(d, H.read(root .. layout.link("demo/app", d)))
		assert.equal(0, H.sh("test -d " .. H.quote(root .. layout.repo_dir("demo/app"))))
		assert.equal(layout.root .. "/repositories", layout.repositories)
		assert.equal(layout.root .. "/blobs", layout.blobs)
		assert.equal("/docker/registry/v2", layout.root)
		H.rm(root)
	end)

	it("answers a name outside its grammar with nil, err", function()
		local sha = "sha256:" .. ("a"):rep(64)
		for _, c in ipairs {
			{ "NAME_INVALID", layout.repo_dir, "../x" },
			{ "NAME_INVALID", layout.upload_dir, "Demo", UUID },
			{ "NAME_INVALID", layout.link, "a//b", sha },
			{ "NAME_INVALID", layout.repo_dir, "a\0b" },
			{ "BLOB_UPLOAD_UNKNOWN", layout.upload_dir, "demo", "../../etc" },
			{ "BLOB_UPLOAD_UNKNOWN", layout.hashstate, "demo", UUID:upper(), 0 },
			{ "DIGEST_INVALID", layout.blob_data, "sha256:" .. ("A"):rep(64) },
			{ "DIGEST_INVALID", layout.blob_data, "md5:" .. ("a"):rep(32) },
			{ "DIGEST_INVALID", layout.link, "demo", "sha256:abc" },
		} do
			local v, err = c[2](table.unpack(c, 3))
			assert.is_nil(v, c[1])
			assert.equal(c[1], err.code)
		end
		assert.is_true(layout.valid_digest(sha))
		assert.is_true(layout.valid_digest("sha512:" .. ("0"):rep(128)))
		for _, bad in ipairs { "sha256:" .. ("a"):rep(63), "sha256", "", "sha256:" .. ("a"):rep(64) .. "\0" } do
			assert.is_false(layout.valid_digest(bad), bad)
		end
		assert.is_false(layout.valid_digest(42))
	end)

	it("raises for misuse: a leaf with a slash, a negative offset, no argument", function()
		assert.has_error(function() layout.upload_file("demo", UUID, "../data") end)
		assert.has_error(function() layout.upload_file("demo", UUID, "..") end)
		assert.has_error(function() layout.upload_file("demo", UUID, "") end)
		assert.has_error(function() layout.hashstate("demo", UUID, -1) end)
		assert.has_error(function() layout.hashstate("demo", UUID, 1.5) end)
		assert.has_error(function() layout.repo_dir() end)
	end)

end)
