-- layerup resume: continue an interrupted push.

local out = require "layerup.cli.output"
local common = require "layerup.cli.common"
local transfer = require "layerup.cli.transfer"
local push = require "layerup.cli.commands.push"

return {
	name = "resume", args = { "REPO", "UUID", "FILE" },
	summary = "continue an interrupted push of FILE",
	text = [[
Continues upload UUID of REPO from its current size: that many bytes of
FILE are skipped (but hashed), the rest is uploaded, then the blob is
finished as push does.  When the upload cannot hold the start of FILE
(it is longer, or its content differs) the error says to cancel it.]],
	options = {
		{ "--chunk=SIZE", "close and resume the upload every SIZE bytes (4MiB, 512KiB, 8M)", transfer.DEFAULT_CHUNK },
	},
	run = function(ctx, a)
		local repo, uuid = common.need_repo(a.REPO), common.need_uuid(a.UUID)
		local chunk = common.need_size(a.opts.chunk, "--chunk")
		if chunk < 1 then out.usage("bad --chunk: must be at least 1 byte") end
		local f, size = transfer.open_input(ctx, a.FILE)
		local store = common.open_store(ctx, a)
		local up = out.check(store:resume(repo, uuid))
		local r = transfer.guarded(ctx, { store = store, repo = repo, file = a.FILE, f = f,
			size = size, chunk = chunk, up = up, uuid = uuid, resumed = true })
		if f ~= ctx.stdin then f:close() end
		store:close()
		push.report(ctx, r)
		return out.EXIT.ok
	end,
}
