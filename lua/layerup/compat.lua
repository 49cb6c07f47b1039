-- layerup.compat - what the runtime modules need from Lua 5.4 that LuaJIT
-- (Lua 5.1 API, nginx's VM) lacks: integer tests, table.pack/unpack.
-- Runtime modules use only the 5.1 syntax plus goto, so one file runs on
-- both VMs; this module papers over the library differences.
local M = {}

local floor, huge = math.floor, math.huge
local MAXEXACT = 2 ^ 53 -- doubles count exactly up to here

-- math.tointeger: the integer value of n, or nil.  On LuaJIT every number
-- is a double: integral values within +-2^53 count as integers.
if math.tointeger then
	M.tointeger = function(n)
		if type(n) ~= "number" then return nil end
		return math.tointeger(n)
	end
else
	M.tointeger = function(n)
		if type(n) ~= "number" or n ~= n or n == huge or n == -huge then
			return nil
		end
		if n ~= floor(n) or n > MAXEXACT or n < -MAXEXACT then
			return nil
		end
		return n
	end
end

-- math.type: "integer", "float" or nil.  LuaJIT: integral values in the
-- exact range are "integer", the rest "float".
if math.type then
	M.mtype = math.type
else
	M.mtype = function(n)
		if type(n) ~= "number" then return nil end
		return M.tointeger(n) and "integer" or "float"
	end
end

M.unpack = table.unpack or unpack -- luacheck: ignore unpack
M.pack = table.pack or function(...)
	return { n = select("#", ...), ... }
end

-- Whether `<close>` works (5.4); on LuaJIT callers close explicitly.
M.has_close = _VERSION == "Lua 5.4" and not rawget(_G, "jit")

-- The VM: "lua5.4" or "luajit".
M.vm = rawget(_G, "jit") and "luajit" or "lua5.4"

return M
