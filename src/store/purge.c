/*
 * purge.c - listing uploads and purging stale ones.
 *
 * Walks repositories/ the way the registry's purge does (skipping _layers,
 * _manifests and any other "_" directory except _uploads), but unlike 2.8:
 * the result is sorted, an upload without a usable startedat ages by its
 * last modification instead of living forever, orphan directories that
 * hold only hash states are found too, and an upload held by a writer is
 * never removed under it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"

void lup_upload_list_free(lup_upload_list *list)
{
	for (size_t i = 0; list && i < list->count; i++)
		free(list->items[i].repo);
	if (list) {
		free(list->items);
		memset(list, 0, sizeof(*list));
	}
}

static int push(lup_upload_list *l, const char *repo, const char *uuid,
		int64_t started_at, int64_t size)
{
	if (l->count == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		lup_upload_info *n = realloc(l->items, cap * sizeof(*n));

		if (!n)
			return LUP_EIO;
		l->items = n;
		l->cap = cap;
	}
	if (!(l->items[l->count].repo = strdup(repo)))
		return LUP_EIO;
	snprintf(l->items[l->count].uuid, 37, "%s", uuid);
	l->items[l->count].started_at = started_at;
	l->items[l->count].size = size;
	l->count++;
	return 0;
}

static const char *base(const char *path)
{
	const char *b = strrchr(path, '/');
	return b ? b + 1 : path;
}

/* Newest modification time (seconds) of anything under path. */
static int64_t newest_mtime(lup_store *s, const char *path, int depth)
{
	lup_stat st;
	lup_strlist kids = { 0 };
	int64_t best = 0;

	if (lup_s_stat(s, path, &st, NULL) != 0)
		return 0;
	best = st.mtime_ns / 1000000000;
	if (st.is_dir && depth < 8 && lup_s_list(s, path, &kids, NULL) == 0) {
		for (size_t i = 0; i < kids.count; i++) {
			int64_t t = newest_mtime(s, kids.items[i], depth + 1);
			if (t > best)
				best = t;
		}
	}
	lup_strlist_free(&kids);
	return best;
}

static int describe(lup_store *s, const char *repo, const char *uuid,
		    lup_upload_list *out)
{
	char path[LUP_PATH_BUF];
	int64_t started = 0, size = 0;
	lup_stat st;

	if (lup_read_startedat(s, repo, uuid, &started, NULL) != 0) {
		lup_path_upload_dir(path, repo, uuid);
		/* A symlink in place of the directory ages as of the epoch:
		 * purge removes the link (never what it points at). */
		started = lup_s_stat(s, path, &st, NULL) == 0
				  ? newest_mtime(s, path, 0)
				  : 0;
	}
	lup_path_upload_file(path, repo, uuid, "data");
	if (lup_s_stat(s, path, &st, NULL) == 0 && !st.is_dir)
		size = st.size;
	return push(out, repo, uuid, started, size);
}

/* Walk dir (the repository `repo`, "" at the root) collecting uploads. */
static int walk(lup_store *s, const char *dir, const char *repo,
		const char *only, lup_upload_list *out, lup_error *err)
{
	lup_strlist kids = { 0 };
	int rc = lup_s_list(s, dir, &kids, err);

	if (rc == LUP_EPATH_NOT_FOUND) {
		lup_error_clear(err);
		return 0;
	}
	for (size_t i = 0; rc == 0 && i < kids.count; i++) {
		const char *name = base(kids.items[i]);
		char sub[LUP_PATH_BUF];
		lup_stat st;

		if (strcmp(name, "_uploads") == 0) {
			lup_strlist ups = { 0 };

			if (*repo && (!only || strcmp(only, repo) == 0) &&
			    lup_s_list(s, kids.items[i], &ups, NULL) == 0)
				for (size_t k = 0; rc == 0 && k < ups.count; k++)
					if (lup_uuid_valid(base(ups.items[k])))
						rc = describe(s, repo, base(ups.items[k]), out);
			lup_strlist_free(&ups);
			continue;
		}
		if (name[0] == '_' || name[0] == '\0')
			continue;
		/* A symlink fails stat: never descended into. */
		if (lup_s_stat(s, kids.items[i], &st, NULL) != 0 || !st.is_dir)
			continue;
		if (snprintf(sub, sizeof(sub), "%s%s%s", repo, *repo ? "/" : "",
			     name) >= (int)sizeof(sub))
			continue;
		if (only && strncmp(only, sub, strlen(sub)) != 0)
			continue; /* not on the way to the one repository asked */
		rc = walk(s, kids.items[i], sub, only, out, err);
	}
	lup_strlist_free(&kids);
	if (rc == LUP_EIO && err && !err->message[0])
		lup_error_set(err, LUP_EIO, NULL, "out of memory");
	return rc;
}

static int cmp_info(const void *a, const void *b)
{
	const lup_upload_info *x = a, *y = b;
	int c = strcmp(x->repo, y->repo);

	return c ? c : strcmp(x->uuid, y->uuid);
}

int lup_store_uploads(lup_store *s, const char *repo, lup_upload_list *out,
		      lup_error *err)
{
	int rc;

	memset(out, 0, sizeof(*out));
	if (repo && !lup_repo_valid(repo))
		return lup_error_set(err, LUP_ENAME_INVALID, NULL,
				     "invalid repository name");
	rc = walk(s, LUP_REPOS_ROOT, "", repo, out, err);
	if (rc != 0) {
		lup_upload_list_free(out);
		return rc;
	}
	if (out->count > 1)
		qsort(out->items, out->count, sizeof(*out->items), cmp_info);
	return 0;
}

