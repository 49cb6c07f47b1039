-- Unit specs for layerup.admit and layerup.limits (no core needed).

local admit = require "layerup.admit"
local limits = require "layerup.limits"

describe("layerup.admit.allow / deny", function()
	it("matches exact names", function()
		local rule = admit.allow { "a/b", "c" }
		assert.is_true(rule { repo = "a/b" })
		assert.is_true(rule { repo = "c" })
		local ok, reason = rule { repo = "a/bc" }
		assert.is_false(ok)
		assert.matches("a/bc", reason, 1, true)
	end)

	it("treats '.' and '-' in plain names literally", function()
		local rule = admit.allow "my-app.v1"
		assert.is_true(rule { repo = "my-app.v1" })
		assert.is_false(rule { repo = "my-appxv1" })
	end)

	it("matches globs: * within a component, ** across", function()
		local one = admit.allow "library/*"
		assert.is_true(one { repo = "library/ubuntu" })
		assert.is_false(one { repo = "library/a/b" })
		assert.is_false(one { repo = "library" })
		assert.is_false(one { repo = "xlibrary/ubuntu" })
		local deep = admit.allow "ci/**"
		assert.is_true(deep { repo = "ci/a/b/c" })
		assert.is_false(deep { repo = "cix/a" })
	end)

	it("matches Lua patterns", function()
		local rule = admit.allow "^team%-[a-z]+/"
		assert.is_true(rule { repo = "team-web/app" })
		assert.is_false(rule { repo = "team-42/app" })
	end)

	it("denies matching repositories and names the pattern", function()
		local rule = admit.deny { "tmp/*", "^scratch" }
		local ok, reason = rule { repo = "tmp/x" }
		assert.is_false(ok)
		assert.matches("tmp/*", reason, 1, true)
		assert.is_false((rule { repo = "scratchpad" }))
		assert.is_true(rule { repo = "prod/x" })
	end)

	it("raises on bad patterns at construction", function()
		assert.has_error(function() admit.allow "" end)
		assert.has_error(function() admit.allow { 42 } end)
		assert.has_error(function() admit.allow "^broken[" end)
		assert.has_error(function() admit.allow "^a(b" end)
		assert.has_error(function() admit.deny "^a)" end)
		assert.has_error(function() admit.deny "^a%" end)
		assert.has_no_error(function() admit.deny "^a[]%]]+$" end)
	end)
end)

describe("layerup.admit.limit_per_repo", function()
	local function fake_store(counts)
		return {
			uploads = function(_, repo)
				local list = {}
				for i = 1, counts[repo] or 0 do
					list[i] = { repo = repo, uuid = tostring(i) }
				end
				return list
			end,
		}
	end

	it("refuses once n uploads are in progress in that repository", function()
		local rule = admit.limit_per_repo(fake_store { ["a/b"] = 2, ["c"] = 1 }, 2)
		local ok, reason = rule { repo = "a/b" }
		assert.is_false(ok)
		assert.matches("limit 2", reason, 1, true)
		assert.is_true(rule { repo = "c" })
		assert.is_true(rule { repo = "d" })
	end)

	it("accepts a function returning the store (built before open)", function()
		local store
		local rule = admit.limit_per_repo(function() return store end, 1)
		store = fake_store { x = 1 }
		assert.is_false((rule { repo = "x" }))
		assert.is_true(rule { repo = "y" })
	end)

	it("refuses when the store cannot count", function()
		local broken = { uploads = function() return nil, "IO: gone" end }
		local ok, reason = admit.limit_per_repo(broken, 5) { repo = "x" }
		assert.is_false(ok)
		assert.matches("IO: gone", reason, 1, true)
	end)
end)

describe("layerup.admit.all / any", function()
	it("all admits only when every rule does, with the first reason", function()
		local rule = admit.all(admit.allow "library/*", admit.deny "library/secret")
		assert.is_true(rule { repo = "library/ubuntu" })
		local ok, reason = rule { repo = "library/secret" }
		assert.is_false(ok)
		assert.matches("denied", reason)
		local ok2, reason2 = rule { repo = "other/x" }
		assert.is_false(ok2)
		assert.matches("allowed list", reason2)
	end)

	it("any admits when one rule does", function()
		local rule = admit.any(admit.allow "a", admit.allow "b")
		assert.is_true(rule { repo = "b" })
		local ok, reason = rule { repo = "c" }
		assert.is_false(ok)
		assert.matches(";", reason, 1, true)
	end)
end)

