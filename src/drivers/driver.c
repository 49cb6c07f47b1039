/*
 * driver.c - what every driver gets for free: version check, reference
 * counting, path validation and the lup_driver_* wrappers.
 *
 * The wrappers validate paths before a driver sees them, name the driver in
 * every error message ("<name>: <message>", exactly once), fill err->path
 * and sort list results.  Readers and writers handed out by the wrappers are
 * thin proxies that decorate their errors the same way and keep the driver
 * alive (a reference) until they are closed; lock tokens do the same until
 * unlocked.  Drivers therefore write plain messages without their name.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "layerup/sys/driver.h"

static const char *drv_name(const lup_driver *d)
{
	return d->name && d->name[0] ? d->name : "driver";
}

/* Callers may pass err == NULL; drivers always get a cleared record so that
 * we can tell whether they filled it. */
static lup_error *err_prep(lup_error *err, lup_error *tmp)
{
	if (!err)
		err = tmp;
	lup_error_clear(err);
	return err;
}

/* Insert "<name>: " in front of the message unless it is already there. */
static void err_prefix(const lup_driver *d, lup_error *err)
{
	const char *name = drv_name(d);
	size_t nlen = strlen(name), mlen = strlen(err->message);
	size_t plen = nlen + 2;

	if (mlen >= plen && strncmp(err->message, name, nlen) == 0 &&
	    err->message[nlen] == ':' && err->message[nlen + 1] == ' ')
		return;
	if (plen >= sizeof(err->message))
		plen = sizeof(err->message) - 1;
	if (mlen > sizeof(err->message) - 1 - plen)
		mlen = sizeof(err->message) - 1 - plen;
	memmove(err->message + plen, err->message, mlen);
	err->message[plen + mlen] = '\0';
	/* The name itself may be cut when absurdly long. */
	if (nlen > plen)
		nlen = plen;
	memcpy(err->message, name, nlen);
	if (nlen < plen)
		err->message[nlen] = ':';
	if (nlen + 1 < plen)
		err->message[nlen + 1] = ' ';
}

/* Normalise a failure reported by a driver method: a known code, a message,
 * a path, and the driver name in front. */
static int err_fail(const lup_driver *d, int rc, const char *path,
		    lup_error *err)
{
	if (rc >= 0 || rc < LUP_EIO)
		rc = LUP_EIO;
	if (err->code == LUP_OK || err->message[0] == '\0') {
		int transient = err->transient;
		int64_t offset = err->offset;

		lup_error_set(err, rc, NULL, "%s", lup_error_name(rc));
		err->transient = transient;
		err->offset = offset;
	}
	err->code = rc;
	if (err->path[0] == '\0' && path) {
		size_t n = strlen(path);

		if (n >= sizeof(err->path))
			n = sizeof(err->path) - 1;
		memcpy(err->path, path, n);
		err->path[n] = '\0';
	}
	err_prefix(d, err);
	return rc;
}

static int err_unsupported(const lup_driver *d, const char *path,
			   lup_error *err)
{
	lup_error_set(err, LUP_EUNSUPPORTED, path, "unsupported method");
	return err_fail(d, LUP_EUNSUPPORTED, path, err);
}

int lup_driver_init(lup_driver *d, unsigned version, lup_error *err)
{
	if (!d)
		return lup_error_set(err, LUP_EIO, NULL, "driver: NULL driver");
	if (version < 1 || version > LUP_DRIVER_VERSION)
		return lup_error_set(err, LUP_EUNSUPPORTED, NULL,
				     "%s: unsupported driver version %u",
				     drv_name(d), version);
	d->version = version;
	/* Nobody else can see d yet: a plain store is enough. */
	d->refcount_ = 1;
	return 0;
}

/* The count is a plain int in the public struct (C++ has no _Atomic in
 * C headers before C++23), so it is only touched through these builtins. */
void lup_driver_retain(lup_driver *d)
{
	if (d)
		__atomic_fetch_add(&d->refcount_, 1, __ATOMIC_RELAXED);
}

void lup_driver_release(lup_driver *d)
{
	if (!d)
		return;
	/* acq_rel: the last owner must see every other owner's writes. */
	if (__atomic_fetch_sub(&d->refcount_, 1, __ATOMIC_ACQ_REL) == 1 &&
	    d->free)
		d->free(d);
}

const char *lup_driver_name(const lup_driver *d)
{
	return d ? drv_name(d) : "driver";
}

