/*
 * s3_http.c - one signed S3 request over libcurl, the error mapping, key
 * naming and the small XML lookups the answers need.
 *
 * Easy handles are pooled per driver (connection reuse, no global state);
 * a request takes one from the pool or makes one, and gives it back.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "drivers/s3/s3_internal.h"

static CURL *handle_get(s3_driver *d)
{
	CURL *c = NULL;

	pthread_mutex_lock(&d->mu);
	if (d->npool > 0)
		c = d->pool[--d->npool];
	pthread_mutex_unlock(&d->mu);
	if (c)
		curl_easy_reset(c);
	else
		c = curl_easy_init();
	return c;
}

static void handle_put(s3_driver *d, CURL *c)
{
	pthread_mutex_lock(&d->mu);
	if (d->npool < S3_POOL) {
		d->pool[d->npool++] = c;
		c = NULL;
	}
	pthread_mutex_unlock(&d->mu);
	if (c)
		curl_easy_cleanup(c);
}

typedef struct {
	const unsigned char *p;
	size_t left;
} body_src;

static size_t read_cb(char *buf, size_t size, size_t n, void *arg)
{
	body_src *b = arg;
	size_t want = size * n;

	if (want > b->left)
		want = b->left;
	memcpy(buf, b->p, want);
	b->p += want;
	b->left -= want;
	return want;
}

typedef struct {
	s3_resp *resp;
	lup_buf *sink;
	int oom;
} sink_ctx;

static size_t write_cb(char *p, size_t size, size_t n, void *arg)
{
	sink_ctx *s = arg;
	lup_buf *b = &s->resp->body;

	/* Success bodies may go to the caller's buffer; error bodies never
	 * do, so that a failed GET leaves the caller's content untouched. */
	if (s->sink && s->resp->status >= 200 && s->resp->status < 300)
		b = s->sink;
	if (lup_buf_append(b, p, size * n) != 0) {
		s->oom = 1;
		return 0;
	}
	return size * n;
}

static int64_t parse_http_date(const char *v)
{
	struct tm tm;

	memset(&tm, 0, sizeof tm);
	if (!strptime(v, "%a, %d %b %Y %H:%M:%S GMT", &tm))
		return 0;
	return (int64_t)timegm(&tm) * 1000000000;
}

static size_t header_cb(char *p, size_t size, size_t n, void *arg)
{
	sink_ctx *s = arg;
	size_t len = size * n, i;
	char line[256];
	char *v;

	if (len >= sizeof line)
		return len;
	memcpy(line, p, len);
	line[len] = '\0';
	while (len && (line[len - 1] == '\r' || line[len - 1] == '\n'))
		line[--len] = '\0';
	if (strncmp(line, "HTTP/", 5) == 0) {
		/* A new response (after 100 Continue or a redirect). */
		char *sp = strchr(line, ' ');
		s->resp->status = sp ? strtol(sp + 1, NULL, 10) : 0;
		return size * n;
	}
	v = strchr(line, ':');
	if (!v)
		return size * n;
	*v++ = '\0';
	while (*v == ' ')
		v++;
	for (i = 0; line[i]; i++)
		line[i] = (char)tolower((unsigned char)line[i]);
	if (strcmp(line, "etag") == 0) {
		s3_etag_unquote(s->resp->etag, sizeof s->resp->etag, v);
	} else if (strcmp(line, "content-length") == 0) {
		s->resp->length = strtoll(v, NULL, 10);
	} else if (strcmp(line, "last-modified") == 0) {
		s->resp->mtime_ns = parse_http_date(v);
	}
	return size * n;
}

void s3_bg_start(s3_bg *b, void *(*fn)(void *), void *arg)
{
	b->started = pthread_create(&b->th, NULL, fn, arg) == 0;
	if (!b->started)
		fn(arg);
}

void s3_bg_join(s3_bg *b)
{
	if (b->started)
		pthread_join(b->th, NULL);
	b->started = 0;
}

typedef struct {
	pthread_t th;
	s3_driver *d;
	const s3_req *req;
	s3_resp *resp;
	lup_error err;
	int rc;
} s3_par_job;

static void *par_main(void *arg)
{
	s3_par_job *j = arg;

	j->rc = s3_do(j->d, j->req, j->resp, &j->err);
	return NULL;
}

