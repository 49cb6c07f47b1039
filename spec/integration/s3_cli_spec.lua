-- The CLI on S3: `layerup COMMAND s3://BUCKET/PREFIX ...` with endpoint,
-- region and credentials from the AWS_* variables, against the Ceph RGW
-- that spec/run starts.  An upload started by one process (the Lua API) is
-- resumed by `layerup resume` in another.
local util = require "integration.helpers.util"
local s3env = require "helpers.s3env"

local MiB = 1024 * 1024

if s3env.missing("layerup CLI on S3") then
	return
end

local layerup = require "layerup"

describe("layerup CLI on S3", function()
	local o = s3env.options()
	local env = ("AWS_ENDPOINT_URL=%s AWS_ACCESS_KEY_ID=%s AWS_SECRET_ACCESS_KEY=%s AWS_REGION=%s "):format(
		util.q(o.endpoint), util.q(o.access_key), util.q(o.secret_key), util.q(o.region))
	local work

	local function cli(args, extra_env)
		local bin = util.repo_root() .. "/bin/layerup"
		local lua = os.getenv("LUA") or "lua5.4"
		return util.run((extra_env or env) .. lua .. " " .. util.q(bin) .. " " .. args .. " 2>&1", true)
	end

	lazy_setup(function() work = util.tmpdir("s3cli") end)
	lazy_teardown(function() util.rmrf(work) end)

	it("pushes, stats, cats, verifies and lists on s3://BUCKET/PREFIX", function()
		local prefix = s3env.prefix("cli")
		local url = "s3://" .. o.bucket .. "/" .. prefix
		local data = util.random_bytes(6 * MiB + 123)
		local file = work .. "/blob"
		util.write_file(file, data)
		local digest = util.sha256(data)
		local out, rc = cli("push " .. util.q(url) .. " lib/cli " .. util.q(file))
		assert.are.equal(0, rc, out)
		assert.truthy(out:find(digest, 1, true), out)
		assert.truthy(out:find(url .. "/docker/registry/v2/blobs/sha256/", 1, true), out)
		out, rc = cli("stat " .. util.q(url) .. " lib/cli " .. digest)  -- REPO before DIGEST, as cat
		assert.are.equal(0, rc, out)
		assert.truthy(out:find(tostring(#data), 1, true), out)
		out, rc = cli("cat " .. util.q(url) .. " lib/cli " .. digest .. " > " .. util.q(work .. "/back"))
		assert.are.equal(0, rc, out)
		assert.are.equal(digest, util.sha256_file(work .. "/back"))
		out, rc = cli("verify " .. util.q(url))
		assert.are.equal(0, rc, out)
		-- the driver really wrote under the prefix
		local d = assert(layerup.s3(s3env.options { prefix = prefix }))
		assert.is_table(d:stat("/docker/registry/v2/repositories/lib/cli/_layers/sha256/" .. digest:sub(8) .. "/link"))
	end)

	it("resumes in a second process an upload another one started", function()
		local prefix = s3env.prefix("cli-resume")
		local url = "s3://" .. o.bucket .. "/" .. prefix
		local data = util.random_bytes(8 * MiB + 5)
		local file = work .. "/blob2"
		util.write_file(file, data)
		local s = assert(layerup.open(assert(layerup.s3(s3env.options { prefix = prefix }))))
		local up = assert(s:start("lib/r"))
		assert(up:write(data:sub(1, 5 * MiB + 17)))
		assert(up:close())
		s:close()
		local out, rc = cli("uploads " .. util.q(url) .. " lib/r")
		assert.are.equal(0, rc, out)
		assert.truthy(out:find(up.uuid, 1, true), out)
		out, rc = cli("resume " .. util.q(url) .. " lib/r " .. up.uuid .. " " .. util.q(file))
		assert.are.equal(0, rc, out)
		assert.truthy(out:find(util.sha256(data), 1, true), out)
		out = cli("uploads " .. util.q(url) .. " lib/r")
		assert.falsy(out:find(up.uuid, 1, true), out)
	end)

	it("fails clearly without credentials or with a malformed URL", function()
		local out, rc = cli("uploads s3://" .. o.bucket .. "/x", "env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY AWS_ENDPOINT_URL=" .. util.q(o.endpoint) .. " ")
		assert.are.equal(1, rc, out)
		assert.truthy(out:find("AWS_ACCESS_KEY_ID", 1, true) or out:find("DENIED", 1, true), out)
		out, rc = cli("uploads s3://NO_SUCH/x")
		assert.are_not.equal(0, rc, out)
		assert.truthy(out:find("bucket", 1, true), out)
	end)
end)
