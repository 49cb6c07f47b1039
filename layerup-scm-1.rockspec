-- LuaRocks build of layerup from a checkout: `luarocks make` (or
-- `luarocks make --tree DIR` / `--local`).  Builds layerup.core with the
-- system's OpenSSL (libcrypto), libuuid and libcurl through the Makefile and
-- installs the Lua modules and the `layerup` command.
rockspec_format = "3.0"
package = "layerup"
version = "scm-1"

source = {
	url = "git+file://.",
}

description = {
	summary = "Resumable, content-addressed blob uploads (registry v2 storage)",
	detailed = [[
An embeddable engine for resumable, content-addressed blob uploads: what a
container registry's storage layer does for a blob push.  The core is C11
(OpenSSL, libuuid) exposed as a Lua 5.4 module; retry, linking, logging,
admission and limits are Lua policies.  The storage layout is
byte-compatible with the Docker Distribution registry v2.
]],
}

dependencies = {
	"lua >= 5.4, < 5.5",
	"lua-cjson",   -- JSON output and logs (layerup.log, the CLI's --json)
	"lua_cliargs", -- the command line (Debian: lua-cliargs)
}

external_dependencies = {
	OPENSSL = { header = "openssl/sha.h", library = "crypto" },
	UUID = { header = "uuid/uuid.h", library = "uuid" },
	-- Debian keeps curl's headers in a multiarch directory that LuaRocks
	-- does not search; the compiler finds them, so only the library is
	-- looked up here.
	CURL = { library = "curl" },
}

build = {
	type = "make",
	build_target = "lib",
	install_target = "install-lua",
	build_variables = {
		BUILD = "build-rock",
		CC = "$(CC)",
		CFLAGS = "$(CFLAGS) -I$(OPENSSL_INCDIR) -I$(UUID_INCDIR) -I$(CURL_INCDIR)",
		LDFLAGS = "-L$(OPENSSL_LIBDIR) -L$(UUID_LIBDIR) -L$(CURL_LIBDIR)",
		LUA_INC = "-I$(LUA_INCDIR)",
	},
	install_variables = {
		BUILD = "build-rock",
		PREFIX = "$(PREFIX)",
		BINDIR = "$(BINDIR)",
		LUADIR = "$(LUADIR)",
		LIBDIR = "$(LIBDIR)",
	},
}
