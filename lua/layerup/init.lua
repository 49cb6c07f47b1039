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

--- Open a store on a driver or a root directory (see README "Lua API").
function layerup.open(d_or_root, opts)
	local o = {}
	for k, v in pairs(opts or {}) do
		o[k] = v
	end
	if o.retry == nil then
		o.retry = layerup.retry.default
	end
	return core.open(d_or_root, o)
end

return layerup
