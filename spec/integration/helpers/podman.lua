-- Runs podman against the local test hosts without touching the user's
-- podman state: no daemon, its own storage root and runroot (vfs driver,
-- cgroupfs, file events), HOME/XDG dirs, an empty registries.conf and
-- containers.conf, a permissive signature policy, no auth file, and a
-- temp dir, all under the test's directory.
--
-- As root, containers/image keeps its blob-info cache (which blob digest
-- lives in which registry repository) in /var/lib/containers/cache, a path
-- no flag moves.  So every podman command runs in a private mount
-- namespace (`unshare -m`) with a private directory bound over
-- /var/lib/containers (or over /var/lib when that does not exist yet).
-- Without that isolation the podman specs are skipped, with the reason.
-- Rootless, the cache is under $HOME, which is private already.

local util = require "integration.helpers.util"
local q = util.q

local M = {}

local function is_root()
	local out = util.run("id -u")
	return out:match("^%s*0%s*$") ~= nil
end

-- Where the private blob-info cache directory goes (see above).
local function cache_target()
	local _, rc = util.run("test -d /var/lib/containers")
	if rc == 0 then
		return "/var/lib/containers"
	end
	return "/var/lib"
end

-- The command prefix that runs argv in the private mount namespace.
local function wrapper(dir)
	if not is_root() then
		return ""
	end
	local priv = dir .. "/varlib"
	util.mkdirp(priv)
	return ("unshare -m sh -c %s sh %s %s "):format(
		q('mount --bind "$1" "$2" || exit 125; shift 2; exec "$@"'), q(priv), q(cache_target()))
end

-- Why a containers/image tool cannot get a private blob-info cache here,
-- or nil (also nil when not root: the cache is under $HOME then).
local isolation_problem
function M.isolation_unavailable()
	if isolation_problem ~= nil then
		return isolation_problem or nil
	end
	isolation_problem = false
	if is_root() then
		if not util.have("unshare") then
			isolation_problem = "unshare (util-linux) missing"
		else
			local dir = util.tmpdir("podman-probe")
			local out, rc = util.run(wrapper(dir) .. "true 2>&1")
			util.rmrf(dir)
			if rc ~= 0 then
				isolation_problem = "cannot bind a private /var/lib/containers in a mount namespace ("
					.. out:gsub("%s+$", "") .. ")"
			end
		end
	end
	return isolation_problem or nil
end

-- The command prefix that runs a containers/image tool (skopeo, podman)
-- with its blob-info cache under dir, or "" when that is not possible.
function M.private_cache_prefix(dir)
	if M.isolation_unavailable() then
		return ""
	end
	return wrapper(dir)
end

-- Why podman cannot run here (isolated), or nil.
function M.unavailable()
	if not util.have("podman") then
		return "podman not installed (Debian: podman)"
	end
	local why = M.isolation_unavailable()
	if why then
		return why .. ": podman would write the system's blob-info cache"
	end
	if not is_root() then
		-- Rootless podman needs user namespaces and subordinate ids.
		local dir = util.tmpdir("podman-probe")
		local out, rc = M.new(dir)("info --format '{{.Host.Arch}}'")
		util.rmrf(dir)
		if rc ~= 0 then
			return "rootless podman does not run here: " .. out:gsub("%s+$", ""):sub(1, 200)
		end
	end
	return nil
end

-- podman --version's number, e.g. "4.3.1".
function M.version()
	local out = util.run("podman --version 2>/dev/null")
	return out:match("(%d+%.%d+[%.%d]*)")
end

-- A podman runner whose state lives under dir.  runner(args) -> output, rc
-- (stderr included); args is a string of already-quoted arguments.
function M.new(dir)
	for _, d in ipairs { "root", "run", "tmp", "home", "config", "data" } do
		util.mkdirp(dir .. "/" .. d)
	end
	util.write_file(dir .. "/registries.conf", "")
	util.write_file(dir .. "/containers.conf", "")
	util.write_file(dir .. "/auth.json", '{"auths":{}}')
	util.write_file(dir .. "/policy.json", '{"default":[{"type":"insecureAcceptAnything"}]}')
	util.write_file(dir .. "/storage.conf", ('[storage]\ndriver = "vfs"\nrunroot = "%s"\ngraphroot = "%s"\n')
		:format(dir .. "/run", dir .. "/root"))
	local env = ("env HOME=%s XDG_RUNTIME_DIR=%s XDG_CONFIG_HOME=%s XDG_DATA_HOME=%s TMPDIR=%s "
		.. "CONTAINERS_REGISTRIES_CONF=%s CONTAINERS_CONF=%s CONTAINERS_STORAGE_CONF=%s REGISTRY_AUTH_FILE=%s ")
		:format(q(dir .. "/home"), q(dir .. "/run"), q(dir .. "/config"), q(dir .. "/data"), q(dir .. "/tmp"),
			q(dir .. "/registries.conf"), q(dir .. "/containers.conf"), q(dir .. "/storage.conf"),
			q(dir .. "/auth.json"))
	local base = ("%s%spodman --root %s --runroot %s --storage-driver vfs --cgroup-manager cgroupfs "
		.. "--events-backend file --tmpdir %s ")
		:format(env, wrapper(dir), q(dir .. "/root"), q(dir .. "/run"), q(dir .. "/tmp"))
	local self = { dir = dir, policy = dir .. "/policy.json" }
	setmetatable(self, { __call = function(_, args)
		return util.run(base .. args .. " 2>&1 </dev/null")
	end })
	return self
end

-- An image in pm's storage, pulled from a fresh OCI layout whose layers
-- are real gzip'd tars of the given sizes (integration.helpers.oci
-- generate_tar).  Returns its image ID and the layout's description (the
-- layout itself is removed).
function M.image(pm, sizes)
	local oci = require "integration.helpers.oci"
	-- podman names an image pulled from oci:DIR after DIR, which must then
	-- be lowercase (mktemp's names are not).
	local imgdir = ("%s/layerup-pmimg.%dx%d"):format(os.getenv("TMPDIR") or "/tmp", util.getpid(), os.time())
	assert(not imgdir:find("%u"), "TMPDIR has capitals: " .. imgdir)
	util.mkdirp(imgdir)
	local img = oci.generate_tar(imgdir .. "/img", sizes, "v1")
	local out, rc = pm(("pull -q --signature-policy %s %s"):format(q(pm.policy), q("oci:" .. img.dir .. ":v1")))
	util.rmrf(imgdir)
	assert(rc == 0, "podman pull oci: failed: " .. out)
	return out:match("(%x+)%s*$"), img
end

return M
