/*
 * lua_upload.c - the "layerup.upload" class.
 *
 * The userdata holds the C upload; user value 1 is the store userdata, which
 * keeps the store (and its policy functions) alive as long as the upload.
 * User value 2 anchors the string of the last write: large writes are hashed
 * on a worker thread after write() returns (lup_upload_write_async), while
 * the script reads its next chunk, so the bytes must stay alive until the
 * next call, which waits for the hash.
 * close and __close share one idempotent close (liolib's pattern); __gc also
 * frees the handle.  Every other method on a closed or finished upload raises.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dechunk.h"
#include "lua/lua_upload.h"

#define READ_FROM_CHUNK (8 << 20)
#define READ_FROM_MAX_CHUNK (1 << 30) /* two buffers of it are allocated */

typedef struct lua_upload {
	lup_upload *u; /* NULL once freed */
	/* De-chunker of write_chunked (started on its first call). */
	lup_dechunk dc;
	int dc_on;
} lua_upload;

void lup_lua_push_upload(lua_State *L, lup_upload *u, int store_idx)
{
	lua_upload *lu;

	store_idx = lup_absindex(L, store_idx);
	lu = lup_newuserdata(L, sizeof(*lu), 2);
	memset(lu, 0, sizeof(*lu));
	lu->u = u;
	luaL_setmetatable(L, UPLOAD_CLASS);
	lua_pushvalue(L, store_idx);
	lup_setuservalue(L, -2, 1);
}

/* The store userdata of the upload at index 1 (kept alive by it). */
static lup_lua_store *store_of(lua_State *L)
{
	lup_lua_store *ls;

	lup_getuservalue(L, 1, 1);
	ls = lua_touserdata(L, -1);
	lua_pop(L, 1); /* still referenced by the upload */
	return ls;
}

/* The upload at index 1 and its store's policy bridge. */
static lua_upload *check_any(lua_State *L, lup_lua_policy **pol)
{
	lua_upload *lu = luaL_checkudata(L, 1, UPLOAD_CLASS);

	if (pol)
		*pol = &store_of(L)->pol;
	return lu;
}

/* Two copy buffers of size bytes: the store's when free (grown as
 * needed), else fresh ones.  1 when they are the store's. */
static int take_bufs(lup_lua_store *ls, size_t size, char *buf[2])
{
	lup_lua_bufs *b = &ls->bufs;

	if (!b->busy) {
		if (b->size < size) {
			free(b->p[0]);
			free(b->p[1]);
			b->p[0] = malloc(size);
			b->p[1] = malloc(size);
			b->size = b->p[0] && b->p[1] ? size : 0;
		}
		if (b->size) {
			b->busy = 1;
			buf[0] = b->p[0];
			buf[1] = b->p[1];
			return 1;
		}
	}
	buf[0] = malloc(size);
	buf[1] = malloc(size);
	return 0;
}

static void give_bufs(lup_lua_store *ls, int pooled, char *buf[2])
{
	if (pooled) {
		ls->bufs.busy = 0;
	} else {
		free(buf[0]);
		free(buf[1]);
	}
}

static lua_upload *check_open(lua_State *L, lup_lua_policy **pol)
{
	lua_upload *lu = check_any(L, pol);

	if (!lu->u || !lup_upload_is_open(lu->u))
		luaL_error(L, "attempt to use a closed upload");
	return lu;
}

static int upload_size(lua_State *L)
{
	lua_upload *lu = check_any(L, NULL);

	if (!lu->u)
		return luaL_error(L, "attempt to use a closed upload");
	lua_pushinteger(L, (lua_Integer)lup_upload_size(lu->u));
	return 1;
}

/* write_chunked(raw): de-chunk raw bytes of a chunked request body (any
 * split; the decoder keeps its state in the upload) and write the payload.
 * Returns true once the body ended (bytes after its end are ignored),
 * false when more is expected, false, message on a framing error (the
 * payload before it is written), or nil, err when a write failed. */
