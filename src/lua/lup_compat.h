/*
 * lup_compat.h - the only place that names Lua 5.4-only C API.
 *
 * The same binding sources build against Lua 5.4 and against LuaJIT 2.1
 * (the OpenResty branch, 5.1 API plus a few 5.2 functions), the VM of
 * nginx's Lua module.  Everything here is `lup_`-prefixed: re-defining
 * standard names clashes with what LuaJIT already exports.
 *
 * Differences that matter to the binding:
 *  - user values: 5.4 has numbered slots; LuaJIT has one environment table
 *    per userdata, so slot n is entry n of a fresh table set as the fenv.
 *  - integers: LuaJIT numbers are doubles and lua_tointegerx truncates 3.5
 *    to 3 with isnum=1; lup_tointegerx refuses non-integral values and
 *    anything beyond 2^53 (offsets stay exact up to 9 PB).
 *  - lua_rawgeti/lua_getfield return the type only on 5.4: lup_rawgeti.
 *  - luaL_Buffer has a fixed in-struct buffer of LUAL_BUFFERSIZE on LuaJIT:
 *    ask lup_prepbuffsize for at most LUP_BUFFMAX bytes.
 *  - lua_pushfstring has no %I on LuaJIT: format 64-bit numbers first.
 *  - no __close / to-be-closed variables (LUP_HAVE_CLOSE is 0); the
 *    __close entries stay registered and are simply never called.
 */
#ifndef LUP_COMPAT_H
#define LUP_COMPAT_H

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>

#if LUA_VERSION_NUM >= 504

#define LUP_HAVE_CLOSE 1
#define lup_newuserdata(L, size, nuv) lua_newuserdatauv((L), (size), (nuv))
#define lup_setuservalue(L, idx, n) ((void)lua_setiuservalue((L), (idx), (n)))
#define lup_getuservalue(L, idx, n) ((void)lua_getiuservalue((L), (idx), (n)))
#define lup_absindex(L, idx) lua_absindex((L), (idx))
#define lup_isinteger(L, idx) lua_isinteger((L), (idx))
#define lup_tointegerx(L, idx, isnum) lua_tointegerx((L), (idx), (isnum))
#define lup_rawlen(L, idx) lua_rawlen((L), (idx))
#define lup_len(L, idx) luaL_len((L), (idx))
#define lup_rawgeti(L, idx, n) lua_rawgeti((L), (idx), (n))
#define lup_geti(L, idx, n) lua_geti((L), (idx), (n))
#define lup_tolstring(L, idx, len) luaL_tolstring((L), (idx), (len))
#define LUP_BUFFMAX ((size_t)1 << 20)
#define lup_prepbuffsize(B, n) luaL_prepbuffsize((B), (n))
#define LUP_MAXINTEGER LUA_MAXINTEGER
/* The main thread, for registry work that must outlive coroutines. */
static inline lua_State *lup_mainthread(lua_State *L, lua_State *anchored)
{
	lua_State *M;

	(void)anchored;
	lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
	M = lua_tothread(L, -1);
	lua_pop(L, 1);
	return M;
}
/* The FILE* of an io library file handle at idx: *is_file says whether
 * the value is one at all; NULL when it is closed. */
static inline FILE *lup_tofile(lua_State *L, int idx, int *is_file)
{
	luaL_Stream *s = luaL_testudata(L, idx, LUA_FILEHANDLE);

	*is_file = s != NULL;
	return s && s->closef ? s->f : NULL;
}
#define lup_checkinteger(L, idx) luaL_checkinteger((L), (idx))
#define lup_optinteger(L, idx, d) luaL_optinteger((L), (idx), (d))

#elif LUA_VERSION_NUM == 501

#include <luajit.h> /* plain Lua 5.1 is not supported: no lua_tointegerx etc. */

#define LUP_HAVE_CLOSE 0

/* Slot n of the user values is entry n of the fenv table; a userdata
 * created without slots keeps LuaJIT's default environment. */
static inline void *lup_newuserdata(lua_State *L, size_t size, int nuv)
{
	void *p = lua_newuserdata(L, size);

	if (nuv > 0) {
		lua_createtable(L, nuv, 0);
		lua_setfenv(L, -2);
	}
	return p;
}

static inline int lup_absindex(lua_State *L, int idx)
{
	return idx > 0 || idx <= LUA_REGISTRYINDEX ? idx
						   : lua_gettop(L) + idx + 1;
}

/* Pops the value on top and stores it in slot n. */
static inline void lup_setuservalue(lua_State *L, int idx, int n)
{
	idx = lup_absindex(L, idx);
	lua_getfenv(L, idx);
	lua_insert(L, -2);
	lua_rawseti(L, -2, n);
	lua_pop(L, 1);
}

