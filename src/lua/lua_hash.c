/*
 * lua_hash.c - "layerup.hasher": the core's hashing for Lua scripts (the
 * CLI digests a file before it pushes it, verify re-hashes blobs), and
 * layerup.digest_file(path [, alg]).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua/lua_util.h"

#define HASHER_CLASS "layerup.hasher"
#define FILE_CHUNK (1 << 20)

static lup_hash_alg check_alg(lua_State *L, int idx)
{
	size_t n;
	const char *name = luaL_optlstring(L, idx, "sha256", &n);
	lup_hash_alg alg;

	if (lup_hash_alg_parse(name, n, &alg) != 0)
		luaL_argerror(L, idx, "unsupported algorithm (sha256, sha384, sha512)");
	return alg;
}

static void push_digest(lua_State *L, const lup_hash *h)
{
	char hex[LUP_HASH_MAX_DIGEST * 2 + 1];

	lup_hash_peek_hex(h, hex);
	lua_pushfstring(L, "%s:%s", lup_hash_alg_name(h->alg), hex);
}

static int hasher_new(lua_State *L)
{
	lup_hash_alg alg = check_alg(L, 1);
	lup_hash *h = lup_newuserdata(L, sizeof(*h), 0);

	lup_hash_init(h, alg);
	luaL_setmetatable(L, HASHER_CLASS);
	return 1;
}

static int hasher_update(lua_State *L)
{
	lup_hash *h = luaL_checkudata(L, 1, HASHER_CLASS);
	size_t n;
	const char *p = luaL_checklstring(L, 2, &n);

	lup_hash_update(h, p, n);
	lua_settop(L, 1);
	return 1;
}

static int hasher_digest(lua_State *L)
{
	push_digest(L, luaL_checkudata(L, 1, HASHER_CLASS));
	return 1;
}

static int hasher_hexdigest(lua_State *L)
{
	char hex[LUP_HASH_MAX_DIGEST * 2 + 1];

	lup_hash_peek_hex(luaL_checkudata(L, 1, HASHER_CLASS), hex);
	lua_pushstring(L, hex);
	return 1;
}

static int hasher_size(lua_State *L)
{
	lup_hash *h = luaL_checkudata(L, 1, HASHER_CLASS);

	lua_pushinteger(L, (lua_Integer)lup_hash_length(h));
	return 1;
}

/* digest_file(path [, alg]) -> "alg:hex", size | nil, err */
static int digest_file(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	lup_hash_alg alg = check_alg(L, 2);
	lup_error err;
	lup_hash h;
	FILE *f;
	char *buf;
	int failed;

	if (!(f = fopen(path, "rb"))) {
		lup_error_set(&err, errno == ENOENT ? LUP_EPATH_NOT_FOUND : LUP_EIO,
			      path, "%s: %s", path, strerror(errno));
		return lup_lua_fail(L, &err);
	}
	if (!(buf = malloc(FILE_CHUNK))) {
		fclose(f);
		lup_error_set(&err, LUP_EIO, path, "out of memory");
		return lup_lua_fail(L, &err);
	}
	lup_hash_init(&h, alg);
	for (size_t n; (n = fread(buf, 1, FILE_CHUNK, f)) > 0;)
		lup_hash_update(&h, buf, n);
	failed = ferror(f);
	free(buf);
	fclose(f);
	if (failed) {
		lup_error_set(&err, LUP_EIO, path, "%s: read error", path);
		return lup_lua_fail(L, &err);
	}
	push_digest(L, &h);
	lua_pushinteger(L, (lua_Integer)lup_hash_length(&h));
	return 2;
}

static int sha256_file(lua_State *L)
{
	lua_settop(L, 1);
	return digest_file(L);
}

void lup_lua_open_hash(lua_State *L)
{
	static const luaL_Reg methods[] = {
		{ "update", hasher_update },
		{ "digest", hasher_digest },
		{ "hexdigest", hasher_hexdigest },
		{ "size", hasher_size },
		{ NULL, NULL },
	};
	static const luaL_Reg meta[] = {
		{ "__tostring", hasher_digest },
		{ NULL, NULL },
	};

	lup_lua_new_class(L, HASHER_CLASS, meta, methods);
	lua_pushcfunction(L, hasher_new);
	lua_setfield(L, -2, "hasher");
	lua_pushcfunction(L, digest_file);
	lua_setfield(L, -2, "digest_file");
	lua_pushcfunction(L, sha256_file);
	lua_setfield(L, -2, "sha256_file");
}
