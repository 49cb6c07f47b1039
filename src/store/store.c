/*
 * store.c - the store handle, policy plumbing, retried driver calls and the
 * blob operations (stat, open, link, unlink, mount).  Uploads live in
 * upload.c, listing and purge in purge.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/store.h"

/* time(), not clock_gettime(CLOCK_REALTIME): Linux serves time() from the
 * coarse clock, which trails the fine one by up to a tick, so around a
 * second boundary the two disagree; Lua's os.time(), date(1) and the rest
 * of a host use time(), and an upload's started_at must not be a second
 * ahead of them. */
int64_t lup_now(void)
{
	return (int64_t)time(NULL);
}

double lup_monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int lup_path_decimal(const char *path, int64_t *out)
{
	const char *base = strrchr(path, '/');
	int64_t v = 0;

	base = base ? base + 1 : path;
	if (!*base || strlen(base) > 18)
		return -1;
	for (const char *p = base; *p; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		v = v * 10 + (*p - '0');
	}
	*out = v;
	return 0;
}

int lup_store_open(lup_store **out, lup_driver *driver,
		   const lup_store_options *opts, lup_error *err)
{
	lup_store *s;

	*out = NULL;
	if (!driver)
		return lup_error_set(err, LUP_EIO, NULL, "no driver given");
	if (opts && (opts->version < 1 || opts->version > LUP_STORE_OPTIONS_VERSION))
		return lup_error_set(err, LUP_EUNSUPPORTED, NULL,
				     "unsupported store options version %u",
				     opts->version);
	if (!(s = calloc(1, sizeof(*s))))
		return lup_error_set(err, LUP_EIO, NULL, "out of memory");
	atomic_init(&s->refcount, 1);
	lup_driver_retain(driver);
	s->driver = driver;
	s->hash_thread = 1;
	if (opts && opts->version == 1) {
		/* A caller built against version 1: its struct ends before
		 * admit_upload, so read it through the old layout. */
		const lup_store_options_v1 *o1 = (const void *)opts;

		memcpy(&s->policy, &o1->policy, sizeof(o1->policy));
		s->max_size = o1->max_size;
		s->max_age = o1->max_age;
	} else if (opts) {
		s->policy = opts->policy;
		s->max_size = opts->max_size;
		s->max_age = opts->max_age;
		/* Older callers' structs end before these fields. */
		if (opts->version >= 3)
			s->rehash_on_finish = opts->rehash_on_finish != 0;
		if (opts->version >= 4)
			s->hash_thread = opts->hash_thread != 0;
	}
	*out = s;
	return 0;
}

void lup_store_retain(lup_store *s)
{
	atomic_fetch_add(&s->refcount, 1);
}

void lup_store_release(lup_store *s)
{
	if (s && atomic_fetch_sub(&s->refcount, 1) == 1) {
		lup_driver_release(s->driver);
		free(s);
	}
}

void lup_store_free(lup_store *s)
{
	lup_store_release(s);
}

lup_driver *lup_store_driver(lup_store *s)
{
	return s->driver;
}

void lup_store_log(lup_store *s, const char *event, const lup_field *f,
		   size_t n)
{
	if (s->policy.log)
		s->policy.log(event, f, n, s->policy.payload);
}

