/*
 * driver_fault.c - the fault driver: counts every storage operation of a
 * wrapped driver and, at chosen operations, kills the process or fails the
 * operation (see include/layerup/sys/fault.h).
 *
 * The torture suite (tools/torture, spec/torture_spec.lua) uses it to put a
 * SIGKILL at every operation boundary of an upload's life and to fail each
 * operation in turn (SQLite's I/O-error sweep).  The inner driver is called
 * through the lup_driver_* wrappers, so it sees validated paths only and its
 * readers and writers keep it alive.
 */
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "layerup/sys/fault.h"

typedef struct {
	lup_driver base;
	lup_driver *inner;
	lup_fault_options o;
	atomic_llong ops;      /* operations started */
	atomic_llong injected; /* failures injected */
	/* The trace (o.record): threads may call the driver at once. */
	pthread_mutex_t mu;
	lup_strlist trace;
	int trace_oom;
} fault_driver;

typedef struct {
	lup_reader base;
	fault_driver *fd; /* holds a reference */
	lup_reader *inner;
} fault_reader;

typedef struct {
	lup_writer base;
	fault_driver *fd; /* holds a reference */
	lup_writer *inner;
	char path[];
} fault_writer;

/* A crash point: no cleanup, no flush, exactly like a kill from outside. */
static _Noreturn void crash(void)
{
	raise(SIGKILL);
	_exit(137); /* not reached: SIGKILL cannot be caught */
}

/* Sleep us microseconds, through signals. */
static void stall(int64_t us)
{
	struct timespec ts = { (time_t)(us / 1000000), (long)(us % 1000000) * 1000 };

	while (nanosleep(&ts, &ts) != 0)
		;
}

static void record(fault_driver *fd, const char *op, const char *path)
{
	char line[LUP_ERROR_PATH_MAX + 32];

	snprintf(line, sizeof(line), "%s %s", op, path ? path : "");
	pthread_mutex_lock(&fd->mu);
	if (!fd->trace_oom && lup_strlist_push(&fd->trace, line) < 0)
		fd->trace_oom = 1;
	pthread_mutex_unlock(&fd->mu);
}

/* Start operation op: count it, crash before it when asked, and tell
 * whether it must fail (1) or run (0).  *k receives its number. */
static int enter(fault_driver *fd, const char *op, const char *path,
		 int failable, int64_t *k)
{
	const lup_fault_options *o = &fd->o;
	int64_t n = atomic_fetch_add(&fd->ops, 1) + 1;

	*k = n;
	if (o->record)
		record(fd, op, path);
	if (n == o->delay_at)
		stall(o->delay_us);
	if (n == o->crash_at && !o->crash_after)
		crash();
	if (failable && o->fail_at > 0 && n >= o->fail_at &&
	    (o->fail_count <= 0 || n - o->fail_at < o->fail_count)) {
		atomic_fetch_add(&fd->injected, 1);
		return 1;
	}
	return 0;
}

/* End operation k: the crash point after it. */
static void leave(fault_driver *fd, int64_t k)
{
	if (k == fd->o.crash_at && fd->o.crash_after)
		crash();
}

static int inject(fault_driver *fd, int64_t k, const char *op,
		  const char *path, lup_error *err)
{
	int code = fd->o.fail_code ? fd->o.fail_code : LUP_EIO;

	lup_error_set(err, code, path, "injected fault at operation %" PRId64
		      " (%s)", k, op);
	if (err)
		err->transient = fd->o.fail_transient;
	return code;
}

/* Run one driver method: the common frame of every wrapped call. */
#define FAULT_CALL(fd, op, path, call)                                   \
	do {                                                              \
		int64_t k_;                                               \
		int rc_;                                                  \
		if (enter((fd), (op), (path), 1, &k_))                    \
			return inject((fd), k_, (op), (path), err);       \
		rc_ = (call);                                             \
		leave((fd), k_);                                          \
		return rc_;                                               \
	} while (0)

