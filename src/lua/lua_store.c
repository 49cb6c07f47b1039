/*
 * lua_store.c - the "layerup.store" class: layerup.open(d_or_root, opts)
 * and the store methods, plus the bridge that lets Lua functions serve as
 * the C core's policy hooks (log, retry, link, admit, sleep).
 */
#include <stdlib.h>
#include <string.h>

#include "store/layout.h"
#include "lua/lua_store.h"

static const char *const pol_names[POL_COUNT] = { "log", "retry", "link",
						  "admit", "sleep" };

/* Push the policy function k; 0 when it is unset or no state is active. */
static lua_State *pol_push(lup_lua_policy *pol, int k)
{
	lua_State *L = pol->L;

	if (!L || pol->refs[k] == LUA_NOREF)
		return NULL;
	lua_rawgeti(L, LUA_REGISTRYINDEX, pol->refs[k]);
	return L;
}

static void push_fields(lua_State *L, const lup_field *f, size_t n)
{
	lua_createtable(L, 0, (int)n);
	for (size_t i = 0; i < n; i++) {
		switch (f[i].type) {
		case LUP_FIELD_STR:
			lua_pushstring(L, f[i].s ? f[i].s : "");
			break;
		case LUP_FIELD_INT:
			lua_pushinteger(L, (lua_Integer)f[i].i);
			break;
		case LUP_FIELD_NUM:
			lua_pushnumber(L, f[i].n);
			break;
		case LUP_FIELD_BOOL:
			lua_pushboolean(L, (int)f[i].i);
			break;
		}
		lua_setfield(L, -2, f[i].key);
	}
}

static void hook_log(const char *event, const lup_field *f, size_t n,
		     void *payload)
{
	lua_State *L = pol_push(payload, POL_LOG);

	if (!L)
		return;
	lua_pushstring(L, event);
	push_fields(L, f, n);
	if (lua_pcall(L, 2, 0, 0) != LUA_OK)
		lua_pop(L, 1); /* a failing log sink must not break uploads */
}

static int hook_retry(int attempt, const lup_error *cause, const char *op,
		      double *delay, void *payload)
{
	lua_State *L = pol_push(payload, POL_RETRY);
	int again = 0;

	if (!L)
		return 0;
	lua_pushinteger(L, attempt);
	lup_lua_push_error(L, cause);
	lua_pushstring(L, op);
	if (lua_pcall(L, 3, 1, 0) != LUA_OK) {
		lua_pop(L, 1);
		return 0;
	}
	if (lua_isnumber(L, -1)) {
		*delay = lua_tonumber(L, -1);
		if (*delay < 0)
			*delay = 0;
		again = 1;
	}
	lua_pop(L, 1);
	return again;
}

static int hook_link(const lup_link_ctx *ctx, lup_link_add_fn add, void *sink,
		     lup_error *err, void *payload)
{
	lua_State *L = pol_push(payload, POL_LINK);
	int rc = 0;

	if (!L)
		return lup_error_set(err, LUP_EIO, NULL, "no Lua state");
	lua_createtable(L, 0, 5);
	lua_pushstring(L, ctx->repo);
	lua_setfield(L, -2, "repo");
	lua_pushstring(L, ctx->uuid);
	lua_setfield(L, -2, "uuid");
	lua_pushstring(L, ctx->canonical);
	lua_setfield(L, -2, "canonical");
	lua_pushstring(L, ctx->requested);
	lua_setfield(L, -2, "requested");
	lua_pushinteger(L, (lua_Integer)ctx->size);
	lua_setfield(L, -2, "size");
	if (lua_pcall(L, 1, 2, 0) != LUA_OK) {
		rc = lup_error_set(err, LUP_EIO, NULL, "link policy failed: %s",
				   lua_tostring(L, -1));
		lua_pop(L, 1);
		return rc;
	}
	if (!lua_istable(L, -2)) {
		if (lua_isnil(L, -1))
			rc = lup_error_set(err, LUP_EDENIED, NULL,
					   "link policy returned no links");
		else {
			lup_lua_to_error(L, -1, LUP_EDENIED, err);
			rc = err ? err->code : LUP_EDENIED;
		}
		lua_pop(L, 2);
		return rc;
	}
	lua_Integer n = lup_len(L, -2);
	for (lua_Integer i = 1; rc == 0 && i <= n; i++) {
		lup_geti(L, -2, i);
		if (lua_istable(L, -1)) {
			lua_getfield(L, -1, "repo");
			lua_getfield(L, -2, "digest");
			if (lua_type(L, -2) == LUA_TSTRING &&
			    lua_type(L, -1) == LUA_TSTRING)
				rc = add(sink, lua_tostring(L, -2), lua_tostring(L, -1));
			else
				rc = lup_error_set(err, LUP_EIO, NULL,
						   "link policy entry %d needs "
						   "repo and digest strings", (int)i);
			lua_pop(L, 2);
		} else {
			rc = lup_error_set(err, LUP_EIO, NULL,
					   "link policy entry %d is not a table",
					   (int)i);
		}
		lua_pop(L, 1);
	}
	lua_pop(L, 2);
	return rc;
}

