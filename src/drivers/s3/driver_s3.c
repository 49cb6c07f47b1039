/*
 * driver_s3.c - the S3 driver's vtable: content, readers, stat, list,
 * move, remove and the upload lock, on any S3 server that speaks SigV4
 * (tested on Ceph RGW and Swift s3api).
 *
 * Directories are implicit, as on the filesystem driver: a directory exists
 * while some key lies below it.  An unfinished multipart upload counts as a
 * file (the registry's in-progress `data`), sized by its parts.
 *
 * The upload lock is in s3_lock.c, the multipart requests and deletes that
 * the writer shares in s3_multipart.c, the writer in s3_writer.c.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "drivers/s3/s3_internal.h"

static s3_driver *S3(lup_driver *d)
{
	return (s3_driver *)d;
}

static int oom(lup_error *err)
{
	return lup_error_set(err, LUP_EIO, NULL, "out of memory");
}

/* ---- content ---------------------------------------------------------- */

/* A key with no object may be an unfinished upload whose writer committed
 * (s3_writer.c keeps it open): complete it.  *done says whether it was. */
static int complete_pending(s3_driver *d, const char *key, int *done,
			    lup_error *err)
{
	char *id = NULL;
	int rc = s3_find_upload(d, key, &id, err);

	*done = 0;
	if (rc == 0 && id && (rc = s3_materialize(d, key, id, err)) == 0)
		*done = 1;
	free(id);
	return rc;
}

static int s3_get_content(lup_driver *drv, const char *path, lup_buf *out,
			  lup_error *err)
{
	s3_driver *d = S3(drv);
	char *key = s3_key(d, path);
	s3_req r = {.method = "GET", .key = key, .sink = out};
	s3_resp resp = {0};
	int rc, done = 0;

	if (!key)
		return oom(err);
	rc = s3_do(d, &r, &resp, err);
	if (rc == 0 && resp.status == 404 &&
	    (rc = complete_pending(d, key, &done, err)) == 0 && done) {
		s3_resp_free(&resp);
		memset(&resp, 0, sizeof resp);
		out->len = 0;
		rc = s3_do(d, &r, &resp, err);
	}
	if (rc == 0 && (resp.status < 200 || resp.status >= 300))
		rc = s3_fail(&resp, "GET", path, err);
	s3_resp_free(&resp);
	free(key);
	return rc;
}

static int s3_put_content(lup_driver *drv, const char *path, const void *data,
			  size_t len, lup_error *err)
{
	s3_driver *d = S3(drv);
	char *key = s3_key(d, path);
	s3_req r = {.method = "PUT", .key = key, .body = data ? data : "",
		    .blen = len, .sign_payload = 1};
	s3_resp resp = {0};
	int rc;

	if (!key)
		return oom(err);
	s3_lazy_put(d, path, key); /* for s3_remove: before it may land */
	rc = s3_do(d, &r, &resp, err);
	if (rc == 0 && (resp.status < 200 || resp.status >= 300))
		rc = s3_fail(&resp, "PUT", path, err);
	s3_resp_free(&resp);
	free(key);
	return rc;
}

/* ---- stat and list ------------------------------------------------------ */

/* One page of ListObjectsV2 below key_prefix ("a/b/"), with delimiter. */
typedef struct {
	lup_strlist keys;     /* object keys */
	lup_strlist prefixes; /* common prefixes */
} s3_listing;

/* The values of <tag> inside each <outer> of [p, end), pushed to out. */
static int push_each(const char *p, const char *end, const char *outer,
		     const char *tag, lup_strlist *out, lup_error *err)
{
	const char *v, *next;
	size_t vl;

	while (s3_xml_next(p, end, outer, &v, &vl, &next) == 0) {
		const char *kv;
		size_t kl;
		if (s3_xml_next(v, v + vl, tag, &kv, &kl, NULL) == 0) {
			char *k = s3_xml_text(kv, kl);
			int bad = !k || lup_strlist_push(out, k);
			free(k);
			if (bad)
				return oom(err);
		}
		p = next;
	}
	return 0;
}

static int objects_page(void *ctx, const char *p, const char *end,
			lup_error *err)
{
	s3_listing *out = ctx;
	int rc = push_each(p, end, "Contents", "Key", &out->keys, err);

	if (rc == 0)
		rc = push_each(p, end, "CommonPrefixes", "Prefix",
			       &out->prefixes, err);
	return rc;
}