static int upload_write_chunked(lua_State *L)
{
	lup_lua_policy *pol;
	lua_upload *lu = check_open(L, &pol);
	size_t n;
	const unsigned char *p = (const unsigned char *)luaL_checklstring(L, 2, &n);
	lup_error err;
	int rc = 0;

	if (!lu->dc_on) {
		lup_dechunk_init(&lu->dc);
		lu->dc_on = 1;
	}
	/* The spans below point into this string and the last one may still
	 * be hashed after we return: anchor it (user value 2) until the next
	 * call, once the previous anchor's hash is done. */
	lup_upload_drain(lu->u);
	lua_pushvalue(L, 2);
	lup_setuservalue(L, 1, 2);
	while (n > 0 && !lup_dechunk_done(&lu->dc) && !lu->dc.error) {
		const unsigned char *data;
		size_t len, used = lup_dechunk_step(&lu->dc, p, n, &data, &len);

		if (len > 0) {
			/* Hashed on the worker while the next span is written
			 * (each write waits for the previous hash). */
			LUP_WITH_POLICY(pol, L, lup_upload_write_async(lu->u, data, len, &err));
			if (rc != 0)
				return lup_lua_fail(L, &err);
		}
		p += used;
		n -= used;
	}
	if (lu->dc.error) {
		lua_pushboolean(L, 0);
		lua_pushstring(L, lu->dc.error);
		return 2;
	}
	lua_pushboolean(L, lup_dechunk_done(&lu->dc));
	return 1;
}

/* set_max_size(n | nil): cap this handle's size at n bytes (nil: no cap of
 * its own; the store's max_size always applies too).  A write past it
 * fails with SIZE_INVALID and stores none of its bytes. */
static int upload_set_max_size(lua_State *L)
{
	lua_upload *lu = check_open(L, NULL);
	int64_t max = -1;

	if (!lua_isnoneornil(L, 2))
		max = lup_lua_checkcount(L, 2, 2, "max size", 0);
	lup_upload_set_max_size(lu->u, max);
	lua_pushboolean(L, 1);
	return 1;
}

static int upload_bytes_reread(lua_State *L)
{
	lua_upload *lu = check_any(L, NULL);

	if (!lu->u)
		return luaL_error(L, "attempt to use a closed upload");
	lua_pushinteger(L, (lua_Integer)lup_upload_bytes_reread(lu->u));
	return 1;
}

static int push_size_or_fail(lua_State *L, lua_upload *lu, int rc,
			     const lup_error *err)
{
	if (rc != 0)
		return lup_lua_fail(L, err);
	lua_pushinteger(L, (lua_Integer)lup_upload_size(lu->u));
	return 1;
}

/* Write the string at idx asynchronously and anchor it (user value 2). */
static int write_anchored(lua_State *L, lua_upload *lu, lup_lua_policy *pol,
			  int idx)
{
	size_t n;
	const char *p = luaL_checklstring(L, idx, &n);
	lup_error err;
	int rc;

	LUP_WITH_POLICY(pol, L, lup_upload_write_async(lu->u, p, n, &err));
	lua_pushvalue(L, idx);
	lup_setuservalue(L, 1, 2);
	return push_size_or_fail(L, lu, rc, &err);
}

static int upload_write(lua_State *L)
{
	lup_lua_policy *pol;
	lua_upload *lu = check_open(L, &pol);

	return write_anchored(L, lu, pol, 2);
}

static int upload_write_at(lua_State *L)
{
	lup_lua_policy *pol;
	lua_upload *lu = check_open(L, &pol);
	/* Any integer: an offset that is not the current size (negative,
	 * math.maxinteger) is the client's mistake, answered RANGE_INVALID
	 * by the core, which only compares it.  NaN, fractions and strings
	 * raise (luaL_checkinteger never converts them). */
	int64_t off = (int64_t)lup_checkinteger(L, 2);
	lup_error err;
	int rc;

	luaL_checkstring(L, 3);
	if (off == lup_upload_size(lu->u))
		return write_anchored(L, lu, pol, 3);
	/* The wrong offset: let the core say RANGE_INVALID. */
	LUP_WITH_POLICY(pol, L, lup_upload_write_at(lu->u, off, "", 0, &err));
	return push_size_or_fail(L, lu, rc, &err);
}

/* read_from(file | fn [, chunk [, limit]]): copy until EOF / nil, or (files
 * only) until limit bytes, e.g. one request body's Content-Length. */
