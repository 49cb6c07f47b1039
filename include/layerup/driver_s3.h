/*
 * layerup/driver_s3.h - the S3 driver (AWS Signature V4 over libcurl).
 *
 * Keys are the registry's layout under an optional prefix (the registry's
 * `rootdirectory`); an upload's data is a multipart upload keyed to its
 * data path, as the registry's own S3 driver does, so the two can continue
 * each other's uploads.  Tested against Ceph RGW and Swift's s3api.
 */
#ifndef LAYERUP_DRIVER_S3_H
#define LAYERUP_DRIVER_S3_H

#include <stdint.h>

#include "layerup/common.h"
#include "layerup/driver.h"
#include "layerup/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LUP_S3_OPTIONS_VERSION 1

typedef struct lup_s3_options {
	unsigned version;       /* LUP_S3_OPTIONS_VERSION */
	const char *endpoint;   /* "http(s)://host[:port]"; NULL: $AWS_ENDPOINT_URL */
	const char *region;     /* NULL: $AWS_REGION, else "us-east-1" */
	const char *bucket;     /* required */
	const char *access_key; /* NULL: $AWS_ACCESS_KEY_ID */
	const char *secret_key; /* NULL: $AWS_SECRET_ACCESS_KEY */
	const char *prefix;     /* key prefix ("rootdirectory"), NULL: none */
	int virtual_host;       /* 1: bucket.host addressing; 0: path-style */
	int no_verify_tls;      /* 1: accept any TLS certificate */
	const char *ca_file;    /* CA bundle for TLS, NULL: system default */
	int64_t part_size;      /* multipart part size, >= 5 MiB; 0: 10 MiB */
	long timeout_s;         /* per request, 0: 300 s */
	int64_t lock_ttl_s;     /* a lock whose holder died is taken over
				 * after this many seconds (live holders
				 * renew theirs as they send); 0: 60 */
	int64_t copy_part_size; /* server-side copies (move, resume of a
				 * completed object) above this size go as a
				 * multipart copy in parts of this size;
				 * 5 MiB .. 5 GiB, 0: 5 GiB */
	int list_page;          /* entries per listing request (keys,
				 * multipart uploads, parts): 1..1000,
				 * 0: 1000 (S3's maximum) */
	int upload_concurrency; /* parts in flight per writer, each on a
				 * thread of its own with a copy of its
				 * bytes (memory: one part buffer plus one
				 * per part in flight); 1: parts are sent by
				 * the writing thread; 1..16, 0: 1 */
} lup_s3_options;

#define LUP_S3_OPTIONS_INIT { LUP_S3_OPTIONS_VERSION, 0, 0, 0, 0, 0, 0, \
			      0, 0, 0, 0, 0, 0, 0, 0, 0 }

/* Traffic counters (bytes of request and response bodies, requests). */
typedef struct lup_s3_counters {
	int64_t bytes_sent;
	int64_t bytes_received;
	int64_t requests;
} lup_s3_counters;

/* Create an S3 driver.  Nothing is sent until the first operation. */
LUP_API int lup_driver_s3(lup_driver **out, const lup_s3_options *opts,
			  lup_error *err);

/* Read the counters of an S3 driver (0 if d is not one). */
LUP_API int lup_driver_s3_counters(lup_driver *d, lup_s3_counters *out);

/* Requests by kind (S3 operation), for cost accounting: kind runs from 0
 * while lup_driver_s3_request_kind(kind) is not NULL. */
LUP_API const char *lup_driver_s3_request_kind(int kind);
/* Requests of that kind sent by d so far (0 if d is not an S3 driver or
 * kind is out of range). */
LUP_API int64_t lup_driver_s3_requests(lup_driver *d, int kind);

#ifdef __cplusplus
}
#endif
#endif
