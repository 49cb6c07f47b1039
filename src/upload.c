/*
 * upload.c - the upload ("layer writer"): start, resume, write, close,
 * finish, cancel.
 *
 * Invariants (DESIGN.md "Upload semantics"):
 * - u->size is the size of data; every byte that reached data was fed to
 *   u->hash in order, so hash_ok means u->hash covers exactly [0, size).
 * - close makes data durable before it writes hashstates/sha256/<size>,
 *   so a state never describes bytes that are not on storage.
 * - resume prefers the state at exactly the data size; otherwise the largest
 *   lower state whose pending bytes match the data, plus the gap re-hashed;
 *   states above the size are stale and removed; a corrupt state is skipped.
 * - finish never accepts wrong content (the digest comes from the hash of
 *   what was written) and never rejects right content (a mismatch on a hash
 *   not computed by one unbroken chain in this process is re-checked by
 *   re-hashing the data once).
 * - a failed finish leaves the upload as it was.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uuid/uuid.h>

#include "hashpipe.h"
#include "store.h"

enum { U_OPEN, U_CLOSED, U_DONE };

#define REHASH_CHUNK (1 << 20)

struct lup_upload {
	lup_store *store;
	char repo[LUP_REPO_MAX + 1];
	char uuid[37];
	int64_t started_at;
	int state;
	lup_writer *w;  /* NULL until needed again after a failed finish */
	void *lock;     /* driver lock token */
	lup_hash hash;  /* sha256 of data[0, size) when hash_ok */
	int hash_ok;
	int chain;      /* hash computed from byte 0 in this process */
	int64_t size;
	int64_t saved;  /* offset of a state known to be on storage, -1: none */
	int64_t reread; /* upload bytes re-read to rebuild/check the hash */
	lup_hashpipe *pipe;
	int hashing;    /* the worker is still hashing the last async write */
	char dir[LUP_PATH_BUF];
	char data[LUP_PATH_BUF];
	char hsdir[LUP_PATH_BUF];
};

const char *lup_upload_uuid(const lup_upload *u) { return u->uuid; }
const char *lup_upload_repo(const lup_upload *u) { return u->repo; }
int64_t lup_upload_started_at(const lup_upload *u) { return u->started_at; }
int64_t lup_upload_size(const lup_upload *u) { return u->size; }
int64_t lup_upload_bytes_reread(const lup_upload *u) { return u->reread; }
int lup_upload_is_open(const lup_upload *u) { return u->state == U_OPEN; }

/* Wait until the worker has hashed the last asynchronous write, so that
 * u->hash covers [0, size) again. */
static void drain(lup_upload *u)
{
	if (u->hashing) {
		lup_hashpipe_wait(u->pipe);
		u->hashing = 0;
	}
}