int s3_do_all(s3_driver *d, const s3_req *reqs, s3_resp *resps, int *rcs,
	      lup_error *errs, size_t n)
{
	s3_par_job jobs[S3_PAR];
	int started[S3_PAR] = {0}, first = 0;

	if (n > S3_PAR)
		n = S3_PAR;
	for (size_t i = 0; i < n; i++) {
		jobs[i] = (s3_par_job){.d = d, .req = &reqs[i],
				       .resp = &resps[i]};
		lup_error_clear(&jobs[i].err);
		/* The last one runs here; one without a thread, too. */
		if (i + 1 < n &&
		    pthread_create(&jobs[i].th, NULL, par_main, &jobs[i]) == 0)
			started[i] = 1;
		else
			par_main(&jobs[i]);
	}
	for (size_t i = 0; i < n; i++) {
		if (started[i])
			pthread_join(jobs[i].th, NULL);
		if (rcs)
			rcs[i] = jobs[i].rc;
		if (errs)
			lup_error_copy(&errs[i], &jobs[i].err);
		if (jobs[i].rc && !first)
			first = jobs[i].rc;
	}
	return first;
}

void s3_resp_free(s3_resp *resp)
{
	lup_buf_free(&resp->body);
}

static void amz_now(char out[17])
{
	time_t t = time(NULL);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

/* "/bucket/key" (path-style) or "/key", URI-encoded. */
static char *canonical_uri(const s3_driver *d, const char *key)
{
	size_t n = 3 * (strlen(d->bucket) + (key ? strlen(key) : 0)) + 4;
	char *out = malloc(n);
	size_t o = 0;
	int w;

	if (!out)
		return NULL;
	out[o++] = '/';
	if (d->path_style) {
		if ((w = s3_uri_encode(d->bucket, 0, out + o, n - o)) < 0)
			goto bad;
		o += (size_t)w;
		if (key)
			out[o++] = '/';
	}
	if (key) {
		if ((w = s3_uri_encode(key, 1, out + o, n - o)) < 0)
			goto bad;
		o += (size_t)w;
	}
	out[o] = '\0';
	return out;
bad:
	free(out);
	return NULL;
}

static int append_query(lup_buf *url, const s3_req *r)
{
	for (size_t i = 0; i < r->nq; i++) {
		char k[512], v[2048];
		if (s3_uri_encode(r->query[i].k, 0, k, sizeof k) < 0 ||
		    s3_uri_encode(r->query[i].v, 0, v, sizeof v) < 0)
			return -1;
		if (lup_buf_append(url, i ? "&" : "?", 1) ||
		    lup_buf_append(url, k, strlen(k)) ||
		    lup_buf_append(url, "=", 1) ||
		    lup_buf_append(url, v, strlen(v)))
			return -1;
	}
	return 0;
}

static int has_query(const s3_req *r, const char *k)
{
	for (size_t i = 0; i < r->nq; i++)
		if (strcmp(r->query[i].k, k) == 0)
			return 1;
	return 0;
}

static int has_header(const s3_req *r, const char *k)
{
	for (size_t i = 0; i < r->nh; i++)
		if (strcmp(r->hdr[i].k, k) == 0)
			return 1;
	return 0;
}

/* Which S3 operation r is (for the per-kind counters). */
static int request_kind(const s3_req *r)
{
	const char *m = r->method;
	int upload = has_query(r, "uploadId");

	if (strcmp(m, "HEAD") == 0)
		return S3K_HEAD;
	if (strcmp(m, "GET") == 0)
		return has_query(r, "uploads")	 ? S3K_MP_LIST_UPLOADS
		       : upload			 ? S3K_MP_LIST_PARTS
		       : has_query(r, "list-type") ? S3K_LIST
						   : S3K_GET;
	if (strcmp(m, "PUT") == 0) {
		int copy = has_header(r, "x-amz-copy-source");
		if (upload)
			return copy ? S3K_MP_PART_COPY : S3K_MP_PART;
		return copy ? S3K_COPY : S3K_PUT;
	}
	if (strcmp(m, "POST") == 0)
		return has_query(r, "uploads") ? S3K_MP_CREATE
		       : upload		       ? S3K_MP_COMPLETE
		       : has_query(r, "delete") ? S3K_DELETE_MANY
						: S3K_OTHER;
	if (strcmp(m, "DELETE") == 0)
		return upload ? S3K_MP_ABORT : S3K_DELETE;
	return S3K_OTHER;
}

int s3_do(s3_driver *d, const s3_req *r, s3_resp *resp, lup_error *err)
{
	char date[17], phash[65], auth[512];
	s3_kv hdrs[S3_MAX_KV + 3];
	size_t nh = 0, i;
	char *uri = NULL;
	lup_buf url = {0};
	struct curl_slist *list = NULL;
	CURL *c = NULL;
	body_src src = {r->body, r->blen};
	sink_ctx sink = {resp, r->sink, 0};
	CURLcode cc;
	int rc = LUP_EIO;

	resp->length = -1;
	amz_now(date);
	if (r->payload_sha256)
		snprintf(phash, sizeof phash, "%s", r->payload_sha256);
	else if (r->sign_payload || !r->body)
		s3_sha256_hex(r->body ? r->body : "", r->blen, phash);
	else
		snprintf(phash, sizeof phash, "UNSIGNED-PAYLOAD");
	hdrs[nh++] = (s3_kv){"host", d->host};
	hdrs[nh++] = (s3_kv){"x-amz-content-sha256", phash};
	hdrs[nh++] = (s3_kv){"x-amz-date", date};
	for (i = 0; i < r->nh; i++)
		hdrs[nh++] = r->hdr[i];
	if (!(uri = canonical_uri(d, r->key)))
		goto oom;
	s3_sign_in in = {r->method, uri, r->query, r->nq, hdrs, nh, phash,
			 date, d->region, d->access_key, d->secret_key};
	if (s3_sign(&in, auth, sizeof auth) != 0)
		goto oom;

	if (lup_buf_append(&url, d->endpoint, strlen(d->endpoint)))
		goto oom;
	if (lup_buf_append(&url, uri, strlen(uri)) || append_query(&url, r) ||
	    lup_buf_append(&url, "", 1))
		goto oom;

	for (i = 0; i < nh; i++) {
		char line[2300];
		snprintf(line, sizeof line, "%s: %s", hdrs[i].k, hdrs[i].v);
		struct curl_slist *l2 = curl_slist_append(list, line);
		if (!l2)
			goto oom;
		list = l2;
	}
	{
		char line[600];
		snprintf(line, sizeof line, "Authorization: %s", auth);
		struct curl_slist *l2 = curl_slist_append(list, line);
		if (!l2 || !(list = l2, l2 = curl_slist_append(list, "Expect:")))
			goto oom;
		list = l2;
		if (!(l2 = curl_slist_append(list, "Content-Type:")))
			goto oom;
		list = l2;
	}
	if (!(c = handle_get(d)))
		goto oom;
	curl_easy_setopt(c, CURLOPT_URL, (char *)url.data);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, d->timeout_s);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &sink);
	if (!d->verify_tls) {
		curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	if (d->ca_file)
		curl_easy_setopt(c, CURLOPT_CAINFO, d->ca_file);
	if (r->head) {
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	} else if (strcmp(r->method, "PUT") == 0) {
		curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(c, CURLOPT_READFUNCTION, read_cb);
		curl_easy_setopt(c, CURLOPT_READDATA, &src);
		curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE,
				 (curl_off_t)r->blen);
	} else if (strcmp(r->method, "POST") == 0) {
		curl_easy_setopt(c, CURLOPT_POST, 1L);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS,
				 r->body ? (const char *)r->body : "");
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
				 (curl_off_t)r->blen);
	} else if (strcmp(r->method, "GET") != 0) {
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, r->method);
	}
	cc = curl_easy_perform(c);
	atomic_fetch_add(&d->ctr.requests, 1);
	atomic_fetch_add(&d->ctr.kinds[request_kind(r)], 1);
	atomic_fetch_add(&d->ctr.bytes_sent, (long long)(r->blen - src.left));
	if (cc != CURLE_OK) {
		if (sink.oom)
			goto oom;
		rc = lup_error_set(err, LUP_EIO, NULL, "%s %s: %s", r->method,
				   r->key ? r->key : d->bucket,
				   curl_easy_strerror(cc));
		if (err)
			err->transient = 1;
		curl_easy_cleanup(c);
		c = NULL;
		goto out;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status);
	{
		curl_off_t down = 0;
		curl_easy_getinfo(c, CURLINFO_SIZE_DOWNLOAD_T, &down);
		atomic_fetch_add(&d->ctr.bytes_received, (long long)down);
	}
	if (resp->status >= 300 && resp->body.len) {
		const char *v;
		size_t vl;
		const char *b = (const char *)resp->body.data;
		if (s3_xml_next(b, b + resp->body.len, "Code", &v, &vl, NULL) ==
			    0 &&
		    vl < sizeof resp->code) {
			memcpy(resp->code, v, vl);
			resp->code[vl] = '\0';
		}
	}
	rc = 0;
	goto out;
