-- spec/helpers/cli.lua - running `layerup` in-process and as a program in
-- specs, plus scratch directories and file helpers.

local cli = require "layerup.cli"

local H = {}

-- A file-like sink that keeps what is written.
function H.sink()
	local s = { parts = {} }
	function s:write(...)
		for i = 1, select("#", ...) do self.parts[#self.parts + 1] = tostring(select(i, ...)) end
		return self
	end
	function s:text() return table.concat(self.parts) end
	return s
end

-- run{args...} [, {env = {NAME = value}, layerup = module, tty = bool or
-- {stdout=, stderr=}, stdin = file, prog = name}] -> exit code, stdout, stderr
function H.run(args, opts)
	opts = opts or {}
	local out, err = H.sink(), H.sink()
	local env = opts.env or {}
	local code = cli.run(args, {
		stdout = out, stderr = err, isatty = opts.tty or false,
		getenv = function(k) return env[k] end,
		layerup = opts.layerup, stdin = opts.stdin, prog = opts.prog,
	})
	return code, out:text(), err:text()
end

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
H.quote = q

function H.sh(cmd)
	local ok, how, code = os.execute(cmd)
	if how == "signal" then return 128 + code end
	return ok and 0 or code
end

-- Run bin/layerup as a program (stdin from the file stdin, default
-- /dev/null): exit code, stdout, stderr.
function H.exec(args, env_prefix, stdin)
	local dir = H.tmpdir()
	local parts = {}
	for i, a in ipairs(args) do parts[i] = q(a) end
	local code = H.sh(("%s bin/layerup %s >%s/out 2>%s/err <%s"):format(
		env_prefix or "", table.concat(parts, " "), dir, dir, q(stdin or "/dev/null")))
	local out, err = H.read(dir .. "/out"), H.read(dir .. "/err")
	H.rm(dir)
	return code, out, err
end

function H.tmpdir()
	local p = os.tmpname()
	os.remove(p)
	assert(H.sh("mkdir -p " .. q(p)) == 0)
	return p
end

function H.rm(p) H.sh("rm -rf " .. q(p)) end

function H.read(path)
	local f = io.open(path, "rb")
	if not f then return nil end
	local s = f:read("a")
	f:close()
	return s
end

function H.write(path, data)
	assert(H.sh("mkdir -p " .. q(path:match("^(.*)/[^/]*$") or ".")) == 0)
	local f = assert(io.open(path, "wb"))
	assert(f:write(data))
	f:close()
end

-- Deterministic bytes that do not repeat within a chunk.
function H.bytes(n, seed)
	local t, x = {}, seed or 7
	for i = 1, n do
		x = (x * 1103515245 + 12345) & 0x7fffffff
		t[i] = string.char((x >> 16) & 0xff)
	end
	return table.concat(t)
end

-- The scratch of a CLI suite: a store root, 5000 bytes of data and an
-- input file holding them (beside the root).  root, file, data.
function H.scratch()
	local root = H.tmpdir()
	local data = H.bytes(5000, 11)
	local file = root .. "-input.bin"
	H.write(file, data)
	return root, file, data
end

function H.unscratch(root, file)
	H.rm(root)
	os.remove(file)
end

-- The blob file of digest in the store at root.
function H.blob_file(root, digest)
	return root .. require("helpers.stores").blob_path(digest)
end

-- An upload left open in the store at root, holding data: its uuid.
function H.open_upload(root, repo, data)
	local store = assert(require("layerup").open(root))
	local up = assert(store:start(repo))
	if data and #data > 0 then assert(up:write(data)) end
	assert(up:close())
	local uuid = up.uuid
	store:close()
	return uuid
end

-- bin/layerup push of file (300000 bytes it writes first) into the store
-- at root, sent signal sig (TERM, INT, ...) halfway.  A FIFO paces the
-- input: the signal arrives while push waits for bytes, so it lands
-- mid-upload without any timing assumption.  Exit code, the bytes; stderr
-- is in root/err.
function H.interrupted_push(root, file, sig)
	local big = H.bytes(300000, 3)
	H.write(file, big)
	local fifo = root .. "/fifo"
	local script = ([[
		mkfifo %s || exit 99
		bin/layerup push %s demo/app %s --chunk 65536 >%s/out 2>%s/err &
		pid=$!
		exec 3>%s
		head -c 150000 %s >&3
		kill -%s $pid
		tail -c +150001 %s >&3
		exec 3>&-
		wait $pid
	]]):format(q(fifo), q(root), q(fifo), q(root), q(root), q(fifo), q(file), sig, q(file))
	return H.sh("bash -c " .. q(script)), big
end

return H
