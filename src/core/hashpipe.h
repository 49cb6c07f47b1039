/*
 * hashpipe.h - overlap hashing with writing.
 *
 * SHA-256 runs at about half the speed of a page-cache write, so doing one
 * after the other costs their sum.  For large writes a per-upload worker
 * thread hashes the caller's buffer while the calling thread writes the
 * same buffer to the driver: no copy, no extra memory, time = the slower
 * of the two.  Small writes are done inline (a thread handoff would cost
 * more than it saves).  The worker is created on the first large write and
 * joined by lup_hashpipe_free.  Passing pipe == NULL means "no thread":
 * everything is hashed inline (the store's hash_thread option off).
 */
#ifndef LUP_HASHPIPE_H
#define LUP_HASHPIPE_H

#include "layerup.h"
#include "layerup/sys/driver.h"

typedef struct lup_hashpipe lup_hashpipe;

/* Write p[0, n) through w and feed it to h.  *pipe is created on demand.
 * On failure h may have taken all n bytes: the caller restores it. */
int lup_hashpipe_write(lup_hashpipe **pipe, lup_hash *h, lup_writer *w,
		       const void *p, size_t n, lup_error *err);

/* Start hashing p[0, n) into h on the worker and return at once; p and h
 * must stay untouched until lup_hashpipe_wait.  Returns 0 when posted, -1
 * when the write is too small to be worth it or no thread could be had
 * (the caller then hashes inline). */
int lup_hashpipe_post(lup_hashpipe **pipe, lup_hash *h, const void *p,
		      size_t n);

/* Wait for a posted hash to finish (returns at once if none). */
void lup_hashpipe_wait(lup_hashpipe *pipe);

/* Join and free the worker; *pipe becomes NULL.  NULL is accepted. */
void lup_hashpipe_free(lup_hashpipe **pipe);

#endif
