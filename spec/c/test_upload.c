/*
 * test_upload.c - the public C API (include/layerup.h) end to end on the
 * memory and the filesystem driver: start, write, close, resume, finish,
 * cancel, purge, LOCKED between two handles, policy hooks, and a
 * thread-safety smoke test (two threads, their own uploads, one store).
 */
#include <dirent.h>
#include <ftw.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "layerup.h"
#include "layerup/sys/driver.h"
#include "test.h"
#include "test_store.h"

#define V2 "/docker/registry/v2"

static void upload_path(char *buf, size_t cap, const char *repo,
			const char *uuid, const char *leaf)
{
	snprintf(buf, cap, V2 "/repositories/%s/_uploads/%s%s%s", repo, uuid,
		 leaf ? "/" : "", leaf ? leaf : "");
}

static int path_exists(const char *path)
{
	lup_stat st;

	return lup_driver_stat(D, path, &st, NULL) == 0;
}

/* Captured log events (names only), for the policy test. */
typedef struct events {
	pthread_mutex_t mu;
	char names[64][32];
	int count;
	int64_t last_offset;
} events;

static void log_hook(const char *event, const lup_field *f, size_t n,
		     void *payload)
{
	events *ev = payload;

	pthread_mutex_lock(&ev->mu);
	if (ev->count < 64)
		snprintf(ev->names[ev->count++], 32, "%s", event);
	for (size_t i = 0; i < n; i++)
		if (strcmp(f[i].key, "offset") == 0 && f[i].type == LUP_FIELD_INT)
			ev->last_offset = f[i].i;
	pthread_mutex_unlock(&ev->mu);
}

static int saw(events *ev, const char *name)
{
	for (int i = 0; i < ev->count; i++)
		if (strcmp(ev->names[i], name) == 0)
			return 1;
	return 0;
}

static lup_store *open_store(const lup_store_options *opts)
{
	lup_store *s = NULL;
	lup_error err;

	if (lup_store_open(&s, D, opts, &err) != 0) {
		printf("# lup_store_open: %s\n", err.message);
		return NULL;
	}
	return s;
}

/* ---- tests -------------------------------------------------------------- */

TEST(start_write_close_resume_finish)
{
	lup_store *s = open_store(NULL);
	lup_upload *u = NULL, *r = NULL;
	lup_error err;
	lup_blob_info info;
	unsigned char data[5000];
	char digest[80], uuid[37], path[1024];
	lup_buf b = { 0 };

	if (!s)
		return;
	test_fill(data, sizeof(data), 1);
	test_sha256_str(data, sizeof(data), digest);
	CHECK_EQ_INT(lup_upload_start(&u, s, "foo/bar", &err), 0);
	if (!u)
		goto out;
	snprintf(uuid, sizeof(uuid), "%s", lup_upload_uuid(u));
	CHECK_EQ_INT(strlen(uuid), 36);
	CHECK_EQ_STR(lup_upload_repo(u), "foo/bar");
	CHECK(lup_upload_started_at(u) > 1500000000);
	CHECK(lup_upload_is_open(u));
	upload_path(path, sizeof(path), "foo/bar", uuid, "startedat");
	CHECK_EQ_INT(lup_driver_get_content(D, path, &b, NULL), 0);
	CHECK_EQ_INT(b.len, 20);
	lup_buf_free(&b);

	CHECK_EQ_INT(lup_upload_write(u, data, 1000, &err), 0);
	CHECK_EQ_INT(lup_upload_write_at(u, 1000, data + 1000, 1000, &err), 0);
	CHECK_EQ_INT(lup_upload_size(u), 2000);
	CHECK_EQ_INT(lup_upload_write_at(u, 10, data, 1, &err), LUP_ERANGE_INVALID);
	CHECK_EQ_INT(err.code, LUP_ERANGE_INVALID);
	CHECK_EQ_INT(err.offset, 2000);
	CHECK_EQ_INT(lup_upload_close(u, &err), 0);
	CHECK(!lup_upload_is_open(u));
	CHECK_EQ_INT(lup_upload_close(u, &err), 0); /* idempotent */
	CHECK(lup_upload_write(u, data, 1, &err) != 0);
	upload_path(path, sizeof(path), "foo/bar", uuid, "hashstates/sha256/2000");
	CHECK_EQ_INT(lup_driver_get_content(D, path, &b, NULL), 0);
	CHECK_EQ_INT(b.len, 108);
	lup_buf_free(&b);
	lup_upload_free(u);
	u = NULL;

	CHECK_EQ_INT(lup_upload_resume(&r, s, "foo/bar", uuid, &err), 0);
	if (!r)
		goto out;
	CHECK_EQ_INT(lup_upload_size(r), 2000);
	CHECK_EQ_INT(lup_upload_bytes_reread(r), 0);
	CHECK_EQ_INT(lup_upload_write(r, data + 2000, sizeof(data) - 2000, &err), 0);
	CHECK_EQ_INT(lup_upload_finish(r, "sha256:0000", -1, &info, &err),
		     LUP_EDIGEST_INVALID);
	CHECK_EQ_INT(lup_upload_finish(r, digest, 4999, &info, &err), LUP_ESIZE_INVALID);
	CHECK_EQ_INT(lup_upload_finish(r, digest, sizeof(data), &info, &err), 0);
	CHECK_EQ_STR(info.digest, digest);
	CHECK_EQ_INT(info.size, sizeof(data));
	CHECK_EQ_INT(lup_upload_bytes_reread(r), 0);
	CHECK(!lup_upload_is_open(r));
	CHECK_EQ_INT(lup_upload_cancel(r, &err), 0); /* no-op after finish */

	snprintf(path, sizeof(path), V2 "/blobs/sha256/%.2s/%s/data", digest + 7,
		 digest + 7);
	CHECK_EQ_INT(lup_driver_get_content(D, path, &b, NULL), 0);
	CHECK_EQ_INT(b.len, sizeof(data));
	CHECK(b.len == sizeof(data) && memcmp(b.data, data, sizeof(data)) == 0);
	lup_buf_free(&b);
	snprintf(path, sizeof(path), V2 "/repositories/foo/bar/_layers/sha256/%s/link",
		 digest + 7);
	CHECK_EQ_INT(lup_driver_get_content(D, path, &b, NULL), 0);
	CHECK(b.len == 71 && memcmp(b.data, digest, 71) == 0);
	lup_buf_free(&b);
	upload_path(path, sizeof(path), "foo/bar", uuid, NULL);
	CHECK(!path_exists(path));

	memset(&info, 0, sizeof(info));
	CHECK_EQ_INT(lup_store_stat(s, digest, "foo/bar", &info, &err), 0);
	CHECK_EQ_STR(info.digest, digest);
	CHECK_EQ_INT(lup_store_stat(s, digest, "other", &info, &err), LUP_EBLOB_UNKNOWN);
	{
		lup_reader *rd = NULL;
		unsigned char buf[8192];
		int64_t got = 0, n;

		CHECK_EQ_INT(lup_store_open_blob(s, "foo/bar", digest, &rd, &err), 0);
		while (rd && (n = rd->read(rd, buf + got, sizeof(buf) - (size_t)got, &err)) > 0)
			got += n;
		CHECK_EQ_INT(got, sizeof(data));
		CHECK(memcmp(buf, data, sizeof(data)) == 0);
		if (rd)
			rd->close(rd);
	}
	CHECK_EQ_INT(lup_upload_resume(&u, s, "foo/bar", uuid, &err),
		     LUP_EBLOB_UPLOAD_UNKNOWN);
	CHECK(u == NULL);
out:
	lup_upload_free(r);
	lup_upload_free(u);
	lup_store_release(s);
}

