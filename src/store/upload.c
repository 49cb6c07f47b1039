/*
 * upload.c - the upload ("layer writer"): start, resume, write, close,
 * cancel.  Hash-state restore and save live in hashstate.c, finish in
 * finish.c.
 *
 * Invariants (DESIGN.md "Upload semantics"):
 * - u->size is the size of data; every byte that reached data was fed to
 *   u->hash in order, so hash_ok means u->hash covers exactly [0, size).
 * - close makes data durable before it writes hashstates/sha256/<size>,
 *   so a state never describes bytes that are not on storage.
 * - resume prefers the state at exactly the data size; otherwise a lower
 *   state plus the gap re-hashed; states above the size are stale and
 *   removed; a corrupt state is skipped.  A lower state the data cannot
 *   vouch for is proven before anything built on it is persisted
 *   (hashstate.c): no state that does not match the data is ever written.
 * - finish never accepts wrong content (the digest comes from the hash of
 *   what was written) and never rejects right content (a mismatch on a hash
 *   not computed by one unbroken chain in this process is re-checked by
 *   re-hashing the data once).
 * - the upload's lock is taken on its directory, which exists from the
 *   start until the upload is removed; whoever removes an upload (finish,
 *   cancel, purge, expiry) holds it, and whoever takes it re-checks that
 *   the upload is still there (lup_store_lock_upload), so a loser of a race
 *   sees BLOB_UPLOAD_UNKNOWN and never re-creates a file of a removed
 *   upload.
 * - a failed finish leaves an upload that any process can finish or cancel
 *   (finish.c: the data moves into blobs/ only after the hash state at the
 *   full size, which names the blob, has been saved).
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uuid/uuid.h>

#include "store/upload.h"

const char *lup_upload_uuid(const lup_upload *u) { return u->uuid; }
const char *lup_upload_repo(const lup_upload *u) { return u->repo; }
int64_t lup_upload_started_at(const lup_upload *u) { return u->started_at; }
int64_t lup_upload_size(const lup_upload *u) { return u->size; }
int64_t lup_upload_bytes_reread(const lup_upload *u) { return u->reread; }
int lup_upload_is_open(const lup_upload *u) { return u->state == U_OPEN; }

/* Wait until the worker has hashed the last asynchronous write, so that
 * u->hash covers [0, size) again. */
void lup_upload_drain(lup_upload *u)
{
	if (u->hashing) {
		lup_hashpipe_wait(u->pipe);
		u->hashing = 0;
	}
}

static int check_repo(const char *repo, lup_error *err)
{
	if (!lup_repo_valid(repo))
		return lup_error_set(err, LUP_ENAME_INVALID, NULL,
				     "invalid repository name: \"%.300s\"",
				     repo ? repo : "");
	return 0;
}

static int new_handle(lup_upload **out, lup_store *s, const char *repo,
		      const char *uuid, lup_error *err)
{
	lup_upload *u = calloc(1, sizeof(*u));

	*out = NULL;
	if (!u)
		return lup_error_set(err, LUP_EIO, NULL, "out of memory");
	lup_store_retain(s);
	u->store = s;
	snprintf(u->repo, sizeof(u->repo), "%s", repo);
	snprintf(u->uuid, sizeof(u->uuid), "%s", uuid);
	u->saved = -1;
	u->max_size = -1;
	u->state = U_DONE; /* until fully opened: free() then touches nothing */
	lup_hash_init(&u->hash, LUP_SHA256);
	if (lup_path_upload_dir(u->dir, repo, uuid) ||
	    lup_path_upload_file(u->data, repo, uuid, "data") ||
	    lup_path_hashstate_dir(u->hsdir, repo, uuid)) {
		lup_upload_free(u);
		return lup_error_set(err, LUP_ENAME_INVALID, NULL,
				     "repository name too long");
	}
	*out = u;
	return 0;
}

