/*
 * lua_error.c - the Lua error objects ("layerup.error") and the shared
 * class builder.
 *
 * An error is a plain table {code=, message=, path=?, offset=?,
 * transient=?} whose metatable gives "CODE: message" for tostring, so
 * policy code can switch on err.code and humans can print it.  Tables
 * (with or without the metatable) and strings coming back from Lua
 * drivers and policies are turned into lup_error by lup_lua_to_error.
 */
#include <stdio.h>
#include <string.h>

#include "lua/lua_util.h"

#define ERROR_CLASS "layerup.error"

/* Every code a Lua script may compare err.code with. */
static const int error_codes[] = {
	LUP_EBLOB_UNKNOWN, LUP_EBLOB_UPLOAD_INVALID, LUP_EBLOB_UPLOAD_UNKNOWN,
	LUP_EDIGEST_INVALID, LUP_ENAME_INVALID, LUP_ESIZE_INVALID,
	LUP_ERANGE_INVALID, LUP_EDENIED, LUP_EUNSUPPORTED,
	LUP_EPATH_NOT_FOUND, LUP_EINVALID_PATH, LUP_EINVALID_OFFSET,
	LUP_ELOCKED, LUP_EIO,
};

void lup_lua_new_class(lua_State *L, const char *name, const luaL_Reg *meta,
		       const luaL_Reg *methods)
{
	if (!luaL_newmetatable(L, name)) {
		lua_pop(L, 1); /* built before in this state */
		return;
	}
	if (meta)
		luaL_setfuncs(L, meta, 0);
	if (methods) {
		lua_newtable(L);
		luaL_setfuncs(L, methods, 0);
		lua_setfield(L, -2, "__index");
	}
	lua_pop(L, 1);
}

void lup_lua_push_error(lua_State *L, const lup_error *err)
{
	int code = err ? err->code : LUP_EIO;

	if (code == LUP_OK)
		code = LUP_EIO; /* a failure must never read "OK" */
	lua_createtable(L, 0, 5);
	lua_pushstring(L, lup_error_name(code));
	lua_setfield(L, -2, "code");
	lua_pushstring(L, err && err->message[0] ? err->message
						   : lup_error_name(code));
	lua_setfield(L, -2, "message");
	if (err && err->path[0]) {
		lua_pushstring(L, err->path);
		lua_setfield(L, -2, "path");
	}
	/* INVALID_OFFSET -1 is a real offset (the one the caller gave). */
	if (err && (err->offset >= 0 || code == LUP_EINVALID_OFFSET ||
		    code == LUP_ERANGE_INVALID)) {
		lua_pushinteger(L, (lua_Integer)err->offset);
		lua_setfield(L, -2, "offset");
	}
	if (err && err->transient) {
		lua_pushboolean(L, 1);
		lua_setfield(L, -2, "transient");
	}
	luaL_setmetatable(L, ERROR_CLASS);
}

int lup_lua_fail(lua_State *L, const lup_error *err)
{
	lua_pushnil(L);
	lup_lua_push_error(L, err);
	return 2;
}

/* Copy a string field of the table at idx into dst (raw access: an error
 * table is data, and this must not run arbitrary metamethods). */
static int raw_string_field(lua_State *L, int idx, const char *key, char *dst,
			    size_t size)
{
	const char *s;
	int found = 0;

	lua_pushstring(L, key);
	lua_rawget(L, idx);
	if (lua_type(L, -1) == LUA_TSTRING) {
		s = lua_tostring(L, -1);
		snprintf(dst, size, "%s", s);
		found = 1;
	}
	lua_pop(L, 1);
	return found;
}

void lup_lua_to_error(lua_State *L, int idx, int default_code,
		      lup_error *err)
{
	char name[64];
	int isnum;
	lua_Integer off;

	if (!err)
		return;
	idx = lup_absindex(L, idx);
	lup_error_clear(err);
	err->code = default_code;
	switch (lua_type(L, idx)) {
	case LUA_TSTRING:
		snprintf(err->message, sizeof(err->message), "%s",
			 lua_tostring(L, idx));
		break;
	case LUA_TTABLE:
		if (raw_string_field(L, idx, "code", name, sizeof(name))) {
			int code = lup_error_code(name);

			/* An unknown name maps to IO; "OK" is no failure. */
			err->code = code == LUP_OK ? default_code : code;
		}
		if (!raw_string_field(L, idx, "message", err->message,
				      sizeof(err->message)))
			snprintf(err->message, sizeof(err->message), "%s",
				 lup_error_name(err->code));
		raw_string_field(L, idx, "path", err->path,
				 sizeof(err->path));
		lua_pushliteral(L, "offset");
		lua_rawget(L, idx);
		off = lup_tointegerx(L, -1, &isnum);
		if (isnum)
			err->offset = (int64_t)off;
		lua_pop(L, 1);
		lua_pushliteral(L, "transient");
		lua_rawget(L, idx);
		err->transient = lua_toboolean(L, -1);
		lua_pop(L, 1);
		break;
	default:
		snprintf(err->message, sizeof(err->message),
			 "(error object is a %s value)",
			 luaL_typename(L, idx));
		break;
	}
}

static int error_tostring(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_getfield(L, 1, "code");
	lua_getfield(L, 1, "message");
	lua_pushfstring(L, "%s: %s",
			lua_isstring(L, -2) ? lua_tostring(L, -2) : "IO",
			lua_isstring(L, -1) ? lua_tostring(L, -1) : "?");
	return 1;
}