TEST(bad_names_and_ids)
{
	lup_store *s = open_store(NULL);
	lup_upload *u = NULL;
	lup_error err;
	static const char *const bad[] = { "../x", "Foo", "a//b", "/a", "a/", "", "a..b" };

	if (!s)
		return;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK_EQ_INT(lup_upload_start(&u, s, bad[i], &err), LUP_ENAME_INVALID);
		CHECK(u == NULL);
		CHECK_EQ_INT(lup_upload_resume(&u, s, bad[i],
					       "6f1c8a2e-3b4d-4e5f-8a9b-0c1d2e3f4a5b", &err),
			     LUP_ENAME_INVALID);
	}
	CHECK_EQ_INT(lup_upload_resume(&u, s, "a", "../../x", &err),
		     LUP_EBLOB_UPLOAD_UNKNOWN);
	CHECK_EQ_INT(lup_upload_resume(&u, s, "a", "6F1C8A2E-3B4D-4E5F-8A9B-0C1D2E3F4A5B", &err),
		     LUP_EBLOB_UPLOAD_UNKNOWN);
	CHECK_EQ_INT(lup_upload_resume(&u, s, "a", "6f1c8a2e-3b4d-4e5f-8a9b-0c1d2e3f4a5b", &err),
		     LUP_EBLOB_UPLOAD_UNKNOWN);
	CHECK(u == NULL);
	lup_store_release(s);
}

TEST(locked_between_handles)
{
	lup_store *s = open_store(NULL), *s2 = open_store(NULL);
	lup_upload *u = NULL, *r = NULL, *r2 = NULL;
	lup_error err;
	char uuid[37], digest[80];

	if (!s || !s2)
		goto out;
	CHECK_EQ_INT(lup_upload_start(&u, s, "lock/me", &err), 0);
	if (!u)
		goto out;
	snprintf(uuid, sizeof(uuid), "%s", lup_upload_uuid(u));
	CHECK_EQ_INT(lup_upload_write(u, "abc", 3, &err), 0);
	CHECK_EQ_INT(lup_upload_resume(&r, s, "lock/me", uuid, &err), LUP_ELOCKED);
	CHECK_EQ_INT(err.code, LUP_ELOCKED);
	CHECK_EQ_INT(lup_upload_resume(&r, s2, "lock/me", uuid, &err), LUP_ELOCKED);
	CHECK(r == NULL);
	CHECK_EQ_INT(lup_upload_close(u, &err), 0);
	CHECK_EQ_INT(lup_upload_resume(&r, s2, "lock/me", uuid, &err), 0);
	CHECK_EQ_INT(lup_upload_resume(&r2, s, "lock/me", uuid, &err), LUP_ELOCKED);
	/* the closed first handle cannot cancel it from under r */
	CHECK_EQ_INT(lup_upload_cancel(u, &err), LUP_ELOCKED);
	if (r) {
		test_sha256_str("abcd", 4, digest);
		CHECK_EQ_INT(lup_upload_write(r, "d", 1, &err), 0);
		CHECK_EQ_INT(lup_upload_finish(r, digest, 4, NULL, &err), 0);
	}
	/* finished by r: the cancel must not also succeed (issue 8, 6) */
	CHECK_EQ_INT(lup_upload_cancel(u, &err), LUP_EBLOB_UPLOAD_UNKNOWN);
out:
	lup_upload_free(u);
	lup_upload_free(r);
	lup_upload_free(r2);
	lup_store_release(s);
	lup_store_release(s2);
}