static int hook_admit(const char *repo, lup_error *err, void *payload)
{
	lua_State *L = pol_push(payload, POL_ADMIT);
	int rc = 0;

	if (!L)
		return 0;
	lua_createtable(L, 0, 1);
	lua_pushstring(L, repo);
	lua_setfield(L, -2, "repo");
	if (lua_pcall(L, 1, 2, 0) != LUA_OK) {
		rc = lup_error_set(err, LUP_EDENIED, NULL,
				   "admission policy failed: %s",
				   lua_tostring(L, -1));
		lua_pop(L, 1);
		return rc;
	}
	if (!lua_toboolean(L, -2))
		rc = lup_error_set(err, LUP_EDENIED, NULL, "upload to %s denied: %s",
				   repo, lua_isstring(L, -1) ? lua_tostring(L, -1)
							     : "refused by policy");
	lua_pop(L, 2);
	return rc;
}

static void hook_sleep(double seconds, void *payload)
{
	lua_State *L = pol_push(payload, POL_SLEEP);

	if (!L)
		return;
	lua_pushnumber(L, seconds);
	if (lua_pcall(L, 1, 0, 0) != LUA_OK)
		lua_pop(L, 1);
}

lup_lua_store *lup_lua_check_store(lua_State *L, int idx)
{
	lup_lua_store *ls = luaL_checkudata(L, idx, STORE_CLASS);

	if (!ls->store)
		luaL_error(L, "attempt to use a closed store");
	return ls;
}

