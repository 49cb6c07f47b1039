-- helpers/counting.lua: a Lua driver table (for layerup.driver) that
-- forwards every call to an inner driver (layerup.memory(), a
-- layerup.filesystem(dir) userdata, or another driver table) and counts:
--   stats.calls[op]         calls per op ("get_content", "reader", "read", ...)
--   stats.read[pattern]     bytes returned by readers on paths matching pattern
--   stats.got[pattern]      bytes returned by get_content on matching paths
--   stats.read_total        bytes returned by all readers
-- Patterns are Lua patterns matched with string.find (plain = true), e.g.
-- "/_uploads/".  Locks are forwarded to the inner driver, so a store on the
-- counting driver and a store on the inner driver exclude each other.
--
--   local counting = require "helpers.counting"
--   local tbl, stats = counting.new(inner, {"/_uploads/"})
--   local store = layerup.open(layerup.driver(tbl))
--
-- counting.new(inner, patterns, {lag = n}) also makes writers "lag": their
-- size() reports only what has been flushed to the inner writer, and they
-- flush only every n bytes (and on commit/close) - the registry testdriver's
-- buffering behaviour (distribution-2.8.md 3.1, 9.11).
local counting = {}

local function bump(t, k, n)
	t[k] = (t[k] or 0) + (n or 1)
end

function counting.new(inner, patterns, opts)
	opts = opts or {}
	patterns = patterns or {}
	local stats = { calls = {}, read = {}, got = {}, read_total = 0 }
	for _, p in ipairs(patterns) do
		stats.read[p], stats.got[p] = 0, 0
	end

	local function account(where, path, n)
		for _, p in ipairs(patterns) do
			if path:find(p, 1, true) then
				where[p] = where[p] + n
			end
		end
	end

	-- Reset every counter (keeps the patterns).
	function stats.reset()
		stats.calls = {}
		stats.read_total = 0
		for _, p in ipairs(patterns) do
			stats.read[p], stats.got[p] = 0, 0
		end
	end

	-- Total calls of all ops.
	function stats.total_calls()
		local n = 0
		for _, v in pairs(stats.calls) do
			n = n + v
		end
		return n
	end

	local d = { name = opts.name or "counting" }

	function d:get_content(path)
		bump(stats.calls, "get_content")
		local s, err = inner:get_content(path)
		if s then
			account(stats.got, path, #s)
		end
		return s, err
	end

	function d:put_content(path, data)
		bump(stats.calls, "put_content")
		return inner:put_content(path, data)
	end

	function d:stat(path)
		bump(stats.calls, "stat")
		return inner:stat(path)
	end

	function d:list(path)
		bump(stats.calls, "list")
		return inner:list(path)
	end

	function d:move(src, dst)
		bump(stats.calls, "move")
		return inner:move(src, dst)
	end

	function d:delete(path)
		bump(stats.calls, "delete")
		return inner:delete(path)
	end

	function d:reader(path, offset)
		bump(stats.calls, "reader")
		local r, err = inner:reader(path, offset)
		if not r then
			return nil, err
		end
		return {
			read = function(_, n)
				bump(stats.calls, "read")
				local s, e = r:read(n)
				if s then
					stats.read_total = stats.read_total + #s
					account(stats.read, path, #s)
				end
				return s, e
			end,
			close = function()
				return r:close()
			end,
		}
	end

	function d:writer(path, append)
		bump(stats.calls, "writer")
		local w, err = inner:writer(path, append)
		if not w then
			return nil, err
		end
		local lag = opts.lag
		if not lag then
			return {
				write = function(_, s)
					bump(stats.calls, "write")
					return w:write(s)
				end,
				size = function() return w:size() end,
				commit = function() return w:commit() end,
				cancel = function() return w:cancel() end,
				close = function() return w:close() end,
			}
		end
		-- Lagging writer: buffer, flush every `lag` bytes; size() only
		-- counts flushed bytes.
		local buf, nbuf = {}, 0
		local function flush()
			if nbuf == 0 then
				return true
			end
			local ok, e = w:write(table.concat(buf))
			buf, nbuf = {}, 0
			return ok, e
		end
		return {
			write = function(_, s)
				bump(stats.calls, "write")
				buf[#buf + 1] = s
				nbuf = nbuf + #s
				if nbuf >= lag then
					return flush()
				end
				return true
			end,
			size = function() return w:size() end,
			commit = function()
				local ok, e = flush()
				if not ok then
					return nil, e
				end
				return w:commit()
			end,
			cancel = function()
				buf, nbuf = {}, 0
				return w:cancel()
			end,
			close = function()
				local ok, e = flush()
				local ok2, e2 = w:close()
				if not ok then
					return nil, e
				end
				return ok2, e2
			end,
		}
	end

	-- Forward locks when the inner driver has them (driver userdata do).
	if inner.lock then
		function d:lock(path)
			bump(stats.calls, "lock")
			return inner:lock(path)
		end

		function d:unlock(token)
			return token:unlock()
		end
	end

	return d, stats
end

return counting