TEST(wrong_digest_then_right_or_cancel)
{
	lup_store *s = open_store(NULL);
	lup_upload *u = NULL;
	lup_error err;
	char good[80], bad[80], path[1024], uuid[37];
	unsigned char data[3000];

	if (!s)
		return;
	test_fill(data, sizeof(data), 2);
	test_sha256_str(data, sizeof(data), good);
	test_sha256_str(data, sizeof(data) - 1, bad);
	CHECK_EQ_INT(lup_upload_start(&u, s, "w", &err), 0);
	if (!u)
		goto out;
	CHECK_EQ_INT(lup_upload_write(u, data, sizeof(data) - 1, &err), 0);
	CHECK_EQ_INT(lup_upload_finish(u, good, -1, NULL, &err), LUP_EDIGEST_INVALID);
	CHECK(lup_upload_is_open(u));
	/* a failed finish leaves an upload that takes more bytes */
	CHECK_EQ_INT(lup_upload_write(u, data + sizeof(data) - 1, 1, &err), 0);
	if (err.code)
		printf("# write after failed finish: %s\n", err.message);
	CHECK_EQ_INT(lup_upload_finish(u, bad, -1, NULL, &err), LUP_EDIGEST_INVALID);
	CHECK_EQ_INT(lup_upload_finish(u, good, -1, NULL, &err), 0);
	lup_upload_free(u);
	u = NULL;

	/* and one that can be cancelled */
	CHECK_EQ_INT(lup_upload_start(&u, s, "w", &err), 0);
	if (!u)
		goto out;
	snprintf(uuid, sizeof(uuid), "%s", lup_upload_uuid(u));
	CHECK_EQ_INT(lup_upload_write(u, data, 10, &err), 0);
	CHECK_EQ_INT(lup_upload_finish(u, good, -1, NULL, &err), LUP_EDIGEST_INVALID);
	CHECK_EQ_INT(lup_upload_cancel(u, &err), 0);
	CHECK_EQ_INT(lup_upload_cancel(u, &err), 0);
	upload_path(path, sizeof(path), "w", uuid, NULL);
	CHECK(!path_exists(path));
out:
	lup_upload_free(u);
	lup_store_release(s);
}

TEST(resume_rehash_without_state)
{
	lup_store *s = open_store(NULL);
	lup_upload *u = NULL;
	lup_error err;
	unsigned char data[10000];
	char digest[80], uuid[37], path[1024];

	if (!s)
		return;
	test_fill(data, sizeof(data), 3);
	test_sha256_str(data, sizeof(data), digest);
	CHECK_EQ_INT(lup_upload_start(&u, s, "re", &err), 0);
	if (!u)
		goto out;
	snprintf(uuid, sizeof(uuid), "%s", lup_upload_uuid(u));
	CHECK_EQ_INT(lup_upload_write(u, data, sizeof(data), &err), 0);
	lup_upload_free(u); /* closes */
	u = NULL;
	upload_path(path, sizeof(path), "re", uuid, "hashstates");
	CHECK_EQ_INT(lup_driver_delete(D, path, &err), 0);
	CHECK_EQ_INT(lup_upload_resume(&u, s, "re", uuid, &err), 0);
	if (!u)
		goto out;
	CHECK_EQ_INT(lup_upload_bytes_reread(u), sizeof(data));
	CHECK_EQ_INT(lup_upload_finish(u, digest, -1, NULL, &err), 0);
out:
	lup_upload_free(u);
	lup_store_release(s);
}

TEST(data_missing_is_unknown_and_not_recreated)
{
	lup_store *s = open_store(NULL);
	lup_upload *u = NULL;
	lup_error err;
	char uuid[37], path[1024];

	if (!s)
		return;
	CHECK_EQ_INT(lup_upload_start(&u, s, "gone", &err), 0);
	if (!u)
		goto out;
	snprintf(uuid, sizeof(uuid), "%s", lup_upload_uuid(u));
	lup_upload_free(u);
	u = NULL;
	upload_path(path, sizeof(path), "gone", uuid, "data");
	CHECK_EQ_INT(lup_driver_delete(D, path, &err), 0);
	CHECK_EQ_INT(lup_upload_resume(&u, s, "gone", uuid, &err), LUP_EBLOB_UPLOAD_UNKNOWN);
	CHECK(!path_exists(path));
out:
	lup_upload_free(u);
	lup_store_release(s);
}

TEST(purge_old_keeps_young)
{
	lup_store *s = open_store(NULL);
	lup_upload *u = NULL, *held = NULL;
	lup_error err;
	lup_upload_list l;
	char old_uuid[37], young_uuid[37], held_uuid[37], path[1024];

	if (!s)
		return;
	CHECK_EQ_INT(lup_upload_start(&u, s, "p", &err), 0);
	if (!u)
		goto out;
	snprintf(old_uuid, sizeof(old_uuid), "%s", lup_upload_uuid(u));
	CHECK_EQ_INT(lup_upload_write(u, "xyz", 3, &err), 0);
	lup_upload_free(u);
	u = NULL;
	upload_path(path, sizeof(path), "p", old_uuid, "startedat");
	CHECK_EQ_INT(lup_driver_put_content(D, path, "2020-01-01T00:00:00Z", 20, &err), 0);

	CHECK_EQ_INT(lup_upload_start(&u, s, "p", &err), 0);
	if (!u)
		goto out;
	snprintf(young_uuid, sizeof(young_uuid), "%s", lup_upload_uuid(u));
	lup_upload_free(u);
	u = NULL;

	CHECK_EQ_INT(lup_upload_start(&held, s, "p", &err), 0);
	if (!held)
		goto out;
	snprintf(held_uuid, sizeof(held_uuid), "%s", lup_upload_uuid(held));
	upload_path(path, sizeof(path), "p", held_uuid, "startedat");
	CHECK_EQ_INT(lup_driver_put_content(D, path, "2020-01-01T00:00:00Z", 20, &err), 0);

	CHECK_EQ_INT(lup_store_uploads(s, "p", &l, &err), 0);
	CHECK_EQ_INT(l.count, 3);
	lup_upload_list_free(&l);

	/* The dry run lists exactly what the real purge removes: the held
	 * upload is skipped by both. */
	CHECK_EQ_INT(lup_store_purge(s, 3600, 1, &l, &err), 0);
	CHECK_EQ_INT(l.count, 1);
	lup_upload_list_free(&l);
	CHECK_EQ_INT(lup_store_purge(s, 3600, 0, &l, &err), 0);
	CHECK_EQ_INT(l.count, 1);
	if (l.count == 1) {
		CHECK_EQ_STR(l.items[0].uuid, old_uuid);
		CHECK_EQ_STR(l.items[0].repo, "p");
		CHECK_EQ_INT(l.items[0].started_at, 1577836800);
		CHECK_EQ_INT(l.items[0].size, 3);
	}
	lup_upload_list_free(&l);
	upload_path(path, sizeof(path), "p", old_uuid, NULL);
	CHECK(!path_exists(path));
	upload_path(path, sizeof(path), "p", young_uuid, "data");
	CHECK(path_exists(path));
	upload_path(path, sizeof(path), "p", held_uuid, "data");
	CHECK(path_exists(path));
	lup_upload_free(held);
	held = NULL;
	CHECK_EQ_INT(lup_store_purge(s, 3600, 0, &l, &err), 0);
	CHECK_EQ_INT(l.count, 1);
	if (l.count == 1)
		CHECK_EQ_STR(l.items[0].uuid, held_uuid);
	lup_upload_list_free(&l);
	CHECK_EQ_INT(lup_store_purge(s, 0, 0, &l, &err), 0);
	lup_upload_list_free(&l);
	CHECK_EQ_INT(lup_store_purge(s, -1, 0, &l, &err), LUP_EIO);
out:
	lup_upload_free(u);
	lup_upload_free(held);
	lup_store_release(s);
}

