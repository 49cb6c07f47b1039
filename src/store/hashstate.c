/*
 * hashstate.c - the resumable hash of an upload on storage:
 * hashstates/sha256/<offset> files in Go's MarshalBinary format.
 *
 * Restore prefers the state at exactly the data size (nothing is read);
 * otherwise a lower state continued over the gap; states above the size are
 * stale and removed, except one naming an existing blob of exactly its
 * size (the proof of a finish that published the blob from its writer and
 * stopped before removing the upload: the upload is "moved"); corrupt ones
 * are skipped and logged.  Save writes the state at the size and drops all
 * others.
 *
 * Never persist a state that does not match the data.  A lower state is
 * only as good as the evidence the data gives for it: its pending bytes
 * (the last N % 64 bytes it hashed) must equal data[N - N % 64, N).  That is
 * evidence only when there are enough of them and they are not one repeated
 * byte (zero padding matches zero padding anywhere).  A state without such
 * evidence - block-aligned, e.g. registry 2.8's "new bytes only" state
 * named by their count after a gap, or with too few or uniform pending
 * bytes - is still continued over the gap (resume reads only the gap, and
 * a finish whose digest matches needs nothing more; a mismatch re-hashes,
 * see finish.c), but close proves it by re-hashing data[0, N) before it
 * writes or deletes any state, and rebuilds the hash if the proof fails.
 * The state at exactly the data size is trusted (the trust boundary, see
 * README): that is what makes resume and finish read 0 bytes.
 *
 * See hashstate.h: this file never sees the upload handle, only the
 * lup_hs_target upload.c hands it.
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
	if ((rc = lup_s_reader(t->store, t->data, from, &r,
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
	int rc = lup_s_reader(t->store, t->data, offset, &r, err);

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

/* Pending bytes that vouch for a lower state: enough of them that an
 * accidental match is negligible, and not one repeated byte value. */
#define EVIDENCE_MIN 8
/* Weak lower states tried below the first one while looking for a lower
 * state the data vouches for (each costs a state read and 64 data bytes). */
#define WEAK_SCAN 4

enum { ST_BAD, ST_WEAK, ST_CHECKED };

static int evidence(const unsigned char *p, size_t n)
{
	if (n < EVIDENCE_MIN)
		return 0;
	for (size_t i = 1; i < n; i++)
		if (p[i] != p[0])
			return 1;
	return 0;
}

/* Load the state at off (<= size) into *h.  ST_CHECKED: exact, or lower
 * with pending bytes that match the data and are evidence; ST_WEAK: lower
 * and nothing contradicts it, but nothing vouches for it either; ST_BAD:
 * unreadable, corrupt or contradicted by the data (logged). */
static int load_state(const lup_hs_target *t, int64_t off, lup_hash *h)
{
	char path[LUP_PATH_BUF];
	unsigned char pending[128], data[128];
	lup_buf b = { 0 };
	lup_error e;
	size_t np;
	int st = ST_BAD;

	lup_error_clear(&e);
	lup_path_hashstate(path, t->repo, t->uuid, off);
	if (lup_s_get(t->store, path, &b, &e) != 0) {
		skip_state(t, off, e.message);
		goto out;
	}
	if (lup_hash_import(h, b.data, b.len, &e) != 0 || h->alg != LUP_SHA256) {
		skip_state(t, off, e.code ? e.message : "not a sha256 state");
		goto out;
	}
	if (lup_hash_length(h) != (uint64_t)off) {
		skip_state(t, off, "state length does not match its name");
		goto out;
	}
	st = ST_CHECKED;
	if (off < t->size) {
		/* A lower state is used with the data after it, so make sure
		 * it describes this data: the registry can leave states hashed
		 * over a different prefix (samples/bogus). */
		np = lup_hash_pending(h, pending);
		if (np && (read_at(t, off - (int64_t)np, data, np, &e) != 0 ||
			   memcmp(pending, data, np) != 0)) {
			skip_state(t, off, "pending bytes do not match the data");
			st = ST_BAD;
		} else if (!evidence(pending, np)) {
			st = ST_WEAK;
		}
	}
out:
	lup_buf_free(&b);
	return st;
}

/* 0 when the state at off (above the data size) names a blob that exists
 * with exactly off bytes: h gets the state. */
static int names_blob(const lup_hs_target *t, int64_t off, lup_hash *h)
{
	char blob[LUP_PATH_BUF];
	lup_digest d;
	lup_stat st;

	if (load_state(t, off, h) != ST_CHECKED)
		return -1;
	lup_digest_from_hash(h, &d);
	if (lup_path_blob_data(blob, &d) != 0 ||
	    lup_s_stat(t->store, blob, &st, NULL) != 0 || st.is_dir ||
	    st.size != off)
		return -1;
	return 0;
}

