-- Which Lua VM runs the specs, and the few things that differ.  The unit
-- suites run under lua5.4 and under luajit (spec/run); spec files keep to
-- the Lua 5.1 syntax plus goto so that both can load them.
local vm = {}

vm.luajit = rawget(_G, "jit") ~= nil
vm.name = vm.luajit and "luajit" or "lua5.4"

-- with_close(value, fn): fn(value) with value bound to a to-be-closed
-- variable on Lua 5.4 (the syntax is compiled at run time so that LuaJIT
-- can load this file).  LuaJIT has no `<close>`: there the value's
-- __close metamethod is called explicitly after fn, which is what code
-- shared by both VMs does (an explicit close) - so the metamethod is still
-- exercised.
local with_close54
if not vm.luajit then
	with_close54 = assert(load([[
		local value, fn = ...
		do
			local v <close> = value
			fn(v)
		end
	]], "=with_close"))
end

function vm.with_close(value, fn)
	if with_close54 then
		return with_close54(value, fn)
	end
	local ok, err = pcall(fn, value)
	local mt = getmetatable(value)
	local close = type(mt) == "table" and mt.__close
	assert(close, "value has no __close metamethod")
	close(value, not ok and err or nil)
	if not ok then
		error(err, 0)
	end
end

-- Skip the running test on LuaJIT, with a reason (busted reports SKIP).
function vm.only54(reason)
	if vm.luajit then
		-- busted's `pending` lives in the spec's environment (5.1 fenv).
		local env = getfenv and getfenv(2) or _G
		local pend = env.pending or rawget(_G, "pending")
		pend("Lua 5.4 only: " .. reason)
		return true
	end
	return false
end

return vm
