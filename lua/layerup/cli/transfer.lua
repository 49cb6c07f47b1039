-- layerup.cli.transfer: copying a file (or stdin) into an upload for push
-- and resume: chunked with checkpoints, hashed while read, resumable on
-- any failure or interrupt, with the hint to resume (or to cancel when the
-- upload cannot belong to the file).

local out = require "layerup.cli.output"
local common = require "layerup.cli.common"
local progress = require "layerup.cli.progress"

local M = {}
local EXIT = out.EXIT
local check = out.check

M.PIECE = 1048576           -- bytes per read and write call
M.DEFAULT_CHUNK = "16MiB"   -- push closes and resumes this often

-- FILE ("-" = stdin) opened for reading, and its size when it has one.
-- Fails (exit 1) for a missing, unreadable or directory FILE, so that no
-- upload is ever created for it.
function M.open_input(ctx, path)
	if path == "-" then return ctx.stdin, nil end
	local f, msg = io.open(path, "rb")
	if not f then out.fail(EXIT.failed, "IO", "cannot open " .. msg) end
	local _, rerr, errno = f:read(0)
	if errno == 21 then
		f:close()
		out.fail(EXIT.failed, "IO", ("cannot read %s: it is a directory"):format(path))
	elseif rerr then
		f:close()
		out.fail(EXIT.failed, "IO", ("cannot read %s: %s"):format(path, rerr))
	end
	-- Pipes and FIFOs have no size: then no ETA and no size check.
	local size = f:seek("end")
	if size then f:seek("set", 0) end
	return f, size
end

local function read_piece(f, n, path)
	local s, msg = f:read(n)
	if s == nil and msg then out.fail(EXIT.failed, "IO", ("reading %s: %s"):format(path, msg)) end
	return s
end

local function q(s) return out.shell_quote(s) end

function M.resume_hint(ctx, p)
	return ("%s resume %s %s %s %s"):format(q(ctx.prog), q(ctx.root), q(p.repo), p.uuid, q(p.file))
end

function M.cancel_hint(ctx, p)
	return ("%s cancel %s %s %s"):format(q(ctx.prog), q(ctx.root), q(p.repo), p.uuid)
end

-- Copy p.f into the upload p.up (which holds p.up:size() bytes of it
-- already), closing and resuming every p.chunk bytes, then finish.
local function transfer(ctx, p)
	local L = common.lib(ctx)
	local h = check(L.hasher("sha256"))

	-- The bytes already in the upload: skip them in FILE, but hash them.
	local done = p.up:size()
	if p.size and done > p.size then
		p.mismatch = true
		out.fail(EXIT.failed, "SIZE_INVALID", ("upload %s holds %d bytes, more than %s has (%d)")
			:format(p.uuid, done, p.file, p.size))
	end
	local left = done
	while left > 0 do
		local s = read_piece(p.f, math.min(M.PIECE, left), p.file)
		if not s then
			p.mismatch = true
			out.fail(EXIT.failed, "SIZE_INVALID", ("upload %s holds %d bytes, more than %s has")
				:format(p.uuid, done, p.file))
		end
		h:update(s)
		left = left - #s
	end

	local show = progress.new(ctx, p.size, done)
	local since = 0
	while true do
		local s = read_piece(p.f, math.min(M.PIECE, p.chunk - since), p.file)
		if not s then break end
		h:update(s)
		check(p.up:write(s))
		done, since = done + #s, since + #s
		show(done)
		if since >= p.chunk then
			-- Checkpoint: persist the hash state and pick the upload up again,
			-- as a client that disconnects between chunks would.
			check(p.up:close())
			p.up = check(p.store:resume(p.repo, p.uuid))
			if p.up:size() ~= done then
				out.fail(EXIT.failed, "BLOB_UPLOAD_INVALID", ("upload %s holds %d bytes after resume, expected %d")
					:format(p.uuid, p.up:size(), done))
			end
			since = 0
		end
	end
	show(done, true)

	local digest = h:digest()
	local existed = p.store:stat(digest) ~= nil
	local opts = p.size and { size = p.size } or nil
	local desc, err = p.up:finish(digest, opts)
	if not desc then
		-- The upload held bytes that are not the start of FILE (resume with
		-- another file): resuming again cannot help.
		if p.resumed and type(err) == "table" and err.code == "DIGEST_INVALID" then
			p.mismatch = true
			out.fail(EXIT.failed, "DIGEST_INVALID", ("upload %s does not hold the start of %s (its content does not hash to %s)")
				:format(p.uuid, p.file, digest))
		end
		check(desc, err)
	end
	return {
		digest = desc.digest or digest,
		size = desc.size or done,
		repo = p.repo,
		uuid = p.uuid,
		path = common.blob_path(ctx, desc.digest or digest),
		dedup = existed,
	}
end

-- Run transfer; on failure or interrupt keep the upload resumable and say
-- how (or say to cancel it when it does not belong to FILE).
function M.guarded(ctx, p)
	p.uuid = p.up.uuid
	local ok, res = pcall(transfer, ctx, p)
	if ok then return res end
	local okc, size = pcall(p.up.size, p.up)
	pcall(p.up.close, p.up)
	local hint = "to resume: " .. M.resume_hint(ctx, p)
	if out.is_interrupt(res) then
		if ctx.show_progress() then ctx.err:write("\n") end
		out.fail(EXIT.interrupted, "INTERRUPTED",
			("upload %s closed at %s bytes"):format(p.uuid, okc and size or "?"), hint)
	end
	if out.is_failure(res) then
		if p.mismatch then
			res.hint = ("upload %s does not belong to %s; remove it with: %s")
				:format(p.uuid, p.file, M.cancel_hint(ctx, p))
		else
			res.hint = ("upload %s kept; %s"):format(p.uuid, hint)
		end
	end
	error(res, 0)
end

return M
