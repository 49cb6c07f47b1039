/*
 * hashstate.c - the resumable hash of an upload on storage:
 * hashstates/sha256/<offset> files in Go's MarshalBinary format.
 *
 * Restore prefers the state at exactly the data size (nothing is read);
 * otherwise a lower state continued over the gap; states above the size are
 * stale and removed; corrupt ones are skipped and logged.  Save writes the
 * state at the size and drops all others.
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

	lup_upload_log(u, "hashstate.skip", f, 2);
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
static int load_state(lup_upload *u, int64_t off, lup_hash *h)
{
	char path[LUP_PATH_BUF];
	unsigned char pending[128], data[128];
	lup_buf b = { 0 };
	lup_error e;
	size_t np;
	int st = ST_BAD;

	lup_error_clear(&e);
	lup_path_hashstate(path, u->repo, u->uuid, off);
	if (lup_s_get(u->store, path, &b, &e) != 0) {
		skip_state(u, off, e.message);
		goto out;
	}
	if (lup_hash_import(h, b.data, b.len, &e) != 0 || h->alg != LUP_SHA256) {
		skip_state(u, off, e.code ? e.message : "not a sha256 state");
		goto out;
	}
	if (lup_hash_length(h) != (uint64_t)off) {
		skip_state(u, off, "state length does not match its name");
		goto out;
	}
	st = ST_CHECKED;
	if (off < u->size) {
		/* A lower state is used with the data after it, so make sure
		 * it describes this data: the registry can leave states hashed
		 * over a different prefix (samples/bogus). */
		np = lup_hash_pending(h, pending);
		if (np && (read_at(u, off - (int64_t)np, data, np, &e) != 0 ||
			   memcmp(pending, data, np) != 0)) {
			skip_state(u, off, "pending bytes do not match the data");
			st = ST_BAD;
		} else if (!evidence(pending, np)) {
			st = ST_WEAK;
		}
	}
out:
	lup_buf_free(&b);
	return st;
}

/* Rebuild u->hash for data[0, size) as cheaply as the stored states allow. */
void lup_hashstate_restore(lup_upload *u, const char **how)
{
	lup_strlist names = { 0 };
	int64_t *offs = NULL, base = 0, weak_off = 0;
	lup_hash h, weak = { 0 };
	size_t n = 0;
	int weak_left = WEAK_SCAN;
	lup_error e;

	lup_error_clear(&e);
	*how = "none";
	u->hash_ok = 0;
	u->chain = 0;
	u->check_off = 0;
	if (lup_s_list(u->store, u->hsdir, &names, &e) == 0 && names.count &&
	    (offs = malloc(names.count * sizeof(*offs)))) {
		for (size_t i = 0; i < names.count; i++)
			if (parse_offset(names.items[i], &offs[n]) == 0)
				n++;
		qsort(offs, n, sizeof(*offs), cmp_desc);
	}
	for (size_t i = 0; i < n; i++) {
		int64_t off = offs[i];
		int st;

		if (off > u->size) {
			char path[LUP_PATH_BUF];
			lup_field f[] = { lup_fi("offset", off) };

			lup_path_hashstate(path, u->repo, u->uuid, off);
			lup_s_delete(u->store, path, NULL);
			lup_upload_log(u, "hashstate.stale", f, 1);
			continue;
		}
		if (off == 0 || (weak_off && weak_left-- == 0))
			break; /* offset 0 is the initial state: same as afresh */
		st = load_state(u, off, &h);
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
		u->check_off = weak_off;
		u->check_base = weak;
		lup_upload_log(u, "hashstate.unchecked", f, 2);
	}
	if (base && lup_upload_rehash(u, &h, NULL, base, u->size, &e) == 0) {
		u->hash = h;
		u->hash_ok = 1;
		*how = base == u->size ? "exact" : "gap";
		if (base == u->size)
			u->saved = base;
		goto out;
	}
	if (base)
		skip_state(u, base, e.message);
	u->check_off = 0;
	lup_hash_init(&u->hash, LUP_SHA256);
	if (lup_upload_rehash(u, &u->hash, NULL, 0, u->size, &e) == 0) {
		u->hash_ok = 1;
		u->chain = 1; /* computed here from the data itself */
	}
out:
	free(offs);
	lup_strlist_free(&names);
}

/* u->hash was continued from a state nothing vouched for (check_off):
 * re-hash data[0, check_off) and compare.  On a mismatch the state was
 * wrong (logged) and the hash is rebuilt from the data.  0 when u->hash is
 * now proven, -1 when it could not be (then nothing may be persisted). */
static int prove(lup_upload *u)
{
	unsigned char a[LUP_HASH_MAX_STATE], b[LUP_HASH_MAX_STATE];
	lup_hash h;
	lup_error e;
	int na, nb;

	lup_error_clear(&e);
	lup_hash_init(&h, LUP_SHA256);
	if (lup_upload_rehash(u, &h, NULL, 0, u->check_off, &e) != 0)
		goto fail;
	na = lup_hash_export(&h, a, sizeof(a));
	nb = lup_hash_export(&u->check_base, b, sizeof(b));
	if (na > 0 && na == nb && memcmp(a, b, (size_t)na) == 0) {
		lup_field f[] = { lup_fi("offset", u->check_off) };

		lup_upload_log(u, "hashstate.proved", f, 1);
	} else {
		skip_state(u, u->check_off, "state does not match the data "
			   "(re-hashed from byte 0)");
		if (lup_upload_rehash(u, &h, NULL, u->check_off, u->size, &e) != 0)
			goto fail;
		u->hash = h;
	}
	u->chain = 1; /* both ways, u->hash now follows from the data */
	u->check_off = 0;
	return 0;
fail:
	{
		lup_field f[] = { lup_fi("offset", u->check_off),
				  lup_fs("reason", e.message) };

		lup_upload_log(u, "hashstate.unproven", f, 2);
	}
	return -1;
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
	/* Without proof write nothing and keep the other states: a later
	 * resume can still use them, and finish re-hashes before rejecting. */
	if (!u->chain && u->check_off > 0 && prove(u) != 0)
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

