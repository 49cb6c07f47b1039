/*
 * layerup.h - resumable, content-addressed blob uploads (C API).
 *
 * A store is the Docker Distribution (registry v2) layout on one driver:
 *
 *   /docker/registry/v2/blobs/sha256/<hex[0:2]>/<hex>/data
 *   /docker/registry/v2/repositories/<repo>/_layers/<alg>/<hex>/link
 *   /docker/registry/v2/repositories/<repo>/_uploads/<uuid>/data
 *   /docker/registry/v2/repositories/<repo>/_uploads/<uuid>/startedat
 *   /docker/registry/v2/repositories/<repo>/_uploads/<uuid>/hashstates/sha256/<offset>
 *
 * An upload appends bytes, keeps a resumable SHA-256 state beside the data
 * (so neither resume nor finish re-reads what was hashed), and on finish
 * verifies the client's digest, moves the data into blobs/ (once: identical
 * blobs are shared), links it into repositories and removes the upload.
 *
 * Conventions: every function returns 0 or a negative LUP_E* code and fills
 * the optional `lup_error *err` (last argument).  Handles are independent:
 * no global state.  A store may be shared by threads; an upload handle is
 * used by one thread at a time but may move between threads.
 *
 * Threads of our own: none, except that an upload which receives writes of
 * 256 KiB or more starts one worker thread to hash while the caller's
 * thread writes (joined when the upload is closed, finished, cancelled or
 * freed).  Hosts that forbid threads (nginx workers, ...) set the store
 * option hash_thread = 0: everything is then hashed on the caller's thread.
 * The S3 driver starts threads only when asked to (upload_concurrency > 1:
 * parts in flight on threads of their own); it uses libcurl, whose
 * threaded resolver may run a name lookup on a short-lived thread.
 *
 * Two tiers, as in libgit2: this header (with layerup/driver.h,
 * driver_s3.h, error.h and hash.h, which it includes) is for users of the
 * engine; layerup/sys/driver.h adds the vtables for writing a storage
 * driver.
 */
#ifndef LAYERUP_H
#define LAYERUP_H

#include <stddef.h>
#include <stdint.h>

#include "layerup/common.h"
#include "layerup/driver.h"
#include "layerup/driver_s3.h"
#include "layerup/error.h"
#include "layerup/hash.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LUP_VERSION_STRING "0.1.0"

typedef struct lup_store lup_store;
typedef struct lup_upload lup_upload;

/* A log field: key plus one typed value. */
typedef enum lup_field_type {
	LUP_FIELD_STR,
	LUP_FIELD_INT,
	LUP_FIELD_NUM,
	LUP_FIELD_BOOL
} lup_field_type;

typedef struct lup_field {
	const char *key;
	lup_field_type type;
	const char *s; /* LUP_FIELD_STR */
	int64_t i;     /* LUP_FIELD_INT, LUP_FIELD_BOOL (0/1) */
	double n;      /* LUP_FIELD_NUM */
} lup_field;

/* What the link policy is told when an upload finishes. */
typedef struct lup_link_ctx {
	const char *repo;      /* the upload's repository */
	const char *uuid;      /* the upload's id */
	const char *canonical; /* "sha256:<hex>" */
	const char *requested; /* the digest the client gave */
	int64_t size;
} lup_link_ctx;

/* Called by a link policy once per link to write. */
typedef int (*lup_link_add_fn)(void *sink, const char *repo,
			       const char *digest);

/* What the admission policy is told before an upload starts. */
typedef struct lup_admit_ctx {
	const char *repo; /* the repository of the new upload */
	int64_t size;     /* the size the caller expects to upload (see
			   * lup_upload_start_ext), -1 when unknown */
} lup_admit_ctx;

/* Policy hooks.  Every member may be NULL (defaults in brackets).
 * Hooks must not call back into the same upload. */
typedef struct lup_policy {
	/* Event sink: dotted names ("upload.start", "upload.finish", ...). [none] */
	void (*log)(const char *event, const lup_field *fields, size_t nfields,
		    void *payload);
	/* After a failed attempt of op ("finish.validate", "driver.<op>"):
	 * return 1 and set *delay (seconds) to try again, 0 to give up.
	 * [no retries] */
	int (*retry)(int attempt, const lup_error *cause, const char *op,
		     double *delay, void *payload);
	/* Choose the links to write; call add(sink, repo, digest) for each.
	 * Return 0, or a LUP_E* code (e.g. LUP_EDENIED) with err filled.
	 * [canonical + requested digest into the upload's repository] */
	int (*link)(const lup_link_ctx *ctx, lup_link_add_fn add, void *sink,
		    lup_error *err, void *payload);
	/* Before an upload starts: 0 to admit, LUP_EDENIED (err filled) to
	 * refuse. [admit all] */
	int (*admit)(const char *repo, lup_error *err, void *payload);
	/* Spend `seconds` between retries. [nanosleep] */
	void (*sleep)(double seconds, void *payload);
	void *payload;
	/* Since options version 2: admit with the expected size; when set it
	 * is called instead of admit.  Same results as admit. [admit] */
	int (*admit_upload)(const lup_admit_ctx *ctx, lup_error *err,
			    void *payload);
} lup_policy;

