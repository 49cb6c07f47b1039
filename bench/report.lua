-- bench/report.lua - turns the raw samples of bench/run into
-- bench/results.md and bench/results.json: median and spread (min-max) per
-- workload, contender and metric, ratios between contenders, and whether
-- each target of the issue is met (reported, never asserted).
--
--   lua5.4 bench/report.lua RAW.tsv MACHINE.tsv OUT.md OUT.json
--
-- RAW.tsv lines: workload \t contender \t metric \t value

local cjson = require "cjson"

local raw_path, machine_path, md_path, json_path = table.unpack(arg, 1, 4)
assert(json_path, "usage: report.lua RAW.tsv MACHINE.tsv OUT.md OUT.json")

local MiB = 1024 * 1024

-- samples[w][c][m] = {v1, v2, ...}; byrep[w][c][m][rep] = v
local samples, byrep = {}, {}
local function slot(t, w, c, m)
	t[w] = t[w] or {}
	t[w][c] = t[w][c] or {}
	t[w][c][m] = t[w][c][m] or {}
	return t[w][c][m]
end
for line in io.lines(raw_path) do
	local w, c, m, v, rep = line:match("^([^\t]+)\t([^\t]+)\t([^\t]+)\t([^\t]+)\t?([^\t]*)$")
	if w and tonumber(v) then
		table.insert(slot(samples, w, c, m), tonumber(v))
		if tonumber(rep) then slot(byrep, w, c, m)[tonumber(rep)] = tonumber(v) end
	end
end