/* Pushes slot n (nil when empty). */
static inline void lup_getuservalue(lua_State *L, int idx, int n)
{
	lua_getfenv(L, idx);
	if (lua_istable(L, -1))
		lua_rawgeti(L, -1, n);
	else
		lua_pushnil(L);
	lua_remove(L, -2);
}

/* Integral doubles convert up to 2^63, exact only up to 2^53 (offsets up
 * to 9 PB; nanosecond times lose their last bits). */
#define LUP_MAXINT64 9223372036854775808.0 /* 2^63 */

static inline lua_Integer lup_tointegerx(lua_State *L, int idx, int *isnum)
{
	lua_Number x;

	if (lua_type(L, idx) != LUA_TNUMBER && !lua_isnumber(L, idx)) {
		if (isnum)
			*isnum = 0;
		return 0;
	}
	x = lua_tonumber(L, idx);
	if (!(x >= -LUP_MAXINT64 && x < LUP_MAXINT64) || x != floor(x)) {
		if (isnum)
			*isnum = 0;
		return 0;
	}
	if (isnum)
		*isnum = 1;
	return (lua_Integer)x;
}

/* Like 5.4's lua_isinteger: a number (not a string) with an integral
 * value in the exact range. */
static inline int lup_isinteger(lua_State *L, int idx)
{
	int ok;

	if (lua_type(L, idx) != LUA_TNUMBER)
		return 0;
	(void)lup_tointegerx(L, idx, &ok);
	return ok;
}

#define lup_rawlen(L, idx) lua_objlen((L), (idx))
#define lup_len(L, idx) ((lua_Integer)lua_objlen((L), (idx)))

static inline int lup_rawgeti(lua_State *L, int idx, int n)
{
	lua_rawgeti(L, idx, n);
	return lua_type(L, -1);
}

/* Pushes t[n] (metamethods run); returns its type, as 5.4's lua_geti. */
static inline int lup_geti(lua_State *L, int idx, lua_Integer n)
{
	idx = lup_absindex(L, idx);
	lua_pushinteger(L, n);
	lua_gettable(L, idx);
	return lua_type(L, -1);
}

/* 5.4's luaL_tolstring: pushes a string for any value (__tostring when
 * present) and returns it. */
static inline const char *lup_tolstring(lua_State *L, int idx, size_t *len)
{
	idx = lup_absindex(L, idx);
	if (luaL_callmeta(L, idx, "__tostring")) {
		if (!lua_isstring(L, -1))
			luaL_error(L, "'__tostring' must return a string");
	} else {
		switch (lua_type(L, idx)) {
		case LUA_TNUMBER:
		case LUA_TSTRING:
			lua_pushvalue(L, idx);
			lua_tolstring(L, -1, NULL); /* numbers become strings */
			break;
		case LUA_TBOOLEAN:
			lua_pushstring(L, lua_toboolean(L, idx) ? "true" : "false");
			break;
		case LUA_TNIL:
			lua_pushliteral(L, "nil");
			break;
		default:
			lua_pushfstring(L, "%s: %p", luaL_typename(L, idx),
					lua_topointer(L, idx));
			break;
		}
	}
	return lua_tolstring(L, -1, len);
}

#define LUP_MAXINTEGER ((lua_Integer)9007199254740992LL) /* 2^53 */

/* The 5.1 API cannot name the main thread: the caller passes a thread it
 * keeps anchored in the registry for as long as it uses the result. */
static inline lua_State *lup_mainthread(lua_State *L, lua_State *anchored)
{
	(void)L;
	return anchored;
}

/* LuaJIT's io handles are `struct IOFileUD { FILE *fp; uint32_t type; }`
 * (lib_io.c), fp NULL once closed. */
static inline FILE *lup_tofile(lua_State *L, int idx, int *is_file)
{
	struct lup_iofile {
		FILE *fp;
		uint32_t type;
	} *s = luaL_testudata(L, idx, LUA_FILEHANDLE);

	*is_file = s != NULL;
	return s ? s->fp : NULL;
}

#define LUP_BUFFMAX ((size_t)LUAL_BUFFERSIZE)
#define lup_prepbuffsize(B, n) ((void)(n), luaL_prepbuffer(B))

/* 5.4's luaL_checkinteger raises on 3.5; LuaJIT's would truncate it. */
static inline lua_Integer lup_checkinteger(lua_State *L, int idx)
{
	int ok;
	lua_Integer v = lup_tointegerx(L, idx, &ok);

	if (!ok) {
		if (lua_isnumber(L, idx))
			luaL_argerror(L, idx, "number has no integer representation");
		else
			luaL_typerror(L, idx, "number");
	}
	return v;
}

static inline lua_Integer lup_optinteger(lua_State *L, int idx, lua_Integer d)
{
	return lua_isnoneornil(L, idx) ? d : lup_checkinteger(L, idx);
}

#else
#error "layerup builds against Lua 5.4 or LuaJIT 2.1 (see lup_compat.h)"
#endif

#endif
