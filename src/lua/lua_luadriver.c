/*
 * lua_luadriver.c - layerup.driver(tbl): a C lup_driver whose methods call
 * the functions of a Lua table, so a storage backend can be written in Lua.
 *
 * Calls: tbl:fn(args) (self is the table), results as in the Lua API
 * contract; a failure is `nil, err` where err is an error table or a
 * string (IO).  The core wrappers put the driver name in front of every
 * message, so a Lua driver's messages must not name the driver themselves.
 * A Lua error raised by a driver function becomes IO with its message: it
 * never unwinds through the C core.
 *
 * Every call runs on a dedicated Lua thread under lua_pcall, never yields,
 * and leaves that thread's stack as it found it (calls may nest: a Lua
 * driver may use another layerup driver, even itself).  Lua states are not
 * thread-safe: a Lua driver must only be called by the OS thread that runs
 * its Lua state at that moment.
 *
 * Lifetimes: the C driver is reference counted and may outlive the Lua
 * handle that created it (a store holds a reference).  It keeps the table,
 * the thread and a sentinel alive through one registry reference (the
 * anchor) that d->free drops.  The sentinel's finalizer runs when the Lua
 * state is closed while C still holds the driver: from then on every call
 * fails with IO instead of touching a dead state.
 *
 * Locks: tbl:lock(path) -> token | nil, err and tbl:unlock(token) when the
 * table has both; otherwise an in-process lock set in C, so that a second
 * handle on an upload still gets LOCKED (one set per layerup.driver call).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "lua/lua_util.h"

#define SENTINEL_CLASS "layerup.luadriver.sentinel"

/* layerup.driver(tbl); registered by lua_driver.c. */
int lup_lua_driver_new(lua_State *L);

typedef struct held_lock {
	struct held_lock *next;
	char path[];
} held_lock;

typedef struct lua_drv {
	lup_driver parent; /* must be first */
	lua_State *L;      /* main thread, for the registry; NULL once closed */
	lua_State *T;      /* the thread all calls run on; NULL once closed */
	int anchor;        /* registry ref of {tbl, thread, sentinel} */
	int lua_locks;     /* tbl has lock/unlock */
	pthread_mutex_t mu; /* guards held */
	held_lock *held;
	char *name;
} lua_drv;

typedef struct sentinel {
	lua_drv *ld; /* NULL once the driver is freed */
} sentinel;

typedef struct ld_reader {
	lup_reader base;
	lua_drv *ld; /* holds a reference */
	int ref;     /* the Lua reader object */
	lup_buf pending; /* bytes the Lua reader returned beyond n */
	size_t pending_off;
} ld_reader;

typedef struct ld_writer {
	lup_writer base;
	lua_drv *ld; /* holds a reference */
	int ref;     /* the Lua writer object */
} ld_writer;

typedef struct ld_token {
	int ref; /* the token tbl:lock returned */
} ld_token;

/* One call into Lua.  The protected body pushes self and the arguments,
 * calls self[method], and hands the results to `result`. */
typedef struct call call;
struct call {
	lua_drv *ld;
	const char *method;
	int self_ref;  /* registry ref of self; LUA_NOREF for the table */
	int optional;  /* a missing method is a no-op, not an error */
	int nargs;     /* up to 2 of the argument slots below, in order */
	struct {
		enum { ARG_STR, ARG_INT, ARG_BOOL, ARG_REF } kind;
		const char *s; /* ARG_STR: len bytes */
		size_t len;
		lua_Integer i; /* ARG_INT, ARG_BOOL, ARG_REF (registry ref) */
	} args[2];
	int (*result)(lua_State *T, call *c, int first, int n);
	/* Results. */
	lup_buf *buf;
	size_t max;          /* read: room at dst */
	void *dst;           /* read: destination */
	int64_t count;       /* read: bytes delivered; size: the size */
	lup_buf *overflow;   /* read: where the excess goes */
	lup_stat *st;
	lup_strlist *list;
	int ref_out;         /* reader/writer/lock: registry ref of result */
	lup_error *err;
	int rc;
};