static int list_objects(s3_driver *d, const char *key_prefix, int delim,
			int max_keys, s3_listing *out, lup_error *err)
{
	s3_paging pg = {.what = "ListObjectsV2",
			.param = {"continuation-token"},
			.tag = {"NextContinuationToken"},
			.one_page = max_keys > 0};
	s3_req r = {.method = "GET"};
	char maxk[16];

	snprintf(maxk, sizeof maxk, "%d", max_keys > 0 ? max_keys : d->page);
	r.query[r.nq++] = (s3_kv){"list-type", "2"};
	r.query[r.nq++] = (s3_kv){"prefix", key_prefix};
	r.query[r.nq++] = (s3_kv){"max-keys", maxk};
	if (delim)
		r.query[r.nq++] = (s3_kv){"delimiter", "/"};
	return s3_list_paged(d, &r, &pg, objects_page, out, err);
}

static void listing_free(s3_listing *l)
{
	lup_strlist_free(&l->keys);
	lup_strlist_free(&l->prefixes);
}

/* "<key>/" for a directory listing ("" for the root without prefix). */
static char *dir_prefix(const s3_driver *d, const char *path)
{
	char *k = s3_key(d, path), *p;
	size_t n;

	if (!k)
		return NULL;
	n = strlen(k);
	if (n == 0)
		return k;
	if (!(p = malloc(n + 2))) {
		free(k);
		return NULL;
	}
	memcpy(p, k, n);
	p[n] = '/';
	p[n + 1] = '\0';
	free(k);
	return p;
}

static int upload_size(s3_driver *d, const char *key, const char *id,
		       int64_t *size, lup_error *err)
{
	s3_parts parts = {0};
	int rc = s3_list_parts(d, key, id, &parts, err);

	*size = 0;
	for (size_t i = 0; rc == 0 && i < parts.count; i++)
		*size += parts.items[i].size;
	s3_parts_free(&parts);
	return rc;
}

/* "2026-12-02T20:14:29.000Z" -> ns since the epoch (0 if unreadable). */
static int64_t iso8601_ns(const char *s)
{
	struct tm tm;

	memset(&tm, 0, sizeof tm);
	if (!strptime(s, "%Y-%m-%dT%H:%M:%S", &tm))
		return 0;
	return (int64_t)timegm(&tm) * 1000000000;
}

static int s3_stat(lup_driver *drv, const char *path, lup_stat *out,
		   lup_error *err)
{
	s3_driver *d = S3(drv);
	char *key = s3_key(d, path), *dp = NULL, *id = NULL;
	s3_listing l = {0};
	int64_t started = 0;
	int rc;

	memset(out, 0, sizeof *out);
	if (!key)
		return oom(err);
	if (strcmp(path, "/") != 0) {
		/* HEAD first: consistent for a key just written, where a list
		 * may lag (the registry's Stat-by-List problem). */
		s3_req r = {.method = "HEAD", .key = key, .head = 1};
		s3_resp resp = {0};
		if ((rc = s3_do(d, &r, &resp, err)) != 0)
			goto out;
		if (resp.status == 200) {
			out->size = resp.length > 0 ? resp.length : 0;
			out->mtime_ns = resp.mtime_ns;
			s3_resp_free(&resp);
			goto out;
		}
		if (resp.status != 404) {
			rc = s3_fail(&resp, "HEAD", path, err);
			s3_resp_free(&resp);
			goto out;
		}
		s3_resp_free(&resp);
	}
	if (!(dp = dir_prefix(d, path))) {
		rc = oom(err);
		goto out;
	}
	if ((rc = list_objects(d, dp, 0, 1, &l, err)) != 0)
		goto out;
	if (l.keys.count > 0 || strcmp(path, "/") == 0) {
		out->is_dir = 1;
		goto out;
	}
	{
		/* An unfinished multipart upload at key is the registry's
		 * in-progress data; uploads below key make it a directory. */
		lup_strlist ups = {0};
		size_t kl = strlen(key);
		int below = 0;
		if ((rc = s3_list_uploads(d, key, &ups, err)) != 0)
			goto out;
		for (size_t i = 0; i + 2 < ups.count; i += 3) {
			if (strcmp(ups.items[i], key) == 0) {
				free(id);
				if (!(id = strdup(ups.items[i + 1]))) {
					lup_strlist_free(&ups);
					rc = oom(err);
					goto out;
				}
				started = iso8601_ns(ups.items[i + 2]);
			} else if (strncmp(ups.items[i], key, kl) == 0 &&
				   ups.items[i][kl] == '/') {
				below = 1;
			}
		}
		lup_strlist_free(&ups);
		if (below) {
			out->is_dir = 1;
			goto out;
		}
	}
	if (id) {
		rc = upload_size(d, key, id, &out->size, err);
		if (rc == LUP_EPATH_NOT_FOUND)
			rc = lup_error_set(err, LUP_EPATH_NOT_FOUND, path,
					   "no such file or directory");
		/* Its start: purge ages an orphaned upload by it. */
		out->mtime_ns = started;
		goto out;
	}
	/* Missing by design: the data of a new upload whose writer has not
	 * created it yet (s3_writer.c), under a lease held here. */
	if (s3_lazy_absent(d, path))
		goto out;
	rc = lup_error_set(err, LUP_EPATH_NOT_FOUND, path,
			   "no such file or directory");
out:
	listing_free(&l);
	free(id);
	free(dp);
	free(key);
	return rc;
}

