-- layerup cat: a blob's bytes to stdout or a file.

local out = require "layerup.cli.output"
local common = require "layerup.cli.common"

local PIECE = 1048576

return {
	name = "cat", args = { "REPO", "DIGEST" },
	summary = "write a blob linked into REPO to stdout (or -o FILE)",
	text = [[
Refuses to write a binary blob (one with a NUL byte in its first MiB) to a
terminal; use -o FILE, or -o - to write to stdout anyway.]],
	options = { { "-o, --output=FILE", "write to FILE instead of stdout (- = stdout)" } },
	run = function(ctx, a)
		local repo, digest = common.need_repo(a.REPO), common.need_digest(a.DIGEST)
		local store = common.open_store(ctx, a)
		local r = out.check(store:open(repo, digest))
		local dest, file = ctx.out, a.opts.output
		local guard = file == nil and ctx.tty_out()
		if file and file ~= "-" then
			local f, msg = io.open(file, "wb")
			if not f then
				r:close()
				out.fail(out.EXIT.failed, "IO", "cannot write " .. msg)
			end
			dest = f
		end
		local ok, err = pcall(function()
			while true do
				local s, rerr = r:read(PIECE)
				if s == nil then
					if rerr then out.check(nil, rerr) end
					break
				end
				if guard then
					if s:find("\0", 1, true) then
						out.fail(out.EXIT.failed, "BINARY", "the blob is binary and stdout is a terminal; use -o FILE (or -o - to write it anyway)")
					end
					guard = false
				end
				local w, werr = dest:write(s)
				if not w then out.fail(out.EXIT.failed, "IO", "writing: " .. tostring(werr)) end
			end
		end)
		r:close()
		if dest ~= ctx.out then dest:close() end
		store:close()
		if not ok then error(err, 0) end
		return out.EXIT.ok
	end,
}
