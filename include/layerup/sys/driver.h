/*
 * layerup/sys/driver.h - the storage driver contract, for driver authors.
 *
 * Users of the engine need only "layerup.h" (opaque lup_driver/lup_reader
 * handles, the built-in drivers); this header is the second tier, as in
 * libgit2's git2/sys/: the vtables and the helpers a driver is built from.
 *
 * A driver is a versioned vtable (libgit2's odb backends, SQLite's VFS).
 * An implementation embeds `lup_driver` as its FIRST member, fills in the
 * methods it supports, calls lup_driver_init() and hands out the base
 * pointer.  Two more vtables hang off it: a streaming reader and an
 * appending writer.
 *
 * Paths are absolute and '/'-separated, matching the registry's
 * `^(/[A-Za-z0-9._-]+)+$` with no "." or ".." component; "/" alone is
 * accepted by stat and list.  The lup_driver_* wrappers below validate every
 * path, so implementations receive valid paths only.  Call drivers through
 * the wrappers, never through the vtable directly: the wrappers also name
 * the driver in every error message and sort list results.
 *
 * Errors: methods return 0 or a negative LUP_E* code and fill `err`.
 * PATH_NOT_FOUND for a missing path, INVALID_OFFSET for a negative offset,
 * INVALID_PATH for a path outside the grammar and (filesystem driver) for
 * a valid path that meets a symlink in the tree, IO (with err->transient
 * set when a retry may help) for anything else.
 *
 * Threads: a driver may be called from several threads at once (each on its
 * own reader/writer); readers and writers are used by one thread at a time.
 */
#ifndef LAYERUP_SYS_DRIVER_H
#define LAYERUP_SYS_DRIVER_H

#include <stddef.h>
#include <stdint.h>

#include "layerup/common.h"
#include "layerup/driver.h"
#include "layerup/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Versions of the three vtables (each struct has its own).  Driver
 * version 2: writer() may be asked for LUP_WRITE_NEW; writer version 2
 * adds publish.  Drivers and writers of version 1 keep working: the
 * wrappers ask them for append = 0 instead and treat publish as absent. */
#define LUP_DRIVER_VERSION 2
#define LUP_READER_VERSION 1
#define LUP_WRITER_VERSION 2

/* A growable byte buffer (binary safe). Zero-initialise before use. */
typedef struct lup_buf {
	unsigned char *data; /* may be NULL when len == 0 */
	size_t len;
	size_t cap;
} lup_buf;

/* Append n bytes; 0 or LUP_EIO when out of memory. */
LUP_API int lup_buf_append(lup_buf *b, const void *p, size_t n);
/* Release the memory and reset to empty. */
LUP_API void lup_buf_free(lup_buf *b);

/* A list of heap strings, owned by the list. */
typedef struct lup_strlist {
	char **items;
	size_t count;
	size_t cap;
} lup_strlist;

/* Append a copy of s; 0 or LUP_EIO when out of memory. */
LUP_API int lup_strlist_push(lup_strlist *l, const char *s);
/* Sort bytewise ascending. */
LUP_API void lup_strlist_sort(lup_strlist *l);
/* Free every string and the array; the list becomes empty. */
LUP_API void lup_strlist_free(lup_strlist *l);

/* writer()'s append argument for a path known to be new (see above). */
#define LUP_WRITE_NEW 2

/* What stat reports.  Directories are implicit: a path that is a prefix of
 * some file is a directory of size 0. */
typedef struct lup_stat {
	int64_t size;     /* bytes; 0 for a directory */
	int64_t mtime_ns; /* modification time, ns since the epoch */
	int is_dir;
} lup_stat;

typedef struct lup_writer lup_writer;

/* A streaming reader, positioned by driver->reader(path, offset). */
struct lup_reader {
	unsigned version; /* LUP_READER_VERSION */
	/* Read up to n bytes into buf.  Returns the count (> 0), 0 at end of
	 * file, or a negative LUP_E* code with err filled. */
	int64_t (*read)(lup_reader *r, void *buf, size_t n, lup_error *err);
	/* Release the reader (and free it). Called exactly once. */
	void (*close)(lup_reader *r);
};

/* An appending writer from driver->writer(path, append).
 * Lifecycle: write* then commit (content readable and, if the driver was
 * configured so, durable) and finally close; or cancel (content removed)
 * then close; or (version 2) publish then close.  close alone flushes so
 * that the content can be continued later with append.  close is mandatory
 * and frees the writer. */
struct lup_writer {
	unsigned version; /* LUP_WRITER_VERSION */
	/* Append all n bytes or fail.  On failure some prefix may have been
	 * written: size() tells how much. */
	int (*write)(lup_writer *w, const void *buf, size_t n, lup_error *err);
	/* Bytes in the file, including what existed before an append open. */
	int64_t (*size)(lup_writer *w);
	/* Make everything written readable (and durable with fsync on). */
	int (*commit)(lup_writer *w, lup_error *err);
	/* Remove what this writer wrote (the whole file). */
	int (*cancel)(lup_writer *w, lup_error *err);
	/* Flush, release and free.  Returns a flush error, if any. */
	int (*close)(lup_writer *w, lup_error *err);

