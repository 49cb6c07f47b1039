/*
 * driver_fs.c - the "filesystem" driver: driver path p lives at root + p.
 *
 * Layout and behaviour match the registry's filesystem driver (directories
 * 0755, files 0644, implicit parents), with these deliberate differences:
 *
 * - Confinement: the root is resolved once at open (it may be a symlink)
 *   and kept as a descriptor; every path below it is resolved from that
 *   descriptor without following any symlink (fs_resolve.c: openat2 with
 *   RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, or an O_NOFOLLOW openat walk),
 *   and the last component is reached with *at() calls and O_NOFOLLOW.  A
 *   symlink met below the root is INVALID_PATH ("... is a symlink (not
 *   followed)"), whichever operation meets it; delete removes a symlink
 *   it is asked to delete (or finds inside a tree) as a link, never what
 *   it points at.  Only regular files are opened (a FIFO or device in the
 *   tree is refused without blocking).
 * - put_content writes a temporary file next to the target and renames it
 *   over the target, so readers see the old or the new content, never a
 *   torn one.  Temporary names are ".lup~<16 hex>": '~' is outside the
 *   driver path grammar, so no valid driver path can name a temporary file,
 *   and list() skips every entry whose name is not a valid path component
 *   (temporaries included).  lup_fs_temporaries() finds (and removes) the
 *   ones a killed process left behind.
 * - Writers open the final path with O_APPEND and write straight through
 *   (no user-space buffer, one write(2) per call unless the kernel cuts it
 *   short), so a crash loses at most what the kernel had not yet flushed
 *   and size() is always the real file size.
 * - With the fsync option, put_content, commit, close (after writes), move
 *   and delete also fsync the directories whose entries changed.
 * - Locks are flock(2) locks on a descriptor owned by the token: they
 *   exclude other descriptors in this process (other handles, threads) as
 *   well as other processes.
 *
 * Error mapping: ENOENT is PATH_NOT_FOUND; ENOTDIR (a parent is a file) is
 * PATH_NOT_FOUND when reading and IO when writing; ELOOP (a symlink) is
 * INVALID_PATH; everything else is IO with strerror, transient for
 * EINTR/EAGAIN/ETIMEDOUT/EBUSY.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "drivers/fs_resolve.h"
#include "layerup/sys/driver.h"

/* Longest single read(2)/write(2) we issue; the kernel caps near 2 GiB. */
#define FS_IO_MAX ((size_t)1 << 30)
/* Temporary names: ".lup~" and 16 hex digits. */
#define FS_TMP_PREFIX ".lup~"
#define FS_TMP_LEN (sizeof(FS_TMP_PREFIX) - 1 + 16)
/* Deepest directory a tree walk descends into (repository names nest up to
 * ~128 components; anything deeper is not ours). */
#define FS_WALK_DEPTH 512

typedef struct {
	lup_driver base;
	int fsync;
	fsr_root root;
	atomic_uint_fast64_t tmp_seq; /* fallback entropy for temp names */
} fs_driver;

enum { FS_OPEN, FS_COMMITTED, FS_CANCELLED };

typedef struct {
	lup_reader base;
	int fd;
	char path[]; /* driver path, for messages */
} fs_reader;

typedef struct {
	lup_writer base;
	int fd;
	int dirfd; /* the directory holding the file (cancel, fsync) */
	int fsync;
	int state;
	int dirty;      /* written since the last fsync */
	int dir_synced; /* the directory entry has been made durable */
	int64_t size;
	const char *leaf; /* into path[] */
	char path[];      /* driver path */
} fs_writer;

typedef struct {
	int fd;
} fs_lock_token;

static int is_transient(int e)
{
	return e == EINTR || e == EAGAIN || e == EWOULDBLOCK ||
	       e == ETIMEDOUT || e == EBUSY;
}

static int fs_not_found(lup_error *err, const char *path)
{
	return lup_error_set(err, LUP_EPATH_NOT_FOUND, path,
			     "Path not found: %s", path);
}

/* A symlink below the root: never followed, always said.  comp is the
 * link's own driver path (n bytes of it), path the one asked for. */
static int fs_symlink(lup_error *err, const char *comp, size_t n,
		      const char *path)
{
	if (n >= strlen(path))
		return lup_error_set(err, LUP_EINVALID_PATH, path,
				     "%s is a symlink (not followed)", path);
	lup_error_set(err, LUP_EINVALID_PATH, NULL,
		      "%.*s is a symlink (not followed) on the way to %s",
		      (int)n, comp, path);
	if (err)
		snprintf(err->path, sizeof(err->path), "%.*s", (int)n, comp);
	return LUP_EINVALID_PATH;
}

/* An errno from an operation that creates or changes something. */
static int fs_err(lup_error *err, int e, const char *op, const char *path)
{
	char buf[128];
	const char *msg;

	if (e == ENOENT)
		return fs_not_found(err, path);
	if (e == ELOOP)
		return fs_symlink(err, path, strlen(path), path);
	msg = strerror_r(e, buf, sizeof(buf));
	lup_error_set(err, LUP_EIO, path, "%s %s: %s", op, path, msg);
	if (err)
		err->transient = is_transient(e);
	return LUP_EIO;
}