int64_t lup_reader_read(lup_reader *r, void *buf, size_t n, lup_error *err)
{
	if (!r)
		return lup_error_set(err, LUP_EIO, NULL, "reader: NULL reader");
	if (!buf && n > 0)
		return lup_error_set(err, LUP_EIO, NULL, "reader: NULL buffer");
	return r->read(r, buf, n, err);
}

void lup_reader_close(lup_reader *r)
{
	if (r)
		r->close(r);
}

static int is_component_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

int lup_path_valid(const char *path)
{
	const char *p = path;

	if (!p || *p != '/')
		return 0;
	while (*p == '/') {
		const char *c = ++p;
		size_t n;

		while (is_component_char((unsigned char)*p))
			p++;
		n = (size_t)(p - c);
		if (n == 0)
			return 0;
		/* The registry regexp admits these; they would escape a
		 * filesystem root. */
		if (c[0] == '.' && (n == 1 || (n == 2 && c[1] == '.')))
			return 0;
	}
	return *p == '\0';
}

static int check_path(const lup_driver *d, const char *path, int allow_root,
		      lup_error *err)
{
	if (lup_path_valid(path) || (allow_root && path && strcmp(path, "/") == 0))
		return 0;
	lup_error_set(err, LUP_EINVALID_PATH, path, "invalid path: %s",
		      path ? path : "(null)");
	return err_fail(d, LUP_EINVALID_PATH, path, err);
}

/* Reader and writer proxies. */

typedef struct {
	lup_reader base;
	lup_reader *inner;
	lup_driver *d;
} wrap_reader;

typedef struct {
	lup_writer base;
	lup_writer *inner;
	lup_driver *d;
} wrap_writer;

static int64_t wrap_read(lup_reader *r, void *buf, size_t n, lup_error *err)
{
	wrap_reader *w = (wrap_reader *)r;
	lup_error tmp;
	int64_t got;

	err = err_prep(err, &tmp);
	got = w->inner->read(w->inner, buf, n, err);
	if (got < 0)
		return err_fail(w->d, (int)got, NULL, err);
	if ((uint64_t)got > n) {
		lup_error_set(err, LUP_EIO, NULL, "reader returned too much");
		return err_fail(w->d, LUP_EIO, NULL, err);
	}
	return got;
}

static void wrap_reader_close(lup_reader *r)
{
	wrap_reader *w = (wrap_reader *)r;

	w->inner->close(w->inner);
	lup_driver_release(w->d);
	free(w);
}

static int wrap_write(lup_writer *lw, const void *buf, size_t n,
		      lup_error *err)
{
	wrap_writer *w = (wrap_writer *)lw;
	lup_error tmp;
	int rc;

	err = err_prep(err, &tmp);
	rc = w->inner->write(w->inner, buf, n, err);
	return rc < 0 ? err_fail(w->d, rc, NULL, err) : 0;
}

static int64_t wrap_size(lup_writer *lw)
{
	wrap_writer *w = (wrap_writer *)lw;

	return w->inner->size(w->inner);
}

static int wrap_commit(lup_writer *lw, lup_error *err)
{
	wrap_writer *w = (wrap_writer *)lw;
	lup_error tmp;
	int rc;

	err = err_prep(err, &tmp);
	rc = w->inner->commit(w->inner, err);
	return rc < 0 ? err_fail(w->d, rc, NULL, err) : 0;
}

static int wrap_cancel(lup_writer *lw, lup_error *err)
{
	wrap_writer *w = (wrap_writer *)lw;
	lup_error tmp;
	int rc;

	err = err_prep(err, &tmp);
	rc = w->inner->cancel(w->inner, err);
	return rc < 0 ? err_fail(w->d, rc, NULL, err) : 0;
}

static int wrap_publish(lup_writer *lw, const char *dst,
			const char *sha256_hex, lup_error *err)
{
	wrap_writer *w = (wrap_writer *)lw;
	lup_error tmp;
	int rc;

	err = err_prep(err, &tmp);
	if (w->inner->version < 2 || !w->inner->publish)
		return lup_error_set(err, LUP_EUNSUPPORTED, dst,
				     "writer cannot publish");
	if ((rc = check_path(w->d, dst, 0, err)))
		return rc;
	rc = w->inner->publish(w->inner, dst, sha256_hex, err);
	return rc < 0 ? err_fail(w->d, rc, dst, err) : rc > 0;
}

