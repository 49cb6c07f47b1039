/*
 * s3_multipart.c - the multipart upload requests that the driver, the
 * writer and the lock all need (list, find, list parts, abort) and the
 * deletes: the layer below both driver_s3.c and s3_writer.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "drivers/s3/s3_internal.h"

static int oom(lup_error *err)
{
	return lup_error_set(err, LUP_EIO, NULL, "out of memory");
}

void s3_parts_free(s3_parts *p)
{
	free(p->items);
	memset(p, 0, sizeof *p);
}

int s3_parts_push(s3_parts *p, const s3_part *part)
{
	if (p->count == p->cap) {
		size_t nc = p->cap ? 2 * p->cap : 64;
		s3_part *ni = realloc(p->items, nc * sizeof *ni);
		if (!ni)
			return -1;
		p->items = ni;
		p->cap = nc;
	}
	p->items[p->count++] = *part;
	return 0;
}

/* One page of ListMultipartUploads: its uploads as triples. */
static int uploads_page(void *ctx, const char *p, const char *end,
			lup_error *err)
{
	lup_strlist *out = ctx;
	const char *v, *next;
	size_t vl;

	while (s3_xml_next(p, end, "Upload", &v, &vl, &next) == 0) {
		const char *kv, *iv, *tv;
		size_t kl, il, tl;
		if (s3_xml_next(v, v + vl, "Key", &kv, &kl, NULL) == 0 &&
		    s3_xml_next(v, v + vl, "UploadId", &iv, &il, NULL) == 0) {
			char *k = s3_xml_text(kv, kl), *id = s3_xml_text(iv, il);
			char *t = s3_xml_next(v, v + vl, "Initiated", &tv, &tl,
					      NULL) == 0
					  ? s3_xml_text(tv, tl)
					  : strdup("");
			int bad = !k || !id || !t || lup_strlist_push(out, k) ||
				  lup_strlist_push(out, id) ||
				  lup_strlist_push(out, t);
			free(k);
			free(id);
			free(t);
			if (bad)
				return oom(err);
		}
		p = next;
	}
	return 0;
}

int s3_list_uploads(s3_driver *d, const char *key_prefix, lup_strlist *out,
		    lup_error *err)
{
	static const s3_paging pg = {
		.what = "ListMultipartUploads",
		.param = {"key-marker", "upload-id-marker"},
		.tag = {"NextKeyMarker", "NextUploadIdMarker"}};
	s3_req r = {.method = "GET"};
	char page[16];

	snprintf(page, sizeof page, "%d", d->page);
	r.query[r.nq++] = (s3_kv){"uploads", ""};
	r.query[r.nq++] = (s3_kv){"prefix", key_prefix};
	r.query[r.nq++] = (s3_kv){"max-uploads", page};
	return s3_list_paged(d, &r, &pg, uploads_page, out, err);
}

int s3_find_upload(s3_driver *d, const char *key, char **id, lup_error *err)
{
	lup_strlist ups = {0};
	int rc;

	*id = NULL;
	if ((rc = s3_list_uploads(d, key, &ups, err)) != 0)
		return rc;
	/* Several uploads on one key (the registry never aborts the old
	 * ones): the last listed is the newest on RGW and AWS. */
	for (size_t i = 0; i + 2 < ups.count; i += 3)
		if (strcmp(ups.items[i], key) == 0) {
			free(*id);
			if (!(*id = strdup(ups.items[i + 1]))) {
				rc = oom(err);
				break;
			}
		}
	lup_strlist_free(&ups);
	return rc;
}

/* One page of ListParts: its parts appended to the s3_parts ctx. */
static int parts_page(void *ctx, const char *p, const char *end,
		      lup_error *err)
{
	s3_parts *out = ctx;
	const char *v, *next;
	size_t vl;

	while (s3_xml_next(p, end, "Part", &v, &vl, &next) == 0) {
		const char *nv, *sv, *ev;
		size_t nl, sl, el;
		if (s3_xml_next(v, v + vl, "PartNumber", &nv, &nl, NULL) == 0 &&
		    s3_xml_next(v, v + vl, "Size", &sv, &sl, NULL) == 0) {
			s3_part part = {0};
			part.number = (int)strtol(nv, NULL, 10);
			part.size = strtoll(sv, NULL, 10);
			/* Out of memory leaves the ETag empty. */
			if (s3_xml_next(v, v + vl, "ETag", &ev, &el, NULL) == 0)
				s3_xml_etag(ev, el, part.etag, sizeof part.etag);
			if (s3_parts_push(out, &part) != 0)
				return oom(err);
		}
		p = next;
	}
	return 0;
}

