-- layerup.middleware: drivers that wrap a driver.  Every op (the driver's
-- and those of the readers and writers it opens) goes through one function
--   around(op, path, call, ...) -> results
-- where call(...) runs the op on the inner driver with the given
-- arguments.  trace, faults and lag are built on it; so can yours:
--
--   local mw = require "layerup.middleware"
--   local d2 = mw.wrap(d, function(op, path, call, ...)
--           if op == "delete" and path:find("^/keep/") then
--                   return nil, {code = "DENIED", message = "no deletes here"}
--           end
--           return call(...)
--   end, {name = "nodelete"})
--
-- Op names: get_content put_content stat list move delete reader writer,
-- reader.read reader.close, writer.write writer.size writer.commit
-- writer.cancel writer.close.  path is the first argument of a driver op
-- (the source for move) and the opened path for reader/writer ops.

local M = {}

M.driver_ops = { "get_content", "put_content", "stat", "list", "move", "delete", "reader", "writer" }
M.reader_ops = { "read", "close" }
M.writer_ops = { "write", "size", "commit", "cancel", "close" }

local pack = table.pack or function(...) -- LuaJIT has neither
	return { n = select("#", ...), ... }
end
local unpack = table.unpack or unpack

local function wrap_object(obj, kind, ops, path, around)
	local w = {}
	for _, name in ipairs(ops) do
		local op = kind .. "." .. name
		w[name] = function(_, ...)
			return around(op, path, function(...)
				return obj[name](obj, ...)
			end, ...)
		end
	end
	return w
end

local function inner_call(inner, op, around)
	return function(...)
		local r = pack(inner[op](inner, ...))
		if r[1] == nil then
			return unpack(r, 1, r.n)
		end
		local path = ...
		if op == "reader" then
			return wrap_object(r[1], "reader", M.reader_ops, path, around)
		elseif op == "writer" then
			return wrap_object(r[1], "writer", M.writer_ops, path, around)
		end
		return unpack(r, 1, r.n)
	end
end

-- Build the table of a wrapping driver without turning it into a driver
-- userdata (for drivers written in Lua and for tests without the core).
function M.wrap_table(inner, around, opts)
	opts = opts or {}
	local t = { name = opts.name or inner.name }
	for _, op in ipairs(M.driver_ops) do
		local call = inner_call(inner, op, around)
		t[op] = function(_, ...)
			return around(op, (...), call, ...)
		end
	end
	-- Locks are not data ops: pass them straight through when present.
	-- A driver userdata's d:lock(path) returns a lock object with
	-- :unlock(); a driver table has its own unlock(token).
	if inner.lock then
		t.lock = function(_, ...)
			return inner:lock(...)
		end
		t.unlock = function(_, token)
			if inner.unlock then
				return inner:unlock(token)
			elseif token ~= nil then
				return token:unlock()
			end
		end
	end
	return t
end

-- A wrapping driver: a driver userdata built with layerup.driver, or the
-- plain table when opts.raw is true.
function M.wrap(inner, around, opts)
	local t = M.wrap_table(inner, around, opts)
	if opts and opts.raw then
		return t
	end
	return require("layerup").driver(t)
end

-- The core's error type (layerup.error): code, message, then fields
-- (transient, path, ...).
function M.error(code, message, fields)
	return require("layerup.core").error(code, message, fields)
end

-- The error code of a failed call's results (nil on success).  A reader
-- returning plain nil is EOF, not an error.
function M.result_code(r)
	if r.n >= 2 and r[1] == nil and r[2] ~= nil then
		local e = r[2]
		return type(e) == "table" and tostring(e.code or "IO") or "IO"
	end
	return nil
end

-- mw.trace, mw.faults, mw.lag load on first use.
setmetatable(M, {
	__index = function(_, k)
		if k == "trace" or k == "faults" or k == "lag" then
			return require("layerup.middleware." .. k)
		end
	end,
})

return M
