-- layerup version: the version of the command and its core.

local out = require "layerup.cli.output"

return {
	name = "version", args = {}, no_root = true,
	summary = "print the version (also --version)",
	run = function(ctx)
		local ok, core = pcall(require, "layerup.core")
		local v = ok and core._VERSION or "unknown"
		if ctx.json then
			out.emit_json(ctx, { version = v, lua = _VERSION })
		else
			out.say(ctx, "layerup %s", v)
		end
		return out.EXIT.ok
	end,
}
