/*
 * hashstate.c - the resumable hash of an upload on storage:
 * hashstates/sha256/<offset> files in Go's MarshalBinary format.
 *
 * Restore prefers the state at exactly the data size (nothing is read);
 * otherwise the largest lower state whose pending bytes match the data, with
 * the gap re-hashed; states above the size are stale and removed; corrupt
 * ones are skipped and logged.  Save writes the state at the size and drops
 * all others.  See hashstate.h: this file never sees the upload handle.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "store/hashstate.h"

/* Read size for re-hashing upload data. */
#define REHASH_CHUNK (1 << 20)

/* Emit event with repo and uuid first, then the extra fields. */
static void hs_log(const lup_hs_target *t, const char *event,
		   const lup_field *extra, size_t n)
{
	lup_field f[4];
	size_t k = 0;

	f[k++] = lup_fs("repo", t->repo);
	f[k++] = lup_fs("uuid", t->uuid);
	for (size_t i = 0; i < n && k < 4; i++)
		f[k++] = extra[i];
	lup_store_log(t->store, event, f, k);
}

int lup_hashstate_rehash(const lup_hs_target *t, lup_hash *h, lup_hash *h2,
			 int64_t from, int64_t to, lup_error *err)
{
	lup_reader *r = NULL;
	unsigned char *buf;
	int rc;

	if (from >= to)
		return 0;
	if (!(buf = malloc(REHASH_CHUNK)))
		return lup_error_set(err, LUP_EIO, NULL, "out of memory");
	if ((rc = lup_driver_reader(t->store->driver, t->data, from, &r,
				    err)) != 0)
		goto out;
	while (from < to) {
		size_t want = (size_t)(to - from < REHASH_CHUNK ? to - from
							       : REHASH_CHUNK);
		int64_t n = r->read(r, buf, want, err);

		if (n < 0) {
			rc = (int)n;
			goto out;
		}
		if (n == 0) {
			rc = lup_error_set(err, LUP_EBLOB_UPLOAD_INVALID, t->data,
					   "upload data ends at %" PRId64
					   ", expected %" PRId64, from, to);
			goto out;
		}
		lup_hash_update(h, buf, (size_t)n);
		if (h2)
			lup_hash_update(h2, buf, (size_t)n);
		*t->reread += n;
		from += n;
	}
out:
	if (r)
		r->close(r);
	free(buf);
	return rc;
}

/* Read exactly n bytes at offset (to check a state's pending bytes). */
static int read_at(const lup_hs_target *t, int64_t offset, unsigned char *out,
		   size_t n, lup_error *err)
{
	lup_reader *r;
	size_t got = 0;
	int rc = lup_driver_reader(t->store->driver, t->data, offset, &r, err);

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
	*t->reread += (int64_t)got;
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

static void skip_state(const lup_hs_target *t, int64_t off, const char *reason)
{
	lup_field f[] = { lup_fi("offset", off), lup_fs("reason", reason) };

	hs_log(t, "hashstate.skip", f, 2);
}

/* Try the state at off (<= size) as the base of *out. */
static int try_state(const lup_hs_target *t, int64_t off, lup_hash *out)
{
	char path[LUP_PATH_BUF];
	unsigned char pending[128], data[128];
	lup_buf b = { 0 };
	lup_error e;
	lup_hash h;
	size_t np;
	int ok = 0;

	lup_error_clear(&e);
	lup_path_hashstate(path, t->repo, t->uuid, off);
	if (lup_s_get(t->store, path, &b, &e) != 0) {
		skip_state(t, off, e.message);
		goto out;
	}
	if (lup_hash_import(&h, b.data, b.len, &e) != 0 || h.alg != LUP_SHA256) {
		skip_state(t, off, e.code ? e.message : "not a sha256 state");
		goto out;
	}
	if (lup_hash_length(&h) != (uint64_t)off) {
		skip_state(t, off, "state length does not match its name");
		goto out;
	}
	if (off < t->size) {
		/* A lower state is used with the data after it, so make sure
		 * it describes this data: the registry can leave states hashed
		 * over a different prefix (samples/bogus). */
		np = lup_hash_pending(&h, pending);
		if (np && (read_at(t, off - (int64_t)np, data, np, &e) != 0 ||
			   memcmp(pending, data, np) != 0)) {
			skip_state(t, off, "pending bytes do not match the data");
			goto out;
		}
		if (lup_hashstate_rehash(t, &h, NULL, off, t->size, &e) != 0) {
			skip_state(t, off, e.message);
			goto out;
		}
	}
	*out = h;
	ok = 1;
out:
	lup_buf_free(&b);
	return ok;
}

/* Rebuild the hash of data[0, size) as cheaply as the stored states allow. */
void lup_hashstate_restore(const lup_hs_target *t, lup_hs_restored *r)
{
	lup_strlist names = { 0 };
	int64_t *offs = NULL;
	size_t n = 0;
	lup_error e;

	lup_error_clear(&e);
	r->how = "none";
	r->ok = 0;
	r->chain = 0;
	r->saved = -1;
	if (lup_s_list(t->store, t->hsdir, &names, &e) == 0 && names.count &&
	    (offs = malloc(names.count * sizeof(*offs)))) {
		for (size_t i = 0; i < names.count; i++)
			if (parse_offset(names.items[i], &offs[n]) == 0)
				n++;
		qsort(offs, n, sizeof(*offs), cmp_desc);
	}
	for (size_t i = 0; i < n; i++) {
		int64_t off = offs[i];

		if (off > t->size) {
			char path[LUP_PATH_BUF];
			lup_field f[] = { lup_fi("offset", off) };

			lup_path_hashstate(path, t->repo, t->uuid, off);
			lup_s_delete(t->store, path, NULL);
			hs_log(t, "hashstate.stale", f, 1);
			continue;
		}
		if (off == 0)
			break; /* the initial state: same as starting afresh */
		if (try_state(t, off, &r->hash)) {
			r->ok = 1;
			r->how = off == t->size ? "exact" : "gap";
			if (off == t->size)
				r->saved = off;
			goto out;
		}
	}
	lup_hash_init(&r->hash, LUP_SHA256);
	if (lup_hashstate_rehash(t, &r->hash, NULL, 0, t->size, &e) == 0) {
		r->ok = 1;
		r->chain = 1; /* computed here from the data itself */
	}
out:
	free(offs);
	lup_strlist_free(&names);
}

/* Save the hash state at the current size and drop every other state. */
int lup_hashstate_save(const lup_hs_target *t, const lup_hash *h,
		       int64_t *saved, lup_error *err)
{
	unsigned char buf[LUP_HASH_MAX_STATE];
	char path[LUP_PATH_BUF];
	lup_strlist names = { 0 };
	int n, rc = 0;

	if (t->size == 0 || !h)
		return 0;
	if (*saved != t->size) {
		n = lup_hash_export(h, buf, sizeof(buf));
		lup_path_hashstate(path, t->repo, t->uuid, t->size);
		if ((rc = lup_s_put(t->store, path, buf, (size_t)n, err)) != 0)
			return rc;
		*saved = t->size;
	}
	if (lup_s_list(t->store, t->hsdir, &names, NULL) == 0) {
		for (size_t i = 0; i < names.count; i++) {
			int64_t off;

			if (parse_offset(names.items[i], &off) != 0 ||
			    off != t->size)
				lup_s_delete(t->store, names.items[i], NULL);
		}
	}
	lup_strlist_free(&names);
	return 0;
}