static int wrap_writer_close(lup_writer *lw, lup_error *err)
{
	wrap_writer *w = (wrap_writer *)lw;
	lup_error tmp;
	int rc;

	err = err_prep(err, &tmp);
	rc = w->inner->close(w->inner, err);
	if (rc < 0)
		rc = err_fail(w->d, rc, NULL, err);
	else
		rc = 0;
	lup_driver_release(w->d);
	free(w);
	return rc;
}

/* The wrappers. */

int lup_driver_get_content(lup_driver *d, const char *path, lup_buf *out,
			   lup_error *err)
{
	lup_error tmp;
	size_t len0 = out->len;
	int rc;

	err = err_prep(err, &tmp);
	if ((rc = check_path(d, path, 0, err)))
		return rc;
	if (!d->get_content)
		return err_unsupported(d, path, err);
	rc = d->get_content(d, path, out, err);
	if (rc < 0) {
		out->len = len0;
		return err_fail(d, rc, path, err);
	}
	return 0;
}

int lup_driver_put_content(lup_driver *d, const char *path, const void *data,
			   size_t len, lup_error *err)
{
	lup_error tmp;
	int rc;

	err = err_prep(err, &tmp);
	if ((rc = check_path(d, path, 0, err)))
		return rc;
	if (!d->put_content)
		return err_unsupported(d, path, err);
	rc = d->put_content(d, path, data, len, err);
	return rc < 0 ? err_fail(d, rc, path, err) : 0;
}

int lup_driver_reader(lup_driver *d, const char *path, int64_t offset,
		      lup_reader **out, lup_error *err)
{
	lup_error tmp;
	lup_reader *inner = NULL;
	wrap_reader *w;
	int rc;

	*out = NULL;
	err = err_prep(err, &tmp);
	/* The registry checks the offset before the path. */
	if (offset < 0) {
		lup_error_set(err, LUP_EINVALID_OFFSET, path,
			      "invalid offset: %lld for path: %s",
			      (long long)offset, path ? path : "(null)");
		err->offset = offset;
		return err_fail(d, LUP_EINVALID_OFFSET, path, err);
	}
	if ((rc = check_path(d, path, 0, err)))
		return rc;
	if (!d->reader)
		return err_unsupported(d, path, err);
	w = malloc(sizeof(*w));
	if (!w) {
		lup_error_set(err, LUP_EIO, path, "out of memory");
		return err_fail(d, LUP_EIO, path, err);
	}
	rc = d->reader(d, path, offset, &inner, err);
	if (rc >= 0 && (!inner || inner->version < 1 ||
			inner->version > LUP_READER_VERSION)) {
		if (inner)
			inner->close(inner);
		lup_error_set(err, LUP_EUNSUPPORTED, path,
			      "bad reader version");
		rc = LUP_EUNSUPPORTED;
	}
	if (rc < 0) {
		free(w);
		return err_fail(d, rc, path, err);
	}
	w->base.version = LUP_READER_VERSION;
	w->base.read = wrap_read;
	w->base.close = wrap_reader_close;
	w->inner = inner;
	w->d = d;
	lup_driver_retain(d);
	*out = &w->base;
	return 0;
}

int lup_driver_writer(lup_driver *d, const char *path, int append,
		      lup_writer **out, lup_error *err)
{
	lup_error tmp;
	lup_writer *inner = NULL;
	wrap_writer *w;
	int rc;

	*out = NULL;
	err = err_prep(err, &tmp);
	if ((rc = check_path(d, path, 0, err)))
		return rc;
	if (!d->writer)
		return err_unsupported(d, path, err);
	w = malloc(sizeof(*w));
	if (!w) {
		lup_error_set(err, LUP_EIO, path, "out of memory");
		return err_fail(d, LUP_EIO, path, err);
	}
	if (append != 1 && (append != LUP_WRITE_NEW || d->version < 2))
		append = 0; /* a version-1 driver knows 0 and 1 only */
	rc = d->writer(d, path, append, &inner, err);
	if (rc >= 0 && (!inner || inner->version < 1 ||
			inner->version > LUP_WRITER_VERSION)) {
		if (inner)
			inner->close(inner, NULL);
		lup_error_set(err, LUP_EUNSUPPORTED, path,
			      "bad writer version");
		rc = LUP_EUNSUPPORTED;
	}
	if (rc < 0) {
		free(w);
		return err_fail(d, rc, path, err);
	}
	w->base.version = LUP_WRITER_VERSION;
	w->base.write = wrap_write;
	w->base.size = wrap_size;
	w->base.commit = wrap_commit;
	w->base.cancel = wrap_cancel;
	w->base.close = wrap_writer_close;
	/* NULL tells the store not to try (a version-1 writer has none). */
	w->base.publish = inner->version >= 2 && inner->publish ? wrap_publish
								: NULL;
	w->inner = inner;
	w->d = d;
	lup_driver_retain(d);
	*out = &w->base;
	return 0;
}

