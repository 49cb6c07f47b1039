/*
 * driver_mem.c - the "inmemory" driver: reference semantics in one process.
 *
 * The store is a sorted array of (path, blob) entries, one per file, under
 * one mutex.  Directories are implicit: a directory exists while some file
 * lies below it, so every directory question is a prefix range query, and
 * all files below "/a/" are contiguous in bytewise order.
 *
 * File content lives in refcounted, append-only blobs: bytes once written
 * never change, and truncation (put_content, writer with append=0) installs
 * a fresh blob.  So a reader holds its blob and the length at open time and
 * reads a consistent snapshot even while the file is appended to, removed
 * or replaced; a writer keeps appending to its blob even if the path has
 * been removed or replaced meanwhile (its bytes are then lost, exactly as
 * with an unlinked file on disk).  Each blob has its own mutex (lock order:
 * driver, then blob) because appends may move the buffer.
 *
 * Locks are a list of locked paths under the driver mutex.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "layerup/sys/driver.h"

typedef struct {
	atomic_int refs;
	pthread_mutex_t mu;
	unsigned char *data;
	size_t len, cap;
	int64_t mtime_ns;
} mem_blob;

typedef struct {
	char *path;
	mem_blob *blob;
} mem_entry;

typedef struct mem_lock {
	struct mem_lock *next;
	char path[];
} mem_lock;

typedef struct {
	lup_driver base;
	pthread_mutex_t mu;
	mem_entry *ents; /* sorted by path, bytewise */
	size_t count, cap;
	mem_lock *locks;
} mem_driver;

enum { MEM_OPEN, MEM_COMMITTED, MEM_CANCELLED };

typedef struct {
	lup_reader base;
	mem_blob *blob;
	size_t pos, end;
} mem_reader;

typedef struct {
	lup_writer base;
	mem_driver *md;
	mem_blob *blob;
	int64_t size;
	int state;
	char path[];
} mem_writer;

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static mem_blob *blob_new(const void *data, size_t len)
{
	mem_blob *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	if (len) {
		b->data = malloc(len);
		if (!b->data) {
			free(b);
			return NULL;
		}
		memcpy(b->data, data, len);
	}
	if (pthread_mutex_init(&b->mu, NULL) != 0) {
		free(b->data);
		free(b);
		return NULL;
	}
	b->len = b->cap = len;
	b->mtime_ns = now_ns();
	atomic_init(&b->refs, 1);
	return b;
}

static mem_blob *blob_ref(mem_blob *b)
{
	atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
	return b;
}

static void blob_unref(mem_blob *b)
{
	if (!b || atomic_fetch_sub_explicit(&b->refs, 1,
					    memory_order_acq_rel) != 1)
		return;
	pthread_mutex_destroy(&b->mu);
	free(b->data);
	free(b);
}

/* Compare s with the directory key p[0..n) + "/".  0 means s lies below the
 * directory; n == 0 is the root, below which everything lies. */
static int cmp_dirkey(const char *s, const char *p, size_t n)
{
	int c = strncmp(s, p, n);

	if (c)
		return c;
	return (int)(unsigned char)s[n] - (int)'/';
}

/* Length of the directory key for path: 0 for the root. */
static size_t dirkey_len(const char *path)
{
	return strcmp(path, "/") == 0 ? 0 : strlen(path);
}