/* Version 2 added lup_policy.admit_upload, version 3 rehash_on_finish,
 * version 4 hash_thread.  lup_store_open still accepts version 1, 2 and 3
 * structs (compiled against an older header: without those members), so
 * existing binaries keep working; what they lack takes its default. */
#define LUP_STORE_OPTIONS_VERSION 4

typedef struct lup_store_options {
	unsigned version;     /* LUP_STORE_OPTIONS_VERSION (1 to 4) */
	lup_policy policy;
	int64_t max_size;     /* upload size limit in bytes, 0: none */
	int64_t max_age;      /* resume refuses (and removes) older uploads,
			       * seconds, 0: none */
	/* Version 3.  Non-zero: finish re-hashes the upload data instead of
	 * trusting the hash state stored beside it (which is what lets finish
	 * read 0 bytes).  For stores that less-trusted writers can modify:
	 * without it a forged state of the right length, or data rewritten
	 * after close with the same length, is accepted (see README, "Trust
	 * boundary").  Costs one read of the whole upload per finish. */
	int rehash_on_finish;
	/* Version 4.  1 (the default): large writes are hashed on a
	 * per-upload worker thread; 0: never start a thread, hash on the
	 * caller's. */
	int hash_thread;
} lup_store_options;

/* Always start from this (later fields get their defaults).  Every member
 * is spelled out so that C++ with -Wextra accepts it too. */
#define LUP_STORE_OPTIONS_INIT                                             \
	{ LUP_STORE_OPTIONS_VERSION,                                       \
	  { NULL, NULL, NULL, NULL, NULL, NULL, NULL }, 0, 0, 0, 1 }

/* Open a store on driver (the store takes its own reference: release yours
 * when you no longer need it).  opts may be NULL for the defaults.  *out
 * holds one reference: lup_store_release it. */
LUP_API int lup_store_open(lup_store **out, lup_driver *driver,
			   const lup_store_options *opts, lup_error *err);

/* Drop the caller's reference to a store.  The store is freed when the last
 * reference goes: every live upload holds one, so uploads keep their store
 * alive until they are freed.  NULL is accepted. */
LUP_API void lup_store_release(lup_store *store);

/* The former name of lup_store_release (deprecated; same behaviour). */
LUP_API void lup_store_free(lup_store *store);

/* The store's driver (not retained for the caller). */
LUP_API lup_driver *lup_store_driver(lup_store *store);

/* A blob: canonical digest ("sha256:<hex>") and size. */
typedef struct lup_blob_info {
	char digest[144]; /* "<alg>:<hex>", NUL-terminated */
	int64_t size;
} lup_blob_info;

/* Stat a blob by digest.  With repo non-NULL the digest must be linked in
 * that repository (any algorithm; the link names the canonical blob).
 * LUP_EBLOB_UNKNOWN when absent, LUP_EDIGEST_INVALID for a bad digest. */
LUP_API int lup_store_stat(lup_store *store, const char *digest,
			   const char *repo, lup_blob_info *out,
			   lup_error *err);

/* Stream a blob linked in repo: read *out with lup_reader_read and close it
 * with lup_reader_close (it keeps the driver alive until then). */
LUP_API int lup_store_open_blob(lup_store *store, const char *repo,
				const char *digest, lup_reader **out,
				lup_error *err);

/* Link an existing blob into repo (canonical link and, for a non-sha256
 * digest, the alias).  LUP_EBLOB_UNKNOWN if the blob is absent. */
LUP_API int lup_store_link(lup_store *store, const char *repo,
			   const char *digest, lup_error *err);

/* Remove the link of digest from repo (the blob stays). */
LUP_API int lup_store_unlink(lup_store *store, const char *repo,
			     const char *digest, lup_error *err);

/* Link a blob linked in from_repo into to_repo (cross-repository mount). */
LUP_API int lup_store_mount(lup_store *store, const char *from_repo,
			    const char *to_repo, const char *digest,
			    lup_blob_info *out, lup_error *err);

/* An upload in a listing or purge result. */
typedef struct lup_upload_info {
	char *repo;
	char uuid[37];
	int64_t started_at; /* unix seconds; mtime when startedat is unusable */
	int64_t size;       /* bytes in data, 0 if missing */
} lup_upload_info;

/* A list filled by lup_store_uploads / lup_store_purge.  Zero-initialise
 * it; free it with lup_upload_list_free. */
typedef struct lup_upload_list {
	lup_upload_info *items;
	size_t count;
	size_t cap; /* allocated items (internal bookkeeping) */
} lup_upload_list;

/* Free the items and their strings; the list becomes empty. */
LUP_API void lup_upload_list_free(lup_upload_list *list);

/* Every upload in the store (or in repo), sorted by repo then uuid. */
LUP_API int lup_store_uploads(lup_store *store, const char *repo,
			      lup_upload_list *out, lup_error *err);