/* An errno from a lookup: a file where a directory should be also means
 * the path does not exist. */
static int fs_err_read(lup_error *err, int e, const char *op,
		       const char *path)
{
	return fs_err(err, e == ENOTDIR ? ENOENT : e, op, path);
}

/*
 * Open the directory that holds driver path `path` (not "/"), confined to
 * the root; *leaf points at the last component.  With create the missing
 * parents are made (writing); without, a missing or non-directory parent
 * is PATH_NOT_FOUND.  Returns the descriptor (>= 0) or a LUP_E* code.
 */
static int fs_parent(fs_driver *fs, const char *path, int create,
		     const char **leaf, lup_error *err)
{
	const char *slash = strrchr(path, '/');
	size_t n = (size_t)(slash - path), bad = 0;
	int fd;

	*leaf = slash + 1;
	/* path is "/a/b/c": the parent is "a/b" below the root. */
	fd = fsr_dir(&fs->root, path + 1, n ? n - 1 : 0, create, fs->fsync,
		     &bad);
	if (fd >= 0)
		return fd;
	if (-fd == ELOOP)
		return fs_symlink(err, path, bad + 1, path);
	if (create && -fd == ENOTDIR)
		return lup_error_set(err, LUP_EIO, path,
				     "not a directory: %.*s (making %s)",
				     (int)(bad + 1), path, path);
	if (create)
		return fs_err(err, -fd == ENOENT ? EIO : -fd, "mkdir", path);
	return fs_err_read(err, -fd, "open", path);
}

/* Open leaf (below dirfd) as a regular file, never through a symlink and
 * never blocking on a FIFO or device.  *st describes it.  Returns the
 * descriptor or a LUP_E* code (path names it in messages). */
static int fs_open_leaf(int dirfd, const char *leaf, int flags, int mode,
			struct stat *st, const char *path, lup_error *err,
			int reading)
{
	int fd = openat(dirfd, leaf,
			flags | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC,
			mode);
	int rc;

	if (fd < 0) {
		int e = errno;

		/* O_NONBLOCK makes a FIFO without a reader ENXIO. */
		if (e == ENXIO || e == EISDIR)
			return lup_error_set(err, LUP_EIO, path,
					     "not a file: %s", path);
		return (reading ? fs_err_read : fs_err)(err, e, "open", path);
	}
	if (fstat(fd, st) < 0) {
		rc = fs_err(err, errno, "stat", path);
		goto fail;
	}
	if (!S_ISREG(st->st_mode)) {
		rc = lup_error_set(err, LUP_EIO, path, "not a file: %s", path);
		goto fail;
	}
	/* Regular files ignore O_NONBLOCK, but leave no surprise behind. */
	(void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	return fd;
fail:
	close(fd);
	return rc;
}
/* Write all n bytes; -1 with errno on failure, *done says how many went. */
static int write_all(int fd, const void *buf, size_t n, size_t *done)
{
	const unsigned char *p = buf;

	*done = 0;
	while (n > 0) {
		ssize_t r = write(fd, p, n > FS_IO_MAX ? FS_IO_MAX : n);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += r;
		n -= (size_t)r;
		*done += (size_t)r;
	}
	return 0;
}

static int buf_reserve(lup_buf *b, size_t extra)
{
	unsigned char *data;
	size_t cap;

	if (b->cap - b->len >= extra)
		return 0;
	if (extra > SIZE_MAX - b->len)
		return -1;
	cap = b->cap ? b->cap : 64;
	while (cap < b->len + extra)
		cap = cap > SIZE_MAX / 2 ? b->len + extra : cap * 2;
	data = realloc(b->data, cap);
	if (!data)
		return -1;
	b->data = data;
	b->cap = cap;
	return 0;
}

/* Open the regular file at path for reading: its descriptor and *st, or a
 * LUP_E* code.  A directory, FIFO or device is refused. */
static int fs_open_file(fs_driver *fs, const char *path, struct stat *st,
			lup_error *err)
{
	const char *leaf;
	int dfd = fs_parent(fs, path, 0, &leaf, err), fd;

	if (dfd < 0)
		return dfd;
	fd = fs_open_leaf(dfd, leaf, O_RDONLY, 0, st, path, err, 1);
	close(dfd);
	return fd;
}

static int fs_get_content(lup_driver *d, const char *path, lup_buf *out,
			  lup_error *err)
{
	fs_driver *fs = (fs_driver *)d;
	struct stat st;
	int fd, rc = 0;

	if ((fd = fs_open_file(fs, path, &st, err)) < 0)
		return fd;
	/* One spare byte lets the loop see EOF without growing. */
	if (buf_reserve(out, (size_t)st.st_size + 1) < 0) {
		rc = lup_error_set(err, LUP_EIO, path, "out of memory");
		goto out;
	}
	for (;;) {
		size_t room;
		ssize_t r;

		if (out->cap == out->len && buf_reserve(out, out->cap) < 0) {
			rc = lup_error_set(err, LUP_EIO, path,
					   "out of memory");
			goto out;
		}
		room = out->cap - out->len;
		r = read(fd, out->data + out->len,
			 room > FS_IO_MAX ? FS_IO_MAX : room);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			rc = fs_err(err, errno, "read", path);
			goto out;
		}
		if (r == 0)
			break;
		out->len += (size_t)r;
	}
out:
	close(fd);
	return rc;
}