void lup_sleep(double seconds)
{
	struct timespec ts;

	if (!(seconds > 0)) /* also NaN */
		return;
	if (seconds > LUP_RETRY_MAX_DELAY)
		seconds = LUP_RETRY_MAX_DELAY;
	ts.tv_sec = (time_t)seconds;
	ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

int lup_store_should_retry(lup_store *s, int attempt, const lup_error *err,
			   const char *op, const lup_field *ctx, size_t nctx)
{
	double delay = 0;
	int is_driver = strncmp(op, "driver.", 7) == 0;
	char event[32];
	lup_field f[10];
	size_t k = 0;

	/* The store builds valid paths only, so a driver's INVALID_PATH means
	 * the tree refused one: the filesystem driver met a symlink below its
	 * root (never followed).  Said once per call, whoever made it. */
	if (is_driver && err && err->code == LUP_EINVALID_PATH && attempt == 1) {
		lup_field t[] = { lup_fs("op", op + 7),
				  lup_fs("path", err->path),
				  lup_fs("message", err->message) };
		lup_store_log(s, "tree.symlink", t, 3);
	}
	if (!s->policy.retry || !err || (is_driver && !err->transient))
		return 0;
	if (!s->policy.retry(attempt, err, op, &delay, s->policy.payload))
		return 0;
	/* A delay that is no number of seconds up to an hour (NaN, an
	 * infinity, 1e300) gives up rather than reach nanosleep's integers. */
	if (!(delay <= LUP_RETRY_MAX_DELAY))
		return 0;
	if (delay < 0)
		delay = 0;
	/* "driver.put_content" -> "driver.retry", "finish.validate" ->
	 * "finish.retry". */
	snprintf(event, sizeof(event), "%.*s.retry", (int)strcspn(op, "."), op);
	for (size_t i = 0; i < nctx && k < 4; i++)
		f[k++] = ctx[i];
	if (is_driver)
		f[k++] = lup_fs("op", op + 7);
	f[k++] = lup_fi("attempt", attempt);
	f[k++] = lup_fn("delay", delay);
	f[k++] = lup_fs("code", lup_error_name(err->code));
	f[k++] = lup_fs("message", err->message);
	lup_store_log(s, event, f, k);
	if (s->policy.sleep)
		s->policy.sleep(delay, s->policy.payload);
	else
		lup_sleep(delay);
	return 1;
}

/*
 * The guarded path.  Every operation the store and its uploads perform on
 * the driver goes through the lup_s_* functions below, and nothing in
 * src/store/ calls a lup_driver_* function or a driver method itself:
 * - validation: each goes through the lup_driver_* wrapper (path checks,
 *   the driver's name in the message, sorted lists);
 * - the retry policy: a transient failure asks the policy, which may wait
 *   (sleep hook) and try again;
 * - the event: each retry is logged as "driver.retry" with the op name.
 * Readers are retried too (a failed read reopens at the same offset).
 */

/* Retry loop shared by the lup_s_* wrappers. */
#define RETRIED(op, call)                                                  \
	do {                                                               \
		int rc_;                                                   \
		lup_error local_;                                          \
		if (!err)                                                  \
			err = &local_; /* retry decisions need the error */ \
		for (int attempt_ = 1;; attempt_++) {                      \
			rc_ = (call);                                      \
			if (rc_ == 0 ||                                    \
			    !lup_store_should_retry(s, attempt_, err, op,   \
						    NULL, 0))              \
				return rc_;                                \
		}                                                          \
	} while (0)

int lup_s_get(lup_store *s, const char *path, lup_buf *out, lup_error *err)
{
	RETRIED("driver.get_content",
		(out->len = 0, lup_driver_get_content(s->driver, path, out, err)));
}

int lup_s_put(lup_store *s, const char *path, const void *p, size_t n,
	      lup_error *err)
{
	RETRIED("driver.put_content",
		lup_driver_put_content(s->driver, path, p, n, err));
}

int lup_s_put_once(lup_store *s, const char *path, const void *p, size_t n,
		   lup_error *err)
{
	return lup_driver_put_content(s->driver, path, p, n, err);
}

int lup_s_stat(lup_store *s, const char *path, lup_stat *out, lup_error *err)
{
	RETRIED("driver.stat", lup_driver_stat(s->driver, path, out, err));
}

int lup_s_list(lup_store *s, const char *path, lup_strlist *out,
	       lup_error *err)
{
	RETRIED("driver.list",
		(lup_strlist_free(out), lup_driver_list(s->driver, path, out, err)));
}

int lup_s_writer(lup_store *s, const char *path, int append, lup_writer **out,
		 lup_error *err)
{
	RETRIED("driver.writer",
		lup_driver_writer(s->driver, path, append, out, err));
}

int lup_s_move(lup_store *s, const char *src, const char *dst, lup_error *err)
{
	RETRIED("driver.move", lup_driver_move(s->driver, src, dst, err));
}

int lup_s_delete(lup_store *s, const char *path, lup_error *err)
{
	RETRIED("driver.delete", lup_driver_delete(s->driver, path, err));
}

int lup_s_lock(lup_store *s, const char *path, void **token, lup_error *err)
{
	RETRIED("driver.lock", lup_driver_lock(s->driver, path, token, err));
}

void lup_s_unlock(lup_store *s, void *token)
{
	lup_driver_unlock(s->driver, token);
}

static int open_reader(lup_store *s, const char *path, int64_t offset,
		       lup_reader **out, lup_error *err)
{
	RETRIED("driver.reader",
		lup_driver_reader(s->driver, path, offset, out, err));
}

/* A reader whose failed reads are retried: the inner reader is reopened at
 * the offset reached, so nothing is skipped or read twice. */
typedef struct {
	lup_reader base;
	lup_store *s;
	lup_reader *inner; /* NULL after a failed reopen */
	int64_t pos;
	char path[LUP_PATH_BUF];
} retry_reader;

static int64_t rr_read(lup_reader *r, void *buf, size_t n, lup_error *err)
{
	retry_reader *rr = (retry_reader *)r;
	lup_error local;

	if (!err)
		err = &local;
	for (int attempt = 1;; attempt++) {
		int64_t got;

		if (rr->inner) {
			got = rr->inner->read(rr->inner, buf, n, err);
			if (got >= 0) {
				rr->pos += got;
				return got;
			}
		} else {
			got = open_reader(rr->s, rr->path, rr->pos, &rr->inner,
					  err);
			if (got == 0)
				continue; /* reopened: read again */
		}
		if (!lup_store_should_retry(rr->s, attempt, err, "driver.read",
					    NULL, 0))
			return got;
		if (rr->inner) {
			rr->inner->close(rr->inner);
			rr->inner = NULL;
		}
	}
}

static void rr_close(lup_reader *r)
{
	retry_reader *rr = (retry_reader *)r;

	if (rr->inner)
		rr->inner->close(rr->inner);
	lup_store_release(rr->s);
	free(rr);
}

int lup_s_reader(lup_store *s, const char *path, int64_t offset,
		 lup_reader **out, lup_error *err)
{
	retry_reader *rr;
	int rc;

	*out = NULL;
	if (strlen(path) >= sizeof(rr->path))
		return lup_error_set(err, LUP_EINVALID_PATH, path,
				     "path too long");
	if (!(rr = calloc(1, sizeof(*rr))))
		return lup_error_set(err, LUP_EIO, path, "out of memory");
	if ((rc = open_reader(s, path, offset, &rr->inner, err)) != 0) {
		free(rr);
		return rc;
	}
	rr->base.version = LUP_READER_VERSION;
	rr->base.read = rr_read;
	rr->base.close = rr_close;
	rr->pos = offset;
	snprintf(rr->path, sizeof(rr->path), "%s", path);
	lup_store_retain(s);
	rr->s = s;
	*out = &rr->base;
	return 0;
}

int lup_read_startedat(lup_store *s, const char *repo, const char *uuid,
		       int64_t *secs, lup_error *err)
{
	char path[LUP_PATH_BUF];
	lup_buf b = { 0 };
	int rc;

	if ((rc = lup_path_upload_file(path, repo, uuid, "startedat")) != 0)
		return lup_error_set(err, rc, NULL, "path too long");
	rc = lup_s_get(s, path, &b, err);
	if (rc == 0 && lup_time_parse((const char *)b.data, b.len, secs) != 0)
		rc = lup_error_set(err, LUP_EBLOB_UPLOAD_INVALID, path,
				   "startedat is not an RFC 3339 time");
	lup_buf_free(&b);
	return rc;
}

int lup_store_lock_upload(lup_store *s, const char *repo, const char *uuid,
			  void **token, lup_error *err)
{
	char dir[LUP_PATH_BUF], path[LUP_PATH_BUF];
	lup_stat st;
	int rc;

	*token = NULL;
	if ((rc = lup_path_upload_dir(dir, repo, uuid)) != 0 ||
	    (rc = lup_path_upload_file(path, repo, uuid, "startedat")) != 0)
		return lup_error_set(err, rc, NULL, "path too long");
	rc = lup_s_lock(s, dir, token, err);
	/* Re-check under the lock: whoever removes an upload (finish, cancel,
	 * purge, expiry) holds this lock while doing so, so the upload is
	 * either still whole here or gone for good. */
	if (rc == 0 && (rc = lup_s_stat(s, path, &st, err)) == 0 && st.is_dir)
		rc = LUP_EPATH_NOT_FOUND;
	if (rc != 0) {
		lup_s_unlock(s, *token);
		*token = NULL;
	}
	if (rc == LUP_EPATH_NOT_FOUND)
		return lup_error_set(err, LUP_EBLOB_UPLOAD_UNKNOWN, NULL,
				     "blob upload unknown: %s/%s", repo, uuid);
	return rc;
}

/* Resolve digest (optionally through repo's link) to the canonical blob. */
static int resolve(lup_store *s, const char *digest, const char *repo,
		   lup_digest *canon, lup_stat *st, lup_error *err)
{
	lup_digest d;
	char path[LUP_PATH_BUF];
	int rc;

	if ((rc = lup_digest_parse(digest, &d, err)) != 0)
		return rc;
	if (repo) {
		lup_buf b = { 0 };

		if (!lup_repo_valid(repo))
			return lup_error_set(err, LUP_ENAME_INVALID, NULL,
					     "invalid repository name");
		lup_path_layer_link(path, repo, &d);
		rc = lup_s_get(s, path, &b, err);
		if (rc == 0) {
			char text[160];
			size_t n = b.len < sizeof(text) - 1 ? b.len : sizeof(text) - 1;

			memcpy(text, b.data ? (const char *)b.data : "", n);
			text[n] = '\0';
			rc = lup_digest_parse(text, canon, err);
			if (rc != 0)
				rc = lup_error_set(err, LUP_EBLOB_UNKNOWN, path,
						   "corrupt link file");
		}
		lup_buf_free(&b);
		if (rc == LUP_EPATH_NOT_FOUND)
			return lup_error_set(err, LUP_EBLOB_UNKNOWN, NULL,
					     "blob unknown to repository %s: %s",
					     repo, d.str);
		if (rc != 0)
			return rc;
	} else if (d.alg != LUP_SHA256) {
		return lup_error_set(err, LUP_EBLOB_UNKNOWN, NULL,
				     "blob unknown: %s (blobs are stored by "
				     "sha256; ask with a repository)", d.str);
	} else {
		*canon = d;
	}
	lup_path_blob_data(path, canon);
	rc = lup_s_stat(s, path, st, err);
	if (rc == LUP_EPATH_NOT_FOUND || (rc == 0 && st->is_dir))
		return lup_error_set(err, LUP_EBLOB_UNKNOWN, NULL,
				     "blob unknown: %s", canon->str);
	return rc;
}

int lup_store_stat(lup_store *s, const char *digest, const char *repo,
		   lup_blob_info *out, lup_error *err)
{
	lup_digest canon;
	lup_stat st;
	int rc = resolve(s, digest, repo, &canon, &st, err);

	if (rc == 0) {
		snprintf(out->digest, sizeof(out->digest), "%s", canon.str);
		out->size = st.size;
	}
	return rc;
}

int lup_store_open_blob(lup_store *s, const char *repo, const char *digest,
			lup_reader **out, lup_error *err)
{
	lup_digest canon;
	lup_stat st;
	char path[LUP_PATH_BUF];
	int rc = resolve(s, digest, repo, &canon, &st, err);

	if (rc != 0)
		return rc;
	lup_path_blob_data(path, &canon);
	return lup_s_reader(s, path, 0, out, err);
}

/* Write the link of `d` in repo pointing at canonical `canon`. */
int lup_store_write_link(lup_store *s, const char *repo, const lup_digest *d,
			 const lup_digest *canon, lup_error *err)
{
	char path[LUP_PATH_BUF];
	int rc;

	if ((rc = lup_path_layer_link(path, repo, d)) != 0)
		return lup_error_set(err, rc, NULL, "path too long");
	rc = lup_s_put(s, path, canon->str, strlen(canon->str), err);
	if (rc == 0) {
		lup_field f[] = { lup_fs("repo", repo), lup_fs("digest", d->str),
				  lup_fs("canonical", canon->str) };
		lup_store_log(s, "blob.link", f, 3);
	}
	return rc;
}

/* The arguments of link and unlink: a valid repository name and a
 * well-formed digest (into *d). */
static int link_args(const char *repo, const char *digest, lup_digest *d,
		     lup_error *err)
{
	if (!lup_repo_valid(repo))
		return lup_error_set(err, LUP_ENAME_INVALID, NULL,
				     "invalid repository name");
	return lup_digest_parse(digest, d, err);
}

int lup_store_link(lup_store *s, const char *repo, const char *digest,
		   lup_error *err)
{
	lup_digest d, canon;
	lup_stat st;
	int rc;

	if ((rc = link_args(repo, digest, &d, err)) != 0)
		return rc;
	if (d.alg != LUP_SHA256)
		return lup_error_set(err, LUP_EUNSUPPORTED, NULL,
				     "link takes a sha256 digest; aliases are "
				     "written by finish");
	if ((rc = resolve(s, digest, NULL, &canon, &st, err)) != 0)
		return rc;
	return lup_store_write_link(s, repo, &d, &canon, err);
}

int lup_store_unlink(lup_store *s, const char *repo, const char *digest,
		     lup_error *err)
{
	lup_digest d;
	char path[LUP_PATH_BUF];
	int rc;

	if ((rc = link_args(repo, digest, &d, err)) != 0)
		return rc;
	lup_path_layer_link(path, repo, &d);
	/* Remove the link's directory: the registry layout keeps one file
	 * per digest directory, so nothing else lives there. */
	path[strlen(path) - strlen("/link")] = '\0';
	rc = lup_s_delete(s, path, err);
	if (rc == LUP_EPATH_NOT_FOUND)
		return lup_error_set(err, LUP_EBLOB_UNKNOWN, NULL,
				     "blob unknown to repository %s: %s", repo,
				     d.str);
	return rc;
}

int lup_store_mount(lup_store *s, const char *from_repo, const char *to_repo,
		    const char *digest, lup_blob_info *out, lup_error *err)
{
	lup_digest canon;
	lup_stat st;
	int rc;

	if (!lup_repo_valid(to_repo))
		return lup_error_set(err, LUP_ENAME_INVALID, NULL,
				     "invalid repository name");
	if ((rc = resolve(s, digest, from_repo, &canon, &st, err)) != 0)
		return rc;
	if ((rc = lup_store_write_link(s, to_repo, &canon, &canon, err)) != 0)
		return rc;
	snprintf(out->digest, sizeof(out->digest), "%s", canon.str);
	out->size = st.size;
	return 0;
}
