-- Runs skopeo against the local test registry with an isolated
-- environment: its own HOME/XDG dirs, a permissive policy.json, an empty
-- registries.conf, plain HTTP to 127.0.0.1 and no auth; as root, also its
-- own blob-info cache (helpers/podman.lua: a private mount namespace)
-- where that is possible.

local util = require "integration.helpers.util"
local q = util.q

local M = {}

function M.available()
	return util.have("skopeo")
end

-- Returns a skopeo runner whose config lives under dir.  opts.cert_dir:
-- verify HTTPS registries against the *.crt CAs in that directory
-- (--src-cert-dir/--dest-cert-dir) instead of --*-tls-verify=false.
function M.new(dir, opts)
	opts = opts or {}
	util.mkdirp(dir .. "/home")
	util.mkdirp(dir .. "/run")
	util.mkdirp(dir .. "/config")
	util.mkdirp(dir .. "/registries.d")
	util.mkdirp(dir .. "/tmp")
	util.write_file(dir .. "/policy.json", '{"default":[{"type":"insecureAcceptAnything"}]}')
	util.write_file(dir .. "/registries.conf", "")
	local self = { dir = dir }
	local env = ("env HOME=%s XDG_RUNTIME_DIR=%s XDG_CONFIG_HOME=%s CONTAINERS_REGISTRIES_CONF=%s REGISTRY_AUTH_FILE=%s")
		:format(q(dir .. "/home"), q(dir .. "/run"), q(dir .. "/config"), q(dir .. "/registries.conf"),
			q(dir .. "/auth.json"))
	util.write_file(dir .. "/auth.json", '{"auths":{}}')
	env = env .. " " .. require("integration.helpers.podman").private_cache_prefix(dir)
	local base = ("%s skopeo --command-timeout 300s --policy %s --registries.d %s --tmpdir %s")
		:format(env, q(dir .. "/policy.json"), q(dir .. "/registries.d"), q(dir .. "/tmp"))

	-- skopeo copy src dst; returns output, exit code.
	local tls = "--src-tls-verify=false --dest-tls-verify=false"
	if opts.cert_dir then
		tls = ("--src-cert-dir %s --dest-cert-dir %s"):format(q(opts.cert_dir), q(opts.cert_dir))
	end
	function self.copy(src, dst)
		return util.run(("%s copy %s --src-no-creds --dest-no-creds --dest-oci-accept-uncompressed-layers --preserve-digests %s %s 2>&1")
			:format(base, tls, q(src), q(dst)))
	end

	return self
end

return M
