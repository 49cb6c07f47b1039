/*
 * driver_fs.c - the "filesystem" driver: driver path p lives at root + p.
 *
 * Layout and behaviour match the registry's filesystem driver (directories
 * 0755, files 0644, implicit parents), with these deliberate differences:
 *
 * - put_content writes a temporary file next to the target and rename(2)s
 *   it over the target, so readers see the old or the new content, never a
 *   torn one.  Temporary names are ".lup~<16 hex>": '~' is outside the
 *   driver path grammar, so no valid driver path can name a temporary file,
 *   and list() skips every entry whose name is not a valid path component
 *   (temporaries included).
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
 * PATH_NOT_FOUND when reading and IO when writing; everything else is IO
 * with strerror, transient for EINTR/EAGAIN/ETIMEDOUT/EBUSY.
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

#include "layerup/driver.h"

/* Longest single read(2)/write(2) we issue; the kernel caps near 2 GiB. */
#define FS_IO_MAX ((size_t)1 << 30)
/* Room for a full path plus a temporary-file suffix. */
#define FS_PATH_MAX (PATH_MAX + 32)

typedef struct {
	lup_driver base;
	int fsync;
	atomic_uint_fast64_t tmp_seq; /* fallback entropy for temp names */
	size_t root_len;
	char root[]; /* absolute, no trailing '/' ("" for "/") */
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
	int fsync;
	int state;
	int dirty;      /* written since the last fsync */
	int dir_synced; /* the directory entry has been made durable */
	int64_t size;
	const char *full; /* into path[] */
	char path[];      /* driver path '\0' full path */
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

/* An errno from an operation that creates or changes something. */
static int fs_err(lup_error *err, int e, const char *op, const char *path)
{
	char buf[128];
	const char *msg;

	if (e == ENOENT)
		return fs_not_found(err, path);
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

static int fs_full(const fs_driver *fs, const char *path, char *out,
		   lup_error *err)
{
	size_t n = strlen(path);

	if (fs->root_len + n + 1 > PATH_MAX)
		return lup_error_set(err, LUP_EIO, path, "path too long: %s",
				     path);
	memcpy(out, fs->root, fs->root_len);
	memcpy(out + fs->root_len, path, n + 1);
	return 0;
}

static void fsync_dir(const char *dir)
{
	int fd = open(dir[0] ? dir : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	/* Best effort: some filesystems refuse fsync on directories. */
	if (fd >= 0) {
		(void)fsync(fd);
		close(fd);
	}
}

/* fsync the directory holding full (a path with at least one '/'). */
static void fsync_parent(const char *full)
{
	char dir[FS_PATH_MAX];
	const char *slash = strrchr(full, '/');
	size_t n = slash ? (size_t)(slash - full) : 0;

	if (!slash || n >= sizeof(dir))
		return;
	memcpy(dir, full, n);
	dir[n] = '\0';
	fsync_dir(dir);
}

/* mkdir -p for a directory path (modified in place, restored on return).
 * Returns 0 or -1 with errno. */
static int mkdir_p(char *path, int do_fsync)
{
	char *slash;
	int rc;

	if (mkdir(path, 0755) == 0) {
		if (do_fsync)
			fsync_parent(path);
		return 0;
	}
	if (errno == EEXIST)
		return 0; /* possibly a file: the caller's next call says so */
	if (errno != ENOENT)
		return -1;
	slash = strrchr(path, '/');
	if (!slash || slash == path) {
		errno = ENOENT;
		return -1;
	}
	*slash = '\0';
	rc = mkdir_p(path, do_fsync);
	*slash = '/';
	if (rc < 0)
		return -1;
	if (mkdir(path, 0755) == 0) {
		if (do_fsync)
			fsync_parent(path);
		return 0;
	}
	return errno == EEXIST ? 0 : -1;
}

/* mkdir -p for the directory that holds full. */
static int mkdir_parent(const char *full, int do_fsync)
{
	char dir[FS_PATH_MAX];
	const char *slash = strrchr(full, '/');
	size_t n = slash ? (size_t)(slash - full) : 0;

	if (n == 0)
		return 0; /* "/" always exists */
	if (n >= sizeof(dir)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(dir, full, n);
	dir[n] = '\0';
	return mkdir_p(dir, do_fsync);
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

/*
 * Open the file at path for reading: *fdp and *st on success.  A directory
 * is refused (open(2) would accept it and read(2) fail later with EISDIR).
 * On failure nothing is left open.
 */
static int fs_open_file(const fs_driver *fs, const char *path, int *fdp,
			struct stat *st, lup_error *err)
{
	char full[FS_PATH_MAX];
	int fd, rc;

	if ((rc = fs_full(fs, path, full, err)))
		return rc;
	fd = open(full, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fs_err_read(err, errno, "open", path);
	if (fstat(fd, st) < 0) {
		rc = fs_err(err, errno, "stat", path);
		goto fail;
	}
	if (S_ISDIR(st->st_mode)) {
		rc = lup_error_set(err, LUP_EIO, path, "not a file: %s", path);
		goto fail;
	}
	*fdp = fd;
	return 0;
fail:
	close(fd);
	return rc;
}

static int fs_get_content(lup_driver *d, const char *path, lup_buf *out,
			  lup_error *err)
{
	fs_driver *fs = (fs_driver *)d;
	struct stat st;
	int fd, rc = 0;

	if ((rc = fs_open_file(fs, path, &fd, &st, err)))
		return rc;
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

static void tmp_name(fs_driver *fs, const char *full, char *out)
{
	uint64_t r;
	const char *slash = strrchr(full, '/');
	size_t n = (size_t)(slash - full);

	if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r)) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		r = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^
		    ((uint64_t)getpid() << 40) ^
		    (atomic_fetch_add(&fs->tmp_seq, 1) * 0x9e3779b97f4a7c15u);
	}
	memcpy(out, full, n);
	snprintf(out + n, FS_PATH_MAX - n, "/.lup~%016llx",
		 (unsigned long long)r);
}

static int fs_put_content(lup_driver *d, const char *path, const void *data,
			  size_t len, lup_error *err)
{
	fs_driver *fs = (fs_driver *)d;
	char full[FS_PATH_MAX], tmp[FS_PATH_MAX];
	size_t done;
	int fd = -1, rc = 0, tries;

	if ((rc = fs_full(fs, path, full, err)))
		return rc;
	for (tries = 0;; tries++) {
		tmp_name(fs, full, tmp);
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (fd >= 0)
			break;
		if (tries < 8 && errno == EEXIST)
			continue;
		/* Parents are created lazily: the common case has them. */
		if (tries < 8 && errno == ENOENT) {
			if (mkdir_parent(full, fs->fsync) < 0)
				return fs_err(err, errno == ENOENT ? EIO : errno,
					      "mkdir", path);
			continue;
		}
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
	if (rename(tmp, full) < 0) {
		int e = errno;

		if (e == EISDIR || e == ENOTEMPTY || e == EEXIST)
			rc = lup_error_set(err, LUP_EIO, path,
					   "not a file: %s", path);
		else
			rc = fs_err(err, e == ENOENT ? EIO : e, "rename", path);
		goto fail;
	}
	if (fs->fsync)
		fsync_parent(full);
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
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

	if ((rc = fs_open_file(fs, path, &fd, &st, err)))
		return rc;
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
	r->base.version = LUP_DRIVER_VERSION;
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
		fsync_parent(w->full);
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

	if (w->state == FS_COMMITTED)
		return fs_state_err(w, err);
	w->state = FS_CANCELLED;
	w->dirty = 0;
	if (unlink(w->full) < 0 && errno != ENOENT)
		return fs_err(err, errno, "unlink", w->path);
	if (w->fsync)
		fsync_parent(w->full);
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
	free(w);
	return rc;
}

static int fs_writer_open(lup_driver *d, const char *path, int append,
			  lup_writer **out, lup_error *err)
{
	fs_driver *fs = (fs_driver *)d;
	char full[FS_PATH_MAX];
	size_t plen = strlen(path), flen;
	int flags = O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC;
	fs_writer *w = NULL;
	int fd, rc, tries;

	if ((rc = fs_full(fs, path, full, err)))
		return rc;
	flen = strlen(full);
	if (!append)
		flags |= O_TRUNC;
	for (tries = 0;; tries++) {
		fd = open(full, flags, 0644);
		if (fd >= 0)
			break;
		if (tries < 8 && errno == ENOENT) {
			if (mkdir_parent(full, fs->fsync) < 0)
				return fs_err(err, errno == ENOENT ? EIO : errno,
					      "mkdir", path);
			continue;
		}
		return fs_err(err, errno == ENOENT ? EIO : errno, "open",
			      path);
	}
	w = malloc(sizeof(*w) + plen + 1 + flen + 1);
	if (!w) {
		rc = lup_error_set(err, LUP_EIO, path, "out of memory");
		goto fail;
	}
	w->size = 0;
	if (append) {
		struct stat st;

		if (fstat(fd, &st) < 0) {
			rc = fs_err(err, errno, "stat", path);
			goto fail;
		}
		w->size = (int64_t)st.st_size;
	}
	w->base.version = LUP_DRIVER_VERSION;
	w->base.write = fs_write;
	w->base.size = fs_size;
	w->base.commit = fs_commit;
	w->base.cancel = fs_cancel;
	w->base.close = fs_writer_close;
	w->fd = fd;
	w->fsync = fs->fsync;
	w->state = FS_OPEN;
	w->dirty = !append; /* a truncation is a change worth syncing */
	w->dir_synced = 0;
	memcpy(w->path, path, plen + 1);
	memcpy(w->path + plen + 1, full, flen + 1);
	w->full = w->path + plen + 1;
	*out = &w->base;
	return 0;
fail:
	free(w);
	close(fd);
	return rc;
}

static int fs_stat(lup_driver *d, const char *path, lup_stat *out,
		   lup_error *err)
{
	fs_driver *fs = (fs_driver *)d;
	char full[FS_PATH_MAX];
	struct stat st;
	int rc;

	if ((rc = fs_full(fs, path, full, err)))
		return rc;
	if (stat(full, &st) < 0)
		return fs_err_read(err, errno, "stat", path);
	out->is_dir = S_ISDIR(st.st_mode) ? 1 : 0;
	out->size = out->is_dir ? 0 : (int64_t)st.st_size;
	out->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 +
			st.st_mtim.tv_nsec;
	return 0;
}

static int fs_list(lup_driver *d, const char *path, lup_strlist *out,
		   lup_error *err)
{
	fs_driver *fs = (fs_driver *)d;
	char full[FS_PATH_MAX], child[FS_PATH_MAX + NAME_MAX + 2];
	/* Children of "/" are "/name", not "//name". */
	size_t plen = strcmp(path, "/") == 0 ? 0 : strlen(path);
	struct dirent *de;
	DIR *dir;
	int rc = 0;

	if ((rc = fs_full(fs, path, full, err)))
		return rc;
	dir = opendir(full);
	if (!dir) {
		int e = errno;
		struct stat st;

		if (e == ENOTDIR && stat(full, &st) == 0 &&
		    !S_ISDIR(st.st_mode))
			return lup_error_set(err, LUP_EIO, path,
					     "not a directory: %s", path);
		return fs_err_read(err, e, "list", path);
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
		memcpy(child + plen + 1, de->d_name, n + 1);
		/* Skips ".", "..", temporaries and foreign names that no
		 * driver path could address. */
		if (!lup_path_valid(child))
			continue;
		if (lup_strlist_push(out, child) < 0) {
			rc = lup_error_set(err, LUP_EIO, path,
					   "out of memory");
			break;
		}
	}
	closedir(dir);
	return rc;
}

static int fs_move(lup_driver *d, const char *src, const char *dst,
		   lup_error *err)
{
	fs_driver *fs = (fs_driver *)d;
	char fsrc[FS_PATH_MAX], fdst[FS_PATH_MAX], msg[128];
	int rc, tries;

	if ((rc = fs_full(fs, src, fsrc, err)) ||
	    (rc = fs_full(fs, dst, fdst, err)))
		return rc;
	for (tries = 0;; tries++) {
		struct stat st;
		int e;

		if (rename(fsrc, fdst) == 0)
			break;
		e = errno;
		if ((e == ENOENT || e == ENOTDIR) && stat(fsrc, &st) < 0 &&
		    (errno == ENOENT || errno == ENOTDIR))
			return fs_not_found(err, src);
		if (e == ENOENT && tries < 8) {
			if (mkdir_parent(fdst, fs->fsync) < 0)
				return fs_err(err, errno == ENOENT ? EIO : errno,
					      "mkdir", dst);
			continue;
		}
		lup_error_set(err, LUP_EIO, src, "move %s to %s: %s", src,
			      dst, strerror_r(e, msg, sizeof(msg)));
		if (err)
			err->transient = is_transient(e);
		return LUP_EIO;
	}
	if (fs->fsync) {
		fsync_parent(fsrc);
		fsync_parent(fdst);
	}
	return 0;
}

/* Remove name (relative to dirfd) and everything under it.  0 or an errno. */
static int rm_tree(int dirfd, const char *name)
{
	int tries;

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
				rc = rm_tree(fd, n);
			else if (unlinkat(fd, n, 0) < 0 && errno != ENOENT)
				rc = errno == EISDIR ? rm_tree(fd, n) : errno;
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
	char full[FS_PATH_MAX];
	struct stat st;
	int rc, e;

	if ((rc = fs_full(fs, path, full, err)))
		return rc;
	if (lstat(full, &st) < 0)
		return fs_err_read(err, errno, "stat", path);
	if (S_ISDIR(st.st_mode))
		e = rm_tree(AT_FDCWD, full);
	else
		e = unlink(full) < 0 ? errno : 0;
	if (e)
		return fs_err_read(err, e, "delete", path);
	if (fs->fsync)
		fsync_parent(full);
	return 0;
}

static int fs_lock(lup_driver *d, const char *path, void **token,
		   lup_error *err)
{
	fs_driver *fs = (fs_driver *)d;
	char full[FS_PATH_MAX];
	fs_lock_token *lk;
	int fd, rc;

	if ((rc = fs_full(fs, path, full, err)))
		return rc;
	/* A directory or a file: the store locks an upload's directory,
	 * which (unlike a file) is never replaced by a rename.  Keep both
	 * openable here when this open changes. */
	fd = open(full, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return fs_err_read(err, errno, "open", path);
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

static void fs_free(lup_driver *d)
{
	free(d);
}

int lup_driver_filesystem(lup_driver **out, const char *root,
			  const lup_fs_options *opts, lup_error *err)
{
	char dir[FS_PATH_MAX], real[PATH_MAX];
	fs_driver *fs;
	struct stat st;
	size_t n;
	int rc;

	*out = NULL;
	if (opts && opts->version != LUP_DRIVER_VERSION)
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
	if (mkdir_p(dir, opts && opts->fsync) < 0 || stat(dir, &st) < 0)
		return lup_error_set(err, LUP_EIO, root,
				     "filesystem: cannot create root %s: %s",
				     root, strerror_r(errno, real, sizeof(real)));
	if (!S_ISDIR(st.st_mode))
		return lup_error_set(err, LUP_EIO, root,
				     "filesystem: root is not a directory: %s",
				     root);
	/* Absolute, so that a later chdir in the host changes nothing. */
	if (!realpath(dir, real))
		return lup_error_set(err, LUP_EIO, root,
				     "filesystem: cannot resolve root %s: %s",
				     root, strerror_r(errno, dir, sizeof(dir)));
	n = strlen(real);
	if (n == 1)
		n = 0; /* "/" itself: p is then the full path */
	fs = calloc(1, sizeof(*fs) + n + 1);
	if (!fs)
		return lup_error_set(err, LUP_EIO, root,
				     "filesystem: out of memory");
	memcpy(fs->root, real, n);
	fs->root[n] = '\0';
	fs->root_len = n;
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
		free(fs);
		return rc;
	}
	*out = &fs->base;
	return 0;
}