local machine, machine_order = {}, {}
for line in io.lines(machine_path) do
	local k, v = line:match("^([^\t]+)\t(.*)$")
	if k then machine[k] = v; machine_order[#machine_order + 1] = k end
end
local SIZE = tonumber(machine.size)

local function stats(vals)
	if not vals or #vals == 0 then return nil end
	local s = {}
	for i, v in ipairs(vals) do s[i] = v end
	table.sort(s)
	local n = #s
	local med = n % 2 == 1 and s[(n + 1) // 2] or (s[n // 2] + s[n // 2 + 1]) / 2
	return { median = med, min = s[1], max = s[n], n = n, values = vals }
end

local function get(w, c, m)
	return stats(samples[w] and samples[w][c] and samples[w][c][m])
end

local function med(w, c, m)
	local s = get(w, c, m)
	return s and s.median
end

local function failed(w, c)
	return samples[w] and samples[w][c] and samples[w][c].failed and #samples[w][c].failed or 0
end

-- number formatting: a few significant digits, integers for big values
local function num(v)
	if v == nil then return "-" end
	if math.type(v) == "integer" or v == math.floor(v) then
		return ("%d"):format(math.floor(v))
	end
	local a = math.abs(v)
	if a >= 100 then return ("%.0f"):format(v)
	elseif a >= 10 then return ("%.1f"):format(v)
	elseif a >= 1 then return ("%.2f"):format(v)
	else return ("%.3f"):format(v) end
end

local function bytes(v)
	if v == nil then return "-" end
	if v >= MiB then return ("%d (%.2f MiB)"):format(math.floor(v), v / MiB) end
	return ("%d"):format(math.floor(v))
end

local function cell(s, fmt)
	if not s then return "-" end
	fmt = fmt or num
	if s.min == s.max then return fmt(s.median) end
	return ("%s (%s–%s)"):format(fmt(s.median), fmt(s.min), fmt(s.max))
end

-- What each workload shows: contenders (rows) and metrics (columns).
local WORKLOADS = {
	{ id = "limits", title = "1. Limits of this machine",
	  text = "The 1 GiB file is in the page cache. openssl-sha256: `openssl dgst -sha256` (the hashing limit); "
		.. "dd-bs8M: `dd bs=8M` to a new file (the I/O limit for 8 MiB writes); cp: `cp` to a new file.",
	  contenders = { "openssl-sha256", "dd-bs8M", "cp" },
	  metrics = { { "mb_per_s", "MB/s" }, { "seconds", "s" } } },
	{ id = "stream", title = "2. Streaming upload (one upload, 8 MiB writes, Lua API, filesystem driver)",
	  text = "Wall time from start() to the end of finish(). write-file: each 8 MiB read from the cached file "
		.. "with f:read, then upload:write; write-mem (only with STREAM_SPECS set): the 8 MiB strings are "
		.. "already in memory; read_from: upload:read_from(file, 8 MiB); -fsync: layerup.open(root, {fsync=true}).",
	  contenders = { "layerup-write-file", "layerup-write-mem", "layerup-read_from", "layerup-write-file-fsync" },
	  metrics = { { "mb_per_s", "MB/s" }, { "seconds", "s" }, { "finish_ms", "finish ms" },
		{ "cpu_user_s", "CPU user s" }, { "cpu_sys_s", "CPU sys s" } },
	  ratios = { { "mb_per_s", "limits", "openssl-sha256", "of openssl" },
		{ "mb_per_s", "limits", "dd-bs8M", "of dd" } } },
	{ id = "chunked", title = "3. Chunked upload (64 MiB chunks, close/resume between; then finish)",
	  text = "layerup: start+close, then per chunk resume + upload:read_from(file, 8 MiB, 64 MiB) (8 MiB "
		.. "writes, the way a server streams a PATCH body of known length) + close, then resume + finish, one "
		.. "process, store kept open (as a server would); layerup-write: the same with each 8 MiB read by "
		.. "f:read into a Lua string and passed to upload:write. registry: curl POST, one PATCH per chunk "
		.. "(`--data-binary @chunk`, Content-Type application/octet-stream), PUT ?digest=; each request is "
		.. "one curl process. The 2.8 filesystem driver fsyncs the data on every PATCH and PUT; layerup-fsync "
		.. "is the like-for-like contender. CPU s/GiB: user+system time of the registry process.",
	  contenders = { "layerup", "layerup-write", "layerup-fsync", "registry" },
	  metrics = { { "mb_per_s", "MB/s" }, { "seconds", "s" }, { "cpu_user_s", "CPU user s" },
		{ "cpu_sys_s", "CPU sys s" }, { "cpu_s_per_gib", "registry CPU s/GiB" } },
	  ratios = { { "mb_per_s", "chunked", "registry", "x registry" } } },
	{ id = "finish", title = "4. Finish cost of a 1 GiB upload", derived = true,
	  text = "From the runs above. layerup after chunks: a new handle (resume) then finish, i.e. the PUT "
		.. "pattern; resume+finish ms is the whole PUT. layerup streaming: finish on the handle that wrote. "
		.. "bytes re-read: the engine's own count (upload:bytes_reread / upload.finish event). rchar: "
		.. "/proc/<pid>/io read(2) bytes during finish (hash state files included; for the registry the "
		.. "HTTP request too). registry: wall time of the PUT as seen by curl (includes the HTTP round trip)." },
	{ id = "gap", title = "5. Resume with a gap (newest hash state 64 MiB behind the data)",
	  text = "layerup: upload size-64 MiB, close (state at size-64 MiB), append the last 64 MiB to the "
		.. "upload's data file with plain file I/O; then in a new process resume + finish. registry: upload "
		.. "all chunks, delete the newest hash state (2.8 keeps the older ones, so the newest left is at "
		.. "size-64 MiB), then PUT ?digest=. rchar: read(2) bytes of the process during resume+finish "
		.. "(registry: during the PUT).",
	  contenders = { "layerup", "registry" },
	  metrics = { { "total_ms", "resume+finish ms" }, { "resume_ms", "resume ms" }, { "finish_ms", "finish ms" },
		{ "bytes_reread", "bytes re-read", bytes }, { "rchar", "rchar", bytes },
		{ "restored_gap", "restored=gap" } } },
	{ id = "small", title = "6. Many small blobs (4 KiB each: start, write, finish)",
	  text = "layerup and registry: " .. (machine.small_n or "?") .. " blobs per repetition (the registry "
		.. "needs about 2 minutes per 10,000 here, so both are measured with this number); layerup-"
		.. (machine.small_n_big or "?") .. ": one extra layerup run with that many blobs. "
		.. "layerup: one Lua process, one store, start/write/finish per blob. registry: monolithic upload "
		.. "per blob = POST then PUT ?digest= with the body; all POSTs in one curl run over one kept-alive "
		.. "connection (Locations collected with -w), then all PUTs in a second curl run over one "
		.. "connection; seconds = both curl runs.",
	  contenders = { "layerup", "registry", "layerup-" .. (machine.small_n_big or "") },
	  no_ratio = { ["layerup-" .. (machine.small_n_big or "")] = true },
	  metrics = { { "uploads_per_s", "uploads/s" }, { "seconds", "s" }, { "post_batch_s", "POST batch s" },
		{ "put_batch_s", "PUT batch s" }, { "cpu_user_s", "CPU user s" }, { "cpu_sys_s", "CPU sys s" } },
	  ratios = { { "uploads_per_s", "small", "registry", "x registry" } } },
	{ id = "memory", title = "7. Memory: peak RSS of one streaming upload",
	  text = "Separate processes; the same 8 MiB Lua string written again and again (no per-write garbage), "
		.. "then finish. hwm: VmHWM of /proc/self/status at the end; base: VmRSS after loading the module "
		.. "and the block. difference: hwm(big) - hwm(64 MiB) per repetition.",
	  contenders = { "layerup-64MiB", "layerup-big", "difference" },
	  metrics = { { "hwm_kib", "peak RSS KiB" }, { "base_rss_kib", "base RSS KiB" },
		{ "hwm_diff_kib", "difference KiB" } } },
	{ id = "http-patch", title = "8. HTTP: one PATCH of the big blob + PUT, nginx host vs registry 2.8",
	  text = "bin/layerup serve with one worker (nginx + LuaJIT + layerup.oci) against docker-registry 2.8, "
		.. "fresh store and server per run. curl -T: Content-Length (cl) or Transfer-Encoding: chunked; "
		.. "seconds from the PATCH to the PUT's answer. CPU s/GiB: user+system time of the nginx worker "
		.. "(all its threads) or of the registry process; RSS: its VmHWM at the end. client CPU s: "
		.. "user+system time of the curl that sent the PATCH (the same client, file and requests for "
		.. "both servers, repetitions interleaved).",
	  contenders = { "layerup-nginx-cl", "registry-cl", "layerup-nginx-chunked", "registry-chunked" },
	  metrics = { { "mb_per_s", "MB/s" }, { "seconds", "s" }, { "cpu_s_per_gib", "server CPU s/GiB" },
		{ "rss_mib", "server peak RSS MiB" }, { "client_cpu_s", "client CPU s" } } },
	{ id = "http-skopeo", title = "9. HTTP: skopeo copy of a 5-layer image (oci: layout -> server)",
	  text = "Five uncompressed layers of min(BENCH_SIZE/10, 100 MiB) each, --preserve-digests, "
		.. "one fresh server and store per run. server CPU s: user+system time of the nginx worker or the "
		.. "registry during the copy; skopeo CPU s: user+system time of skopeo itself (it reads and "
		.. "hashes every layer, whatever the server).",
	  contenders = { "layerup-nginx", "registry" },
	  metrics = { { "seconds", "s" }, { "server_cpu_s", "server CPU s" }, { "client_cpu_s", "skopeo CPU s" } } },
	{ id = "http-small", title = "10. HTTP: many small blobs (POST + PUT ?digest= over keep-alive)",
	  text = "4 KiB blobs: all POSTs in one curl run over one kept-alive connection, then all PUTs (body "
		.. "and digest) in a second; the same requests to both servers.",
	  contenders = { "layerup-nginx", "registry" },
	  metrics = { { "uploads_per_s", "uploads/s" }, { "seconds", "s" } },
	  ratios = { { "uploads_per_s", "http-small", "registry", "x registry" } } },
	{ id = "http-latency", title = "11. HTTP: GET /v2/ latency on the worker that receives a big PATCH",
	  text = "One nginx worker; a new connection every ~10 ms while a Content-Length PATCH of the big blob "
		.. "streams into the same worker (the blocking budget of the inline body loop made visible).",
	  contenders = { "layerup-nginx" },
	  metrics = { { "p50_ms", "p50 ms" }, { "p99_ms", "p99 ms" }, { "max_ms", "max ms" }, { "probes", "probes" } } },
}

-- Ratio a/b per repetition (both measured in the same repetition, a few
-- seconds apart), summarised like any other metric.
local function ratio_stats(w, c, m, rw, rc)
	local A = byrep[w] and byrep[w][c] and byrep[w][c][m]
	local B = byrep[rw] and byrep[rw][rc] and byrep[rw][rc][m]
	if not A or not B then return nil end
	local r = {}
	for rep, a in pairs(A) do
		if B[rep] and B[rep] ~= 0 then r[#r + 1] = a / B[rep] end
	end
	return stats(r)
end

local function ratio_of(w, c, m, rw, rc)
	local s = ratio_stats(w, c, m, rw, rc)
	return s and s.median
end

local function rfmt(v) return ("%.2f"):format(v) end

local md = {}
local function p(fmt, ...) md[#md + 1] = select("#", ...) > 0 and fmt:format(...) or fmt end

local result = { machine = {}, unit = "1 MB = 10^6 bytes; MiB/GiB = 2^20/2^30 bytes",
	workloads = {}, targets = {} }
for _, k in ipairs(machine_order) do result.machine[k] = machine[k] end

p("# layerup benchmark results")
p("")
p("Generated by `make bench` (bench/run) on %s. Units: **1 MB = 10^6 bytes** (MB/s); MiB and GiB are "
	.. "2^20 and 2^30 bytes. Each cell: median (min–max) over the repetitions; every contender of a "
	.. "workload was measured in the same run, interleaved repetition by repetition. Ratios are taken "
	.. "per repetition (numbers measured seconds apart), then summarised the same way.", machine.date or "?")
p("")
p("Noise: on this VM, writing into memory the guest has not touched recently costs a host page fault "
	.. "per page (free page reporting hands freed guest pages back to the host), so writing 1 GiB into "
	.. "the page cache takes anywhere from ~0.3 s to ~4 s depending on what the host did. It hits every "
	.. "contender that writes (dd, layerup, registry) and not openssl; look at the spread and at the "
	.. "per-repetition ratios, and at the CPU user seconds, which it does not affect.")
p("")
p("| machine | |")
p("|---|---|")
for _, k in ipairs({ "nproc", "cpu", "memory", "kernel", "bench_fs", "layerup", "docker-registry",
	"openssl", "lua", "curl" }) do
	if machine[k] then p("| %s | %s |", k, machine[k]) end
end
p("| big blob | %s bytes; %s repetitions (small blobs: %s x %s blobs) |", machine.size or "?",
	machine.reps or "?", machine.small_reps or "?", machine.small_n or "?")
p("| run time | %s s |", num(tonumber(machine.run_seconds)))
if machine.load then p("| load average (1, 5, 15 min) before / after | %s |", machine.load) end
if machine.earlier then
	p("| from an earlier run | %s (a BENCH_ONLY run replaces only the workloads it measures) |",
		machine.earlier)
end
p("")



local function finish_table(jw)
	p("| contender | finish ms | resume+finish ms | bytes re-read | rchar |")
	p("|---|---|---|---|---|")
	local rows = {
		{ "layerup after chunks (resume + finish)", "chunked", "layerup", "finish_ms", "put_ms",
		  "finish_bytes_reread", "finish_rchar" },
		{ "layerup-fsync after chunks", "chunked", "layerup-fsync", "finish_ms", "put_ms",
		  "finish_bytes_reread", "finish_rchar" },
		{ "layerup streaming (same handle)", "stream", "layerup-write-file", "finish_ms", nil,
		  "finish_bytes_reread", "finish_rchar" },
		{ "layerup streaming, fsync", "stream", "layerup-write-file-fsync", "finish_ms", nil,
		  "finish_bytes_reread", "finish_rchar" },
		{ "registry PUT after PATCHes", "chunked", "registry", nil, "put_ms", nil, "finish_rchar" },
	}
	for _, r in ipairs(rows) do
		local label, w, c = r[1], r[2], r[3]
		local f = r[4] and get(w, c, r[4])
		local rf = r[5] and get(w, c, r[5])
		local br = r[6] and get(w, c, r[6])
		local rc = r[7] and get(w, c, r[7])
		p("| %s | %s | %s | %s | %s |", label, cell(f), cell(rf), cell(br, bytes), cell(rc, bytes))
		jw.contenders[label] = { finish_ms = f, resume_finish_ms = rf, bytes_reread = br, rchar = rc }
	end
end

for _, W in ipairs(WORKLOADS) do
	local jw = { title = W.title, description = W.text, contenders = {}, ratios = {} }
	result.workloads[W.id] = jw
	p("## %s", W.title)
	p("")
	p("%s", W.text)
	p("")
	if not samples[W.id] and not W.derived then
		p("Not measured (BENCH_ONLY left it out, or its tools are missing).")
	elseif W.derived then
		finish_table(jw)
	else
		local hdr, sep = { "contender" }, { "---" }
		local present = {}
		for _, m in ipairs(W.metrics) do
			local any = false
			for _, c in ipairs(W.contenders) do if get(W.id, c, m[1]) then any = true end end
			if any then present[#present + 1] = m; hdr[#hdr + 1] = m[2]; sep[#sep + 1] = "---" end
		end
		for _, r in ipairs(W.ratios or {}) do hdr[#hdr + 1] = "ratio " .. r[4]; sep[#sep + 1] = "---" end
		p("| %s |", table.concat(hdr, " | "))
		p("|%s|", table.concat(sep, "|"))
		for _, c in ipairs(W.contenders) do
			if samples[W.id] and samples[W.id][c] then
				local row = { c }
				local jc = { metrics = {}, failed = failed(W.id, c) }
				for _, m in ipairs(present) do
					local s = get(W.id, c, m[1])
					row[#row + 1] = cell(s, m[3])
					jc.metrics[m[1]] = s
				end
				for _, r in ipairs(W.ratios or {}) do
					local x = (r[2] ~= W.id or r[3] ~= c) and not (W.no_ratio and W.no_ratio[c])
						and ratio_stats(W.id, c, r[1], r[2], r[3]) or nil
					row[#row + 1] = cell(x, rfmt)
					if x then
						jw.ratios[#jw.ratios + 1] = { contender = c, metric = r[1],
							versus = r[2] .. "/" .. r[3], ratio = x }
					end
				end
				if jc.failed > 0 then row[1] = c .. " (**" .. jc.failed .. " failed**)" end
				p("| %s |", table.concat(row, " | "))
				jw.contenders[c] = jc
			end
		end
	end
	p("")
end

-- ------------------------------------------------------------ targets
local function all_eq(w, c, m, want)
	local s = samples[w] and samples[w][c] and samples[w][c][m]
	if not s or #s == 0 then return nil end
	for _, v in ipairs(s) do if v ~= want then return false end end
	return true
end

local targets = {}
local function target(name, want, have, met)
	targets[#targets + 1] = { name = name, target = want, value = have, met = met }
end

-- The targets are judged on the engine's own streaming path (read_from: the
-- file is read into the engine's buffers); the f:read + upload:write
-- variants, which add the interpreter's string copies and 8 MiB
-- allocations, are shown beside them.
local function fmt(v, unit)
	return v and ("%.2f%s"):format(v, unit) or "-"
end
do
	local x = ratio_of("stream", "layerup-read_from", "mb_per_s", "limits", "openssl-sha256")
	local y = ratio_of("stream", "layerup-write-file", "mb_per_s", "limits", "openssl-sha256")
	target("streaming, fsync off, vs openssl sha256", ">= 0.85 of openssl rate",
		x and ("%s (read_from); %s (f:read + write)"):format(fmt(x, ""), fmt(y, "")),
		x and x >= 0.85)
end
do
	local x = ratio_of("chunked", "layerup", "mb_per_s", "chunked", "registry")
	local w = ratio_of("chunked", "layerup-write", "mb_per_s", "chunked", "registry")
	local y = ratio_of("chunked", "layerup-fsync", "mb_per_s", "chunked", "registry")
	target("chunked upload vs registry", ">= 3x registry MB/s",
		x and ("%s (read_from, fsync off); %s (f:read + write); %s (fsync on)"):format(
			fmt(x, "x"), fmt(w, "x"), fmt(y, "x")),
		x and x >= 3)
end
do
	local f = med("chunked", "layerup", "finish_ms")
	local z = all_eq("chunked", "layerup", "finish_bytes_reread", 0)
	local zs = all_eq("stream", "layerup-write-file", "finish_bytes_reread", 0)
	target("finish of a 1 GiB upload (after resume)", "< 10 ms, 0 bytes re-read",
		f and ("%s ms median; re-read 0 in every run: %s (streaming: %s)"):format(num(f), tostring(z),
			tostring(zs)),
		(function()
			if f == nil or z == nil then return nil end
			return f < 10 and z
		end)())
end
do
	local s = get("gap", "layerup", "bytes_reread")
	local gap = 64 * MiB
	local ok = all_eq("gap", "layerup", "bytes_reread", gap)
	local rc = med("gap", "layerup", "rchar")
	target("resume with a 64 MiB gap", "re-reads only the gap (67108864 bytes)",
		s and ("%s re-read (rchar %s)"):format(cell(s, bytes), bytes(rc)), ok)
end
do
	local x = ratio_of("small", "layerup", "uploads_per_s", "small", "registry")
	target("many small blobs vs registry", ">= 5x registry uploads/s",
		x and ("%.2fx"):format(x), x and x >= 5)
end
do
	local d = med("memory", "difference", "hwm_diff_kib")
	target("peak RSS, 1 GiB minus 64 MiB upload", "<= 2048 KiB",
		d and ("%s KiB"):format(num(d)), d and d <= 2048)
end

do
	local x = ratio_of("http-patch", "layerup-nginx-cl", "mb_per_s", "http-patch", "registry-cl")
	local y = ratio_of("http-patch", "layerup-nginx-chunked", "mb_per_s", "http-patch", "registry-chunked")
	target("HTTP PATCH of 1 GiB, nginx host vs registry", ">= 3x registry MB/s",
		x and ("%s (Content-Length); %s (chunked)"):format(fmt(x, "x"), fmt(y, "x")),
		x and y and x >= 3 and y >= 3)
	local cx = ratio_of("http-patch", "layerup-nginx-cl", "cpu_s_per_gib", "http-patch", "registry-cl")
	local cy = ratio_of("http-patch", "layerup-nginx-chunked", "cpu_s_per_gib", "http-patch", "registry-chunked")
	target("HTTP PATCH server CPU per GiB vs registry", "<= 1/3 of registry",
		cx and ("%s (Content-Length); %s (chunked)"):format(fmt(cx, "x"), fmt(cy, "x")),
		cx and cy and cx <= 1 / 3 and cy <= 1 / 3)
	local m1 = med("http-patch", "layerup-nginx-cl", "rss_mib")
	local m2 = med("http-patch", "layerup-nginx-chunked", "rss_mib")
	target("nginx worker peak RSS during a 1 GiB PATCH", "< 64 MiB",
		m1 and ("%s MiB (Content-Length); %s MiB (chunked)"):format(num(m1), num(m2 or 0)),
		m1 and m2 and m1 < 64 and m2 < 64)
	local sk = ratio_of("http-skopeo", "registry", "seconds", "http-skopeo", "layerup-nginx")
	target("skopeo copy of 5 layers, nginx host vs registry", ">= 2x faster",
		sk and ("%s faster"):format(fmt(sk, "x")), sk and sk >= 2)
	local sm = ratio_of("http-small", "layerup-nginx", "uploads_per_s", "http-small", "registry")
	target("small blobs over HTTP vs registry", "reported", sm and ("%s"):format(fmt(sm, "x")), nil)
	local p50, p99 = med("http-latency", "layerup-nginx", "p50_ms"), med("http-latency", "layerup-nginx", "p99_ms")
	target("GET /v2/ latency on a worker receiving 1 GiB", "reported (p50 / p99)",
		p50 and ("%s / %s ms"):format(num(p50), num(p99)), nil)
end

p("## Targets")
p("")
p("Reported, not asserted.")
p("")
p("| target | wanted | measured | met |")
p("|---|---|---|---|")
for _, t in ipairs(targets) do
	local met = t.met == nil and "not measured" or (t.met and "**yes**" or "**no**")
	p("| %s | %s | %s | %s |", t.name, t.target, t.value or "-", met)
	result.targets[#result.targets + 1] = { name = t.name, target = t.target, measured = t.value or cjson.null,
		met = t.met == nil and cjson.null or t.met }
end
p("")
if SIZE and SIZE ~= 1073741824 then
	p("Note: this run used a %d-byte big blob instead of 1 GiB (BENCH_SIZE).", SIZE)
	p("")
end

local f = assert(io.open(md_path, "w"))
f:write(table.concat(md, "\n"), "\n")
f:close()

cjson.encode_number_precision(12)
cjson.encode_sparse_array(true)
f = assert(io.open(json_path, "w"))
f:write(cjson.encode(result), "\n")
f:close()
io.write(table.concat(md, "\n"), "\n")
