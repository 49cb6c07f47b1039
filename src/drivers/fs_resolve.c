/*
 * fs_resolve.c - confined path resolution for the filesystem driver (see
 * fs_resolve.h for the contract).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/openat2.h>

#include "drivers/fs_resolve.h"

#define FSR_DIR_FLAGS (O_RDONLY | O_DIRECTORY | O_CLOEXEC)
#define FSR_RESOLVE \
	(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)

static int sys_openat2(int dirfd, const char *path, int flags)
{
	struct open_how how;

	memset(&how, 0, sizeof(how));
	how.flags = (unsigned long long)flags;
	how.resolve = FSR_RESOLVE;
	return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
}

int fsr_open(fsr_root *r, const char *real, int want_walk)
{
	int fd;

	r->fd = open(real, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (r->fd < 0)
		return -errno;
	r->mode = FSR_WALK;
	if (want_walk)
		return 0;
	/* Probe once: a kernel before 5.6 says ENOSYS, a seccomp filter
	 * (containers) often EPERM; either way the walk is used. */
	fd = sys_openat2(r->fd, ".", FSR_DIR_FLAGS);
	if (fd >= 0) {
		close(fd);
		r->mode = FSR_OPENAT2;
	}
	return 0;
}

void fsr_close(fsr_root *r)
{
	if (r->fd >= 0)
		close(r->fd);
	r->fd = -1;
}

void fsr_fsync_dir(int dirfd)
{
	int fd = openat(dirfd, ".", FSR_DIR_FLAGS);

	if (fd >= 0) {
		(void)fsync(fd);
		close(fd);
	}
}

/* Why opening name (below dirfd) as a directory failed with e: a symlink
 * is ELOOP whatever open(2) said (O_PATH | O_NOFOLLOW says ENOTDIR). */
static int classify(int dirfd, const char *name, int e)
{
	struct stat st;

	if ((e == ENOTDIR || e == ELOOP) &&
	    fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
		return S_ISLNK(st.st_mode) ? ELOOP : ENOTDIR;
	return e;
}

/* The O_NOFOLLOW walk: each component opened from its parent's
 * descriptor, so nothing checked can be swapped afterwards. */
static int walk(const fsr_root *r, const char *rel, size_t n, int create,
		int do_fsync, size_t *bad)
{
	char name[NAME_MAX + 1];
	size_t i = 0;
	int cur = r->fd; /* not owned while it is the root */
	int e;

	if (n == 0) {
		int fd = openat(r->fd, ".", FSR_DIR_FLAGS);
		return fd >= 0 ? fd : -errno;
	}
	while (i < n) {
		const char *c = rel + i;
		const char *slash = memchr(c, '/', n - i);
		size_t len = slash ? (size_t)(slash - c) : n - i;
		int last = i + len >= n, next, tries;

		if (bad)
			*bad = i + len;
		if (len == 0 || len > NAME_MAX) {
			e = len ? ENAMETOOLONG : ENOENT;
			goto fail;
		}
		memcpy(name, c, len);
		name[len] = '\0';
		for (tries = 0;; tries++) {
			next = openat(cur, name,
				      (last ? FSR_DIR_FLAGS
					    : O_PATH | O_DIRECTORY | O_CLOEXEC) |
					      O_NOFOLLOW);
			if (next >= 0)
				break;
			e = errno;
			if (e == ENOENT && create && tries < 2) {
				if (mkdirat(cur, name, 0755) == 0) {
					if (do_fsync)
						fsr_fsync_dir(cur);
				} else if (errno != EEXIST) {
					e = errno;
					goto fail;
				}
				continue;
			}
			e = classify(cur, name, e);
			goto fail;
		}
		if (cur != r->fd)
			close(cur);
		cur = next;
		i += len + (slash ? 1 : 0);
	}
	return cur;
fail:
	if (cur != r->fd)
		close(cur);
	return -e;
}

int fsr_dir(const fsr_root *r, const char *rel, size_t n, int create,
	    int do_fsync, size_t *bad)
{
	if (bad)
		*bad = n;
	if (r->mode == FSR_OPENAT2 && n < PATH_MAX) {
		char path[PATH_MAX];
		int fd;

		memcpy(path, n ? rel : ".", n ? n : 1);
		path[n ? n : 1] = '\0';
		/* EAGAIN: the kernel saw a concurrent rename and could not
		 * prove confinement; asking again is the documented answer. */
		for (int tries = 0; tries < 4; tries++) {
			fd = sys_openat2(r->fd, path, FSR_DIR_FLAGS);
			if (fd >= 0)
				return fd;
			if (errno != EAGAIN)
				break;
		}
		/* A missing directory to create, or an error to explain (which
		 * component?): the walk is just as confined and says more. */
	}
	return walk(r, rel, n, create, do_fsync, bad);
}
