/*
 * finish.c - completing an upload: check the digest syntax and size, wait
 * for the data to be visible (retry policy), verify the digest from the
 * running hash (re-hashing the data only when that hash cannot be trusted
 * on its own), move the data into blobs/ unless the blob exists, write the
 * links the policy chooses and remove the upload directory.
 *
 * Restartable from any process: before the data leaves the upload, the
 * hash state at the full size is saved next to it; it names the blob.  A
 * finish that fails (or dies) after the move leaves startedat and that
 * state, and a later resume (upload.c find_moved) picks the upload up as
 * "moved": its finish verifies the digest given against the blob, writes
 * the links and removes the upload.  Before the move, a failure leaves the
 * upload as it was.
 *
 * The short way (publish_blob), for writers that can publish: no commit,
 * no move; the writer stores its bytes at the blob itself.  The proof is
 * saved with it, and a resume finds the upload moved by that proof even
 * though its data never got the bytes (hashstate.c); before the blob is
 * there, the upload is as it was at its last close.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/upload.h"

/* Wait until the driver shows data at the expected size (eventually
 * consistent backends), consulting the retry policy. */
static int validate_data(lup_upload *u, lup_error *err)
{
	lup_field ctx[] = { lup_fs("repo", u->repo), lup_fs("uuid", u->uuid) };
	lup_error local;

	if (!err)
		err = &local; /* the retry policy is shown the error */
	for (int attempt = 1;; attempt++) {
		lup_stat st;
		int rc = lup_s_stat(u->store, u->data, &st, err);

		if (rc == 0 && !st.is_dir && st.size == u->size)
			return 0;
		if (rc == 0 || rc == LUP_EPATH_NOT_FOUND)
			rc = lup_error_set(err, LUP_EBLOB_UPLOAD_INVALID, u->data,
					   rc ? "upload data not visible yet"
					      : "upload data size %" PRId64
						" does not match %" PRId64 " written",
					   rc ? 0 : st.size, u->size);
		if (rc != LUP_EBLOB_UPLOAD_INVALID ||
		    !lup_store_should_retry(u->store, attempt, err,
					    "finish.validate", ctx, 2))
			return rc;
	}
}

struct link_sink {
	struct {
		char repo[LUP_REPO_MAX + 1];
		lup_digest d;
	} items[16];
	size_t count;
	int rc;
	lup_error *err;
};

static int add_link(void *sinkp, const char *repo, const char *digest)
{
	struct link_sink *sink = sinkp;

	if (sink->rc)
		return sink->rc;
	if (!lup_repo_valid(repo))
		return sink->rc = lup_error_set(sink->err, LUP_ENAME_INVALID, NULL,
						"link policy named an invalid "
						"repository: \"%.300s\"", repo);
	if (sink->count == 16)
		return sink->rc = lup_error_set(sink->err, LUP_EIO, NULL,
						"link policy returned more than "
						"16 links");
	if (lup_digest_parse(digest, &sink->items[sink->count].d, sink->err) != 0)
		return sink->rc = LUP_EDIGEST_INVALID;
	snprintf(sink->items[sink->count].repo, LUP_REPO_MAX + 1, "%s", repo);
	sink->count++;
	return 0;
}

/* Ask the link policy (or the default rule) which links to write. */
static int choose_links(lup_upload *u, const lup_digest *canon,
			const lup_digest *requested, struct link_sink *sink,
			lup_error *err)
{
	lup_store *s = u->store;

	memset(sink, 0, sizeof(*sink));
	sink->err = err;
	if (s->policy.link) {
		lup_link_ctx ctx = { u->repo, u->uuid, canon->str, requested->str,
				     u->size };
		int rc;

		lup_error_clear(err);
		rc = s->policy.link(&ctx, add_link, sink, err, s->policy.payload);
		if (rc == 0)
			rc = sink->rc;
		return rc;
	}
	add_link(sink, u->repo, canon->str);
	if (strcmp(requested->str, canon->str) != 0)
		add_link(sink, u->repo, requested->str);
	return sink->rc;
}