static int link_to_mirror(const lup_link_ctx *ctx, lup_link_add_fn add,
			  void *sink, lup_error *err, void *payload)
{
	(void)err;
	(void)payload;
	if (add(sink, ctx->repo, ctx->canonical) || add(sink, "mirror", ctx->canonical))
		return LUP_EIO;
	return 0;
}

static int admit_not_denied(const char *repo, lup_error *err, void *payload)
{
	(void)payload;
	if (strncmp(repo, "denied", 6) == 0)
		return lup_error_set(err, LUP_EDENIED, NULL, "no uploads to %s", repo);
	return 0;
}

static int retry_never(int attempt, const lup_error *cause, const char *op,
		       double *delay, void *payload)
{
	(void)attempt;
	(void)cause;
	(void)op;
	(void)delay;
	(void)payload;
	return 0;
}

/* With a retry policy set, the paths that pass no error record (listing,
 * purge, stale-state cleanup) must still work: a missing startedat makes
 * purge's get_content fail with err == NULL. */
TEST(retry_policy_with_internal_failures)
{
	lup_store_options o = LUP_STORE_OPTIONS_INIT;
	lup_store *s;
	lup_upload *u = NULL;
	lup_upload_list l;
	lup_error err;
	char uuid[37], path[1024];

	o.policy.retry = retry_never;
	s = open_store(&o);
	if (!s)
		return;
	CHECK_EQ_INT(lup_upload_start(&u, s, "retry/r", &err), 0);
	if (!u)
		goto out;
	snprintf(uuid, sizeof(uuid), "%s", lup_upload_uuid(u));
	CHECK_EQ_INT(lup_upload_write(u, "abc", 3, &err), 0);
	lup_upload_free(u);
	u = NULL;
	upload_path(path, sizeof(path), "retry/r", uuid, "startedat");
	CHECK_EQ_INT(lup_driver_delete(D, path, &err), 0);
	CHECK_EQ_INT(lup_store_uploads(s, "retry/r", &l, &err), 0);
	CHECK_EQ_INT(l.count, 1);
	lup_upload_list_free(&l);
	CHECK_EQ_INT(lup_store_purge(s, 3600, 1, &l, &err), 0);
	lup_upload_list_free(&l);
	CHECK_EQ_INT(lup_upload_resume(&u, s, "retry/r", uuid, &err), LUP_EBLOB_UPLOAD_UNKNOWN);
	upload_path(path, sizeof(path), "retry/r", uuid, NULL);
	CHECK_EQ_INT(lup_driver_delete(D, path, &err), 0);
out:
	lup_upload_free(u);
	lup_store_release(s);
}

/* lup_upload_set_max_size: a per-handle cap below (or without) the store's
 * max_size; a write past it stores nothing of itself; the cap is the
 * handle's, not the upload's; the lower of both limits wins. */
TEST(per_handle_size_cap)
{
	lup_store_options o = LUP_STORE_OPTIONS_INIT;
	lup_store *s = open_store(NULL), *s10 = NULL;
	lup_upload *u = NULL, *r = NULL;
	lup_error err;
	lup_blob_info info;
	char uuid[37], digest[80];

	if (!s)
		goto out;
	CHECK_EQ_INT(lup_upload_start(&u, s, "cap/a", &err), 0);
	if (!u)
		goto out;
	snprintf(uuid, sizeof(uuid), "%s", lup_upload_uuid(u));
	lup_upload_set_max_size(u, 10);
	CHECK_EQ_INT(lup_upload_write(u, "0123456", 7, &err), 0);
	CHECK_EQ_INT(lup_upload_write(u, "789ab", 5, &err), LUP_ESIZE_INVALID);
	CHECK(strstr(err.message, "limit of 10 bytes") != NULL);
	CHECK_EQ_INT(lup_upload_write_async(u, "789ab", 5, &err), LUP_ESIZE_INVALID);
	CHECK_EQ_INT(lup_upload_size(u), 7);
	CHECK_EQ_INT(lup_upload_write_async(u, "789", 3, &err), 0); /* exactly 10 */
	CHECK_EQ_INT(lup_upload_write(u, "x", 1, &err), LUP_ESIZE_INVALID);
	CHECK_EQ_INT(lup_upload_write(u, "", 0, &err), 0);
	CHECK_EQ_INT(lup_upload_size(u), 10);
	CHECK_EQ_INT(lup_upload_close(u, &err), 0);
	lup_upload_free(u);
	u = NULL;
	/* a resumed handle has no cap of its own */
	CHECK_EQ_INT(lup_upload_resume(&r, s, "cap/a", uuid, &err), 0);
	if (!r)
		goto out;
	CHECK_EQ_INT(lup_upload_write(r, "!", 1, &err), 0);
	lup_upload_set_max_size(r, 0); /* below the size: no byte more */
	CHECK_EQ_INT(lup_upload_write(r, "?", 1, &err), LUP_ESIZE_INVALID);
	lup_upload_set_max_size(r, -1); /* removed */
	CHECK_EQ_INT(lup_upload_write(r, "?", 1, &err), 0);
	test_sha256_str("0123456789!?", 12, digest);
	CHECK_EQ_INT(lup_upload_finish(r, digest, 12, &info, &err), 0);
	lup_upload_free(r);
	r = NULL;
	/* the store's max_size still applies above a larger cap */
	o.max_size = 10;
	s10 = open_store(&o);
	if (!s10)
		goto out;
	CHECK_EQ_INT(lup_upload_start(&u, s10, "cap/b", &err), 0);
	if (!u)
		goto out;
	lup_upload_set_max_size(u, 100);
	CHECK_EQ_INT(lup_upload_write(u, "0123456789x", 11, &err), LUP_ESIZE_INVALID);
	CHECK(strstr(err.message, "limit of 10 bytes") != NULL);
	lup_upload_set_max_size(u, 4);
	CHECK_EQ_INT(lup_upload_write(u, "01234", 5, &err), LUP_ESIZE_INVALID);
	CHECK(strstr(err.message, "limit of 4 bytes") != NULL);
	CHECK_EQ_INT(lup_upload_size(u), 0);
	CHECK_EQ_INT(lup_upload_cancel(u, &err), 0);
out:
	lup_upload_free(u);
	lup_upload_free(r);
	lup_store_release(s10);
	lup_store_release(s);
}

