/*
 * s3_internal.h - what the S3 driver's files share: the driver record, one
 * signed HTTP request, the error mapping and the few XML lookups S3 answers
 * need.  Not installed.
 */
#ifndef LUP_S3_INTERNAL_H
#define LUP_S3_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "drivers/s3/s3_sigv4.h"
#include "layerup/driver_s3.h"
#include "layerup/sys/driver.h"

/* The traffic counters as the driver keeps them (lup_s3_counters is the
 * public snapshot). */
/* Request kinds (lup_driver_s3_request_kind names them). */
enum {
	S3K_HEAD, S3K_GET, S3K_PUT, S3K_COPY, S3K_DELETE, S3K_LIST,
	S3K_DELETE_MANY, S3K_MP_CREATE, S3K_MP_PART, S3K_MP_PART_COPY,
	S3K_MP_COMPLETE, S3K_MP_ABORT, S3K_MP_LIST_UPLOADS,
	S3K_MP_LIST_PARTS, S3K_OTHER, S3K_N
};

typedef struct lup_s3_counters_atomic {
	atomic_llong bytes_sent;
	atomic_llong bytes_received;
	atomic_llong requests;
	atomic_llong kinds[S3K_N];
} lup_s3_counters_atomic;

#define S3_POOL 8
#define S3_MIN_PART (5 * 1024 * 1024)
#define S3_MAX_KV 10

typedef struct s3_driver {
	lup_driver base;
	char *endpoint;   /* "http://127.0.0.1:8000", no trailing slash */
	char *host;       /* Host header value */
	char *bucket;
	char *prefix;     /* "" or "a/b" (no leading or trailing slash) */
	char *region;
	char *access_key;
	char *secret_key;
	char *ca_file;
	int path_style;
	int verify_tls;
	long timeout_s;
	size_t part_size;
	int64_t copy_part; /* server-side copies above this go in parts */
	int page;          /* keys, uploads or parts per listing request */
	int concurrency;   /* parts in flight per writer */
	atomic_int no_cond_put; /* the server refused If-None-Match (501) */
	/* Multipart uploads this driver completed for a reader
	 * (s3_materialize): a writer that sees it change checks whether its
	 * own upload was one of them. */
	atomic_long materialized;
	int64_t lock_ttl_s;
	pthread_mutex_t mu; /* guards pool */
	void *pool[S3_POOL];
	int npool;
	pthread_mutex_t lock_mu; /* guards locks and lazy */
	struct s3_lock_tok *locks; /* leases held through this driver */
	struct s3_lazy_reg *lazy; /* writers that created no upload yet */
	lup_s3_counters_atomic ctr;
} s3_driver;

typedef struct s3_req {
	const char *method;
	const char *key;  /* object key (prefix applied); NULL: the bucket */
	s3_kv query[S3_MAX_KV];
	size_t nq;
	s3_kv hdr[S3_MAX_KV]; /* lowercase names; all are signed */
	size_t nh;
	const void *body;
	size_t blen;
	int sign_payload; /* 1: hash the body; 0: UNSIGNED-PAYLOAD */
	const char *payload_sha256; /* the body's hash when known (signed) */
	int head;         /* HEAD: no body expected */
	lup_buf *sink;    /* 2xx body goes here instead of resp->body */
} s3_req;

typedef struct s3_resp {
	long status;
	lup_buf body;
	char etag[128];       /* without quotes */
	int64_t length;       /* Content-Length, -1 if absent */
	int64_t mtime_ns;     /* Last-Modified, 0 if absent */
	char code[64];        /* <Code> of an error body, "" if none */
} s3_resp;

/* Send one signed request.  0 when an HTTP answer arrived (any status, see
 * resp->status); LUP_EIO with err->transient for transport failures
 * (connect, reset, timeout).  resp must be zeroed; free with s3_resp_free. */
int s3_do(s3_driver *d, const s3_req *r, s3_resp *resp, lup_error *err);
void s3_resp_free(s3_resp *resp);