/* First entry at or below directory p[0..n). */
static size_t lower_dir(const mem_driver *md, const char *p, size_t n)
{
	size_t lo = 0, hi = md->count;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (cmp_dirkey(md->ents[mid].path, p, n) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* One past the last entry below directory p[0..n), from lo. */
static size_t end_dir(const mem_driver *md, size_t lo, const char *p,
		      size_t n)
{
	while (lo < md->count && cmp_dirkey(md->ents[lo].path, p, n) == 0)
		lo++;
	return lo;
}

static int is_dir(const mem_driver *md, const char *path)
{
	size_t n = dirkey_len(path), i = lower_dir(md, path, n);

	return n == 0 || (i < md->count &&
			  cmp_dirkey(md->ents[i].path, path, n) == 0);
}

/* Binary search for p[0..n) exactly; *at is the insertion point. */
static int find_n(const mem_driver *md, const char *p, size_t n, size_t *at)
{
	size_t lo = 0, hi = md->count;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const char *s = md->ents[mid].path;
		int c = strncmp(s, p, n);

		if (c == 0)
			c = s[n] != '\0';
		if (c == 0) {
			*at = mid;
			return 1;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*at = lo;
	return 0;
}

static int find(const mem_driver *md, const char *path, size_t *at)
{
	return find_n(md, path, strlen(path), at);
}

/* 1 when some proper ancestor of path is a file. */
static int ancestor_is_file(const mem_driver *md, const char *path)
{
	size_t at;

	for (const char *s = strchr(path + 1, '/'); s; s = strchr(s + 1, '/'))
		if (find_n(md, path, (size_t)(s - path), &at))
			return 1;
	return 0;
}

/* Where a file may be created or replaced: not a directory, and no
 * ancestor is a file.  0 or an IO error. */
static int check_file_target(const mem_driver *md, const char *path,
			     lup_error *err)
{
	if (is_dir(md, path))
		return lup_error_set(err, LUP_EIO, path, "not a file: %s",
				     path);
	if (ancestor_is_file(md, path))
		return lup_error_set(err, LUP_EIO, path,
				     "not a directory: a parent of %s", path);
	return 0;
}

static int ensure_cap(mem_driver *md)
{
	mem_entry *ents;
	size_t cap;

	if (md->count < md->cap)
		return 0;
	cap = md->cap ? md->cap * 2 : 16;
	ents = realloc(md->ents, cap * sizeof(*ents));
	if (!ents)
		return -1;
	md->ents = ents;
	md->cap = cap;
	return 0;
}

/* Install blob at path (replacing any file there); takes over the caller's
 * blob reference.  Driver mutex held, target checked.  *old receives the
 * replaced blob, to be unreferenced by the caller. */
static int install(mem_driver *md, const char *path, mem_blob *blob,
		   mem_blob **old, lup_error *err)
{
	size_t at;
	char *copy;

	*old = NULL;
	if (find(md, path, &at)) {
		*old = md->ents[at].blob;
		md->ents[at].blob = blob;
		return 0;
	}
	copy = strdup(path);
	if (!copy || ensure_cap(md) < 0) {
		free(copy);
		return lup_error_set(err, LUP_EIO, path, "out of memory");
	}
	memmove(md->ents + at + 1, md->ents + at,
		(md->count - at) * sizeof(*md->ents));
	md->ents[at].path = copy;
	md->ents[at].blob = blob;
	md->count++;
	return 0;
}

/* Drop entries [lo, hi).  Driver mutex held. */
static void drop_range(mem_driver *md, size_t lo, size_t hi)
{
	for (size_t i = lo; i < hi; i++) {
		free(md->ents[i].path);
		blob_unref(md->ents[i].blob);
	}
	if (hi < md->count)
		memmove(md->ents + lo, md->ents + hi,
			(md->count - hi) * sizeof(*md->ents));
	md->count -= hi - lo;
}

static int mem_get_content(lup_driver *d, const char *path, lup_buf *out,
			   lup_error *err)
{
	mem_driver *md = (mem_driver *)d;
	mem_blob *b = NULL;
	size_t at;
	int rc = 0;

	pthread_mutex_lock(&md->mu);
	if (find(md, path, &at))
		b = blob_ref(md->ents[at].blob);
	else if (is_dir(md, path))
		rc = lup_error_set(err, LUP_EIO, path, "not a file: %s", path);
	else
		rc = lup_error_set(err, LUP_EPATH_NOT_FOUND, path,
				   "Path not found: %s", path);
	pthread_mutex_unlock(&md->mu);
	if (!b)
		return rc;
	pthread_mutex_lock(&b->mu);
	if (lup_buf_append(out, b->data, b->len) < 0)
		rc = lup_error_set(err, LUP_EIO, path, "out of memory");
	pthread_mutex_unlock(&b->mu);
	blob_unref(b);
	return rc;
}

static int mem_put_content(lup_driver *d, const char *path, const void *data,
			   size_t len, lup_error *err)
{
	mem_driver *md = (mem_driver *)d;
	mem_blob *b, *old = NULL;
	int rc;

	/* Copy outside the lock: other threads keep going meanwhile. */
	b = blob_new(data, len);
	if (!b)
		return lup_error_set(err, LUP_EIO, path, "out of memory");
	pthread_mutex_lock(&md->mu);
	rc = check_file_target(md, path, err);
	if (rc == 0)
		rc = install(md, path, b, &old, err);
	pthread_mutex_unlock(&md->mu);
	if (rc < 0)
		blob_unref(b);
	blob_unref(old);
	return rc;
}

static int64_t mem_read(lup_reader *lr, void *buf, size_t n, lup_error *err)
{
	mem_reader *r = (mem_reader *)lr;

	(void)err;
	if (r->pos >= r->end)
		return 0;
	if (n > r->end - r->pos)
		n = r->end - r->pos;
	if (n > INT64_MAX)
		n = INT64_MAX;
	pthread_mutex_lock(&r->blob->mu);
	memcpy(buf, r->blob->data + r->pos, n);
	pthread_mutex_unlock(&r->blob->mu);
	r->pos += n;
	return (int64_t)n;
}

static void mem_reader_close(lup_reader *lr)
{
	mem_reader *r = (mem_reader *)lr;

	blob_unref(r->blob);
	free(r);
}

static int mem_reader_open(lup_driver *d, const char *path, int64_t offset,
			   lup_reader **out, lup_error *err)
{
	mem_driver *md = (mem_driver *)d;
	mem_reader *r;
	size_t at;
	int rc = 0;

	r = calloc(1, sizeof(*r));
	if (!r)
		return lup_error_set(err, LUP_EIO, path, "out of memory");
	pthread_mutex_lock(&md->mu);
	if (find(md, path, &at))
		r->blob = blob_ref(md->ents[at].blob);
	else if (is_dir(md, path))
		rc = lup_error_set(err, LUP_EIO, path, "not a file: %s", path);
	else
		rc = lup_error_set(err, LUP_EPATH_NOT_FOUND, path,
				   "Path not found: %s", path);
	pthread_mutex_unlock(&md->mu);
	if (rc < 0) {
		free(r);
		return rc;
	}
	pthread_mutex_lock(&r->blob->mu);
	r->end = r->blob->len;
	pthread_mutex_unlock(&r->blob->mu);
	r->pos = (uint64_t)offset > r->end ? r->end : (size_t)offset;
	r->base.version = LUP_READER_VERSION;
	r->base.read = mem_read;
	r->base.close = mem_reader_close;
	*out = &r->base;
	return 0;
}

static int mem_state_err(mem_writer *w, lup_error *err)
{
	return lup_error_set(err, LUP_EIO, w->path, "already %s",
			     w->state == MEM_COMMITTED ? "committed"
						       : "cancelled");
}

static int mem_write(lup_writer *lw, const void *buf, size_t n,
		     lup_error *err)
{
	mem_writer *w = (mem_writer *)lw;
	mem_blob *b = w->blob;
	int rc = 0;

	if (w->state != MEM_OPEN)
		return mem_state_err(w, err);
	if (n == 0)
		return 0;
	pthread_mutex_lock(&b->mu);
	if (n > SIZE_MAX - b->len) {
		rc = lup_error_set(err, LUP_EIO, w->path, "file too large");
		goto out;
	}
	if (b->len + n > b->cap) {
		/* Doubling: a long upload in small chunks stays linear. */
		size_t cap = b->cap ? b->cap : 256;
		unsigned char *data;

		while (cap < b->len + n)
			cap = cap > SIZE_MAX / 2 ? b->len + n : cap * 2;
		data = realloc(b->data, cap);
		if (!data) {
			rc = lup_error_set(err, LUP_EIO, w->path,
					   "out of memory");
			goto out;
		}
		b->data = data;
		b->cap = cap;
	}
	memcpy(b->data + b->len, buf, n);
	b->len += n;
	b->mtime_ns = now_ns();
	w->size += (int64_t)n;
out:
	pthread_mutex_unlock(&b->mu);
	return rc;
}

static int64_t mem_size(lup_writer *lw)
{
	return ((mem_writer *)lw)->size;
}

static int mem_commit(lup_writer *lw, lup_error *err)
{
	mem_writer *w = (mem_writer *)lw;

	/* Every write is already visible: nothing to publish. */
	if (w->state == MEM_CANCELLED)
		return mem_state_err(w, err);
	w->state = MEM_COMMITTED;
	return 0;
}

static int mem_cancel(lup_writer *lw, lup_error *err)
{
	mem_writer *w = (mem_writer *)lw;
	mem_driver *md = w->md;
	size_t at;

	if (w->state == MEM_COMMITTED)
		return mem_state_err(w, err);
	w->state = MEM_CANCELLED;
	/* Like unlink(2) of the path on disk: whatever file is there goes. */
	pthread_mutex_lock(&md->mu);
	if (find(md, w->path, &at))
		drop_range(md, at, at + 1);
	pthread_mutex_unlock(&md->mu);
	return 0;
}

static int mem_writer_close(lup_writer *lw, lup_error *err)
{
	mem_writer *w = (mem_writer *)lw;

	(void)err;
	blob_unref(w->blob);
	free(w);
	return 0;
}

static int mem_writer_open(lup_driver *d, const char *path, int append,
			   lup_writer **out, lup_error *err)
{
	mem_driver *md = (mem_driver *)d;
	size_t plen = strlen(path), at;
	mem_blob *fresh, *old = NULL;
	mem_writer *w;
	int rc;

	if (append == LUP_WRITE_NEW)
		append = 0; /* new: the same as a truncation here */

	w = calloc(1, sizeof(*w) + plen + 1);
	fresh = blob_new(NULL, 0);
	if (!w || !fresh) {
		free(w);
		blob_unref(fresh);
		return lup_error_set(err, LUP_EIO, path, "out of memory");
	}
	pthread_mutex_lock(&md->mu);
	rc = check_file_target(md, path, err);
	if (rc == 0 && append && find(md, path, &at)) {
		w->blob = blob_ref(md->ents[at].blob);
	} else if (rc == 0) {
		rc = install(md, path, fresh, &old, err);
		if (rc == 0) {
			w->blob = blob_ref(fresh);
			fresh = NULL; /* the entry owns it now */
		}
	}
	pthread_mutex_unlock(&md->mu);
	blob_unref(fresh);
	blob_unref(old);
	if (rc < 0) {
		free(w);
		return rc;
	}
	pthread_mutex_lock(&w->blob->mu);
	w->size = (int64_t)w->blob->len;
	pthread_mutex_unlock(&w->blob->mu);
	w->md = md;
	w->state = MEM_OPEN;
	memcpy(w->path, path, plen + 1);
	w->base.version = LUP_WRITER_VERSION;
	w->base.write = mem_write;
	w->base.size = mem_size;
	w->base.commit = mem_commit;
	w->base.cancel = mem_cancel;
	w->base.close = mem_writer_close;
	w->base.publish = NULL;
	*out = &w->base;
	return 0;
}

static int mem_stat(lup_driver *d, const char *path, lup_stat *out,
		    lup_error *err)
{
	mem_driver *md = (mem_driver *)d;
	size_t at;
	int rc = 0;

	pthread_mutex_lock(&md->mu);
	if (find(md, path, &at)) {
		mem_blob *b = md->ents[at].blob;

		pthread_mutex_lock(&b->mu);
		out->size = (int64_t)b->len;
		out->mtime_ns = b->mtime_ns;
		pthread_mutex_unlock(&b->mu);
		out->is_dir = 0;
	} else if (is_dir(md, path)) {
		size_t n = dirkey_len(path), lo = lower_dir(md, path, n);
		size_t hi = end_dir(md, lo, path, n);

		/* A directory changes when anything below it does. */
		out->size = 0;
		out->is_dir = 1;
		out->mtime_ns = 0;
		for (size_t i = lo; i < hi; i++) {
			mem_blob *b = md->ents[i].blob;

			pthread_mutex_lock(&b->mu);
			if (b->mtime_ns > out->mtime_ns)
				out->mtime_ns = b->mtime_ns;
			pthread_mutex_unlock(&b->mu);
		}
	} else {
		rc = lup_error_set(err, LUP_EPATH_NOT_FOUND, path,
				   "Path not found: %s", path);
	}
	pthread_mutex_unlock(&md->mu);
	return rc;
}

static int mem_list(lup_driver *d, const char *path, lup_strlist *out,
		    lup_error *err)
{
	mem_driver *md = (mem_driver *)d;
	size_t n = dirkey_len(path), lo, hi, at;
	int rc = 0;

	pthread_mutex_lock(&md->mu);
	lo = lower_dir(md, path, n);
	hi = end_dir(md, lo, path, n);
	if (find(md, path, &at)) {
		rc = lup_error_set(err, LUP_EIO, path, "not a directory: %s",
				   path);
		goto out;
	}
	if (lo == hi && n != 0) {
		rc = lup_error_set(err, LUP_EPATH_NOT_FOUND, path,
				   "Path not found: %s", path);
		goto out;
	}
	for (size_t i = lo; i < hi; i++) {
		const char *s = md->ents[i].path;
		const char *slash = strchr(s + n + 1, '/');
		size_t clen = slash ? (size_t)(slash - s) : strlen(s);

		/* Files below one child directory are contiguous. */
		if (out->count) {
			const char *last = out->items[out->count - 1];

			if (strncmp(last, s, clen) == 0 && last[clen] == '\0')
				continue;
		}
		if (lup_strlist_push(out, s) < 0) {
			rc = lup_error_set(err, LUP_EIO, path,
					   "out of memory");
			goto out;
		}
		out->items[out->count - 1][clen] = '\0';
	}
out:
	pthread_mutex_unlock(&md->mu);
	return rc;
}

static int cmp_entry(const void *a, const void *b)
{
	return strcmp(((const mem_entry *)a)->path,
		      ((const mem_entry *)b)->path);
}

static int mem_move(lup_driver *d, const char *src, const char *dst,
		    lup_error *err)
{
	mem_driver *md = (mem_driver *)d;
	size_t at, n = strlen(src), dlen = strlen(dst), lo, hi;
	mem_blob *old = NULL;
	char **paths = NULL;
	int rc = 0;

	pthread_mutex_lock(&md->mu);
	if (find(md, src, &at)) {
		mem_blob *b = md->ents[at].blob;

		if ((rc = check_file_target(md, dst, err)) < 0)
			goto out;
		/* Insert first (it may fail), then drop src by value: the
		 * insertion may have shifted it. */
		if ((rc = install(md, dst, blob_ref(b), &old, err)) < 0) {
			blob_unref(b);
			goto out;
		}
		if (find(md, src, &at))
			drop_range(md, at, at + 1);
		goto out;
	}
	lo = lower_dir(md, src, n);
	hi = end_dir(md, lo, src, n);
	if (lo == hi) {
		rc = lup_error_set(err, LUP_EPATH_NOT_FOUND, src,
				   "Path not found: %s", src);
		goto out;
	}
	if (find(md, dst, &at) || is_dir(md, dst) ||
	    ancestor_is_file(md, dst)) {
		rc = lup_error_set(err, LUP_EIO, src,
				   "move %s to %s: destination exists", src,
				   dst);
		goto out;
	}
	/* Allocate every new name before changing anything. */
	paths = calloc(hi - lo, sizeof(*paths));
	if (!paths)
		goto oom;
	for (size_t i = lo; i < hi; i++) {
		const char *rest = md->ents[i].path + n;
		size_t rlen = strlen(rest);

		paths[i - lo] = malloc(dlen + rlen + 1);
		if (!paths[i - lo])
			goto oom;
		memcpy(paths[i - lo], dst, dlen);
		memcpy(paths[i - lo] + dlen, rest, rlen + 1);
	}
	for (size_t i = lo; i < hi; i++) {
		free(md->ents[i].path);
		md->ents[i].path = paths[i - lo];
		paths[i - lo] = NULL;
	}
	qsort(md->ents, md->count, sizeof(*md->ents), cmp_entry);
	goto out;
oom:
	rc = lup_error_set(err, LUP_EIO, src, "out of memory");
out:
	if (paths) {
		for (size_t i = lo; i < hi; i++)
			free(paths[i - lo]);
		free(paths);
	}
	pthread_mutex_unlock(&md->mu);
	blob_unref(old);
	return rc;
}

static int mem_remove(lup_driver *d, const char *path, lup_error *err)
{
	mem_driver *md = (mem_driver *)d;
	size_t at, n = strlen(path), lo, hi;
	int rc = 0;

	pthread_mutex_lock(&md->mu);
	if (find(md, path, &at)) {
		drop_range(md, at, at + 1);
		goto out;
	}
	lo = lower_dir(md, path, n);
	hi = end_dir(md, lo, path, n);
	if (lo == hi)
		rc = lup_error_set(err, LUP_EPATH_NOT_FOUND, path,
				   "Path not found: %s", path);
	else
		drop_range(md, lo, hi);
out:
	pthread_mutex_unlock(&md->mu);
	return rc;
}

static int mem_lock_path(lup_driver *d, const char *path, void **token,
			 lup_error *err)
{
	mem_driver *md = (mem_driver *)d;
	size_t plen = strlen(path), at;
	mem_lock *lk = malloc(sizeof(*lk) + plen + 1);
	int rc = 0;

	if (!lk)
		return lup_error_set(err, LUP_EIO, path, "out of memory");
	memcpy(lk->path, path, plen + 1);
	pthread_mutex_lock(&md->mu);
	/* Same contract as the filesystem: only existing paths lock. */
	if (!find(md, path, &at) && !is_dir(md, path)) {
		rc = lup_error_set(err, LUP_EPATH_NOT_FOUND, path,
				   "Path not found: %s", path);
		goto out;
	}
	for (mem_lock *l = md->locks; l; l = l->next) {
		if (strcmp(l->path, path) == 0) {
			rc = lup_error_set(err, LUP_ELOCKED, path,
					   "locked by another writer: %s",
					   path);
			goto out;
		}
	}
	lk->next = md->locks;
	md->locks = lk;
	*token = lk;
	lk = NULL;
out:
	pthread_mutex_unlock(&md->mu);
	free(lk);
	return rc;
}

static void mem_unlock(lup_driver *d, void *token)
{
	mem_driver *md = (mem_driver *)d;

	pthread_mutex_lock(&md->mu);
	for (mem_lock **l = &md->locks; *l; l = &(*l)->next) {
		if (*l == token) {
			*l = (*l)->next;
			break;
		}
	}
	pthread_mutex_unlock(&md->mu);
	free(token);
}

static void mem_free(lup_driver *d)
{
	mem_driver *md = (mem_driver *)d;

	drop_range(md, 0, md->count);
	free(md->ents);
	while (md->locks) {
		mem_lock *next = md->locks->next;

		free(md->locks);
		md->locks = next;
	}
	pthread_mutex_destroy(&md->mu);
	free(md);
}

int lup_driver_memory(lup_driver **out, lup_error *err)
{
	mem_driver *md;
	int rc;

	*out = NULL;
	md = calloc(1, sizeof(*md));
	if (!md)
		return lup_error_set(err, LUP_EIO, NULL,
				     "inmemory: out of memory");
	if (pthread_mutex_init(&md->mu, NULL) != 0) {
		free(md);
		return lup_error_set(err, LUP_EIO, NULL,
				     "inmemory: cannot create a mutex");
	}
	md->base.version = LUP_DRIVER_VERSION;
	md->base.name = "inmemory";
	md->base.get_content = mem_get_content;
	md->base.put_content = mem_put_content;
	md->base.reader = mem_reader_open;
	md->base.writer = mem_writer_open;
	md->base.stat = mem_stat;
	md->base.list = mem_list;
	md->base.move = mem_move;
	md->base.remove = mem_remove;
	md->base.lock = mem_lock_path;
	md->base.unlock = mem_unlock;
	md->base.free = mem_free;
	if ((rc = lup_driver_init(&md->base, LUP_DRIVER_VERSION, err)) < 0) {
		mem_free(&md->base);
		return rc;
	}
	*out = &md->base;
	return 0;
}
