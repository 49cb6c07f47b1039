-- layerup.admit: admission policies, i.e. functions
--   admit(ctx) -> true | false, reason
-- consulted before an upload starts (ctx = {repo=, size=?}: size is set
-- when the caller declared it, store:start(repo, {size = N})); a refusal
-- makes store:start return DENIED with the reason.
--
-- Repository patterns, in order of precedence:
--   * a Lua pattern when it holds one of ^ $ % [ ] ( ) + ? (searched, so
--     anchor it yourself: "^team%-[a-z]+/");
--   * a glob when it holds '*': '*' matches within one path component,
--     '**' across components ("library/*", "ci/**");
--   * otherwise an exact name.

local M = {}

local function glob_to_pattern(glob)
	local out = { "^" }
	local i = 1
	while i <= #glob do
		local c = glob:sub(i, i)
		if c == "*" then
			if glob:sub(i + 1, i + 1) == "*" then
				out[#out + 1] = ".*"
				i = i + 1
			else
				out[#out + 1] = "[^/]*"
			end
		elseif c:find("%W") then
			out[#out + 1] = "%" .. c
		else
			out[#out + 1] = c
		end
		i = i + 1
	end
	out[#out + 1] = "$"
	return table.concat(out)
end

-- Lua reports a malformed pattern only when matching reaches the bad
-- part, so check the usual mistakes up front: a dangling '%', an unclosed
-- '[', unbalanced parentheses.
local function lua_pattern_error(p)
	local i, depth = 1, 0
	while i <= #p do
		local c = p:sub(i, i)
		if c == "%" then
			if i == #p then
				return "ends with '%'"
			end
			i = i + 2
		elseif c == "[" then
			local j = i + 1
			if p:sub(j, j) == "^" then
				j = j + 1
			end
			if p:sub(j, j) == "]" then
				j = j + 1 -- a ']' first in a set is literal
			end
			while p:sub(j, j) ~= "]" do
				if j > #p then
					return "missing ']'"
				end
				j = j + (p:sub(j, j) == "%" and 2 or 1)
			end
			i = j + 1
		else
			if c == "(" then
				depth = depth + 1
			elseif c == ")" then
				depth = depth - 1
				if depth < 0 then
					return "unbalanced ')'"
				end
			end
			i = i + 1
		end
	end
	if depth ~= 0 then
		return "unfinished capture"
	end
	local ok, err = pcall(string.find, "", p)
	return not ok and tostring(err) or nil
end

-- Compile one pattern into a predicate on repository names.
local function matcher(p)
	if type(p) ~= "string" or p == "" then
		error("layerup.admit: repository pattern must be a non-empty string", 3)
	end
	if p:find("[%^%$%%%[%]%(%)%+%?]") then
		local err = lua_pattern_error(p)
		if err then
			error("layerup.admit: bad Lua pattern " .. p .. ": " .. err, 3)
		end
		return function(repo)
			return repo:find(p) ~= nil
		end
	elseif p:find("*", 1, true) then
		local lp = glob_to_pattern(p)
		return function(repo)
			return repo:find(lp) ~= nil
		end
	end
	return function(repo)
		return repo == p
	end
end

-- A predicate on repository names for one pattern (the rules above), for
-- other policies that select repositories the same way (layerup.limits).
function M.matcher(p)
	return matcher(p)
end

local function matchers(patterns)
	if type(patterns) == "string" then
		patterns = { patterns }
	end
	if type(patterns) ~= "table" then
		error("layerup.admit: pattern or list of patterns expected", 3)
	end
	local list = {}
	for i, p in ipairs(patterns) do
		list[i] = { pattern = p, match = matcher(p) }
	end
	return list
end

local function repo_of(ctx)
	if type(ctx) == "string" then
		return ctx
	end
	return type(ctx) == "table" and tostring(ctx.repo or "") or ""
end

-- Admit only repositories matching one of the patterns.
function M.allow(patterns)
	local list = matchers(patterns)
	return function(ctx)
		local repo = repo_of(ctx)
		for _, m in ipairs(list) do
			if m.match(repo) then
				return true
			end
		end
		return false, ("repository %s is not in the allowed list"):format(repo)
	end
end

-- Refuse repositories matching any of the patterns.
function M.deny(patterns)
	local list = matchers(patterns)
	return function(ctx)
		local repo = repo_of(ctx)
		for _, m in ipairs(list) do
			if m.match(repo) then
				return false, ("repository %s is denied (%s)"):format(repo, m.pattern)
			end
		end
		return true
	end
end

-- Refuse a new upload when the repository already has n in progress.
-- store is a store, or a function returning one: the policy is usually
-- built before layerup.open returns the store it will guard.
--   local store
--   store = layerup.open(root, {admit = admit.limit_per_repo(function() return store end, 4)})
function M.limit_per_repo(store, n)
	assert(type(n) == "number" and n >= 0 and math.floor(n) == n,
		"admit.limit_per_repo: n must be an integer >= 0")
	return function(ctx)
		local s = store
		if type(s) == "function" then
			s = s()
		end
		if s == nil then
			s = type(ctx) == "table" and ctx.store or nil
		end
		if s == nil then
			return false, "admit.limit_per_repo: no store to count uploads in"
		end
		local repo = repo_of(ctx)
		local list, err = s:uploads(repo)
		if not list then
			return false, "cannot count uploads in " .. repo .. ": " .. tostring(err)
		end
		if #list >= n then
			return false, ("repository %s already has %d uploads in progress (limit %d)"):format(repo, #list, n)
		end
		return true
	end
end

-- Admit when every rule admits; the first refusal gives the reason.
function M.all(...)
	local rules = { n = select("#", ...), ... }
	return function(ctx)
		for i = 1, rules.n do
			local ok, reason = rules[i](ctx)
			if not ok then
				return false, reason or "refused by admission policy"
			end
		end
		return true
	end
end

-- Admit when any rule admits; otherwise the reasons of all refusals.
function M.any(...)
	local rules = { n = select("#", ...), ... }
	return function(ctx)
		local reasons = {}
		for i = 1, rules.n do
			local ok, reason = rules[i](ctx)
			if ok then
				return true
			end
			reasons[#reasons + 1] = reason or "refused"
		end
		return false, table.concat(reasons, "; ")
	end
end

return M