static int store_open(lua_State *L)
{
	lup_store_options opts = LUP_STORE_OPTIONS_INIT;
	lup_driver *d = NULL;
	lup_lua_store *ls;
	lup_error err;
	int have_opts = !lua_isnoneornil(L, 2);
	int rc;

	if (have_opts)
		luaL_checktype(L, 2, LUA_TTABLE);
	ls = lup_newuserdata(L, sizeof(*ls), 1);
	ls->store = NULL;
	ls->pol.L = NULL;
	memset(&ls->bufs, 0, sizeof(ls->bufs));
	for (int k = 0; k < POL_COUNT; k++)
		ls->pol.refs[k] = LUA_NOREF;
	luaL_setmetatable(L, STORE_CLASS);
	if (lua_type(L, 1) == LUA_TSTRING) {
		lup_fs_options fo = LUP_FS_OPTIONS_INIT;

		if (have_opts) {
			lua_getfield(L, 2, "fsync");
			fo.fsync = lua_toboolean(L, -1);
			lua_pop(L, 1);
		}
		if (lup_driver_filesystem(&d, lua_tostring(L, 1), &fo, &err) != 0)
			return lup_lua_fail(L, &err);
		lup_lua_push_driver(L, d); /* takes our reference */
	} else {
		d = lup_lua_check_driver(L, 1);
		lua_pushvalue(L, 1);
	}
	lup_setuservalue(L, -2, 1); /* the store keeps its driver userdata */
	if (have_opts) {
		for (int k = 0; k < POL_COUNT; k++) {
			lua_getfield(L, 2, pol_names[k]);
			if (lua_isnil(L, -1) || (lua_isboolean(L, -1) && !lua_toboolean(L, -1))) {
				lua_pop(L, 1);
				continue;
			}
			if (!lua_isfunction(L, -1)) {
				if (luaL_getmetafield(L, -1, "__call") == LUA_TNIL)
					return luaL_error(L, "option '%s' must be callable",
							  pol_names[k]);
				lua_pop(L, 1);
			}
			ls->pol.refs[k] = luaL_ref(L, LUA_REGISTRYINDEX);
		}
		lua_getfield(L, 2, "max_size");
		opts.max_size = (int64_t)lup_optinteger(L, -1, 0);
		lua_getfield(L, 2, "max_age");
		opts.max_age = (int64_t)lup_optinteger(L, -1, 0);
		lua_pop(L, 2);
	}
	opts.policy.payload = &ls->pol;
	if (ls->pol.refs[POL_LOG] != LUA_NOREF)
		opts.policy.log = hook_log;
	if (ls->pol.refs[POL_RETRY] != LUA_NOREF)
		opts.policy.retry = hook_retry;
	if (ls->pol.refs[POL_LINK] != LUA_NOREF)
		opts.policy.link = hook_link;
	if (ls->pol.refs[POL_ADMIT] != LUA_NOREF)
		opts.policy.admit = hook_admit;
	if (ls->pol.refs[POL_SLEEP] != LUA_NOREF)
		opts.policy.sleep = hook_sleep;
	rc = lup_store_open(&ls->store, d, &opts, &err);
	if (rc != 0)
		return lup_lua_fail(L, &err);
	return 1;
}

/* Release the C store; the policy refs stay until __gc because uploads
 * still running may call them. */
static int store_close(lua_State *L)
{
	lup_lua_store *ls = luaL_checkudata(L, 1, STORE_CLASS);

	if (ls->store) {
		lup_store_free(ls->store);
		ls->store = NULL;
	}
	lua_pushboolean(L, 1);
	return 1;
}

static int store_gc(lua_State *L)
{
	lup_lua_store *ls = luaL_checkudata(L, 1, STORE_CLASS);

	store_close(L);
	free(ls->bufs.p[0]);
	free(ls->bufs.p[1]);
	memset(&ls->bufs, 0, sizeof(ls->bufs));
	for (int k = 0; k < POL_COUNT; k++) {
		luaL_unref(L, LUA_REGISTRYINDEX, ls->pol.refs[k]);
		ls->pol.refs[k] = LUA_NOREF;
	}
	return 0;
}

static int store_tostring(lua_State *L)
{
	lup_lua_store *ls = luaL_checkudata(L, 1, STORE_CLASS);

	if (ls->store)
		lua_pushfstring(L, STORE_CLASS " (%s): %p",
				lup_store_driver(ls->store)->name, (void *)ls);
	else
		lua_pushfstring(L, STORE_CLASS " (closed): %p", (void *)ls);
	return 1;
}

static int store_start(lua_State *L)
{
	lup_lua_store *ls = lup_lua_check_store(L, 1);
	const char *repo = lup_lua_checkname(L, 2);
	lup_upload *u;
	lup_error err;
	int rc;

	LUP_WITH_POLICY(&ls->pol, L, lup_upload_start(&u, ls->store, repo, &err));
	if (rc != 0)
		return lup_lua_fail(L, &err);
	lup_lua_push_upload(L, u, 1);
	return 1;
}

