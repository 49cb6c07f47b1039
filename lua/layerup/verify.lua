-- layerup.verify: check a store's tree, as `layerup verify` does.
--
--   local verify = require "layerup.verify"
--   local r, err = verify.run(driver [, {layerup = module}])
--   r = {ok = bool, counts = {blobs=, links=, manifests=, uploads=},
--        problems = {{kind=, path=, message=}, ...},   -- damage
--        warnings = {{kind=, path=, message=}, ...}}   -- harmless leftovers
--   err (nil r): the driver's root is not a store (PATH_NOT_FOUND).
--
-- Paths are the layout's (relative to the driver's root), as
-- layerup.layout builds them; nothing here writes.  Problem kinds:
--   blob.misplaced blob.no_data blob.unreadable blob.corrupt
--   link.missing link.malformed link.mismatch link.dangling
--   manifest.missing manifest.malformed manifest.mismatch manifest.dangling
--   tag.unknown_revision upload.orphan dir.unreadable
--   tree.symlink (a symlink below the root: never followed, so every walk
--   ends) temporary.stale (a ".lup~<hex>" file of a write killed before its
--   rename, older than a minute; `layerup purge` removes it)
-- Warning kinds: upload.cancelled (the registry's normal leftover of a
-- cancelled upload: nothing but hashstates/sha256/0).

local M = {}

local PIECE = 1048576

-- Temporaries older than this are debris of a killed write (put_content
-- keeps one for milliseconds).
M.STALE_TEMP_SECONDS = 60
local HEX64 = "^" .. ("[0-9a-f]"):rep(64) .. "$"

local function basename(p) return (p:gsub("/+$", ""):match("([^/]+)$")) or p end

local function errmsg(e)
	return type(e) == "table" and tostring(e.message or e.code) or tostring(e)
end