/* Codes that only Lua modules use (configuration errors of layerup.limits
 * and friends); the C core maps them to IO if they ever reach it. */
static const char *const lua_only_codes[] = { "INVALID_ARGUMENT" };

static int known_code(const char *name)
{
	int code = lup_error_code(name);

	if (code != LUP_OK && (code != LUP_EIO || strcmp(name, "IO") == 0))
		return 1;
	for (size_t i = 0; i < sizeof(lua_only_codes) / sizeof(lua_only_codes[0]); i++)
		if (strcmp(name, lua_only_codes[i]) == 0)
			return 1;
	return 0;
}

/* layerup.error(code, message [, fields]) -> err: the one error type of
 * every layerup module, C or Lua.  fields is a table whose entries are
 * copied into the error (path, offset, transient, ...), or a string: the
 * path (the older form). */
static int error_new(lua_State *L)
{
	const char *name = luaL_checkstring(L, 1);
	const char *msg = luaL_optstring(L, 2, name);

	if (!known_code(name))
		return luaL_argerror(L, 1, lua_pushfstring(L,
			"unknown error code '%s'", name));
	if (!lua_isnoneornil(L, 3) && lua_type(L, 3) != LUA_TSTRING)
		luaL_checktype(L, 3, LUA_TTABLE);
	lua_createtable(L, 0, 4);
	if (lua_type(L, 3) == LUA_TSTRING) {
		lua_pushvalue(L, 3);
		lua_setfield(L, -2, "path");
	} else if (lua_istable(L, 3)) {
		lua_pushnil(L);
		while (lua_next(L, 3)) {
			lua_pushvalue(L, -2);
			lua_insert(L, -2);
			lua_rawset(L, -4);
		}
	}
	/* code and message win over fields of the same name */
	lua_pushstring(L, name);
	lua_setfield(L, -2, "code");
	lua_pushstring(L, msg);
	lua_setfield(L, -2, "message");
	luaL_setmetatable(L, ERROR_CLASS);
	return 1;
}

/* layerup.is_error(v): v is a layerup error (by metatable identity). */
static int error_is(lua_State *L)
{
	int yes = 0;

	if (lua_getmetatable(L, 1)) {
		luaL_getmetatable(L, ERROR_CLASS);
		yes = lua_rawequal(L, -1, -2);
	}
	lua_pushboolean(L, yes);
	return 1;
}

void lup_lua_open_error(lua_State *L)
{
	static const luaL_Reg meta[] = {
		{ "__tostring", error_tostring },
		{ NULL, NULL },
	};

	lup_lua_new_class(L, ERROR_CLASS, meta, NULL);

	lua_pushcfunction(L, error_new);
	lua_setfield(L, -2, "error");
	lua_pushcfunction(L, error_is);
	lua_setfield(L, -2, "is_error");

	/* error_codes.PATH_NOT_FOUND == "PATH_NOT_FOUND": a typo in a
	 * policy then reads nil instead of silently never matching. */
	lua_createtable(L, 0, sizeof(error_codes) / sizeof(error_codes[0]));
	for (size_t i = 0; i < sizeof(error_codes) / sizeof(error_codes[0]);
	     i++) {
		lua_pushstring(L, lup_error_name(error_codes[i]));
		lua_setfield(L, -2, lup_error_name(error_codes[i]));
	}
	for (size_t i = 0; i < sizeof(lua_only_codes) / sizeof(lua_only_codes[0]); i++) {
		lua_pushstring(L, lua_only_codes[i]);
		lua_setfield(L, -2, lua_only_codes[i]);
	}
	lua_setfield(L, -2, "error_codes");
}

const char *lup_lua_checkname(lua_State *L, int idx)
{
	size_t n;
	const char *s = luaL_checklstring(L, idx, &n);

	return strlen(s) == n ? s : "<contains NUL>";
}

const char *lup_lua_optname(lua_State *L, int idx)
{
	return lua_isnoneornil(L, idx) ? NULL : lup_lua_checkname(L, idx);
}

int64_t lup_lua_checkcount(lua_State *L, int idx, int arg, const char *what,
			   int round_up)
{
	const double max = (double)LUP_LUA_MAX_COUNT;
	lua_Integer i;
	double d;

	if (lua_type(L, idx) != LUA_TNUMBER)
		return luaL_argerror(L, arg, lua_pushfstring(L,
			"%s must be a number, got %s", what, luaL_typename(L, idx)));
	if (lup_isinteger(L, idx)) {
		i = lua_tointeger(L, idx);
		if (i < 0 || i > (lua_Integer)LUP_LUA_MAX_COUNT) {
			char num[32]; /* no %I in LuaJIT's lua_pushfstring */

			snprintf(num, sizeof(num), "%lld", (long long)i);
			return luaL_argerror(L, arg, lua_pushfstring(L,
				"%s must be between 0 and 2^53, got %s", what, num));
		}
		return (int64_t)i;
	}
	d = lua_tonumber(L, idx);
	/* NaN fails every comparison, so test for the good range. */
	if (!(d >= 0 && d <= max))
		return luaL_argerror(L, arg, lua_pushfstring(L,
			"%s must be between 0 and 2^53, got %f", what, d));
	i = (lua_Integer)d; /* in range: truncation is defined */
	if ((double)i == d)
		return (int64_t)i;
	if (!round_up)
		return luaL_argerror(L, arg, lua_pushfstring(L,
			"%s must be a whole number, got %f", what, d));
	return (int64_t)i + 1; /* d > 0 here: its ceiling */
}