static int push_child(s3_driver *d, lup_strlist *out, const char *key,
		      size_t klen, lup_error *err)
{
	char *p = s3_path(d, key, klen);
	int rc;

	if (!p)
		return 0; /* outside the prefix: not ours */
	rc = lup_strlist_push(out, p) ? oom(err) : 0;
	free(p);
	return rc;
}

/* Internal keys (tails, locks) live below "_layerup" under the prefix: hidden. */
static int internal_key(const s3_driver *d, const char *key)
{
	size_t pl = strlen(d->prefix);
	const char *k = key;

	if (pl) {
		if (strncmp(k, d->prefix, pl) != 0 || k[pl] != '/')
			return 0;
		k += pl + 1;
	}
	return strncmp(k, "_layerup/", 9) == 0 || strcmp(k, "_layerup") == 0;
}

static int s3_list(lup_driver *drv, const char *path, lup_strlist *out,
		   lup_error *err)
{
	s3_driver *d = S3(drv);
	char *dp = dir_prefix(d, path), *key = NULL;
	s3_listing l = {0};
	lup_strlist ups = {0};
	size_t i, dl;
	int rc;

	if (!dp)
		return oom(err);
	dl = strlen(dp);
	if ((rc = list_objects(d, dp, 1, 0, &l, err)) != 0)
		goto out;
	for (i = 0; rc == 0 && i < l.keys.count; i++)
		if (!internal_key(d, l.keys.items[i]))
			rc = push_child(d, out, l.keys.items[i],
					strlen(l.keys.items[i]), err);
	for (i = 0; rc == 0 && i < l.prefixes.count; i++) {
		size_t n = strlen(l.prefixes.items[i]);
		if (internal_key(d, l.prefixes.items[i]))
			continue;
		rc = push_child(d, out, l.prefixes.items[i], n ? n - 1 : 0, err);
	}
	/* Unfinished multipart uploads are files too (an upload's data), and
	 * make their directories exist even when no object lies there. */
	if (rc == 0 && (rc = s3_list_uploads(d, dp, &ups, err)) == 0) {
		for (i = 0; rc == 0 && i + 2 < ups.count; i += 3) {
			const char *k = ups.items[i], *slash;
			size_t kl;
			if (strncmp(k, dp, dl) != 0 || internal_key(d, k))
				continue;
			slash = strchr(k + dl, '/');
			kl = slash ? (size_t)(slash - k) : strlen(k);
			char *p = s3_path(d, k, kl);
			int dup = 0;
			for (size_t j = 0; p && j < out->count; j++)
				dup |= strcmp(out->items[j], p) == 0;
			if (!p || (!dup && lup_strlist_push(out, p)))
				rc = oom(err);
			free(p);
		}
	}
	if (rc == 0 && out->count == 0 && strcmp(path, "/") != 0)
		rc = lup_error_set(err, LUP_EPATH_NOT_FOUND, path,
				   "no such directory");
out:
	lup_strlist_free(&ups);
	listing_free(&l);
	free(key);
	free(dp);
	return rc;
}

/* ---- reader -------------------------------------------------------------- */

typedef struct {
	lup_reader base;
	s3_driver *d;
	char *key;
	int64_t pos, end; /* end: object size at open */
	lup_buf buf;
	size_t off;
} s3_reader;

#define S3_READ_CHUNK (8 * 1024 * 1024)