/* Send n (<= S3_PAR) independent requests at once, each on a connection of
 * its own (n - 1 threads; one round trip instead of n).  rcs[i] and
 * errs[i] (either may be NULL) get what s3_do returned for reqs[i]; 0 when
 * every request got an answer, else the first failure's code. */
/* Run fn(arg) on a thread of its own (or here, when no thread can be had)
 * until s3_bg_join: lookups that need no answer from each other overlap. */
typedef struct s3_bg {
	pthread_t th;
	int started;
} s3_bg;
void s3_bg_start(s3_bg *b, void *(*fn)(void *), void *arg);
void s3_bg_join(s3_bg *b);

#define S3_PAR 4
int s3_do_all(s3_driver *d, const s3_req *reqs, s3_resp *resps, int *rcs,
	      lup_error *errs, size_t n);

/* Map a non-2xx answer to a LUP_E* code with a message naming the server's
 * <Code> (never its <Message>, which RGW leaves empty). */
int s3_fail(const s3_resp *resp, const char *what, const char *path,
	    lup_error *err);

/* s3_fail for a request on a multipart upload: a 404 (NoSuchUpload, or
 * RGW's NoSuchKey after an abort) is LUP_EPATH_NOT_FOUND, "<what>: <Code>". */
int s3_fail_upload(const s3_resp *resp, const char *what, lup_error *err);

/* A listing that comes in pages (ListObjectsV2, ListMultipartUploads,
 * ListParts).  A truncated page names where the next begins: the value of
 * its element tag[i] goes out as the query parameter param[i] (a missing
 * second one as ""); the listing ends when the first is missing or empty. */
typedef struct s3_paging {
	const char *what;     /* the operation, for errors */
	const char *param[2]; /* NULL: unused */
	const char *tag[2];
	int upload;           /* errors as s3_fail_upload */
	int one_page;         /* the first page only */
} s3_paging;

/* One call per page with the page's XML body [p, end); nonzero stops. */
typedef int (*s3_page_fn)(void *ctx, const char *p, const char *end,
			  lup_error *err);

/* GET first (its query without the markers: at most S3_MAX_KV - 2
 * parameters) page by page, each page to fn.  0, or the first error. */
int s3_list_paged(s3_driver *d, const s3_req *first, const s3_paging *pg,
		  s3_page_fn fn, void *ctx, lup_error *err);

/* The object key of a driver path ("/a/b" -> "<prefix>/a/b"); heap. */
char *s3_key(const s3_driver *d, const char *path);
/* The driver path of an object key, or NULL when outside the prefix; heap. */
char *s3_path(const s3_driver *d, const char *key, size_t klen);

/* The x-amz-copy-source value of key ("/bucket/key", URI-encoded); heap,
 * NULL when memory runs out. */
char *s3_copy_source(const s3_driver *d, const char *key);

/* XML: find the next <tag>value</tag> in [p, end) (*val and *vlen get the
 * raw value, *next the position after the closing tag).  0 found, -1 not. */
int s3_xml_next(const char *p, const char *end, const char *tag,
		const char **val, size_t *vlen, const char **next);
/* Decode the five XML entities and numeric references into out (heap). */
char *s3_xml_text(const char *val, size_t vlen);

/* An ETag without its quotes ("\"abc\"" -> "abc"; servers quote it, RGW
 * compares If-Match unquoted) into out (n bytes, truncated). */
void s3_etag_unquote(char *out, size_t n, const char *v);
/* The same for the raw value of an XML <ETag> (entities decoded first).
 * 0, or -1 when memory runs out. */
int s3_xml_etag(const char *val, size_t vlen, char *out, size_t n);

/* Multipart helpers shared by the writer, stat, remove and purge
 * (s3_multipart.c). */
typedef struct s3_part {
	int number;
	int64_t size;
	char etag[128];
} s3_part;

typedef struct s3_parts {
	s3_part *items;
	size_t count, cap;
} s3_parts;

/* Newest in-progress multipart upload whose key is exactly key: upload id
 * into id (heap) or *id = NULL when there is none. */
int s3_find_upload(s3_driver *d, const char *key, char **id, lup_error *err);
/* Every in-progress multipart upload under key_prefix, as a flat list of
 * triples: items[3i] key, items[3i+1] upload id, items[3i+2] its start
 * (ISO 8601, "" when the server gave none). */