/* Remove uploads started more than older_than seconds ago (when startedat
 * is missing or corrupt: last modified), including orphan directories that
 * hold only hash states.  Uploads held by a writer are skipped.  With
 * dry_run nothing is removed.  out lists what was (or would be) removed,
 * sorted by repo then uuid. */
LUP_API int lup_store_purge(lup_store *store, int64_t older_than, int dry_run,
			    lup_upload_list *out, lup_error *err);

/* Start an upload: new v4 uuid, startedat, empty data; the handle holds the
 * upload's lock until close/finish/cancel.  The admission policy decides
 * first (LUP_EDENIED), before anything is written. */
LUP_API int lup_upload_start(lup_upload **out, lup_store *store,
			     const char *repo, lup_error *err);

/* What a caller knows about an upload before starting it. */
typedef struct lup_start_options {
	unsigned version; /* LUP_START_OPTIONS_VERSION */
	int64_t size;     /* expected size in bytes, -1 when unknown */
} lup_start_options;

#define LUP_START_OPTIONS_VERSION 1
#define LUP_START_OPTIONS_INIT { LUP_START_OPTIONS_VERSION, -1 }

/* lup_upload_start with options (NULL: the defaults).  A known size is
 * given to the admission policy (lup_admit_ctx.size), so it can refuse a
 * push up front, and an expected size above the store's max_size is
 * refused with LUP_ESIZE_INVALID before anything is written.  The size is
 * a declaration, not a limit: finish checks the real size as usual. */
LUP_API int lup_upload_start_ext(lup_upload **out, lup_store *store,
				 const char *repo,
				 const lup_start_options *opts,
				 lup_error *err);

/* Resume an upload by id: LUP_EBLOB_UPLOAD_UNKNOWN if startedat or data is
 * missing, LUP_ELOCKED if another handle holds it.  Restores the hash from
 * the state at the current size, else the best lower state plus the gap. */
LUP_API int lup_upload_resume(lup_upload **out, lup_store *store,
			      const char *repo, const char *uuid,
			      lup_error *err);

LUP_API const char *lup_upload_uuid(const lup_upload *u);
LUP_API const char *lup_upload_repo(const lup_upload *u);
/* Unix seconds from startedat. */
LUP_API int64_t lup_upload_started_at(const lup_upload *u);
/* Bytes received so far (the offset of the next write). */
LUP_API int64_t lup_upload_size(const lup_upload *u);
/* Bytes of upload data this handle has re-read to rebuild or check the
 * hash (0 when every byte was hashed once, as it arrived). */
LUP_API int64_t lup_upload_bytes_reread(const lup_upload *u);

/* Cap this handle's size at max bytes (max < 0: no cap of its own): a
 * write that would make the upload larger than the lower of max and the
 * store's max_size fails with LUP_ESIZE_INVALID and stores none of its
 * bytes, so the upload stays at its size, resumable.  The cap belongs to
 * the handle (e.g. a per-repository limit for one request), not to the
 * upload: it is not stored, a resume starts without it. */
LUP_API void lup_upload_set_max_size(lup_upload *u, int64_t max);

/* Append n bytes. */
LUP_API int lup_upload_write(lup_upload *u, const void *data, size_t n,
			     lup_error *err);

/* Append n bytes, hashing them on a worker thread after this returns, so
 * that the caller can prepare the next buffer meanwhile (large writes only;
 * small ones are hashed at once).  data must stay valid and unchanged until
 * the next call on this upload (any call waits for the hash first) or
 * lup_upload_drain.  Errors are those of lup_upload_write. */
LUP_API int lup_upload_write_async(lup_upload *u, const void *data, size_t n,
				   lup_error *err);

/* Wait until the last lup_upload_write_async's bytes are hashed; its
 * buffer may be reused afterwards. */
LUP_API void lup_upload_drain(lup_upload *u);

/* Append at offset, which must equal the current size (else
 * LUP_ERANGE_INVALID with err->offset = the current size). */
LUP_API int lup_upload_write_at(lup_upload *u, int64_t offset,
				const void *data, size_t n, lup_error *err);

/* Make the data durable, then save the hash state at the new offset and
 * drop older states; releases the lock.  The handle is closed afterwards. */
LUP_API int lup_upload_close(lup_upload *u, lup_error *err);

/* Verify digest ("<alg>:<hex>", sha256/sha384/sha512) and, if size >= 0,
 * the size; move the data into blobs/ (or share an existing blob), write the
 * links and remove the upload.  On failure the upload is left as it was:
 * it can be finished again or cancelled. */
LUP_API int lup_upload_finish(lup_upload *u, const char *digest, int64_t size,
			      lup_blob_info *out, lup_error *err);

/* Remove the upload entirely; idempotent. */
LUP_API int lup_upload_cancel(lup_upload *u, lup_error *err);

/* 1 while the handle can still write/finish/cancel. */
LUP_API int lup_upload_is_open(const lup_upload *u);

/* Close if still open (errors are dropped) and free the handle. */
LUP_API void lup_upload_free(lup_upload *u);

#ifdef __cplusplus
}
#endif
#endif
