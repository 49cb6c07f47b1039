/*
 * lua_policy.h - the store userdata and its policy bridge: what
 * lua_store.c and lua_upload.c share.  Both include this header; only
 * lua_store.c calls into lua_upload.c (lua_upload.h), never the reverse.
 *
 * Policy functions live in the registry (refs below) and are called on the
 * lua_State of whichever method is running: each entry point sets pol.L and
 * restores the previous value on return, so nested and coroutine calls see
 * their own state.  Every call from C into a policy runs entirely inside
 * one lua_pcall (argument pushes, the call, reading the results and any
 * metamethod they trigger), so a Lua error never unwinds through the C
 * core; it becomes an error record (link, admit), a give-up (retry) or a
 * counted failure (log, sleep).
 *
 * Lifetime: the refs belong to the store userdata and are dropped only by
 * its __gc; close() and __close release the C store but keep them.  Every
 * upload userdata references its store userdata (user value 1), so the
 * policies live as long as any upload of the store.
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
	/* Failures of hooks that cannot fail the operation (store:stats()). */
	lua_Integer log_errors;   /* the log hook raised */
	lua_Integer retry_errors; /* retry raised or gave an unusable delay */
	lua_Integer sleep_errors; /* the sleep hook raised */
	int reported;             /* the first log failure went to stderr */
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
 * state is restored afterwards, so nested and coroutine calls work).  call
 * is C core code: it never raises, because every hook it may run is fully
 * protected, so the restore always runs. */
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