static void call_init(call *c, lua_drv *ld, const char *method,
		      lup_error *err)
{
	memset(c, 0, sizeof(*c));
	c->ld = ld;
	c->method = method;
	c->self_ref = LUA_NOREF;
	c->ref_out = LUA_NOREF;
	c->err = err;
}

static void arg_str(call *c, const char *s, size_t len)
{
	c->args[c->nargs].kind = ARG_STR;
	c->args[c->nargs].s = s;
	c->args[c->nargs].len = len;
	c->nargs++;
}

static void arg_int(call *c, int kind, lua_Integer i)
{
	c->args[c->nargs].kind = kind;
	c->args[c->nargs].i = i;
	c->nargs++;
}

static int is_callable(lua_State *L, int idx)
{
	int ok;

	if (lua_isfunction(L, idx))
		return 1;
	if (!luaL_getmetafield(L, idx, "__call"))
		return 0;
	ok = lua_isfunction(L, -1);
	lua_pop(L, 1);
	return ok;
}

/* A failed call: `nil, err` (or false, err). */
static int result_failed(lua_State *T, call *c, int first, int n)
{
	if (n >= 2 && !lua_isnil(T, first + 1)) {
		lup_lua_to_error(T, first + 1, LUP_EIO, c->err);
	} else {
		lup_error_set(c->err, LUP_EIO, NULL, "%s failed", c->method);
	}
	c->rc = c->err ? c->err->code : LUP_EIO;
	if (c->rc == LUP_OK)
		c->rc = LUP_EIO;
	return 0;
}

static int call_body(lua_State *T)
{
	call *c = lua_touserdata(T, 1);
	int self, first;

	lua_settop(T, 0);
	if (c->self_ref == LUA_NOREF) {
		lua_rawgeti(T, LUA_REGISTRYINDEX, c->ld->anchor);
		lua_rawgeti(T, -1, 1);
		lua_remove(T, -2);
	} else {
		lua_rawgeti(T, LUA_REGISTRYINDEX, c->self_ref);
	}
	self = lua_gettop(T);
	lua_getfield(T, self, c->method);
	if (!is_callable(T, -1)) {
		if (c->optional && lua_isnil(T, -1))
			return 0;
		return luaL_error(T, "%s is not a function", c->method);
	}
	lua_pushvalue(T, self);
	for (int i = 0; i < c->nargs; i++) {
		switch (c->args[i].kind) {
		case ARG_STR:
			lua_pushlstring(T, c->args[i].s, c->args[i].len);
			break;
		case ARG_INT:
			lua_pushinteger(T, c->args[i].i);
			break;
		case ARG_BOOL:
			lua_pushboolean(T, (int)c->args[i].i);
			break;
		case ARG_REF:
			lua_rawgeti(T, LUA_REGISTRYINDEX, c->args[i].i);
			break;
		}
	}
	lua_call(T, 1 + c->nargs, LUA_MULTRET);
	luaL_checkstack(T, 8, "reading driver results");
	first = self + 1;
	if (!c->result)
		return 0;
	return c->result(T, c, first, lua_gettop(T) - self);
}

static int to_error_body(lua_State *T)
{
	lup_error *err = lua_touserdata(T, 2);

	lup_lua_to_error(T, 1, LUP_EIO, err);
	return 0;
}

/* Run c on the driver's thread.  Returns 0 or a negative code with
 * c->err filled. */
static int call_run(call *c)
{
	lua_State *T = c->ld->T;
	int top, status;

	if (!T)
		return lup_error_set(c->err, LUP_EIO, NULL,
				     "the Lua state is closed");
	if (!lua_checkstack(T, LUA_MINSTACK))
		return lup_error_set(c->err, LUP_EIO, NULL,
				     "Lua stack overflow");
	top = lua_gettop(T);
	c->rc = 0;
	/* Neither push allocates, so nothing can raise outside the pcall. */
	lua_pushcfunction(T, call_body);
	lua_pushlightuserdata(T, c);
	status = lua_pcall(T, 1, 0, 0);
	if (status == LUA_ERRMEM) {
		lup_error_set(c->err, LUP_EIO, NULL, "not enough memory");
		c->rc = LUP_EIO;
	} else if (status != LUA_OK) {
		/* A raised error: IO with its message.  Converting it may
		 * itself run out of memory, hence the second pcall. */
		lup_error tmp;
		lup_error *err = c->err ? c->err : &tmp;

		lua_pushcfunction(T, to_error_body);
		lua_pushvalue(T, -2);
		lua_pushlightuserdata(T, err);
		if (lua_pcall(T, 2, 0, 0) != LUA_OK)
			lup_error_set(err, LUP_EIO, NULL, "%s raised an error",
				      c->method);
		err->code = LUP_EIO;
		c->rc = LUP_EIO;
	}
	lua_settop(T, top);
	return c->rc;
}

