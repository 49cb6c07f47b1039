/*
 * s3_sigv4.h - AWS Signature Version 4 for S3 requests (OpenSSL HMAC).
 *
 * Kept apart from the HTTP code so that it can be checked against AWS's
 * published examples without a server.
 */
#ifndef LUP_S3_SIGV4_H
#define LUP_S3_SIGV4_H

#include <stddef.h>

/* One query parameter or header (value may be "" but not NULL). */
typedef struct s3_kv {
	const char *k;
	const char *v;
} s3_kv;

typedef struct s3_sign_in {
	const char *method;       /* "GET", "PUT", ... */
	const char *uri;          /* already URI-encoded absolute path */
	const s3_kv *query;       /* raw (not encoded) parameters, any order */
	size_t nquery;
	const s3_kv *headers;     /* lowercase names, trimmed values; must
				   * include host, x-amz-date and
				   * x-amz-content-sha256 */
	size_t nheaders;
	const char *payload_hash; /* hex sha256 or "UNSIGNED-PAYLOAD" */
	const char *amz_date;     /* "YYYYMMDDTHHMMSSZ" */
	const char *region;
	const char *access_key;
	const char *secret_key;
} s3_sign_in;

/* Write the Authorization header value into out (NUL-terminated).
 * Returns 0, or -1 when out is too small or memory runs out. */
int s3_sign(const s3_sign_in *in, char *out, size_t outlen);

/* Percent-encode s into out per SigV4 (unreserved A-Za-z0-9-._~ kept; '/'
 * kept when keep_slash).  Returns the length, or -1 if out is too small. */
int s3_uri_encode(const char *s, int keep_slash, char *out, size_t outlen);

/* Hex sha256 of n bytes into out[65]. */
void s3_sha256_hex(const void *p, size_t n, char out[65]);

#endif
