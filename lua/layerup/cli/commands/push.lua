-- layerup push: upload FILE (or stdin) as a blob of REPO.

local out = require "layerup.cli.output"
local common = require "layerup.cli.common"
local transfer = require "layerup.cli.transfer"

local check = out.check

local function report(ctx, r)
	out.record(ctx, r, { "digest", "size", "repo", "uuid", "path", "dedup", "mounted" })
end

-- The blob is already stored: link it into REPO (a mount from the store)
-- without reading FILE again.  Returns the result, or nil to upload.
local function existing(ctx, store, repo, file, size)
	local L = common.lib(ctx)
	local digest, n = L.digest_file(file)
	if not digest or (size and n ~= size) then return nil end
	local desc = store:stat(digest, repo)
	local mounted = false
	if not desc then
		desc = store:stat(digest)
		if not desc then return nil end
		check(store:link(repo, digest))
		mounted = true
	end
	return { digest = desc.digest or digest, size = desc.size, repo = repo,
		path = common.blob_path(ctx, desc.digest or digest), dedup = true, mounted = mounted }
end

return {
	name = "push", args = { "REPO", "FILE" },
	summary = "upload FILE (- for stdin) as a blob of REPO (chunked, resumable)",
	text = [[
Uploads FILE into the store at ROOT and links it into repository REPO.
When the blob is already linked into REPO, or stored for another
repository (then it is linked, a mount), nothing is transferred and
"dedup: true" is reported; --force uploads anyway.  FILE "-" reads
standard input; a pipe has no size check, no ETA and no dedup check.
A directory or an unreadable FILE fails before any upload is created.

The upload is closed and resumed every --chunk bytes, so an interruption
loses at most one chunk.  Ctrl-C, SIGTERM and SIGHUP keep the upload and
print the exact resume command (exit 130).]],
	options = {
		{ "--chunk=SIZE", "close and resume the upload every SIZE bytes (4MiB, 512KiB, 8M)", transfer.DEFAULT_CHUNK },
		{ "--resume=UUID", "continue this upload instead of starting a new one" },
		{ "--force", "upload even when the blob is already stored", false, true },
	},
	run = function(ctx, a)
		local repo = common.need_repo(a.REPO)
		local chunk = common.need_size(a.opts.chunk, "--chunk")
		if chunk < 1 then out.usage("bad --chunk: must be at least 1 byte") end
		local uuid = a.opts.resume and common.need_uuid(a.opts.resume)
		local f, size = transfer.open_input(ctx, a.FILE)
		local store = common.open_store(ctx, a, { create = true })
		if not uuid and not a.opts.force and a.FILE ~= "-" and size then
			local r = existing(ctx, store, repo, a.FILE, size)
			if r then
				f:close()
				store:close()
				report(ctx, r)
				return out.EXIT.ok
			end
		end
		local up
		if uuid then
			up = check(store:resume(repo, uuid))
		else
			-- The expected size lets an admission policy refuse a push that
			-- is too large before any byte is written.
			up = check(store:start(repo, size and { size = size } or nil))
		end
		local p = { store = store, repo = repo, file = a.FILE, f = f,
			size = size, chunk = chunk, up = up, uuid = up.uuid, resumed = uuid ~= nil }
		if ctx.tty_err() then
			out.note(ctx, "upload %s started; to resume after a crash: %s", up.uuid,
				transfer.resume_hint(ctx, p))
		end
		local r = transfer.guarded(ctx, p)
		if f ~= ctx.stdin then f:close() end
		store:close()
		report(ctx, r)
		return out.EXIT.ok
	end,
	report = report,
}