TEST(policies_and_limits)
{
	lup_store_options o = LUP_STORE_OPTIONS_INIT;
	events ev;
	lup_store *s;
	lup_upload *u = NULL;
	lup_error err;
	lup_blob_info info;
	char digest[80];

	memset(&ev, 0, sizeof(ev));
	pthread_mutex_init(&ev.mu, NULL);
	o.policy.log = log_hook;
	o.policy.link = link_to_mirror;
	o.policy.admit = admit_not_denied;
	o.policy.payload = &ev;
	o.max_size = 10;
	s = open_store(&o);
	if (!s)
		goto out;
	CHECK_EQ_INT(lup_upload_start(&u, s, "denied/x", &err), LUP_EDENIED);
	CHECK_EQ_INT(err.code, LUP_EDENIED);
	CHECK(strstr(err.message, "no uploads") != NULL);
	CHECK(u == NULL);
	CHECK_EQ_INT(lup_upload_start(&u, s, "ok", &err), 0);
	if (!u)
		goto out;
	CHECK_EQ_INT(lup_upload_write(u, "0123456", 7, &err), 0);
	CHECK_EQ_INT(lup_upload_write(u, "789ab", 5, &err), LUP_ESIZE_INVALID);
	CHECK_EQ_INT(lup_upload_size(u), 7);
	CHECK_EQ_INT(lup_upload_write(u, "789", 3, &err), 0);
	test_sha256_str("0123456789", 10, digest);
	CHECK_EQ_INT(lup_upload_finish(u, digest, 10, &info, &err), 0);
	CHECK_EQ_INT(lup_store_stat(s, digest, "mirror", &info, &err), 0);
	CHECK_EQ_INT(lup_store_stat(s, digest, "ok", &info, &err), 0);
	CHECK(saw(&ev, "upload.start"));
	CHECK(saw(&ev, "upload.finish"));
	CHECK(saw(&ev, "blob.link"));
	{
		lup_store_options bad = LUP_STORE_OPTIONS_INIT;
		lup_store *s2 = NULL;

		bad.version = 99;
		CHECK_EQ_INT(lup_store_open(&s2, D, &bad, &err), LUP_EUNSUPPORTED);
		CHECK(s2 == NULL);
	}
out:
	lup_upload_free(u);
	lup_store_release(s);
	pthread_mutex_destroy(&ev.mu);
}

static int admit_sized(const lup_admit_ctx *ctx, lup_error *err, void *payload)
{
	int64_t *seen = payload;

	*seen = ctx->size;
	if (ctx->size > 100)
		return lup_error_set(err, LUP_EDENIED, NULL, "too big for %s",
				     ctx->repo);
	return 0;
}

/* The store options as version 1 of the header laid them out (before
 * lup_policy.admit_upload): a binary built against it must keep working. */
typedef struct {
	unsigned version;
	struct {
		void (*log)(const char *, const lup_field *, size_t, void *);
		int (*retry)(int, const lup_error *, const char *, double *, void *);
		int (*link)(const lup_link_ctx *, lup_link_add_fn, void *,
			    lup_error *, void *);
		int (*admit)(const char *, lup_error *, void *);
		void (*sleep)(double, void *);
		void *payload;
	} policy;
	int64_t max_size;
	int64_t max_age;
} options_v1;

TEST(sized_admission_and_v1_options)
{
	lup_store_options o = LUP_STORE_OPTIONS_INIT;
	lup_start_options so = LUP_START_OPTIONS_INIT;
	options_v1 o1;
	int64_t seen = -2;
	lup_store *s, *s1 = NULL;
	lup_upload *u = NULL;
	lup_error err;

	o.policy.admit_upload = admit_sized;
	o.policy.admit = admit_not_denied; /* admit_upload wins */
	o.policy.payload = &seen;
	o.max_size = 1000;
	s = open_store(&o);
	if (!s)
		return;
	so.size = 101;
	CHECK_EQ_INT(lup_upload_start_ext(&u, s, "big", &so, &err), LUP_EDENIED);
	CHECK(strstr(err.message, "too big for big") != NULL);
	CHECK_EQ_INT(seen, 101);
	CHECK(u == NULL);
	so.size = 50;
	CHECK_EQ_INT(lup_upload_start_ext(&u, s, "denied/x", &so, &err), 0);
	CHECK_EQ_INT(seen, 50);
	if (u)
		CHECK_EQ_INT(lup_upload_cancel(u, &err), 0);
	lup_upload_free(u);
	u = NULL;
	CHECK_EQ_INT(lup_upload_start(&u, s, "ok", &err), 0);
	CHECK_EQ_INT(seen, -1);
	if (u)
		CHECK_EQ_INT(lup_upload_cancel(u, &err), 0);
	lup_upload_free(u);
	u = NULL;
	so.size = 1001; /* above max_size: refused before admission */
	CHECK_EQ_INT(lup_upload_start_ext(&u, s, "ok", &so, &err), LUP_ESIZE_INVALID);
	CHECK_EQ_INT(seen, -1);
	so.version = 7;
	CHECK_EQ_INT(lup_upload_start_ext(&u, s, "ok", &so, &err), LUP_EUNSUPPORTED);
	CHECK(u == NULL);
	lup_store_release(s);

	memset(&o1, 0, sizeof(o1));
	o1.version = 1;
	o1.policy.admit = admit_not_denied;
	o1.max_size = 5;
	CHECK_EQ_INT(lup_store_open(&s1, D, (const lup_store_options *)(void *)&o1, &err), 0);
	if (!s1)
		return;
	CHECK_EQ_INT(lup_upload_start(&u, s1, "denied/y", &err), LUP_EDENIED);
	CHECK_EQ_INT(lup_upload_start(&u, s1, "ok", &err), 0);
	if (u) {
		CHECK_EQ_INT(lup_upload_write(u, "123456", 6, &err), LUP_ESIZE_INVALID);
		CHECK_EQ_INT(lup_upload_cancel(u, &err), 0);
		lup_upload_free(u);
	}
	lup_store_release(s1);
}

