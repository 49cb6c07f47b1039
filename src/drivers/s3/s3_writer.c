/*
 * s3_writer.c - an upload's data as an S3 multipart upload.
 *
 * The multipart upload is keyed to the data path itself, as the registry's
 * S3 driver does, so either can continue what the other started.  Parts go
 * out as they fill (at most one part buffer per writer).  S3 refuses parts
 * under 5 MiB except the last, so on close a short tail is stored twice
 * over: as a small object under "_layerup/tails/" (PUT) and, copied
 * server-side from it, as the last part (the registry sees every byte).  A
 * resume anywhere reads the tail back (checked against the part's ETag),
 * and its first full part replaces the small one: a resume costs at most
 * the tail again, never a re-copy of everything sent so far.
 *
 * Without a usable tail object (a registry-written small last part), the
 * writer falls back to what the registry does: complete the upload and
 * start a new one from the completed object.
 *
 * A writer of a new path (LUP_WRITE_NEW) creates its multipart upload
 * lazily: with its first full part, or on a commit or close (which leave
 * the data behind for any resume, the registry's included); a small upload
 * published in the session that started it never has one, and nothing is
 * left to abort.  Until then the key is missing; the lease of its parent
 * says that this is by design (s3_lock.c), and stat and an append open
 * under that lease read it as empty.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pthread.h>
#include <time.h>

#include <openssl/evp.h>

#include "drivers/s3/s3_internal.h"

enum { W_OPEN, W_COMMITTED, W_CANCELLED, W_PUBLISHED };

#define S3_MAX_JOBS 16

struct s3_writer;

/* One part on its way to the server on a thread of its own. */
typedef struct {
	pthread_t th;
	struct s3_writer *w;
	int number;
	unsigned char *data;
	size_t len;
	char etag[128];
	int rc;
	lup_error err;
} s3_job;

typedef struct s3_writer {
	lup_writer base;
	s3_driver *d;
	char *path;     /* the driver path (NULL for internal copies) */
	int lazy;       /* no multipart upload yet (s3_lazy_open) */
	char *key;
	char *tail_key;
	char *id;
	s3_parts parts; /* parts that stay (full or final) */
	int64_t parts_size;
	lup_buf buf;    /* bytes not yet in a kept part */
	int tail_stored; /* the tail object holds buf's current prefix */
	int tail_num;    /* ... and part tail_num (ETag tail_etag) holds it */
	char tail_etag[128];
	long mat_seen;   /* d->materialized when last checked */
	int readopted;  /* readopt ran once: never loop on a vanished upload */
	int adopted;    /* continues a completed object at the key */
	s3_job jobs[S3_MAX_JOBS]; /* parts in flight, oldest at head */
	int head, njobs;
	int64_t inflight;  /* bytes in those parts */
	int failed;        /* a part in flight failed: reported once */
	lup_error fail_err;
	int stale_max;     /* highest part number sent that is not kept */
	int state;
} s3_writer;

static int oom(lup_error *err)
{
	return lup_error_set(err, LUP_EIO, NULL, "out of memory");
}

char *s3_tail_key(const s3_driver *d, const char *key)
{
	size_t pl = strlen(d->prefix), n = strlen(key) + 32;
	char *k = malloc(n);
	const char *rel = key;

	if (!k)
		return NULL;
	if (pl && strncmp(key, d->prefix, pl) == 0 && key[pl] == '/')
		rel = key + pl + 1;
	snprintf(k, n, "%s%s_layerup/tails/%s", d->prefix, pl ? "/" : "", rel);
	return k;
}

static int create_upload(s3_writer *w, lup_error *err)
{
	s3_req r = {.method = "POST", .key = w->key};
	s3_resp resp = {0};
	const char *v;
	size_t vl;
	int rc;

	r.query[r.nq++] = (s3_kv){"uploads", ""};
	if ((rc = s3_do(w->d, &r, &resp, err)) != 0)
		return rc;
	if (resp.status != 200) {
		rc = s3_fail(&resp, "CreateMultipartUpload", NULL, err);
	} else if (s3_xml_next((const char *)resp.body.data,
			       (const char *)resp.body.data + resp.body.len,
			       "UploadId", &v, &vl, NULL) != 0) {
		rc = lup_error_set(err, LUP_EIO, NULL,
				   "CreateMultipartUpload: no UploadId");
	} else {
		free(w->id);
		if (!(w->id = s3_xml_text(v, vl)))
			rc = oom(err);
	}
	s3_resp_free(&resp);
	if (rc == 0 && w->path) {
		/* Its key is no longer missing by design. */
		s3_lazy_created(w->d, w->path);
		w->lazy = 0;
	}
	return rc;
}

/* The multipart upload of a lazy writer, created when first needed. */
static int ensure_upload(s3_writer *w, lup_error *err)
{
	return w->id ? 0 : create_upload(w, err);
}

typedef struct {
	s3_writer *w;
	int rc;
	lup_error err;
} create_job;

static void *create_main(void *arg)
{
	create_job *j = arg;

	j->rc = ensure_upload(j->w, &j->err);
	return NULL;
}

static int keep_part(s3_writer *w, int number, int64_t size,
		     const char *etag, lup_error *err)
{
	s3_part part = {.number = number, .size = size};

	snprintf(part.etag, sizeof part.etag, "%s", etag);
	if (s3_parts_push(&w->parts, &part) != 0)
		return oom(err);
	w->parts_size += size;
	return 0;
}

