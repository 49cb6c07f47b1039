/*
 * lua_store.c - the "layerup.store" class: layerup.open(d_or_root, opts)
 * and the store methods, plus the bridge that lets Lua functions serve as
 * the C core's policy hooks (log, retry, link, admit, sleep).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/layout.h"
#include "lua/lua_policy.h"
#include "lua/lua_upload.h"

static const char *const pol_names[POL_COUNT] = { "log", "retry", "link",
						  "admit", "sleep" };

/* Longest retry delay a policy may ask for, in seconds.  A delay that is
 * not a number in [0, this] (NaN, an infinity, 1e300) gives up: the
 * operation fails with its cause instead of sleeping "forever".  A
 * negative delay counts as 0, as it always did. */
#define RETRY_MAX_DELAY 3600.0

/* One call from C into a policy function.  hook_run pushes body and the
 * struct, and everything else (fetching the function, pushing arguments,
 * the call, reading results, metamethods they run) happens in body under
 * one lua_pcall, on the state of the running method. */
typedef struct hook_call hook_call;
struct hook_call {
	lup_lua_policy *pol;
	int k;                       /* POL_* */
	int (*body)(lua_State *L);   /* the protected part; arg 1 is this */
	/* Arguments. */
	const char *event;           /* log */
	const lup_field *fields;     /* log */
	size_t nfields;
	int attempt;                 /* retry */
	const lup_error *cause;      /* retry */
	const char *op;              /* retry */
	double seconds;              /* sleep */
	const lup_link_ctx *link;    /* link */
	lup_link_add_fn add;
	void *sink;
	const lup_admit_ctx *admit;  /* admit */
	/* Results. */
	double delay;                /* retry */
	int again;                   /* retry: the policy asked to retry */
	int bad_delay;               /* retry: ... with an unusable delay */
	lup_error *err;              /* link, admit: filled on refusal */
	int rc;                      /* link, admit */
	char raised[256];            /* the message of a raised error */
};

/* The function of the hook, then its arguments: h->k's ref, pushed in the
 * protected body (a ref of LUA_NOREF pushes nil: calling it raises). */
static hook_call *hook_begin(lua_State *L)
{
	hook_call *h = lua_touserdata(L, 1);

	luaL_checkstack(L, 16, "calling a policy");
	lua_rawgeti(L, LUA_REGISTRYINDEX, h->pol->refs[h->k]);
	return h;
}

/* The message of a raised error (any value), copied into h->raised under a
 * second protected call: converting may run __tostring or need memory. */
static int raised_body(lua_State *L)
{
	hook_call *h = lua_touserdata(L, 2);
	const char *m = lup_tolstring(L, 1, NULL);

	snprintf(h->raised, sizeof(h->raised), "%s", m);
	return 0;
}

/* Run h->body.  0 when it returned, -1 when the hook raised (h->raised
 * holds the message), 1 when there is no hook or no Lua state to run it
 * on.  The stack and pol->L are as they were afterwards, whatever the
 * hook did (a nested method that raised cannot leave pol->L stale). */
