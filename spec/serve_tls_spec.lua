-- layerup.serve's option parsing and generated nginx.conf for TLS
-- (`--tls-cert FILE --tls-key FILE`), without starting nginx
-- (spec/integration/tls_spec.lua runs it with real clients).

local serve = require "layerup.serve"

local function parse(...)
	local ok, o = pcall(serve.parse, { ... })
	return ok and o or nil, not ok and o or nil
end

local function config(o)
	o.prefix, o.luadir, o.jitdir = "/p", "/l", "/j"
	return serve.config(o)
end

describe("layerup serve --tls-cert/--tls-key", function()
	it("takes both, or neither", function()
		local o = assert(parse("ROOT", "--tls-cert", "/c.pem", "--tls-key", "/k.pem"))
		assert.equal("/c.pem", o.tls_cert)
		assert.equal("/k.pem", o.tls_key)
		local _, err = parse("ROOT", "--tls-cert", "/c.pem")
		assert.equal("--tls-cert and --tls-key go together", err)
		_, err = parse("ROOT", "--tls-key", "/k.pem")
		assert.equal("--tls-cert and --tls-key go together", err)
		_, err = parse("ROOT", "--tls-cert")
		assert.equal("--tls-cert needs a value", err)
	end)

	it("refuses names that nginx.conf would read as something else", function()
		for _, bad in ipairs { "", "/a$b", '/a"b', "/a'b", "/a\\b", "/a;b", "/a{b", "/a}b", "/a\nb", "/a\0b" } do
			local _, err = parse("ROOT", "--tls-cert", "/c.pem", "--tls-key", bad)
			assert.truthy(err and err:find("^%-%-tls%-key must be a file name"), bad)
			_, err = parse("ROOT", "--tls-cert", bad, "--tls-key", "/k.pem")
			assert.truthy(err and err:find("^%-%-tls%-cert must be a file name"), bad)
		end
		-- spaces and # are fine: the names are quoted
		local o = assert(parse("ROOT", "--tls-cert", "/my certs/#1.pem", "--tls-key", "/k.pem"))
		assert.truthy(config(o):find('ssl_certificate "/my certs/#1.pem";', 1, true))
	end)

	it("makes the main listener ssl with http2, and leaves it plain without", function()
		local o = assert(parse("ROOT", "--listen", "127.0.0.1:5443", "--tls-cert", "/c.pem", "--tls-key", "/k.pem"))
		local conf = config(o)
		assert.truthy(conf:find("\n        listen 127.0.0.1:5443 reuseport ssl http2;\n", 1, true), conf)
		assert.truthy(conf:find('ssl_certificate "/c.pem";', 1, true))
		assert.truthy(conf:find('ssl_certificate_key "/k.pem";', 1, true))
		assert.truthy(conf:find("ssl_protocols TLSv1.2 TLSv1.3;", 1, true))
		local plain = config(assert(parse("ROOT", "--listen", "127.0.0.1:5000")))
		assert.truthy(plain:find("\n        listen 127.0.0.1:5000 reuseport;\n", 1, true))
		assert.is_nil(plain:find("ssl", 1, true))
		-- h2c next to TLS: its own cleartext port
		conf = config(assert(parse("ROOT", "--tls-cert", "/c", "--tls-key", "/k", "--http2", "127.0.0.1:5001")))
		assert.truthy(conf:find("listen 127.0.0.1:5001 reuseport http2;", 1, true))
	end)
end)
