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

	it("load under luajit with the LuaJIT build of the engine", function()
		if not has_luajit() then
			pending("luajit not installed (Debian: luajit2)")
			return
		end
		if os.getenv("SANITIZE") == "1" then
			pending("not under the sanitizers (luajit is not instrumented)")
			return
		end
		local names = {}
		for _, path in ipairs(modules) do
			local name = path:match("/lua/(layerup/.-)%.lua$"):gsub("/init$", ""):gsub("/", ".")
			names[#names + 1] = ("%q"):format(name)
		end
		local build = os.getenv("BUILD") or (root .. "/build")
		local script = ("for _, m in ipairs { %s } do local ok, err = pcall(require, m); "
			.. "if not ok then io.stderr:write(m, ': ', tostring(err), '\\n'); os.exit(1) end end")
			:format(table.concat(names, ", "))
		local env = ("LUA_PATH='%s/lua/?.lua;%s/lua/?/init.lua;;' LUA_CPATH='%s/luajit/?.so;;' ")
			:format(root, root, build)
		local ok, out = sh(env .. "luajit -e '" .. script:gsub("'", "'\\''") .. "'")
		assert(ok, out)
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