static int store_resume(lua_State *L)
{
	lup_lua_store *ls = lup_lua_check_store(L, 1);
	const char *repo = lup_lua_checkname(L, 2);
	const char *uuid = lup_lua_checkname(L, 3);
	lup_upload *u;
	lup_error err;
	int rc;

	LUP_WITH_POLICY(&ls->pol, L, lup_upload_resume(&u, ls->store, repo, uuid, &err));
	if (rc != 0)
		return lup_lua_fail(L, &err);
	lup_lua_push_upload(L, u, 1);
	return 1;
}

static void push_blob(lua_State *L, const lup_blob_info *b)
{
	lua_createtable(L, 0, 2);
	lua_pushstring(L, b->digest);
	lua_setfield(L, -2, "digest");
	lua_pushinteger(L, (lua_Integer)b->size);
	lua_setfield(L, -2, "size");
}

static int store_stat(lua_State *L)
{
	lup_lua_store *ls = lup_lua_check_store(L, 1);
	const char *digest = lup_lua_checkname(L, 2);
	const char *repo = lup_lua_optname(L, 3);
	lup_blob_info b;
	lup_error err;
	int rc;

	LUP_WITH_POLICY(&ls->pol, L, lup_store_stat(ls->store, digest, repo, &b, &err));
	if (rc != 0)
		return lup_lua_fail(L, &err);
	push_blob(L, &b);
	return 1;
}

/* store:open(repo, digest): check the link, then hand out the driver's own
 * reader on the blob (the "layerup.reader" class of lua_driver.c). */
static int store_open_blob(lua_State *L)
{
	lup_lua_store *ls = lup_lua_check_store(L, 1);
	const char *repo = lup_lua_checkname(L, 2);
	const char *digest = lup_lua_checkname(L, 3);
	char path[LUP_PATH_BUF];
	lup_digest canon;
	lup_blob_info b;
	lup_error err;
	int rc;

	LUP_WITH_POLICY(&ls->pol, L, lup_store_stat(ls->store, digest, repo, &b, &err));
	if (rc != 0)
		return lup_lua_fail(L, &err);
	if (lup_digest_parse(b.digest, &canon, &err) != 0 ||
	    lup_path_blob_data(path, &canon) != 0)
		return lup_lua_fail(L, &err);
	lup_getuservalue(L, 1, 1);
	lua_getfield(L, -1, "reader");
	lua_insert(L, -2);
	lua_pushstring(L, path);
	lua_pushinteger(L, 0);
	lua_call(L, 3, 2);
	return 2;
}

static int store_link_common(lua_State *L, int unlink)
{
	lup_lua_store *ls = lup_lua_check_store(L, 1);
	const char *repo = lup_lua_checkname(L, 2);
	const char *digest = lup_lua_checkname(L, 3);
	lup_error err;
	int rc;

	if (unlink)
		LUP_WITH_POLICY(&ls->pol, L, lup_store_unlink(ls->store, repo, digest, &err));
	else
		LUP_WITH_POLICY(&ls->pol, L, lup_store_link(ls->store, repo, digest, &err));
	if (rc != 0)
		return lup_lua_fail(L, &err);
	lua_pushboolean(L, 1);
	return 1;
}

static int store_link(lua_State *L) { return store_link_common(L, 0); }
static int store_unlink(lua_State *L) { return store_link_common(L, 1); }

static int store_mount(lua_State *L)
{
	lup_lua_store *ls = lup_lua_check_store(L, 1);
	const char *from = lup_lua_checkname(L, 2);
	const char *to = lup_lua_checkname(L, 3);
	const char *digest = lup_lua_checkname(L, 4);
	lup_blob_info b;
	lup_error err;
	int rc;

	LUP_WITH_POLICY(&ls->pol, L, lup_store_mount(ls->store, from, to, digest, &b, &err));
	if (rc != 0)
		return lup_lua_fail(L, &err);
	push_blob(L, &b);
	return 1;
}