/* Result handlers (run inside the pcall; raising gives IO). */

static int result_ok(lua_State *T, call *c, int first, int n)
{
	if (n < 1 || !lua_toboolean(T, first))
		return result_failed(T, c, first, n);
	return 0;
}

static int result_content(lua_State *T, call *c, int first, int n)
{
	size_t len;
	const char *s;

	if (n < 1 || !lua_toboolean(T, first))
		return result_failed(T, c, first, n);
	if (lua_type(T, first) != LUA_TSTRING)
		return luaL_error(T, "get_content must return a string");
	s = lua_tolstring(T, first, &len);
	if (lup_buf_append(c->buf, s, len) < 0)
		return luaL_error(T, "not enough memory");
	return 0;
}

static int64_t field_int(lua_State *T, int idx, const char *key, int *found)
{
	int isnum;
	lua_Integer v;

	lua_getfield(T, idx, key);
	v = lup_tointegerx(T, -1, &isnum);
	*found = !lua_isnil(T, -1);
	if (*found && !isnum)
		luaL_error(T, "stat: %s must be an integer", key);
	lua_pop(T, 1);
	return (int64_t)v;
}

static int result_stat(lua_State *T, call *c, int first, int n)
{
	int found;
	int64_t v;

	if (n < 1 || !lua_toboolean(T, first))
		return result_failed(T, c, first, n);
	if (!lua_istable(T, first))
		return luaL_error(T, "stat must return a table");
	memset(c->st, 0, sizeof(*c->st));
	v = field_int(T, first, "size", &found);
	c->st->size = found ? v : 0;
	v = field_int(T, first, "mtime_ns", &found);
	if (found) {
		c->st->mtime_ns = v;
	} else {
		lua_getfield(T, first, "mtime");
		if (lup_isinteger(T, -1)) {
			c->st->mtime_ns = (int64_t)lua_tointeger(T, -1) *
					  1000000000;
		} else if (lua_type(T, -1) == LUA_TNUMBER) {
			/* Whole seconds and fraction apart: x * 1e9 would
			 * round away the nanoseconds. */
			lua_Number x = lua_tonumber(T, -1);
			int64_t sec;

			if (!(x > -9e9 && x < 9e9)) /* also NaN */
				return luaL_error(T, "stat: mtime out of range");
			sec = (int64_t)x;

			if ((lua_Number)sec > x)
				sec--; /* floor for negative times */
			c->st->mtime_ns = sec * 1000000000 +
					  (int64_t)((x - (lua_Number)sec) * 1e9 +
						    0.5);
		} else if (!lua_isnil(T, -1)) {
			return luaL_error(T, "stat: mtime must be a number");
		}
		lua_pop(T, 1);
	}
	lua_getfield(T, first, "dir");
	c->st->is_dir = lua_toboolean(T, -1);
	lua_pop(T, 1);
	return 0;
}

static int result_list(lua_State *T, call *c, int first, int n)
{
	lua_Integer len;

	if (n < 1 || !lua_toboolean(T, first))
		return result_failed(T, c, first, n);
	if (!lua_istable(T, first))
		return luaL_error(T, "list must return a table");
	len = (lua_Integer)lup_rawlen(T, first);
	for (lua_Integer i = 1; i <= len; i++) {
		if (lup_rawgeti(T, first, i) != LUA_TSTRING)
			return luaL_error(T, "list: entry %d is not a string",
					  (int)i);
		/* Paths have no NUL bytes; a string with one is cut there. */
		if (lup_strlist_push(c->list, lua_tostring(T, -1)) < 0)
			return luaL_error(T, "not enough memory");
		lua_pop(T, 1);
	}
	return 0;
}