static void tmp_name(fs_driver *fs, char out[FS_TMP_LEN + 1])
{
	uint64_t r;

	if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r)) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		r = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^
		    ((uint64_t)getpid() << 40) ^
		    (atomic_fetch_add(&fs->tmp_seq, 1) * 0x9e3779b97f4a7c15u);
	}
	snprintf(out, FS_TMP_LEN + 1, FS_TMP_PREFIX "%016llx",
		 (unsigned long long)r);
}

/* One attempt at put_content in dirfd: 0, a LUP_E* code, or 1 when the
 * temporary vanished before the rename (a purge took it: try again). */
static int put_once(fs_driver *fs, int dfd, const char *leaf,
		    const char *path, const void *data, size_t len,
		    lup_error *err)
{
	char tmp[FS_TMP_LEN + 1];
	struct stat st;
	size_t done;
	int fd = -1, rc = 0, tries;

	for (tries = 0;; tries++) {
		tmp_name(fs, tmp);
		fd = openat(dfd, tmp,
			    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
			    0644);
		if (fd >= 0)
			break;
		if (tries < 8 && errno == EEXIST)
			continue;
		return fs_err(err, errno == ENOENT ? EIO : errno, "create",
			      path);
	}
	if (write_all(fd, data, len, &done) < 0) {
		rc = fs_err(err, errno, "write", path);
		goto fail;
	}
	if (fs->fsync && fsync(fd) < 0) {
		rc = fs_err(err, errno, "fsync", path);
		goto fail;
	}
	if (close(fd) < 0 && errno != EINTR) {
		fd = -1;
		rc = fs_err(err, errno, "close", path);
		goto fail;
	}
	fd = -1;
	/* rename(2) would replace a symlink rather than follow it; still, a
	 * symlink met in the tree is an error, not something to paper over. */
	if (fstatat(dfd, leaf, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    S_ISLNK(st.st_mode)) {
		rc = fs_symlink(err, path, strlen(path), path);
		goto fail;
	}
	if (renameat(dfd, tmp, dfd, leaf) < 0) {
		int e = errno;

		if (e == ENOENT && fstatat(dfd, tmp, &st,
					   AT_SYMLINK_NOFOLLOW) < 0)
			return 1;
		if (e == EISDIR || e == ENOTEMPTY || e == EEXIST)
			rc = lup_error_set(err, LUP_EIO, path,
					   "not a file: %s", path);
		else
			rc = fs_err(err, e == ENOENT ? EIO : e, "rename", path);
		goto fail;
	}
	if (fs->fsync)
		(void)fsync(dfd);
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	(void)unlinkat(dfd, tmp, 0);
	return rc;
}

static int fs_put_content(lup_driver *d, const char *path, const void *data,
			  size_t len, lup_error *err)
{
	fs_driver *fs = (fs_driver *)d;
	const char *leaf;
	int dfd, rc = 1;

	/* Parents are created lazily: the common case has them. */
	if ((dfd = fs_parent(fs, path, 1, &leaf, err)) < 0)
		return dfd;
	for (int tries = 0; rc == 1; tries++)
		rc = tries < 8 ? put_once(fs, dfd, leaf, path, data, len, err)
			       : lup_error_set(err, LUP_EIO, path,
					       "temporary file keeps vanishing: %s",
					       path);
	close(dfd);
	return rc;
}

static int64_t fs_read(lup_reader *lr, void *buf, size_t n, lup_error *err)
{
	fs_reader *r = (fs_reader *)lr;

	if (n > FS_IO_MAX)
		n = FS_IO_MAX;
	for (;;) {
		ssize_t got = read(r->fd, buf, n);

		if (got >= 0)
			return got;
		if (errno != EINTR)
			return fs_err(err, errno, "read", r->path);
	}
}

static void fs_reader_close(lup_reader *lr)
{
	fs_reader *r = (fs_reader *)lr;

	close(r->fd);
	free(r);
}

static int fs_reader_open(lup_driver *d, const char *path, int64_t offset,
			  lup_reader **out, lup_error *err)
{
	fs_driver *fs = (fs_driver *)d;
	size_t plen = strlen(path);
	fs_reader *r = NULL;
	struct stat st;
	int fd, rc;

	if ((fd = fs_open_file(fs, path, &st, err)) < 0)
		return fd;
	/* Past the end is fine: reads then return 0. */
	if (offset > 0 && lseek(fd, (off_t)offset, SEEK_SET) < 0) {
		rc = fs_err(err, errno, "seek", path);
		goto fail;
	}
	(void)posix_fadvise(fd, (off_t)offset, 0, POSIX_FADV_SEQUENTIAL);
	r = malloc(sizeof(*r) + plen + 1);
	if (!r) {
		rc = lup_error_set(err, LUP_EIO, path, "out of memory");
		goto fail;
	}
	r->base.version = LUP_READER_VERSION;
	r->base.read = fs_read;
	r->base.close = fs_reader_close;
	r->fd = fd;
	memcpy(r->path, path, plen + 1);
	*out = &r->base;
	return 0;
fail:
	close(fd);
	return rc;
}

static int fs_state_err(fs_writer *w, lup_error *err)
{
	return lup_error_set(err, LUP_EIO, w->path, "already %s",
			     w->state == FS_COMMITTED ? "committed"
						      : "cancelled");
}

static int fs_write(lup_writer *lw, const void *buf, size_t n,
		    lup_error *err)
{
	fs_writer *w = (fs_writer *)lw;
	size_t done;
	int rc = 0;

	if (w->state != FS_OPEN)
		return fs_state_err(w, err);
	if (write_all(w->fd, buf, n, &done) < 0)
		rc = fs_err(err, errno, "write", w->path);
	w->size += (int64_t)done;
	if (done)
		w->dirty = 1;
	return rc;
}

static int64_t fs_size(lup_writer *lw)
{
	return ((fs_writer *)lw)->size;
}

/* Make the data and (once) the directory entry durable. */
static int fs_sync(fs_writer *w, lup_error *err)
{
	if (w->dirty && fsync(w->fd) < 0)
		return fs_err(err, errno, "fsync", w->path);
	w->dirty = 0;
	if (!w->dir_synced) {
		(void)fsync(w->dirfd);
		w->dir_synced = 1;
	}
	return 0;
}

static int fs_commit(lup_writer *lw, lup_error *err)
{
	fs_writer *w = (fs_writer *)lw;
	int rc;

	if (w->state == FS_CANCELLED)
		return fs_state_err(w, err);
	if (w->fsync && (rc = fs_sync(w, err)) < 0)
		return rc;
	w->state = FS_COMMITTED;
	return 0;
}

static int fs_cancel(lup_writer *lw, lup_error *err)
{
	fs_writer *w = (fs_writer *)lw;
	struct stat st, mine;

	if (w->state == FS_COMMITTED)
		return fs_state_err(w, err);
	w->state = FS_CANCELLED;
	w->dirty = 0;
	/* Remove the entry only while it is still this writer's file. */
	if (fstat(w->fd, &mine) == 0 &&
	    fstatat(w->dirfd, w->leaf, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    (st.st_dev != mine.st_dev || st.st_ino != mine.st_ino))
		return 0;
	if (unlinkat(w->dirfd, w->leaf, 0) < 0 && errno != ENOENT)
		return fs_err(err, errno, "unlink", w->path);
	if (w->fsync)
		(void)fsync(w->dirfd);
	return 0;
}

static int fs_writer_close(lup_writer *lw, lup_error *err)
{
	fs_writer *w = (fs_writer *)lw;
	int rc = 0;

	/* close() must leave the content ready to be appended to later:
	 * with fsync on that means durable too. */
	if (w->fsync && w->state != FS_CANCELLED)
		rc = fs_sync(w, err);
	if (close(w->fd) < 0 && errno != EINTR && rc == 0)
		rc = fs_err(err, errno, "close", w->path);
	close(w->dirfd);
	free(w);
	return rc;
}

static int fs_writer_open(lup_driver *d, const char *path, int append,
			  lup_writer **out, lup_error *err)
{
	fs_driver *fs = (fs_driver *)d;
	size_t plen = strlen(path);
	int flags = O_WRONLY | O_CREAT | O_APPEND;
	fs_writer *w = NULL;
	const char *leaf;
	struct stat st;
	int dfd, fd, rc;

	if (append == LUP_WRITE_NEW)
		append = 0; /* new: the same as a truncation here */

	if (!append)
		flags |= O_TRUNC;
	if ((dfd = fs_parent(fs, path, 1, &leaf, err)) < 0)
		return dfd;
	/* O_TRUNC before the file check would truncate a FIFO's nothing; a
	 * FIFO or device is refused by fs_open_leaf all the same. */
	if ((fd = fs_open_leaf(dfd, leaf, flags, 0644, &st, path, err, 0)) < 0) {
		close(dfd);
		return fd;
	}
	w = malloc(sizeof(*w) + plen + 1);
	if (!w) {
		rc = lup_error_set(err, LUP_EIO, path, "out of memory");
		goto fail;
	}
	w->size = append ? (int64_t)st.st_size : 0;
	w->base.version = LUP_WRITER_VERSION;
	w->base.write = fs_write;
	w->base.size = fs_size;
	w->base.commit = fs_commit;
	w->base.cancel = fs_cancel;
	w->base.close = fs_writer_close;
	w->base.publish = NULL; /* fs: commit + rename is as cheap */
	w->fd = fd;
	w->dirfd = dfd;
	w->fsync = fs->fsync;
	w->state = FS_OPEN;
	/* A truncation is a change worth syncing; so is an append open: the
	 * bytes already there may come from a writer without fsync (the
	 * nginx host writes bodies so and syncs them in a worker thread) or
	 * one that crashed, and close() promises them durable. */
	w->dirty = 1;
	w->dir_synced = 0;
	memcpy(w->path, path, plen + 1);
	w->leaf = w->path + (leaf - path);
	*out = &w->base;
	return 0;
fail:
	free(w);
	close(fd);
	close(dfd);
	return rc;
}

static void fill_stat(const struct stat *st, lup_stat *out)
{
	out->is_dir = S_ISDIR(st->st_mode) ? 1 : 0;
	out->size = out->is_dir ? 0 : (int64_t)st->st_size;
	out->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 +
			st->st_mtim.tv_nsec;
}

static int fs_stat(lup_driver *d, const char *path, lup_stat *out,
		   lup_error *err)
{
	fs_driver *fs = (fs_driver *)d;
	const char *leaf;
	struct stat st;
	int dfd, rc = 0;

	if (strcmp(path, "/") == 0) {
		if (fstat(fs->root.fd, &st) < 0)
			return fs_err(err, errno, "stat", path);
		fill_stat(&st, out);
		return 0;
	}
	if ((dfd = fs_parent(fs, path, 0, &leaf, err)) < 0)
		return dfd;
	if (fstatat(dfd, leaf, &st, AT_SYMLINK_NOFOLLOW) < 0)
		rc = fs_err_read(err, errno, "stat", path);
	else if (S_ISLNK(st.st_mode))
		rc = fs_symlink(err, path, strlen(path), path);
	else
		fill_stat(&st, out);
	close(dfd);
	return rc;
}

/* Open the directory at driver path `path` ("/" included) for listing. */
static int fs_open_dir(fs_driver *fs, const char *path, lup_error *err)
{
	size_t n = strcmp(path, "/") == 0 ? 0 : strlen(path) - 1, bad = 0;
	int fd = fsr_dir(&fs->root, path + 1, n, 0, 0, &bad);

	if (fd >= 0)
		return fd;
	if (-fd == ELOOP)
		return fs_symlink(err, path, bad + 1, path);
	/* The path itself is a file: that is a misuse, not a missing path. */
	if (-fd == ENOTDIR && bad >= n)
		return lup_error_set(err, LUP_EIO, path,
				     "not a directory: %s", path);
	return fs_err_read(err, -fd, "list", path);
}

static int fs_list(lup_driver *d, const char *path, lup_strlist *out,
		   lup_error *err)
{
	fs_driver *fs = (fs_driver *)d;
	/* Children of "/" are "/name", not "//name". */
	size_t plen = strcmp(path, "/") == 0 ? 0 : strlen(path);
	char *child = malloc(plen + NAME_MAX + 2);
	struct dirent *de;
	DIR *dir;
	int fd, rc = 0;

	if (!child)
		return lup_error_set(err, LUP_EIO, path, "out of memory");
	if ((fd = fs_open_dir(fs, path, err)) < 0) {
		free(child);
		return fd;
	}
	if (!(dir = fdopendir(fd))) {
		rc = fs_err(err, errno, "list", path);
		close(fd);
		free(child);
		return rc;
	}
	memcpy(child, path, plen);
	child[plen] = '/';
	for (;;) {
		size_t n;

		errno = 0;
		de = readdir(dir);
		if (!de) {
			if (errno)
				rc = fs_err(err, errno, "list", path);
			break;
		}
		n = strlen(de->d_name);
		if (n > NAME_MAX)
			continue;
		memcpy(child + plen + 1, de->d_name, n + 1);
		/* Skips ".", "..", temporaries and foreign names that no
		 * driver path could address.  Symlinks are listed: stat and
		 * every other call on them says what they are. */
		if (!lup_path_valid(child))
			continue;
		if (lup_strlist_push(out, child) < 0) {
			rc = lup_error_set(err, LUP_EIO, path,
					   "out of memory");
			break;
		}
	}
	closedir(dir);
	free(child);
	return rc;
}

static int fs_move(lup_driver *d, const char *src, const char *dst,
		   lup_error *err)
{
	fs_driver *fs = (fs_driver *)d;
	const char *sleaf, *dleaf;
	struct stat st;
	char msg[128];
	int sfd, dfd, rc = 0;

	if ((sfd = fs_parent(fs, src, 0, &sleaf, err)) < 0)
		return sfd;
	/* rename(2) moves a symlink itself, which would smuggle it into a
	 * place (blobs/) whose readers trust it: refuse. */
	if (fstatat(sfd, sleaf, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		rc = fs_err_read(err, errno, "stat", src);
		close(sfd);
		return rc;
	}
	if (S_ISLNK(st.st_mode)) {
		close(sfd);
		return fs_symlink(err, src, strlen(src), src);
	}
	if ((dfd = fs_parent(fs, dst, 1, &dleaf, err)) < 0) {
		close(sfd);
		return dfd;
	}
	if (fstatat(dfd, dleaf, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    S_ISLNK(st.st_mode)) {
		rc = fs_symlink(err, dst, strlen(dst), dst);
	} else if (renameat(sfd, sleaf, dfd, dleaf) < 0) {
		int e = errno;

		if (e == ENOENT)
			rc = fs_not_found(err, src);
		else {
			lup_error_set(err, LUP_EIO, src, "move %s to %s: %s",
				      src, dst, strerror_r(e, msg, sizeof(msg)));
			if (err)
				err->transient = is_transient(e);
			rc = LUP_EIO;
		}
	} else if (fs->fsync) {
		(void)fsync(sfd);
		(void)fsync(dfd);
	}
	close(sfd);
	close(dfd);
	return rc;
}

/* Remove name (relative to dirfd) and everything under it, never through
 * a symlink: a link is removed as a link.  0 or an errno. */
static int rm_tree(int dirfd, const char *name, int depth)
{
	int tries;

	if (depth > FS_WALK_DEPTH)
		return ELOOP;
	for (tries = 0;; tries++) {
		struct dirent *de;
		DIR *dir;
		int fd, rc = 0;

		fd = openat(dirfd, name,
			    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0) {
			if (errno == ENOENT)
				return 0;
			if (errno != ENOTDIR && errno != ELOOP)
				return errno;
			/* Became a file or a symlink meanwhile. */
			if (unlinkat(dirfd, name, 0) < 0 && errno != ENOENT)
				return errno;
			return 0;
		}
		dir = fdopendir(fd);
		if (!dir) {
			rc = errno;
			close(fd);
			return rc;
		}
		for (;;) {
			const char *n;
			int is_dir;

			errno = 0;
			de = readdir(dir);
			if (!de) {
				rc = errno;
				break;
			}
			n = de->d_name;
			if (n[0] == '.' &&
			    (n[1] == '\0' || (n[1] == '.' && n[2] == '\0')))
				continue;
			is_dir = de->d_type == DT_DIR;
			if (de->d_type == DT_UNKNOWN) {
				struct stat st;

				if (fstatat(fd, n, &st, AT_SYMLINK_NOFOLLOW) < 0) {
					if (errno == ENOENT)
						continue;
					rc = errno;
					break;
				}
				is_dir = S_ISDIR(st.st_mode);
			}
			if (is_dir)
				rc = rm_tree(fd, n, depth + 1);
			else if (unlinkat(fd, n, 0) < 0 && errno != ENOENT)
				rc = errno == EISDIR ? rm_tree(fd, n, depth + 1)
						     : errno;
			if (rc)
				break;
		}
		closedir(dir);
		if (rc)
			return rc;
		if (unlinkat(dirfd, name, AT_REMOVEDIR) == 0 || errno == ENOENT)
			return 0;
		/* A concurrent writer added an entry: sweep again. */
		if ((errno != ENOTEMPTY && errno != EEXIST) || tries >= 8)
			return errno;
	}
}

static int fs_remove(lup_driver *d, const char *path, lup_error *err)
{
	fs_driver *fs = (fs_driver *)d;
	const char *leaf;
	struct stat st;
	int dfd, e;

	if ((dfd = fs_parent(fs, path, 0, &leaf, err)) < 0)
		return dfd;
	if (fstatat(dfd, leaf, &st, AT_SYMLINK_NOFOLLOW) < 0)
		e = errno;
	else if (S_ISDIR(st.st_mode))
		e = rm_tree(dfd, leaf, 0);
	else
		e = unlinkat(dfd, leaf, 0) < 0 ? errno : 0;
	if (!e && fs->fsync)
		(void)fsync(dfd);
	close(dfd);
	if (e == ELOOP)
		return lup_error_set(err, LUP_EIO, path,
				     "delete %s: tree deeper than %d levels",
				     path, FS_WALK_DEPTH);
	return e ? fs_err_read(err, e, "delete", path) : 0;
}

static int fs_lock(lup_driver *d, const char *path, void **token,
		   lup_error *err)
{
	fs_driver *fs = (fs_driver *)d;
	fs_lock_token *lk;
	const char *leaf;
	struct stat st;
	int dfd, fd, rc;

	/* A file or a directory can be locked (the store locks an upload's
	 * directory, which unlike a file is never replaced by a rename);
	 * never through a symlink, and never a FIFO (O_NONBLOCK keeps the
	 * open from waiting on one). */
	if ((dfd = fs_parent(fs, path, 0, &leaf, err)) < 0)
		return dfd;
	fd = openat(dfd, leaf,
		    O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	rc = fd < 0 ? fs_err_read(err, errno, "open", path) : 0;
	close(dfd);
	if (rc)
		return rc;
	if (fstat(fd, &st) < 0 || !(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))) {
		close(fd);
		return lup_error_set(err, LUP_EIO, path,
				     "not a file or directory: %s", path);
	}
	/* flock belongs to the open file description, so a second open in
	 * this very process is excluded too (POSIX fcntl locks are not). */
	while ((rc = flock(fd, LOCK_EX | LOCK_NB)) < 0 && errno == EINTR)
		;
	if (rc < 0) {
		int e = errno;

		close(fd);
		if (e == EWOULDBLOCK)
			return lup_error_set(err, LUP_ELOCKED, path,
					     "locked by another writer: %s",
					     path);
		return fs_err(err, e, "lock", path);
	}
	lk = malloc(sizeof(*lk));
	if (!lk) {
		close(fd);
		return lup_error_set(err, LUP_EIO, path, "out of memory");
	}
	lk->fd = fd;
	*token = lk;
	return 0;
}

static void fs_unlock(lup_driver *d, void *token)
{
	fs_lock_token *lk = token;

	(void)d;
	close(lk->fd); /* releases the flock */
	free(lk);
}

/* ".lup~" followed by exactly 16 lowercase hex digits. */
static int is_tmp_name(const char *n)
{
	if (strncmp(n, FS_TMP_PREFIX, sizeof(FS_TMP_PREFIX) - 1) != 0 ||
	    strlen(n) != FS_TMP_LEN)
		return 0;
	for (n += sizeof(FS_TMP_PREFIX) - 1; *n; n++)
		if (!((*n >= '0' && *n <= '9') || (*n >= 'a' && *n <= 'f')))
			return 0;
	return 1;
}

typedef struct {
	int64_t before_ns;
	int remove;
	lup_fs_temp_fn fn;
	void *arg;
	int failed;     /* temporaries that could not be removed */
	int first_errno;
	char path[PATH_MAX + NAME_MAX + 2]; /* driver path of the dir walked */
} tmp_walk;

/* Walk the directory fd (owned; closed here) whose driver path is in
 * t->path (len bytes). Returns 0 or an errno of the walk itself. */
static int tmp_walk_dir(tmp_walk *t, int fd, size_t len, int depth)
{
	DIR *dir = fdopendir(fd);
	struct dirent *de;
	int rc = 0;

	if (!dir) {
		rc = errno;
		close(fd);
		return rc;
	}
	for (;;) {
		const char *n;
		struct stat st;
		size_t nl;

		errno = 0;
		if (!(de = readdir(dir))) {
			rc = errno;
			break;
		}
		n = de->d_name;
		nl = strlen(n);
		if ((n[0] == '.' && (n[1] == '\0' ||
				     (n[1] == '.' && n[2] == '\0'))) ||
		    len + 1 + nl >= sizeof(t->path))
			continue;
		if (de->d_type != DT_DIR && !is_tmp_name(n) &&
		    de->d_type != DT_UNKNOWN)
			continue; /* files and symlinks: nothing to see */
		if (fstatat(dirfd(dir), n, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue; /* gone meanwhile */
		t->path[len] = '/';
		memcpy(t->path + len + 1, n, nl + 1);
		if (S_ISDIR(st.st_mode)) {
			int sub;

			/* Never through a symlink (O_NOFOLLOW), and a bounded
			 * depth: the walk always ends. */
			if (depth >= FS_WALK_DEPTH)
				continue;
			sub = openat(dirfd(dir), n,
				     O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
					     O_CLOEXEC);
			if (sub < 0)
				continue;
			if ((rc = tmp_walk_dir(t, sub, len + 1 + nl,
					       depth + 1)) != 0)
				break;
		} else if (is_tmp_name(n) && S_ISREG(st.st_mode)) {
			int64_t mt = (int64_t)st.st_mtim.tv_sec * 1000000000 +
				     st.st_mtim.tv_nsec;
			int removed = 0;

			if (mt >= t->before_ns)
				continue;
			if (t->remove) {
				if (unlinkat(dirfd(dir), n, 0) == 0 ||
				    errno == ENOENT) {
					removed = 1;
				} else {
					if (!t->failed++)
						t->first_errno = errno;
				}
			}
			if (t->fn)
				t->fn(t->arg, t->path, mt, (int64_t)st.st_size,
				      removed);
		}
	}
	t->path[len] = '\0';
	closedir(dir);
	return rc;
}

int lup_fs_temporaries(lup_driver *d, const char *dir, int64_t before_ns,
		       int remove, lup_fs_temp_fn fn, void *arg,
		       lup_error *err)
{
	fs_driver *fs = (fs_driver *)d;
	tmp_walk *t;
	size_t len;
	int fd, rc;

	if (!d || d->get_content != fs_get_content)
		return lup_error_set(err, LUP_EUNSUPPORTED, dir,
				     "%s: no temporary files to sweep",
				     d && d->name ? d->name : "driver");
	if (!dir || (!lup_path_valid(dir) && strcmp(dir, "/") != 0))
		return lup_error_set(err, LUP_EINVALID_PATH, dir,
				     "filesystem: invalid path: %s",
				     dir ? dir : "(null)");
	len = strcmp(dir, "/") == 0 ? 0 : strlen(dir);
	if (len >= PATH_MAX)
		return lup_error_set(err, LUP_EIO, dir,
				     "filesystem: path too long");
	if ((fd = fs_open_dir(fs, dir, err)) < 0) {
		/* Not called through the wrappers: name the driver here. */
		if (err) {
			char msg[LUP_ERROR_MSG_MAX];

			snprintf(msg, sizeof(msg), "%s", err->message);
			lup_error_set(err, err->code, dir, "filesystem: %s", msg);
		}
		return fd;
	}
	if (!(t = calloc(1, sizeof(*t)))) {
		close(fd);
		return lup_error_set(err, LUP_EIO, dir,
				     "filesystem: out of memory");
	}
	t->before_ns = before_ns;
	t->remove = remove;
	t->fn = fn;
	t->arg = arg;
	memcpy(t->path, dir, len);
	t->path[len] = '\0';
	rc = tmp_walk_dir(t, fd, len, 0);
	if (rc) {
		char msg[128];

		rc = lup_error_set(err, LUP_EIO, dir,
				   "filesystem: sweeping %s: %s", dir,
				   strerror_r(rc, msg, sizeof(msg)));
	} else if (t->failed) {
		char msg[128];

		rc = lup_error_set(err, LUP_EIO, dir,
				   "filesystem: %d stale temporar%s under %s "
				   "could not be removed: %s",
				   t->failed, t->failed == 1 ? "y" : "ies", dir,
				   strerror_r(t->first_errno, msg, sizeof(msg)));
	}
	free(t);
	return rc;
}

static void fs_free(lup_driver *d)
{
	fs_driver *fs = (fs_driver *)d;

	fsr_close(&fs->root);
	free(fs);
}

/* mkdir -p for the root (a host path: symlinks on the way to the root are
 * the host's business).  path is modified in place and restored.  Returns
 * 0 or -1 with errno. */
static int mkdir_p(char *path)
{
	char *slash;
	int rc;

	if (mkdir(path, 0755) == 0 || errno == EEXIST)
		return 0; /* possibly a file: the caller's stat says so */
	if (errno != ENOENT)
		return -1;
	slash = strrchr(path, '/');
	if (!slash || slash == path) {
		errno = ENOENT;
		return -1;
	}
	*slash = '\0';
	rc = mkdir_p(path);
	*slash = '/';
	if (rc < 0)
		return -1;
	return mkdir(path, 0755) == 0 || errno == EEXIST ? 0 : -1;
}

static void fsync_parent_dir(const char *real)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(real, '/');
	size_t n = slash ? (size_t)(slash - real) : 0;
	int fd;

	if (n >= sizeof(dir))
		return;
	memcpy(dir, real, n);
	dir[n] = '\0';
	fd = open(n ? dir : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		(void)fsync(fd);
		close(fd);
	}
}

int lup_driver_filesystem(lup_driver **out, const char *root,
			  const lup_fs_options *opts, lup_error *err)
{
	char dir[PATH_MAX], real[PATH_MAX];
	const char *env;
	fs_driver *fs;
	struct stat st;
	size_t n;
	int rc, walk;

	*out = NULL;
	if (opts && opts->version != LUP_FS_OPTIONS_VERSION && opts->version != 1)
		return lup_error_set(err, LUP_EUNSUPPORTED, NULL,
				     "filesystem: unsupported options version %u",
				     opts->version);
	if (!root || !root[0])
		return lup_error_set(err, LUP_EIO, NULL,
				     "filesystem: empty root directory");
	n = strlen(root);
	if (n >= PATH_MAX)
		return lup_error_set(err, LUP_EIO, NULL,
				     "filesystem: root path too long");
	memcpy(dir, root, n + 1);
	while (n > 1 && dir[n - 1] == '/')
		dir[--n] = '\0';
	if (mkdir_p(dir) < 0 || stat(dir, &st) < 0)
		return lup_error_set(err, LUP_EIO, root,
				     "filesystem: cannot create root %s: %s",
				     root, strerror_r(errno, real, sizeof(real)));
	if (!S_ISDIR(st.st_mode))
		return lup_error_set(err, LUP_EIO, root,
				     "filesystem: root is not a directory: %s",
				     root);
	/* Resolved once, here: the root itself may be a symlink; nothing
	 * below it is ever followed. */
	if (!realpath(dir, real))
		return lup_error_set(err, LUP_EIO, root,
				     "filesystem: cannot resolve root %s: %s",
				     root, strerror_r(errno, dir, sizeof(dir)));
	if (opts && opts->fsync)
		fsync_parent_dir(real);
	fs = calloc(1, sizeof(*fs));
	if (!fs)
		return lup_error_set(err, LUP_EIO, root,
				     "filesystem: out of memory");
	/* Version 1 structs end before resolve. */
	walk = opts && opts->version >= 2 &&
	       opts->resolve == LUP_FS_RESOLVE_WALK;
	/* Lets a test suite (or a host whose openat2 misbehaves) force the
	 * portable resolver without a new option in every binding. */
	env = secure_getenv("LAYERUP_FS_RESOLVE");
	if (env && strcmp(env, "walk") == 0)
		walk = 1;
	if ((rc = fsr_open(&fs->root, real, walk)) < 0) {
		free(fs);
		return lup_error_set(err, LUP_EIO, root,
				     "filesystem: cannot open root %s: %s",
				     root, strerror_r(-rc, dir, sizeof(dir)));
	}
	fs->fsync = opts ? opts->fsync : 0;
	atomic_init(&fs->tmp_seq, 0);
	fs->base.version = LUP_DRIVER_VERSION;
	fs->base.name = "filesystem";
	fs->base.get_content = fs_get_content;
	fs->base.put_content = fs_put_content;
	fs->base.reader = fs_reader_open;
	fs->base.writer = fs_writer_open;
	fs->base.stat = fs_stat;
	fs->base.list = fs_list;
	fs->base.move = fs_move;
	fs->base.remove = fs_remove;
	fs->base.lock = fs_lock;
	fs->base.unlock = fs_unlock;
	fs->base.free = fs_free;
	if ((rc = lup_driver_init(&fs->base, LUP_DRIVER_VERSION, err)) < 0) {
		fs_free(&fs->base);
		return rc;
	}
	*out = &fs->base;
	return 0;
}

int lup_fs_resolver(const lup_driver *d)
{
	const fs_driver *fs = (const fs_driver *)d;

	if (!d || d->get_content != fs_get_content)
		return -1;
	return fs->root.mode == FSR_WALK ? LUP_FS_RESOLVE_WALK
					 : LUP_FS_RESOLVE_OPENAT2;
}