TEST(store_blob_ops)
{
	lup_store *s = open_store(NULL);
	lup_upload *u = NULL;
	lup_error err;
	lup_blob_info info;
	char digest[80];

	if (!s)
		return;
	test_sha256_str("mount me", 8, digest);
	CHECK_EQ_INT(lup_upload_start(&u, s, "src", &err), 0);
	if (!u)
		goto out;
	CHECK_EQ_INT(lup_upload_write(u, "mount me", 8, &err), 0);
	CHECK_EQ_INT(lup_upload_finish(u, digest, -1, NULL, &err), 0);
	CHECK_EQ_INT(lup_store_mount(s, "nowhere", "dst", digest, &info, &err),
		     LUP_EBLOB_UNKNOWN);
	CHECK_EQ_INT(lup_store_mount(s, "src", "dst", digest, &info, &err), 0);
	CHECK_EQ_STR(info.digest, digest);
	CHECK_EQ_INT(info.size, 8);
	CHECK_EQ_INT(lup_store_unlink(s, "src", digest, &err), 0);
	CHECK_EQ_INT(lup_store_stat(s, digest, "src", &info, &err), LUP_EBLOB_UNKNOWN);
	CHECK_EQ_INT(lup_store_stat(s, digest, "dst", &info, &err), 0);
	CHECK_EQ_INT(lup_store_link(s, "src", digest, &err), 0);
	CHECK_EQ_INT(lup_store_stat(s, digest, "src", &info, &err), 0);
	CHECK_EQ_INT(lup_store_stat(s, digest, NULL, &info, &err), 0);
	test_sha256_str("absent", 6, digest);
	CHECK_EQ_INT(lup_store_link(s, "src", digest, &err), LUP_EBLOB_UNKNOWN);
	CHECK_EQ_INT(lup_store_stat(s, digest, NULL, &info, &err), LUP_EBLOB_UNKNOWN);
out:
	lup_upload_free(u);
	lup_store_release(s);
}

/* ---- threads ------------------------------------------------------------ */

typedef struct worker {
	lup_store *store;
	int id;
	int ok;
	char msg[LUP_ERROR_MSG_MAX];
} worker;

static void *work(void *arg)
{
	worker *w = arg;
	unsigned char data[40000];
	char repo[32], digest[80], uuid[37];
	lup_error err;

	snprintf(repo, sizeof(repo), "thread%d/r", w->id);
	w->ok = 0;
	for (int i = 0; i < 15; i++) {
		lup_upload *u = NULL;
		lup_blob_info info;
		size_t n = 1000 + (size_t)i * 2500 + (size_t)w->id * 7;

		test_fill(data, n, (uint32_t)(w->id * 1000 + i));
		test_sha256_str(data, n, digest);
		if (lup_upload_start(&u, w->store, repo, &err) != 0)
			goto fail;
		snprintf(uuid, sizeof(uuid), "%s", lup_upload_uuid(u));
		if (lup_upload_write(u, data, n / 3, &err) != 0) {
			lup_upload_free(u);
			goto fail;
		}
		lup_upload_free(u); /* close */
		u = NULL;
		if (lup_upload_resume(&u, w->store, repo, uuid, &err) != 0)
			goto fail;
		if (lup_upload_write(u, data + n / 3, n - n / 3, &err) != 0 ||
		    lup_upload_finish(u, digest, (int64_t)n, &info, &err) != 0 ||
		    strcmp(info.digest, digest) != 0 || lup_upload_bytes_reread(u) != 0) {
			if (!err.message[0])
				snprintf(err.message, sizeof(err.message), "bad result");
			lup_upload_free(u);
			goto fail;
		}
		lup_upload_free(u);
	}
	w->ok = 1;
	return NULL;
fail:
	snprintf(w->msg, sizeof(w->msg), "%s", err.message);
	return NULL;
}

/* Background hashing: a buffer may be refilled once the next call (or
 * lup_upload_drain) has returned, and the digest still covers every byte. */
TEST(async_writes_reuse_buffers)
{
	enum { CHUNK = 1 << 20, COUNT = 5 };
	unsigned char *all = malloc((size_t)CHUNK * COUNT);
	unsigned char *buf[2] = { malloc(CHUNK), malloc(CHUNK) };
	lup_store *s = open_store(NULL);
	lup_upload *u = NULL;
	lup_blob_info b;
	lup_error err;
	char digest[80];

	CHECK(all && buf[0] && buf[1] && s);
	if (!all || !buf[0] || !buf[1] || !s)
		goto out;
	test_fill(all, (size_t)CHUNK * COUNT, 77);
	test_sha256_str(all, (size_t)CHUNK * COUNT, digest);
	CHECK_EQ_INT(lup_upload_start(&u, s, "async/c", &err), 0);
	if (!u)
		goto out;
	for (int i = 0; i < COUNT; i++) {
		unsigned char *p = buf[i & 1];

		/* buf[i & 1] was last written two calls ago: free to reuse. */
		memcpy(p, all + (size_t)i * CHUNK, CHUNK);
		CHECK_EQ_INT(lup_upload_write_async(u, p, CHUNK, &err), 0);
		CHECK_EQ_INT(lup_upload_size(u), (int64_t)(i + 1) * CHUNK);
	}
	lup_upload_drain(u);
	memset(buf[0], 0xAA, CHUNK); /* after drain nothing reads them */
	memset(buf[1], 0x55, CHUNK);
	CHECK_EQ_INT(lup_upload_finish(u, digest, (int64_t)CHUNK * COUNT, &b, &err), 0);
	CHECK_EQ_STR(b.digest, digest);
	CHECK_EQ_INT(lup_upload_bytes_reread(u), 0);
out:
	lup_upload_free(u);
	lup_store_release(s);
	free(all);
	free(buf[0]);
	free(buf[1]);
}