typedef struct {
	lup_store *s;
	int dry_run;
} tmp_ctx;

static void tmp_found(void *arg, const char *path, int64_t mtime_ns,
		      int64_t size, int removed)
{
	tmp_ctx *c = arg;
	lup_field f[] = { lup_fs("path", path),
			  lup_fi("mtime", mtime_ns / 1000000000),
			  lup_fi("size", size), lup_fb("dry_run", c->dry_run),
			  lup_fb("removed", removed) };

	lup_store_log(c->s, "purge.temporary", f, 5);
}

/* Stale temporaries of the filesystem driver under repositories/ and
 * blobs/ (other drivers have none).  A failure to remove one is reported
 * like a held upload: purge.skip, and the purge goes on. */
static void sweep_temporaries(lup_store *s, int64_t cutoff, int dry_run)
{
	static const char *const roots[] = { LUP_REPOS_ROOT,
					     LUP_V2_ROOT "/blobs" };
	tmp_ctx c = { s, dry_run };
	/* cutoff may be far in the past (a huge older_than): saturate. */
	int64_t before = cutoff < INT64_MIN / 1000000000 ? INT64_MIN
			 : cutoff > INT64_MAX / 1000000000
				 ? INT64_MAX
				 : cutoff * 1000000000;

	for (size_t i = 0; i < sizeof(roots) / sizeof(roots[0]); i++) {
		lup_error e;
		int rc;

		lup_error_clear(&e);
		rc = lup_fs_temporaries(lup_store_driver(s), roots[i],
					before, !dry_run,
					tmp_found, &c, &e);
		if (rc == LUP_EIO) {
			lup_field f[] = { lup_fs("path", roots[i]),
					  lup_fs("reason", e.message) };
			lup_store_log(s, "purge.skip", f, 2);
		}
	}
}

int lup_store_purge(lup_store *s, int64_t older_than, int dry_run,
		    lup_upload_list *out, lup_error *err)
{
	lup_upload_list all;
	int64_t cutoff = lup_now() - older_than;
	int rc;

	memset(out, 0, sizeof(*out));
	if (older_than < 0)
		return lup_error_set(err, LUP_EIO, NULL,
				     "older_than must not be negative");
	if ((rc = lup_store_uploads(s, NULL, &all, err)) != 0)
		return rc;
	for (size_t i = 0; rc == 0 && i < all.count; i++) {
		lup_upload_info *in = &all.items[i];
		char dir[LUP_PATH_BUF];
		void *lock = NULL;
		lup_error e;
		lup_stat st;

		if (in->started_at >= cutoff)
			continue;
		lup_path_upload_dir(dir, in->repo, in->uuid);
		/* Removed under the upload's lock (a held upload is skipped,
		 * in a dry run too, so that the dry run lists exactly what a
		 * real one would remove).  Without a startedat there is no
		 * lock to take, and nothing can resume the orphan either. */
		lup_error_clear(&e);
		rc = lup_store_lock_upload(s, in->repo, in->uuid, &lock, &e);
		if (rc == LUP_EBLOB_UPLOAD_UNKNOWN &&
		    lup_s_stat(s, dir, &st, NULL) != 0) {
			rc = 0; /* gone meanwhile (finished or cancelled) */
			continue;
		}
		/* INVALID_PATH: the upload directory is a symlink (debris):
		 * nobody can lock or resume it; delete removes only the link. */
		if (rc != 0 && rc != LUP_EBLOB_UPLOAD_UNKNOWN &&
		    rc != LUP_EINVALID_PATH) {
			lup_field f[] = { lup_fs("repo", in->repo),
					  lup_fs("uuid", in->uuid),
					  lup_fs("reason", e.message) };
			lup_store_log(s, "purge.skip", f, 3);
			rc = 0;
			continue;
		}
		rc = 0;
		if (dry_run) {
			lup_s_unlock(s, lock);
		} else {
			rc = lup_s_delete(s, dir, &e);
			lup_s_unlock(s, lock);
			if (rc == LUP_EPATH_NOT_FOUND)
				rc = 0;
			if (rc != 0) {
				lup_field f[] = { lup_fs("repo", in->repo),
						  lup_fs("uuid", in->uuid),
						  lup_fs("reason", e.message) };
				lup_store_log(s, "purge.skip", f, 3);
				rc = 0; /* one failure does not stop the purge */
				continue;
			}
		}
		{
			lup_field f[] = { lup_fs("repo", in->repo),
					  lup_fs("uuid", in->uuid),
					  lup_fi("started_at", in->started_at),
					  lup_fi("size", in->size),
					  lup_fb("dry_run", dry_run) };
			lup_store_log(s, "purge.delete", f, 5);
		}
		rc = push(out, in->repo, in->uuid, in->started_at, in->size);
		if (rc)
			lup_error_set(err, rc, NULL, "out of memory");
	}
	lup_upload_list_free(&all);
	if (rc)
		lup_upload_list_free(out);
	else
		sweep_temporaries(s, cutoff, dry_run);
	return rc;
}
