/*
 * layerup/driver.h - storage drivers as users of the engine see them:
 * opaque handles, reference counting, blob readers and the built-in drivers.
 *
 * A store runs on one driver (the filesystem, memory, S3, or one of your
 * own).  Writing a driver of your own: include "layerup/sys/driver.h",
 * which has the vtables behind these handles.
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

/* Version 2 added resolve; version 1 structs are still accepted. */
#define LUP_FS_OPTIONS_VERSION 2

/* How the filesystem driver resolves paths below its root (both confine
 * them and never follow a symlink; see lup_driver_filesystem). */
enum {
	LUP_FS_RESOLVE_AUTO = 0,    /* openat2 where the kernel allows it */
	LUP_FS_RESOLVE_WALK = 1,    /* always the O_NOFOLLOW openat walk */
	LUP_FS_RESOLVE_OPENAT2 = 2  /* (reported by lup_fs_resolver only) */
};

typedef struct lup_fs_options {
	unsigned version; /* LUP_FS_OPTIONS_VERSION */
	int fsync;        /* fsync files on commit/put and their directories */
	int resolve;      /* LUP_FS_RESOLVE_AUTO or LUP_FS_RESOLVE_WALK */
} lup_fs_options;

#define LUP_FS_OPTIONS_INIT { LUP_FS_OPTIONS_VERSION, 0, LUP_FS_RESOLVE_AUTO }

/* The filesystem driver rooted at root (created if missing).  opts may be
 * NULL.  Writers use O_APPEND; small files are replaced via temp+rename
 * (temporaries are named ".lup~<16 hex>"); locks are flock(2) locks (they
 * exclude other handles and processes).
 *
 * Confinement: the root is resolved once, here (it may be a symlink, or
 * lie under one), and held open.  Every path below it is resolved from that
 * descriptor without following any symlink: openat2(RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS) where the kernel offers it,
 * else (ENOSYS, EPERM from a seccomp filter, LUP_FS_RESOLVE_WALK, or the
 * environment variable LAYERUP_FS_RESOLVE=walk) an openat walk that opens
 * each component with O_NOFOLLOW from its parent's descriptor.  Either way
 * a concurrent swap of a directory for a symlink cannot lead outside.  A
 * symlink met below the root fails the call with LUP_EINVALID_PATH (the
 * message says "<path> is a symlink (not followed)", err->path names the
 * link); list() still lists it, and delete removes a link as a link, never
 * its target.  Only regular files are opened for reading and writing.
 * *out holds one reference: lup_driver_release it. */
LUP_API int lup_driver_filesystem(lup_driver **out, const char *root,
				  const lup_fs_options *opts, lup_error *err);

/* The resolver a filesystem driver uses (LUP_FS_RESOLVE_OPENAT2 or
 * LUP_FS_RESOLVE_WALK); -1 when d is not a filesystem driver. */
LUP_API int lup_fs_resolver(const lup_driver *d);

/* Called for each stale temporary: its path (the directory's driver path
 * plus "/.lup~<hex>"), modification time, size, and whether it was
 * removed. */
typedef void (*lup_fs_temp_fn)(void *arg, const char *path, int64_t mtime_ns,
			       int64_t size, int removed);

/* Temporaries a killed process left behind.  put_content's ".lup~<hex>"
 * files are named outside the path grammar, so list() and the store never
 * see them.  This walks the tree under dir (a driver path, "/" allowed;
 * never through a symlink, to a bounded depth) and calls fn (may be NULL)
 * for every temporary modified before before_ns (ns since the epoch); with
 * remove set it unlinks each first.  A temporary a running put_content
 * still uses is younger than any sensible cut-off (and put_content starts
 * over when its temporary vanishes).  Returns 0; PATH_NOT_FOUND when dir
 * is missing; IO when some could not be removed (after trying all);
 * UNSUPPORTED when d is not a filesystem driver. */
LUP_API int lup_fs_temporaries(lup_driver *d, const char *dir,
			       int64_t before_ns, int remove,
			       lup_fs_temp_fn fn, void *arg, lup_error *err);

/* The in-memory driver: reference semantics for tests and prototyping.
 * *out holds one reference: lup_driver_release it. */
LUP_API int lup_driver_memory(lup_driver **out, lup_error *err);

#ifdef __cplusplus
}
#endif
#endif