int lup_driver_stat(lup_driver *d, const char *path, lup_stat *out,
		    lup_error *err)
{
	lup_error tmp;
	int rc;

	err = err_prep(err, &tmp);
	memset(out, 0, sizeof(*out));
	if ((rc = check_path(d, path, 1, err)))
		return rc;
	if (!d->stat)
		return err_unsupported(d, path, err);
	rc = d->stat(d, path, out, err);
	return rc < 0 ? err_fail(d, rc, path, err) : 0;
}

int lup_driver_list(lup_driver *d, const char *path, lup_strlist *out,
		    lup_error *err)
{
	lup_error tmp;
	lup_strlist got = { 0 };
	int rc;

	err = err_prep(err, &tmp);
	if ((rc = check_path(d, path, 1, err)))
		return rc;
	if (!d->list)
		return err_unsupported(d, path, err);
	/* Collect apart so that a failure leaves out untouched. */
	rc = d->list(d, path, &got, err);
	if (rc < 0) {
		lup_strlist_free(&got);
		return err_fail(d, rc, path, err);
	}
	if (out->count == 0) {
		lup_strlist_free(out);
		*out = got;
	} else {
		for (size_t i = 0; i < got.count; i++) {
			if (lup_strlist_push(out, got.items[i]) < 0) {
				lup_strlist_free(&got);
				lup_error_set(err, LUP_EIO, path,
					      "out of memory");
				return err_fail(d, LUP_EIO, path, err);
			}
		}
		lup_strlist_free(&got);
	}
	lup_strlist_sort(out);
	return 0;
}

int lup_driver_move(lup_driver *d, const char *src, const char *dst,
		    lup_error *err)
{
	lup_error tmp;
	size_t slen;
	int rc;

	err = err_prep(err, &tmp);
	if ((rc = check_path(d, src, 0, err)) ||
	    (rc = check_path(d, dst, 0, err)))
		return rc;
	if (!d->move)
		return err_unsupported(d, src, err);
	if (strcmp(src, dst) == 0) {
		/* rename(2) semantics: a no-op when the source exists. */
		lup_stat st;

		if (!d->stat)
			return 0;
		rc = d->stat(d, src, &st, err);
		return rc < 0 ? err_fail(d, rc, src, err) : 0;
	}
	slen = strlen(src);
	if (strncmp(src, dst, slen) == 0 && dst[slen] == '/') {
		lup_error_set(err, LUP_EIO, src, "cannot move %s into itself",
			      src);
		return err_fail(d, LUP_EIO, src, err);
	}
	rc = d->move(d, src, dst, err);
	return rc < 0 ? err_fail(d, rc, src, err) : 0;
}

int lup_driver_delete(lup_driver *d, const char *path, lup_error *err)
{
	lup_error tmp;
	int rc;

	err = err_prep(err, &tmp);
	if ((rc = check_path(d, path, 0, err)))
		return rc;
	if (!d->remove)
		return err_unsupported(d, path, err);
	rc = d->remove(d, path, err);
	return rc < 0 ? err_fail(d, rc, path, err) : 0;
}

int lup_driver_lock(lup_driver *d, const char *path, void **token,
		    lup_error *err)
{
	lup_error tmp;
	int rc;

	*token = NULL;
	err = err_prep(err, &tmp);
	if ((rc = check_path(d, path, 0, err)))
		return rc;
	if (!d->lock)
		return 0;
	rc = d->lock(d, path, token, err);
	if (rc < 0) {
		*token = NULL;
		return err_fail(d, rc, path, err);
	}
	/* A held lock keeps the driver alive until unlock. */
	if (*token)
		lup_driver_retain(d);
	return 0;
}

void lup_driver_unlock(lup_driver *d, void *token)
{
	if (!token)
		return;
	if (d->unlock)
		d->unlock(d, token);
	lup_driver_release(d);
}
