-- layerup.middleware.trace: log every driver op.
--   local d2 = trace(d, log_fn [, {clock = fn, raw = bool}])
-- log_fn receives ("driver.op", {op=, path=, [to=,] bytes=, code=,
-- duration_ms=}): code is "OK" or the error code; bytes is the payload size
-- for get_content, put_content, reader.read and writer.write, and the
-- resulting size for writer.size.  duration_ms uses opts.clock (seconds;
-- default os.clock, i.e. CPU time, the only clock plain Lua has).

local mw = require "layerup.middleware"

local pack = table.pack or function(...) -- LuaJIT has neither
	return { n = select("#", ...), ... }
end
local unpack = table.unpack or unpack

local function bytes_of(op, args, r)
	if r[1] == nil then
		return nil
	end
	if op == "put_content" then
		return #(args[2] or "")
	elseif op == "writer.write" then
		return #(args[1] or "")
	elseif op == "get_content" or op == "reader.read" then
		return type(r[1]) == "string" and #r[1] or nil
	elseif op == "writer.size" then
		return type(r[1]) == "number" and r[1] or nil
	end
	return nil
end

return function(d, log_fn, opts)
	opts = opts or {}
	assert(type(log_fn) == "function", "trace: log function expected")
	local clock = opts.clock or os.clock
	return mw.wrap(d, function(op, path, call, ...)
		local args = pack(...)
		local t0 = clock()
		local r = pack(call(...))
		local fields = {
			op = op,
			path = path,
			code = mw.result_code(r) or "OK",
			bytes = bytes_of(op, args, r),
			duration_ms = (clock() - t0) * 1000,
		}
		if op == "move" then
			fields.to = args[2]
		end
		if op == "reader.read" and r[1] == nil and fields.code == "OK" then
			fields.eof = true
		end
		pcall(log_fn, "driver.op", fields) -- logging never breaks an op
		return unpack(r, 1, r.n)
	end, { name = opts.name or d.name, raw = opts.raw })
end
