-- helpers/memdriver.lua: a storage driver written in pure Lua, for
-- layerup.driver(tbl).  It keeps files in a table (directories are
-- implicit: a prefix of some file), the way a real Lua backend would, and
-- follows the driver contract: `nil, err` with err = {code=, message=,
-- path=} for failures.  Messages do not name the driver: the core puts
-- the name in front.
--
--   local d = layerup.driver(memdriver.new{name = "luamem"})
local memdriver = {}

local function fail(code, message, path)
	return nil, { code = code, message = message, path = path }
end

local function not_found(path)
	return fail("PATH_NOT_FOUND", "Path not found: " .. path, path)
end

function memdriver.new(opts)
	opts = opts or {}
	local files = {} -- path -> {data = string, mtime = seconds}
	local last_mtime = 0

	-- Wall-clock seconds, strictly increasing even within one second
	-- (os.time has no sub-second part).
	local function now()
		local t = os.time()
		if t <= last_mtime then
			t = last_mtime + 1e-6
		end
		last_mtime = t
		return t
	end

	local function dir_prefix(path)
		return path == "/" and "/" or path .. "/"
	end

	-- The newest mtime below path when path is a directory, else nil.
	local function dir_mtime(path)
		if path == "/" then
			return last_mtime
		end
		local p, found = dir_prefix(path), nil
		for k, f in pairs(files) do
			if k:sub(1, #p) == p and (not found or f.mtime > found) then
				found = f.mtime
			end
		end
		return found
	end

	-- An ancestor of path that is a file, if any.
	local function file_ancestor(path)
		local i = 1
		while true do
			local j = path:find("/", i + 1, true)
			if not j then
				return nil
			end
			local anc = path:sub(1, j - 1)
			if files[anc] then
				return anc
			end
			i = j
		end
	end

	-- Can a file be created at path?
	local function creatable(path)
		local anc = file_ancestor(path)
		if anc then
			return fail("IO", "not a directory: " .. anc, path)
		end
		if dir_mtime(path) then
			return fail("IO", "is a directory: " .. path, path)
		end
		return true
	end

	local d = { name = opts.name or "luamem" }

	function d:get_content(path)
		local f = files[path]
		if not f then
			return not_found(path)
		end
		return f.data
	end

	function d:put_content(path, data)
		local ok, err = creatable(path)
		if not ok then
			return nil, err
		end
		files[path] = { data = data, mtime = now() }
		return true
	end

	function d:stat(path)
		local f = files[path]
		if f then
			return { size = #f.data, mtime = f.mtime, dir = false }
		end
		local m = dir_mtime(path)
		if not m then
			return not_found(path)
		end
		return { size = 0, mtime = m, dir = true }
	end

	function d:list(path)
		if files[path] then
			return fail("IO", "not a directory: " .. path, path)
		end
		local p, seen, out = dir_prefix(path), {}, {}
		for k in pairs(files) do
			if k:sub(1, #p) == p then
				local child = p .. k:sub(#p + 1):match("^[^/]+")
				if not seen[child] then
					seen[child] = true
					out[#out + 1] = child -- any order: the core sorts
				end
			end
		end
		if #out == 0 and path ~= "/" then
			return not_found(path)
		end
		return out
	end

	function d:move(src, dst)
		if not files[src] and not dir_mtime(src) then
			return not_found(src)
		end
		local anc = file_ancestor(dst)
		if anc then
			return fail("IO", "not a directory: " .. anc, dst)
		end
		if dir_mtime(dst) then
			return fail("IO", "is a directory: " .. dst, dst)
		end
		if files[src] then
			files[dst], files[src] = files[src], nil
			return true
		end
		local p, moved = src .. "/", {}
		for k, f in pairs(files) do
			if k:sub(1, #p) == p then
				moved[dst .. "/" .. k:sub(#p + 1)] = f
				files[k] = nil
			end
		end
		for k, f in pairs(moved) do
			files[k] = f
		end
		return true
	end

	function d:delete(path)
		if files[path] then
			files[path] = nil
			return true
		end
		local p, any = path .. "/", false
		for k in pairs(files) do
			if k:sub(1, #p) == p then
				files[k] = nil
				any = true
			end
		end
		if not any then
			return not_found(path)
		end
		return true
	end

	function d:reader(path, offset)
		local f = files[path]
		if not f then
			if dir_mtime(path) then
				return fail("IO", "is a directory: " .. path, path)
			end
			return not_found(path)
		end
		local data, pos = f.data, offset -- a snapshot, like an open file
		return {
			read = function(_, n)
				if pos >= #data then
					return nil
				end
				local s = data:sub(pos + 1, pos + n)
				pos = pos + #s
				return s
			end,
			close = function() end,
		}
	end

	-- Writers buffer and publish on commit (or on close, which flushes).
	function d:writer(path, append)
		local ok, err = creatable(path)
		if not ok then
			return nil, err
		end
		local base = ""
		if append and files[path] then
			base = files[path].data
		else
			files[path] = { data = "", mtime = now() }
		end
		local parts, size, state = {}, #base, "open"
		local function flush()
			base = base .. table.concat(parts)
			parts = {}
			files[path] = { data = base, mtime = now() }
		end
		local function usable()
			if state ~= "open" then
				return fail("IO", "writer already " .. state, path)
			end
			return true
		end
		return {
			write = function(_, s)
				local ok2, e = usable()
				if not ok2 then
					return nil, e
				end
				parts[#parts + 1] = s
				size = size + #s
				return true
			end,
			size = function()
				return size
			end,
			commit = function()
				local ok2, e = usable()
				if not ok2 then
					return nil, e
				end
				flush()
				state = "committed"
				return true
			end,
			cancel = function()
				local ok2, e = usable()
				if not ok2 then
					return nil, e
				end
				files[path] = nil
				state = "cancelled"
				return true
			end,
			close = function()
				if state == "closed" then
					return fail("IO", "writer already closed", path)
				end
				if state == "open" then
					flush()
				end
				state = "closed"
				return true
			end,
		}
	end

	return d
end

return memdriver