static int hook_run(hook_call *h)
{
	lup_lua_policy *pol = h->pol;
	lua_State *L = pol->L;
	int top, status;

	h->raised[0] = '\0';
	if (!L || pol->refs[h->k] == LUA_NOREF)
		return 1;
	if (!lua_checkstack(L, 4)) {
		snprintf(h->raised, sizeof(h->raised), "Lua stack overflow");
		return -1;
	}
	top = lua_gettop(L);
	/* Neither push allocates, so nothing can raise outside the pcall. */
	lua_pushcfunction(L, h->body);
	lua_pushlightuserdata(L, h);
	status = lua_pcall(L, 1, 0, 0);
	if (status != LUA_OK) {
		lua_pushcfunction(L, raised_body);
		lua_insert(L, -2);
		lua_pushlightuserdata(L, h);
		if (status == LUA_ERRMEM ||
		    lua_pcall(L, 2, 0, 0) != LUA_OK)
			snprintf(h->raised, sizeof(h->raised), "%s",
				 status == LUA_ERRMEM ? "not enough memory"
						      : "(error object not printable)");
	}
	lua_settop(L, top);
	pol->L = L;
	return status == LUA_OK ? 0 : -1;
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

static int log_body(lua_State *L)
{
	hook_call *h = hook_begin(L);

	lua_pushstring(L, h->event);
	push_fields(L, h->fields, h->nfields);
	lua_call(L, 2, 0);
	return 0;
}

/* A failing log sink must not break uploads, nor vanish: the first failure
 * of a store goes to stderr, every one is counted (store:stats()). */
static void hook_log(const char *event, const lup_field *f, size_t n,
		     void *payload)
{
	hook_call h = { .pol = payload, .k = POL_LOG, .body = log_body,
			.event = event, .fields = f, .nfields = n };

	if (hook_run(&h) >= 0)
		return;
	h.pol->log_errors++;
	if (!h.pol->reported) {
		h.pol->reported = 1;
		fprintf(stderr, "layerup: the log hook failed on event %s: %s "
			"(reported once per store; store:stats().log_errors "
			"counts them)\n", event, h.raised);
	}
}

static int retry_body(lua_State *L)
{
	hook_call *h = hook_begin(L);
	int isnum;
	double d;

	lua_pushinteger(L, h->attempt);
	lup_lua_push_error(L, h->cause);
	lua_pushstring(L, h->op);
	lua_call(L, 3, 1);
	d = lua_tonumberx(L, -1, &isnum);
	if (!isnum)
		return 0; /* nil, false, anything else: give up */
	if (d < 0)
		d = 0;
	if (!(d <= RETRY_MAX_DELAY)) { /* NaN, inf, too long */
		h->bad_delay = 1;
		return 0;
	}
	h->delay = d;
	h->again = 1;
	return 0;
}

static int hook_retry(int attempt, const lup_error *cause, const char *op,
		      double *delay, void *payload)
{
	hook_call h = { .pol = payload, .k = POL_RETRY, .body = retry_body,
			.attempt = attempt, .cause = cause, .op = op };
	int rc = hook_run(&h);

	if (rc < 0 || h.bad_delay)
		h.pol->retry_errors++;
	if (rc != 0 || !h.again)
		return 0;
	*delay = h.delay;
	return 1;
}

static int link_body(lua_State *L)
{
	hook_call *h = hook_begin(L);
	const lup_link_ctx *ctx = h->link;
	lua_Integer n;
	int list;

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
	lua_call(L, 1, 2);
	list = lup_absindex(L, -2);
	if (!lua_istable(L, list)) {
		if (lua_isnil(L, -1))
			h->rc = lup_error_set(h->err, LUP_EDENIED, NULL,
					      "link policy returned no links");
		else {
			lup_lua_to_error(L, -1, LUP_EDENIED, h->err);
			h->rc = h->err ? h->err->code : LUP_EDENIED;
		}
		return 0;
	}
	n = lup_len(L, list); /* may run __len: protected */
	for (lua_Integer i = 1; h->rc == 0 && i <= n; i++) {
		lup_geti(L, list, i); /* may run __index */
		if (!lua_istable(L, -1)) {
			h->rc = lup_error_set(h->err, LUP_EIO, NULL,
					      "link policy entry %lld is not a table",
					      (long long)i);
			break;
		}
		lua_getfield(L, -1, "repo");
		lua_getfield(L, -2, "digest");
		if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING)
			h->rc = h->add(h->sink, lua_tostring(L, -2),
				       lua_tostring(L, -1));
		else
			h->rc = lup_error_set(h->err, LUP_EIO, NULL,
					      "link policy entry %lld needs "
					      "repo and digest strings", (long long)i);
		lua_pop(L, 3);
	}
	return 0;
}