	/* Version 2, optional (NULL, or absent in a version-1 writer): the
	 * content is complete; store it at dst, a path of its own, instead of
	 * committing it at the writer's path, unless dst already exists.
	 * sha256_hex is the SHA-256 the content has (64 lowercase hex digits)
	 * or NULL; a driver that checks it refuses different content with
	 * DIGEST_INVALID.  Returns 0 when dst now holds exactly the bytes
	 * written, 1 when dst existed and was left alone, UNSUPPORTED when
	 * this writer cannot (nothing done: commit and move instead), or
	 * another error with the writer unchanged (it may still commit,
	 * cancel or close).  After 0 or 1 only close remains (it stores
	 * nothing), and the writer's own path holds some prefix of the
	 * content, possibly none, until the caller removes it.  It lets a
	 * store whose blob is content-addressed write it once (the S3 driver:
	 * one PutObject instead of a multipart upload, a copy and a delete).
	 * Writers from lup_driver_writer have it exactly when the driver's
	 * writer has it. */
	int (*publish)(lup_writer *w, const char *dst, const char *sha256_hex,
		       lup_error *err);
};

/* The driver vtable.  Methods marked optional may be NULL. */
struct lup_driver {
	unsigned version;  /* LUP_DRIVER_VERSION */
	const char *name;  /* "filesystem", "inmemory", ...: in every error */

	/* Whole object into out (out is empty on entry). */
	int (*get_content)(lup_driver *d, const char *path, lup_buf *out,
			   lup_error *err);
	/* Create or replace (truncate) path with exactly len bytes; parents are
	 * created.  Should be atomic: readers see the old or the new content. */
	int (*put_content)(lup_driver *d, const char *path, const void *data,
			   size_t len, lup_error *err);
	/* Open a reader at offset (>= 0; past the end gives an empty reader). */
	int (*reader)(lup_driver *d, const char *path, int64_t offset,
		      lup_reader **out, lup_error *err);
	/* Open a writer.  append=0 truncates or creates; append=1 continues
	 * the existing content (size() reports it before any write);
	 * LUP_WRITE_NEW (version 2) creates a path the caller knows to be new
	 * (a fresh random name): nothing old there needs clearing.  Such a
	 * path may be created lazily (the S3 driver: on the first full part,
	 * commit or close), provided that stat and an append open by whoever
	 * holds the lock of its directory next see it, empty, until then. */
	int (*writer)(lup_driver *d, const char *path, int append,
		      lup_writer **out, lup_error *err);
	int (*stat)(lup_driver *d, const char *path, lup_stat *out,
		    lup_error *err);
	/* Direct children as absolute paths (any order; the wrapper sorts). */
	int (*list)(lup_driver *d, const char *path, lup_strlist *out,
		    lup_error *err);
	/* Rename src to dst, replacing dst; parents of dst are created. */
	int (*move)(lup_driver *d, const char *src, const char *dst,
		    lup_error *err);
	/* Remove path recursively (never a sibling that merely shares a
	 * prefix: deleting /a keeps /ab). */
	int (*remove)(lup_driver *d, const char *path, lup_error *err);

	/* Optional: take an exclusive, non-blocking lock named by path (the
	 * path exists: a file or a directory; the store locks an upload's
	 * directory).  LUP_ELOCKED when someone else holds it.  The lock must
	 * exclude other handles in this process too, and must not be lost
	 * when a file inside a locked directory is replaced.  *token is passed
	 * back to unlock.  Without these methods uploads are not locked. */
	int (*lock)(lup_driver *d, const char *path, void **token,
		    lup_error *err);
	void (*unlock)(lup_driver *d, void *token);

	/* Optional: release the driver itself (called by the last release). */
	void (*free)(lup_driver *d);

	/* Reserved for the core (the reference count): set by lup_driver_init,
	 * changed only atomically by lup_driver_retain/release.  Drivers never
	 * touch it; it is a plain int so that this header compiles as C++. */
	int refcount_;
};

/* Prepare a driver whose methods are filled in: checks the version and sets
 * the reference count to 1.  LUP_EUNSUPPORTED for an unknown version. */
LUP_API int lup_driver_init(lup_driver *d, unsigned version, lup_error *err);

/* 1 when path is valid for ordinary operations, 0 otherwise. */
LUP_API int lup_path_valid(const char *path);

/* Validated, error-decorated entry points (see the top of this file).
 * Errors read "<driver name>: <message>". */
LUP_API int lup_driver_get_content(lup_driver *d, const char *path,
				   lup_buf *out, lup_error *err);
LUP_API int lup_driver_put_content(lup_driver *d, const char *path,
				   const void *data, size_t len,
				   lup_error *err);
LUP_API int lup_driver_reader(lup_driver *d, const char *path, int64_t offset,
			      lup_reader **out, lup_error *err);
LUP_API int lup_driver_writer(lup_driver *d, const char *path, int append,
			      lup_writer **out, lup_error *err);
LUP_API int lup_driver_stat(lup_driver *d, const char *path, lup_stat *out,
			    lup_error *err);
/* Sorted absolute child paths; a missing directory is PATH_NOT_FOUND. */
LUP_API int lup_driver_list(lup_driver *d, const char *path, lup_strlist *out,
			    lup_error *err);
LUP_API int lup_driver_move(lup_driver *d, const char *src, const char *dst,
			    lup_error *err);
LUP_API int lup_driver_delete(lup_driver *d, const char *path, lup_error *err);
/* Lock wrappers: without driver support lock succeeds with a NULL token. */
LUP_API int lup_driver_lock(lup_driver *d, const char *path, void **token,
			    lup_error *err);
LUP_API void lup_driver_unlock(lup_driver *d, void *token);

#ifdef __cplusplus
}
#endif
#endif