void lup_upload_log(lup_upload *u, const char *event, lup_field *extra,
		    size_t n)
{
	lup_field f[12];
	size_t k = 0;

	f[k++] = lup_fs("repo", u->repo);
	f[k++] = lup_fs("uuid", u->uuid);
	for (size_t i = 0; i < n && k < 12; i++)
		f[k++] = extra[i];
	lup_store_log(u->store, event, f, k);
}

void lup_upload_release_lock(lup_upload *u)
{
	if (u->lock) {
		lup_s_unlock(u->store, u->lock);
		u->lock = NULL;
	}
}

int lup_upload_release_writer(lup_upload *u, lup_error *err)
{
	int rc = 0, rc2;

	lup_upload_drain(u);
	if (u->w) {
		/* A commit that failed transiently (an S3 part answered 503
		 * SlowDown) is retried while the writer still holds every
		 * byte: one that dropped some reports the failure. */
		lup_error local;
		lup_error *e = err ? err : &local;
		int64_t have = u->w->size(u->w);
		int attempt = 1;
		lup_error_clear(&local);
		while ((rc = u->w->commit(u->w, e)) != 0 &&
		       u->w->size(u->w) == have &&
		       lup_store_should_retry(u->store, attempt, e,
					      "driver.commit", NULL, 0))
			attempt++;
		rc2 = u->w->close(u->w, rc ? NULL : err);
		u->w = NULL;
		if (!rc)
			rc = rc2;
	}
	lup_hashpipe_free(&u->pipe);
	return rc;
}

int lup_upload_start(lup_upload **out, lup_store *s, const char *repo,
		     lup_error *err)
{
	return lup_upload_start_ext(out, s, repo, NULL, err);
}

/* Ask the admission policy (the sized hook when set). */
static int admit(lup_store *s, const char *repo, int64_t size, lup_error *err)
{
	lup_admit_ctx ctx = { repo, size };
	int rc;

	if (!s->policy.admit_upload && !s->policy.admit)
		return 0;
	lup_error_clear(err);
	if (s->policy.admit_upload)
		rc = s->policy.admit_upload(&ctx, err, s->policy.payload);
	else
		rc = s->policy.admit(repo, err, s->policy.payload);
	if (rc != 0) {
		if (err && err->message[0] == '\0')
			lup_error_set(err, LUP_EDENIED, NULL,
				      "upload to %s refused by policy", repo);
		else if (err)
			err->code = rc;
	}
	return rc;
}

typedef struct {
	lup_store *s;
	const char *path, *val;
	int rc;
	lup_error err;
} put_job;

static void *put_main(void *arg)
{
	put_job *j = arg;

	j->rc = lup_s_put_once(j->s, j->path, j->val, strlen(j->val), &j->err);
	return NULL;
}

/* Write startedat and take the upload's lock.  A writer that can publish
 * (a remote store: S3) takes calls from helper threads, as finish's proof
 * does, and its lock needs no directory to exist: both go at once (one
 * round trip instead of two), the put a single attempt whose failure is
 * retried here with the policy.  Nobody else knows the uuid yet, so the
 * order does not matter to anyone. */
static int mark_and_lock(lup_upload *u, const char *path, const char *val,
			 lup_error *err)
{
	lup_store *s = u->store;
	put_job j = { s, path, val, 0, { 0 } };
	pthread_t th;
	int rc;

	if (!(u->w->version >= 2 && u->w->publish && s->hash_thread) ||
	    pthread_create(&th, NULL, put_main, &j) != 0) {
		if ((rc = lup_s_put(s, path, val, strlen(val), err)) != 0)
			return rc;
		return lup_s_lock(s, u->dir, &u->lock, err);
	}
	rc = lup_s_lock(s, u->dir, &u->lock, err);
	pthread_join(th, NULL);
	if (rc == 0 && j.rc != 0)
		rc = lup_s_put(s, path, val, strlen(val), err);
	return rc;
}