static int hook_link(const lup_link_ctx *ctx, lup_link_add_fn add, void *sink,
		     lup_error *err, void *payload)
{
	hook_call h = { .pol = payload, .k = POL_LINK, .body = link_body,
			.link = ctx, .add = add, .sink = sink, .err = err };
	int rc = hook_run(&h);

	if (rc > 0)
		return lup_error_set(err, LUP_EIO, NULL, "no Lua state");
	if (rc < 0)
		return lup_error_set(err, LUP_EIO, NULL, "link policy failed: %s",
				     h.raised);
	return h.rc; /* the sink fills err with its own refusals */
}

static int admit_body(lua_State *L)
{
	hook_call *h = hook_begin(L);
	const lup_admit_ctx *ctx = h->admit;

	lua_createtable(L, 0, 2);
	lua_pushstring(L, ctx->repo);
	lua_setfield(L, -2, "repo");
	if (ctx->size >= 0) {
		lua_pushinteger(L, (lua_Integer)ctx->size);
		lua_setfield(L, -2, "size");
	}
	lua_call(L, 1, 2);
	if (lua_toboolean(L, -2))
		return 0;
	if (lua_isnil(L, -1))
		h->rc = lup_error_set(h->err, LUP_EDENIED, NULL,
				      "upload to %s denied: refused by policy",
				      ctx->repo);
	else
		h->rc = lup_error_set(h->err, LUP_EDENIED, NULL,
				      "upload to %s denied: %s", ctx->repo,
				      lup_tolstring(L, -1, NULL));
	return 0;
}

static int hook_admit(const lup_admit_ctx *ctx, lup_error *err, void *payload)
{
	hook_call h = { .pol = payload, .k = POL_ADMIT, .body = admit_body,
			.admit = ctx, .err = err };
	int rc = hook_run(&h);

	if (rc > 0)
		return 0;
	if (rc < 0)
		return lup_error_set(err, LUP_EDENIED, NULL,
				     "admission policy failed: %s", h.raised);
	return h.rc;
}

static int sleep_body(lua_State *L)
{
	hook_call *h = hook_begin(L);

	lua_pushnumber(L, h->seconds);
	lua_call(L, 1, 0);
	return 0;
}

static void hook_sleep(double seconds, void *payload)
{
	hook_call h = { .pol = payload, .k = POL_SLEEP, .body = sleep_body,
			.seconds = seconds };

	if (hook_run(&h) < 0)
		h.pol->sleep_errors++;
}

lup_lua_store *lup_lua_check_store(lua_State *L, int idx)
{
	lup_lua_store *ls = luaL_checkudata(L, idx, STORE_CLASS);

	if (!ls->store)
		luaL_error(L, "attempt to use a closed store");
	return ls;
}

/* The options layerup.open knows: one table, so adding one is one line
 * here plus where it is used.  Unknown keys and wrong types raise an
 * argument error naming the option (a typo must not open a store that
 * silently ignores it). */
enum opt_type { OPT_BOOL, OPT_SIZE, OPT_DURATION, OPT_POLICY };

static const struct {
	const char *name;
	enum opt_type type;
} known_opts[] = {
	{ "fsync", OPT_BOOL },        { "max_size", OPT_SIZE },
	{ "max_age", OPT_DURATION },  { "log", OPT_POLICY },
	{ "retry", OPT_POLICY },      { "link", OPT_POLICY },
	{ "admit", OPT_POLICY },      { "sleep", OPT_POLICY },
	{ "rehash_on_finish", OPT_BOOL }, { "hash_thread", OPT_BOOL },
};

static int is_callable(lua_State *L, int idx)
{
	if (lua_isfunction(L, idx))
		return 1;
	if (luaL_getmetafield(L, idx, "__call") == LUA_TNIL)
		return 0;
	lua_pop(L, 1);
	return 1;
}

