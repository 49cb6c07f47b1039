/*
 * lua_upload.h - the upload userdata (lua_upload.c), as the store binding
 * (lua_store.c) creates it.
 */
#ifndef LUP_LUA_UPLOAD_H
#define LUP_LUA_UPLOAD_H

#include "lua/lua_policy.h"

/* Push an upload userdata for u; the store userdata is at store_idx. */
void lup_lua_push_upload(lua_State *L, lup_upload *u, int store_idx);

#endif
