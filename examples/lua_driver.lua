-- examples/lua_driver.lua: a storage driver written in Lua.  Any table
-- with these methods becomes a driver through layerup.driver(tbl); the
-- store runs its uploads on it exactly as on the built-in drivers.  This
-- one keeps files in a Lua table (a real one would talk to a database, a
-- key-value store, an HTTP API...).
-- Run after `make` (from the repository root, or with any path to it):
--   lua5.4 examples/lua_driver.lua

-- From a checkout this uses its lua/ and build/ (after LUA_PATH/LUA_CPATH
-- when those are set); an installed layerup needs none of it.
do
	local top = ((arg and arg[0] or ""):match("^(.*)/[^/]*$") or ".") .. "/.."
	local function add(cur, mine, env)
		if os.getenv(env) then return cur .. ";" .. mine end
		return mine .. ";" .. cur
	end
	package.path = add(package.path, top .. "/lua/?.lua;" .. top .. "/lua/?/init.lua", "LUA_PATH")
	package.cpath = add(package.cpath, top .. "/build/?.so", "LUA_CPATH")
end

local layerup = require "layerup"

local function not_found(path)
	return nil, { code = "PATH_NOT_FOUND", message = "no such path: " .. path }
end

local function below(path)
	return path == "/" and "/" or path .. "/"
end

local function table_driver()
	local files = {} -- path -> content
	local d = { name = "luatable" }

	function d:get_content(path)
		if files[path] == nil then return not_found(path) end
		return files[path]
	end

	function d:put_content(path, data)
		files[path] = data
		return true
	end

	function d:stat(path)
		if files[path] then
			return { path = path, size = #files[path], mtime = os.time(), dir = false }
		end
		for p in pairs(files) do -- directories exist while they hold a file
			if p:sub(1, #below(path)) == below(path) then
				return { path = path, size = 0, mtime = os.time(), dir = true }
			end
		end
		return not_found(path)
	end

	function d:list(path) -- direct children (the core sorts them)
		local prefix, seen, out = below(path), {}, {}
		for p in pairs(files) do
			if p:sub(1, #prefix) == prefix then
				local child = prefix .. p:sub(#prefix + 1):match("^[^/]+")
				if not seen[child] then
					seen[child] = true
					out[#out + 1] = child
				end
			end
		end
		if #out == 0 then return not_found(path) end
		return out
	end

	function d:move(src, dst)
		if files[src] == nil then return not_found(src) end
		files[dst], files[src] = files[src], nil
		return true
	end

	function d:delete(path)
		local found = false
		for p in pairs(files) do
			if p == path or p:sub(1, #path + 1) == path .. "/" then
				files[p], found = nil, true
			end
		end
		if not found then return not_found(path) end
		return true
	end

	function d:reader(path, offset)
		if files[path] == nil then return not_found(path) end
		local pos = offset + 1
		return {
			read = function(_, n) -- a chunk, or nil at end of file
				local s = files[path]:sub(pos, pos + n - 1)
				pos = pos + #s
				return s ~= "" and s or nil
			end,
			close = function() end,
		}
	end

	function d:writer(path, append)
		if not append or files[path] == nil then files[path] = "" end
		local parts = { files[path] } -- buffered until commit/close
		local function flush() files[path] = table.concat(parts) end
		return {
			write = function(_, s) parts[#parts + 1] = s; return true end,
			size = function() local n = 0; for _, s in ipairs(parts) do n = n + #s end; return n end,
			commit = function() flush(); return true end,
			cancel = function() parts = {}; files[path] = nil; return true end,
			close = function() if files[path] ~= nil then flush() end; return true end,
		}
	end

	return d, files
end

-- Use it: a resumable upload in two sessions.
local tbl, files = table_driver()
local store = assert(layerup.open(layerup.driver(tbl)))

local data = ("layer bytes "):rep(10000)
local h = layerup.hasher()
h:update(data)

local u = assert(store:start("demo/app"))
assert(u:write(data:sub(1, 50000)))
local uuid = u.uuid
assert(u:close()) -- e.g. the client went away

u = assert(store:resume("demo/app", uuid))
assert(u:size() == 50000)
assert(u:write(data:sub(50001)))
local blob = assert(u:finish(h:digest()))
print(("stored %s, %d bytes"):format(blob.digest, blob.size))

-- The registry v2 layout, in a Lua table.
local paths = {}
for p in pairs(files) do paths[#paths + 1] = p end
table.sort(paths)
for _, p in ipairs(paths) do print("  " .. p) end
assert(files["/docker/registry/v2/blobs/sha256/" .. blob.digest:sub(8, 9) .. "/" .. blob.digest:sub(8) .. "/data"] == data)