oom:
	rc = lup_error_set(err, LUP_EIO, NULL, "out of memory");
out:
	if (c)
		handle_put(d, c);
	curl_slist_free_all(list);
	lup_buf_free(&url);
	free(uri);
	return rc;
}

int s3_fail(const s3_resp *resp, const char *what, const char *path,
	    lup_error *err)
{
	const char *code = resp->code[0] ? resp->code : "";
	long st = resp->status;
	int rc;

	if (st == 404 && strcmp(code, "NoSuchBucket") == 0) {
		rc = lup_error_set(err, LUP_EIO, path,
				   "%s: NoSuchBucket (the bucket does not exist)",
				   what);
	} else if (st == 404) {
		rc = lup_error_set(err, LUP_EPATH_NOT_FOUND, path,
				   "%s: %s (404)", what, code[0] ? code : "not found");
	} else if (st == 403 || st == 401) {
		rc = lup_error_set(err, LUP_EDENIED, path, "%s: %s (%ld)", what,
				   code[0] ? code : "AccessDenied", st);
	} else if (st == 416) {
		rc = lup_error_set(err, LUP_EINVALID_OFFSET, path,
				   "%s: InvalidRange (416)", what);
	} else if (st == 412) {
		rc = lup_error_set(err, LUP_ELOCKED, path,
				   "%s: PreconditionFailed (412)", what);
	} else {
		rc = lup_error_set(err, LUP_EIO, path, "%s: %s (HTTP %ld)", what,
				   code[0] ? code : "error", st);
		if (err && (st >= 500 || strcmp(code, "SlowDown") == 0 ||
			    strcmp(code, "RequestTimeout") == 0 || st == 408 ||
			    st == 429))
			err->transient = 1;
	}
	return rc;
}

