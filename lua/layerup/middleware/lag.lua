-- layerup.middleware.lag: simulate an eventually consistent backend.
--   local d2, state = lag(d, n [, {raw = bool}])
-- A path just written (put_content, a committed writer, the destination
-- of a move) stays invisible to the next n calls that touch it: stat,
-- get_content and reader answer PATH_NOT_FOUND (not transient, as S3
-- says it), list leaves it out.  Each such call uses up one of the n.
-- Deleting or moving a path away forgets it.
-- state = {n = n, pending = {[path] = calls left}, hidden = total hidden}
-- (set state.n to change the lag for paths written later).

local mw = require "layerup.middleware"

local pack = table.pack or function(...) -- LuaJIT has neither
	return { n = select("#", ...), ... }
end
local unpack = table.unpack or unpack

-- path itself or something below it
local function under(p, root)
	return p == root or p:sub(1, #root + 1) == root .. "/"
end

return function(d, n, opts)
	opts = opts or {}
	assert(type(n) == "number" and n >= 0 and math.floor(n) == n, "lag: n must be an integer >= 0")
	local state = { n = n, pending = {}, hidden = 0 }
	local pending = state.pending

	local function written(path)
		if state.n > 0 then
			pending[path] = state.n
		end
	end

	local function forget(root)
		for p in pairs(pending) do
			if under(p, root) then
				pending[p] = nil
			end
		end
	end

	-- true when path must be hidden from this call (and count the call)
	local function hide(path)
		local left = pending[path]
		if not left then
			return false
		end
		pending[path] = left > 1 and left - 1 or nil
		state.hidden = state.hidden + 1
		return true
	end

	local function not_found(path)
		return nil, mw.error("PATH_NOT_FOUND", "path not found (not visible yet): " .. tostring(path),
			{ path = path })
	end

	return mw.wrap(d, function(op, path, call, ...)
		if op == "stat" or op == "get_content" or op == "reader" then
			if hide(path) then
				return not_found(path)
			end
			return call(...)
		end

		local r = pack(call(...))
		local failed = mw.result_code(r) ~= nil
		if op == "list" and not failed and type(r[1]) == "table" then
			local visible = {}
			for _, child in ipairs(r[1]) do
				if not hide(child) then
					visible[#visible + 1] = child
				end
			end
			return visible
		elseif failed then
			return unpack(r, 1, r.n)
		elseif op == "put_content" or op == "writer.commit" then
			written(path)
		elseif op == "move" then
			local _, dst = ...
			forget(path)
			written(dst)
		elseif op == "delete" then
			forget(path)
		end
		return unpack(r, 1, r.n)
	end, { name = opts.name or d.name, raw = opts.raw }), state
end
