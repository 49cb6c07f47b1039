-- Loaded by spec/run (busted --helper) when the specs run under LuaJIT:
-- the few Lua 5.4 library functions the specs themselves use (never the
-- runtime modules: spec/compat_spec.lua checks that lua/layerup/ needs
-- none of them).  Numbers are doubles on LuaJIT: integral values count as
-- integers; 64-bit fields are exact up to 2^53.
if not rawget(_G, "jit") then
	return
end

local floor = math.floor

math.type = math.type or function(x)
	if type(x) ~= "number" then return nil end
	if x == floor(x) and x > -2 ^ 63 and x < 2 ^ 63 then return "integer" end
	return "float"
end

-- The largest double below 2^63 (and its negative): what the engine's
-- range checks see as "a huge integer" on LuaJIT.
math.maxinteger = math.maxinteger or 9223372036854774784
math.mininteger = math.mininteger or -9223372036854775808

math.tointeger = math.tointeger or function(x)
	if math.type(x) == "integer" then return x end
	return nil
end

table.pack = table.pack or function(...)
	return { n = select("#", ...), ... }
end
table.unpack = table.unpack or unpack -- luacheck: ignore

-- string.pack / string.unpack for "<" or ">" followed by i<n> / I<n> items.
local function items(fmt)
	local little = true
	local list = {}
	for c, n in fmt:gmatch("([<>iI])(%d*)") do
		if c == "<" then little = true
		elseif c == ">" then little = false
		else list[#list + 1] = { signed = c == "i", n = tonumber(n) or 4 } end
	end
	return little, list
end

string.pack = string.pack or function(fmt, ...)
	local little, list = items(fmt)
	local out = {}
	for k, it in ipairs(list) do
		local v = select(k, ...)
		if v < 0 then v = v + 2 ^ (8 * it.n) end
		local bytes = {}
		for i = 1, it.n do
			bytes[i] = v % 256
			v = floor(v / 256)
		end
		if not little then
			for i = 1, floor(it.n / 2) do
				bytes[i], bytes[it.n + 1 - i] = bytes[it.n + 1 - i], bytes[i]
			end
		end
		out[#out + 1] = string.char(unpack(bytes))
	end
	return table.concat(out)
end

string.unpack = string.unpack or function(fmt, s, pos)
	local little, list = items(fmt)
	pos = pos or 1
	local res = {}
	for _, it in ipairs(list) do
		local v = 0
		for i = 1, it.n do
			local b = little and s:byte(pos + it.n - i) or s:byte(pos + i - 1)
			v = v * 256 + b
		end
		if it.signed and v >= 2 ^ (8 * it.n - 1) then v = v - 2 ^ (8 * it.n) end
		res[#res + 1] = v
		pos = pos + it.n
	end
	res[#res + 1] = pos
	return unpack(res)
end