static fault_driver *FD(lup_driver *d) { return (fault_driver *)d; }

static int f_get_content(lup_driver *d, const char *path, lup_buf *out,
			 lup_error *err)
{
	FAULT_CALL(FD(d), "get_content", path,
		   lup_driver_get_content(FD(d)->inner, path, out, err));
}

static int f_put_content(lup_driver *d, const char *path, const void *data,
			 size_t len, lup_error *err)
{
	FAULT_CALL(FD(d), "put_content", path,
		   lup_driver_put_content(FD(d)->inner, path, data, len, err));
}

static int f_stat(lup_driver *d, const char *path, lup_stat *out,
		  lup_error *err)
{
	FAULT_CALL(FD(d), "stat", path,
		   lup_driver_stat(FD(d)->inner, path, out, err));
}

static int f_list(lup_driver *d, const char *path, lup_strlist *out,
		  lup_error *err)
{
	FAULT_CALL(FD(d), "list", path,
		   lup_driver_list(FD(d)->inner, path, out, err));
}

static int f_move(lup_driver *d, const char *src, const char *dst,
		  lup_error *err)
{
	FAULT_CALL(FD(d), "move", src,
		   lup_driver_move(FD(d)->inner, src, dst, err));
}

static int f_remove(lup_driver *d, const char *path, lup_error *err)
{
	FAULT_CALL(FD(d), "remove", path,
		   lup_driver_delete(FD(d)->inner, path, err));
}

static int f_lock(lup_driver *d, const char *path, void **token,
		  lup_error *err)
{
	FAULT_CALL(FD(d), "lock", path,
		   lup_driver_lock(FD(d)->inner, path, token, err));
}

/* Unlock cannot fail; it is still a boundary a crash can fall on. */
static void f_unlock(lup_driver *d, void *token)
{
	int64_t k;

	enter(FD(d), "unlock", NULL, 0, &k);
	lup_driver_unlock(FD(d)->inner, token);
	leave(FD(d), k);
}

/* Readers. */

static int64_t r_read(lup_reader *r, void *buf, size_t n, lup_error *err)
{
	fault_reader *fr = (fault_reader *)r;
	int64_t k, got;

	if (enter(fr->fd, "reader.read", NULL, 1, &k))
		return inject(fr->fd, k, "reader.read", NULL, err);
	got = fr->inner->read(fr->inner, buf, n, err);
	leave(fr->fd, k);
	return got;
}

static void r_close(lup_reader *r)
{
	fault_reader *fr = (fault_reader *)r;
	fault_driver *fd = fr->fd;
	int64_t k;

	enter(fd, "reader.close", NULL, 0, &k);
	fr->inner->close(fr->inner);
	free(fr);
	leave(fd, k);
	lup_driver_release(&fd->base);
}

static int f_reader(lup_driver *d, const char *path, int64_t offset,
		    lup_reader **out, lup_error *err)
{
	fault_driver *fd = FD(d);
	fault_reader *fr;
	int64_t k;
	int rc;

	*out = NULL;
	if (enter(fd, "reader", path, 1, &k))
		return inject(fd, k, "reader", path, err);
	fr = calloc(1, sizeof(*fr));
	if (!fr)
		return lup_error_set(err, LUP_EIO, path, "out of memory");
	rc = lup_driver_reader(fd->inner, path, offset, &fr->inner, err);
	if (rc < 0) {
		free(fr);
		leave(fd, k);
		return rc;
	}
	fr->base.version = LUP_READER_VERSION;
	fr->base.read = r_read;
	fr->base.close = r_close;
	fr->fd = fd;
	lup_driver_retain(d);
	*out = &fr->base;
	leave(fd, k);
	return 0;
}

/* Writers. */