static int upload_part(s3_writer *w, int number, const void *data, size_t n,
		       char etag[128], lup_error *err)
{
	char num[16];
	s3_req r = {.method = "PUT", .key = w->key, .body = data ? data : "",
		    .blen = n};
	s3_resp resp = {0};
	int rc;

	snprintf(num, sizeof num, "%d", number);
	r.query[r.nq++] = (s3_kv){"partNumber", num};
	r.query[r.nq++] = (s3_kv){"uploadId", w->id};
	if ((rc = s3_do(w->d, &r, &resp, err)) == 0) {
		if (resp.status != 200)
			rc = s3_fail_upload(&resp, "UploadPart", err);
		else
			snprintf(etag, 128, "%s", resp.etag);
	}
	s3_resp_free(&resp);
	return rc;
}

/* Copy the tail object into part `number` (server-side: 0 bytes sent). */
static int copy_part(s3_writer *w, int number, const char *src_key,
		     int64_t from, int64_t to, char etag[128], lup_error *err)
{
	char range[64];
	char num[16], *src = s3_copy_source(w->d, src_key);
	s3_req r = {.method = "PUT", .key = w->key, .body = "", .blen = 0};
	s3_resp resp = {0};
	const char *v;
	size_t vl;
	int rc;

	if (!src)
		return oom(err);
	snprintf(num, sizeof num, "%d", number);
	r.query[r.nq++] = (s3_kv){"partNumber", num};
	r.query[r.nq++] = (s3_kv){"uploadId", w->id};
	r.hdr[r.nh++] = (s3_kv){"x-amz-copy-source", src};
	if (from >= 0) {
		snprintf(range, sizeof range, "bytes=%lld-%lld", (long long)from,
			 (long long)to - 1);
		r.hdr[r.nh++] = (s3_kv){"x-amz-copy-source-range", range};
	}
	if ((rc = s3_do(w->d, &r, &resp, err)) == 0) {
		const char *b = (const char *)resp.body.data;
		if (resp.status != 200 || resp.code[0] ||
		    s3_xml_next(b, b + resp.body.len, "ETag", &v, &vl, NULL)) {
			if (resp.status == 200)
				resp.status = 500;
			rc = s3_fail(&resp, "UploadPartCopy", NULL, err);
		} else if (s3_xml_etag(v, vl, etag, 128) != 0) {
			rc = oom(err);
		}
	}
	s3_resp_free(&resp);
	free(src);
	return rc;
}

static int next_number(const s3_writer *w)
{
	return (int)w->parts.count + w->njobs + 1;
}

static void *job_main(void *arg)
{
	s3_job *j = arg;

	/* A part in flight cannot be handed back to the store's retry
	 * policy: transient failures are retried here. */
	for (int attempt = 0; attempt < 4; attempt++) {
		lup_error_clear(&j->err);
		j->rc = upload_part(j->w, j->number, j->data, j->len, j->etag,
				    &j->err);
		if (j->rc == 0 || !j->err.transient)
			break;
		struct timespec ts = {0, 200000000L << attempt};
		nanosleep(&ts, NULL);
	}
	return NULL;
}

/* Wait for the oldest part in flight and keep it.  After a failure the
 * parts behind it cannot stay (they follow a hole): they and buf are
 * dropped, size() falls back to what is kept, and the error is reported
 * once. */
static void reap_one(s3_writer *w)
{
	s3_job *j = &w->jobs[w->head];

	pthread_join(j->th, NULL);
	w->head = (w->head + 1) % S3_MAX_JOBS;
	w->njobs--;
	w->inflight -= (int64_t)j->len;
	if (j->rc == 0 && !w->failed &&
	    keep_part(w, j->number, (int64_t)j->len, j->etag, &j->err) != 0)
		j->rc = LUP_EIO;
	if (j->rc != 0 || w->failed) {
		if (!w->failed) {
			w->failed = j->rc;
			lup_error_copy(&w->fail_err, &j->err);
			w->buf.len = 0;
			w->tail_stored = 0;
		}
		if (j->number > w->stale_max)
			w->stale_max = j->number;
	}
	free(j->data);
	j->data = NULL;
}

/* Wait for every part in flight; the first failure, once. */
static int reap_all(s3_writer *w, lup_error *err)
{
	int rc;

	while (w->njobs > 0)
		reap_one(w);
	if (!(rc = w->failed))
		return 0;
	w->failed = 0;
	lup_error_copy(err, &w->fail_err);
	return rc;
}

/* Send n bytes as the next part on a thread; with upload_concurrency
 * parts already in flight, wait for the oldest first. */
static int dispatch(s3_writer *w, const void *data, size_t n, lup_error *err)
{
	s3_job *j;
	int rc;

	while (w->njobs >= w->d->concurrency)
		reap_one(w);
	if (w->failed)
		return reap_all(w, err);
	if (next_number(w) > 10000)
		return lup_error_set(err, LUP_ESIZE_INVALID, NULL,
				     "more than 10000 parts: raise part_size");
	j = &w->jobs[(w->head + w->njobs) % S3_MAX_JOBS];
	memset(j, 0, sizeof *j);
	if (!(j->data = malloc(n ? n : 1)))
		return oom(err);
	memcpy(j->data, data, n);
	j->w = w;
	j->len = n;
	j->number = next_number(w);
	if (pthread_create(&j->th, NULL, job_main, j) != 0) {
		/* No thread to be had: send it here. */
		job_main(j);
		rc = j->rc;
		if (rc == 0)
			rc = keep_part(w, j->number, (int64_t)n, j->etag, err);
		else
			lup_error_copy(err, &j->err);
		free(j->data);
		j->data = NULL;
		return rc;
	}
	w->njobs++;
	w->inflight += (int64_t)n;
	s3_renew_locks(w->d);
	return 0;
}