int lup_upload_start_ext(lup_upload **out, lup_store *s, const char *repo,
			 const lup_start_options *opts, lup_error *err)
{
	int64_t size = -1;
	lup_upload *u;
	uuid_t id;
	char uuid[37], startedat[21];
	char path[LUP_PATH_BUF];
	int rc;

	*out = NULL;
	if (opts && opts->version != LUP_START_OPTIONS_VERSION)
		return lup_error_set(err, LUP_EUNSUPPORTED, NULL,
				     "unsupported start options version %u",
				     opts->version);
	if (opts && opts->size >= 0)
		size = opts->size;
	if ((rc = check_repo(repo, err)) != 0)
		return rc;
	if (s->max_size > 0 && size > s->max_size)
		return lup_error_set(err, LUP_ESIZE_INVALID, NULL,
				     "upload of %" PRId64 " bytes exceeds the "
				     "limit of %" PRId64 " bytes", size,
				     s->max_size);
	if ((rc = admit(s, repo, size, err)) != 0)
		return rc;
	uuid_generate_random(id);
	uuid_unparse_lower(id, uuid);
	if ((rc = new_handle(&u, s, repo, uuid, err)) != 0)
		return rc;
	u->started_at = lup_now();
	lup_time_format(u->started_at, startedat);
	lup_path_upload_file(path, repo, uuid, "startedat");
	/* The data's writer first: a driver that creates a new path lazily
	 * (S3) marks the lock as covering data that does not exist yet, and
	 * counts what is put below it from here on (nobody else knows the
	 * uuid, so nothing races it). */
	if ((rc = lup_s_writer(s, u->data, LUP_WRITE_NEW, &u->w, err)) != 0 ||
	    (rc = mark_and_lock(u, path, startedat, err)) != 0)
		goto fail;
	u->chain = 1;
	u->hash_ok = 1;
	u->state = U_OPEN;
	lup_upload_log(u, "upload.start", NULL, 0);
	*out = u;
	return 0;
fail:
	if (u->w) {
		u->w->cancel(u->w, NULL); /* close would store the data */
		u->w->close(u->w, NULL);
		u->w = NULL;
	}
	lup_s_delete(s, u->dir, NULL); /* still under the lock, if taken */
	lup_upload_free(u);
	return rc;
}

/* What the hash-state code needs to know about u (hashstate.h). */
static lup_hs_target hs_target(lup_upload *u)
{
	lup_hs_target t = { u->store, u->repo, u->uuid, u->data, u->hsdir,
			    u->size, &u->reread, &u->hash, &u->hash_ok,
			    &u->chain, &u->saved, &u->check_off,
			    &u->check_base, NULL };
	return t;
}

int lup_upload_rehash(lup_upload *u, lup_hash *h, lup_hash *h2, int64_t from,
		      int64_t to, lup_error *err)
{
	lup_hs_target t = hs_target(u);

	if (u->moved)
		t.data = u->blob; /* a finish past the move reads the blob */
	return lup_hashstate_rehash(&t, h, h2, from, to, err);
}

/* Rebuild u->hash for data[0, size) from the stored states; *how says how
 * ("exact", "gap", "none", or "moved": a finish published the blob from
 * its writer and stopped before the upload was removed). */
static void restore_hash(lup_upload *u, const char **how)
{
	lup_hs_target t = hs_target(u);
	int64_t moved_off = 0;
	lup_digest d;

	t.moved_off = &moved_off;
	lup_hashstate_restore(&t, how);
	if (moved_off > 0) {
		lup_digest_from_hash(&u->hash, &d);
		lup_path_blob_data(u->blob, &d);
		u->size = moved_off;
		u->moved = 1;
		u->chain = 0;
	}
}

/* The upload has no data: an earlier finish moved it into blobs/ and was
 * cut short before its links were written or the upload was removed.  That
 * finish saved the hash state at the full size before the move; the state
 * names the blob.  Accept the upload as moved when that blob exists with
 * exactly that size; otherwise it is unknown. */
