/*
 * layerup/driver.h - storage drivers as users of the engine see them:
 * opaque handles, reference counting, blob readers and the built-in drivers.
 *
 * A store runs on one driver (the filesystem, memory, or one of your own).
 * Writing a driver of your own: include "layerup/sys/driver.h", which has
 * the vtables behind these handles.
 */
#ifndef LAYERUP_DRIVER_H
#define LAYERUP_DRIVER_H

#include <stddef.h>
#include <stdint.h>

#include "layerup/common.h"
#include "layerup/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A storage driver (opaque here; see layerup/sys/driver.h). */
typedef struct lup_driver lup_driver;

/* A streaming reader over one stored file (lup_store_open_blob). */
typedef struct lup_reader lup_reader;

/* Reference counting.  A driver starts with one reference, its creator's;
 * stores, open readers and Lua handles take their own, so a driver may be
 * released as soon as the store that uses it is open.  retain adds a
 * reference; release drops one and frees the driver with the last.  NULL
 * is accepted. */
LUP_API void lup_driver_retain(lup_driver *d);
LUP_API void lup_driver_release(lup_driver *d);

/* The driver's name ("filesystem", "inmemory", ...), as in its errors. */
LUP_API const char *lup_driver_name(const lup_driver *d);

/* Read up to n bytes into buf: the count (> 0), 0 at the end of the file,
 * or a negative LUP_E* code with err filled. */
LUP_API int64_t lup_reader_read(lup_reader *r, void *buf, size_t n,
				lup_error *err);

/* Close and free a reader (exactly once per reader; NULL is accepted). */
LUP_API void lup_reader_close(lup_reader *r);

/* Built-in drivers. */

#define LUP_FS_OPTIONS_VERSION 1

typedef struct lup_fs_options {
	unsigned version; /* LUP_FS_OPTIONS_VERSION */
	int fsync;        /* fsync files on commit/put and their directories */
} lup_fs_options;

#define LUP_FS_OPTIONS_INIT { LUP_FS_OPTIONS_VERSION, 0 }

/* The filesystem driver rooted at root (created if missing).  opts may be
 * NULL.  Writers use O_APPEND; small files are replaced via temp+rename;
 * locks are flock(2) locks (they exclude other handles and processes).
 * *out holds one reference: lup_driver_release it. */
LUP_API int lup_driver_filesystem(lup_driver **out, const char *root,
				  const lup_fs_options *opts, lup_error *err);

/* The in-memory driver: reference semantics for tests and prototyping.
 * *out holds one reference: lup_driver_release it. */
LUP_API int lup_driver_memory(lup_driver **out, lup_error *err);

#ifdef __cplusplus
}
#endif
#endif