/* Compute (or re-compute from the data) the digests to compare. */
static int verify(lup_upload *u, const lup_digest *want, lup_digest *canon,
		  lup_error *err)
{
	lup_hash full, other;
	lup_digest got;
	int rc;

	/* rehash_on_finish: the stored state is not trusted (trust boundary). */
	if (want->alg == LUP_SHA256 && u->hash_ok && !u->store->rehash_on_finish) {
		lup_digest_from_hash(&u->hash, canon);
		if (strcmp(canon->hex, want->hex) == 0)
			return 0;
		if (u->chain)
			goto mismatch;
	}
	/* Another algorithm, no usable hash, or a mismatch on a restored
	 * hash: one pass over the data computes everything. */
	lup_hash_init(&full, LUP_SHA256);
	lup_hash_init(&other, want->alg);
	rc = lup_upload_rehash(u, &full, want->alg == LUP_SHA256 ? NULL : &other,
			       0, u->size, err);
	if (rc)
		return rc;
	u->hash = full;
	u->hash_ok = 1;
	u->chain = 1;
	lup_digest_from_hash(&full, canon);
	lup_digest_from_hash(want->alg == LUP_SHA256 ? &full : &other, &got);
	if (strcmp(got.hex, want->hex) == 0)
		return 0;
mismatch:
	return lup_error_set(err, LUP_EDIGEST_INVALID, NULL,
			     "content does not match digest %s (got %s)",
			     want->str, canon->str);
}

/* The data already went to blobs/ in an earlier finish of this handle
 * whose move reported a failure but happened: carry on from there. */
static void detect_moved(lup_upload *u)
{
	lup_digest canon;
	lup_stat st;

	if (u->moved || u->w || !u->hash_ok || u->size == 0)
		return;
	lup_digest_from_hash(&u->hash, &canon);
	if (lup_path_blob_data(u->blob, &canon) == 0 &&
	    lup_s_stat(u->store, u->data, &st, NULL) == LUP_EPATH_NOT_FOUND &&
	    lup_s_stat(u->store, u->blob, &st, NULL) == 0 && !st.is_dir &&
	    st.size == u->size)
		u->moved = 1;
}

/* Verify want for a moved upload: its blob is named by u->hash.  A sha256
 * digest is compared with that name; any other algorithm (and any digest
 * under rehash_on_finish, which trusts no state) is computed from the blob,
 * which must also still hash to its name. */
static int verify_moved(lup_upload *u, const lup_digest *want,
			lup_digest *canon, lup_error *err)
{
	int alias = want->alg != LUP_SHA256;
	lup_hash full, other;
	lup_digest got;
	int rc;

	lup_digest_from_hash(&u->hash, canon);
	if (!alias && !u->store->rehash_on_finish) {
		if (strcmp(canon->hex, want->hex) == 0)
			return 0;
		return lup_error_set(err, LUP_EDIGEST_INVALID, NULL,
				     "content does not match digest %s (got %s)",
				     want->str, canon->str);
	}
	lup_hash_init(&full, LUP_SHA256);
	lup_hash_init(&other, want->alg);
	if ((rc = lup_upload_rehash(u, &full, alias ? &other : NULL, 0, u->size,
				    err)) != 0)
		return rc;
	lup_digest_from_hash(&full, &got);
	if (strcmp(got.hex, canon->hex) != 0)
		return lup_error_set(err, LUP_EBLOB_UPLOAD_INVALID, u->blob,
				     "blob %s hashes to %s", canon->str, got.str);
	if (alias)
		lup_digest_from_hash(&other, &got);
	if (strcmp(got.hex, want->hex) != 0)
		return lup_error_set(err, LUP_EDIGEST_INVALID, NULL,
				     "content does not match digest %s (got %s)",
				     want->str, canon->str);
	return 0;
}

/* Save the (verified) hash state at the full size unless it is there:
 * the proof of the blob's name while the data is in blobs/ without links.
 * once: a single attempt, no policy hook (from a helper thread). */
static int save_proof_ext(lup_upload *u, int once, lup_error *err)
{
	unsigned char buf[LUP_HASH_MAX_STATE];
	char path[LUP_PATH_BUF];
	int n, rc;

	if (u->saved == u->size)
		return 0;
	n = lup_hash_export(&u->hash, buf, sizeof(buf));
	if (n < 0)
		return lup_error_set(err, LUP_EIO, NULL, "cannot export hash state");
	lup_path_hashstate(path, u->repo, u->uuid, u->size);
	rc = once ? lup_s_put_once(u->store, path, buf, (size_t)n, err)
		  : lup_s_put(u->store, path, buf, (size_t)n, err);
	if (rc != 0)
		return rc;
	u->saved = u->size;
	return 0;
}

static int save_proof(lup_upload *u, lup_error *err)
{
	return save_proof_ext(u, 0, err);
}