/* Rebuild the hash of data[0, size) as cheaply as the stored states allow. */
void lup_hashstate_restore(const lup_hs_target *t, const char **how)
{
	lup_strlist names = { 0 };
	int64_t *offs = NULL, base = 0, weak_off = 0;
	lup_hash h, weak = { 0 };
	size_t n = 0;
	int weak_left = WEAK_SCAN;
	lup_error e;

	lup_error_clear(&e);
	*how = "none";
	*t->hash_ok = 0;
	*t->chain = 0;
	*t->check_off = 0;
	if (lup_s_list(t->store, t->hsdir, &names, &e) == 0 && names.count &&
	    (offs = malloc(names.count * sizeof(*offs)))) {
		for (size_t i = 0; i < names.count; i++)
			if (lup_path_decimal(names.items[i], &offs[n]) == 0)
				n++;
		qsort(offs, n, sizeof(*offs), cmp_desc);
	}
	for (size_t i = 0; i < n; i++) {
		int64_t off = offs[i];
		int st;

		if (off > t->size && t->moved_off &&
		    names_blob(t, off, &h) == 0) {
			/* The proof of a finish that stored the blob straight
			 * from its writer (publish) and stopped before the
			 * upload was removed: the data never got these
			 * bytes, the blob has them all. */
			*t->hash = h;
			*t->hash_ok = 1;
			*t->saved = off;
			*t->moved_off = off;
			*how = "moved";
			goto out;
		}
		if (off > t->size) {
			char path[LUP_PATH_BUF];
			lup_field f[] = { lup_fi("offset", off) };

			lup_path_hashstate(path, t->repo, t->uuid, off);
			lup_s_delete(t->store, path, NULL);
			hs_log(t, "hashstate.stale", f, 1);
			continue;
		}
		if (off == 0 || (weak_off && weak_left-- == 0))
			break; /* offset 0 is the initial state: same as afresh */
		st = load_state(t, off, &h);
		if (st == ST_CHECKED) {
			base = off;
			break;
		}
		if (st == ST_WEAK && !weak_off) {
			/* Keep it, but look a little lower for one the data
			 * vouches for: that one needs no proof at close. */
			weak_off = off;
			weak = h;
		}
	}
	if (!base && weak_off) {
		lup_field f[] = { lup_fi("offset", weak_off),
				  lup_fs("reason", weak_off % 64 == 0
					 ? "block-aligned: no pending bytes to check"
					 : "too few or uniform pending bytes to check") };

		base = weak_off;
		h = weak;
		*t->check_off = weak_off;
		*t->check_base = weak;
		hs_log(t, "hashstate.unchecked", f, 2);
	}
	if (base && lup_hashstate_rehash(t, &h, NULL, base, t->size, &e) == 0) {
		*t->hash = h;
		*t->hash_ok = 1;
		*how = base == t->size ? "exact" : "gap";
		if (base == t->size)
			*t->saved = base;
		goto out;
	}
	if (base)
		skip_state(t, base, e.message);
	*t->check_off = 0;
	lup_hash_init(t->hash, LUP_SHA256);
	if (lup_hashstate_rehash(t, t->hash, NULL, 0, t->size, &e) == 0) {
		*t->hash_ok = 1;
		*t->chain = 1; /* computed here from the data itself */
	}
out:
	free(offs);
	lup_strlist_free(&names);
}

/* The hash was continued from a state nothing vouched for (check_off):
 * re-hash data[0, check_off) and compare.  On a mismatch the state was
 * wrong (logged) and the hash is rebuilt from the data.  0 when *t->hash is
 * now proven, -1 when it could not be (then nothing may be persisted). */
static int prove(const lup_hs_target *t)
{
	unsigned char a[LUP_HASH_MAX_STATE], b[LUP_HASH_MAX_STATE];
	lup_hash h;
	lup_error e;
	int na, nb;

	lup_error_clear(&e);
	lup_hash_init(&h, LUP_SHA256);
	if (lup_hashstate_rehash(t, &h, NULL, 0, *t->check_off, &e) != 0)
		goto fail;
	na = lup_hash_export(&h, a, sizeof(a));
	nb = lup_hash_export(t->check_base, b, sizeof(b));
	if (na > 0 && na == nb && memcmp(a, b, (size_t)na) == 0) {
		lup_field f[] = { lup_fi("offset", *t->check_off) };

		hs_log(t, "hashstate.proved", f, 1);
	} else {
		skip_state(t, *t->check_off, "state does not match the data "
			   "(re-hashed from byte 0)");
		if (lup_hashstate_rehash(t, &h, NULL, *t->check_off, t->size, &e) != 0)
			goto fail;
		*t->hash = h;
	}
	*t->chain = 1; /* both ways, the hash now follows from the data */
	*t->check_off = 0;
	return 0;
fail:
	{
		lup_field f[] = { lup_fi("offset", *t->check_off),
				  lup_fs("reason", e.message) };

		hs_log(t, "hashstate.unproven", f, 2);
	}
	return -1;
}

/* Save the hash state at the current size and drop every other state. */
int lup_hashstate_save(const lup_hs_target *t, lup_error *err)
{
	unsigned char buf[LUP_HASH_MAX_STATE];
	char path[LUP_PATH_BUF];
	lup_strlist names = { 0 };
	int n, rc = 0;

	if (t->size == 0 || !*t->hash_ok)
		return 0;
	/* Without proof write nothing and keep the other states: a later
	 * resume can still use them, and finish re-hashes before rejecting. */
	if (!*t->chain && *t->check_off > 0 && prove(t) != 0)
		return 0;
	if (*t->saved != t->size) {
		n = lup_hash_export(t->hash, buf, sizeof(buf));
		lup_path_hashstate(path, t->repo, t->uuid, t->size);
		if ((rc = lup_s_put(t->store, path, buf, (size_t)n, err)) != 0)
			return rc;
		*t->saved = t->size;
	}
	if (lup_s_list(t->store, t->hsdir, &names, NULL) == 0) {
		for (size_t i = 0; i < names.count; i++) {
			int64_t off;

			if (lup_path_decimal(names.items[i], &off) != 0 || off != t->size)
				lup_s_delete(t->store, names.items[i], NULL);
		}
	}
	lup_strlist_free(&names);
	return 0;
}

