/*
 * lua_driver.c - drivers, readers, writers and locks as Lua userdata.
 *
 * Every handle follows liolib: the userdata is created in a closed state
 * first, then the resource is opened and stored in it, so a memory error
 * in between leaks nothing.  __gc and __close map to the same idempotent
 * close; using a closed handle raises.  Readers, writers and locks hold
 * their own reference on the driver (the lup_driver_* wrappers take it),
 * so d:close() does not pull the rug from under them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lua/lua_util.h"

#define DRIVER_CLASS "layerup.driver"
#define READER_CLASS "layerup.reader"
#define WRITER_CLASS "layerup.writer"
#define LOCK_CLASS "layerup.lock"

/* layerup.driver(tbl), in lua_luadriver.c. */
int lup_lua_driver_new(lua_State *L);

/* How much one r:read(n) asks the driver for at a time, so that a huge n
 * does not allocate a huge buffer up front. */
#define READ_CHUNK (64 * 1024)

typedef struct lua_reader {
	lup_reader *r; /* NULL once closed */
	char name[64]; /* driver name, for __tostring */
} lua_reader;

enum { WRITER_OPEN, WRITER_COMMITTED, WRITER_CANCELLED };

typedef struct lua_writer {
	lup_writer *w; /* NULL once closed */
	int state;
	char name[64];
} lua_writer;

typedef struct lua_lock {
	lup_driver *d; /* NULL once unlocked (holds a reference) */
	void *token;
} lua_lock;

/* Drivers.  Each method holds a reference on the driver for the length
 * of the call: a Lua driver may close its own (last) handle meanwhile. */

void lup_lua_push_driver(lua_State *L, lup_driver *d)
{
	/* d may be NULL: lua_luadriver.c creates the handle closed first and
	 * stores the driver once it exists. */
	lup_lua_driver *ud = lup_newuserdata(L, sizeof(*ud), 0);

	ud->driver = NULL;
	luaL_setmetatable(L, DRIVER_CLASS);
	ud->driver = d;
}

lup_driver *lup_lua_check_driver(lua_State *L, int idx)
{
	lup_lua_driver *ud = luaL_checkudata(L, idx, DRIVER_CLASS);

	if (!ud->driver)
		luaL_error(L, "attempt to use a closed driver");
	return ud->driver;
}

static int driver_close(lua_State *L)
{
	lup_lua_driver *ud = luaL_checkudata(L, 1, DRIVER_CLASS);
	lup_driver *d = ud->driver;

	ud->driver = NULL;
	lup_driver_release(d);
	return 0;
}

static int driver_close_method(lua_State *L)
{
	driver_close(L);
	lua_pushboolean(L, 1);
	return 1;
}

static int driver_tostring(lua_State *L)
{
	lup_lua_driver *ud = luaL_checkudata(L, 1, DRIVER_CLASS);

	if (ud->driver)
		lua_pushfstring(L, DRIVER_CLASS " (%s): %p",
				ud->driver->name ? ud->driver->name : "?",
				(void *)ud);
	else
		lua_pushfstring(L, DRIVER_CLASS " (closed): %p", (void *)ud);
	return 1;
}

/* __index: d.name is a field, everything else a method (upvalue 1). */
static int driver_index(lua_State *L)
{
	const char *key;

	luaL_checkudata(L, 1, DRIVER_CLASS);
	key = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : NULL;
	if (key && strcmp(key, "name") == 0) {
		lup_driver *d = lup_lua_check_driver(L, 1);

		lua_pushstring(L, d->name ? d->name : "");
		return 1;
	}
	/* Methods are found on a closed driver too (d:close() twice must
	 * work); calling them raises. */
	lua_pushvalue(L, 2);
	lua_rawget(L, lua_upvalueindex(1));
	return 1;
}

/* Paths are C strings below this point: one with a NUL byte inside would
 * silently lose its tail ("/a\0b" would act on "/a"), so it is invalid. */
