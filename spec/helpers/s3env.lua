-- helpers/s3env.lua: the S3 server the specs may use.  spec/run starts a
-- throw-away Ceph RGW (tools/s3-rgw) and exports its settings as
-- LUP_TEST_S3_ENDPOINT, _BUCKET, _ACCESS_KEY, _SECRET_KEY, _REGION; without
-- them the S3 variants of the suites are not run (spec/run says why).
local s3env = {}

local function env(name)
	local v = os.getenv("LUP_TEST_S3_" .. name)
	if v == "" then
		return nil
	end
	return v
end

--- The settings as layerup.s3 options, or nil when no server is there.
function s3env.options(extra)
	local endpoint = env("ENDPOINT")
	if not endpoint then
		return nil
	end
	local o = {
		endpoint = endpoint,
		bucket = env("BUCKET") or "layerup",
		access_key = env("ACCESS_KEY"),
		secret_key = env("SECRET_KEY"),
		region = env("REGION") or "us-east-1",
	}
	for k, v in pairs(extra or {}) do
		o[k] = v
	end
	return o
end

local seq = 0
--- A fresh key prefix, so that tests never see each other's keys.
function s3env.prefix(tag)
	seq = seq + 1
	return string.format("t/%s-%d-%d-%d", tag or "x", os.time(), math.random(1, 1e9), seq)
end

--- Without a server: a suite called name whose one pending test says why;
--- true then (the spec file returns), false when there is a server.
function s3env.missing(name)
	if s3env.options() then
		return false
	end
	local busted = require "busted" -- describe is not a global here
	busted.describe(name, function()
		busted.pending("no S3 server: spec/run starts Ceph RGW when ceph-mon, ceph-osd and radosgw are installed")
	end)
	return true
end

return s3env
