/*
 * lua_fault.c - layerup.fault(inner, opts): the fault driver for the
 * torture suite (include/layerup/sys/fault.h), and layerup.fault_info(d).
 *
 *   layerup.fault(d, {crash_at = k, crash_after = bool, fail_at = k,
 *                     fail_count = n (default 1; 0: every later operation),
 *                     fail_code = "IO", transient = bool, torn = bool,
 *                     record = bool, delay_at = k, delay_us = n}) -> driver
 *   layerup.fault_info(d) -> {ops =, injected =, trace = {"op path", ...}}
 *
 * A crash point kills the process (SIGKILL): for tests only.
 */
#include <string.h>

#include "layerup/sys/fault.h"
#include "lua/lua_util.h"

/* A non-negative whole number field (nil: 0). */
static int64_t opt_count(lua_State *L, int t, const char *key)
{
	lua_Number v;
	int64_t n;

	lua_getfield(L, t, key);
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		return 0;
	}
	if (!lua_isnumber(L, -1))
		return luaL_error(L, "fault: %s must be a number", key);
	v = lua_tonumber(L, -1);
	/* Also refuses NaN (every comparison is false). */
	if (!(v >= 0 && v <= 9007199254740992.0) || v != (lua_Number)(int64_t)v)
		return luaL_error(L, "fault: %s must be a whole number >= 0",
				  key);
	n = (int64_t)v;
	lua_pop(L, 1);
	return n;
}

static int opt_bool(lua_State *L, int t, const char *key)
{
	int b;

	lua_getfield(L, t, key);
	if (!lua_isnil(L, -1) && !lua_isboolean(L, -1))
		return luaL_error(L, "fault: %s must be a boolean", key);
	b = lua_toboolean(L, -1);
	lua_pop(L, 1);
	return b;
}

static int new_fault(lua_State *L)
{
	lup_driver *inner = lup_lua_check_driver(L, 1);
	lup_fault_options o = LUP_FAULT_OPTIONS_INIT;
	lup_driver *d = NULL;
	lup_error err;

	if (!lua_isnoneornil(L, 2)) {
		luaL_checktype(L, 2, LUA_TTABLE);
		o.crash_at = opt_count(L, 2, "crash_at");
		o.crash_after = opt_bool(L, 2, "crash_after");
		o.fail_at = opt_count(L, 2, "fail_at");
		/* Once by default; 0 asks for every operation from fail_at. */
		lua_getfield(L, 2, "fail_count");
		o.fail_count = lua_isnil(L, -1) ? 1 : opt_count(L, 2, "fail_count");
		lua_pop(L, 1);
		o.fail_transient = opt_bool(L, 2, "transient");
		o.torn = opt_bool(L, 2, "torn");
		o.record = opt_bool(L, 2, "record");
		o.delay_at = opt_count(L, 2, "delay_at");
		o.delay_us = opt_count(L, 2, "delay_us");
		lua_getfield(L, 2, "fail_code");
		if (!lua_isnil(L, -1)) {
			const char *name = luaL_checkstring(L, -1);

			o.fail_code = lup_error_code(name);
			if (strcmp(lup_error_name(o.fail_code), name) != 0)
				return luaL_error(L, "fault: unknown error "
						  "code \"%s\"", name);
		}
		lua_pop(L, 1);
	}
	lup_lua_push_driver(L, NULL);
	if (lup_driver_fault(&d, inner, &o, &err) < 0)
		return lup_lua_fail(L, &err);
	((lup_lua_driver *)lua_touserdata(L, -1))->driver = d;
	return 1;
}

static int push_trace(lua_State *L)
{
	lup_strlist *l = lua_touserdata(L, 1);

	lua_createtable(L, (int)(l->count < 1000000 ? l->count : 0), 0);
	for (size_t i = 0; i < l->count; i++) {
		lua_pushstring(L, l->items[i]);
		lua_rawseti(L, -2, (lua_Integer)(i + 1));
	}
	return 1;
}

static int fault_info(lua_State *L)
{
	lup_driver *d = lup_lua_check_driver(L, 1);
	lup_strlist trace = { 0 };
	lup_error err;
	int rc;

	if (lup_fault_ops(d) < 0)
		return luaL_argerror(L, 1, "not a fault driver");
	if (lup_fault_trace(d, &trace, &err) < 0) {
		lup_strlist_free(&trace);
		return lup_lua_fail(L, &err);
	}
	/* Protected, so that the list is freed even when Lua runs out of
	 * memory copying it. */
	lua_pushcfunction(L, push_trace);
	lua_pushlightuserdata(L, &trace);
	rc = lua_pcall(L, 1, 1, 0);
	lup_strlist_free(&trace);
	if (rc != LUA_OK)
		return lua_error(L);
	lua_createtable(L, 0, 3);
	lua_insert(L, -2);
	lua_setfield(L, -2, "trace");
	lua_pushinteger(L, (lua_Integer)lup_fault_ops(d));
	lua_setfield(L, -2, "ops");
	lua_pushinteger(L, (lua_Integer)lup_fault_injected(d));
	lua_setfield(L, -2, "injected");
	return 1;
}

void lup_lua_open_fault(lua_State *L)
{
	static const luaL_Reg fns[] = {
		{ "fault", new_fault },
		{ "fault_info", fault_info },
		{ NULL, NULL },
	};

	luaL_setfuncs(L, fns, 0);
}
