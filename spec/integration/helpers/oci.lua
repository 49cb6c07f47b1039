-- Generates a small OCI image layout (oci-layout, index.json,
-- blobs/sha256/*) with random layers for the integration specs, and reads
-- one back (e.g. the layout skopeo wrote) as a list of digests.

local cjson = require "cjson"
local util = require "integration.helpers.util"

local M = {}

M.MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
M.CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
-- Uncompressed layers: random bytes are no valid gzip, and skopeo must
-- copy them unchanged (--dest-oci-accept-uncompressed-layers).
M.LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"

local function put_blob(dir, data)
	local digest = util.sha256(data)
	local path = dir .. "/blobs/sha256/" .. digest:sub(8)
	util.write_file(path, data)
	return { digest = digest, size = #data, path = path }
end

-- The config, manifest and index.json of an image whose layers are in
-- img.layers (descs: their JSON descriptors); fills img.config,
-- img.manifest and img.blobs = {config, layers...}.
local function finish_layout(dir, img, diff_ids, descs)
	-- Hand-built JSON keeps the bytes (and so the digests) stable.
	local ids = #diff_ids > 0 and '"' .. table.concat(diff_ids, '","') .. '"' or ""
	local config = ('{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[%s]}}')
		:format(ids)
	img.config = put_blob(dir, config)
	img.config.media_type = M.CONFIG_TYPE
	local manifest = ('{"schemaVersion":2,"mediaType":"%s","config":{"mediaType":"%s","digest":"%s","size":%d},"layers":[%s]}')
		:format(M.MANIFEST_TYPE, M.CONFIG_TYPE, img.config.digest, img.config.size, table.concat(descs, ","))
	img.manifest = put_blob(dir, manifest)
	img.manifest.media_type = M.MANIFEST_TYPE
	img.manifest.bytes = manifest
	util.write_file(dir .. "/index.json",
		('{"schemaVersion":2,"manifests":[{"mediaType":"%s","digest":"%s","size":%d,"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}')
		:format(M.MANIFEST_TYPE, img.manifest.digest, img.manifest.size, img.tag))
	img.blobs[1] = img.config
	for i, b in ipairs(img.layers) do
		img.blobs[i + 1] = b
	end
	return img
end

-- Write an image layout to dir with one layer per entry of sizes.
-- Returns {dir=, tag=, layers={blob...}, config=blob, manifest=blob,
-- blobs={config, layers...}} where blob = {digest=, size=, path=, media_type=}.
function M.generate(dir, sizes, tag)
	tag = tag or "latest"
	util.mkdirp(dir .. "/blobs/sha256")
	util.write_file(dir .. "/oci-layout", '{"imageLayoutVersion":"1.0.0"}')
	local img = { dir = dir, tag = tag, layers = {}, blobs = {} }
	local diff_ids, descs = {}, {}
	for i, n in ipairs(sizes) do
		local b = put_blob(dir, util.random_bytes(n))
		b.media_type = M.LAYER_TYPE
		img.layers[i] = b
		diff_ids[i] = b.digest
		descs[i] = ('{"mediaType":"%s","digest":"%s","size":%d}'):format(b.media_type, b.digest, b.size)
	end
	return finish_layout(dir, img, diff_ids, descs)
end

M.TAR_GZIP_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"

-- Write an image layout whose layers are real gzip'd tar archives (what
-- podman must unpack into its storage): layer i holds one file of sizes[i]
-- random bytes (size 0: an empty archive).  The config's diff_ids are the
-- digests of the uncompressed archives.  Returns what generate returns,
-- plus diff_ids.
function M.generate_tar(dir, sizes, tag)
	tag = tag or "latest"
	util.mkdirp(dir .. "/blobs/sha256")
	util.write_file(dir .. "/oci-layout", '{"imageLayoutVersion":"1.0.0"}')
	local img = { dir = dir, tag = tag, layers = {}, blobs = {}, diff_ids = {} }
	local descs = {}
	local work = util.tmpdir("tarlayer")
	for i, n in ipairs(sizes) do
		local src = work .. "/l" .. i
		util.mkdirp(src)
		if n > 0 then
			util.must(("head -c %d /dev/urandom >%s"):format(n, util.q(src .. "/file" .. i)))
		end
		local tar = work .. "/l" .. i .. ".tar"
		util.must(("tar --numeric-owner --owner=0 --group=0 --mtime=@0 -cf %s -C %s ."):format(util.q(tar), util.q(src)))
		img.diff_ids[i] = util.sha256_file(tar)
		util.must(("gzip -n -1 %s"):format(util.q(tar)))
		local digest = util.sha256_file(tar .. ".gz")
		local path = dir .. "/blobs/sha256/" .. digest:sub(8)
		util.must(("mv %s %s"):format(util.q(tar .. ".gz"), util.q(path)))
		local b = { digest = digest, size = util.size(path), path = path, media_type = M.TAR_GZIP_TYPE }
		img.layers[i] = b
		descs[i] = ('{"mediaType":"%s","digest":"%s","size":%d}'):format(b.media_type, b.digest, b.size)
	end
	util.rmrf(work)
	return finish_layout(dir, img, img.diff_ids, descs)
end

-- Read a layout: the manifest tagged `tag` and every blob it names, each
-- with its digest as recorded and the sha256 of the stored file.
function M.read(dir, tag)
	local index = cjson.decode(assert(util.read_file(dir .. "/index.json")))
	local mdesc
	for _, m in ipairs(index.manifests or {}) do
		local ann = m.annotations or {}
		if ann["org.opencontainers.image.ref.name"] == (tag or "latest") then
			mdesc = m
		end
	end
	assert(mdesc, "tag not found in " .. dir .. "/index.json")
	local function blob(desc)
		local path = dir .. "/blobs/" .. desc.digest:gsub(":", "/")
		return {
			digest = desc.digest,
			size = desc.size,
			media_type = desc.mediaType,
			path = path,
			actual = util.exists(path) and util.sha256_file(path) or nil,
			actual_size = util.size(path),
		}
	end
	local out = { manifest = blob(mdesc), layers = {} }
	local m = cjson.decode(assert(util.read_file(out.manifest.path)))
	out.config = blob(m.config)
	for i, l in ipairs(m.layers) do
		out.layers[i] = blob(l)
	end
	return out
end

return M