static int64_t s3_read(lup_reader *rd, void *buf, size_t n, lup_error *err)
{
	s3_reader *r = (s3_reader *)rd;

	if (r->off == r->buf.len) {
		char range[64];
		s3_req q = {.method = "GET", .key = r->key};
		s3_resp resp = {0};
		int64_t want;
		int rc;

		if (r->pos >= r->end)
			return 0;
		want = r->end - r->pos;
		if (want > S3_READ_CHUNK)
			want = S3_READ_CHUNK;
		snprintf(range, sizeof range, "bytes=%" PRId64 "-%" PRId64,
			 r->pos, r->pos + want - 1);
		q.hdr[q.nh++] = (s3_kv){"range", range};
		r->buf.len = 0;
		r->off = 0;
		q.sink = &r->buf;
		if ((rc = s3_do(r->d, &q, &resp, err)) != 0)
			return rc;
		if (resp.status != 206 && resp.status != 200) {
			rc = s3_fail(&resp, "GET", NULL, err);
			s3_resp_free(&resp);
			return rc;
		}
		s3_resp_free(&resp);
		if (resp.status == 200 && r->pos > 0) {
			/* A server that ignored Range: skip to pos. */
			if ((int64_t)r->buf.len <= r->pos)
				r->buf.len = 0;
			else
				r->off = (size_t)r->pos;
		}
		if (r->buf.len == r->off)
			return 0;
	}
	if (n > r->buf.len - r->off)
		n = r->buf.len - r->off;
	memcpy(buf, r->buf.data + r->off, n);
	r->off += n;
	r->pos += (int64_t)n;
	return (int64_t)n;
}

static void s3_reader_close(lup_reader *rd)
{
	s3_reader *r = (s3_reader *)rd;

	lup_buf_free(&r->buf);
	free(r->key);
	free(r);
}

static int s3_open_reader(lup_driver *drv, const char *path, int64_t offset,
			  lup_reader **out, lup_error *err)
{
	s3_driver *d = S3(drv);
	s3_req q;
	s3_resp resp = {0};
	s3_reader *r;
	int rc;

	if (!(r = calloc(1, sizeof *r)) || !(r->key = s3_key(d, path))) {
		free(r);
		return oom(err);
	}
	q = (s3_req){.method = "HEAD", .key = r->key, .head = 1};
	rc = s3_do(d, &q, &resp, err);
	if (rc == 0 && resp.status == 404) {
		/* An unfinished upload has no object to read: complete it
		 * first (only a resume re-hashing after a crash gets here). */
		char *id = NULL;
		if ((rc = s3_find_upload(d, r->key, &id, err)) == 0 && id &&
		    (rc = s3_materialize(d, r->key, id, err)) == 0) {
			s3_resp_free(&resp);
			memset(&resp, 0, sizeof resp);
			rc = s3_do(d, &q, &resp, err);
		}
		free(id);
	}
	if (rc == 0 && resp.status != 200) {
		if (resp.status == 404)
			rc = lup_error_set(err, LUP_EPATH_NOT_FOUND, path,
					   "no such file");
		else
			rc = s3_fail(&resp, "HEAD", path, err);
	}
	if (rc) {
		s3_resp_free(&resp);
		s3_reader_close(&r->base);
		return rc;
	}
	r->base.version = LUP_READER_VERSION;
	r->base.read = s3_read;
	r->base.close = s3_reader_close;
	r->d = d;
	r->end = resp.length > 0 ? resp.length : 0;
	r->pos = offset < r->end ? offset : r->end;
	s3_resp_free(&resp);
	*out = &r->base;
	return 0;
}

/* ---- move and remove ------------------------------------------------------ */

static int copy_object(s3_driver *d, const char *src_key, const char *dst_key,
		       int64_t size, const char *path, lup_error *err);

static int s3_writer_cb(lup_driver *drv, const char *path, int append,
			lup_writer **out, lup_error *err)
{
	return s3_writer_open(S3(drv), path, append, out, err);
}

/* What remove must find before it deletes; the listings of objects and of
 * unfinished uploads run at once. */
typedef struct {
	s3_driver *d;
	const char *key, *dp, *tk;
	int head_status;    /* of the object itself */
	s3_listing below;   /* objects under "<key>/" */
	lup_strlist ups;    /* multipart uploads under key (triples) */
	s3_listing tails;   /* tail objects under the tail key */
	int rc[4];
	lup_error err[4];
} rm_scan;

static void *scan_head(void *arg)
{
	rm_scan *m = arg;
	s3_req r = {.method = "HEAD", .key = m->key, .head = 1};
	s3_resp resp = {0};

	/* HEAD: a DELETE of a missing key says 204 all the same. */
	m->rc[0] = s3_do(m->d, &r, &resp, &m->err[0]);
	m->head_status = resp.status;
	if (m->rc[0] == 0 && resp.status != 200 && resp.status != 404)
		m->rc[0] = s3_fail(&resp, "HEAD", NULL, &m->err[0]);
	s3_resp_free(&resp);
	return NULL;
}

static void *scan_below(void *arg)
{
	rm_scan *m = arg;

	/* Exactly the "<key>/" prefix: a sibling "a-b" of "a" is never
	 * touched. */
	m->rc[1] = list_objects(m->d, m->dp, 0, 0, &m->below, &m->err[1]);
	return NULL;
}