static int find_moved(lup_upload *u, lup_error *err)
{
	lup_store *s = u->store;
	lup_strlist names = { 0 };
	int found = 0;

	if (lup_s_list(s, u->hsdir, &names, NULL) == 0) {
		for (size_t i = 0; i < names.count && !found; i++) {
			lup_buf b = { 0 };
			lup_error e;
			lup_digest d;
			lup_stat st;
			int64_t off;

			lup_error_clear(&e);
			if (lup_path_decimal(names.items[i], &off) == 0 && off > 0 &&
			    lup_s_get(s, names.items[i], &b, &e) == 0 &&
			    lup_hash_import(&u->hash, b.data, b.len, &e) == 0 &&
			    u->hash.alg == LUP_SHA256 &&
			    lup_hash_length(&u->hash) == (uint64_t)off) {
				lup_digest_from_hash(&u->hash, &d);
				lup_path_blob_data(u->blob, &d);
				if (lup_s_stat(s, u->blob, &st, &e) == 0 &&
				    !st.is_dir && st.size == off) {
					found = 1;
					u->size = off;
				}
			}
			lup_buf_free(&b);
		}
	}
	lup_strlist_free(&names);
	if (!found) {
		lup_hash_init(&u->hash, LUP_SHA256);
		return lup_error_set(err, LUP_EBLOB_UPLOAD_UNKNOWN, NULL,
				     "blob upload unknown: %s/%s has no data",
				     u->repo, u->uuid);
	}
	u->moved = 1;
	u->hash_ok = 1;
	u->chain = 0;
	u->saved = u->size;
	return 0;
}

int lup_upload_resume(lup_upload **out, lup_store *s, const char *repo,
		      const char *uuid, lup_error *err)
{
	lup_upload *u;
	lup_stat st;
	const char *how = "moved";
	char path[LUP_PATH_BUF];
	int rc;

	*out = NULL;
	if ((rc = check_repo(repo, err)) != 0)
		return rc;
	if (!lup_uuid_valid(uuid))
		return lup_error_set(err, LUP_EBLOB_UPLOAD_UNKNOWN, NULL,
				     "blob upload unknown: invalid upload id");
	if ((rc = new_handle(&u, s, repo, uuid, err)) != 0)
		return rc;
	/* The lock first: finish, cancel, purge and expiry remove an upload
	 * only while holding it, so what is seen below stays true. */
	if ((rc = lup_store_lock_upload(s, repo, uuid, &u->lock, err)) != 0)
		goto fail;
	rc = lup_read_startedat(s, repo, uuid, &u->started_at, err);
	if (rc == LUP_EBLOB_UPLOAD_INVALID) {
		u->started_at = 0; /* unreadable: fall back to an mtime */
		rc = 0;
	}
	if (rc == 0 && (rc = lup_s_stat(s, u->data, &st, err)) ==
			       LUP_EPATH_NOT_FOUND)
		rc = find_moved(u, err); /* startedat is there, data is not */
	else if (rc == LUP_EPATH_NOT_FOUND || (rc == 0 && st.is_dir))
		rc = lup_error_set(err, LUP_EBLOB_UPLOAD_UNKNOWN, NULL,
				   "blob upload unknown: %s/%s", repo, uuid);
	if (rc != 0)
		goto fail;
	if (u->started_at == 0) {
		lup_path_upload_file(path, repo, uuid, "startedat");
		if (u->moved && lup_s_stat(s, path, &st, NULL) != 0)
			st.mtime_ns = 0;
		u->started_at = st.mtime_ns / 1000000000;
	}
	if (s->max_age > 0 && lup_now() - u->started_at > s->max_age) {
		lup_field f[] = { lup_fi("started_at", u->started_at) };

		/* Removed under the lock: a writer holding the upload made
		 * us fail with LOCKED above instead. */
		lup_upload_log(u, "upload.expired", f, 1);
		lup_s_delete(s, u->dir, NULL);
		rc = lup_error_set(err, LUP_EBLOB_UPLOAD_UNKNOWN, NULL,
				   "blob upload unknown: %s/%s expired", repo, uuid);
		goto fail;
	}
	if (!u->moved) {
		/* data exists and nobody can remove it while we hold the
		 * lock: the append open does not create it. */
		if ((rc = lup_s_writer(s, u->data, 1, &u->w, err)) != 0)
			goto fail;
		u->size = u->w->size(u->w);
		restore_hash(u, &how);
		if (u->moved) {
			/* The data is a leftover now: never written to. */
			u->w->close(u->w, NULL);
			u->w = NULL;
		}
	}
	u->state = U_OPEN;
	{
		lup_field f[] = { lup_fi("offset", u->size), lup_fs("restored", how),
				  lup_fi("bytes_reread", u->reread) };
		lup_upload_log(u, "upload.resume", f, 3);
	}
	*out = u;
	return 0;
fail:
	if (u->w) {
		u->w->close(u->w, NULL);
		u->w = NULL;
	}
	lup_upload_free(u);
	return rc;
}

