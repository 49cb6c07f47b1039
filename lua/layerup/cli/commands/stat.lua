-- layerup stat: size and place of a blob.

local out = require "layerup.cli.output"
local common = require "layerup.cli.common"

return {
	name = "stat", args = { { "REPO", optional = true }, "DIGEST" },
	summary = "size and location of a blob (linked into REPO, if given)",
	text = [[
Arguments in the same order as cat: REPO (optional here) before DIGEST.]],
	run = function(ctx, a)
		if a.REPO then common.need_repo(a.REPO) end
		local digest = common.need_digest(a.DIGEST)
		local store = common.open_store(ctx, a)
		local desc = out.check(store:stat(digest, a.REPO))
		store:close()
		out.record(ctx, { digest = desc.digest, size = desc.size, repo = a.REPO,
			path = common.blob_path(ctx, desc.digest) }, { "digest", "size", "repo", "path" })
		return out.EXIT.ok
	end,
}