typedef struct {
	lup_upload *u;
	int rc;
	lup_error err;
} proof_job;

static void *proof_main(void *arg)
{
	proof_job *j = arg;

	j->rc = save_proof_ext(j->u, 1, &j->err);
	return NULL;
}

/* Put the verified data at blob: nothing to do when the blob exists
 * (dedup); otherwise save the proof, then move.  An empty upload gets an
 * empty blob written instead, so its data stays until the upload goes. */
static int place_blob(lup_upload *u, const lup_digest *canon, const char *blob,
		      int *dedup, lup_error *err)
{
	lup_store *s = u->store;
	lup_stat st;
	int rc = lup_s_stat(s, blob, &st, err);

	if (rc == 0) {
		lup_field f[] = { lup_fs("digest", canon->str), lup_fi("size", st.size) };

		*dedup = 1;
		lup_store_log(s, "blob.dedup", f, 2);
		return 0;
	}
	if (rc != LUP_EPATH_NOT_FOUND)
		return rc;
	if (u->size == 0)
		return lup_s_put(s, blob, "", 0, err);
	/* The proof first.  An I/O failure fails the finish (the upload stays
	 * as it was); a hashstates/ path the driver refuses (a symlink left
	 * in the tree: INVALID_PATH) cannot hold it, so the move goes ahead
	 * without it, and only this handle could complete a finish that
	 * fails after the move. */
	if ((rc = save_proof(u, err)) == LUP_EINVALID_PATH) {
		lup_field f[] = { lup_fs("code", lup_error_name(rc)),
				  lup_fs("message", err ? err->message : "") };

		lup_upload_log(u, "upload.proof_failed", f, 2);
	} else if (rc != 0) {
		return rc;
	}
	if ((rc = lup_s_move(s, u->data, blob, err)) != 0)
		return rc;
	u->moved = 1;
	snprintf(u->blob, sizeof(u->blob), "%s", blob);
	return 0;
}

/* The short way can be tried: a publishing writer, and a running hash that
 * already gives the digest asked for. */
static int can_publish(const lup_upload *u, const lup_digest *want)
{
	lup_digest canon;

	if (u->moved || !u->w || u->w->version < 2 || !u->w->publish ||
	    u->size == 0 || want->alg != LUP_SHA256 || !u->hash_ok ||
	    u->store->rehash_on_finish)
		return 0;
	/* A mismatch takes the long way (a re-hash decides, or fails). */
	lup_digest_from_hash(&u->hash, &canon);
	return strcmp(canon.hex, want->hex) == 0;
}

/* The short way, for a writer that can publish (layerup/sys/driver.h): the
 * digest matches the running hash, so the data is never needed; the proof
 * is saved first, then the writer stores its bytes straight at the blob
 * unless the blob exists (the S3 driver: one PutObject for an upload whose
 * bytes are all still in its writer, instead of completing a multipart
 * upload, copying it and deleting it).  Until the blob is there, the
 * upload is as it was at its last close; from then on the proof names the
 * blob, so a resume anywhere finds the upload moved (hashstate.c).
 * *placed = 0 when the writer declined (nothing done but the proof): the
 * long way follows. */
static int publish_blob(lup_upload *u, const char *blob, int *dedup,
			int *placed, lup_error *err)
{
	lup_digest canon;
	proof_job pj;
	pthread_t th;
	int rc;

	*placed = 0;
	lup_digest_from_hash(&u->hash, &canon);
	lup_error_clear(&pj.err);
	pj.u = u;
	pj.rc = 0;
	/* The proof matters only once the blob is there, and the blob
	 * without it is an upload as of its last close (the client sends the
	 * bytes again and finds the blob): both go at once where threads are
	 * allowed (the proof on a helper thread, a single attempt with no
	 * hook), one after the other otherwise. */
	if (u->saved != u->size && u->store->hash_thread &&
	    pthread_create(&th, NULL, proof_main, &pj) == 0) {
		rc = u->w->publish(u->w, blob, canon.hex, err);
		pthread_join(th, NULL);
		if (rc >= 0 && pj.rc != 0) {
			lup_field f[] = { lup_fs("code", lup_error_name(pj.rc)),
					  lup_fs("message", pj.err.message) };

			lup_upload_log(u, "upload.proof_failed", f, 2);
		}
	} else {
		if ((rc = save_proof(u, err)) != 0)
			return rc == LUP_EINVALID_PATH ? 0 : rc;
		rc = u->w->publish(u->w, blob, canon.hex, err);
	}
	if (rc == LUP_EUNSUPPORTED)
		return 0;
	if (rc < 0)
		return rc;
	if (rc == 1) {
		lup_field f[] = { lup_fs("digest", canon.str), lup_fi("size", u->size) };

		*dedup = 1;
		lup_store_log(u->store, "blob.dedup", f, 2);
	}
	u->w->close(u->w, NULL); /* stores nothing after a publish */
	u->w = NULL;
	lup_hashpipe_free(&u->pipe);
	u->moved = 1;
	snprintf(u->blob, sizeof(u->blob), "%s", blob);
	*placed = 1;
	return 0;
}