int lup_upload_check_open(lup_upload *u, lup_error *err)
{
	if (u->state != U_OPEN)
		return lup_error_set(err, LUP_EBLOB_UPLOAD_INVALID, NULL,
				     "upload %s is %s", u->uuid,
				     u->state == U_CLOSED ? "closed" : "finished");
	if (u->moved)
		return lup_error_set(err, LUP_EBLOB_UPLOAD_INVALID, NULL,
				     "upload %s is complete (its data is in "
				     "blobs/): finish or cancel it", u->uuid);
	if (!u->w)
		return lup_s_writer(u->store, u->data, 1, &u->w, err);
	return 0;
}

/* The hash worker, or NULL (hash inline) when the store forbids threads. */
static lup_hashpipe **upload_pipe(lup_upload *u)
{
	return u->store->hash_thread ? &u->pipe : NULL;
}

/* Append p[0, n) to data and hash: each attempt continues where the file
 * ended, so a retried transient failure neither loses nor doubles bytes.
 * async: the data is written here and hashed on the worker afterwards (p
 * must stay valid until the next call); otherwise both overlap and finish
 * before returning. */
static int append(lup_upload *u, const unsigned char *p, size_t n, int async,
		  lup_error *err)
{
	int rc = 0;

	for (int attempt = 1; n > 0; attempt++) {
		int64_t before = u->size, now;
		lup_hash snapshot;

		if (async) {
			/* Write while the worker may still hash the previous
			 * buffer, then queue this one behind it. */
			rc = u->w->write(u->w, p, n, err);
			lup_upload_drain(u);
			snapshot = u->hash;
			if (rc == 0) {
				if (lup_hashpipe_post(upload_pipe(u), &u->hash, p, n) == 0)
					u->hashing = 1;
				else
					lup_hash_update(&u->hash, p, n);
			}
		} else {
			lup_upload_drain(u);
			snapshot = u->hash;
			rc = lup_hashpipe_write(upload_pipe(u), &u->hash, u->w, p, n,
						err);
		}
		if (rc == 0) {
			u->size += (int64_t)n;
			return 0;
		}
		/* The hash may have taken the whole buffer: redo it for the
		 * bytes that really reached the file. */
		now = u->w->size(u->w);
		if (now < before || now > before + (int64_t)n) {
			u->hash_ok = 0;
			u->chain = 0;
			u->size = now < 0 ? before : now;
			return rc;
		}
		u->hash = snapshot;
		lup_hash_update(&u->hash, p, (size_t)(now - before));
		u->size = now;
		p += now - before;
		n -= (size_t)(now - before);
		if (n == 0)
			return 0; /* every byte arrived after all */
		if (!lup_store_should_retry(u->store, attempt, err, "driver.write",
					    NULL, 0))
			return rc;
	}
	return rc;
}

void lup_upload_set_max_size(lup_upload *u, int64_t max)
{
	u->max_size = max < 0 ? -1 : max;
}