/* Send n bytes as the next kept part. */
static int flush_full(s3_writer *w, const void *data, size_t n,
		      lup_error *err)
{
	char etag[128];
	int num = next_number(w), rc;

	if ((rc = ensure_upload(w, err)) != 0)
		return rc;
	if (w->d->concurrency > 1)
		return dispatch(w, data, n, err);
	if (num > 10000)
		return lup_error_set(err, LUP_ESIZE_INVALID, NULL,
				     "more than 10000 parts: raise part_size");
	if ((rc = upload_part(w, num, data, n, etag, err)) != 0)
		return rc;
	s3_renew_locks(w->d);
	return keep_part(w, num, (int64_t)n, etag, err);
}

static int adopt_object(s3_writer *w, int64_t size, lup_error *err);

/* The multipart upload went away under this writer: a reader completed it
 * to re-hash a gap (s3_materialize), so its bytes are now an object.
 * Continue from that object, keeping the bytes of ours it lacks. */
static int readopt(s3_writer *w, lup_error *err)
{
	s3_req r = {.method = "HEAD", .key = w->key, .head = 1};
	s3_resp resp = {0};
	int64_t obj, total = w->parts_size + (int64_t)w->buf.len, keep;
	unsigned char *tmp = NULL;
	int rc;

	if (w->readopted)
		return lup_error_set(err, LUP_EPATH_NOT_FOUND, NULL,
				     "the multipart upload is gone");
	w->readopted = 1;
	while (w->njobs > 0)
		reap_one(w);
	w->failed = 0;
	total = w->parts_size + (int64_t)w->buf.len;
	if ((rc = s3_do(w->d, &r, &resp, err)) != 0)
		return rc;
	obj = resp.length;
	if (resp.status != 200) {
		rc = resp.status == 404
			     ? lup_error_set(err, LUP_EPATH_NOT_FOUND, NULL,
					     "the multipart upload is gone")
			     : s3_fail(&resp, "HEAD", NULL, err);
		s3_resp_free(&resp);
		return rc;
	}
	s3_resp_free(&resp);
	keep = total - obj;
	if (obj < 0 || keep < 0 || keep > (int64_t)w->buf.len)
		return lup_error_set(err, LUP_EIO, NULL,
				     "the upload changed under this writer "
				     "(%lld bytes stored, %lld expected)",
				     (long long)obj, (long long)total);
	if (keep && !(tmp = malloc((size_t)keep)))
		return oom(err);
	if (keep)
		memcpy(tmp, w->buf.data + w->buf.len - keep, (size_t)keep);
	s3_parts_free(&w->parts);
	w->parts_size = 0;
	w->buf.len = 0;
	w->tail_stored = 0;
	rc = adopt_object(w, obj, err);
	if (rc == 0 && keep && lup_buf_append(&w->buf, tmp, (size_t)keep))
		rc = oom(err);
	free(tmp);
	return rc;
}

/* Send full parts from buf while it holds one. */
static int drain(s3_writer *w, lup_error *err)
{
	size_t ps = w->d->part_size;
	int rc;

	while (w->buf.len >= ps) {
		rc = flush_full(w, w->buf.data, ps, err);
		if (rc == LUP_EPATH_NOT_FOUND && readopt(w, err) == 0)
			continue; /* buf was rebuilt */
		if (rc)
			return rc;
		memmove(w->buf.data, w->buf.data + ps, w->buf.len - ps);
		w->buf.len -= ps;
		w->tail_stored = 0;
	}
	return 0;
}

static int w_write(lup_writer *lw, const void *buf, size_t n, lup_error *err)
{
	s3_writer *w = (s3_writer *)lw;
	const unsigned char *p = buf;
	size_t ps = w->d->part_size;
	int rc;

	if (w->state != W_OPEN)
		return lup_error_set(err, LUP_EIO, NULL, "writer is finished");
	while (n > 0) {
		if (w->buf.len == 0 && n >= ps) {
			/* Straight from the caller: no copy. */
			rc = flush_full(w, p, ps, err);
			if (rc == LUP_EPATH_NOT_FOUND && readopt(w, err) == 0)
				continue;
			if (rc)
				return rc;
			p += ps;
			n -= ps;
			continue;
		}
		size_t take = w->buf.len < ps ? ps - w->buf.len : 0;
		if (take > n)
			take = n;
		if (lup_buf_append(&w->buf, p, take))
			return oom(err);
		w->tail_stored = 0; /* buf grew past what the tail holds */
		p += take;
		n -= take;
		/* A failed part keeps its bytes in buf: size() counts them
		 * and the next write or close sends them. */
		if ((rc = drain(w, err)) != 0)
			return rc;
	}
	return 0;
}

static int64_t w_size(lup_writer *lw)
{
	s3_writer *w = (s3_writer *)lw;

	return w->parts_size + w->inflight + (int64_t)w->buf.len;
}

/* Make buf durable as the last part (see the top of this file); the writer
 * keeps buf, so that later writes extend it into a full part. */