static const char *check_path(lua_State *L, int idx, const lup_driver *d,
			      lup_error *err)
{
	size_t len;
	const char *path = luaL_checklstring(L, idx, &len);

	if (strlen(path) == len)
		return path;
	lup_error_set(err, LUP_EINVALID_PATH, NULL,
		      "%s: invalid path: contains a NUL byte",
		      d->name ? d->name : "driver");
	return NULL;
}

static int push_buf(lua_State *L)
{
	lup_buf *buf = lua_touserdata(L, 1);

	lua_pushlstring(L, buf->data ? (const char *)buf->data : "", buf->len);
	return 1;
}

static int driver_get_content(lua_State *L)
{
	lup_error err;
	lup_driver *d = lup_lua_check_driver(L, 1);
	const char *path = check_path(L, 2, d, &err);
	lup_buf buf = { 0 };
	int rc;

	if (!path)
		return lup_lua_fail(L, &err);

	lup_driver_retain(d);
	rc = lup_driver_get_content(d, path, &buf, &err);
	lup_driver_release(d);
	if (rc < 0) {
		lup_buf_free(&buf);
		return lup_lua_fail(L, &err);
	}
	/* Protected, so that the buffer is freed even when Lua runs out of
	 * memory copying it. */
	lua_pushcfunction(L, push_buf);
	lua_pushlightuserdata(L, &buf);
	rc = lua_pcall(L, 1, 1, 0);
	lup_buf_free(&buf);
	if (rc != LUA_OK)
		return lua_error(L);
	return 1;
}

static int driver_put_content(lua_State *L)
{
	lup_error err;
	lup_driver *d = lup_lua_check_driver(L, 1);
	const char *path = check_path(L, 2, d, &err);
	size_t len;
	const char *data = luaL_checklstring(L, 3, &len);
	int rc;

	if (!path)
		return lup_lua_fail(L, &err);

	lup_driver_retain(d);
	rc = lup_driver_put_content(d, path, data, len, &err);
	lup_driver_release(d);
	if (rc < 0)
		return lup_lua_fail(L, &err);
	lua_pushboolean(L, 1);
	return 1;
}

static int driver_stat(lua_State *L)
{
	lup_error err;
	lup_driver *d = lup_lua_check_driver(L, 1);
	const char *path = check_path(L, 2, d, &err);
	lup_stat st;
	int rc;

	if (!path)
		return lup_lua_fail(L, &err);

	lup_driver_retain(d);
	rc = lup_driver_stat(d, path, &st, &err);
	lup_driver_release(d);
	if (rc < 0)
		return lup_lua_fail(L, &err);
	lua_createtable(L, 0, 5);
	lua_pushvalue(L, 2);
	lua_setfield(L, -2, "path");
	lua_pushinteger(L, (lua_Integer)st.size);
	lua_setfield(L, -2, "size");
	/* A double cannot hold ns since the epoch exactly: mtime_ns keeps
	 * the full precision for comparisons. */
	lua_pushnumber(L, (lua_Number)st.mtime_ns / 1e9);
	lua_setfield(L, -2, "mtime");
	lua_pushinteger(L, (lua_Integer)st.mtime_ns);
	lua_setfield(L, -2, "mtime_ns");
	lua_pushboolean(L, st.is_dir);
	lua_setfield(L, -2, "dir");
	return 1;
}

/* Push the list as a Lua array; a protected helper so that the C list is
 * freed even when Lua runs out of memory. */