static void *scan_uploads(void *arg)
{
	rm_scan *m = arg;

	m->rc[2] = s3_list_uploads(m->d, m->key, &m->ups, &m->err[2]);
	return NULL;
}

static void *scan_tails(void *arg)
{
	rm_scan *m = arg;

	m->rc[3] = list_objects(m->d, m->tk, 0, 0, &m->tails, &m->err[3]);
	return NULL;
}

typedef struct {
	s3_driver *d;
	const lup_strlist *ups;
	const char *key, *dp;
	int found, rc;
	lup_error err;
} rm_aborts;

/* Abort every unfinished multipart upload at key or below dp: they cost
 * storage until aborted (the registry leaks them, we do not). */
static void *abort_uploads(void *arg)
{
	rm_aborts *a = arg;
	size_t dl = strlen(a->dp);

	for (size_t i = 0; a->rc == 0 && i + 2 < a->ups->count; i += 3) {
		const char *k = a->ups->items[i];
		if (strcmp(k, a->key) != 0 && strncmp(k, a->dp, dl) != 0)
			continue; /* a sibling sharing the prefix: not ours */
		a->found = 1;
		a->rc = s3_abort(a->d, k, a->ups->items[i + 1], &a->err);
	}
	return NULL;
}

static int s3_remove(lup_driver *drv, const char *path, lup_error *err)
{
	s3_driver *d = S3(drv);
	rm_scan m;
	rm_aborts ab;
	lup_strlist gone = {0}, known = {0};
	s3_bg bg[1];
	int rc = 0, found = 0, own_ups = 0, clean;

	memset(&m, 0, sizeof m);
	memset(&ab, 0, sizeof ab);
	m.d = d;
	m.key = s3_key(d, path);
	m.dp = dir_prefix(d, path);
	m.tk = m.key ? s3_tail_key(d, m.key) : NULL;
	if (!m.key || !m.dp || !m.tk) {
		rc = oom(err);
		goto out;
	}
	/* The finish of a new upload whose lazy writer never created a
	 * multipart upload, under a lease created for it here and held since
	 * (s3_lazy_clean): no multipart upload or tail can lie below, so
	 * neither is looked for.  Only writers create them, and a writer
	 * below this directory is one of: the lazy writer (it created none),
	 * another writer of this driver (creating one spends the flag:
	 * s3_lazy_created), a layerup writer elsewhere (it would need this
	 * lease), or the registry, which continues only a multipart upload
	 * that exists (none does) and starts its own under uuids of its own.
	 * Tails are stored only for an upload that exists. */
	clean = s3_lazy_clean(d, path, &known);
	if (clean && known.count > 0) {
		/* The keys this driver put below go at once, while the
		 * listing finds any others (put before the count began, or
		 * by hand): those follow in a second batch. */
		lup_error e2;
		int rc2;
		s3_bg_start(&bg[0], scan_below, &m);
		rc2 = s3_delete_batch(d, &known, 0, known.count, &e2);
		s3_bg_join(&bg[0]);
		if (rc2 == 0 && m.rc[1] == 0) {
			for (size_t i = 0; rc == 0 && i < m.below.keys.count; i++) {
				const char *k = m.below.keys.items[i];
				int dup = 0;
				for (size_t j = 0; j < known.count && !dup; j++)
					dup = strcmp(known.items[j], k) == 0;
				if (!dup && lup_strlist_push(&gone, k))
					rc = oom(err);
			}
			for (size_t i = 0; rc == 0 && i < gone.count; i += 1000)
				rc = s3_delete_batch(
					d, &gone, i,
					i + 1000 < gone.count ? i + 1000 : gone.count,
					err);
			if (rc == 0)
				s3_lazy_removed(d, path);
			goto out;
		}
		/* Something failed: the whole way, from a fresh listing. */
		listing_free(&m.below);
		memset(&m.below, 0, sizeof m.below);
		m.rc[1] = 0;
		scan_below(&m);
	} else if (clean) {
		scan_below(&m);
	} else {
		s3_bg_start(&bg[0], scan_below, &m);
		scan_uploads(&m);
		s3_bg_join(&bg[0]);
	}
	for (int i = 1; i < 3 && !rc; i++)
		if (m.rc[i])
			rc = lup_error_copy(err, &m.err[i]);
	if (rc)
		goto out;
	/* Tails exist for keys with an unfinished upload (a writer stores
	 * one while its upload is open, and completing or aborting the upload
	 * deletes it): with uploads found, their tail keys go in the batch
	 * unlisted (an upload's directory has one data key, so a tail a
	 * crash left between a completion and its delete is among them: the
	 * next upload on that key writes the same tail key).  Without any,
	 * the tails are listed. */
	for (size_t i = 0; rc == 0 && i + 2 < m.ups.count; i += 3) {
		char *tk;
		if (strcmp(m.ups.items[i], m.key) != 0 &&
		    strncmp(m.ups.items[i], m.dp, strlen(m.dp)) != 0)
			continue; /* a sibling's, sharing the prefix */
		own_ups = 1;
		if (!(tk = s3_tail_key(d, m.ups.items[i])) ||
		    lup_strlist_push(&m.tails.keys, tk))
			rc = oom(err);
		free(tk);
	}
	if (rc == 0 && !own_ups && !clean && (scan_tails(&m), m.rc[3]))
		rc = lup_error_copy(err, &m.err[3]);
	if (rc)
		goto out;
	/* A directory: the object itself, if any, goes in the batch
	 * unasked (deleting a missing key is no error).  Else only a HEAD
	 * tells whether the path exists. */
	if (m.below.keys.count > 0 || own_ups)
		m.head_status = 200;
	else if ((scan_head(&m), m.rc[0]))
		rc = lup_error_copy(err, &m.err[0]);
	if (rc)
		goto out;
	/* One list of keys to delete: the object, everything below it, and
	 * the tails of key and of what lies below (the tail prefix also
	 * matches siblings sharing it: not those). */
	if (m.head_status == 200 && lup_strlist_push(&gone, m.key))
		rc = oom(err);
	found = m.head_status == 200;
	for (size_t i = 0; rc == 0 && i < m.below.keys.count; i++)
		if (lup_strlist_push(&gone, m.below.keys.items[i]))
			rc = oom(err);
	size_t tl = strlen(m.tk);
	for (size_t i = 0; rc == 0 && i < m.tails.keys.count; i++) {
		const char *k = m.tails.keys.items[i];
		if ((k[tl] == '\0' || k[tl] == '/') && lup_strlist_push(&gone, k))
			rc = oom(err);
	}
	if (rc)
		goto out;
	/* The deletes and the aborts do not wait for each other. */
	ab.d = d;
	ab.ups = &m.ups;
	ab.key = m.key;
	ab.dp = m.dp;
	s3_bg_start(&bg[0], abort_uploads, &ab);
	for (size_t i = 0; rc == 0 && i < gone.count; i += 1000)
		rc = s3_delete_batch(d, &gone, i,
				     i + 1000 < gone.count ? i + 1000 : gone.count,
				     err);
	s3_bg_join(&bg[0]);
	if (rc == 0 && ab.rc)
		rc = lup_error_copy(err, &ab.err);
	if (rc == 0 && !found && !ab.found)
		rc = lup_error_set(err, LUP_EPATH_NOT_FOUND, path,
				   "no such file or directory");
	if (rc == 0 || rc == LUP_EPATH_NOT_FOUND)
		s3_lazy_removed(d, path); /* nothing is pending below */
out:
	lup_strlist_free(&gone);
	lup_strlist_free(&known);
	listing_free(&m.below);
	listing_free(&m.tails);
	lup_strlist_free(&m.ups);
	free((char *)m.key);
	free((char *)m.dp);
	free((char *)m.tk);
	return rc;
}