static int store_tail_once(s3_writer *w, lup_error *err)
{
	char etag[128];
	int num = next_number(w), rc;

	if ((rc = drain(w, err)) != 0 || (rc = reap_all(w, err)) != 0)
		return rc;
	num = next_number(w);
	/* A lazy writer's data goes behind now (even empty: the registry
	 * resumes only a multipart upload). */
	if ((w->buf.len == 0 || w->buf.len >= S3_MIN_PART) &&
	    (rc = ensure_upload(w, err)) != 0)
		return rc;
	if (w->buf.len == 0 || w->tail_stored)
		return 0;
	if (w->buf.len >= S3_MIN_PART) {
		/* Big enough to stand as a part on its own. */
		if ((rc = flush_full(w, w->buf.data, w->buf.len, err)) != 0)
			return rc;
		w->buf.len = 0;
		if ((rc = reap_all(w, err)) != 0)
			return rc;
		return s3_delete(w->d, w->tail_key, NULL), 0;
	}
	{
		/* The upload of a lazy writer is created beside the tail's
		 * PUT: they need nothing from each other. */
		s3_req r = {.method = "PUT", .key = w->tail_key,
			    .body = w->buf.data, .blen = w->buf.len,
			    .sign_payload = 1};
		s3_resp resp = {0};
		create_job cj = {.w = w};
		s3_bg bg;
		int lazy = !w->id;
		if (lazy)
			s3_bg_start(&bg, create_main, &cj);
		if ((rc = s3_do(w->d, &r, &resp, err)) == 0 &&
		    resp.status != 200)
			rc = s3_fail(&resp, "PUT tail", NULL, err);
		s3_resp_free(&resp);
		if (lazy) {
			s3_bg_join(&bg);
			if (rc == 0 && (rc = cj.rc) != 0)
				lup_error_copy(err, &cj.err);
		}
		if (rc)
			return rc;
	}
	if (copy_part(w, num, w->tail_key, -1, -1, etag, NULL) != 0 &&
	    (rc = upload_part(w, num, w->buf.data, w->buf.len, etag, err)) != 0)
		return rc;
	w->tail_stored = 1;
	w->tail_num = num;
	snprintf(w->tail_etag, sizeof w->tail_etag, "%s", etag);
	return 0;
}

static int store_tail(s3_writer *w, lup_error *err)
{
	int rc = store_tail_once(w, err);

	if (rc == LUP_EPATH_NOT_FOUND && readopt(w, err) == 0)
		rc = store_tail_once(w, err);
	return rc;
}

static int complete(s3_writer *w, lup_error *err)
{
	lup_buf body = {0};
	s3_req r = {.method = "POST", .key = w->key, .sign_payload = 1};
	s3_resp resp = {0};
	char line[256];
	int rc;

	if (lup_buf_append(&body, "<CompleteMultipartUpload>", 25))
		return oom(err);
	for (size_t i = 0; i < w->parts.count; i++) {
		int n = snprintf(line, sizeof line,
				 "<Part><PartNumber>%d</PartNumber>"
				 "<ETag>\"%s\"</ETag></Part>",
				 w->parts.items[i].number,
				 w->parts.items[i].etag);
		if (lup_buf_append(&body, line, (size_t)n)) {
			lup_buf_free(&body);
			return oom(err);
		}
	}
	if (lup_buf_append(&body, "</CompleteMultipartUpload>", 26)) {
		lup_buf_free(&body);
		return oom(err);
	}
	r.query[r.nq++] = (s3_kv){"uploadId", w->id};
	r.body = body.data;
	r.blen = body.len;
	rc = s3_do(w->d, &r, &resp, err);
	/* The answer may be 200 with an <Error> body; its ETag may be empty
	 * (RGW): never used. */
	if (rc == 0 && (resp.status != 200 || resp.code[0] ||
			(resp.body.len && memmem(resp.body.data, resp.body.len,
						 "<Error>", 7)))) {
		if (resp.status == 200)
			resp.status = 500;
		rc = s3_fail(&resp, "CompleteMultipartUpload", NULL, err);
	}
	s3_resp_free(&resp);
	lup_buf_free(&body);
	return rc;
}

static int commit_once(s3_writer *w, lup_error *err);

/* Whether this writer's open multipart upload was completed under it by a
 * reader (s3_materialize) of this driver since the last check.  RGW then
 * refuses further parts (NoSuchUpload: readopt), but Swift's s3api keeps a
 * completed upload id usable, so that a retried CompleteMultipartUpload
 * succeeds: the parts sent after the completion are accepted, listed, and
 * missing from the object.  Only a HEAD of the key tells, and it is sent
 * only when a completion happened in this driver. */
static int completed_under(s3_writer *w, int *yes, lup_error *err)
{
	long now = atomic_load(&w->d->materialized);
	s3_req r = {.method = "HEAD", .key = w->key, .head = 1};
	s3_resp resp = {0};
	int rc;

	*yes = 0;
	if (w->adopted || now == w->mat_seen)
		return 0;
	if ((rc = s3_do(w->d, &r, &resp, err)) != 0)
		return rc;
	if (resp.status == 200)
		*yes = 1;
	else if (resp.status != 404)
		rc = s3_fail(&resp, "HEAD", NULL, err);
	else
		w->mat_seen = now;
	s3_resp_free(&resp);
	return rc;
}

/* After store_tail, on an upload completed under the writer: complete it
 * again with every part, the tail included (Swift accepts that for the
 * same upload id; RGW answers NoSuchUpload, and commit's readopt takes
 * over), so that the object holds every byte written.  The writer goes
 * on as one that continues an object. */
static int fold_completed(s3_writer *w, lup_error *err)
{
	int rc;

	if (w->buf.len) {
		if (!w->tail_stored || w->tail_num != next_number(w))
			return lup_error_set(err, LUP_EIO, NULL,
					     "tail part out of step");
		if ((rc = keep_part(w, w->tail_num, (int64_t)w->buf.len,
				    w->tail_etag, err)) != 0)
			return rc;
		w->buf.len = 0;
		w->tail_stored = 0;
	}
	w->adopted = 1;
	return 0;
}

