/*
 * store.h - the store object and the helpers the upload and purge code
 * share: policy calls (log, retry, sleep) and driver calls that consult the
 * retry policy on transient failures.
 */
#ifndef LUP_STORE_H
#define LUP_STORE_H

#include <stdatomic.h>

#include "layerup.h"
#include "store/layout.h"

struct lup_store {
	atomic_int refcount; /* the caller's handle + one per live upload */
	lup_driver *driver;
	lup_policy policy;
	int64_t max_size;
	int64_t max_age;
	int rehash_on_finish; /* verify from the data, never the stored state */
	int hash_thread; /* 0: hash inline, never start a worker */
};

/* The version 1 layout of lup_store_options (before admit_upload), for
 * callers built against it. */
typedef struct lup_policy_v1 {
	void (*log)(const char *, const lup_field *, size_t, void *);
	int (*retry)(int, const lup_error *, const char *, double *, void *);
	int (*link)(const lup_link_ctx *, lup_link_add_fn, void *, lup_error *,
		    void *);
	int (*admit)(const char *, lup_error *, void *);
	void (*sleep)(double, void *);
	void *payload;
} lup_policy_v1;

typedef struct lup_store_options_v1 {
	unsigned version;
	lup_policy_v1 policy;
	int64_t max_size;
	int64_t max_age;
} lup_store_options_v1;

/* The longest retry delay honoured, in seconds (longer ones give up). */
#define LUP_RETRY_MAX_DELAY 3600.0

void lup_store_retain(lup_store *s);
void lup_store_release(lup_store *s);

/* Emit a log event when a log hook is set. */
void lup_store_log(lup_store *s, const char *event, const lup_field *f,
		   size_t n);

/* After failed attempt number `attempt` of op: ask the retry policy; when
 * it says again, log "<op prefix>.retry" (ctx fields first, e.g. repo and
 * uuid), sleep and return 1.  Driver ops ("driver.*") retry only transient
 * errors. */
int lup_store_should_retry(lup_store *s, int attempt, const lup_error *err,
			   const char *op, const lup_field *ctx, size_t nctx);

/* The one guarded path for driver calls (store.c): every operation of the
 * store and its uploads goes through these, never through lup_driver_*
 * directly.  Each validates (via the lup_driver_* wrapper), applies the
 * retry policy to transient errors and logs "driver.retry" for each retry.
 * Readers from lup_s_reader retry failed reads by reopening at the offset
 * reached; they hold a reference on the store until closed. */
int lup_s_get(lup_store *s, const char *path, lup_buf *out, lup_error *err);
int lup_s_put(lup_store *s, const char *path, const void *p, size_t n,
	      lup_error *err);
/* lup_s_put without the retry policy and its event: for a helper thread,
 * on which no policy or log hook (Lua, maybe) may run. */
int lup_s_put_once(lup_store *s, const char *path, const void *p, size_t n,
		   lup_error *err);
int lup_s_stat(lup_store *s, const char *path, lup_stat *out, lup_error *err);
int lup_s_list(lup_store *s, const char *path, lup_strlist *out,
	       lup_error *err);
int lup_s_writer(lup_store *s, const char *path, int append, lup_writer **out,
		 lup_error *err);
int lup_s_move(lup_store *s, const char *src, const char *dst, lup_error *err);
int lup_s_delete(lup_store *s, const char *path, lup_error *err);
int lup_s_reader(lup_store *s, const char *path, int64_t offset,
		 lup_reader **out, lup_error *err);
int lup_s_lock(lup_store *s, const char *path, void **token, lup_error *err);
void lup_s_unlock(lup_store *s, void *token);

/* nanosleep for seconds (EINTR-safe); the default sleep hook. */
void lup_sleep(double seconds);

/* Current time in unix seconds / monotonic milliseconds. */
int64_t lup_now(void);
double lup_monotonic_ms(void);

/* The last component of path as a decimal of at most 18 digits (a hash
 * state's offset): 0 and *out, or -1 when it is anything else. */
int lup_path_decimal(const char *path, int64_t *out);

/* Field constructors for log events. */
static inline lup_field lup_fs(const char *k, const char *v)
{
	lup_field f = { k, LUP_FIELD_STR, v, 0, 0 };
	return f;
}
static inline lup_field lup_fi(const char *k, int64_t v)
{
	lup_field f = { k, LUP_FIELD_INT, NULL, v, 0 };
	return f;
}
static inline lup_field lup_fn(const char *k, double v)
{
	lup_field f = { k, LUP_FIELD_NUM, NULL, 0, v };
	return f;
}
static inline lup_field lup_fb(const char *k, int v)
{
	lup_field f = { k, LUP_FIELD_BOOL, NULL, v ? 1 : 0, 0 };
	return f;
}

/* Read the startedat of an upload dir's files; used by resume, uploads and
 * purge.  Returns 0 and *secs, PATH_NOT_FOUND, or BLOB_UPLOAD_INVALID. */
int lup_read_startedat(lup_store *s, const char *repo, const char *uuid,
		       int64_t *secs, lup_error *err);

/* Take an upload's lock (on its directory, which exists from the start of
 * the upload until it is removed, and unlike a file is never replaced by a
 * rename) and re-check
 * under the lock that the upload still exists.  0 with *token held;
 * BLOB_UPLOAD_UNKNOWN when it is gone (or never had a startedat); LOCKED
 * when another handle holds it. */
int lup_store_lock_upload(lup_store *s, const char *repo, const char *uuid,
			  void **token, lup_error *err);

/* Write repo's link for digest d naming the canonical blob. */
int lup_store_write_link(lup_store *s, const char *repo, const lup_digest *d,
			 const lup_digest *canon, lup_error *err);

#endif
