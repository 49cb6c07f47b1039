-- layerup verify: check the store (layerup.verify does the work).

local out = require "layerup.cli.output"
local common = require "layerup.cli.common"

return {
	name = "verify", args = {},
	summary = "re-hash every blob, check links, manifests and uploads",
	text = [[
Re-hashes every blob under blobs/sha256; checks that every layer link,
manifest revision link and tag link holds a digest of an existing blob;
reports orphan uploads (directories without startedat or data), symlinks
in the tree (never followed) and stale temporary files of interrupted
writes.  Exit status 3 when anything is damaged.  Warnings (the
registry's normal leftover of a cancelled upload: a lone
hashstates/sha256/0) are printed but do not change the exit status.  A
ROOT that is not a store (no docker/registry/v2) fails with exit 1.]],
	run = function(ctx, a)
		common.need_root_dir(ctx)
		local L = common.lib(ctx)
		local verify = require "layerup.verify"
		local d = common.open_driver(ctx)
		local r = out.check(verify.run(d, { layerup = L }))
		local function fs(list)
			local t = out.array()
			for i, p in ipairs(list) do
				t[i] = { kind = p.kind, path = common.fs_path(ctx, p.path), message = p.message }
			end
			return t
		end
		local problems, warnings = fs(r.problems), fs(r.warnings)
		if ctx.json then
			local res = { ok = r.ok, problems = problems, warnings = warnings }
			for k, v in pairs(r.counts) do res[k] = v end
			out.emit_json(ctx, res)
		else
			for _, p in ipairs(problems) do
				out.say(ctx, "DAMAGE %s %s: %s", p.kind, p.path, p.message)
			end
			for _, p in ipairs(warnings) do
				out.say(ctx, "WARNING %s %s: %s", p.kind, p.path, p.message)
			end
			local c = r.counts
			out.say(ctx, "%d blobs, %d links, %d manifests, %d uploads checked: %s", c.blobs, c.links,
				c.manifests, c.uploads, r.ok and "ok" or (#problems .. " problem(s)"))
		end
		return r.ok and out.EXIT.ok or out.EXIT.damage
	end,
}