/* Keep the first result (a reader, writer or lock token) in the
 * registry. */
static int result_ref(lua_State *T, call *c, int first, int n)
{
	if (n < 1 || !lua_toboolean(T, first))
		return result_failed(T, c, first, n);
	lua_pushvalue(T, first);
	c->ref_out = luaL_ref(T, LUA_REGISTRYINDEX);
	return 0;
}

static int result_read(lua_State *T, call *c, int first, int n)
{
	size_t len, now;
	const char *s;

	c->count = 0;
	if (n < 1 || lua_isnil(T, first)) {
		if (n >= 2 && !lua_isnil(T, first + 1))
			return result_failed(T, c, first, n);
		return 0; /* end of file */
	}
	if (lua_type(T, first) != LUA_TSTRING)
		return luaL_error(T, "read must return a string or nil");
	s = lua_tolstring(T, first, &len);
	now = len < c->max ? len : c->max;
	memcpy(c->dst, s, now);
	if (len > now && lup_buf_append(c->overflow, s + now, len - now) < 0)
		return luaL_error(T, "not enough memory");
	c->count = (int64_t)now;
	return 0;
}

static int result_size(lua_State *T, call *c, int first, int n)
{
	int isnum;
	lua_Integer v;

	if (n < 1 || lua_isnil(T, first))
		return result_failed(T, c, first, n);
	v = lup_tointegerx(T, first, &isnum);
	if (!isnum || v < 0)
		return luaL_error(T, "size must return a non-negative integer");
	c->count = (int64_t)v;
	return 0;
}

/* Drop a registry ref held by C (no-op once the state is closed).  Raw
 * table writes neither allocate nor raise. */
static void ld_unref(lua_drv *ld, int ref)
{
	if (ld->L && ref != LUA_NOREF && ref != LUA_REFNIL &&
	    lua_checkstack(ld->L, 2))
		luaL_unref(ld->L, LUA_REGISTRYINDEX, ref);
}

/* Readers. */

static int64_t ld_read(lup_reader *lr, void *buf, size_t n, lup_error *err)
{
	ld_reader *r = (ld_reader *)lr;
	call c;
	int rc;

	if (n == 0)
		return 0;
	if (r->pending_off < r->pending.len) {
		size_t have = r->pending.len - r->pending_off;

		if (have > n)
			have = n;
		memcpy(buf, r->pending.data + r->pending_off, have);
		r->pending_off += have;
		if (r->pending_off == r->pending.len) {
			r->pending.len = 0;
			r->pending_off = 0;
		}
		return (int64_t)have;
	}
	call_init(&c, r->ld, "read", err);
	c.self_ref = r->ref;
	arg_int(&c, ARG_INT, n > (size_t)LUP_MAXINTEGER
				     ? LUP_MAXINTEGER : (lua_Integer)n);
	c.result = result_read;
	c.dst = buf;
	c.max = n;
	c.overflow = &r->pending;
	/* An empty string counts as end of file: asking again could spin. */
	if ((rc = call_run(&c)) < 0)
		return rc;
	return c.count;
}

static void ld_reader_close(lup_reader *lr)
{
	ld_reader *r = (ld_reader *)lr;
	call c;
	lup_error ignored;

	call_init(&c, r->ld, "close", &ignored);
	c.self_ref = r->ref;
	c.optional = 1;
	call_run(&c); /* a reader has nothing to flush: errors are moot */
	ld_unref(r->ld, r->ref);
	lup_buf_free(&r->pending);
	lup_driver_release(&r->ld->parent);
	free(r);
}

/* Writers. */

static int ld_write(lup_writer *lw, const void *buf, size_t n, lup_error *err)
{
	ld_writer *w = (ld_writer *)lw;
	call c;

	call_init(&c, w->ld, "write", err);
	c.self_ref = w->ref;
	arg_str(&c, buf, n);
	c.result = result_ok;
	return call_run(&c);
}

/* The vtable has no error channel for size: a failure reads as LUP_EIO,
 * a negative size. */