/* The size this handle may reach: the lower of the store's max_size and
 * the handle's own cap; -1 when neither is set. */
static int64_t size_limit(const lup_upload *u)
{
	int64_t max = u->store->max_size > 0 ? u->store->max_size : -1;

	if (u->max_size >= 0 && (max < 0 || u->max_size < max))
		max = u->max_size;
	return max;
}

static int write_common(lup_upload *u, const void *data, size_t n, int async,
			lup_error *err)
{
	int64_t max;
	int rc;

	if ((rc = lup_upload_check_open(u, err)) != 0)
		return rc;
	/* A write that would pass the limit is refused whole, before any of
	 * it is stored: the upload stays at its size, resumable. */
	max = size_limit(u);
	if (max >= 0 && (n > (size_t)INT64_MAX - (size_t)u->size ||
			 u->size + (int64_t)n > max))
		return lup_error_set(err, LUP_ESIZE_INVALID, NULL,
				     "upload would exceed the size limit of %" PRId64
				     " bytes", max);
	return append(u, data, n, async, err);
}

int lup_upload_write(lup_upload *u, const void *data, size_t n, lup_error *err)
{
	return write_common(u, data, n, 0, err);
}

int lup_upload_write_async(lup_upload *u, const void *data, size_t n,
			   lup_error *err)
{
	return write_common(u, data, n, 1, err);
}

int lup_upload_write_at(lup_upload *u, int64_t offset, const void *data,
			size_t n, lup_error *err)
{
	int rc;

	if ((rc = lup_upload_check_open(u, err)) != 0)
		return rc;
	if (offset != u->size) {
		rc = lup_error_set(err, LUP_ERANGE_INVALID, NULL,
				   "write at offset %" PRId64
				   " but the upload has %" PRId64 " bytes",
				   offset, u->size);
		if (err)
			err->offset = u->size;
		return rc;
	}
	return lup_upload_write(u, data, n, err);
}

int lup_upload_close(lup_upload *u, lup_error *err)
{
	int rc;

	if (u->state != U_OPEN)
		return 0;
	rc = lup_upload_release_writer(u, err);
	if (rc == 0) {
		lup_hs_target t = hs_target(u);

		rc = lup_hashstate_save(&t, err);
	}
	lup_upload_release_lock(u);
	u->state = U_CLOSED;
	{
		lup_field f[] = { lup_fi("offset", u->size) };
		lup_upload_log(u, "upload.close", f, 1);
	}
	return rc;
}

int lup_upload_cancel(lup_upload *u, lup_error *err)
{
	int rc;

	if (u->state == U_DONE)
		return 0;
	lup_upload_drain(u);
	if (u->state == U_CLOSED) {
		/* Someone else may have resumed, finished or cancelled it
		 * since: take the lock and see that it is still there, so
		 * that a finish and a cancel never both succeed. */
		if ((rc = lup_store_lock_upload(u->store, u->repo, u->uuid,
						&u->lock, err)) != 0)
			return rc;
	}
	if (u->w) {
		u->w->cancel(u->w, NULL);
		u->w->close(u->w, NULL);
		u->w = NULL;
	}
	lup_hashpipe_free(&u->pipe);
	rc = lup_s_delete(u->store, u->dir, err);
	if (rc == LUP_EPATH_NOT_FOUND)
		rc = 0;
	lup_upload_release_lock(u);
	if (rc == 0) {
		u->state = U_DONE;
		lup_upload_log(u, "upload.cancel", NULL, 0);
	}
	return rc;
}

void lup_upload_free(lup_upload *u)
{
	if (!u)
		return;
	lup_upload_drain(u);
	if (u->state == U_OPEN)
		lup_upload_close(u, NULL);
	if (u->w)
		u->w->close(u->w, NULL);
	lup_hashpipe_free(&u->pipe);
	lup_upload_release_lock(u);
	lup_store_release(u->store);
	free(u);
}