/* Threads of this process: the entries of /proc/self/task. */
static int thread_count(void)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* hash_thread = 0 (hosts that forbid threads): large writes, sync and
 * async, are hashed on the caller's thread and the digest still matches;
 * with the default a worker exists while the upload is open. */
TEST(hash_thread_option)
{
	static unsigned char data[1 << 20];
	char digest[80];

	test_fill(data, sizeof(data), 7);
	test_sha256_str(data, sizeof(data), digest);
	for (int on = 1; on >= 0; on--) {
		lup_store_options o = LUP_STORE_OPTIONS_INIT;
		lup_store *s;
		lup_upload *u = NULL;
		lup_blob_info info;
		lup_error err;
		int before = thread_count();
		size_t half = sizeof(data) / 2;

		CHECK_EQ_INT(o.hash_thread, 1); /* the default */
		o.hash_thread = on;
		if (!(s = open_store(&o)))
			return;
		CHECK_EQ_INT(lup_upload_start(&u, s, "threads/t", &err), 0);
		if (u) {
			CHECK_EQ_INT(lup_upload_write(u, data, half, &err), 0);
			CHECK_EQ_INT(thread_count(), before + on);
			CHECK_EQ_INT(lup_upload_write_async(u, data + half, half, &err), 0);
			CHECK_EQ_INT(thread_count(), before + on);
			CHECK_EQ_INT(lup_upload_finish(u, digest, sizeof(data), &info, &err), 0);
			CHECK_EQ_INT(info.size, sizeof(data));
		}
		lup_upload_free(u);
		CHECK_EQ_INT(thread_count(), before);
		lup_store_release(s);
	}
}

/* A caller built against options version 3 (before hash_thread): its
 * struct ends before the field, which must not be read (ASan would see
 * the overflow), and it gets the default, the worker thread. */
typedef struct store_options_v3 {
	unsigned version;
	lup_policy policy;
	int64_t max_size;
	int64_t max_age;
	int rehash_on_finish;
} store_options_v3;

TEST(options_v3_keep_the_hash_thread)
{
	static unsigned char data[512 * 1024];
	store_options_v3 *o3 = malloc(sizeof(*o3)); /* heap: exact bounds */
	lup_store *s = NULL;
	lup_upload *u = NULL;
	lup_error err;
	int before = thread_count();

	if (!o3)
		return;
	memset(o3, 0, sizeof(*o3));
	o3->version = 3;
	CHECK_EQ_INT(lup_store_open(&s, D, (const lup_store_options *)(void *)o3, &err), 0);
	if (s && lup_upload_start(&u, s, "threads/v3", &err) == 0) {
		CHECK_EQ_INT(lup_upload_write(u, data, sizeof(data), &err), 0);
		CHECK_EQ_INT(thread_count(), before + 1);
	}
	lup_upload_free(u);
	lup_store_release(s);
	free(o3);
}

TEST(two_threads_one_store)
{
	lup_store *s = open_store(NULL);
	worker w[2];
	pthread_t t[2];
	lup_upload_list l;
	lup_error err;

	if (!s)
		return;
	for (int i = 0; i < 2; i++) {
		memset(&w[i], 0, sizeof(w[i]));
		w[i].store = s;
		w[i].id = i;
		CHECK_EQ_INT(pthread_create(&t[i], NULL, work, &w[i]), 0);
	}
	for (int i = 0; i < 2; i++) {
		pthread_join(t[i], NULL);
		if (!w[i].ok)
			printf("# thread %d: %s\n", i, w[i].msg);
		CHECK(w[i].ok);
	}
	/* every upload finished: nothing left in the threads' repositories */
	CHECK_EQ_INT(lup_store_uploads(s, "thread0/r", &l, &err), 0);
	CHECK_EQ_INT(l.count, 0);
	lup_upload_list_free(&l);
	CHECK_EQ_INT(lup_store_uploads(s, "thread1/r", &l, &err), 0);
	CHECK_EQ_INT(l.count, 0);
	lup_upload_list_free(&l);
	lup_store_release(s);
}

/* A driver that forwards to D and fails the first put_content of a layer
 * link with EIO: a finish then fails after its data has moved. */
typedef struct linkfail {
	lup_driver base;
	int armed;
} linkfail;

#define INNER D
static int lf_get(lup_driver *d, const char *p, lup_buf *o, lup_error *e)
{
	(void)d;
	return lup_driver_get_content(INNER, p, o, e);
}
static int lf_put(lup_driver *d, const char *p, const void *b, size_t n,
		  lup_error *e)
{
	linkfail *lf = (linkfail *)d;
	size_t len = strlen(p);

	if (lf->armed && len > 5 && strcmp(p + len - 5, "/link") == 0) {
		lf->armed = 0;
		return lup_error_set(e, LUP_EIO, p, "injected link failure");
	}
	return lup_driver_put_content(INNER, p, b, n, e);
}
static int lf_reader(lup_driver *d, const char *p, int64_t off,
		     lup_reader **o, lup_error *e)
{
	(void)d;
	return lup_driver_reader(INNER, p, off, o, e);
}
static int lf_writer(lup_driver *d, const char *p, int append,
		     lup_writer **o, lup_error *e)
{
	(void)d;
	return lup_driver_writer(INNER, p, append, o, e);
}
static int lf_stat(lup_driver *d, const char *p, lup_stat *o, lup_error *e)
{
	(void)d;
	return lup_driver_stat(INNER, p, o, e);
}
static int lf_list(lup_driver *d, const char *p, lup_strlist *o, lup_error *e)
{
	(void)d;
	return lup_driver_list(INNER, p, o, e);
}
static int lf_move(lup_driver *d, const char *a, const char *b, lup_error *e)
{
	(void)d;
	return lup_driver_move(INNER, a, b, e);
}
static int lf_remove(lup_driver *d, const char *p, lup_error *e)
{
	(void)d;
	return lup_driver_delete(INNER, p, e);
}
static int lf_lock(lup_driver *d, const char *p, void **t, lup_error *e)
{
	(void)d;
	return lup_driver_lock(INNER, p, t, e);
}
static void lf_unlock(lup_driver *d, void *t)
{
	(void)d;
	lup_driver_unlock(INNER, t);
}
#undef INNER