int s3_fail_upload(const s3_resp *resp, const char *what, lup_error *err)
{
	/* RGW says NoSuchKey after an abort, others NoSuchUpload: both mean
	 * the upload is gone. */
	if (resp->status == 404)
		return lup_error_set(err, LUP_EPATH_NOT_FOUND, NULL, "%s: %s",
				     what,
				     resp->code[0] ? resp->code : "NoSuchUpload");
	return s3_fail(resp, what, NULL, err);
}

int s3_list_paged(s3_driver *d, const s3_req *first, const s3_paging *pg,
		  s3_page_fn fn, void *ctx, lup_error *err)
{
	char *mark[2] = {NULL, NULL};
	int rc = 0;

	for (;;) {
		s3_req r = *first;
		s3_resp resp = {0};
		const char *p, *end, *v;
		size_t vl;
		int truncated = 0;

		for (int i = 0; mark[0] && i < 2 && pg->param[i]; i++)
			r.query[r.nq++] = (s3_kv){pg->param[i],
						  mark[i] ? mark[i] : ""};
		if ((rc = s3_do(d, &r, &resp, err)) != 0)
			break;
		if (resp.status != 200) {
			rc = pg->upload ? s3_fail_upload(&resp, pg->what, err)
					: s3_fail(&resp, pg->what, NULL, err);
			s3_resp_free(&resp);
			break;
		}
		p = (const char *)resp.body.data;
		end = p + resp.body.len;
		if (s3_xml_next(p, end, "IsTruncated", &v, &vl, NULL) == 0)
			truncated = vl == 4 && memcmp(v, "true", 4) == 0;
		for (int i = 0; i < 2; i++) {
			free(mark[i]);
			mark[i] = NULL;
			if (truncated && !pg->one_page && pg->tag[i] &&
			    s3_xml_next(p, end, pg->tag[i], &v, &vl, NULL) == 0 &&
			    !(mark[i] = s3_xml_text(v, vl)))
				rc = lup_error_set(err, LUP_EIO, NULL,
						   "out of memory");
		}
		if (rc == 0)
			rc = fn(ctx, p, end, err);
		s3_resp_free(&resp);
		/* Without a marker to go on from (or an empty one, which
		 * would start over) the listing ends here. */
		if (rc || !truncated || pg->one_page || !mark[0] || !mark[0][0])
			break;
	}
	free(mark[0]);
	free(mark[1]);
	return rc;
}

char *s3_key(const s3_driver *d, const char *path)
{
	size_t pl = strlen(d->prefix), n = pl + strlen(path) + 2;
	char *k = malloc(n);

	if (!k)
		return NULL;
	if (strcmp(path, "/") == 0)
		snprintf(k, n, "%s", d->prefix);
	else if (pl)
		snprintf(k, n, "%s%s", d->prefix, path);
	else
		snprintf(k, n, "%s", path + 1);
	return k;
}