/* Commit makes what was written durable and readable, not final: the
 * multipart upload stays open with the short tail stored as its last part,
 * so that a resume here or in the registry appends to it instead of
 * re-copying a completed object; a reader, get_content or move of the data
 * completes it when its bytes are needed (s3_materialize).  A writer that
 * continues a completed object (adopted) completes its upload, so that
 * the object at the key is never a stale prefix of what was written. */
static int w_commit(lup_writer *lw, lup_error *err)
{
	s3_writer *w = (s3_writer *)lw;
	int rc = 0;

	if (w->state == W_OPEN && !w->adopted) {
		int yes = 0;
		if ((rc = store_tail(w, err)) != 0)
			return rc;
		/* Still its own upload (not readopted): it stays open,
		 * unless a reader completed it meanwhile. */
		if (!w->adopted &&
		    ((rc = completed_under(w, &yes, err)) != 0 || !yes ||
		     (rc = fold_completed(w, err)) != 0))
			return rc;
	}
	rc = commit_once(w, err);

	if (rc == LUP_EPATH_NOT_FOUND && w->state == W_OPEN &&
	    readopt(w, err) == 0)
		rc = commit_once(w, err);
	return rc;
}

static int commit_once(s3_writer *w, lup_error *err)
{
	char etag[128];
	int rc;

	if ((rc = reap_all(w, err)) != 0)
		return rc;
	if (w->state == W_COMMITTED)
		return 0;
	if (w->state != W_OPEN)
		return lup_error_set(err, LUP_EIO, NULL, "writer is cancelled");
	if (w->parts.count == 0 && w->buf.len == 0) {
		/* The empty blob: S3 completes no zero-part upload (2.8's
		 * failure), so store an empty object instead. */
		s3_req r = {.method = "PUT", .key = w->key, .body = "",
			    .blen = 0, .sign_payload = 1};
		s3_resp resp = {0};
		if ((rc = s3_do(w->d, &r, &resp, err)) == 0 &&
		    resp.status != 200)
			rc = s3_fail(&resp, "PUT", NULL, err);
		s3_resp_free(&resp);
		if (rc)
			return rc;
		s3_abort(w->d, w->key, w->id, NULL);
	} else {
		if (w->buf.len) {
			int num = next_number(w);
			if ((rc = upload_part(w, num, w->buf.data, w->buf.len,
					      etag, err)) != 0 ||
			    (rc = keep_part(w, num, (int64_t)w->buf.len, etag,
					    err)) != 0)
				return rc;
			w->buf.len = 0;
		}
		if ((rc = complete(w, err)) != 0)
			return rc;
	}
	s3_delete(w->d, w->tail_key, NULL);
	w->state = W_COMMITTED;
	return 0;
}

static int w_cancel(lup_writer *lw, lup_error *err)
{
	s3_writer *w = (s3_writer *)lw;
	int rc = 0;

	while (w->njobs > 0)
		reap_one(w);
	/* A lazy writer that created nothing has nothing to take back. */
	if (w->state == W_OPEN && w->id) {
		rc = s3_abort(w->d, w->key, w->id, err);
		if (rc == 0)
			rc = s3_delete(w->d, w->tail_key, err);
	}
	w->state = W_CANCELLED;
	return rc;
}

/* The content is complete and dst is its own place (layerup/sys/driver.h):
 * when no part was ever sent, every byte is in buf, and one PutObject
 * stores the object, its SHA-256 signed (and so checked by the server)
 * and If-None-Match: * keeping an existing dst.  The multipart upload at
 * the writer's key stays, empty or holding a stored tail, for the caller's
 * removal of the upload to abort. */
static int w_publish(lup_writer *lw, const char *dst, const char *sha256_hex,
		     lup_error *err)
{
	s3_writer *w = (s3_writer *)lw;
	s3_driver *d = w->d;
	char hex[65], *key;
	int rc = 0;

	if (w->state != W_OPEN || w->adopted || w->parts.count || w->njobs ||
	    w->failed || w->stale_max || w->buf.len == 0)
		return lup_error_set(err, LUP_EUNSUPPORTED, dst,
				     "parts were sent: commit and move");
	s3_sha256_hex(w->buf.data, w->buf.len, hex);
	if (sha256_hex && strcmp(hex, sha256_hex) != 0)
		return lup_error_set(err, LUP_EDIGEST_INVALID, dst,
				     "content hashes to sha256:%s, not "
				     "sha256:%s", hex, sha256_hex);
	if (!(key = s3_key(d, dst)))
		return oom(err);
	for (int cond = !atomic_load(&d->no_cond_put);; cond = 0) {
		s3_req r = {.method = "PUT", .key = key, .body = w->buf.data,
			    .blen = w->buf.len, .payload_sha256 = hex};
		s3_resp resp = {0};
		if (cond) {
			r.hdr[r.nh++] = (s3_kv){"if-none-match", "*"};
		} else {
			/* No conditional writes here: look first. */
			s3_req h = {.method = "HEAD", .key = key, .head = 1};
			if ((rc = s3_do(d, &h, &resp, err)) == 0 &&
			    resp.status != 404)
				rc = resp.status == 200
					     ? 1
					     : s3_fail(&resp, "HEAD", dst, err);
			s3_resp_free(&resp);
			memset(&resp, 0, sizeof resp);
			if (rc)
				break;
		}
		int again = 0;
		if ((rc = s3_do(d, &r, &resp, err)) == 0) {
			if (resp.status == 200)
				rc = 0;
			else if (cond && resp.status == 412)
				rc = 1; /* dst exists */
			else if (cond && resp.status == 501)
				again = 1; /* Swift 2.30's s3api: unconditional */
			else
				rc = s3_fail(&resp, "PUT", dst, err);
		}
		s3_resp_free(&resp);
		if (!again)
			break;
		atomic_store(&d->no_cond_put, 1);
	}
	free(key);
	if (rc >= 0)
		w->state = W_PUBLISHED;
	return rc;
}

