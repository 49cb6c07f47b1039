-- spec/units_spec.lua - layerup.units: one set of rules for sizes and
-- durations, shared by the command line and layerup.limits (issue 8,
-- defect 12).

local units = require "layerup.units"
local limits = require "layerup.limits"

describe("layerup.units", function()
	it("reads sizes: decimal and binary units, single letters, any case, fractions", function()
		local cases = {
			["0"] = 0, ["512"] = 512, ["512B"] = 512, ["512b"] = 512,
			["1kB"] = 1000, ["1KB"] = 1000, ["2MB"] = 2000000, ["3GB"] = 3e9, ["1TB"] = 1e12, ["1PB"] = 1e15,
			["1KiB"] = 1024, ["4MiB"] = 4194304, ["4mib"] = 4194304, ["1GiB"] = 1073741824,
			["1TiB"] = 1099511627776, ["1PiB"] = 1125899906842624,
			["1K"] = 1024, ["8M"] = 8388608, ["2g"] = 2147483648, ["1T"] = 1099511627776,
			["1.5KiB"] = 1536, ["1.5MiB"] = 1572864, ["0.5kB"] = 500, ["4 MiB"] = 4194304, [" 7 "] = 7,
			["7P"] = 7881299347898368,
		}
		for s, n in pairs(cases) do
			assert.are.equal(n, units.size(s), s)
			assert.are.equal(n, limits.parse_size(s), s) -- the same rules in the library
			if math.type then assert.are.equal("integer", math.type(units.size(s)), s) end
		end
	end)

	it("refuses sizes past 2^53 instead of wrapping them (16777216T became 0)", function()
		for _, s in ipairs { "16777216T", "16777217T", "8P", "8192P", "922337203685477580K", "9223372036854775807", "9007199254740992",
			"99999999999999999999", "18446744073709551616", "1e3", "0x10", "inf", "nan", "-1",
			"-0", "+5", "", "MiB", "4XB", "1.5.5", "0.3B", "1.5", "4MiBs", "4 M i B" } do
			local n, msg = units.size(s)
			assert.is_nil(n, s)
			assert.is_string(msg, s)
			local n2, err = limits.parse_size(s)
			assert.is_nil(n2, s)
			assert.are.equal("INVALID_ARGUMENT", err.code, s)
		end
		assert.are.equal(9007199254740991, units.size("9007199254740991"))
		assert.matches("too large", select(2, units.size("16777216T")), 1, true)
	end)

	it("takes Lua numbers in range only", function()
		assert.are.equal(77, units.size(77))
		for _, v in ipairs { -1, 1.5, 0 / 0, math.huge, -math.huge, 2 ^ 53, 2 ^ 64 } do
			assert.is_nil((units.size(v)), tostring(v))
		end
		assert.is_nil((units.size {}))
		assert.are.equal(12, units.duration(12))
		assert.are.equal(0.5, units.duration(0.5))
		for _, v in ipairs { -1, 0 / 0, math.huge, 2 ^ 53 } do
			assert.is_nil((units.duration(v)), tostring(v))
		end
	end)

	it("reads durations: s m h d w, sums, bare seconds, fractions, any case", function()
		local cases = {
			["90"] = 90, ["30s"] = 30, ["15m"] = 900, ["36h"] = 129600, ["7d"] = 604800,
			["2w"] = 1209600, ["1h30m"] = 5400, ["1d12h"] = 129600, ["1.5h"] = 5400,
			[" 5m "] = 300, ["1H"] = 3600, ["0s"] = 0, ["0.5s"] = 0.5,
		}
		for s, n in pairs(cases) do
			assert.are.equal(n, units.duration(s), s)
			assert.are.equal(n, limits.parse_duration(s), s)
		end
	end)

	it("refuses malformed and out-of-range durations", function()
		for _, s in ipairs { "", "h", "-5s", "5y", "5 h", "10ms", "1h30", "abc", "5hh", "1h-2m",
			"9007199254740992", "9007199254740992s", "999999999999999w", "nan", "inf", "1e3s" } do
			assert.is_nil((units.duration(s)), s)
			assert.is_nil((limits.parse_duration(s)), s)
		end
	end)
end)