char *s3_path(const s3_driver *d, const char *key, size_t klen)
{
	size_t pl = strlen(d->prefix);
	char *p;

	if (pl) {
		if (klen <= pl || memcmp(key, d->prefix, pl) != 0 ||
		    key[pl] != '/')
			return NULL;
		key += pl;
		klen -= pl;
		if (!(p = malloc(klen + 1)))
			return NULL;
		memcpy(p, key, klen);
		p[klen] = '\0';
		return p;
	}
	if (!(p = malloc(klen + 2)))
		return NULL;
	p[0] = '/';
	memcpy(p + 1, key, klen);
	p[klen + 1] = '\0';
	return p;
}

char *s3_copy_source(const s3_driver *d, const char *key)
{
	size_t n = 3 * (strlen(d->bucket) + strlen(key)) + 4;
	char *src = malloc(n);
	int w;

	if (!src)
		return NULL;
	/* Three bytes per input byte always suffice: encoding cannot fail. */
	src[0] = '/';
	w = s3_uri_encode(d->bucket, 0, src + 1, n - 1);
	src[w + 1] = '/';
	s3_uri_encode(key, 1, src + w + 2, n - (size_t)w - 2);
	return src;
}

int s3_xml_next(const char *p, const char *end, const char *tag,
		const char **val, size_t *vlen, const char **next)
{
	size_t tl = strlen(tag);

	while (p < end) {
		const char *lt = memchr(p, '<', (size_t)(end - p));
		if (!lt || (size_t)(end - lt) < tl + 2)
			return -1;
		if (memcmp(lt + 1, tag, tl) == 0 &&
		    (lt[tl + 1] == '>' || lt[tl + 1] == ' ' ||
		     lt[tl + 1] == '/')) {
			const char *gt = memchr(lt, '>', (size_t)(end - lt));
			if (!gt)
				return -1;
			if (gt[-1] == '/') { /* <Tag/> */
				*val = gt + 1;
				*vlen = 0;
				if (next)
					*next = gt + 1;
				return 0;
			}
			const char *v = gt + 1, *q = v;
			while (q < end) {
				const char *c = memchr(q, '<', (size_t)(end - q));
				if (!c || (size_t)(end - c) < tl + 3)
					return -1;
				if (c[1] == '/' && memcmp(c + 2, tag, tl) == 0 &&
				    c[tl + 2] == '>') {
					*val = v;
					*vlen = (size_t)(c - v);
					if (next)
						*next = c + tl + 3;
					return 0;
				}
				q = c + 1;
			}
			return -1;
		}
		p = lt + 1;
	}
	return -1;
}

void s3_etag_unquote(char *out, size_t n, const char *v)
{
	size_t vl = strlen(v);

	if (vl >= 2 && v[0] == '"' && v[vl - 1] == '"') {
		v++;
		vl -= 2;
	}
	snprintf(out, n, "%.*s", (int)(vl < n ? vl : n - 1), v);
}

int s3_xml_etag(const char *val, size_t vlen, char *out, size_t n)
{
	char *e = s3_xml_text(val, vlen);

	if (!e)
		return -1;
	s3_etag_unquote(out, n, e);
	free(e);
	return 0;
}

char *s3_xml_text(const char *val, size_t vlen)
{
	char *out = malloc(vlen + 1);
	size_t o = 0, i = 0;

	if (!out)
		return NULL;
	while (i < vlen) {
		if (val[i] != '&') {
			out[o++] = val[i++];
			continue;
		}
		static const struct {
			const char *e;
			char c;
		} ents[] = {{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'},
			    {"&quot;", '"'}, {"&apos;", '\''}};
		size_t k, done = 0;
		for (k = 0; k < sizeof ents / sizeof ents[0]; k++) {
			size_t el = strlen(ents[k].e);
			if (vlen - i >= el && memcmp(val + i, ents[k].e, el) == 0) {
				out[o++] = ents[k].c;
				i += el;
				done = 1;
				break;
			}
		}
		if (done)
			continue;
		if (vlen - i > 3 && val[i + 1] == '#') {
			/* Numeric references of ASCII only: keys here are the
			 * path grammar, anything else is refused later. */
			char *e = NULL;
			long cp = val[i + 2] == 'x'
					  ? strtol(val + i + 3, &e, 16)
					  : strtol(val + i + 2, &e, 10);
			if (e && e < val + vlen && *e == ';' && cp > 0 &&
			    cp < 128) {
				out[o++] = (char)cp;
				i = (size_t)(e - val) + 1;
				continue;
			}
		}
		out[o++] = val[i++];
	}
	out[o] = '\0';
	return out;
}
