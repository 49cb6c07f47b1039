-- layerup.root: what a ROOT names (the CLI's store argument).
--
--   root.parse(spec)        -> {kind = "filesystem", path = spec}
--                            | {kind = "s3", bucket = B, prefix = P}
--                            | nil, message       (a malformed s3:// URL)
--   root.is_url(spec)       -> true for s3://...
--   root.open(spec [, L [, opts]]) -> driver | nil, err
--   root.display(spec, p)   -> where layout path p lives, for humans:
--                              "DIR/docker/..." or "s3://B/P/docker/..."
--
-- A filesystem ROOT is a directory.  `s3://BUCKET/PREFIX` is a bucket and
-- an optional key prefix (the registry's `rootdirectory`); endpoint, region
-- and credentials come from the standard variables AWS_ENDPOINT_URL,
-- AWS_REGION, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (read by the S3
-- driver itself), and opts may add any layerup.s3 option.
local M = {}

-- S3 bucket names: 3-63 of lowercase letters, digits, '.' and '-',
-- starting and ending with a letter or digit.
local function valid_bucket(b)
	return #b >= 3 and #b <= 63 and b:match("^[a-z0-9][a-z0-9.-]*[a-z0-9]$") ~= nil
end

function M.is_url(spec)
	return type(spec) == "string" and spec:match("^[sS]3://") ~= nil
end

function M.parse(spec)
	if type(spec) ~= "string" or spec == "" then
		return nil, "ROOT must be a directory or s3://BUCKET/PREFIX"
	end
	if not M.is_url(spec) then
		return { kind = "filesystem", path = spec }
	end
	local rest = spec:sub(6)
	local bucket, prefix = rest:match("^([^/]*)/?(.*)$")
	if not valid_bucket(bucket) then
		return nil, ("bad S3 bucket name %q in %s"):format(bucket, spec)
	end
	prefix = prefix:gsub("/+$", "")
	if prefix:find("//", 1, true) or prefix:find("\0", 1, true) or prefix:find("?", 1, true) then
		return nil, ("bad S3 key prefix %q in %s"):format(prefix, spec)
	end
	return { kind = "s3", bucket = bucket, prefix = prefix ~= "" and prefix or nil }
end

function M.open(spec, L, opts)
	L = L or require "layerup"
	local r, why = M.parse(spec)
	if not r then
		return nil, why
	end
	if r.kind == "filesystem" then
		return L.filesystem(r.path)
	end
	local o = {}
	for k, v in pairs(opts or {}) do
		o[k] = v
	end
	o.bucket, o.prefix = r.bucket, r.prefix
	return L.s3(o)
end

function M.display(spec, p)
	if p == nil then
		return nil
	end
	local r = M.parse(spec)
	if r and r.kind == "s3" then
		return "s3://" .. r.bucket .. (r.prefix and ("/" .. r.prefix) or "") .. p
	end
	return (spec:gsub("/+$", "")) .. p
end

return M