static int upload_read_from(lua_State *L)
{
	lup_lua_policy *pol;
	lua_upload *lu = check_open(L, &pol);
	int is_file;
	FILE *fh = lup_tofile(L, 2, &is_file);
	lua_Integer chunk = READ_FROM_CHUNK;
	lua_Integer limit = -1;
	lua_Integer total = 0;
	lup_error err;
	int rc = 0;

	if (!lua_isnoneornil(L, 3)) {
		chunk = (lua_Integer)lup_lua_checkcount(L, 3, 3, "chunk size", 0);
		luaL_argcheck(L, chunk > 0 && chunk <= READ_FROM_MAX_CHUNK, 3,
			      "chunk size must be between 1 and 1 GiB");
	}
	if (!lua_isnoneornil(L, 4))
		limit = (lua_Integer)lup_lua_checkcount(L, 4, 4, "limit", 0);
	luaL_argcheck(L, is_file || lua_isnoneornil(L, 4), 4,
		      "a limit needs a file source");
	if (is_file) {
		/* Two buffers: the worker hashes one while the other is filled
		 * from the file and written. */
		lup_lua_store *ls = store_of(L);
		char *buf[2];
		int k = 0, pooled;

		if (!fh)
			return luaL_error(L, "attempt to use a closed file");
		if (limit >= 0 && limit < chunk) /* a small body: small buffers */
			chunk = limit > 0 ? limit : 1;
		pooled = take_bufs(ls, (size_t)chunk, buf);
		if (!buf[0] || !buf[1]) {
			give_bufs(ls, pooled, buf);
			lup_error_set(&err, LUP_EIO, NULL, "out of memory");
			return lup_lua_fail(L, &err);
		}
		for (;; k ^= 1) {
			size_t want = (size_t)chunk, n;

			if (limit >= 0 && limit - total < chunk)
				want = (size_t)(limit - total);
			n = want ? fread(buf[k], 1, want, fh) : 0;
			if (n > 0) {
				LUP_WITH_POLICY(pol, L,
					    lup_upload_write_async(lu->u, buf[k], n, &err));
				if (rc != 0)
					break;
				total += (lua_Integer)n;
			}
			if (n < want || n < (size_t)chunk) {
				if (n < want && ferror(fh))
					rc = lup_error_set(&err, LUP_EIO, NULL,
							   "reading the source file failed");
				break;
			}
		}
		lup_upload_drain(lu->u); /* before the buffers go */
		give_bufs(ls, pooled, buf);
	} else {
		luaL_checktype(L, 2, LUA_TFUNCTION);
		for (;;) {
			size_t n;
			const char *p;

			lua_pushvalue(L, 2);
			lua_call(L, 0, 2);
			if (lua_isnil(L, -2)) {
				if (!lua_isnil(L, -1)) { /* nil, err from the source */
					lup_lua_to_error(L, -1, LUP_EIO, &err);
					rc = err.code;
				}
				lua_pop(L, 2);
				break;
			}
			p = luaL_checklstring(L, -2, &n);
			if (n == 0) {
				lua_pop(L, 2);
				break;
			}
			LUP_WITH_POLICY(pol, L, lup_upload_write(lu->u, p, n, &err));
			lua_pop(L, 2);
			if (rc != 0)
				break;
			total += (lua_Integer)n;
		}
	}
	if (rc != 0) {
		lup_lua_fail(L, &err);
		lua_pushinteger(L, total); /* nil, err, bytes copied before it */
		return 3;
	}
	lua_pushinteger(L, total);
	return 1;
}

/* Drop the anchored string of the last write: the call that just returned
 * waited for its hash. */
static void release_anchor(lua_State *L)
{
	lua_pushnil(L);
	lup_setuservalue(L, 1, 2);
}

static int upload_finish(lua_State *L)
{
	lup_lua_policy *pol;
	lua_upload *lu = check_open(L, &pol);
	const char *digest = lup_lua_checkname(L, 2);
	lua_Integer size = -1;
	lup_blob_info b;
	lup_error err;
	int rc;

	if (!lua_isnoneornil(L, 3)) {
		luaL_checktype(L, 3, LUA_TTABLE);
		lua_getfield(L, 3, "size");
		if (!lua_isnil(L, -1))
			size = (lua_Integer)lup_lua_checkcount(L, -1, 3, "size", 0);
		lua_pop(L, 1);
	}
	LUP_WITH_POLICY(pol, L, lup_upload_finish(lu->u, digest, (int64_t)size, &b, &err));
	release_anchor(L);
	if (rc != 0)
		return lup_lua_fail(L, &err);
	lua_createtable(L, 0, 2);
	lua_pushstring(L, b.digest);
	lua_setfield(L, -2, "digest");
	lua_pushinteger(L, (lua_Integer)b.size);
	lua_setfield(L, -2, "size");
	return 1;
}