static void push_upload_list(lua_State *L, const lup_upload_list *l)
{
	lua_createtable(L, (int)l->count, 0);
	for (size_t i = 0; i < l->count; i++) {
		lua_createtable(L, 0, 4);
		lua_pushstring(L, l->items[i].repo);
		lua_setfield(L, -2, "repo");
		lua_pushstring(L, l->items[i].uuid);
		lua_setfield(L, -2, "uuid");
		lua_pushinteger(L, (lua_Integer)l->items[i].started_at);
		lua_setfield(L, -2, "started_at");
		lua_pushinteger(L, (lua_Integer)l->items[i].size);
		lua_setfield(L, -2, "size");
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
}

/* Return the list (and free it), or nil, err. */
static int upload_list_result(lua_State *L, int rc, lup_upload_list *list,
			      const lup_error *err)
{
	if (rc != 0)
		return lup_lua_fail(L, err);
	push_upload_list(L, list);
	lup_upload_list_free(list);
	return 1;
}

static int store_uploads(lua_State *L)
{
	lup_lua_store *ls = lup_lua_check_store(L, 1);
	const char *repo = lup_lua_optname(L, 2);
	lup_upload_list list;
	lup_error err;
	int rc;

	LUP_WITH_POLICY(&ls->pol, L, lup_store_uploads(ls->store, repo, &list, &err));
	return upload_list_result(L, rc, &list, &err);
}

static int store_purge(lua_State *L)
{
	lup_lua_store *ls = lup_lua_check_store(L, 1);
	lup_upload_list list;
	lup_error err;
	lua_Integer older;
	int dry, rc;

	luaL_checktype(L, 2, LUA_TTABLE);
	lua_getfield(L, 2, "older_than");
	if (!lua_isnumber(L, -1))
		return luaL_error(L, "purge needs older_than (seconds)");
	older = (lua_Integer)lua_tonumber(L, -1);
	luaL_argcheck(L, older >= 0, 2, "older_than must not be negative");
	lua_getfield(L, 2, "dry_run");
	dry = lua_toboolean(L, -1);
	lua_pop(L, 2);
	LUP_WITH_POLICY(&ls->pol, L, lup_store_purge(ls->store, (int64_t)older, dry, &list, &err));
	return upload_list_result(L, rc, &list, &err);
}

static int store_driver(lua_State *L)
{
	lup_lua_check_store(L, 1);
	lup_getuservalue(L, 1, 1);
	return 1;
}

/* layerup.valid_repo(name) / layerup.valid_uuid(id): the core's own
 * grammars, for front ends that want to refuse input before any I/O. */
static int valid_repo(lua_State *L)
{
	lua_pushboolean(L, lua_type(L, 1) == LUA_TSTRING &&
			       lup_repo_valid(lup_lua_checkname(L, 1)));
	return 1;
}

static int valid_uuid(lua_State *L)
{
	lua_pushboolean(L, lua_type(L, 1) == LUA_TSTRING &&
			       lup_uuid_valid(lup_lua_checkname(L, 1)));
	return 1;
}

void lup_lua_open_store(lua_State *L)
{
	static const luaL_Reg meta[] = {
		{ "__gc", store_gc },
		{ "__close", store_gc },
		{ "__tostring", store_tostring },
		{ NULL, NULL },
	};
	static const luaL_Reg methods[] = {
		{ "start", store_start },   { "resume", store_resume },
		{ "stat", store_stat },     { "open", store_open_blob },
		{ "link", store_link },     { "unlink", store_unlink },
		{ "mount", store_mount },   { "uploads", store_uploads },
		{ "purge", store_purge },   { "driver", store_driver },
		{ "close", store_close },   { NULL, NULL },
	};

	lup_lua_new_class(L, STORE_CLASS, meta, methods);
	lup_lua_open_upload(L);
	lup_lua_open_hash(L);
	lua_pushcfunction(L, store_open);
	lua_setfield(L, -2, "open");
	lua_pushcfunction(L, valid_repo);
	lua_setfield(L, -2, "valid_repo");
	lua_pushcfunction(L, valid_uuid);
	lua_setfield(L, -2, "valid_uuid");
}
