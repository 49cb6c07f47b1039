/*
 * lup_compat.h - the only place that names Lua 5.4-only C API.
 *
 * The binding uses user values on userdata and to-be-closed variables; a
 * LuaJIT (5.1 API) build for OpenResty can map these onto fenv/registry
 * tables here without touching the binding files.
 */
#ifndef LUP_COMPAT_H
#define LUP_COMPAT_H

#include <lauxlib.h>
#include <lua.h>

#if LUA_VERSION_NUM >= 504
#define lup_newuserdata(L, size, nuv) lua_newuserdatauv((L), (size), (nuv))
#define lup_setuservalue(L, idx, n) lua_setiuservalue((L), (idx), (n))
#define lup_getuservalue(L, idx, n) lua_getiuservalue((L), (idx), (n))
#define LUP_HAVE_CLOSE 1
/* 5.3+ API the binding uses beyond the 5.1 core (LuaJIT 2.1 lacks these). */
#define lup_isinteger(L, idx) lua_isinteger((L), (idx))
#define lup_tolstring(L, idx, len) luaL_tolstring((L), (idx), (len))
#define lup_len(L, idx) luaL_len((L), (idx))
#define lup_geti(L, idx, i) lua_geti((L), (idx), (i))
#else
#error "layerup needs Lua 5.4 for now (see lup_compat.h for the port points)"
#endif

#endif
