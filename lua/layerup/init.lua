-- layerup: resumable, content-addressed blob uploads.
--
-- The engine is C (layerup.core); this module re-exports it and layers the
-- Lua policy defaults on top: layerup.open uses layerup.retry.default unless
-- the caller passes `retry = false` (or a retry function of its own).
local core = require "layerup.core"

local layerup = {}
for k, v in pairs(core) do
	layerup[k] = v
end
layerup.core = core

layerup.retry = require "layerup.retry"
layerup.link = require "layerup.link"
layerup.log = require "layerup.log"
layerup.admit = require "layerup.admit"
layerup.limits = require "layerup.limits"
layerup.middleware = require "layerup.middleware"

-- Options that also take a human string ("4MiB", "7d"), and the parser of
-- layerup.limits that reads it.  Everything else is checked by core.open
-- (unknown keys and wrong types raise an error naming the option).
local string_opts = {
	max_size = "parse_size",
	max_age = "parse_duration",
}

--- Open a store on a driver or a root directory (see README "Lua API").
function layerup.open(d_or_root, opts)
	if opts ~= nil and type(opts) ~= "table" then
		error("bad argument #2 to 'open' (options table expected, got " .. type(opts) .. ")", 2)
	end
	local o = {}
	for k, v in pairs(opts or {}) do
		o[k] = v
	end
	for key, parser in pairs(string_opts) do
		if type(o[key]) == "string" then
			local v, err = layerup.limits[parser](o[key])
			if v == nil then
				error(("bad argument #2 to 'open' (option '%s': %s)"):format(key, err.message), 2)
			end
			o[key] = v
		end
	end
	if o.max_age ~= nil and type(o.max_age) == "number" and o.max_age == o.max_age then
		o.max_age = math.ceil(o.max_age) -- the core counts whole seconds
	end
	if o.retry == nil then
		o.retry = layerup.retry.default
	end
	-- Called protected so that a misuse error points at the caller's line,
	-- not at this file.
	local ok, store, err = pcall(core.open, d_or_root, o)
	if not ok then
		error((tostring(store):gsub("^bad argument #(%d+) to '[^']*'", "bad argument #%1 to 'open'")), 2)
	end
	return store, err
end

return layerup