static int w_write(lup_writer *w, const void *buf, size_t n, lup_error *err)
{
	fault_writer *fw = (fault_writer *)w;
	fault_driver *fd = fw->fd;
	int64_t k = atomic_fetch_add(&fd->ops, 1) + 1;
	int fail, rc;

	/* enter() by hand: a torn write puts half the bytes down first. */
	if (fd->o.record)
		record(fd, "writer.write", fw->path);
	if (k == fd->o.delay_at)
		stall(fd->o.delay_us);
	fail = fd->o.fail_at > 0 && k >= fd->o.fail_at &&
	       (fd->o.fail_count <= 0 || k - fd->o.fail_at < fd->o.fail_count);
	if ((k == fd->o.crash_at && !fd->o.crash_after) || fail) {
		if (fd->o.torn && n > 1) {
			lup_error tmp;

			/* Its own failure does not matter: the crash or the
			 * injected error follows either way. */
			fw->inner->write(fw->inner, buf, n / 2, &tmp);
		}
		if (!fail)
			crash();
		atomic_fetch_add(&fd->injected, 1);
		return inject(fd, k, "writer.write", fw->path, err);
	}
	rc = fw->inner->write(fw->inner, buf, n, err);
	leave(fd, k);
	return rc;
}

static int64_t w_size(lup_writer *w)
{
	fault_writer *fw = (fault_writer *)w;

	return fw->inner->size(fw->inner);
}

static int w_commit(lup_writer *w, lup_error *err)
{
	fault_writer *fw = (fault_writer *)w;

	FAULT_CALL(fw->fd, "writer.commit", fw->path,
		   fw->inner->commit(fw->inner, err));
}

static int w_cancel(lup_writer *w, lup_error *err)
{
	fault_writer *fw = (fault_writer *)w;

	FAULT_CALL(fw->fd, "writer.cancel", fw->path,
		   fw->inner->cancel(fw->inner, err));
}

/* The short way of a finish (layerup/sys/driver.h), counted as one
 * operation: crash points before and after the writer stores the blob. */
static int w_publish(lup_writer *w, const char *dst, const char *sha256_hex,
		     lup_error *err)
{
	fault_writer *fw = (fault_writer *)w;

	FAULT_CALL(fw->fd, "writer.publish", dst,
		   fw->inner->publish(fw->inner, dst, sha256_hex, err));
}

/* close is mandatory and frees the writer even when it fails; an injected
 * failure still closes the inner writer (without its flush error), as a
 * failing close(2) still releases the descriptor. */
static int w_close(lup_writer *w, lup_error *err)
{
	fault_writer *fw = (fault_writer *)w;
	fault_driver *fd = fw->fd;
	int64_t k;
	int rc;

	if (enter(fd, "writer.close", fw->path, 1, &k)) {
		rc = inject(fd, k, "writer.close", fw->path, err);
		fw->inner->close(fw->inner, NULL);
	} else {
		rc = fw->inner->close(fw->inner, err);
	}
	free(fw);
	leave(fd, k);
	lup_driver_release(&fd->base);
	return rc;
}

static int f_writer(lup_driver *d, const char *path, int append,
		    lup_writer **out, lup_error *err)
{
	fault_driver *fd = FD(d);
	size_t plen = strlen(path) + 1;
	fault_writer *fw;
	int64_t k;
	int rc;

	*out = NULL;
	if (enter(fd, "writer", path, 1, &k))
		return inject(fd, k, "writer", path, err);
	fw = calloc(1, sizeof(*fw) + plen);
	if (!fw)
		return lup_error_set(err, LUP_EIO, path, "out of memory");
	rc = lup_driver_writer(fd->inner, path, append, &fw->inner, err);
	if (rc < 0) {
		free(fw);
		leave(fd, k);
		return rc;
	}
	memcpy(fw->path, path, plen);
	fw->base.version = LUP_WRITER_VERSION;
	/* Only where the inner writer has it (the S3 driver's): the store
	 * takes the long way on the others, as it would without the wrapper. */
	fw->base.publish = fw->inner->version >= 2 && fw->inner->publish
				   ? w_publish
				   : NULL;
	fw->base.write = w_write;
	fw->base.size = w_size;
	fw->base.commit = w_commit;
	fw->base.cancel = w_cancel;
	fw->base.close = w_close;
	fw->fd = fd;
	lup_driver_retain(d);
	*out = &fw->base;
	leave(fd, k);
	return 0;
}

