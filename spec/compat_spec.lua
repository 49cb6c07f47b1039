-- spec/compat_spec.lua - every runtime Lua module loads on LuaJIT (nginx's
-- VM) as well as Lua 5.4: 5.1 syntax plus goto, and none of the 5.4-only
-- library functions without layerup.compat.  The CLI (lua/layerup/cli.lua)
-- runs on lua5.4 only and is exempt.

local compat = require "layerup.compat"

local root = os.getenv("PWD") or "."
local function sh(cmd)
	local p = assert(io.popen(cmd .. " 2>&1"))
	local out = p:read("*a")
	local ok, _, code = p:close()
	return ok == true or ok == 0 or code == 0, out
end

local function runtime_modules()
	local _, out = sh("find " .. root .. "/lua/layerup -name '*.lua' | sort")
	local list = {}
	for path in out:gmatch("[^\n]+") do
		if not path:find("/cli%.lua$") then
			list[#list + 1] = path
		end
	end
	return list
end

local function has_luajit()
	return (sh("command -v luajit >/dev/null"))
end

local forbidden = {
	"math%.tointeger", "math%.type", "math%.maxinteger", "math%.mininteger",
	"table%.pack", "table%.unpack", "string%.pack", "string%.unpack",
	"utf8%.", "coroutine%.close",
}

describe("runtime Lua modules", function()
	local modules = runtime_modules()

	it("exist", function()
		assert.is_true(#modules >= 10)
	end)

	it("compile under luajit", function()
		if not has_luajit() then
			pending("luajit not installed (Debian: luajit2)")
			return
		end
		for _, path in ipairs(modules) do
			local ok, out = sh("luajit -bl '" .. path .. "' >/dev/null")
			assert(ok, path .. ": " .. out)
		end
	end)

	it("call no 5.4-only library function except through layerup.compat", function()
		for _, path in ipairs(modules) do
			if not path:find("/compat%.lua$") then
				local f = assert(io.open(path))
				local n = 0
				for line in f:lines() do
					n = n + 1
					local code = line:gsub("%-%-.*$", "")
					for _, pat in ipairs(forbidden) do
						assert(not code:find(pat), ("%s:%d uses %s"):format(path, n, pat))
					end
				end
				f:close()
			end
		end
	end)
end)

describe("layerup.compat", function()
	it("tells integers from other numbers on both VMs", function()
		assert.equal(3, compat.tointeger(3))
		assert.equal(3, compat.tointeger(3.0))
		assert.is_nil(compat.tointeger(3.5))
		assert.is_nil(compat.tointeger("3"))
		assert.is_nil(compat.tointeger(0 / 0))
		assert.is_nil(compat.tointeger(math.huge))
		assert.equal("integer", compat.mtype(7))
		assert.equal("float", compat.mtype(7.5))
		assert.is_nil(compat.mtype("7"))
	end)

	it("packs and unpacks with nils", function()
		local t = compat.pack(1, nil, 3)
		assert.equal(3, t.n)
		local a, b, c = compat.unpack(t, 1, t.n)
		assert.equal(1, a)
		assert.is_nil(b)
		assert.equal(3, c)
	end)

	it("names the VM", function()
		assert.equal(rawget(_G, "jit") and "luajit" or "lua5.4", compat.vm)
		assert.equal(not rawget(_G, "jit"), compat.has_close)
	end)
end)