static int copy_object(s3_driver *d, const char *src_key, const char *dst_key,
		       int64_t size, const char *path, lup_error *err)
{
	char *src = s3_copy_source(d, src_key);
	int rc;

	if (!src)
		return oom(err);

	if (size <= d->copy_part) {
		s3_req r = {.method = "PUT", .key = dst_key, .body = "",
			    .blen = 0};
		s3_resp resp = {0};
		r.hdr[r.nh++] = (s3_kv){"x-amz-copy-source", src};
		rc = s3_do(d, &r, &resp, err);
		/* CopyObject may fail with 200 and an <Error> body. */
		if (rc == 0 && (resp.status != 200 || resp.code[0] ||
				(resp.body.len &&
				 memmem(resp.body.data, resp.body.len,
					"<Error>", 7)))) {
			if (resp.status == 200)
				resp.status = 500;
			rc = s3_fail(&resp, "CopyObject", path, err);
		}
		s3_resp_free(&resp);
	} else {
		rc = s3_copy_large(d, src_key, dst_key, size, err);
	}
	free(src);
	return rc;
}

static int s3_move(lup_driver *drv, const char *src, const char *dst,
		   lup_error *err)
{
	s3_driver *d = S3(drv);
	char *sk = s3_key(d, src), *dk = s3_key(d, dst);
	s3_req r;
	s3_resp resp = {0};
	int rc;

	if (!sk || !dk) {
		rc = oom(err);
		goto out;
	}
	r = (s3_req){.method = "HEAD", .key = sk, .head = 1};
	if ((rc = s3_do(d, &r, &resp, err)) != 0)
		goto out;
	if (resp.status == 404) {
		int done = 0;
		if ((rc = complete_pending(d, sk, &done, err)) != 0)
			goto out;
		if (done) {
			s3_resp_free(&resp);
			memset(&resp, 0, sizeof resp);
			if ((rc = s3_do(d, &r, &resp, err)) != 0)
				goto out;
		}
	}
	if (resp.status != 200) {
		rc = resp.status == 404
			     ? lup_error_set(err, LUP_EPATH_NOT_FOUND, src,
					     "no such file")
			     : s3_fail(&resp, "HEAD", src, err);
		goto out;
	}
	if ((rc = copy_object(d, sk, dk, resp.length, dst, err)) == 0)
		rc = s3_delete(d, sk, err);
out:
	s3_resp_free(&resp);
	free(sk);
	free(dk);
	return rc;
}

