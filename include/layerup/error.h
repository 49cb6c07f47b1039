/*
 * layerup/error.h - error codes and the error record every call fills in.
 *
 * Every function returns int: 0 on success, a negative LUP_E* code on
 * failure.  The human message travels in a caller-owned lup_error passed as
 * the last argument (it may be NULL).  We do not keep a "last error" inside
 * shared handles: a store is used by several threads at once, and a message
 * stored in it would race.
 */
#ifndef LAYERUP_ERROR_H
#define LAYERUP_ERROR_H

#include <stdarg.h>
#include <stdint.h>

#include "layerup/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Error codes.  Names follow the OCI distribution error codes where one
 * exists; lup_error_name() gives the string form ("BLOB_UNKNOWN", ...). */
enum {
	LUP_OK = 0,
	LUP_EBLOB_UNKNOWN = -1,        /* no such blob (or not linked in repo) */
	LUP_EBLOB_UPLOAD_INVALID = -2, /* upload exists but is unusable */
	LUP_EBLOB_UPLOAD_UNKNOWN = -3, /* no such upload */
	LUP_EDIGEST_INVALID = -4,      /* bad digest syntax or content mismatch */
	LUP_ENAME_INVALID = -5,        /* repository name outside the grammar */
	LUP_ESIZE_INVALID = -6,        /* size does not match / over the limit */
	LUP_ERANGE_INVALID = -7,       /* write offset != current size (416) */
	LUP_EDENIED = -8,              /* refused by policy */
	LUP_EUNSUPPORTED = -9,         /* operation or algorithm not supported */
	LUP_EPATH_NOT_FOUND = -10,     /* driver: no such path */
	LUP_EINVALID_PATH = -11,       /* driver: path outside the path grammar */
	LUP_EINVALID_OFFSET = -12,     /* driver: negative reader offset */
	LUP_ELOCKED = -13,             /* another writer holds the upload */
	LUP_EIO = -14                  /* anything else (I/O, memory, ...) */
};

#define LUP_ERROR_MSG_MAX 512
#define LUP_ERROR_PATH_MAX 1024

/* An error record.  Zero-initialise it (or call lup_error_clear). */
typedef struct lup_error {
	int code;                        /* LUP_E*, LUP_OK when clear */
	int transient;                   /* 1: retrying the same call may succeed */
	int64_t offset;                  /* INVALID_OFFSET/RANGE_INVALID, else -1 */
	char path[LUP_ERROR_PATH_MAX];   /* path concerned, "" if none */
	char message[LUP_ERROR_MSG_MAX]; /* one line, no trailing newline */
} lup_error;

/* Reset an error record to "no error". NULL is accepted. */
LUP_API void lup_error_clear(lup_error *err);

/* Fill err (if not NULL) with code, path (may be NULL) and a printf-style
 * message; returns code so that callers can `return lup_error_set(...)`. */
LUP_API int lup_error_set(lup_error *err, int code, const char *path,
			  const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Same as lup_error_set with a va_list. */
LUP_API int lup_error_vset(lup_error *err, int code, const char *path,
			   const char *fmt, va_list ap);

/* Copy src into dst (either may be NULL); returns src->code. */
LUP_API int lup_error_copy(lup_error *dst, const lup_error *src);

/* Stable name of a code ("PATH_NOT_FOUND"); "UNKNOWN" for anything else. */
LUP_API const char *lup_error_name(int code);

/* Code for a name as lup_error_name returns it; LUP_EIO if unknown. */
LUP_API int lup_error_code(const char *name);

#ifdef __cplusplus
}
#endif
#endif
