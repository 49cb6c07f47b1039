/*
 * upload.h - the upload handle, shared by the files that implement it:
 * upload.c (lifecycle and writes) and finish.c (verification, move,
 * links).  hashstate.c (restoring and saving the resumable hash) does not
 * see it: upload.c hands it a lup_hs_target (hashstate.h).
 */
#ifndef LUP_UPLOAD_H
#define LUP_UPLOAD_H

#include "core/hashpipe.h"
#include "store/hashstate.h"
#include "store/store.h"

enum { U_OPEN, U_CLOSED, U_DONE };

struct lup_upload {
	lup_store *store;
	char repo[LUP_REPO_MAX + 1];
	char uuid[37];
	int64_t started_at;
	int state;
	lup_writer *w;  /* NULL until needed again after a failed finish */
	void *lock;     /* driver lock token (on dir, see store.h) */
	lup_hash hash;  /* sha256 of data[0, size) when hash_ok */
	int hash_ok;
	int chain;      /* hash computed from byte 0 in this process */
	/* Offset of the lower state u->hash was continued from when the data
	 * could not vouch for it (hashstate.c); 0: none.  Until chain is set,
	 * close must prove it equals check_base before persisting anything. */
	int64_t check_off;
	lup_hash check_base;
	int64_t size;
	/* This handle's own size cap (lup_upload_set_max_size), -1: none;
	 * writes obey the lower of it and the store's max_size. */
	int64_t max_size;
	int64_t saved;  /* offset of a state known to be on storage, -1: none */
	int64_t reread; /* upload bytes re-read to rebuild/check the hash */
	lup_hashpipe *pipe;
	int hashing;    /* the worker is still hashing the last async write */
	char dir[LUP_PATH_BUF];
	char data[LUP_PATH_BUF];
	char hsdir[LUP_PATH_BUF];
	/* An earlier finish moved data into blobs/ (at blob) and stopped
	 * before its links were written: only finish or cancel remain, and
	 * the data is read from the blob. */
	int moved;
	char blob[LUP_PATH_BUF];
};

/* Emit event with repo and uuid first, then the extra fields. */
void lup_upload_log(lup_upload *u, const char *event, lup_field *extra,
		    size_t n);

/* LUP_EBLOB_UPLOAD_INVALID unless open; reopens the data writer if a failed
 * finish let go of it. */
int lup_upload_check_open(lup_upload *u, lup_error *err);

/* Wait for the background hash, commit and close the data writer (if
 * open) and stop the hash worker: the data is complete on storage. */
int lup_upload_release_writer(lup_upload *u, lup_error *err);

void lup_upload_release_lock(lup_upload *u);

/* Feed data[from, to) (read from the blob once moved) into h (and h2
 * unless NULL), counting re-read bytes; BLOB_UPLOAD_INVALID if the data
 * ends early. */
int lup_upload_rehash(lup_upload *u, lup_hash *h, lup_hash *h2, int64_t from,
		      int64_t to, lup_error *err);

#endif