static int push_list(lua_State *L)
{
	lup_strlist *list = lua_touserdata(L, 1);

	lua_createtable(L, (int)list->count, 0);
	for (size_t i = 0; i < list->count; i++) {
		lua_pushstring(L, list->items[i]);
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
	return 1;
}

static int driver_list(lua_State *L)
{
	lup_error err;
	lup_driver *d = lup_lua_check_driver(L, 1);
	const char *path = check_path(L, 2, d, &err);
	lup_strlist list = { 0 };
	int rc;
	int status;

	if (!path)
		return lup_lua_fail(L, &err);

	lup_driver_retain(d);
	rc = lup_driver_list(d, path, &list, &err);
	lup_driver_release(d);
	if (rc < 0) {
		lup_strlist_free(&list);
		return lup_lua_fail(L, &err);
	}
	lua_pushcfunction(L, push_list);
	lua_pushlightuserdata(L, &list);
	status = lua_pcall(L, 1, 1, 0);
	lup_strlist_free(&list);
	if (status != LUA_OK)
		return lua_error(L);
	return 1;
}

/* Stale temporaries found by d:temporaries (filesystem driver only). */
typedef struct tmp_list {
	struct tmp_item {
		char *path;
		int64_t mtime_ns, size;
		int removed;
	} *items;
	size_t count, cap;
	int oom;
} tmp_list;

static void tmp_collect(void *arg, const char *path, int64_t mtime_ns,
			int64_t size, int removed)
{
	tmp_list *l = arg;

	if (l->oom)
		return;
	if (l->count == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 8;
		struct tmp_item *n = realloc(l->items, cap * sizeof(*n));

		if (!n) {
			l->oom = 1;
			return;
		}
		l->items = n;
		l->cap = cap;
	}
	if (!(l->items[l->count].path = strdup(path))) {
		l->oom = 1;
		return;
	}
	l->items[l->count].mtime_ns = mtime_ns;
	l->items[l->count].size = size;
	l->items[l->count].removed = removed;
	l->count++;
}

static void tmp_list_free(tmp_list *l)
{
	for (size_t i = 0; i < l->count; i++)
		free(l->items[i].path);
	free(l->items);
}

static int push_tmp_list(lua_State *L)
{
	tmp_list *l = lua_touserdata(L, 1);

	lua_createtable(L, (int)l->count, 0);
	for (size_t i = 0; i < l->count; i++) {
		lua_createtable(L, 0, 4);
		lua_pushstring(L, l->items[i].path);
		lua_setfield(L, -2, "path");
		lua_pushinteger(L, (lua_Integer)l->items[i].size);
		lua_setfield(L, -2, "size");
		lua_pushnumber(L, (lua_Number)l->items[i].mtime_ns / 1e9);
		lua_setfield(L, -2, "mtime");
		lua_pushboolean(L, l->items[i].removed);
		lua_setfield(L, -2, "removed");
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
	return 1;
}

/* d:temporaries(path [, older_than_seconds [, remove]]) -> {{path, size,
 * mtime, removed}, ...} | nil, err: the filesystem driver's stale
 * ".lup~<hex>" files under path (UNSUPPORTED for other drivers). */
static int driver_temporaries(lua_State *L)
{
	lup_error err;
	lup_driver *d = lup_lua_check_driver(L, 1);
	const char *path = luaL_checkstring(L, 2);
	lua_Number older = luaL_optnumber(L, 3, 0);
	int remove = lua_toboolean(L, 4), rc, status;
	tmp_list list = { 0 };
	struct timespec now;
	int64_t before;

	/* Also refuses NaN: no comparison with it is true. */
	if (!(older >= 0 && older <= 1e11))
		return luaL_argerror(L, 3, "older_than must be 0..1e11 seconds");
	clock_gettime(CLOCK_REALTIME, &now);
	before = ((int64_t)now.tv_sec - (int64_t)older) * 1000000000 +
		 now.tv_nsec;
	lup_driver_retain(d);
	rc = lup_fs_temporaries(d, path, before, remove, tmp_collect, &list,
				&err);
	lup_driver_release(d);
	if (rc == 0 && list.oom)
		rc = lup_error_set(&err, LUP_EIO, path, "out of memory");
	if (rc < 0) {
		tmp_list_free(&list);
		return lup_lua_fail(L, &err);
	}
	lua_pushcfunction(L, push_tmp_list);
	lua_pushlightuserdata(L, &list);
	status = lua_pcall(L, 1, 1, 0);
	tmp_list_free(&list);
	if (status != LUA_OK)
		return lua_error(L);
	return 1;
}

/* d:resolver() -> "openat2" | "walk" (filesystem driver), nil otherwise. */
static int driver_resolver(lua_State *L)
{
	int r = lup_fs_resolver(lup_lua_check_driver(L, 1));

	if (r < 0)
		lua_pushnil(L);
	else
		lua_pushstring(L, r == LUP_FS_RESOLVE_WALK ? "walk" : "openat2");
	return 1;
}

static int driver_move(lua_State *L)
{
	lup_error err;
	lup_driver *d = lup_lua_check_driver(L, 1);
	const char *src = check_path(L, 2, d, &err);
	const char *dst = check_path(L, 3, d, &err);
	int rc;

	if (!src || !dst)
		return lup_lua_fail(L, &err);

	lup_driver_retain(d);
	rc = lup_driver_move(d, src, dst, &err);
	lup_driver_release(d);
	if (rc < 0)
		return lup_lua_fail(L, &err);
	lua_pushboolean(L, 1);
	return 1;
}

static int driver_delete(lua_State *L)
{
	lup_error err;
	lup_driver *d = lup_lua_check_driver(L, 1);
	const char *path = check_path(L, 2, d, &err);
	int rc;

	if (!path)
		return lup_lua_fail(L, &err);

	lup_driver_retain(d);
	rc = lup_driver_delete(d, path, &err);
	lup_driver_release(d);
	if (rc < 0)
		return lup_lua_fail(L, &err);
	lua_pushboolean(L, 1);
	return 1;
}

static void copy_name(char *dst, size_t size, const lup_driver *d)
{
	snprintf(dst, size, "%s", d->name ? d->name : "?");
}

static int driver_reader(lua_State *L)
{
	lup_error err;
	lup_driver *d = lup_lua_check_driver(L, 1);
	const char *path = check_path(L, 2, d, &err);
	lua_Integer offset = lup_optinteger(L, 3, 0);
	lua_reader *ud;
	int rc;

	if (!path)
		return lup_lua_fail(L, &err);

	ud = lup_newuserdata(L, sizeof(*ud), 0);
	ud->r = NULL;
	copy_name(ud->name, sizeof(ud->name), d);
	luaL_setmetatable(L, READER_CLASS);
	lup_driver_retain(d);
	rc = lup_driver_reader(d, path, (int64_t)offset, &ud->r, &err);
	lup_driver_release(d);
	if (rc < 0)
		return lup_lua_fail(L, &err);
	return 1;
}

static int driver_writer(lua_State *L)
{
	lup_error err;
	lup_driver *d = lup_lua_check_driver(L, 1);
	const char *path = check_path(L, 2, d, &err);
	int append = lua_toboolean(L, 3);
	lua_writer *ud;
	int rc;

	if (!path)
		return lup_lua_fail(L, &err);

	ud = lup_newuserdata(L, sizeof(*ud), 0);
	ud->w = NULL;
	ud->state = WRITER_OPEN;
	copy_name(ud->name, sizeof(ud->name), d);
	luaL_setmetatable(L, WRITER_CLASS);
	lup_driver_retain(d);
	rc = lup_driver_writer(d, path, append, &ud->w, &err);
	lup_driver_release(d);
	if (rc < 0)
		return lup_lua_fail(L, &err);
	return 1;
}

/* d:lock(path) -> lock | nil, err: the same lock an upload takes, so
 * scripts and tests can see LOCKED. */
static int driver_lock(lua_State *L)
{
	lup_error err;
	lup_driver *d = lup_lua_check_driver(L, 1);
	const char *path = check_path(L, 2, d, &err);
	lua_lock *ud;
	int rc;
	void *token;

	if (!path)
		return lup_lua_fail(L, &err);

	ud = lup_newuserdata(L, sizeof(*ud), 0);
	ud->d = NULL;
	ud->token = NULL;
	luaL_setmetatable(L, LOCK_CLASS);
	lup_driver_retain(d);
	rc = lup_driver_lock(d, path, &token, &err);
	/* The wrapper keeps d alive for a real token; for a NULL one (no
	 * lock support) our call reference stays, so unlock is uniform. */
	if (rc < 0 || token)
		lup_driver_release(d);
	if (rc < 0)
		return lup_lua_fail(L, &err);
	ud->token = token;
	ud->d = d;
	return 1;
}

/* Readers. */

static lua_reader *check_reader(lua_State *L)
{
	lua_reader *ud = luaL_checkudata(L, 1, READER_CLASS);

	if (!ud->r)
		luaL_error(L, "attempt to use a closed reader");
	return ud;
}

static int reader_read(lua_State *L)
{
	lua_reader *ud = check_reader(L);
	lua_Integer n = lup_optinteger(L, 2, READ_CHUNK);
	luaL_Buffer b;
	size_t total = 0;
	lup_error err;

	luaL_argcheck(L, n > 0, 2, "must be positive");
	luaL_buffinit(L, &b);
	/* Fill up to n bytes so that callers see short reads only at EOF. */
	while ((lua_Integer)total < n) {
		size_t want = (size_t)(n - (lua_Integer)total);
		char *p;
		int64_t got;

		if (want > READ_CHUNK)
			want = READ_CHUNK;
		if (want > LUP_BUFFMAX)
			want = LUP_BUFFMAX;
		p = lup_prepbuffsize(&b, want);
		got = ud->r->read(ud->r, p, want, &err);
		if (got < 0)
			return lup_lua_fail(L, &err);
		if (got == 0)
			break;
		luaL_addsize(&b, (size_t)got);
		total += (size_t)got;
	}
	if (total == 0) {
		lua_pushnil(L); /* end of file */
		return 1;
	}
	luaL_pushresult(&b);
	return 1;
}

static int reader_close(lua_State *L)
{
	lua_reader *ud = luaL_checkudata(L, 1, READER_CLASS);
	lup_reader *r = ud->r;

	ud->r = NULL;
	if (r)
		r->close(r);
	return 0;
}

static int reader_close_method(lua_State *L)
{
	reader_close(L);
	lua_pushboolean(L, 1);
	return 1;
}

static int reader_tostring(lua_State *L)
{
	lua_reader *ud = luaL_checkudata(L, 1, READER_CLASS);

	lua_pushfstring(L, READER_CLASS " (%s): %p",
			ud->r ? ud->name : "closed", (void *)ud);
	return 1;
}

/* Writers. */

static lua_writer *check_writer(lua_State *L)
{
	lua_writer *ud = luaL_checkudata(L, 1, WRITER_CLASS);

	if (!ud->w)
		luaL_error(L, "attempt to use a closed writer");
	return ud;
}

/* After commit or cancel only close is allowed (registry semantics:
 * "already committed" / "already cancelled"). */
static int writer_finished(lua_State *L, lua_writer *ud)
{
	lup_error err;

	lup_error_set(&err, LUP_EIO, NULL, "%s: already %s", ud->name,
		      ud->state == WRITER_COMMITTED ? "committed"
						    : "cancelled");
	return lup_lua_fail(L, &err);
}

static int writer_write(lua_State *L)
{
	lua_writer *ud = check_writer(L);
	size_t len;
	const char *s = luaL_checklstring(L, 2, &len);
	lup_error err;

	if (ud->state != WRITER_OPEN)
		return writer_finished(L, ud);
	if (len > 0 && ud->w->write(ud->w, s, len, &err) < 0)
		return lup_lua_fail(L, &err);
	lua_pushboolean(L, 1);
	return 1;
}

static int writer_size(lua_State *L)
{
	lua_writer *ud = check_writer(L);
	int64_t size = ud->w->size(ud->w);
	lup_error err;

	/* size() has no error channel: a negative value is a failure. */
	if (size < 0) {
		lup_error_set(&err, LUP_EIO, NULL, "%s: size unavailable",
			      ud->name);
		return lup_lua_fail(L, &err);
	}
	lua_pushinteger(L, (lua_Integer)size);
	return 1;
}

static int writer_commit(lua_State *L)
{
	lua_writer *ud = check_writer(L);
	lup_error err;

	if (ud->state != WRITER_OPEN)
		return writer_finished(L, ud);
	if (ud->w->commit(ud->w, &err) < 0)
		return lup_lua_fail(L, &err);
	ud->state = WRITER_COMMITTED;
	lua_pushboolean(L, 1);
	return 1;
}

static int writer_cancel(lua_State *L)
{
	lua_writer *ud = check_writer(L);
	lup_error err;

	if (ud->state != WRITER_OPEN)
		return writer_finished(L, ud);
	if (ud->w->cancel(ud->w, &err) < 0)
		return lup_lua_fail(L, &err);
	ud->state = WRITER_CANCELLED;
	lua_pushboolean(L, 1);
	return 1;
}

/* Idempotent: closing flushes (the content can be continued with an
 * append writer); a second close is a no-op. */
static int writer_close_method(lua_State *L)
{
	lua_writer *ud = luaL_checkudata(L, 1, WRITER_CLASS);
	lup_writer *w = ud->w;
	lup_error err;

	ud->w = NULL;
	if (w && w->close(w, &err) < 0)
		return lup_lua_fail(L, &err);
	lua_pushboolean(L, 1);
	return 1;
}

static int writer_gc(lua_State *L)
{
	lua_writer *ud = luaL_checkudata(L, 1, WRITER_CLASS);
	lup_writer *w = ud->w;

	ud->w = NULL;
	if (w)
		w->close(w, NULL); /* nobody is left to hear a flush error */
	return 0;
}

static int writer_tostring(lua_State *L)
{
	lua_writer *ud = luaL_checkudata(L, 1, WRITER_CLASS);

	lua_pushfstring(L, WRITER_CLASS " (%s): %p",
			ud->w ? ud->name : "closed", (void *)ud);
	return 1;
}

/* Locks. */

static int lock_unlock(lua_State *L)
{
	lua_lock *ud = luaL_checkudata(L, 1, LOCK_CLASS);
	lup_driver *d = ud->d;
	void *token = ud->token;

	ud->d = NULL;
	ud->token = NULL;
	if (d) {
		if (token)
			lup_driver_unlock(d, token); /* drops its reference */
		else
			lup_driver_release(d);
	}
	return 0;
}

static int lock_unlock_method(lua_State *L)
{
	lock_unlock(L);
	lua_pushboolean(L, 1);
	return 1;
}

static int lock_tostring(lua_State *L)
{
	lua_lock *ud = luaL_checkudata(L, 1, LOCK_CLASS);

	lua_pushfstring(L, LOCK_CLASS " (%s): %p",
			ud->d ? "held" : "released", (void *)ud);
	return 1;
}

/* Constructors. */

/* layerup.filesystem(root [, {fsync = bool, resolve = "auto"|"walk"}])
 * -> driver | nil, err */
static int new_filesystem(lua_State *L)
{
	size_t rlen;
	const char *root = luaL_checklstring(L, 1, &rlen);
	lup_fs_options opts = LUP_FS_OPTIONS_INIT;
	lup_driver *d = NULL;
	lup_error err;

	if (strlen(root) != rlen) {
		lup_error_set(&err, LUP_EINVALID_PATH, NULL,
			      "filesystem: invalid root: contains a NUL byte");
		return lup_lua_fail(L, &err);
	}

	if (!lua_isnoneornil(L, 2)) {
		luaL_checktype(L, 2, LUA_TTABLE);
		lua_getfield(L, 2, "fsync");
		if (!lua_isnil(L, -1) && !lua_isboolean(L, -1))
			return luaL_argerror(L, 2, "fsync must be a boolean");
		opts.fsync = lua_toboolean(L, -1);
		lua_pop(L, 1);
		lua_getfield(L, 2, "resolve");
		if (!lua_isnil(L, -1)) {
			const char *r = lua_tostring(L, -1);

			if (!lua_isstring(L, -1) ||
			    (strcmp(r, "walk") != 0 && strcmp(r, "auto") != 0))
				return luaL_argerror(L, 2,
						     "resolve must be \"auto\" or \"walk\"");
			opts.resolve = strcmp(r, "walk") == 0
					       ? LUP_FS_RESOLVE_WALK
					       : LUP_FS_RESOLVE_AUTO;
		}
		lua_pop(L, 1);
	}
	lup_lua_push_driver(L, NULL);
	if (lup_driver_filesystem(&d, root, &opts, &err) < 0)
		return lup_lua_fail(L, &err);
	((lup_lua_driver *)lua_touserdata(L, -1))->driver = d;
	return 1;
}

/* layerup.memory() -> driver */
static int new_memory(lua_State *L)
{
	lup_driver *d = NULL;
	lup_error err;

	lup_lua_push_driver(L, NULL);
	if (lup_driver_memory(&d, &err) < 0)
		return lup_lua_fail(L, &err);
	((lup_lua_driver *)lua_touserdata(L, -1))->driver = d;
	return 1;
}

void lup_lua_open_driver(lua_State *L)
{
	static const luaL_Reg driver_meta[] = {
		{ "__gc", driver_close },
		{ "__close", driver_close },
		{ "__tostring", driver_tostring },
		{ NULL, NULL },
	};
	static const luaL_Reg driver_methods[] = {
		{ "get_content", driver_get_content },
		{ "put_content", driver_put_content },
		{ "stat", driver_stat },
		{ "list", driver_list },
		{ "move", driver_move },
		{ "delete", driver_delete },
		{ "reader", driver_reader },
		{ "writer", driver_writer },
		{ "lock", driver_lock },
		{ "temporaries", driver_temporaries },
		{ "resolver", driver_resolver },
		{ "close", driver_close_method },
		{ NULL, NULL },
	};
	static const luaL_Reg reader_meta[] = {
		{ "__gc", reader_close },
		{ "__close", reader_close },
		{ "__tostring", reader_tostring },
		{ NULL, NULL },
	};
	static const luaL_Reg reader_methods[] = {
		{ "read", reader_read },
		{ "close", reader_close_method },
		{ NULL, NULL },
	};
	static const luaL_Reg writer_meta[] = {
		{ "__gc", writer_gc },
		{ "__close", writer_gc },
		{ "__tostring", writer_tostring },
		{ NULL, NULL },
	};
	static const luaL_Reg writer_methods[] = {
		{ "write", writer_write },
		{ "size", writer_size },
		{ "commit", writer_commit },
		{ "cancel", writer_cancel },
		{ "close", writer_close_method },
		{ NULL, NULL },
	};
	static const luaL_Reg lock_meta[] = {
		{ "__gc", lock_unlock },
		{ "__close", lock_unlock },
		{ "__tostring", lock_tostring },
		{ NULL, NULL },
	};
	static const luaL_Reg lock_methods[] = {
		{ "unlock", lock_unlock_method },
		{ NULL, NULL },
	};
	static const luaL_Reg constructors[] = {
		{ "filesystem", new_filesystem },
		{ "memory", new_memory },
		{ "driver", lup_lua_driver_new },
		{ NULL, NULL },
	};

	/* The driver's __index is a function (for d.name) that falls back
	 * to the method table. */
	if (luaL_newmetatable(L, DRIVER_CLASS)) {
		luaL_setfuncs(L, driver_meta, 0);
		lua_newtable(L);
		luaL_setfuncs(L, driver_methods, 0);
		lua_pushcclosure(L, driver_index, 1);
		lua_setfield(L, -2, "__index");
	}
	lua_pop(L, 1);
	lup_lua_new_class(L, READER_CLASS, reader_meta, reader_methods);
	lup_lua_new_class(L, WRITER_CLASS, writer_meta, writer_methods);
	lup_lua_new_class(L, LOCK_CLASS, lock_meta, lock_methods);
	luaL_setfuncs(L, constructors, 0);
}
