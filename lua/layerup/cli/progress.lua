-- layerup.cli.progress: the progress line of push and resume on stderr
-- (bar, bytes, rate, ETA).  Shown when stderr is a terminal, or always with
-- --progress; never with --no-progress or --quiet.

local out = require "layerup.cli.output"

local M = {}

local function clock()
	local ok, system = pcall(require, "system")
	if ok and type(system) == "table" and system.monotime then
		return system.monotime
	end
	return os.time
end

-- progress(ctx, total, start) -> show(done [, final]); total may be nil
-- (a pipe: no bar and no ETA).
function M.new(ctx, total, start)
	if not ctx.show_progress() then return function() end end
	local now = clock()
	local t0, last, width = now(), nil, 0
	return function(done, final)
		local t = now()
		if not final and last and t - last < 0.2 then return end
		last = t
		local rate = t > t0 and (done - start) / (t - t0) or 0
		local line
		if total and total > 0 then
			local frac = math.min(done / total, 1)
			local fill = math.floor(frac * 24 + 0.5)
			local eta = "--:--"
			if rate > 0 then
				local s = math.floor((total - done) / rate + 0.5)
				eta = ("%d:%02d"):format(math.floor(s / 60), s % 60)
			end
			line = ("[%s%s] %3d%% %s / %s  %s/s  ETA %s"):format(
				("#"):rep(fill), ("."):rep(24 - fill), math.floor(frac * 100),
				out.human(done), out.human(total), out.human(rate), eta)
		else
			line = ("%s  %s/s"):format(out.human(done), out.human(rate))
		end
		local pad = math.max(width - #line, 0)
		width = #line
		ctx.err:write("\r", line, (" "):rep(pad), final and "\n" or "")
	end
end

return M
