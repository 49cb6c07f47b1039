/*
 * hashstate.h - one upload's resumable hash on storage
 * (hashstates/sha256/<offset>) and re-hashing its data.
 *
 * A narrow interface: it knows the store and the layout, not the upload
 * handle.  upload.c hands it a lup_hs_target naming the upload's data and
 * pointing at the members of struct lup_upload that describe its hash;
 * upload.c and finish.c call in, nothing here calls back.
 */
#ifndef LUP_HASHSTATE_H
#define LUP_HASHSTATE_H

#include "store/store.h"

/* One upload as the hash-state code sees it. */
typedef struct lup_hs_target {
	lup_store *store;
	const char *repo;
	const char *uuid;
	const char *data;  /* path of the upload's data */
	const char *hsdir; /* its hashstates/sha256 directory */
	int64_t size;      /* bytes in data */
	int64_t *reread;   /* counts every byte of data read back */
	/* The upload's hash (see struct lup_upload in upload.h): */
	lup_hash *hash;       /* sha256 of data[0, size) when *hash_ok */
	int *hash_ok;
	int *chain;           /* computed from byte 0 in this process */
	int64_t *saved;       /* offset of a state on storage, -1: none */
	int64_t *check_off;   /* lower state continued without evidence */
	lup_hash *check_base; /* that state, to prove at close */
	/* Set by restore when a state above size names a blob that exists at
	 * exactly that offset (NULL: not asked). */
	int64_t *moved_off;
} lup_hs_target;

/* Feed data[from, to) into h (and h2 unless NULL); BLOB_UPLOAD_INVALID if
 * the data ends early. */
int lup_hashstate_rehash(const lup_hs_target *t, lup_hash *h, lup_hash *h2,
			 int64_t from, int64_t to, lup_error *err);

/* Rebuild the hash of data[0, size) from the stored states (*how:
 * "exact", "gap" or "none"); see hashstate.c for what is trusted.  With
 * moved_off set: a state above size that names an existing blob of that
 * size (a finish that published the blob and died before the upload went)
 * gives *how "moved", *moved_off its offset and *hash its state. */
void lup_hashstate_restore(const lup_hs_target *t, const char **how);

/* Save the state at the current size (proving an unchecked base first)
 * and drop every other state. */
int lup_hashstate_save(const lup_hs_target *t, lup_error *err);

#endif
