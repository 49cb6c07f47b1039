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
#else
#error "layerup needs Lua 5.4 for now (see lup_compat.h for the port points)"
#endif

#endif