/* Issue 8, defects 4 and 5: a finish that failed after the move is
 * completed by a new handle on another store, and every finish checks
 * the digest it is given (a wrong alias of the right length too). */
TEST(finish_restart_after_move)
{
	linkfail lf = { .armed = 1 };
	lup_store *fs = NULL, *s = NULL;
	lup_upload *u = NULL, *r = NULL;
	lup_error err;
	lup_stat st;
	char uuid[37], digest[80], path[1024];
	char bad512[8 + 128], bad384[8 + 96], digest2[80];

	lf.base.name = "linkfail";
	lf.base.get_content = lf_get;
	lf.base.put_content = lf_put;
	lf.base.reader = lf_reader;
	lf.base.writer = lf_writer;
	lf.base.stat = lf_stat;
	lf.base.list = lf_list;
	lf.base.move = lf_move;
	lf.base.remove = lf_remove;
	lf.base.lock = lf_lock;
	lf.base.unlock = lf_unlock;
	CHECK_EQ_INT(lup_driver_init(&lf.base, LUP_DRIVER_VERSION, &err), 0);
	CHECK_EQ_INT(lup_store_open(&fs, &lf.base, NULL, &err), 0);
	s = open_store(NULL);
	if (!fs || !s)
		goto out;
	/* wrong digests of the right length */
	snprintf(bad512, sizeof(bad512), "sha512:%0128d", 0);
	snprintf(bad384, sizeof(bad384), "sha384:%096d", 0);
	test_sha256_str("restart me", 10, digest);
	test_sha256_str("restart m2", 10, digest2);
	/* the same handle: a wrong alias is refused, twice */
	CHECK_EQ_INT(lup_upload_start(&u, fs, "restart/a", &err), 0);
	if (!u)
		goto out;
	CHECK_EQ_INT(lup_upload_write(u, "restart me", 10, &err), 0);
	CHECK_EQ_INT(lup_upload_finish(u, digest, 10, NULL, &err), LUP_EIO);
	CHECK_EQ_INT(lup_upload_finish(u, bad512, -1, NULL, &err), LUP_EDIGEST_INVALID);
	CHECK_EQ_INT(lup_upload_finish(u, bad512, -1, NULL, &err), LUP_EDIGEST_INVALID);
	CHECK_EQ_INT(lup_upload_finish(u, bad384, -1, NULL, &err), LUP_EDIGEST_INVALID);
	CHECK_EQ_INT(lup_upload_finish(u, digest, -1, NULL, &err), 0);
	lup_upload_free(u);
	u = NULL;
	/* another handle on another store */
	lf.armed = 1;
	CHECK_EQ_INT(lup_upload_start(&u, fs, "restart/b", &err), 0);
	if (!u)
		goto out;
	snprintf(uuid, sizeof(uuid), "%s", lup_upload_uuid(u));
	CHECK_EQ_INT(lup_upload_write(u, "restart m2", 10, &err), 0);
	CHECK_EQ_INT(lup_upload_finish(u, digest2, 10, NULL, &err), LUP_EIO);
	CHECK_EQ_INT(lup_upload_resume(&r, s, "restart/b", uuid, &err), LUP_ELOCKED);
	lup_upload_free(u);
	u = NULL;
	CHECK_EQ_INT(lup_upload_resume(&r, s, "restart/b", uuid, &err), 0);
	if (!r)
		goto out;
	CHECK_EQ_INT(lup_upload_size(r), 10);
	CHECK_EQ_INT(lup_upload_write(r, "x", 1, &err), LUP_EBLOB_UPLOAD_INVALID);
	CHECK_EQ_INT(lup_upload_finish(r, bad512, -1, NULL, &err), LUP_EDIGEST_INVALID);
	CHECK_EQ_INT(lup_upload_finish(r, digest2, 10, NULL, &err), 0);
	snprintf(path, sizeof(path), V2 "/repositories/restart/b/_layers/sha256/%s/link",
		 digest2 + 7);
	CHECK_EQ_INT(lup_driver_stat(D, path, &st, &err), 0);
	upload_path(path, sizeof(path), "restart/b", uuid, NULL);
	CHECK(!path_exists(path));
out:
	lup_upload_free(u);
	lup_upload_free(r);
	lup_store_free(fs);
	lup_store_free(s);
}

/* ---- drivers -------------------------------------------------------------- */

static void run_all(void)
{
	RUN_ON(start_write_close_resume_finish);
	RUN_ON(bad_names_and_ids);
	RUN_ON(locked_between_handles);
	RUN_ON(wrong_digest_then_right_or_cancel);
	RUN_ON(resume_rehash_without_state);
	RUN_ON(data_missing_is_unknown_and_not_recreated);
	RUN_ON(purge_old_keeps_young);
	RUN_ON(policies_and_limits);
	RUN_ON(per_handle_size_cap);
	RUN_ON(retry_policy_with_internal_failures);
	RUN_ON(sized_admission_and_v1_options);
	RUN_ON(store_blob_ops);
	RUN_ON(async_writes_reuse_buffers);
	RUN_ON(hash_thread_option);
	RUN_ON(options_v3_keep_the_hash_thread);
	RUN_ON(two_threads_one_store);
	RUN_ON(finish_restart_after_move);
}

int main(void)
{
	char root[] = "/tmp/layerup-ctest.XXXXXX";

	return test_on_drivers(root, run_all);
}
