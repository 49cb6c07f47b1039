/*
 * lua_util.h - plumbing shared by the Lua binding files (src/lua_*.c).
 *
 * Metatable names: "layerup.error", "layerup.driver", "layerup.reader",
 * "layerup.writer", "layerup.store", "layerup.upload".
 * Expected failures return nil, err where err is a table
 * {code=, message=, path=?, offset=?, transient=?} with metatable
 * "layerup.error" (__tostring gives "CODE: message").  Misuse raises.
 */
#ifndef LUP_LUA_UTIL_H
#define LUP_LUA_UTIL_H

#include "layerup.h"
#include "layerup/sys/driver.h"
#include "lua/lup_compat.h"

/* Push nil and the error table for err; returns 2 (for `return`). */
int lup_lua_fail(lua_State *L, const lup_error *err);

/* Push the error table alone. */
void lup_lua_push_error(lua_State *L, const lup_error *err);

/* Turn the value at idx (an error table, a string, or anything) into err
 * with default_code when it carries no code.  Used for errors that Lua
 * drivers and policies return. */
void lup_lua_to_error(lua_State *L, int idx, int default_code,
		      lup_error *err);

/* A string argument that names something (repository, upload id, digest).
 * One with an embedded NUL comes back as "<contains NUL>", which no grammar
 * accepts, so the core answers with its ordinary error (NAME_INVALID, ...)
 * instead of silently using the part before the NUL. */
const char *lup_lua_checkname(lua_State *L, int idx);
const char *lup_lua_optname(lua_State *L, int idx);

/* The largest size, offset or duration the binding hands to C: 2^53, the
 * largest integer every Lua number (LuaJIT's doubles too) holds exactly. */
#define LUP_LUA_MAX_COUNT ((int64_t)1 << 53)

/* The number at idx as a count in [0, LUP_LUA_MAX_COUNT] (bytes, an offset,
 * seconds).  Integers and integral floats are taken as they are; with
 * round_up a finite fraction rounds up (durations), otherwise it is refused.
 * Anything else (a string, NaN, an infinity, negative, too large) raises an
 * argument error for argument `arg` that names `what`.  The check runs before
 * any conversion, so no out-of-range float reaches a C integer. */
int64_t lup_lua_checkcount(lua_State *L, int idx, int arg, const char *what,
			   int round_up);

/* Driver userdata ("layerup.driver"): holds one reference on the driver. */
typedef struct lup_lua_driver {
	lup_driver *driver; /* NULL once closed */
} lup_lua_driver;

/* Push a new driver userdata taking over the caller's reference on d. */
void lup_lua_push_driver(lua_State *L, lup_driver *d);

/* The driver of the driver userdata at idx (raises if not one / closed). */
lup_driver *lup_lua_check_driver(lua_State *L, int idx);

/* Build (once per state) a metatable: methods go into __index, metamethods
 * (__gc, __close, __tostring, ...) onto the metatable itself. */
void lup_lua_new_class(lua_State *L, const char *name, const luaL_Reg *meta,
		       const luaL_Reg *methods);

/* Registration functions of each binding file, called by luaopen. */
void lup_lua_open_error(lua_State *L);
void lup_lua_open_driver(lua_State *L);  /* adds filesystem, memory, driver */
void lup_lua_open_store(lua_State *L);   /* adds open, hasher, sha256_file */
void lup_lua_open_upload(lua_State *L);  /* the upload class (no functions) */
void lup_lua_open_hash(lua_State *L);    /* adds hasher, sha256_file */
void lup_lua_open_s3(lua_State *L);      /* adds s3, s3_counters */

#endif