int s3_list_parts(s3_driver *d, const char *key, const char *id,
		  s3_parts *out, lup_error *err)
{
	static const s3_paging pg = {.what = "ListParts",
				     .param = {"part-number-marker"},
				     .tag = {"NextPartNumberMarker"},
				     .upload = 1};
	s3_req r = {.method = "GET", .key = key};
	char page[16];

	snprintf(page, sizeof page, "%d", d->page);
	r.query[r.nq++] = (s3_kv){"uploadId", id};
	r.query[r.nq++] = (s3_kv){"max-parts", page};
	return s3_list_paged(d, &r, &pg, parts_page, out, err);
}

int s3_abort(s3_driver *d, const char *key, const char *id, lup_error *err)
{
	s3_req r = {.method = "DELETE", .key = key};
	s3_resp resp = {0};
	int rc;

	r.query[r.nq++] = (s3_kv){"uploadId", id};
	rc = s3_do(d, &r, &resp, err);
	if (rc == 0 && resp.status != 204 && resp.status != 200 &&
	    resp.status != 404)
		rc = s3_fail(&resp, "AbortMultipartUpload", NULL, err);
	s3_resp_free(&resp);
	return rc;
}

int s3_delete_batch(s3_driver *d, const lup_strlist *keys, size_t from,
		    size_t to, lup_error *err)
{
	lup_buf body = {0};
	s3_req r = {.method = "POST", .sign_payload = 1};
	s3_resp resp = {0};
	char md5hdr[64];
	int rc;

	if (from >= to)
		return 0;
	if (lup_buf_append(&body, "<Delete><Quiet>true</Quiet>", 27))
		return oom(err);
	for (size_t i = from; i < to; i++) {
		const char *k = keys->items[i];
		if (lup_buf_append(&body, "<Object><Key>", 13) ||
		    lup_buf_append(&body, k, strlen(k)) ||
		    lup_buf_append(&body, "</Key></Object>", 15)) {
			lup_buf_free(&body);
			return oom(err);
		}
	}
	if (lup_buf_append(&body, "</Delete>", 9)) {
		lup_buf_free(&body);
		return oom(err);
	}
	/* DeleteObjects requires Content-MD5. */
	{
		unsigned char md[16];
		unsigned int ml = 0;
		static const char b64[] =
			"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
		char *o = md5hdr;
		EVP_Digest(body.data, body.len, md, &ml, EVP_md5(), NULL);
		for (int i = 0; i < 16; i += 3) {
			unsigned v = (unsigned)md[i] << 16;
			if (i + 1 < 16)
				v |= (unsigned)md[i + 1] << 8;
			if (i + 2 < 16)
				v |= md[i + 2];
			*o++ = b64[(v >> 18) & 63];
			*o++ = b64[(v >> 12) & 63];
			*o++ = i + 1 < 16 ? b64[(v >> 6) & 63] : '=';
			*o++ = i + 2 < 16 ? b64[v & 63] : '=';
		}
		*o = '\0';
	}
	r.query[r.nq++] = (s3_kv){"delete", ""};
	r.hdr[r.nh++] = (s3_kv){"content-md5", md5hdr};
	r.body = body.data;
	r.blen = body.len;
	rc = s3_do(d, &r, &resp, err);
	if (rc == 0 && resp.status != 200)
		rc = s3_fail(&resp, "DeleteObjects", NULL, err);
	s3_resp_free(&resp);
	lup_buf_free(&body);
	return rc;
}

int s3_delete(s3_driver *d, const char *key, lup_error *err)
{
	s3_req r = {.method = "DELETE", .key = key};
	s3_resp resp = {0};
	int rc = s3_do(d, &r, &resp, err);

	if (rc == 0 && resp.status != 204 && resp.status != 200 &&
	    resp.status != 404)
		rc = s3_fail(&resp, "DELETE", NULL, err);
	s3_resp_free(&resp);
	return rc;
}