static int64_t ld_writer_size(lup_writer *lw)
{
	ld_writer *w = (ld_writer *)lw;
	lup_error ignored;
	call c;

	call_init(&c, w->ld, "size", &ignored);
	c.self_ref = w->ref;
	c.result = result_size;
	if (call_run(&c) < 0)
		return LUP_EIO;
	return c.count;
}

static int writer_op(ld_writer *w, const char *method, lup_error *err)
{
	call c;

	call_init(&c, w->ld, method, err);
	c.self_ref = w->ref;
	c.result = result_ok;
	return call_run(&c);
}

static int ld_commit(lup_writer *lw, lup_error *err)
{
	return writer_op((ld_writer *)lw, "commit", err);
}

static int ld_cancel(lup_writer *lw, lup_error *err)
{
	return writer_op((ld_writer *)lw, "cancel", err);
}

static int ld_writer_close(lup_writer *lw, lup_error *err)
{
	ld_writer *w = (ld_writer *)lw;
	int rc = writer_op(w, "close", err);

	ld_unref(w->ld, w->ref);
	lup_driver_release(&w->ld->parent);
	free(w);
	return rc;
}

/* Driver methods. */

static int ld_get_content(lup_driver *d, const char *path, lup_buf *out,
			  lup_error *err)
{
	call c;

	call_init(&c, (lua_drv *)d, "get_content", err);
	arg_str(&c, path, strlen(path));
	c.result = result_content;
	c.buf = out;
	return call_run(&c);
}

static int ld_put_content(lup_driver *d, const char *path, const void *data,
			  size_t len, lup_error *err)
{
	call c;

	call_init(&c, (lua_drv *)d, "put_content", err);
	arg_str(&c, path, strlen(path));
	arg_str(&c, data, len);
	c.result = result_ok;
	return call_run(&c);
}

static int ld_stat(lup_driver *d, const char *path, lup_stat *out,
		   lup_error *err)
{
	call c;

	call_init(&c, (lua_drv *)d, "stat", err);
	arg_str(&c, path, strlen(path));
	c.result = result_stat;
	c.st = out;
	return call_run(&c);
}

static int ld_list(lup_driver *d, const char *path, lup_strlist *out,
		   lup_error *err)
{
	call c;

	call_init(&c, (lua_drv *)d, "list", err);
	arg_str(&c, path, strlen(path));
	c.result = result_list;
	c.list = out;
	return call_run(&c);
}

static int ld_move(lup_driver *d, const char *src, const char *dst,
		   lup_error *err)
{
	call c;

	call_init(&c, (lua_drv *)d, "move", err);
	arg_str(&c, src, strlen(src));
	arg_str(&c, dst, strlen(dst));
	c.result = result_ok;
	return call_run(&c);
}

static int ld_remove(lup_driver *d, const char *path, lup_error *err)
{
	call c;

	call_init(&c, (lua_drv *)d, "delete", err);
	arg_str(&c, path, strlen(path));
	c.result = result_ok;
	return call_run(&c);
}

static int ld_reader_open(lup_driver *d, const char *path, int64_t offset,
			  lup_reader **out, lup_error *err)
{
	lua_drv *ld = (lua_drv *)d;
	ld_reader *r;
	call c;
	int rc;

	*out = NULL;
	call_init(&c, ld, "reader", err);
	arg_str(&c, path, strlen(path));
	arg_int(&c, ARG_INT, (lua_Integer)offset);
	c.result = result_ref;
	if ((rc = call_run(&c)) < 0)
		return rc;
	r = calloc(1, sizeof(*r));
	if (!r) {
		ld_unref(ld, c.ref_out);
		return lup_error_set(err, LUP_EIO, path, "out of memory");
	}
	r->base.version = LUP_READER_VERSION;
	r->base.read = ld_read;
	r->base.close = ld_reader_close;
	r->ld = ld;
	r->ref = c.ref_out;
	lup_driver_retain(d);
	*out = &r->base;
	return 0;
}