/* Check every key of the options table at idx against known_opts. */
static void check_opts(lua_State *L, int idx)
{
	static const char *const type_names[] = {
		"a boolean", "a size in bytes", "a duration in seconds",
		"a function (or false)",
	};
	const size_t n = sizeof(known_opts) / sizeof(known_opts[0]);

	lua_pushnil(L);
	while (lua_next(L, idx)) {
		size_t i = 0;
		const char *key;
		char what[64];
		int t = lua_type(L, -1), ok = 0;

		if (lua_type(L, -2) != LUA_TSTRING)
			luaL_argerror(L, idx, lua_pushfstring(L,
				"option names are strings, got a %s key",
				luaL_typename(L, -2)));
		key = lua_tostring(L, -2);
		while (i < n && strcmp(known_opts[i].name, key) != 0)
			i++;
		if (i == n)
			luaL_argerror(L, idx, lua_pushfstring(L,
				"unknown option '%s'", key));
		switch (known_opts[i].type) {
		case OPT_BOOL:
			ok = t == LUA_TBOOLEAN;
			break;
		case OPT_POLICY:
			ok = (t == LUA_TBOOLEAN && !lua_toboolean(L, -1)) ||
			     is_callable(L, -1);
			break;
		case OPT_SIZE:
		case OPT_DURATION:
			ok = t == LUA_TNUMBER;
			if (ok) {
				snprintf(what, sizeof(what), "option '%s'", key);
				lup_lua_checkcount(L, -1, idx, what,
						   known_opts[i].type == OPT_DURATION);
			}
			break;
		}
		if (!ok)
			luaL_argerror(L, idx, lua_pushfstring(L,
				"option '%s' must be %s, got %s", key,
				type_names[known_opts[i].type],
				luaL_typename(L, -1)));
		lua_pop(L, 1);
	}
}

/* opts[key] as a count (checked by check_opts), 0 when absent. */
static int64_t opt_count(lua_State *L, int idx, const char *key, int round_up)
{
	int64_t v = 0;

	lua_getfield(L, idx, key);
	if (!lua_isnil(L, -1))
		v = lup_lua_checkcount(L, -1, idx, key, round_up);
	lua_pop(L, 1);
	return v;
}

static int store_open(lua_State *L)
{
	lup_store_options opts = LUP_STORE_OPTIONS_INIT;
	lup_driver *d = NULL;
	lup_lua_store *ls;
	lup_error err;
	int have_opts = !lua_isnoneornil(L, 2);
	int rc;

	if (have_opts) {
		luaL_checktype(L, 2, LUA_TTABLE);
		check_opts(L, 2);
	}
	if (lua_type(L, 1) == LUA_TSTRING) {
		size_t len;

		luaL_argcheck(L, strlen(lua_tolstring(L, 1, &len)) == len, 1,
			      "root contains a NUL byte");
	} else {
		lup_lua_check_driver(L, 1);
	}
	ls = lup_newuserdata(L, sizeof(*ls), 1);
	memset(ls, 0, sizeof(*ls));
	ls->store = NULL;
	ls->pol.L = NULL;
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
			if (!lua_toboolean(L, -1)) { /* nil or false: none */
				lua_pop(L, 1);
				continue;
			}
			ls->pol.refs[k] = luaL_ref(L, LUA_REGISTRYINDEX);
		}
		opts.max_size = opt_count(L, 2, "max_size", 0);
		opts.max_age = opt_count(L, 2, "max_age", 1);
		lua_getfield(L, 2, "rehash_on_finish"); /* a boolean: check_opts */
		opts.rehash_on_finish = lua_toboolean(L, -1);
		lua_pop(L, 1);
		/* hash_thread = false: never start a hash worker thread. */
		lua_getfield(L, 2, "hash_thread");
		if (!lua_isnil(L, -1))
			opts.hash_thread = lua_toboolean(L, -1);
		lua_pop(L, 1);
	}
	opts.policy.payload = &ls->pol;
	if (ls->pol.refs[POL_LOG] != LUA_NOREF)
		opts.policy.log = hook_log;
	if (ls->pol.refs[POL_RETRY] != LUA_NOREF)
		opts.policy.retry = hook_retry;
	if (ls->pol.refs[POL_LINK] != LUA_NOREF)
		opts.policy.link = hook_link;
	if (ls->pol.refs[POL_ADMIT] != LUA_NOREF)
		opts.policy.admit_upload = hook_admit;
	if (ls->pol.refs[POL_SLEEP] != LUA_NOREF)
		opts.policy.sleep = hook_sleep;
	rc = lup_store_open(&ls->store, d, &opts, &err);
	if (rc != 0)
		return lup_lua_fail(L, &err);
	return 1;
}