static void f_free(lup_driver *d)
{
	fault_driver *fd = FD(d);

	lup_driver_release(fd->inner);
	lup_strlist_free(&fd->trace);
	pthread_mutex_destroy(&fd->mu);
	free(fd);
}

int lup_driver_fault(lup_driver **out, lup_driver *inner,
		     const lup_fault_options *opts, lup_error *err)
{
	lup_fault_options def = LUP_FAULT_OPTIONS_INIT;
	fault_driver *fd;
	int rc;

	*out = NULL;
	if (!inner)
		return lup_error_set(err, LUP_EIO, NULL, "fault: no driver");
	if (!opts)
		opts = &def;
	if (opts->version < 1 || opts->version > LUP_DRIVER_VERSION)
		return lup_error_set(err, LUP_EUNSUPPORTED, NULL,
				     "fault: unsupported options version %u",
				     opts->version);
	if (opts->crash_at < 0 || opts->fail_at < 0 || opts->fail_count < 0 ||
	    opts->delay_at < 0 || opts->delay_us < 0)
		return lup_error_set(err, LUP_EIO, NULL,
				     "fault: negative operation number");
	fd = calloc(1, sizeof(*fd));
	if (!fd)
		return lup_error_set(err, LUP_EIO, NULL, "out of memory");
	if (pthread_mutex_init(&fd->mu, NULL) != 0) {
		free(fd);
		return lup_error_set(err, LUP_EIO, NULL, "out of memory");
	}
	fd->o = *opts;
	atomic_init(&fd->ops, 0);
	atomic_init(&fd->injected, 0);
	fd->base.name = inner->name;
	fd->base.get_content = f_get_content;
	fd->base.put_content = f_put_content;
	fd->base.reader = f_reader;
	fd->base.writer = f_writer;
	fd->base.stat = f_stat;
	fd->base.list = f_list;
	fd->base.move = f_move;
	fd->base.remove = f_remove;
	/* Without locks below, none above: the store then runs unlocked. */
	fd->base.lock = inner->lock ? f_lock : NULL;
	fd->base.unlock = inner->lock ? f_unlock : NULL;
	fd->base.free = f_free;
	if ((rc = lup_driver_init(&fd->base, LUP_DRIVER_VERSION, err)) < 0) {
		pthread_mutex_destroy(&fd->mu);
		free(fd);
		return rc;
	}
	lup_driver_retain(inner);
	fd->inner = inner;
	*out = &fd->base;
	return 0;
}

static fault_driver *as_fault(lup_driver *d)
{
	return d && d->free == f_free ? FD(d) : NULL;
}

int64_t lup_fault_ops(lup_driver *d)
{
	fault_driver *fd = as_fault(d);

	return fd ? atomic_load(&fd->ops) : -1;
}

int64_t lup_fault_injected(lup_driver *d)
{
	fault_driver *fd = as_fault(d);

	return fd ? atomic_load(&fd->injected) : -1;
}

int lup_fault_trace(lup_driver *d, lup_strlist *out, lup_error *err)
{
	fault_driver *fd = as_fault(d);
	int rc = 0;

	if (!fd)
		return lup_error_set(err, LUP_EUNSUPPORTED, NULL,
				     "not a fault driver");
	pthread_mutex_lock(&fd->mu);
	if (fd->trace_oom)
		rc = lup_error_set(err, LUP_EIO, NULL,
				   "fault: trace incomplete (out of memory)");
	for (size_t i = 0; rc == 0 && i < fd->trace.count; i++)
		if (lup_strlist_push(out, fd->trace.items[i]) < 0)
			rc = lup_error_set(err, LUP_EIO, NULL, "out of memory");
	pthread_mutex_unlock(&fd->mu);
	return rc;
}