function M.run(d, opts)
	opts = opts or {}
	local L = opts.layerup or require "layerup"
	local layout = L.layout or require("layerup.core").layout

	local st = d:stat(layout.root)
	if not st or not st.dir then
		local core = require "layerup.core"
		return nil, core.error("PATH_NOT_FOUND",
			"not a store: no " .. layout.root:sub(2) .. " directory under the root")
	end

	local problems, warnings = {}, {}
	local counts = { blobs = 0, links = 0, manifests = 0, uploads = 0, temporaries = 0 }
	local function problem(kind, path, msg)
		problems[#problems + 1] = { kind = kind, path = path, message = msg }
	end
	local function warning(kind, path, msg)
		warnings[#warnings + 1] = { kind = kind, path = path, message = msg }
	end

	-- A driver that confines paths to its root answers a symlink below it
	-- with INVALID_PATH: reported as tree.symlink, never followed.
	local function symlink(err, path)
		if type(err) == "table" and err.code == "INVALID_PATH" then
			problem("tree.symlink", err.path or path, errmsg(err))
			return true
		end
		return false
	end

	-- Child names of a directory; a missing one is empty, an unreadable
	-- one is reported.
	local function children(path)
		local list, err = d:list(path)
		if not list and not (type(err) == "table" and err.code == "PATH_NOT_FOUND")
			and not symlink(err, path) then
			problem("dir.unreadable", path, errmsg(err))
		end
		local names = {}
		for i, c in ipairs(list or {}) do names[i] = basename(c) end
		return names
	end
	-- stat(path) -> st | nil, was_symlink
	local function stat(path)
		local st, err = d:stat(path)
		if not st then return nil, symlink(err, path) end
		return st
	end
	local function exists(path) return stat(path) ~= nil end
	local function is_dir(path)
		local s = stat(path)
		return s and s.dir
	end

	local function hash(path)
		local h = assert(L.hasher("sha256"))
		local r, err = d:reader(path, 0)
		if not r then return nil, err end
		while true do
			local s, rerr = r:read(PIECE)
			if s == nil then
				r:close()
				if rerr then return nil, rerr end
				break
			end
			h:update(s)
		end
		return h:digest()
	end

	-- Blobs.
	local blobs = layout.blobs .. "/sha256"
	for _, pre in ipairs(children(blobs)) do
		for _, hex in ipairs(children(blobs .. "/" .. pre)) do
			local dir = blobs .. "/" .. pre .. "/" .. hex
			counts.blobs = counts.blobs + 1
			if not hex:match(HEX64) or hex:sub(1, 2) ~= pre then
				problem("blob.misplaced", dir, "directory name is not the blob's sha256 under its prefix")
			else
				local data = layout.blob_data("sha256:" .. hex)
				local st, link = stat(data)
				if link then
					-- reported; its target is not ours to read
				elseif not st then
					problem("blob.no_data", dir, "blob directory without data")
				else
					local got, err = hash(data)
					if not got then
						problem("blob.unreadable", data, errmsg(err))
					elseif got ~= "sha256:" .. hex then
						problem("blob.corrupt", data, "content hashes to " .. got)
					end
				end
			end
		end
	end

	-- A link file under <dir>/<alg>/<hex>/link (layers and revisions):
	-- holds "alg:hex" naming an existing blob.  prefix: "link" or "manifest".
	local function check_link(link, alg, hex, prefix)
		local target, err = d:get_content(link)
		if not target then
			if not symlink(err, link) then
				problem(prefix .. ".missing", link, "directory without a link file")
			end
			return nil
		end
		if not layout.valid_digest(target) then
			problem(prefix .. ".malformed", link, ("link holds %q"):format(target:sub(1, 80)))
			return nil
		end
		if alg and hex and target ~= alg .. ":" .. hex and (prefix == "manifest" or alg == "sha256") then
			problem(prefix .. ".mismatch", link, "link points at " .. target)
			return nil
		end
		if not exists(layout.blob_data(target)) then
			problem(prefix .. ".dangling", link, "no blob " .. target)
			return nil
		end
		return target
	end

	local function check_layers(path)
		for _, alg in ipairs(children(path)) do
			for _, hex in ipairs(children(path .. "/" .. alg)) do
				counts.links = counts.links + 1
				check_link(path .. "/" .. alg .. "/" .. hex .. "/link", alg, hex, "link")
			end
		end
	end

	local function check_manifests(path)
		local revisions = {}
		local rev = path .. "/revisions"
		for _, alg in ipairs(children(rev)) do
			for _, hex in ipairs(children(rev .. "/" .. alg)) do
				counts.manifests = counts.manifests + 1
				local t = check_link(rev .. "/" .. alg .. "/" .. hex .. "/link", alg, hex, "manifest")
				if t then revisions[t] = true end
			end
		end
		local tags = path .. "/tags"
		for _, tag in ipairs(children(tags)) do
			local tdir = tags .. "/" .. tag
			counts.manifests = counts.manifests + 1
			local cur = tdir .. "/current/link"
			local t = exists(cur) and check_link(cur, nil, nil, "manifest")
			if not exists(cur) then
				problem("manifest.missing", cur, "tag without a current link")
			elseif t and not revisions[t] then
				problem("tag.unknown_revision", cur, "tag points at " .. t .. ", which is no revision of the repository")
			end
			local idx = tdir .. "/index"
			for _, alg in ipairs(children(idx)) do
				for _, hex in ipairs(children(idx .. "/" .. alg)) do
					counts.manifests = counts.manifests + 1
					check_link(idx .. "/" .. alg .. "/" .. hex .. "/link", alg, hex, "manifest")
				end
			end
		end
	end

	local function check_uploads(path)
		for _, id in ipairs(children(path)) do
			local dir = path .. "/" .. id
			counts.uploads = counts.uploads + 1
			local missing = {}
			local _, linked = stat(dir)
			for _, f in ipairs(linked and {} or { "startedat", "data" }) do
				local st, link = stat(dir .. "/" .. f)
				if not st and not link then missing[#missing + 1] = f end
			end
			if #missing == 2 then
				local top, hs, states = children(dir), children(dir .. "/hashstates"),
					children(dir .. "/hashstates/sha256")
				if #top == 1 and top[1] == "hashstates" and #hs == 1 and hs[1] == "sha256"
					and #states == 1 and states[1] == "0" then
					warning("upload.cancelled", dir, "the registry's leftover of a cancelled upload " ..
						"(only hashstates/sha256/0; `layerup purge` removes it)")
					missing = {}
				end
			end
			if #missing > 0 then
				problem("upload.orphan", dir, "upload without " .. table.concat(missing, " and ") ..
					" (`layerup purge` removes it)")
			end
		end
	end

	-- Repository names nest: any directory not starting with "_" may be a
	-- component; _layers, _manifests and _uploads mark a repository.
	local function walk(path, depth)
		if depth > 64 then return end
		for _, c in ipairs(children(path)) do
			local p = path .. "/" .. c
			if c == "_layers" then check_layers(p)
			elseif c == "_manifests" then check_manifests(p)
			elseif c == "_uploads" then check_uploads(p)
			elseif c:sub(1, 1) ~= "_" and is_dir(p) then
				walk(p, depth + 1) -- stray files between components are not ours
			end
		end
	end
	walk(layout.repositories, 0)

	-- Stale temporaries (".lup~<hex>"), where the driver can list them.
	if d.temporaries then
		for _, top in ipairs { layout.repositories, layout.blobs } do
			for _, t in ipairs(d:temporaries(top, M.STALE_TEMP_SECONDS) or {}) do
				counts.temporaries = counts.temporaries + 1
				problem("temporary.stale", t.path, ("%d-byte temporary of an interrupted write " ..
					"(`layerup purge` removes it)"):format(t.size or 0))
			end
		end
	end

	return { ok = #problems == 0, counts = counts, problems = problems, warnings = warnings }
end

return M
