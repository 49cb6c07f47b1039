/*
 * fs_resolve.h - confined path resolution for the filesystem driver.
 *
 * Every path the filesystem driver touches is resolved relative to a
 * descriptor of its root, one directory at a time, never through a
 * symlink.  The kernel does it in one call where it can (openat2 with
 * RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS); otherwise
 * an openat walk opens each component with O_NOFOLLOW from the descriptor
 * of the one before.  Both are race-free: what is opened is what was
 * checked, so swapping a directory for a symlink between two calls cannot
 * lead outside the root.  Operations on the last component then use the
 * *at() calls on the directory descriptor with O_NOFOLLOW /
 * AT_SYMLINK_NOFOLLOW.
 *
 * Internal to src/drivers/.
 */
#ifndef LUP_FS_RESOLVE_H
#define LUP_FS_RESOLVE_H

#include <stddef.h>

/* How directories are resolved. */
enum {
	FSR_OPENAT2 = 0, /* openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) */
	FSR_WALK = 1     /* O_NOFOLLOW openat, component by component */
};

typedef struct fsr_root {
	int fd;   /* O_PATH descriptor of the (resolved) root directory */
	int mode; /* FSR_OPENAT2 or FSR_WALK */
} fsr_root;

/* Open the root directory `real` (an absolute, symlink-free path) and pick
 * the resolver: FSR_WALK when want_walk is set or openat2 is unavailable
 * (ENOSYS, or refused by a seccomp filter).  0 or -errno. */
int fsr_open(fsr_root *r, const char *real, int want_walk);

/* Release the root descriptor. */
void fsr_close(fsr_root *r);

/*
 * Open the directory rel[0..n) below the root ("" with n == 0 is the root
 * itself; components are separated by single '/', none is "." or "..").
 * The result is opened O_RDONLY | O_DIRECTORY | O_CLOEXEC (usable for
 * *at() calls, fdopendir and fsync).  With create, missing components are
 * made (mode 0755; with do_fsync each new entry's parent is fsync'ed).
 *
 * Returns the descriptor or -errno: -ELOOP when a component is a symlink
 * (never followed), -ENOTDIR when one is something else than a directory,
 * -ENOENT when one is missing (and create is 0).  *bad (may be NULL) is set
 * to the length of the prefix of rel ending with the offending component.
 */
int fsr_dir(const fsr_root *r, const char *rel, size_t n, int create,
	    int do_fsync, size_t *bad);

/* fsync the directory dirfd refers to (best effort: some filesystems
 * refuse it). */
void fsr_fsync_dir(int dirfd);

#endif
