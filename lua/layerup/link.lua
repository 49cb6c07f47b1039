-- layerup.link: link policies, i.e. functions
--   link(ctx) -> {{repo=, digest=}, ...} | nil, err
-- called by finish once the blob is in place, to choose which repository
-- links to write.  ctx = {repo=, uuid=, canonical=, requested=, size=}:
-- canonical is the sha256 digest the blob is stored under, requested the
-- digest the client asked for (a sha512 alias, or equal to canonical).
-- Returning nil, err refuses the finish (the core reports DENIED).

local core = require "layerup.core"

local M = {}

-- Refusals are the core's error type (layerup.error).
local function denied(message)
	return core.error("DENIED", message)
end

-- What registry v2 does: link the canonical digest, plus the requested
-- digest as an alias when the client used another algorithm.
function M.default(ctx)
	local links = { { repo = ctx.repo, digest = ctx.canonical } }
	if ctx.requested and ctx.requested ~= ctx.canonical then
		links[#links + 1] = { repo = ctx.repo, digest = ctx.requested }
	end
	return links
end

-- Run a base rule, passing its refusal through.
local function base_links(base_rule, ctx)
	local links, err = base_rule(ctx)
	if links == nil then
		return nil, err or denied("link policy refused " .. tostring(ctx.repo))
	end
	return links
end

-- Example: everything linked by base_rule (default: M.default) is linked
-- into second_repo as well, e.g. a "cache/all" repository that can serve
-- every blob ever pushed.
function M.mirror(second_repo, base_rule)
	assert(type(second_repo) == "string", "link.mirror: repository name expected")
	base_rule = base_rule or M.default
	return function(ctx)
		local links, err = base_links(base_rule, ctx)
		if not links then
			return nil, err
		end
		local out, seen = {}, {}
		local function add(repo, digest)
			local key = repo .. "\0" .. digest
			if not seen[key] then
				seen[key] = true
				out[#out + 1] = { repo = repo, digest = digest }
			end
		end
		for _, l in ipairs(links) do
			add(l.repo, l.digest)
		end
		for _, l in ipairs(links) do
			add(second_repo, l.digest)
		end
		return out
	end
end

-- true when repo is prefix itself or lies below it ("mirror" covers
-- "mirror/x" but not "mirrors").
local function in_namespace(repo, prefix)
	prefix = prefix:gsub("/+$", "")
	return repo == prefix or repo:sub(1, #prefix + 1) == prefix .. "/"
end

-- Example: refuse any link into a read-only namespace (mirrors, promoted
-- releases, ...).  prefixes is a name or a list of names.
function M.read_only(prefixes, base_rule)
	if type(prefixes) == "string" then
		prefixes = { prefixes }
	end
	assert(type(prefixes) == "table", "link.read_only: prefix or list of prefixes expected")
	base_rule = base_rule or M.default
	return function(ctx)
		local links, err = base_links(base_rule, ctx)
		if not links then
			return nil, err
		end
		for _, l in ipairs(links) do
			for _, p in ipairs(prefixes) do
				if in_namespace(l.repo, p) then
					return nil, denied(("repository %s is read-only (namespace %s)"):format(l.repo, p))
				end
			end
		end
		return links
	end
end

return M
