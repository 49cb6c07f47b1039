-- layerup.retry: retry policies, i.e. functions
--   retry(attempt, err, op) -> delay_seconds | nil
-- The core calls one after the attempt-th try of op failed with err
-- (attempt starts at 1) and sleeps for the returned delay before trying
-- again; nil means "give up and report err".

local M = {}

-- Codes that describe the request itself, not the backend: trying again
-- cannot change the answer, whatever the error claims.
M.permanent = {
	DIGEST_INVALID = true,
	NAME_INVALID = true,
	DENIED = true,
	UNSUPPORTED = true,
	RANGE_INVALID = true,
	INVALID_PATH = true,
	INVALID_OFFSET = true,
	LOCKED = true,
}

-- The default notion of "worth retrying": a transient error, or any
-- not-permanent failure while validating a finish (on eventually consistent
-- backends the data, the blob or its full size may not be visible yet).
function M.retryable(err, op)
	local code = type(err) == "table" and err.code or nil
	if code and M.permanent[code] then
		return false
	end
	if type(err) == "table" and err.transient == true then
		return true
	end
	return op == "finish.validate"
end

-- A small generator (Park-Miller "minimal standard", x = 48271 x mod
-- 2^31-1), so that jitter is reproducible from a seed and never touches
-- the global math.random state.  Its products stay below 2^47, exact in
-- doubles, so it gives the same numbers on Lua 5.4 and LuaJIT.
local function prng(seed)
	local m = 2147483647
	local x = type(seed) == "number" and seed == seed and seed ~= math.huge
		and seed ~= -math.huge and math.floor(seed) % m or 0
	if x == 0 then
		x = 20240601
	end
	return function()
		x = (x * 48271) % m
		return (x - 1) / (m - 1) -- [0, 1)
	end
end
M.prng = prng

local function check_number(name, v, min)
	if type(v) ~= "number" or v ~= v or v < min then
		error(("layerup.retry.backoff: %s must be a number >= %s"):format(name, min), 3)
	end
end

-- Exponential backoff.  attempts is the total number of tries, the first
-- one included (attempts = 1 never retries).  The delay after try k is
-- min(max, base * factor^(k-1)), spread by +-jitter (a fraction) and
-- capped at max again.  Without a seed, each policy gets its own seed so
-- that clients started together do not retry in lockstep.
--   opts.retryable(err, op) -> bool replaces M.retryable.
function M.backoff(opts)
	opts = opts or {}
	local attempts = opts.attempts or 5
	local base = opts.base or 0.05
	local factor = opts.factor or 2
	local max = opts.max or 2
	local jitter = opts.jitter or 0
	check_number("attempts", attempts, 1)
	check_number("base", base, 0)
	check_number("factor", factor, 1)
	check_number("max", max, 0)
	check_number("jitter", jitter, 0)
	if jitter > 1 then
		error("layerup.retry.backoff: jitter must be a fraction in [0, 1]", 2)
	end
	local retryable = opts.retryable or M.retryable
	local seed = opts.seed
	if seed == nil then
		-- os.time alone would give equal seeds to processes started together.
		local addr = tonumber(tostring({}):match("0x(%x+)") or "0", 16) or 0
		seed = os.time() + addr % 2147483647
	end
	local random = prng(seed)

	return function(attempt, err, op)
		if type(attempt) ~= "number" or attempt < 1 then
			error("retry: attempt must be a number >= 1", 2)
		end
		if attempt >= attempts or not retryable(err, op) then
			return nil
		end
		local delay = base * factor ^ (attempt - 1)
		if delay > max then
			delay = max
		end
		if jitter > 0 then
			delay = delay * (1 + jitter * (2 * random() - 1))
			if delay > max then
				delay = max
			end
		end
		return delay
	end
end

-- 5 tries over about 0.75 s (0.05, 0.1, 0.2, 0.4 s, +-20%).
M.default = M.backoff { attempts = 5, base = 0.05, factor = 2, max = 2, jitter = 0.2 }

-- Never retry.
function M.none()
	return nil
end

return M