static void w_free(s3_writer *w)
{
	while (w->njobs > 0)
		reap_one(w);
	if (w->lazy)
		s3_lazy_close(w->d, w->path);
	free(w->path);
	lup_buf_free(&w->buf);
	s3_parts_free(&w->parts);
	free(w->id);
	free(w->key);
	free(w->tail_key);
	free(w);
}

static int w_close(lup_writer *lw, lup_error *err)
{
	s3_writer *w = (s3_writer *)lw;
	int rc = 0;

	if (w->state == W_OPEN && !w->adopted) {
		int yes = 0;
		rc = store_tail(w, err);
		if (rc == 0 && !w->adopted &&
		    (rc = completed_under(w, &yes, err)) == 0 && yes)
			rc = fold_completed(w, err);
	}
	/* A writer that continues an object (from the start, or since its
	 * upload was completed under it) completes on close too: an open
	 * upload beside the stale object would be read as the object, and
	 * Swift could not complete it in another process (its ListParts
	 * gives copied parts no ETag). */
	if (rc == 0 && w->state == W_OPEN && w->adopted)
		rc = w_commit(lw, err);
	/* Parts sent past a failure would count on the next resume: cut
	 * them off by completing with the kept parts only (the next writer
	 * continues from the object). */
	if (rc == 0 && w->state == W_OPEN && w->stale_max > 0 &&
	    (w->parts.count == 0 ||
	     w->stale_max > w->parts.items[w->parts.count - 1].number))
		rc = w->parts.count ? complete(w, err)
				    : s3_materialize(w->d, w->key, w->id, err);
	w_free(w);
	return rc;
}

