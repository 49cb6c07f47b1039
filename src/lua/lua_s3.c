/*
 * lua_s3.c - layerup.s3{...}: the S3 driver from Lua, and its traffic
 * counters (layerup.s3_counters(d)).
 */
#include <string.h>

#include "layerup/driver_s3.h"
#include "lua/lua_util.h"

static const char *opt_str(lua_State *L, const char *key)
{
	const char *s;

	lua_getfield(L, 1, key);
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		return NULL;
	}
	if (lua_type(L, -1) != LUA_TSTRING)
		luaL_error(L, "bad argument #1 to 's3' (%s must be a string)",
			   key);
	s = lua_tostring(L, -1);
	lua_pop(L, 1); /* the string stays referenced by the table */
	return s;
}

static lua_Integer opt_int(lua_State *L, const char *key, lua_Integer lo,
			   lua_Integer hi)
{
	lua_Number n;

	lua_getfield(L, 1, key);
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		return 0;
	}
	if (lua_type(L, -1) != LUA_TNUMBER)
		luaL_error(L, "bad argument #1 to 's3' (%s must be a number)",
			   key);
	n = lua_tonumber(L, -1);
	lua_pop(L, 1);
	if (!(n >= (lua_Number)lo && n <= (lua_Number)hi) ||
	    n != (lua_Number)(lua_Integer)n)
		luaL_error(L, "bad argument #1 to 's3' (%s out of range)", key);
	return (lua_Integer)n;
}

static int opt_bool(lua_State *L, const char *key)
{
	int b;

	lua_getfield(L, 1, key);
	if (!lua_isnil(L, -1) && !lua_isboolean(L, -1))
		luaL_error(L, "bad argument #1 to 's3' (%s must be a boolean)",
			   key);
	b = lua_toboolean(L, -1);
	lua_pop(L, 1);
	return b;
}

static const char *const known[] = {
	"endpoint", "region", "bucket", "access_key", "secret_key", "prefix",
	"virtual_host", "verify_tls", "ca_file", "part_size", "timeout",
	"lock_ttl", "copy_part_size", "list_page",
	"upload_concurrency", NULL};

/* layerup.s3{endpoint=, bucket=, region=, access_key=, secret_key=,
 * prefix=, part_size=, virtual_host=, verify_tls=, ca_file=, timeout=,
 * lock_ttl=, copy_part_size=, list_page=,
 * upload_concurrency=} -> driver | nil, err */
static int new_s3(lua_State *L)
{
	lup_s3_options o = LUP_S3_OPTIONS_INIT;
	lup_driver *d = NULL;
	lup_error err;

	luaL_checktype(L, 1, LUA_TTABLE);
	lua_pushnil(L);
	while (lua_next(L, 1)) {
		int ok = 0;
		if (lua_type(L, -2) == LUA_TSTRING)
			for (int i = 0; known[i]; i++)
				ok |= strcmp(known[i], lua_tostring(L, -2)) == 0;
		if (!ok)
			return luaL_error(L, "bad argument #1 to 's3' (unknown "
					     "option '%s')",
					  lua_type(L, -2) == LUA_TSTRING
						  ? lua_tostring(L, -2)
						  : "?");
		lua_pop(L, 1);
	}
	o.endpoint = opt_str(L, "endpoint");
	o.region = opt_str(L, "region");
	o.bucket = opt_str(L, "bucket");
	o.access_key = opt_str(L, "access_key");
	o.secret_key = opt_str(L, "secret_key");
	o.prefix = opt_str(L, "prefix");
	o.ca_file = opt_str(L, "ca_file");
	o.virtual_host = opt_bool(L, "virtual_host");
	lua_getfield(L, 1, "verify_tls");
	o.no_verify_tls = lua_isboolean(L, -1) && !lua_toboolean(L, -1);
	lua_pop(L, 1);
	o.part_size = (int64_t)opt_int(L, "part_size", 0,
				       (lua_Integer)5 * 1024 * 1024 * 1024);
	o.timeout_s = (long)opt_int(L, "timeout", 0, 86400);
	o.lock_ttl_s = (int64_t)opt_int(L, "lock_ttl", 0, 86400 * 365);
	o.list_page = (int)opt_int(L, "list_page", 0, 1000);
	o.upload_concurrency = (int)opt_int(L, "upload_concurrency", 0, 16);
	o.copy_part_size = (int64_t)opt_int(L, "copy_part_size", 0,
					    (lua_Integer)5 * 1024 * 1024 * 1024);
	if (!o.bucket)
		return luaL_error(L, "bad argument #1 to 's3' (bucket is "
				     "required)");
	lup_lua_push_driver(L, NULL);
	if (lup_driver_s3(&d, &o, &err) < 0)
		return lup_lua_fail(L, &err);
	((lup_lua_driver *)lua_touserdata(L, -1))->driver = d;
	return 1;
}

/* layerup.s3_counters(d) -> {bytes_sent=, bytes_received=, requests=,
 * by_kind = {<S3 operation> = n, ...}} | nil */
static int s3_counters(lua_State *L)
{
	lup_lua_driver *ud = luaL_checkudata(L, 1, "layerup.driver");
	lup_s3_counters c;

	if (!ud->driver || !lup_driver_s3_counters(ud->driver, &c)) {
		lua_pushnil(L);
		return 1;
	}
	lua_createtable(L, 0, 4);
	lua_pushinteger(L, (lua_Integer)c.bytes_sent);
	lua_setfield(L, -2, "bytes_sent");
	lua_pushinteger(L, (lua_Integer)c.bytes_received);
	lua_setfield(L, -2, "bytes_received");
	lua_pushinteger(L, (lua_Integer)c.requests);
	lua_setfield(L, -2, "requests");
	/* by_kind: {HeadObject = n, ...}, kinds with no request left out */
	lua_newtable(L);
	for (int k = 0; lup_driver_s3_request_kind(k); k++) {
		int64_t n = lup_driver_s3_requests(ud->driver, k);
		if (n == 0)
			continue;
		lua_pushinteger(L, (lua_Integer)n);
		lua_setfield(L, -2, lup_driver_s3_request_kind(k));
	}
	lua_setfield(L, -2, "by_kind");
	return 1;
}

void lup_lua_open_s3(lua_State *L)
{
	static const luaL_Reg fns[] = {
		{"s3", new_s3},
		{"s3_counters", s3_counters},
		{NULL, NULL},
	};

	luaL_setfuncs(L, fns, 0);
}