describe("layerup.limits.parse_size", function()
	it("parses plain and unit sizes", function()
		local cases = {
			["0"] = 0, ["512"] = 512, ["512B"] = 512, ["1KB"] = 1000, ["1KiB"] = 1024,
			["4MiB"] = 4194304, ["4 MiB"] = 4194304, ["2MB"] = 2000000, ["1GiB"] = 1073741824,
			["3GB"] = 3000000000, ["1.5KiB"] = 1536, ["1.5GiB"] = 1610612736, ["2mib"] = 2097152,
			["1TiB"] = 1099511627776,
		}
		for s, n in pairs(cases) do
			local got = limits.parse_size(s)
			assert.are.equal(n, got, s)
			assert.are.equal("integer", math.type(got), s)
		end
		assert.are.equal(77, limits.parse_size(77))
	end)

	it("rejects junk with nil, err", function()
		for _, s in ipairs { "", "MiB", "-1", "4XB", "4 M i B", "1.5.5", "0.3B", "abc", "4MiBs", "1e3", "99999999TiB" } do
			local n, err = limits.parse_size(s)
			assert.is_nil(n, s)
			assert.are.equal("INVALID_ARGUMENT", err.code, s)
			assert.is_string(err.message)
		end
		assert.is_nil((limits.parse_size(-5)))
		assert.is_nil((limits.parse_size(1.5)))
		assert.is_nil((limits.parse_size {}))
	end)
end)

describe("layerup.limits.parse_duration", function()
	it("parses seconds, minutes, hours, days, weeks and compounds", function()
		local cases = {
			["90"] = 90, ["30s"] = 30, ["15m"] = 900, ["36h"] = 129600, ["7d"] = 604800,
			["2w"] = 1209600, ["1h30m"] = 5400, ["1d12h"] = 129600, ["1.5h"] = 5400, [" 5m "] = 300,
		}
		for s, n in pairs(cases) do
			assert.are.equal(n, limits.parse_duration(s), s)
		end
		assert.are.equal(0.5, limits.parse_duration("0.5s"))
		assert.are.equal(12, limits.parse_duration(12))
	end)

	it("rejects junk with nil, err", function()
		for _, s in ipairs { "", "h", "-5s", "5y", "5 h", "10ms", "1h30", "abc", "5hh", "1h-2m" } do
			local n, err = limits.parse_duration(s)
			assert.is_nil(n, s)
			assert.are.equal("INVALID_ARGUMENT", err.code, s)
		end
		assert.is_nil((limits.parse_duration(-1)))
		assert.is_nil((limits.parse_duration(0 / 0)))
	end)
end)

describe("layerup.limits opts helpers", function()
	it("builds layerup.open option fields", function()
		assert.are.same({ max_size = 4096 }, limits.max_size "4KiB")
		assert.are.same({ max_age = 86400 }, limits.max_age "1d")
		assert.are.same({ max_size = 10, max_age = 60 }, limits.opts { max_size = 10, max_age = "1m" })
		assert.are.same({ max_age = 2 }, limits.max_age "1.5s") -- the core wants whole seconds
		assert.are.equal("integer", math.type(limits.opts({ max_age = 0.2 }).max_age))
		local into = { fsync = true }
		assert.are.equal(into, limits.opts({ max_age = "2h" }, into))
		assert.are.same({ fsync = true, max_age = 7200 }, into)
	end)

	it("reports bad values", function()
		local o, err = limits.opts { max_size = "lots" }
		assert.is_nil(o)
		assert.matches("lots", err.message, 1, true)
		assert.has_error(function() limits.max_age "soon" end)
	end)

	it("formats sizes for humans", function()
		assert.are.equal("3B", limits.format_size(3))
		assert.are.equal("1.5KiB", limits.format_size(1536))
		assert.are.equal("4MiB", limits.format_size(4194304))
	end)
end)