void lup_upload_drain(lup_upload *u)
{
	drain(u);
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

static void log_upload(lup_upload *u, const char *event, lup_field *extra,
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

static void release_lock(lup_upload *u)
{
	if (u->lock) {
		lup_driver_unlock(u->store->driver, u->lock);
		u->lock = NULL;
	}
}

static int open_writer(lup_upload *u, int append, lup_error *err)
{
	int rc;

	for (int attempt = 1;; attempt++) {
		rc = lup_driver_writer(u->store->driver, u->data, append, &u->w,
				       err);
		if (rc == 0 ||
		    !lup_store_should_retry(u->store, attempt, err, "driver.writer"))
			return rc;
	}
}

int lup_upload_start(lup_upload **out, lup_store *s, const char *repo,
		     lup_error *err)
{
	lup_upload *u;
	uuid_t id;
	char uuid[37], startedat[21];
	char path[LUP_PATH_BUF];
	int rc;

	*out = NULL;
	if ((rc = check_repo(repo, err)) != 0)
		return rc;
	if (s->policy.admit) {
		lup_error_clear(err);
		rc = s->policy.admit(repo, err, s->policy.payload);
		if (rc != 0) {
			if (err && err->message[0] == '\0')
				lup_error_set(err, LUP_EDENIED, NULL,
					      "upload to %s refused by policy", repo);
			else if (err)
				err->code = rc;
			return rc;
		}
	}
	uuid_generate_random(id);
	uuid_unparse_lower(id, uuid);
	if ((rc = new_handle(&u, s, repo, uuid, err)) != 0)
		return rc;
	u->started_at = lup_now();
	lup_time_format(u->started_at, startedat);
	lup_path_upload_file(path, repo, uuid, "startedat");
	if ((rc = lup_s_put(s, path, startedat, 20, err)) != 0 ||
	    (rc = open_writer(u, 0, err)) != 0)
		goto fail;
	if ((rc = lup_driver_lock(s->driver, u->data, &u->lock, err)) != 0)
		goto fail;
	u->chain = 1;
	u->hash_ok = 1;
	u->state = U_OPEN;
	log_upload(u, "upload.start", NULL, 0);
	*out = u;
	return 0;
fail:
	if (u->w) {
		u->w->close(u->w, NULL);
		u->w = NULL;
	}
	lup_driver_delete(s->driver, u->dir, NULL);
	lup_upload_free(u);
	return rc;
}

/* Feed data[from, to) into h through a reader, counting re-read bytes. */
static int rehash(lup_upload *u, lup_hash *h, int64_t from, int64_t to,
		  lup_error *err)
{
	lup_reader *r = NULL;
	unsigned char *buf;
	int rc;

	if (from >= to)
		return 0;
	if (!(buf = malloc(REHASH_CHUNK)))
		return lup_error_set(err, LUP_EIO, NULL, "out of memory");
	if ((rc = lup_driver_reader(u->store->driver, u->data, from, &r, err)) != 0)
		goto out;
	while (from < to) {
		size_t want = (size_t)(to - from < REHASH_CHUNK ? to - from : REHASH_CHUNK);
		int64_t n = r->read(r, buf, want, err);

		if (n < 0) {
			rc = (int)n;
			goto out;
		}
		if (n == 0) {
			rc = lup_error_set(err, LUP_EBLOB_UPLOAD_INVALID, u->data,
					   "upload data ends at %" PRId64
					   ", expected %" PRId64, from, to);
			goto out;
		}
		lup_hash_update(h, buf, (size_t)n);
		u->reread += n;
		from += n;
	}
out:
	if (r)
		r->close(r);
	free(buf);
	return rc;
}

/* Read exactly n bytes at offset (to check a state's pending bytes). */
static int read_at(lup_upload *u, int64_t offset, unsigned char *out, size_t n,
		   lup_error *err)
{
	lup_reader *r;
	size_t got = 0;
	int rc = lup_driver_reader(u->store->driver, u->data, offset, &r, err);

	if (rc != 0)
		return rc;
	while (got < n) {
		int64_t k = r->read(r, out + got, n - got, err);

		if (k <= 0) {
			rc = k < 0 ? (int)k : LUP_EBLOB_UPLOAD_INVALID;
			break;
		}
		got += (size_t)k;
	}
	r->close(r);
	u->reread += (int64_t)got;
	return rc;
}

static int parse_offset(const char *path, int64_t *out)
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

static int cmp_desc(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? 1 : x > y ? -1 : 0;
}

static void skip_state(lup_upload *u, int64_t off, const char *reason)
{
	lup_field f[] = { lup_fi("offset", off), lup_fs("reason", reason) };

	log_upload(u, "hashstate.skip", f, 2);
}

/* Try the state at off (<= size) as the base of u->hash. */
static int try_state(lup_upload *u, int64_t off)
{
	char path[LUP_PATH_BUF];
	unsigned char pending[128], data[128];
	lup_buf b = { 0 };
	lup_error e;
	lup_hash h;
	size_t np;
	int ok = 0;

	lup_error_clear(&e);
	lup_path_hashstate(path, u->repo, u->uuid, off);
	if (lup_s_get(u->store, path, &b, &e) != 0) {
		skip_state(u, off, e.message);
		goto out;
	}
	if (lup_hash_import(&h, b.data, b.len, &e) != 0 || h.alg != LUP_SHA256) {
		skip_state(u, off, e.code ? e.message : "not a sha256 state");
		goto out;
	}
	if (lup_hash_length(&h) != (uint64_t)off) {
		skip_state(u, off, "state length does not match its name");
		goto out;
	}
	if (off < u->size) {
		/* A lower state is used with the data after it, so make sure
		 * it describes this data: the registry can leave states hashed
		 * over a different prefix (samples/bogus). */
		np = lup_hash_pending(&h, pending);
		if (np && (read_at(u, off - (int64_t)np, data, np, &e) != 0 ||
			   memcmp(pending, data, np) != 0)) {
			skip_state(u, off, "pending bytes do not match the data");
			goto out;
		}
		if (rehash(u, &h, off, u->size, &e) != 0) {
			skip_state(u, off, e.message);
			goto out;
		}
	}
	u->hash = h;
	ok = 1;
out:
	lup_buf_free(&b);
	return ok;
}

/* Rebuild u->hash for data[0, size) as cheaply as the stored states allow. */
static void restore_hash(lup_upload *u, const char **how)
{
	lup_strlist names = { 0 };
	int64_t *offs = NULL;
	size_t n = 0;
	lup_error e;

	lup_error_clear(&e);
	*how = "none";
	u->hash_ok = 0;
	u->chain = 0;
	if (lup_s_list(u->store, u->hsdir, &names, &e) == 0 && names.count &&
	    (offs = malloc(names.count * sizeof(*offs)))) {
		for (size_t i = 0; i < names.count; i++)
			if (parse_offset(names.items[i], &offs[n]) == 0)
				n++;
		qsort(offs, n, sizeof(*offs), cmp_desc);
	}
	for (size_t i = 0; i < n; i++) {
		int64_t off = offs[i];

		if (off > u->size) {
			char path[LUP_PATH_BUF];
			lup_field f[] = { lup_fi("offset", off) };

			lup_path_hashstate(path, u->repo, u->uuid, off);
			lup_s_delete(u->store, path, NULL);
			log_upload(u, "hashstate.stale", f, 1);
			continue;
		}
		if (off == 0)
			break; /* the initial state: same as starting afresh */
		if (try_state(u, off)) {
			u->hash_ok = 1;
			*how = off == u->size ? "exact" : "gap";
			if (off == u->size)
				u->saved = off;
			goto out;
		}
	}
	lup_hash_init(&u->hash, LUP_SHA256);
	if (rehash(u, &u->hash, 0, u->size, &e) == 0) {
		u->hash_ok = 1;
		u->chain = 1; /* computed here from the data itself */
	}
out:
	free(offs);
	lup_strlist_free(&names);
}

int lup_upload_resume(lup_upload **out, lup_store *s, const char *repo,
		      const char *uuid, lup_error *err)
{
	lup_upload *u;
	lup_stat st;
	const char *how;
	int rc;

	*out = NULL;
	if ((rc = check_repo(repo, err)) != 0)
		return rc;
	if (!lup_uuid_valid(uuid))
		return lup_error_set(err, LUP_EBLOB_UPLOAD_UNKNOWN, NULL,
				     "blob upload unknown: invalid upload id");
	if ((rc = new_handle(&u, s, repo, uuid, err)) != 0)
		return rc;
	rc = lup_read_startedat(s, repo, uuid, &u->started_at, err);
	if (rc == 0 || rc == LUP_EBLOB_UPLOAD_INVALID)
		rc = lup_s_stat(s, u->data, &st, err);
	if (rc == LUP_EPATH_NOT_FOUND || (rc == 0 && st.is_dir)) {
		rc = lup_error_set(err, LUP_EBLOB_UPLOAD_UNKNOWN, NULL,
				   "blob upload unknown: %s/%s", repo, uuid);
		goto fail;
	}
	if (rc != 0)
		goto fail;
	if (u->started_at == 0) /* startedat unreadable: fall back to mtime */
		u->started_at = st.mtime_ns / 1000000000;
	if (s->max_age > 0 && lup_now() - u->started_at > s->max_age) {
		lup_field f[] = { lup_fi("started_at", u->started_at) };

		log_upload(u, "upload.expired", f, 1);
		lup_s_delete(s, u->dir, NULL);
		rc = lup_error_set(err, LUP_EBLOB_UPLOAD_UNKNOWN, NULL,
				   "blob upload unknown: %s/%s expired", repo, uuid);
		goto fail;
	}
	if ((rc = lup_driver_lock(s->driver, u->data, &u->lock, err)) != 0)
		goto fail;
	if ((rc = open_writer(u, 1, err)) != 0)
		goto fail;
	u->size = u->w->size(u->w);
	restore_hash(u, &how);
	u->state = U_OPEN;
	{
		lup_field f[] = { lup_fi("offset", u->size), lup_fs("restored", how),
				  lup_fi("bytes_reread", u->reread) };
		log_upload(u, "upload.resume", f, 3);
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

static int check_open(lup_upload *u, lup_error *err)
{
	if (u->state != U_OPEN)
		return lup_error_set(err, LUP_EBLOB_UPLOAD_INVALID, NULL,
				     "upload %s is %s", u->uuid,
				     u->state == U_CLOSED ? "closed" : "finished");
	if (!u->w)
		return open_writer(u, 1, err);
	return 0;
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

	if (async && n > 0) {
		/* Write while the worker may still hash the previous buffer,
		 * then queue this one behind it. */
		rc = u->w->write(u->w, p, n, err);
		drain(u);
		if (rc == 0) {
			if (lup_hashpipe_post(&u->pipe, &u->hash, p, n) == 0)
				u->hashing = 1;
			else
				lup_hash_update(&u->hash, p, n);
			u->size += (int64_t)n;
			return 0;
		}
		/* Nothing of this buffer is hashed yet: handle the failure
		 * (and any retry) the synchronous way below. */
		int64_t now = u->w->size(u->w);

		if (now < u->size || now > u->size + (int64_t)n) {
			u->hash_ok = 0;
			u->chain = 0;
			u->size = now < 0 ? u->size : now;
			return rc;
		}
		lup_hash_update(&u->hash, p, (size_t)(now - u->size));
		p += now - u->size;
		n -= (size_t)(now - u->size);
		u->size = now;
		if (n == 0)
			return 0; /* every byte arrived after all */
		if (!lup_store_should_retry(u->store, 1, err, "driver.write"))
			return rc;
	}
	drain(u);
	for (int attempt = async ? 2 : 1; n > 0; attempt++) {
		int64_t before = u->size, now;
		lup_hash snapshot = u->hash;

		rc = lup_hashpipe_write(&u->pipe, &u->hash, u->w, p, n, err);
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
		if (!lup_store_should_retry(u->store, attempt, err, "driver.write"))
			return rc;
	}
	return rc;
}

static int write_common(lup_upload *u, const void *data, size_t n, int async,
			lup_error *err)
{
	int rc;

	if ((rc = check_open(u, err)) != 0)
		return rc;
	if (u->store->max_size > 0 && u->size + (int64_t)n > u->store->max_size)
		return lup_error_set(err, LUP_ESIZE_INVALID, NULL,
				     "upload would exceed the size limit of %" PRId64
				     " bytes", u->store->max_size);
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

	if ((rc = check_open(u, err)) != 0)
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

/* Save the hash state at the current size and drop every other state. */
static int save_state(lup_upload *u, lup_error *err)
{
	unsigned char buf[LUP_HASH_MAX_STATE];
	char path[LUP_PATH_BUF];
	lup_strlist names = { 0 };
	int n, rc = 0;

	if (u->size == 0 || !u->hash_ok)
		return 0;
	if (u->saved != u->size) {
		n = lup_hash_export(&u->hash, buf, sizeof(buf));
		lup_path_hashstate(path, u->repo, u->uuid, u->size);
		if ((rc = lup_s_put(u->store, path, buf, (size_t)n, err)) != 0)
			return rc;
		u->saved = u->size;
	}
	if (lup_s_list(u->store, u->hsdir, &names, NULL) == 0) {
		for (size_t i = 0; i < names.count; i++) {
			int64_t off;

			if (parse_offset(names.items[i], &off) != 0 || off != u->size)
				lup_s_delete(u->store, names.items[i], NULL);
		}
	}
	lup_strlist_free(&names);
	return 0;
}

int lup_upload_close(lup_upload *u, lup_error *err)
{
	int rc = 0;

	if (u->state != U_OPEN)
		return 0;
	drain(u);
	if (u->w) {
		rc = u->w->commit(u->w, err);
		int rc2 = u->w->close(u->w, rc ? NULL : err);
		u->w = NULL;
		if (!rc)
			rc = rc2;
	}
	if (rc == 0)
		rc = save_state(u, err);
	lup_hashpipe_free(&u->pipe);
	release_lock(u);
	u->state = U_CLOSED;
	{
		lup_field f[] = { lup_fi("offset", u->size) };
		log_upload(u, "upload.close", f, 1);
	}
	return rc;
}

/* Wait until the driver shows data at the expected size (eventually
 * consistent backends), consulting the retry policy. */
static int validate_data(lup_upload *u, lup_error *err)
{
	for (int attempt = 1;; attempt++) {
		lup_stat st;
		int rc = lup_s_stat(u->store, u->data, &st, err);

		if (rc == 0 && !st.is_dir && st.size == u->size)
			return 0;
		if (rc == 0 || rc == LUP_EPATH_NOT_FOUND)
			rc = lup_error_set(err, LUP_EBLOB_UPLOAD_INVALID, u->data,
					   rc ? "upload data not visible yet"
					      : "upload data size %" PRId64
						" does not match %" PRId64 " written",
					   rc ? 0 : st.size, u->size);
		if (rc == LUP_EBLOB_UPLOAD_INVALID && u->store->policy.retry) {
			double delay = 0;
			lup_store *s = u->store;

			if (s->policy.retry(attempt, err, "finish.validate", &delay,
					    s->policy.payload)) {
				lup_field f[] = { lup_fi("attempt", attempt),
						  lup_fn("delay", delay),
						  lup_fs("code", lup_error_name(rc)),
						  lup_fs("message", err ? err->message : "") };
				log_upload(u, "finish.retry", f, 4);
				if (s->policy.sleep)
					s->policy.sleep(delay, s->policy.payload);
				else
					lup_sleep(delay);
				continue;
			}
		}
		return rc;
	}
}

struct link_sink {
	lup_upload *u;
	const lup_digest *canon;
	struct {
		char repo[LUP_REPO_MAX + 1];
		lup_digest d;
	} items[16];
	size_t count;
	int rc;
	lup_error *err;
};

static int add_link(void *sinkp, const char *repo, const char *digest)
{
	struct link_sink *sink = sinkp;

	if (sink->rc)
		return sink->rc;
	if (!lup_repo_valid(repo))
		return sink->rc = lup_error_set(sink->err, LUP_ENAME_INVALID, NULL,
						"link policy named an invalid "
						"repository: \"%.300s\"", repo);
	if (sink->count == 16)
		return sink->rc = lup_error_set(sink->err, LUP_EIO, NULL,
						"link policy returned more than "
						"16 links");
	if (lup_digest_parse(digest, &sink->items[sink->count].d, sink->err) != 0)
		return sink->rc = LUP_EDIGEST_INVALID;
	snprintf(sink->items[sink->count].repo, LUP_REPO_MAX + 1, "%s", repo);
	sink->count++;
	return 0;
}

/* Ask the link policy (or the default rule) which links to write. */
static int choose_links(lup_upload *u, const lup_digest *canon,
			const lup_digest *requested, struct link_sink *sink,
			lup_error *err)
{
	lup_store *s = u->store;

	memset(sink, 0, sizeof(*sink));
	sink->u = u;
	sink->canon = canon;
	sink->err = err;
	if (s->policy.link) {
		lup_link_ctx ctx = { u->repo, u->uuid, canon->str, requested->str,
				     u->size };
		int rc;

		lup_error_clear(err);
		rc = s->policy.link(&ctx, add_link, sink, err, s->policy.payload);
		if (rc == 0)
			rc = sink->rc;
		return rc;
	}
	add_link(sink, u->repo, canon->str);
	if (strcmp(requested->str, canon->str) != 0)
		add_link(sink, u->repo, requested->str);
	return sink->rc;
}

/* Compute (or re-compute from the data) the digests to compare. */
static int verify(lup_upload *u, const lup_digest *want, lup_digest *canon,
		  lup_error *err)
{
	lup_hash full, other;
	lup_digest got;
	int rc;

	if (want->alg == LUP_SHA256 && u->hash_ok) {
		lup_digest_from_hash(&u->hash, canon);
		if (strcmp(canon->hex, want->hex) == 0)
			return 0;
		if (u->chain)
			goto mismatch;
	}
	/* Another algorithm, no usable hash, or a mismatch on a restored
	 * hash: one pass over the data computes everything. */
	lup_hash_init(&full, LUP_SHA256);
	lup_hash_init(&other, want->alg);
	{
		lup_reader *r;
		unsigned char *buf = malloc(REHASH_CHUNK);
		int64_t done = 0;

		if (!buf)
			return lup_error_set(err, LUP_EIO, NULL, "out of memory");
		if ((rc = lup_driver_reader(u->store->driver, u->data, 0, &r, err))) {
			free(buf);
			return rc;
		}
		for (;;) {
			int64_t n = r->read(r, buf, REHASH_CHUNK, err);

			if (n < 0) {
				rc = (int)n;
				break;
			}
			if (n == 0)
				break;
			lup_hash_update(&full, buf, (size_t)n);
			if (want->alg != LUP_SHA256)
				lup_hash_update(&other, buf, (size_t)n);
			done += n;
		}
		r->close(r);
		free(buf);
		u->reread += done;
		if (rc)
			return rc;
		if (done != u->size)
			return lup_error_set(err, LUP_EBLOB_UPLOAD_INVALID, u->data,
					     "upload data has %" PRId64
					     " bytes, expected %" PRId64, done,
					     u->size);
	}
	u->hash = full;
	u->hash_ok = 1;
	u->chain = 1;
	lup_digest_from_hash(&full, canon);
	lup_digest_from_hash(want->alg == LUP_SHA256 ? &full : &other, &got);
	if (strcmp(got.hex, want->hex) == 0)
		return 0;
mismatch:
	return lup_error_set(err, LUP_EDIGEST_INVALID, NULL,
			     "content does not match digest %s (got %s)",
			     want->str, canon->str);
}

/* The data already went to blobs/ in an earlier finish whose later steps
 * failed: carry on from there. */
static int already_moved(lup_upload *u, const char *blob)
{
	lup_stat st;

	return u->hash_ok && lup_s_stat(u->store, u->data, &st, NULL) ==
		LUP_EPATH_NOT_FOUND &&
	       lup_s_stat(u->store, blob, &st, NULL) == 0 && st.size == u->size;
}

int lup_upload_finish(lup_upload *u, const char *digest, int64_t size,
		      lup_blob_info *out, lup_error *err)
{
	lup_store *s = u->store;
	lup_digest want, canon;
	struct link_sink links;
	char blob[LUP_PATH_BUF];
	double t0 = lup_monotonic_ms();
	int64_t reread0 = u->reread;
	int rc, dedup = 0;
	lup_stat st;

	if (u->state != U_OPEN)
		return lup_error_set(err, LUP_EBLOB_UPLOAD_INVALID, NULL,
				     "upload %s is %s", u->uuid,
				     u->state == U_CLOSED ? "closed" : "finished");
	drain(u);
	if ((rc = lup_digest_parse(digest, &want, err)) != 0)
		goto fail;
	if (size >= 0 && size != u->size) {
		rc = lup_error_set(err, LUP_ESIZE_INVALID, NULL,
				   "size %" PRId64 " given, %" PRId64 " uploaded",
				   size, u->size);
		goto fail;
	}
	if (u->hash_ok) {
		lup_digest_from_hash(&u->hash, &canon);
		lup_path_blob_data(blob, &canon);
	}
	if (u->hash_ok && !u->w && already_moved(u, blob)) {
		if (want.alg == LUP_SHA256 && strcmp(want.hex, canon.hex) != 0) {
			rc = lup_error_set(err, LUP_EDIGEST_INVALID, NULL,
					   "content does not match digest %s",
					   want.str);
			goto fail;
		}
		goto link;
	}
	/* Commit and let go of the data file: a committed writer takes no
	 * more bytes, and if finish fails the next write reopens it. */
	if (u->w) {
		rc = u->w->commit(u->w, err);
		int rc2 = u->w->close(u->w, rc ? NULL : err);
		u->w = NULL;
		lup_hashpipe_free(&u->pipe);
		if (rc || (rc = rc2))
			goto fail;
	}
	if ((rc = validate_data(u, err)) != 0 || (rc = verify(u, &want, &canon, err)))
		goto fail;
	lup_path_blob_data(blob, &canon);
	if ((rc = choose_links(u, &canon, &want, &links, err)) != 0)
		goto fail;
	/* Move the verified data into content-addressed storage unless the
	 * blob is already there. */
	rc = lup_s_stat(s, blob, &st, err);
	if (rc == 0) {
		lup_field f[] = { lup_fs("digest", canon.str), lup_fi("size", st.size) };

		dedup = 1;
		lup_store_log(s, "blob.dedup", f, 2);
	} else if (rc == LUP_EPATH_NOT_FOUND) {
		if ((rc = lup_s_move(s, u->data, blob, err)) != 0)
			goto fail;
	} else {
		goto fail;
	}
	goto write_links;
link:
	if ((rc = choose_links(u, &canon, &want, &links, err)) != 0)
		goto fail;
write_links:
	for (size_t i = 0; i < links.count; i++)
		if ((rc = lup_store_write_link(s, links.items[i].repo,
					       &links.items[i].d, &canon, err)))
			goto fail;
	if (lup_s_delete(s, u->dir, NULL) != 0) {
		lup_field f[] = { lup_fs("path", u->dir) };
		log_upload(u, "upload.cleanup_failed", f, 1);
	}
	release_lock(u);
	u->state = U_DONE;
	if (out) {
		snprintf(out->digest, sizeof(out->digest), "%s", canon.str);
		out->size = u->size;
	}
	{
		lup_field f[] = { lup_fs("digest", canon.str),
				  lup_fs("requested", want.str),
				  lup_fi("size", u->size),
				  lup_fi("bytes_reread", u->reread - reread0),
				  lup_fn("duration_ms", lup_monotonic_ms() - t0),
				  lup_fb("dedup", dedup) };
		log_upload(u, "upload.finish", f, 6);
	}
	return 0;
fail:
	{
		lup_field f[] = { lup_fs("code", lup_error_name(rc)),
				  lup_fs("message", err ? err->message : "") };
		log_upload(u, "upload.finish_failed", f, 2);
	}
	return rc;
}

int lup_upload_cancel(lup_upload *u, lup_error *err)
{
	int rc;

	if (u->state == U_DONE)
		return 0;
	drain(u);
	if (u->state == U_CLOSED) {
		/* Someone else may have resumed it since: take the lock. */
		lup_stat st;

		if (lup_s_stat(u->store, u->data, &st, NULL) == 0 &&
		    (rc = lup_driver_lock(u->store->driver, u->data, &u->lock, err)))
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
	release_lock(u);
	if (rc == 0) {
		u->state = U_DONE;
		log_upload(u, "upload.cancel", NULL, 0);
	}
	return rc;
}

void lup_upload_free(lup_upload *u)
{
	if (!u)
		return;
	drain(u);
	if (u->state == U_OPEN)
		lup_upload_close(u, NULL);
	if (u->w)
		u->w->close(u->w, NULL);
	lup_hashpipe_free(&u->pipe);
	release_lock(u);
	lup_store_release(u->store);
	free(u);
}
