-- layerup uploads: list uploads in progress.

local out = require "layerup.cli.output"
local common = require "layerup.cli.common"

return {
	name = "uploads", args = { { "REPO", optional = true } },
	summary = "list uploads in progress (of REPO, or all)",
	text = [[
One line per upload: repo, uuid, size (bytes received), started_at; the
--json keys are the same.  With $LAYERUP_ROOT and one argument, the
argument is ROOT; write `layerup uploads --root DIR REPO` to list one
repository.]],
	run = function(ctx, a)
		if a.REPO then common.need_repo(a.REPO) end
		local store = common.open_store(ctx, a)
		local list = out.check(store:uploads(a.REPO))
		store:close()
		if ctx.json then
			local rows = common.upload_rows(list)
			out.emit_json(ctx, rows)
		else
			for _, u in ipairs(list) do
				out.say(ctx, "%s  %s  %12d  %s", u.repo, u.uuid, u.size or 0, out.iso_time(u.started_at))
			end
		end
		return out.EXIT.ok
	end,
}
