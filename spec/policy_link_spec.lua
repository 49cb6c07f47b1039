-- Unit specs for layerup.link (no core needed).

local link = require "layerup.link"

local S256 = "sha256:" .. ("ab"):rep(32)
local S512 = "sha512:" .. ("cd"):rep(64)

local function ctx(repo, requested)
	return { repo = repo, uuid = "u", canonical = S256, requested = requested or S256, size = 3 }
end

describe("layerup.link.default", function()
	it("links the canonical digest into the repository", function()
		assert.are.same({ { repo = "a/b", digest = S256 } }, link.default(ctx("a/b")))
	end)

	it("adds the requested digest as an alias when it differs", function()
		assert.are.same({
			{ repo = "a/b", digest = S256 },
			{ repo = "a/b", digest = S512 },
		}, link.default(ctx("a/b", S512)))
	end)

	it("treats a missing requested digest as canonical", function()
		local c = ctx("a/b")
		c.requested = nil
		assert.are.same({ { repo = "a/b", digest = S256 } }, link.default(c))
	end)
end)

describe("layerup.link.mirror", function()
	it("links every blob into a second repository too", function()
		local rule = link.mirror("cache/all")
		assert.are.same({
			{ repo = "a/b", digest = S256 },
			{ repo = "a/b", digest = S512 },
			{ repo = "cache/all", digest = S256 },
			{ repo = "cache/all", digest = S512 },
		}, rule(ctx("a/b", S512)))
	end)

	it("does not duplicate links when pushing to the mirror itself", function()
		assert.are.same({ { repo = "cache/all", digest = S256 } }, link.mirror("cache/all")(ctx("cache/all")))
	end)

	it("passes a refusal of its base rule through", function()
		local rule = link.mirror("cache/all", link.read_only "ro")
		local links, err = rule(ctx("ro/x"))
		assert.is_nil(links)
		assert.are.equal("DENIED", err.code)
	end)
end)

describe("layerup.link.read_only", function()
	it("refuses links into the namespace with DENIED", function()
		local rule = link.read_only { "mirror", "release/" }
		for _, repo in ipairs { "mirror", "mirror/x", "release/v1/app" } do
			local links, err = rule(ctx(repo))
			assert.is_nil(links, repo)
			assert.are.equal("DENIED", err.code)
			assert.matches(repo, err.message, 1, true)
			assert.matches("^DENIED: ", tostring(err))
		end
	end)

	it("allows names that only share a prefix", function()
		local rule = link.read_only "mirror"
		assert.are.same({ { repo = "mirrors/x", digest = S256 } }, rule(ctx("mirrors/x")))
		assert.are.same({ { repo = "a/mirror", digest = S256 } }, rule(ctx("a/mirror")))
	end)

	it("checks the links of its base rule, e.g. a mirror target", function()
		local rule = link.read_only("frozen", link.mirror("frozen/cache"))
		local links, err = rule(ctx("a/b"))
		assert.is_nil(links)
		assert.matches("frozen/cache", err.message, 1, true)
	end)
end)