/* close() and __close: release the C store; the policy refs stay until
 * __gc because uploads still open may call them (a finish after the store
 * was closed still runs its link policy). */
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

/* The policy refs and the copy buffers go only here: a store userdata is
 * collected only once no upload userdata references it. */
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

/* store:start(repo [, {size = N}]): size is what the caller expects to
 * upload (e.g. a Content-Length); the admission policy sees it. */
static int store_start(lua_State *L)
{
	lup_lua_store *ls = lup_lua_check_store(L, 1);
	const char *repo = lup_lua_checkname(L, 2);
	lup_start_options so = LUP_START_OPTIONS_INIT;
	lup_upload *u;
	lup_error err;
	int rc;

	if (!lua_isnoneornil(L, 3)) {
		luaL_checktype(L, 3, LUA_TTABLE);
		lua_pushnil(L);
		while (lua_next(L, 3)) {
			if (lua_type(L, -2) != LUA_TSTRING ||
			    strcmp(lua_tostring(L, -2), "size") != 0)
				luaL_argerror(L, 3, lua_pushfstring(L,
					"unknown option '%s'", lup_tolstring(L, -2, NULL)));
			lua_pop(L, 1);
		}
		lua_getfield(L, 3, "size");
		if (!lua_isnil(L, -1))
			so.size = lup_lua_checkcount(L, -1, 3, "size", 0);
		lua_pop(L, 1);
	}
	LUP_WITH_POLICY(&ls->pol, L, lup_upload_start_ext(&u, ls->store, repo, &so, &err));
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
	int64_t older;
	int dry, rc;

	luaL_checktype(L, 2, LUA_TTABLE);
	lua_getfield(L, 2, "older_than");
	if (lua_isnil(L, -1))
		return luaL_argerror(L, 2, "purge needs older_than (seconds)");
	older = lup_lua_checkcount(L, -1, 2, "older_than", 1);
	lua_getfield(L, 2, "dry_run");
	dry = lua_toboolean(L, -1);
	lua_pop(L, 2);
	LUP_WITH_POLICY(&ls->pol, L, lup_store_purge(ls->store, (int64_t)older, dry, &list, &err));
	return upload_list_result(L, rc, &list, &err);
}

/* store:stats(): failures of hooks that cannot fail an operation, so they
 * are counted instead ({log_errors=, retry_errors=, sleep_errors=}).
 * Works on a closed store too. */
static int store_stats(lua_State *L)
{
	lup_lua_store *ls = luaL_checkudata(L, 1, STORE_CLASS);

	lua_createtable(L, 0, 3);
	lua_pushinteger(L, ls->pol.log_errors);
	lua_setfield(L, -2, "log_errors");
	lua_pushinteger(L, ls->pol.retry_errors);
	lua_setfield(L, -2, "retry_errors");
	lua_pushinteger(L, ls->pol.sleep_errors);
	lua_setfield(L, -2, "sleep_errors");
	return 1;
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
		{ "__close", store_close },
		{ "__tostring", store_tostring },
		{ NULL, NULL },
	};
	static const luaL_Reg methods[] = {
		{ "start", store_start },   { "resume", store_resume },
		{ "stat", store_stat },     { "open", store_open_blob },
		{ "link", store_link },     { "unlink", store_unlink },
		{ "mount", store_mount },   { "uploads", store_uploads },
		{ "purge", store_purge },   { "driver", store_driver },
		{ "close", store_close },   { "stats", store_stats },
		{ NULL, NULL },
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