/* The MD5 hex of data, to check a tail object against a part's ETag. */
static void md5_hex(const void *p, size_t n, char out[33])
{
	unsigned char md[16];
	unsigned int ml = 0;

	EVP_Digest(p, n, md, &ml, EVP_md5(), NULL);
	for (int i = 0; i < 16; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static int get_object(s3_driver *d, const char *key, lup_buf *out,
		      long *status, lup_error *err);

/* Swift's s3api lists a part made by UploadPartCopy with an empty ETag,
 * and then refuses that part in CompleteMultipartUpload.  A part's ETag is
 * the MD5 of its bytes: for the tail part, whose bytes are the tail
 * object, it can be computed.  When tail is not NULL it gets the tail
 * object's bytes that were read for it (empty when none were), so that a
 * resume reads the tail once. */
static int fill_tail_etag(s3_driver *d, const char *key, s3_parts *all,
			  lup_buf *tail, lup_error *err)
{
	s3_part *last;
	lup_buf b = {0};
	long st = 0;
	char *tk;
	int rc;

	if (all->count == 0 || all->items[all->count - 1].etag[0])
		return 0;
	last = &all->items[all->count - 1];
	if (!(tk = s3_tail_key(d, key)))
		return oom(err);
	rc = get_object(d, tk, &b, &st, err);
	if (rc == 0 && st == 200 && (int64_t)b.len == last->size) {
		md5_hex(b.data, b.len, last->etag);
		if (tail) {
			lup_buf_free(tail);
			*tail = b;
			b = (lup_buf){0};
		}
	}
	lup_buf_free(&b);
	free(tk);
	return rc;
}

static int get_object(s3_driver *d, const char *key, lup_buf *out,
		      long *status, lup_error *err)
{
	s3_req r = {.method = "GET", .key = key, .sink = out};
	s3_resp resp = {0};
	int rc = s3_do(d, &r, &resp, err);

	*status = resp.status;
	if (rc == 0 && resp.status != 200 && resp.status != 404)
		rc = s3_fail(&resp, "GET", NULL, err);
	s3_resp_free(&resp);
	return rc;
}

/* Copy the object src_key (size bytes) server-side into the next parts:
 * ranges of copy_part bytes, the last at least 5 MiB (S3's minimum for a
 * part that is not the last of the upload). */
static int copy_ranges(s3_writer *w, const char *src_key, int64_t size,
		       lup_error *err)
{
	int64_t step = w->d->copy_part, from = 0;
	int rc;

	while (from < size) {
		int64_t to = from + step;
		char etag[128];
		int num = next_number(w);
		if (to > size || size - to < S3_MIN_PART)
			to = size;
		if (num > 10000)
			return lup_error_set(err, LUP_ESIZE_INVALID, NULL,
					     "more than 10000 parts");
		if (from == 0 && to == size && size <= w->d->copy_part)
			rc = copy_part(w, num, src_key, -1, -1, etag, err);
		else
			rc = copy_part(w, num, src_key, from, to, etag, err);
		if (rc || (rc = keep_part(w, num, to - from, etag, err)) != 0)
			return rc;
		from = to;
	}
	return 0;
}

int s3_copy_large(s3_driver *d, const char *src_key, const char *dst_key,
		  int64_t size, lup_error *err)
{
	s3_writer w;
	int rc;

	memset(&w, 0, sizeof w);
	w.d = d;
	w.key = (char *)dst_key;
	if ((rc = create_upload(&w, err)) == 0 &&
	    (rc = copy_ranges(&w, src_key, size, err)) == 0)
		rc = complete(&w, err);
	if (rc && w.id)
		s3_abort(d, dst_key, w.id, NULL);
	s3_parts_free(&w.parts);
	free(w.id);
	return rc;
}

/* Start a fresh multipart upload whose content begins with the completed
 * object at key (size bytes): server-side copy when it can be a part. */
static int adopt_object(s3_writer *w, int64_t size, lup_error *err)
{
	int rc;

	w->adopted = 1;
	if ((rc = create_upload(w, err)) != 0)
		return rc;
	if (size >= S3_MIN_PART)
		return copy_ranges(w, w->key, size, err);
	long st = 0;
	w->buf.len = 0;
	if ((rc = get_object(w->d, w->key, &w->buf, &st, err)) != 0)
		return rc;
	return 0;
}

/* HEAD the key: its size into *size, or -1 when there is no object. */
static int head_key(s3_writer *w, const char *path, int64_t *size,
		    lup_error *err)
{
	s3_req r = {.method = "HEAD", .key = w->key, .head = 1};
	s3_resp resp = {0};
	int rc;

	*size = -1;
	if ((rc = s3_do(w->d, &r, &resp, err)) != 0)
		return rc;
	if (resp.status == 200)
		*size = resp.length > 0 ? resp.length : 0;
	else if (resp.status != 404)
		rc = s3_fail(&resp, "HEAD", path, err);
	s3_resp_free(&resp);
	return rc;
}

static int open_append(s3_writer *w, const char *path, lup_error *err)
{
	s3_driver *d = w->d;
	s3_parts all = {0};
	int64_t obj;
	int rc;

	if ((rc = s3_find_upload(d, w->key, &w->id, err)) != 0)
		return rc;
	if (!w->id) {
		/* No upload in progress: a completed object continues
		 * through a new upload (the registry's own resume path). */
	adopt:
		if ((rc = head_key(w, path, &obj, err)) != 0)
			return rc;
		if (obj < 0 && s3_lazy_absent(d, path)) {
			/* Missing by design: a lazy writer that died before
			 * its first close.  Continue as one, from nothing. */
			w->lazy = 1;
			s3_lazy_open(d, path);
			return 0;
		}
		if (obj < 0)
			return lup_error_set(err, LUP_EPATH_NOT_FOUND, path,
					     "no such file");
		return adopt_object(w, obj, err);
	}
	/* A stale flag (its writer created the upload and died before a
	 * renewal dropped the flag) is spent. */
	s3_lazy_created(d, path);
	if ((rc = s3_list_parts(d, w->key, w->id, &all, err)) != 0) {
		if (rc == LUP_EPATH_NOT_FOUND)
			lup_error_set(err, LUP_EPATH_NOT_FOUND, path,
				      "the multipart upload is gone");
		return rc;
	}
	w->buf.len = 0;
	if ((rc = fill_tail_etag(d, w->key, &all, &w->buf, err)) != 0) {
		s3_parts_free(&all);
		return rc;
	}
	/* Swift's ListParts gives a part made by UploadPartCopy no ETag
	 * (the tail part's was recomputed above), and such an upload cannot
	 * be completed.  It is one that continued the object at the key
	 * (adopt_object) whose writer died before completing it: abort it
	 * and continue the object again (what the dead writer sent after
	 * the object is lost; the store resumes from the object's size). */
	{
		int blind = 0;
		for (size_t i = 0; i < all.count; i++)
			blind |= all.items[i].etag[0] == '\0';
		if (blind && (rc = head_key(w, path, &obj, err)) != 0) {
			s3_parts_free(&all);
			return rc;
		}
		if (blind && obj >= 0) {
			s3_parts_free(&all);
			if ((rc = s3_abort(d, w->key, w->id, err)) != 0)
				return rc;
			free(w->id);
			w->id = NULL;
			w->buf.len = 0;
			goto adopt;
		}
	}
	/* Parts come sorted by number; they must be 1..n without holes. */
	for (size_t i = 0; i < all.count; i++) {
		if (all.items[i].number != (int)i + 1) {
			s3_parts_free(&all);
			return lup_error_set(err, LUP_EIO, path,
					     "multipart upload has a hole at "
					     "part %zu", i + 1);
		}
	}
	size_t keep = all.count;
	if (keep && all.items[keep - 1].size < S3_MIN_PART)
		keep--; /* the short tail: rebuilt below */
	for (size_t i = 0; i < keep; i++) {
		if (i + 1 < keep && all.items[i].size < S3_MIN_PART) {
			s3_parts_free(&all);
			return lup_error_set(err, LUP_EIO, path,
					     "part %zu is under 5 MiB",
					     i + 1);
		}
		if ((rc = keep_part(w, all.items[i].number, all.items[i].size,
				    all.items[i].etag, err)) != 0) {
			s3_parts_free(&all);
			return rc;
		}
	}
	if (keep < all.count) {
		const s3_part *last = &all.items[keep];
		char md5[33];
		long st = 200;
		rc = 0;
		if (w->buf.len == 0) /* not read yet by fill_tail_etag */
			rc = get_object(d, w->tail_key, &w->buf, &st, err);
		if (rc == 0 && st == 200 && (int64_t)w->buf.len == last->size) {
			md5_hex(w->buf.data, w->buf.len, md5);
			if (strcmp(md5, last->etag) == 0) {
				/* The part stays until a bigger one replaces
				 * it: the tail is durable meanwhile. */
				w->tail_stored = 1;
				w->tail_num = last->number;
				snprintf(w->tail_etag, sizeof w->tail_etag,
					 "%s", last->etag);
				s3_parts_free(&all);
				return 0;
			}
		}
		if (rc) {
			s3_parts_free(&all);
			return rc;
		}
		/* No usable tail object: complete what exists and continue
		 * from the object, as the registry does. */
		int64_t total = 0;
		w->buf.len = 0;
		for (size_t i = 0; i < all.count; i++)
			total += all.items[i].size;
		s3_parts_free(&w->parts);
		w->parts_size = 0;
		for (size_t i = 0; i < all.count; i++)
			if ((rc = keep_part(w, all.items[i].number,
					    all.items[i].size,
					    all.items[i].etag, err)) != 0)
				break;
		s3_parts_free(&all);
		if (rc || (rc = complete(w, err)) != 0)
			return rc;
		s3_parts_free(&w->parts);
		w->parts_size = 0;
		return adopt_object(w, total, err);
	}
	s3_parts_free(&all);
	return 0;
}

int s3_materialize(s3_driver *d, const char *key, const char *id,
		   lup_error *err)
{
	s3_writer w;
	s3_parts all = {0};
	int rc;

	memset(&w, 0, sizeof w);
	w.d = d;
	w.key = (char *)key;
	w.id = (char *)id;
	if ((rc = s3_list_parts(d, key, id, &all, err)) != 0 ||
	    (rc = fill_tail_etag(d, key, &all, NULL, err)) != 0) {
		s3_parts_free(&all);
		return rc;
	}
	w.parts = all;
	if (all.count == 0) {
		/* Nothing sent yet: an empty object says the same. */
		s3_req r = {.method = "PUT", .key = key, .body = "", .blen = 0,
			    .sign_payload = 1};
		s3_resp resp = {0};
		if ((rc = s3_do(d, &r, &resp, err)) == 0 && resp.status != 200)
			rc = s3_fail(&resp, "PUT", NULL, err);
		s3_resp_free(&resp);
		if (rc == 0)
			rc = s3_abort(d, key, id, err);
	} else {
		rc = complete(&w, err);
	}
	s3_parts_free(&all);
	if (rc == 0) {
		char *tk = s3_tail_key(d, key);
		atomic_fetch_add(&d->materialized, 1);
		if (tk)
			s3_delete(d, tk, NULL);
		free(tk);
	}
	return rc;
}

/* The two lookups of a truncating open that run beside its
 * CreateMultipartUpload (one round trip instead of three). */
typedef struct {
	s3_writer *w;
	lup_strlist ups;
	int rc_list, rc_del;
	lup_error err_list, err_del;
} open_side;

static void *open_side_main(void *arg)
{
	open_side *o = arg;
	s3_writer *w = o->w;
	lup_strlist two = {0};

	o->rc_list = s3_list_uploads(w->d, w->key, &o->ups, &o->err_list);
	/* Old content and old tail, in one request. */
	if (lup_strlist_push(&two, w->key) || lup_strlist_push(&two, w->tail_key))
		o->rc_del = oom(&o->err_del);
	else
		o->rc_del = s3_delete_batch(w->d, &two, 0, 2, &o->err_del);
	lup_strlist_free(&two);
	return NULL;
}

/* Truncate: the old object and tail go, and earlier uploads on this key
 * are aborted (they would leak: the registry's TODO); the new multipart
 * upload is created meanwhile and is never one of those aborted. */
static int open_truncate(s3_writer *w, lup_error *err)
{
	open_side o;
	pthread_t th;
	int rc, threaded;

	memset(&o, 0, sizeof o);
	o.w = w;
	threaded = pthread_create(&th, NULL, open_side_main, &o) == 0;
	rc = create_upload(w, err);
	if (threaded)
		pthread_join(th, NULL);
	else
		open_side_main(&o);
	if (rc == 0 && (o.rc_list || o.rc_del)) {
		rc = o.rc_list ? o.rc_list : o.rc_del;
		lup_error_copy(err, o.rc_list ? &o.err_list : &o.err_del);
	}
	for (size_t i = 0; rc == 0 && i + 2 < o.ups.count; i += 3)
		if (strcmp(o.ups.items[i], w->key) == 0 &&
		    strcmp(o.ups.items[i + 1], w->id) != 0)
			rc = s3_abort(w->d, w->key, o.ups.items[i + 1], err);
	lup_strlist_free(&o.ups);
	if (rc && w->id) {
		s3_abort(w->d, w->key, w->id, NULL);
		free(w->id);
		w->id = NULL;
	}
	return rc;
}

int s3_writer_open(s3_driver *d, const char *path, int append,
		   lup_writer **out, lup_error *err)
{
	s3_writer *w = calloc(1, sizeof *w);
	int rc;

	if (!w || !(w->key = s3_key(d, path)) ||
	    !(w->tail_key = s3_tail_key(d, w->key)) ||
	    !(w->path = strdup(path))) {
		if (w) {
			w->d = d;
			w_free(w);
		}
		return oom(err);
	}
	w->d = d;
	w->base.version = LUP_WRITER_VERSION;
	w->base.write = w_write;
	w->base.size = w_size;
	w->base.commit = w_commit;
	w->base.cancel = w_cancel;
	w->base.close = w_close;
	w->base.publish = w_publish;
	if (append == LUP_WRITE_NEW) {
		/* Nothing old to clear, and nothing to create yet. */
		w->lazy = 1;
		s3_lazy_open(d, path);
		rc = 0;
	} else if (append)
		rc = open_append(w, path, err);
	else
		rc = open_truncate(w, err);
	if (rc) {
		w_free(w);
		return rc;
	}
	/* Completions from here on may concern this upload. */
	w->mat_seen = atomic_load(&d->materialized);
	*out = &w->base;
	return 0;
}
