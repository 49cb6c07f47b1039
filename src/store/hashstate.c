/*
 * hashstate.c - the resumable hash of an upload on storage:
 * hashstates/sha256/<offset> files in Go's MarshalBinary format.
 *
 * Restore prefers the state at exactly the data size (nothing is read);
 * otherwise the largest lower state whose pending bytes match the data, with
 * the gap re-hashed; states above the size are stale and removed; corrupt
 * ones are skipped and logged.  Save writes the state at the size and drops
 * all others.
 */
#include <stdlib.h>
#include <string.h>

#include "store/upload.h"

/* Read exactly n bytes at offset (to check a state's pending bytes). */
static int read_at(lup_upload *u, int64_t offset, unsigned char *out, size_t n,
		   lup_error *err)
{
	lup_reader *r;
	size_t got = 0;
	int rc = lup_s_reader(u->store, u->data, offset, &r, err);

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

	lup_upload_log(u, "hashstate.skip", f, 2);
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
		if (lup_upload_rehash(u, &h, NULL, off, u->size, &e) != 0) {
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
void lup_hashstate_restore(lup_upload *u, const char **how)
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
			lup_upload_log(u, "hashstate.stale", f, 1);
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
	if (lup_upload_rehash(u, &u->hash, NULL, 0, u->size, &e) == 0) {
		u->hash_ok = 1;
		u->chain = 1; /* computed here from the data itself */
	}
out:
	free(offs);
	lup_strlist_free(&names);
}

/* Save the hash state at the current size and drop every other state. */
int lup_hashstate_save(lup_upload *u, lup_error *err)
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