static int upload_cancel(lua_State *L)
{
	lup_lua_policy *pol;
	lua_upload *lu = check_any(L, &pol);
	lup_error err;
	int rc;

	if (!lu->u) {
		lua_pushboolean(L, 1);
		return 1;
	}
	LUP_WITH_POLICY(pol, L, lup_upload_cancel(lu->u, &err));
	release_anchor(L);
	if (rc != 0)
		return lup_lua_fail(L, &err);
	lua_pushboolean(L, 1);
	return 1;
}

static int upload_close(lua_State *L)
{
	lup_lua_policy *pol;
	lua_upload *lu = check_any(L, &pol);
	lup_error err;
	int rc = 0;

	if (lu->u && lup_upload_is_open(lu->u))
		LUP_WITH_POLICY(pol, L, lup_upload_close(lu->u, &err));
	release_anchor(L);
	if (rc != 0)
		return lup_lua_fail(L, &err);
	lua_pushboolean(L, 1);
	return 1;
}

static int upload_gc(lua_State *L)
{
	lup_lua_policy *pol;
	lua_upload *lu = check_any(L, &pol);

	if (lu->u) {
		int rc;

		LUP_WITH_POLICY(pol, L, (lup_upload_free(lu->u), 0));
		(void)rc;
		lu->u = NULL;
	}
	return 0;
}

static int upload_tostring(lua_State *L)
{
	lua_upload *lu = check_any(L, NULL);

	if (lu->u) {
		char size[32]; /* no %I in LuaJIT's lua_pushfstring */

		snprintf(size, sizeof(size), "%lld",
			 (long long)lup_upload_size(lu->u));
		lua_pushfstring(L, UPLOAD_CLASS " %s/%s (%s, %s bytes)",
				lup_upload_repo(lu->u), lup_upload_uuid(lu->u),
				lup_upload_is_open(lu->u) ? "open" : "closed",
				size);
	} else
		lua_pushliteral(L, UPLOAD_CLASS " (freed)");
	return 1;
}

/* Fields first (uuid, repo, started_at), then methods (upvalue 1). */
static int upload_index(lua_State *L)
{
	lua_upload *lu = check_any(L, NULL);
	const char *key = lua_tostring(L, 2);

	if (key && lu->u) {
		if (strcmp(key, "uuid") == 0) {
			lua_pushstring(L, lup_upload_uuid(lu->u));
			return 1;
		}
		if (strcmp(key, "repo") == 0) {
			lua_pushstring(L, lup_upload_repo(lu->u));
			return 1;
		}
		if (strcmp(key, "started_at") == 0) {
			lua_pushinteger(L, (lua_Integer)lup_upload_started_at(lu->u));
			return 1;
		}
	}
	lua_pushvalue(L, 2);
	lua_gettable(L, lua_upvalueindex(1));
	return 1;
}

void lup_lua_open_upload(lua_State *L)
{
	static const luaL_Reg methods[] = {
		{ "size", upload_size },
		{ "write", upload_write },
		{ "write_at", upload_write_at },
		{ "write_chunked", upload_write_chunked },
		{ "read_from", upload_read_from },
		{ "close", upload_close },
		{ "finish", upload_finish },
		{ "cancel", upload_cancel },
		{ "bytes_reread", upload_bytes_reread },
		{ "set_max_size", upload_set_max_size },
		{ NULL, NULL },
	};

	if (!luaL_newmetatable(L, UPLOAD_CLASS)) {
		lua_pop(L, 1);
		return;
	}
	lua_pushcfunction(L, upload_gc);
	lua_setfield(L, -2, "__gc");
	lua_pushcfunction(L, upload_close);
	lua_setfield(L, -2, "__close");
	lua_pushcfunction(L, upload_tostring);
	lua_setfield(L, -2, "__tostring");
	lua_newtable(L);
	luaL_setfuncs(L, methods, 0);
	lua_pushcclosure(L, upload_index, 1);
	lua_setfield(L, -2, "__index");
	lua_pop(L, 1);
}