int lup_upload_finish(lup_upload *u, const char *digest, int64_t size,
		      lup_blob_info *out, lup_error *err)
{
	lup_store *s = u->store;
	lup_digest want, canon;
	struct link_sink links;
	char blob[LUP_PATH_BUF];
	double t0 = lup_monotonic_ms();
	int64_t reread0 = u->reread;
	int rc, dedup = 0, published = 0, chosen = 0;

	if (u->state != U_OPEN)
		return lup_error_set(err, LUP_EBLOB_UPLOAD_INVALID, NULL,
				     "upload %s is %s", u->uuid,
				     u->state == U_CLOSED ? "closed" : "finished");
	lup_upload_drain(u);
	if ((rc = lup_digest_parse(digest, &want, err)) != 0)
		goto fail;
	if (size >= 0 && size != u->size) {
		rc = lup_error_set(err, LUP_ESIZE_INVALID, NULL,
				   "size %" PRId64 " given, %" PRId64 " uploaded",
				   size, u->size);
		goto fail;
	}
	detect_moved(u);
	if (can_publish(u, &want)) {
		lup_digest_from_hash(&u->hash, &canon);
		lup_path_blob_data(blob, &canon);
		if ((rc = choose_links(u, &canon, &want, &links, err)) != 0 ||
		    (rc = publish_blob(u, blob, &dedup, &published, err)) != 0)
			goto fail;
		chosen = 1;
	}
	if (published) {
		/* canon is the digest asked for: can_publish checked it */
	} else if (u->moved) {
		if ((rc = verify_moved(u, &want, &canon, err)) != 0)
			goto fail;
	} else {
		/* Commit and let go of the data file: a committed writer takes
		 * no more bytes, and if finish fails the next write reopens
		 * it. */
		if ((rc = lup_upload_release_writer(u, err)) != 0 ||
		    (rc = validate_data(u, err)) != 0 ||
		    (rc = verify(u, &want, &canon, err)) != 0)
			goto fail;
	}
	lup_path_blob_data(blob, &canon);
	if (!chosen && (rc = choose_links(u, &canon, &want, &links, err)) != 0)
		goto fail;
	/* Move the verified data into content-addressed storage unless the
	 * blob is already there. */
	if (!u->moved && (rc = place_blob(u, &canon, blob, &dedup, err)) != 0)
		goto fail;
	for (size_t i = 0; i < links.count; i++)
		if ((rc = lup_store_write_link(s, links.items[i].repo,
					       &links.items[i].d, &canon, err)))
			goto fail;
	/* Last: remove the upload (startedat with it, so no one can resume
	 * it any more).  A failure here leaves a remnant for purge. */
	if (lup_s_delete(s, u->dir, NULL) != 0) {
		lup_field f[] = { lup_fs("path", u->dir) };
		lup_upload_log(u, "upload.cleanup_failed", f, 1);
	}
	lup_upload_release_lock(u);
	u->state = U_DONE;
	if (out) {
		snprintf(out->digest, sizeof(out->digest), "%s", canon.str);
		out->size = u->size;
	}
	{
		lup_field f[] = { lup_fs("digest", canon.str),
				  lup_fs("requested", want.str),
				  lup_fi("size", u->size),
				  lup_fi("bytes_reread", u->reread - reread0),
				  lup_fn("duration_ms", lup_monotonic_ms() - t0),
				  lup_fb("dedup", dedup) };
		lup_upload_log(u, "upload.finish", f, 6);
	}
	return 0;
fail:
	{
		lup_field f[] = { lup_fs("code", lup_error_name(rc)),
				  lup_fs("message", err ? err->message : "") };
		lup_upload_log(u, "upload.finish_failed", f, 2);
	}
	return rc;
}