static int ld_writer_open(lup_driver *d, const char *path, int append,
			  lup_writer **out, lup_error *err)
{
	lua_drv *ld = (lua_drv *)d;
	ld_writer *w;
	call c;
	int rc;

	if (append == LUP_WRITE_NEW)
		append = 0; /* new: the same as a truncation here */

	*out = NULL;
	call_init(&c, ld, "writer", err);
	arg_str(&c, path, strlen(path));
	arg_int(&c, ARG_BOOL, append != 0);
	c.result = result_ref;
	if ((rc = call_run(&c)) < 0)
		return rc;
	w = calloc(1, sizeof(*w));
	if (!w) {
		ld_unref(ld, c.ref_out);
		return lup_error_set(err, LUP_EIO, path, "out of memory");
	}
	w->base.version = LUP_WRITER_VERSION;
	w->base.publish = NULL; /* Lua drivers have no publish */
	w->base.write = ld_write;
	w->base.size = ld_writer_size;
	w->base.commit = ld_commit;
	w->base.cancel = ld_cancel;
	w->base.close = ld_writer_close;
	w->ld = ld;
	w->ref = c.ref_out;
	lup_driver_retain(d);
	*out = &w->base;
	return 0;
}

/* Locks: the table's own, or the in-process set. */

static int ld_lock(lup_driver *d, const char *path, void **token,
		   lup_error *err)
{
	lua_drv *ld = (lua_drv *)d;
	size_t len = strlen(path);
	held_lock *h;
	int rc = 0;

	*token = NULL;
	if (ld->lua_locks) {
		ld_token *t = malloc(sizeof(*t));
		call c;

		if (!t)
			return lup_error_set(err, LUP_EIO, path,
					     "out of memory");
		call_init(&c, ld, "lock", err);
		arg_str(&c, path, len);
		c.result = result_ref;
		if ((rc = call_run(&c)) < 0) {
			free(t);
			return rc;
		}
		t->ref = c.ref_out;
		*token = t;
		return 0;
	}
	if (pthread_mutex_lock(&ld->mu) != 0)
		return lup_error_set(err, LUP_EIO, path, "lock set unusable");
	for (h = ld->held; h; h = h->next) {
		if (strcmp(h->path, path) == 0) {
			rc = lup_error_set(err, LUP_ELOCKED, path,
					   "locked: %s", path);
			goto out;
		}
	}
	h = malloc(sizeof(*h) + len + 1);
	if (!h) {
		rc = lup_error_set(err, LUP_EIO, path, "out of memory");
		goto out;
	}
	memcpy(h->path, path, len + 1);
	h->next = ld->held;
	ld->held = h;
	*token = h;
out:
	pthread_mutex_unlock(&ld->mu);
	return rc;
}

static void ld_unlock(lup_driver *d, void *token)
{
	lua_drv *ld = (lua_drv *)d;

	if (ld->lua_locks) {
		ld_token *t = token;
		lup_error ignored;
		call c;

		/* Nobody can act on an unlock failure: it is dropped. */
		call_init(&c, ld, "unlock", &ignored);
		arg_int(&c, ARG_REF, t->ref);
		call_run(&c);
		ld_unref(ld, t->ref);
		free(t);
		return;
	}
	if (pthread_mutex_lock(&ld->mu) != 0)
		return;
	for (held_lock **pp = &ld->held; *pp; pp = &(*pp)->next) {
		if (*pp == token) {
			*pp = ((held_lock *)token)->next;
			free(token);
			break;
		}
	}
	pthread_mutex_unlock(&ld->mu);
}

/* Lifetime. */

static void ld_free(lup_driver *d)
{
	lua_drv *ld = (lua_drv *)d;
	lua_State *L = ld->L;

	if (L && lua_checkstack(L, 3)) {
		/* Tell the sentinel we are gone, then drop the anchor.
		 * Raw reads and luaL_unref neither allocate nor raise. */
		lua_rawgeti(L, LUA_REGISTRYINDEX, ld->anchor);
		lua_rawgeti(L, -1, 3);
		sentinel *s = lua_touserdata(L, -1);

		if (s)
			s->ld = NULL;
		lua_pop(L, 2);
		luaL_unref(L, LUA_REGISTRYINDEX, ld->anchor);
	}
	while (ld->held) {
		held_lock *h = ld->held;

		ld->held = h->next;
		free(h);
	}
	pthread_mutex_destroy(&ld->mu);
	free(ld->name);
	free(ld);
}

