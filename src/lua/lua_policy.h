/*
 * lua_policy.h - the store userdata and its policy bridge: what
 * lua_store.c and lua_upload.c share.  Both include this header; only
 * lua_store.c calls into lua_upload.c (lua_upload.h), never the reverse.
 *
 * Policy functions live in the registry (refs below) and are called on the
 * lua_State of whichever method is running: each entry point sets pol.L and
 * restores the previous value on return, so nested and coroutine calls see
 * their own state.  Errors raised by policies never cross the C core: they
 * are caught and turned into error records.
 */
#ifndef LUP_LUA_POLICY_H
#define LUP_LUA_POLICY_H

#include "lua/lua_util.h"

#define STORE_CLASS "layerup.store"
#define UPLOAD_CLASS "layerup.upload"

enum { POL_LOG, POL_RETRY, POL_LINK, POL_ADMIT, POL_SLEEP, POL_COUNT };

typedef struct lup_lua_policy {
	lua_State *L;        /* state of the running method, NULL between calls */
	int refs[POL_COUNT]; /* registry refs, LUA_NOREF when unset */
} lup_lua_policy;

/* The two copy buffers of upload:read_from, kept with the store between
 * calls: a server streams one request body per call, and fresh buffers each
 * time would cost page faults and the kernel zeroing them. */
typedef struct lup_lua_bufs {
	char *p[2];
	size_t size; /* bytes in each, 0 when none */
	int busy;    /* a read_from is using them (a policy hook may nest one) */
} lup_lua_bufs;

typedef struct lup_lua_store {
	lup_store *store; /* NULL once closed */
	lup_lua_policy pol;
	lup_lua_bufs bufs;
} lup_lua_store;

/* rc = call, with pol->L pointing at L for its duration (the previous
 * state is restored afterwards, so nested and coroutine calls work). */
#define LUP_WITH_POLICY(pol, L, call)                                      \
	do {                                                               \
		lua_State *prev_ = (pol)->L;                               \
		(pol)->L = (L);                                            \
		rc = (call);                                               \
		(pol)->L = prev_;                                          \
	} while (0)

/* The store userdata at idx (raises if closed); lua_store.c. */
lup_lua_store *lup_lua_check_store(lua_State *L, int idx);

#endif