int s3_list_uploads(s3_driver *d, const char *key_prefix, lup_strlist *out,
		    lup_error *err);
int s3_list_parts(s3_driver *d, const char *key, const char *id,
		  s3_parts *out, lup_error *err);
int s3_abort(s3_driver *d, const char *key, const char *id, lup_error *err);
void s3_parts_free(s3_parts *p);
/* Append a copy of part.  0, or -1 when memory runs out. */
int s3_parts_push(s3_parts *p, const s3_part *part);

/* DELETE one object; a missing one is no error. */
int s3_delete(s3_driver *d, const char *key, lup_error *err);
/* Delete keys->items[from, to) (at most 1000) in one DeleteObjects. */
int s3_delete_batch(s3_driver *d, const lup_strlist *keys, size_t from,
		    size_t to, lup_error *err);

/* The lock (s3_lock.c): the driver's lock and unlock entries, and the
 * renewal of the leases this driver holds that are a third into their
 * life (the writer calls it as it sends parts). */
int s3_lock(lup_driver *drv, const char *path, void **token, lup_error *err);
void s3_unlock(lup_driver *drv, void *token);
void s3_renew_locks(s3_driver *d);

/* Lazy data (s3_lock.c).  A writer opened with LUP_WRITE_NEW creates its
 * multipart upload only when it first needs one (a part to send, a close
 * that leaves data behind), so a small upload finished in the session
 * that started it never creates one.  Until then its key is missing from
 * the bucket; the lease of its parent directory says so durably (a flag
 * in the lease body naming the key's last component), so that whoever
 * holds that lease next, after a crash, reads the missing key as empty
 * instead of as gone.
 *
 * s3_lazy_open: a writer at path (a driver path) has no upload yet.
 * s3_lazy_created: the upload at path exists now (the flag is spent).
 * s3_lazy_close: the writer at path goes (whatever it left).
 * s3_lazy_absent: 1 when path is missing by design: a lease held here on
 *   its parent carries the flag for it.
 * s3_lazy_clean: 1 when dir's lease was created by this driver for a new
 *   upload whose lazy writer never created a multipart upload, and it is
 *   certainly still held (see s3_remove); then keys gets the object keys
 *   this driver put below dir (none when it lost count).
 * s3_lazy_removed: dir was removed: nothing is pending below it. */
/* Object keys put below a directory (for s3_lazy_clean). */
typedef struct s3_keyrec {
	lup_strlist keys;
	int overflow; /* some were not recorded: list instead */
} s3_keyrec;

void s3_lazy_open(s3_driver *d, const char *path);
/* put_content of key (at path): recorded for the directories above it.
 * Call before the request (a failed PUT may still have stored it). */
void s3_lazy_put(s3_driver *d, const char *path, const char *key);
void s3_lazy_free_all(s3_driver *d);
void s3_lazy_created(s3_driver *d, const char *path);
void s3_lazy_close(s3_driver *d, const char *path);
int s3_lazy_absent(s3_driver *d, const char *path);
int s3_lazy_clean(s3_driver *d, const char *dir, lup_strlist *keys);
void s3_lazy_removed(s3_driver *d, const char *dir);

/* The writer (s3_writer.c). */
int s3_writer_open(s3_driver *d, const char *path, int append,
		   lup_writer **out, lup_error *err);
/* Complete the unfinished upload id at key so that its bytes can be read
 * (a resume that must re-hash a gap after a crash).  A later writer with
 * append continues from the object (server-side copy). */
int s3_materialize(s3_driver *d, const char *key, const char *id,
		   lup_error *err);
/* Copy src_key to dst_key server-side as a multipart copy (objects over
 * copy_part bytes; S3 copies at most 5 GiB in one request). */
int s3_copy_large(s3_driver *d, const char *src_key, const char *dst_key,
		  int64_t size, lup_error *err);
/* The key of the durable tail object kept for the multipart upload of key. */
char *s3_tail_key(const s3_driver *d, const char *key);

#endif
