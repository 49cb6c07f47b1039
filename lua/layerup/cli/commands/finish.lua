-- layerup finish: complete an upload whose bytes are all there.

local out = require "layerup.cli.output"
local common = require "layerup.cli.common"
local push = require "layerup.cli.commands.push"

return {
	name = "finish", args = { "REPO", "UUID", "DIGEST" },
	summary = "complete an upload whose bytes are all there",
	text = [[
Verifies that upload UUID of REPO holds content with DIGEST (and --size
bytes, when given), moves it into the blob store and links it into REPO.
"dedup: true" when the blob was already stored.  A failed finish leaves
the upload in place.]],
	options = { { "--size=SIZE", "the size the blob must have (bytes, or with a unit)" } },
	run = function(ctx, a)
		local repo, uuid = common.need_repo(a.REPO), common.need_uuid(a.UUID)
		local digest = common.need_digest(a.DIGEST)
		local opts
		if a.opts.size then opts = { size = common.need_size(a.opts.size, "--size") } end
		local store = common.open_store(ctx, a)
		local existed = store:stat(digest) ~= nil
		local up = out.check(store:resume(repo, uuid))
		local desc, err = up:finish(digest, opts)
		if not desc then up:close() end
		out.check(desc, err)
		store:close()
		push.report(ctx, { digest = desc.digest, size = desc.size, repo = repo,
			uuid = uuid, path = common.blob_path(ctx, desc.digest), dedup = existed })
		return out.EXIT.ok
	end,
}
