/*
 * lua_core.c - luaopen_layerup_core: the C module behind `require
 * "layerup"`.  It only builds the module table; each binding file adds its
 * functions (lup_lua_open_*), and lua/layerup/init.lua adds the policy.
 */
#include "lua/lua_util.h"

/* The one symbol core.so exports (src/lua/core.map; -fvisibility=hidden). */
LUP_API int luaopen_layerup_core(lua_State *L);

int luaopen_layerup_core(lua_State *L)
{
	lua_newtable(L);
	lua_pushliteral(L, LUP_VERSION_STRING);
	lua_setfield(L, -2, "_VERSION");
	lup_lua_open_error(L);
	lup_lua_open_driver(L);
	lup_lua_open_store(L);
	lup_lua_open_s3(L);
	return 1;
}
