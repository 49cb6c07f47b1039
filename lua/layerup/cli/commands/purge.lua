-- layerup purge: remove stale uploads.

local out = require "layerup.cli.output"
local common = require "layerup.cli.common"

return {
	name = "purge", args = {}, synopsis_tail = "--older-than DURATION [--dry-run]",
	summary = "remove uploads started longer ago than --older-than",
	text = [[
Removes every upload (including orphan directories) whose start lies more
than DURATION in the past, and stale temporary files of interrupted writes
(.lup~*) older than DURATION.  DURATION: a number with a unit s, m, h, d or w,
or a sum of them (90s, 15m, 36h, 7d, 1h30m); a bare number is seconds.

An upload that cannot be removed (held by a writer, or the store cannot
be modified) is kept and named on stderr ("kept REPO UUID: reason"), and
purge exits 1; the others are still removed.

--dry-run changes nothing.  It lists exactly the uploads a real run
started now would try to remove: past the cut-off and not held by a
writer.  It does not test whether they can be deleted (permissions, a
read-only store); a real run reports those and exits 1.]],
	options = {
		{ "--older-than=DURATION", "age cut-off (required)" },
		{ "--dry-run", "only list what would be removed", false, true },
	},
	run = function(ctx, a)
		local d = a.opts["older-than"]
		if not d then out.usage("purge needs --older-than DURATION") end
		local secs = math.ceil(common.need_duration(d, "--older-than"))
		local dry = a.opts["dry-run"] and true or false
		local kept, temps = out.array(), out.array()
		local store = common.open_store(ctx, a, { on_event = function(event, f)
			if event == "purge.skip" then
				kept[#kept + 1] = { repo = f.repo, uuid = f.uuid, reason = f.reason,
					path = f.path and common.fs_path(ctx, f.path) }
			elseif event == "purge.temporary" then
				temps[#temps + 1] = { path = common.fs_path(ctx, f.path), size = f.size,
					removed = f.removed }
			end
		end })
		local list = out.check(store:purge { older_than = secs, dry_run = dry })
		store:close()
		if ctx.json then
			local rows = common.upload_rows(list)
			out.emit_json(ctx, { dry_run = dry, uploads = rows, kept = kept, temporaries = temps })
		else
			for _, u in ipairs(list) do
				out.say(ctx, "%s %s %s  %d bytes  started %s", dry and "would remove" or "removed",
					u.repo, u.uuid, u.size or 0, out.iso_time(u.started_at))
			end
			for _, t in ipairs(temps) do
				if dry or t.removed then
					out.say(ctx, "%s temporary %s  %d bytes", dry and "would remove" or "removed",
						t.path, t.size or 0)
				end
			end
		end
		if #kept > 0 then
			for _, k in ipairs(kept) do
				if k.repo then
					out.error_line(ctx, "kept %s %s: %s", k.repo, tostring(k.uuid), tostring(k.reason))
				else
					out.error_line(ctx, "kept %s: %s", tostring(k.path), tostring(k.reason))
				end
			end
			out.error_line(ctx, "PURGE_INCOMPLETE: %d item(s) past the cut-off could not be removed", #kept)
			return out.EXIT.failed
		end
		return out.EXIT.ok
	end,
}
