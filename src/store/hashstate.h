/*
 * hashstate.h - one upload's resumable hash on storage
 * (hashstates/sha256/<offset>) and re-hashing its data.
 *
 * A narrow interface: it knows the store and the layout, not the upload
 * handle.  upload.c and finish.c call in; nothing here calls back.
 */
#ifndef LUP_HASHSTATE_H
#define LUP_HASHSTATE_H

#include "store/store.h"

/* One upload's data as the hash code sees it. */
typedef struct lup_hs_target {
	lup_store *store;
	const char *repo;
	const char *uuid;
	const char *data;  /* path of the upload's data */
	const char *hsdir; /* its hashstates/sha256 directory */
	int64_t size;      /* bytes in data */
	int64_t *reread;   /* counts every byte of data read back */
} lup_hs_target;

/* What restore found. */
typedef struct lup_hs_restored {
	lup_hash hash;   /* sha256 of data[0, size) when ok */
	int ok;
	int chain;       /* 1: computed from byte 0 here (no stored state) */
	int64_t saved;   /* offset of the state found on storage, -1: none */
	const char *how; /* "exact", "gap" or "none" */
} lup_hs_restored;

/* Feed data[from, to) into h (and h2 unless NULL); BLOB_UPLOAD_INVALID if
 * the data ends early. */
int lup_hashstate_rehash(const lup_hs_target *t, lup_hash *h, lup_hash *h2,
			 int64_t from, int64_t to, lup_error *err);

/* Rebuild the hash of data[0, size) as cheaply as the stored states allow
 * (stale states above size are removed, corrupt ones skipped and logged). */
void lup_hashstate_restore(const lup_hs_target *t, lup_hs_restored *out);

/* Save h (the hash of data[0, size)) unless *saved == size already, then
 * drop every other state.  Nothing is saved for size 0 or h == NULL. */
int lup_hashstate_save(const lup_hs_target *t, const lup_hash *h,
		       int64_t *saved, lup_error *err);

#endif
