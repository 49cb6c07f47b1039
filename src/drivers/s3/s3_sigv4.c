/*
 * s3_sigv4.c - AWS Signature Version 4 (the canonical request, the string
 * to sign, the derived key), see s3_sigv4.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "drivers/s3/s3_sigv4.h"
#include "layerup/sys/driver.h"

static void hex(const unsigned char *p, size_t n, char *out)
{
	static const char d[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = d[p[i] >> 4];
		out[2 * i + 1] = d[p[i] & 15];
	}
	out[2 * n] = '\0';
}

void s3_sha256_hex(const void *p, size_t n, char out[65])
{
	unsigned char md[32];
	unsigned int len = 0;

	EVP_Digest(p, n, md, &len, EVP_sha256(), NULL);
	hex(md, 32, out);
}

static int hmac(const void *key, size_t klen, const void *msg, size_t mlen,
		unsigned char out[32])
{
	unsigned int len = 32;

	return HMAC(EVP_sha256(), key, (int)klen, msg, mlen, out, &len) ? 0
									: -1;
}

int s3_uri_encode(const char *s, int keep_slash, char *out, size_t outlen)
{
	static const char d[] = "0123456789ABCDEF";
	size_t o = 0;

	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		int plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			    (c >= '0' && c <= '9') || c == '-' || c == '.' ||
			    c == '_' || c == '~' || (keep_slash && c == '/');
		if (o + (plain ? 1 : 3) >= outlen)
			return -1;
		if (plain) {
			out[o++] = (char)c;
		} else {
			out[o++] = '%';
			out[o++] = d[c >> 4];
			out[o++] = d[c & 15];
		}
	}
	out[o] = '\0';
	return (int)o;
}

typedef struct {
	char *k, *v;
} enc_kv;

static int kv_cmp(const void *a, const void *b)
{
	const enc_kv *x = a, *y = b;
	int c = strcmp(x->k, y->k);

	return c ? c : strcmp(x->v, y->v);
}

static int hdr_cmp(const void *a, const void *b)
{
	return strcmp(((const s3_kv *)a)->k, ((const s3_kv *)b)->k);
}

/* The canonical query string: encoded keys and values, sorted. */
static int canonical_query(const s3_sign_in *in, lup_buf *b)
{
	enc_kv *q = calloc(in->nquery ? in->nquery : 1, sizeof *q);
	int rc = -1;
	size_t i;

	if (!q)
		return -1;
	for (i = 0; i < in->nquery; i++) {
		size_t kl = strlen(in->query[i].k) * 3 + 1;
		size_t vl = strlen(in->query[i].v) * 3 + 1;
		q[i].k = malloc(kl);
		q[i].v = malloc(vl);
		if (!q[i].k || !q[i].v ||
		    s3_uri_encode(in->query[i].k, 0, q[i].k, kl) < 0 ||
		    s3_uri_encode(in->query[i].v, 0, q[i].v, vl) < 0) {
			i++;
			goto out;
		}
	}
	qsort(q, in->nquery, sizeof *q, kv_cmp);
	for (i = 0; i < in->nquery; i++) {
		if ((i && lup_buf_append(b, "&", 1)) ||
		    lup_buf_append(b, q[i].k, strlen(q[i].k)) ||
		    lup_buf_append(b, "=", 1) ||
		    lup_buf_append(b, q[i].v, strlen(q[i].v))) {
			i = in->nquery;
			goto out;
		}
	}
	rc = 0;
	i = in->nquery;
out:
	while (i-- > 0) {
		free(q[i].k);
		free(q[i].v);
	}
	free(q);
	return rc;
}

#define APPEND_S(b, s) lup_buf_append((b), (s), strlen(s))

int s3_sign(const s3_sign_in *in, char *out, size_t outlen)
{
	lup_buf creq = {0};
	s3_kv *h = NULL;
	char date[9], creq_hash[65], scope[128], sts[512], sig[65];
	char signed_names[1024];
	unsigned char k1[32], k2[32], k3[32], k4[32], s[32];
	char kdate[300];
	size_t i, sn = 0;
	int rc = -1;

	if (strlen(in->amz_date) != 16 || strlen(in->secret_key) > 256)
		return -1;
	memcpy(date, in->amz_date, 8);
	date[8] = '\0';
	h = malloc((in->nheaders ? in->nheaders : 1) * sizeof *h);
	if (!h)
		return -1;
	memcpy(h, in->headers, in->nheaders * sizeof *h);
	qsort(h, in->nheaders, sizeof *h, hdr_cmp);

	signed_names[0] = '\0';
	for (i = 0; i < in->nheaders; i++) {
		size_t kl = strlen(h[i].k);
		if (sn + kl + 2 >= sizeof signed_names)
			goto out;
		if (i)
			signed_names[sn++] = ';';
		memcpy(signed_names + sn, h[i].k, kl + 1);
		sn += kl;
	}

	if (APPEND_S(&creq, in->method) || APPEND_S(&creq, "\n") ||
	    APPEND_S(&creq, in->uri) || APPEND_S(&creq, "\n") ||
	    canonical_query(in, &creq) || APPEND_S(&creq, "\n"))
		goto out;
	for (i = 0; i < in->nheaders; i++)
		if (APPEND_S(&creq, h[i].k) || APPEND_S(&creq, ":") ||
		    APPEND_S(&creq, h[i].v) || APPEND_S(&creq, "\n"))
			goto out;
	if (APPEND_S(&creq, "\n") || APPEND_S(&creq, signed_names) ||
	    APPEND_S(&creq, "\n") || APPEND_S(&creq, in->payload_hash))
		goto out;
	s3_sha256_hex(creq.data, creq.len, creq_hash);

	if (snprintf(scope, sizeof scope, "%s/%s/s3/aws4_request", date,
		     in->region) >= (int)sizeof scope ||
	    snprintf(sts, sizeof sts, "AWS4-HMAC-SHA256\n%s\n%s\n%s",
		     in->amz_date, scope, creq_hash) >= (int)sizeof sts)
		goto out;
	snprintf(kdate, sizeof kdate, "AWS4%s", in->secret_key);
	if (hmac(kdate, strlen(kdate), date, 8, k1) ||
	    hmac(k1, 32, in->region, strlen(in->region), k2) ||
	    hmac(k2, 32, "s3", 2, k3) || hmac(k3, 32, "aws4_request", 12, k4) ||
	    hmac(k4, 32, sts, strlen(sts), s))
		goto out;
	hex(s, 32, sig);
	if (snprintf(out, outlen,
		     "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, "
		     "Signature=%s",
		     in->access_key, scope, signed_names,
		     sig) >= (int)outlen)
		goto out;
	rc = 0;
out:
	OPENSSL_cleanse(kdate, sizeof kdate);
	lup_buf_free(&creq);
	free(h);
	return rc;
}
