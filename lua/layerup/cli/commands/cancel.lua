-- layerup cancel: remove an upload.

local out = require "layerup.cli.output"
local common = require "layerup.cli.common"

return {
	name = "cancel", args = { "REPO", "UUID" },
	summary = "remove an upload and everything it holds",
	text = [[
An upload that does not exist (never started, already finished, cancelled
or purged) is an error: BLOB_UPLOAD_UNKNOWN, exit 1, as every command
that names an upload answers.  An upload another process is writing is
LOCKED (exit 1) and stays.]],
	run = function(ctx, a)
		local repo, uuid = common.need_repo(a.REPO), common.need_uuid(a.UUID)
		local store = common.open_store(ctx, a)
		local up = out.check(store:resume(repo, uuid))
		out.check(up:cancel())
		store:close()
		if ctx.json then
			out.emit_json(ctx, { repo = repo, uuid = uuid, cancelled = true })
		else
			out.say(ctx, "cancelled %s %s", repo, uuid)
		end
		return out.EXIT.ok
	end,
}
