-- spec/root_spec.lua - layerup.root: what a ROOT argument names.
local root = require "layerup.root"
local layerup = require "layerup"

describe("layerup.root", function()
	it("takes anything that is not an s3:// URL for a directory", function()
		for _, p in ipairs { "/srv/reg", "rel/dir", "./s3:/x", "s3:/bucket", "S3", "/tmp/s3://x" } do
			assert.same({ kind = "filesystem", path = p }, root.parse(p))
			assert.is_false(root.is_url(p))
		end
	end)

	it("splits s3://BUCKET/PREFIX, trailing slashes dropped", function()
		assert.same({ kind = "s3", bucket = "my-bucket" }, root.parse("s3://my-bucket"))
		assert.same({ kind = "s3", bucket = "my-bucket" }, root.parse("s3://my-bucket/"))
		assert.same({ kind = "s3", bucket = "b.c1", prefix = "a/b" }, root.parse("s3://b.c1/a/b//"))
		assert.same({ kind = "s3", bucket = "abc", prefix = "x" }, root.parse("S3://abc/x"))
		assert.is_true(root.is_url("s3://abc"))
	end)

	it("refuses malformed buckets and prefixes with a message", function()
		for _, u in ipairs { "s3://", "s3:///x", "s3://ab", "s3://UPPER", "s3://-abc", "s3://abc-",
			"s3://" .. string.rep("a", 64), "s3://a_b_c", "s3://abc/x//y", "s3://abc/x?y", "s3://abc/x\0y" } do
			local r, why = root.parse(u)
			assert.is_nil(r, u)
			assert.is_string(why)
			local d, err = root.open(u, layerup)
			assert.is_nil(d, u)
			assert.is_string(err)
		end
		assert.is_nil((root.parse("")))
		assert.is_nil((root.parse(nil)))
	end)

	it("opens a filesystem driver for a directory and shows where a path lives", function()
		local dir = os.tmpname()
		os.remove(dir)
		assert(os.execute("mkdir -p " .. dir))
		local d = assert(root.open(dir, layerup))
		assert(d:put_content("/a/b", "x"))
		assert.equal("x", d:get_content("/a/b"))
		os.execute("rm -rf " .. dir)
		assert.equal("/srv/r/docker/x", root.display("/srv/r//", "/docker/x"))
		assert.equal("s3://b-1/p/q/docker/x", root.display("s3://b-1/p/q/", "/docker/x"))
		assert.equal("s3://b-1/docker/x", root.display("s3://b-1", "/docker/x"))
	end)

	it("opens an S3 driver on the bucket and prefix, options added", function()
		local d = assert(root.open("s3://some-bucket/p", layerup, {
			endpoint = "http://127.0.0.1:9", access_key = "k", secret_key = "s", timeout = 1 }))
		assert.is_table(layerup.s3_counters(d))
	end)
end)