/* ---- construction -------------------------------------------------------- */

static void s3_free(lup_driver *drv)
{
	s3_driver *d = S3(drv);

	for (int i = 0; i < d->npool; i++)
		curl_easy_cleanup(d->pool[i]);
	pthread_mutex_destroy(&d->mu);
	pthread_mutex_destroy(&d->lock_mu);
	s3_lazy_free_all(d);
	if (d->secret_key)
		OPENSSL_cleanse(d->secret_key, strlen(d->secret_key));
	free(d->endpoint);
	free(d->host);
	free(d->bucket);
	free(d->prefix);
	free(d->region);
	free(d->access_key);
	free(d->secret_key);
	free(d->ca_file);
	free(d);
}

static const char *pick(const char *v, const char *env)
{
	const char *e;

	if (v && v[0])
		return v;
	e = env ? getenv(env) : NULL;
	return e && e[0] ? e : NULL;
}

static char *dup_or(const char *s, int *bad)
{
	char *p;

	if (!s)
		return NULL;
	if (!(p = strdup(s)))
		*bad = 1;
	return p;
}

int lup_driver_s3(lup_driver **out, const lup_s3_options *o, lup_error *err)
{
	const char *ep, *region, *ak, *sk, *scheme_end, *hostpart;
	s3_driver *d;
	int bad = 0, rc;

	*out = NULL;
	if (!o || o->version != LUP_S3_OPTIONS_VERSION)
		return lup_error_set(err, LUP_EUNSUPPORTED, NULL,
				     "s3: unknown options version");
	ep = pick(o->endpoint, "AWS_ENDPOINT_URL");
	region = pick(o->region, "AWS_REGION");
	ak = pick(o->access_key, "AWS_ACCESS_KEY_ID");
	sk = pick(o->secret_key, "AWS_SECRET_ACCESS_KEY");
	if (!region)
		region = pick(NULL, "AWS_DEFAULT_REGION");
	if (!region)
		region = "us-east-1";
	if (!ep)
		return lup_error_set(err, LUP_EIO, NULL,
				     "s3: no endpoint (option endpoint or "
				     "AWS_ENDPOINT_URL)");
	if (!o->bucket || !o->bucket[0])
		return lup_error_set(err, LUP_EIO, NULL, "s3: no bucket");
	if (!ak || !sk)
		return lup_error_set(err, LUP_EDENIED, NULL,
				     "s3: no credentials (access_key/secret_key "
				     "or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)");
	if (o->part_size && o->part_size < S3_MIN_PART)
		return lup_error_set(err, LUP_ESIZE_INVALID, NULL,
				     "s3: part_size must be at least 5 MiB");
	if (o->part_size > (int64_t)5 * 1024 * 1024 * 1024)
		return lup_error_set(err, LUP_ESIZE_INVALID, NULL,
				     "s3: part_size must be at most 5 GiB");
	if (o->upload_concurrency < 0 || o->upload_concurrency > 16)
		return lup_error_set(err, LUP_ESIZE_INVALID, NULL,
				     "s3: upload_concurrency must be 1..16");
	if (o->copy_part_size &&
	    (o->copy_part_size < S3_MIN_PART ||
	     o->copy_part_size > (int64_t)5 * 1024 * 1024 * 1024))
		return lup_error_set(err, LUP_ESIZE_INVALID, NULL,
				     "s3: copy_part_size must be 5 MiB .. 5 GiB");
	scheme_end = strstr(ep, "://");
	if (!scheme_end || (strncmp(ep, "http://", 7) && strncmp(ep, "https://", 8)))
		return lup_error_set(err, LUP_EIO, NULL,
				     "s3: endpoint must start with http:// or "
				     "https:// (got \"%s\")", ep);
	hostpart = scheme_end + 3;
	if (!(d = calloc(1, sizeof *d)))
		return oom(err);
	if (pthread_mutex_init(&d->mu, NULL) != 0) {
		free(d);
		return oom(err);
	}
	if (pthread_mutex_init(&d->lock_mu, NULL) != 0) {
		pthread_mutex_destroy(&d->mu);
		free(d);
		return oom(err);
	}
	{
		size_t hl = strlen(hostpart);
		while (hl && hostpart[hl - 1] == '/')
			hl--;
		size_t n = strlen(ep) + strlen(o->bucket) + 4;
		d->endpoint = malloc(n);
		d->host = malloc(n);
		if (!d->endpoint || !d->host) {
			bad = 1;
		} else if (o->virtual_host) {
			snprintf(d->host, n, "%s.%.*s", o->bucket, (int)hl,
				 hostpart);
			snprintf(d->endpoint, n, "%.*s%s",
				 (int)(hostpart - ep), ep, d->host);
		} else {
			snprintf(d->host, n, "%.*s", (int)hl, hostpart);
			snprintf(d->endpoint, n, "%.*s%s",
				 (int)(hostpart - ep), ep, d->host);
		}
	}
	d->bucket = dup_or(o->bucket, &bad);
	d->region = dup_or(region, &bad);
	d->access_key = dup_or(ak, &bad);
	d->secret_key = dup_or(sk, &bad);
	d->ca_file = dup_or(o->ca_file, &bad);
	{
		const char *p = o->prefix ? o->prefix : "";
		size_t pl;
		while (*p == '/')
			p++;
		pl = strlen(p);
		while (pl && p[pl - 1] == '/')
			pl--;
		if ((d->prefix = malloc(pl + 1))) {
			memcpy(d->prefix, p, pl);
			d->prefix[pl] = '\0';
		} else {
			bad = 1;
		}
	}
	d->path_style = !o->virtual_host;
	d->verify_tls = !o->no_verify_tls;
	d->timeout_s = o->timeout_s > 0 ? o->timeout_s : 300;
	d->part_size = o->part_size ? (size_t)o->part_size : 10 * 1024 * 1024;
	d->lock_ttl_s = o->lock_ttl_s > 0 ? o->lock_ttl_s : 60;
	d->page = o->list_page > 0 && o->list_page < 1000 ? o->list_page : 1000;
	d->concurrency = o->upload_concurrency > 0 ? o->upload_concurrency : 1;
	d->copy_part = o->copy_part_size ? o->copy_part_size
					 : (int64_t)5 * 1024 * 1024 * 1024;
	if (bad) {
		s3_free(&d->base);
		return oom(err);
	}
	d->base.name = "s3";
	d->base.get_content = s3_get_content;
	d->base.put_content = s3_put_content;
	d->base.reader = s3_open_reader;
	d->base.writer = s3_writer_cb;
	d->base.stat = s3_stat;
	d->base.list = s3_list;
	d->base.move = s3_move;
	d->base.remove = s3_remove;
	d->base.lock = s3_lock;
	d->base.unlock = s3_unlock;
	d->base.free = s3_free;
	if ((rc = lup_driver_init(&d->base, LUP_DRIVER_VERSION, err)) < 0) {
		s3_free(&d->base);
		return rc;
	}
	*out = &d->base;
	return 0;
}

int lup_driver_s3_counters(lup_driver *drv, lup_s3_counters *out)
{
	memset(out, 0, sizeof *out);
	if (!drv || drv->free != s3_free)
		return 0;
	s3_driver *d = S3(drv);
	out->bytes_sent = atomic_load(&d->ctr.bytes_sent);
	out->bytes_received = atomic_load(&d->ctr.bytes_received);
	out->requests = atomic_load(&d->ctr.requests);
	return 1;
}

const char *lup_driver_s3_request_kind(int kind)
{
	static const char *const names[S3K_N] = {
		"HeadObject", "GetObject", "PutObject", "CopyObject",
		"DeleteObject", "ListObjectsV2", "DeleteObjects",
		"CreateMultipartUpload", "UploadPart", "UploadPartCopy",
		"CompleteMultipartUpload", "AbortMultipartUpload",
		"ListMultipartUploads", "ListParts", "other",
	};

	return kind >= 0 && kind < S3K_N ? names[kind] : NULL;
}

int64_t lup_driver_s3_requests(lup_driver *drv, int kind)
{
	if (!drv || drv->free != s3_free || kind < 0 || kind >= S3K_N)
		return 0;
	return atomic_load(&S3(drv)->ctr.kinds[kind]);
}