/* The Lua state is closing while C still holds the driver. */
static int sentinel_gc(lua_State *L)
{
	sentinel *s = lua_touserdata(L, 1);

	if (s && s->ld) {
		s->ld->L = NULL;
		s->ld->T = NULL;
		s->ld = NULL;
	}
	return 0;
}

/* layerup.driver(tbl) -> driver */
int lup_lua_driver_new(lua_State *L)
{
	static const char *const required[] = {
		"get_content", "put_content", "stat", "list",
		"move", "delete", "reader", "writer", NULL,
	};
	const char *name = "lua";
	lup_lua_driver *ud;
	lua_drv *ld = NULL;
	char *name_copy = NULL;
	lua_State *T;
	sentinel *s;
	int has_lock, has_unlock, ref;
	lup_error err;

	luaL_checktype(L, 1, LUA_TTABLE);
	lua_getfield(L, 1, "name");
	if (!lua_isnil(L, -1)) {
		if (lua_type(L, -1) != LUA_TSTRING)
			return luaL_argerror(L, 1, "name must be a string");
		name = lua_tostring(L, -1); /* stays on the stack */
	}
	for (int i = 0; required[i]; i++) {
		lua_getfield(L, 1, required[i]);
		if (!is_callable(L, -1))
			return luaL_error(L, "layerup.driver: %s must be a "
					  "function", required[i]);
		lua_pop(L, 1);
	}
	lua_getfield(L, 1, "lock");
	has_lock = !lua_isnil(L, -1);
	if (has_lock && !is_callable(L, -1))
		return luaL_error(L, "layerup.driver: lock must be a function");
	lua_getfield(L, 1, "unlock");
	has_unlock = !lua_isnil(L, -1);
	if (has_unlock && !is_callable(L, -1))
		return luaL_error(L, "layerup.driver: unlock must be a "
				  "function");
	lua_pop(L, 2);
	if (has_lock != has_unlock)
		return luaL_error(L, "layerup.driver: lock and unlock go "
				  "together");

	if (luaL_newmetatable(L, SENTINEL_CLASS)) {
		lua_pushcfunction(L, sentinel_gc);
		lua_setfield(L, -2, "__gc");
	}
	lua_pop(L, 1);

	/* Everything that can raise happens before the C allocations. */
	lup_lua_push_driver(L, NULL);
	ud = lua_touserdata(L, -1);
	lua_createtable(L, 3, 0);
	lua_pushvalue(L, 1);
	lua_rawseti(L, -2, 1);
	T = lua_newthread(L);
	lua_rawseti(L, -2, 2);
	s = lup_newuserdata(L, sizeof(*s), 0);
	s->ld = NULL;
	luaL_setmetatable(L, SENTINEL_CLASS);
	lua_rawseti(L, -2, 3);
	ref = luaL_ref(L, LUA_REGISTRYINDEX);

	ld = calloc(1, sizeof(*ld));
	name_copy = strdup(name);
	if (!ld || !name_copy || pthread_mutex_init(&ld->mu, NULL) != 0) {
		free(ld);
		free(name_copy);
		luaL_unref(L, LUA_REGISTRYINDEX, ref);
		return luaL_error(L, "layerup.driver: not enough memory");
	}
	ld->L = lup_mainthread(L, T); /* T: anchored until ld_free */
	ld->T = T;
	ld->anchor = ref;
	ld->lua_locks = has_lock;
	ld->name = name_copy;
	ld->parent.name = name_copy;
	ld->parent.get_content = ld_get_content;
	ld->parent.put_content = ld_put_content;
	ld->parent.reader = ld_reader_open;
	ld->parent.writer = ld_writer_open;
	ld->parent.stat = ld_stat;
	ld->parent.list = ld_list;
	ld->parent.move = ld_move;
	ld->parent.remove = ld_remove;
	ld->parent.lock = ld_lock;
	ld->parent.unlock = ld_unlock;
	ld->parent.free = ld_free;
	s->ld = ld;
	if (lup_driver_init(&ld->parent, LUP_DRIVER_VERSION, &err) < 0) {
		ld_free(&ld->parent); /* cannot happen: same version */
		return luaL_error(L, "layerup.driver: %s", err.message);
	}
	ud->driver = &ld->parent;
	return 1;
}
