/*
 * test_hashstate.c - layerup never persists a hash state that does not
 * match the data (issue 8, defect 7), and the rehash_on_finish store option
 * (the trust boundary), on the memory and the filesystem driver.
 *
 * The interleaving of defect 7: layerup writes part of an upload and dies
 * before its first close (no state at the data size); registry 2.8 then
 * appends, finds no state at the size and saves a state of ONLY its new
 * bytes, named by their count; layerup resumes, writes and closes.  The
 * registry trusts the state at the exact size, so a wrong one there makes
 * it reject the right digest.  Here the registry's side is played directly
 * on the driver (append + "new bytes only" state), the way registry 2.8
 * does it (../shared/reference/distribution-2.8.md, 3.1 and 3.4).
 */
#include <ftw.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layerup.h"
#include "layerup/sys/driver.h"
#include "test.h"
#include "test_store.h"

#define V2 "/docker/registry/v2"
#define REPO "hs/test"

/* Events by name and their "offset" field. */
typedef struct events {
	pthread_mutex_t mu;
	char names[128][32];
	int64_t offsets[128];
	int count;
} events;

static void log_hook(const char *event, const lup_field *f, size_t n,
		     void *payload)
{
	events *ev = payload;

	pthread_mutex_lock(&ev->mu);
	if (ev->count < 128) {
		snprintf(ev->names[ev->count], 32, "%s", event);
		ev->offsets[ev->count] = -1;
		for (size_t i = 0; i < n; i++)
			if (strcmp(f[i].key, "offset") == 0)
				ev->offsets[ev->count] = f[i].i;
		ev->count++;
	}
	pthread_mutex_unlock(&ev->mu);
}

/* Offset of the last event called name, -2 if there is none. */
static int64_t last(events *ev, const char *name)
{
	for (int i = ev->count - 1; i >= 0; i--)
		if (strcmp(ev->names[i], name) == 0)
			return ev->offsets[i];
	return -2;
}

static lup_store *open_store(events *ev, int rehash)
{
	lup_store_options o = LUP_STORE_OPTIONS_INIT;
	lup_store *s = NULL;
	lup_error err;

	o.policy.log = log_hook;
	o.policy.payload = ev;
	o.rehash_on_finish = rehash;
	if (lup_store_open(&s, D, &o, &err) != 0)
		printf("# lup_store_open: %s\n", err.message);
	return s;
}

static void hs_path(char *buf, size_t cap, const char *uuid, const char *leaf)
{
	snprintf(buf, cap, V2 "/repositories/" REPO "/_uploads/%s/%s", uuid, leaf);
}

static void state_path(char *buf, size_t cap, const char *uuid, int64_t off)
{
	char leaf[64];

	snprintf(leaf, sizeof(leaf), "hashstates/sha256/%lld", (long long)off);
	hs_path(buf, cap, uuid, leaf);
}

/* Put the Go MarshalBinary state of sha256(p[0, n)) at hashstates/<name>. */
static int put_state(const char *uuid, int64_t name, const void *p, size_t n)
{
	unsigned char st[LUP_HASH_MAX_STATE];
	char path[1024];
	lup_hash h;
	int len;

	lup_hash_init(&h, LUP_SHA256);
	lup_hash_update(&h, p, n);
	len = lup_hash_export(&h, st, sizeof(st));
	state_path(path, sizeof(path), uuid, name);
	return len < 0 ? len : lup_driver_put_content(D, path, st, (size_t)len, NULL);
}

/* Is the state stored at off exactly the state of sha256(p[0, off))? */
static int state_matches(const char *uuid, int64_t off, const void *p)
{
	unsigned char st[LUP_HASH_MAX_STATE];
	char path[1024];
	lup_buf b = { 0 };
	lup_hash h;
	int len, ok;

	lup_hash_init(&h, LUP_SHA256);
	lup_hash_update(&h, p, (size_t)off);
	len = lup_hash_export(&h, st, sizeof(st));
	state_path(path, sizeof(path), uuid, off);
	if (lup_driver_get_content(D, path, &b, NULL) != 0)
		return 0;
	ok = len > 0 && b.len == (size_t)len && memcmp(b.data, st, b.len) == 0;
	lup_buf_free(&b);
	return ok;
}

static int state_exists(const char *uuid, int64_t off)
{
	char path[1024];
	lup_stat st;

	state_path(path, sizeof(path), uuid, off);
	return lup_driver_stat(D, path, &st, NULL) == 0;
}

/* Append p[0, n) to the upload's data as another writer would. */
static int append_data(const char *uuid, const void *p, size_t n)
{
	char path[1024];
	lup_writer *w;
	int rc;

	hs_path(path, sizeof(path), uuid, "data");
	if ((rc = lup_driver_writer(D, path, 1, &w, NULL)) != 0)
		return rc;
	rc = w->write(w, p, n, NULL);
	if (rc == 0)
		rc = w->commit(w, NULL);
	w->close(w, NULL);
	return rc;
}

/* layerup writes data[0, first) and dies before its first close: the data
 * is there, no hash state is.  Returns the upload id in uuid. */
static int layerup_dies(lup_store *s, const unsigned char *data, size_t first,
			char uuid[37])
{
	lup_upload *u = NULL;
	char path[1024];
	lup_error err;
	int rc;

	if ((rc = lup_upload_start(&u, s, REPO, &err)) != 0)
		return rc;
	snprintf(uuid, 37, "%s", lup_upload_uuid(u));
	rc = lup_upload_write(u, data, first, &err);
	lup_upload_free(u); /* closes: the kill comes next */
	hs_path(path, sizeof(path), uuid, "hashstates");
	if (rc == 0)
		rc = lup_driver_delete(D, path, &err);
	return rc;
}

/* The whole interleaving: layerup writes a bytes and dies; the "registry"
 * appends m bytes and saves the state of those m bytes alone at m; layerup
 * resumes, writes c bytes and closes.  The state it leaves at the size must
 * be the right one (the registry trusts it), and finish must work. */
static void interleave(size_t a, size_t m, size_t c, const unsigned char *data)
{
	events ev = { .mu = PTHREAD_MUTEX_INITIALIZER };
	lup_store *s = open_store(&ev, 0);
	lup_upload *u = NULL;
	lup_error err;
	char uuid[37], digest[80];
	int64_t size = (int64_t)(a + m + c);

	if (!s)
		return;
	test_sha256_str(data, (size_t)size, digest);
	CHECK_EQ_INT(layerup_dies(s, data, a, uuid), 0);
	CHECK_EQ_INT(append_data(uuid, data + a, m), 0);
	CHECK_EQ_INT(put_state(uuid, (int64_t)m, data + a, m), 0);

	CHECK_EQ_INT(lup_upload_resume(&u, s, REPO, uuid, &err), 0);
	if (!u)
		goto out;
	CHECK_EQ_INT(lup_upload_size(u), (int64_t)(a + m));
	CHECK_EQ_INT(lup_upload_write(u, data + a + m, c, &err), 0);
	CHECK_EQ_INT(lup_upload_close(u, &err), 0);
	lup_upload_free(u);
	u = NULL;
	/* The state at the size is right, and it is the only one left. */
	CHECK(state_matches(uuid, size, data));
	CHECK(!state_exists(uuid, (int64_t)m));

	/* Resume and finish trust it: 0 bytes read, right digest taken. */
	CHECK_EQ_INT(lup_upload_resume(&u, s, REPO, uuid, &err), 0);
	if (!u)
		goto out;
	CHECK_EQ_INT(lup_upload_bytes_reread(u), 0);
	CHECK_EQ_INT(lup_upload_finish(u, digest, size, NULL, &err), 0);
	CHECK_EQ_INT(lup_upload_bytes_reread(u), 0);
out:
	lup_upload_free(u);
	lup_store_free(s);
	pthread_mutex_destroy(&ev.mu);
}

/* ---- tests -------------------------------------------------------------- */

/* m % 64 == 0: the registry's state has no pending bytes to compare. */
TEST(registry_new_bytes_state_aligned)
{
	static unsigned char data[100 + 4096 + 300];

	test_fill(data, sizeof(data), 71);
	interleave(100, 4096, 300, data);
}

/* m % 64 == 40: the pending bytes differ from the data at m. */
TEST(registry_new_bytes_state_unaligned)
{
	static unsigned char data[100 + 4136 + 300];

	test_fill(data, sizeof(data), 72);
	interleave(100, 4136, 300, data);
}

/* m % 64 == 40, and the pending bytes match by accident: zero padding at
 * the end of the registry's chunk and at data[m - 40, m) (tar pads with
 * zeros).  Matching zeros vouch for nothing. */
TEST(registry_new_bytes_state_zero_pending)
{
	static unsigned char data[100 + 4136 + 300];

	test_fill(data, sizeof(data), 73);
	memset(data + 4136 - 40, 0, 40);        /* data[m - 40, m) */
	memset(data + 100 + 4136 - 40, 0, 40);  /* end of the registry chunk */
	interleave(100, 4136, 300, data);
}

/* A state with too few pending bytes (m % 64 == 1) is no evidence either
 * (1 in 256 matches by chance). */
TEST(registry_new_bytes_state_one_pending)
{
	static unsigned char data[100 + 4097 + 300];

	test_fill(data, sizeof(data), 74);
	data[4096] = data[100 + 4096]; /* the accident */
	interleave(100, 4097, 300, data);
}

/* layerup's own aligned state below the size (a kill after writing past a
 * close): resume re-reads only the gap, a finish that matches reads nothing
 * more, and a close proves the state (re-reading [0, 4096)) before it
 * writes the next one. */
TEST(own_aligned_state_gap_then_proof)
{
	static unsigned char data[4096 + 1000];
	events ev = { .mu = PTHREAD_MUTEX_INITIALIZER };
	lup_store *s = open_store(&ev, 0);
	lup_upload *u = NULL;
	lup_error err;
	char uuid[37], digest[80];

	if (!s)
		return;
	test_fill(data, sizeof(data), 75);
	test_sha256_str(data, sizeof(data), digest);
	CHECK_EQ_INT(layerup_dies(s, data, 4096, uuid), 0);
	CHECK_EQ_INT(put_state(uuid, 4096, data, 4096), 0); /* its close */
	CHECK_EQ_INT(append_data(uuid, data + 4096, 1000), 0); /* then died */

	/* resume + finish: the gap only. */
	CHECK_EQ_INT(lup_upload_resume(&u, s, REPO, uuid, &err), 0);
	if (!u)
		goto out;
	CHECK_EQ_INT(lup_upload_bytes_reread(u), 1000);
	CHECK_EQ_INT(last(&ev, "hashstate.unchecked"), 4096);
	CHECK_EQ_INT(lup_upload_close(u, &err), 0);
	CHECK_EQ_INT(last(&ev, "hashstate.proved"), 4096);
	CHECK_EQ_INT(lup_upload_bytes_reread(u), 1000 + 4096);
	CHECK(state_matches(uuid, 5096, data));
	CHECK(!state_exists(uuid, 4096));
	lup_upload_free(u);
	u = NULL;

	/* Again with the state at 4096 and finish straight away. */
	CHECK_EQ_INT(put_state(uuid, 4096, data, 4096), 0);
	{
		char p[1024];

		state_path(p, sizeof(p), uuid, 5096);
		CHECK_EQ_INT(lup_driver_delete(D, p, &err), 0);
	}
	CHECK_EQ_INT(lup_upload_resume(&u, s, REPO, uuid, &err), 0);
	if (!u)
		goto out;
	CHECK_EQ_INT(lup_upload_finish(u, digest, -1, NULL, &err), 0);
	CHECK_EQ_INT(lup_upload_bytes_reread(u), 1000);
out:
	lup_upload_free(u);
	lup_store_free(s);
	pthread_mutex_destroy(&ev.mu);
}

/* A lower state the data vouches for is preferred to a higher one it does
 * not: no proof is needed at close. */
TEST(prefers_checked_lower_state)
{
	static unsigned char data[100 + 4096 + 300];
	events ev = { .mu = PTHREAD_MUTEX_INITIALIZER };
	lup_store *s = open_store(&ev, 0);
	lup_upload *u = NULL;
	lup_error err;
	char uuid[37];

	if (!s)
		return;
	test_fill(data, sizeof(data), 76);
	CHECK_EQ_INT(layerup_dies(s, data, 100, uuid), 0);
	CHECK_EQ_INT(put_state(uuid, 100, data, 100), 0); /* 36 pending bytes */
	CHECK_EQ_INT(append_data(uuid, data + 100, 4096), 0);
	CHECK_EQ_INT(put_state(uuid, 4096, data + 100, 4096), 0); /* bogus */
	CHECK_EQ_INT(lup_upload_resume(&u, s, REPO, uuid, &err), 0);
	if (!u)
		goto out;
	CHECK_EQ_INT(lup_upload_bytes_reread(u), 36 + 4096);
	CHECK_EQ_INT(last(&ev, "hashstate.unchecked"), -2);
	CHECK_EQ_INT(lup_upload_write(u, data + 4196, 300, &err), 0);
	CHECK_EQ_INT(lup_upload_close(u, &err), 0);
	CHECK_EQ_INT(lup_upload_bytes_reread(u), 36 + 4096);
	CHECK(state_matches(uuid, 4496, data));
	CHECK(!state_exists(uuid, 4096) && !state_exists(uuid, 100));
out:
	lup_upload_free(u);
	lup_store_free(s);
	pthread_mutex_destroy(&ev.mu);
}

/* If the proof cannot be made (the data cannot be read), close writes no
 * state and removes none. */
TEST(unproven_state_is_not_persisted)
{
	static unsigned char data[100 + 4096];
	events ev = { .mu = PTHREAD_MUTEX_INITIALIZER };
	lup_store *s = open_store(&ev, 0);
	lup_upload *u = NULL;
	lup_error err;
	char uuid[37], path[1024];

	if (!s)
		return;
	test_fill(data, sizeof(data), 77);
	CHECK_EQ_INT(layerup_dies(s, data, 100, uuid), 0);
	CHECK_EQ_INT(append_data(uuid, data + 100, 4096), 0);
	CHECK_EQ_INT(put_state(uuid, 4096, data + 100, 4096), 0);
	CHECK_EQ_INT(lup_upload_resume(&u, s, REPO, uuid, &err), 0);
	if (!u)
		goto out;
	/* Shrink the data under the handle: re-hashing [0, 4096) fails. */
	hs_path(path, sizeof(path), uuid, "data");
	CHECK_EQ_INT(lup_driver_put_content(D, path, data, 50, &err), 0);
	CHECK_EQ_INT(lup_upload_close(u, &err), 0);
	CHECK_EQ_INT(last(&ev, "hashstate.unproven"), 4096);
	CHECK(!state_exists(uuid, 4196));
	CHECK(state_exists(uuid, 4096));
out:
	lup_upload_free(u);
	lup_store_free(s);
	pthread_mutex_destroy(&ev.mu);
}

/* The trust boundary: a forged state at the exact size is believed unless
 * the store re-hashes on finish. */
TEST(forged_exact_state_and_rehash_on_finish)
{
	static unsigned char data[3000], other[3000];
	events ev = { .mu = PTHREAD_MUTEX_INITIALIZER };
	lup_store *s = open_store(&ev, 0), *strict = open_store(&ev, 1);
	lup_upload *u = NULL;
	lup_blob_info info;
	lup_error err;
	char uuid[37], digest[80], forged[80];

	if (!s || !strict)
		goto out;
	test_fill(data, sizeof(data), 78);
	test_fill(other, sizeof(other), 79);
	test_sha256_str(data, sizeof(data), digest);
	test_sha256_str(other, sizeof(other), forged);

	/* Without the option: the forged state's digest is accepted for data
	 * that does not have it (documented; verify finds such a blob). */
	CHECK_EQ_INT(layerup_dies(s, data, sizeof(data), uuid), 0);
	CHECK_EQ_INT(put_state(uuid, sizeof(data), other, sizeof(other)), 0);
	CHECK_EQ_INT(lup_upload_resume(&u, s, REPO, uuid, &err), 0);
	if (!u)
		goto out;
	CHECK_EQ_INT(lup_upload_finish(u, forged, -1, &info, &err), 0);
	CHECK_EQ_INT(lup_upload_bytes_reread(u), 0);
	lup_upload_free(u);
	u = NULL;

	/* With it: DIGEST_INVALID, and the upload can still be finished with
	 * the right digest, or cancelled. */
	for (int round = 0; round < 2; round++) {
		CHECK_EQ_INT(layerup_dies(strict, data, sizeof(data), uuid), 0);
		CHECK_EQ_INT(put_state(uuid, sizeof(data), other, sizeof(other)), 0);
		CHECK_EQ_INT(lup_upload_resume(&u, strict, REPO, uuid, &err), 0);
		if (!u)
			goto out;
		CHECK_EQ_INT(lup_upload_finish(u, forged, -1, NULL, &err), LUP_EDIGEST_INVALID);
		CHECK_EQ_INT(err.code, LUP_EDIGEST_INVALID);
		CHECK_EQ_INT(lup_upload_bytes_reread(u), sizeof(data));
		if (round == 0) {
			CHECK_EQ_INT(lup_upload_finish(u, digest, -1, &info, &err), 0);
			CHECK_EQ_STR(info.digest, digest);
		} else {
			CHECK_EQ_INT(lup_upload_cancel(u, &err), 0);
		}
		lup_upload_free(u);
		u = NULL;
	}
out:
	lup_upload_free(u);
	lup_store_free(s);
	lup_store_free(strict);
	pthread_mutex_destroy(&ev.mu);
}

/* Options version 2 (before rehash_on_finish) is still accepted, and
 * read no further than its own end. */
TEST(store_options_version_2)
{
	struct v2 {
		unsigned version;
		lup_policy policy;
		int64_t max_size;
		int64_t max_age;
	} *o = calloc(1, sizeof(struct v2)); /* exactly a v2 caller's allocation */
	lup_store_options bad = LUP_STORE_OPTIONS_INIT;
	lup_store *s = NULL;
	lup_error err;

	if (!o)
		return;
	o->version = 2;
	CHECK_EQ_INT(lup_store_open(&s, D, (const lup_store_options *)(void *)o, &err), 0);
	lup_store_free(s);
	s = NULL;
	free(o);
	bad.version = 0;
	CHECK_EQ_INT(lup_store_open(&s, D, &bad, &err), LUP_EUNSUPPORTED);
	bad.version = LUP_STORE_OPTIONS_VERSION + 1;
	CHECK_EQ_INT(lup_store_open(&s, D, &bad, &err), LUP_EUNSUPPORTED);
	CHECK(s == NULL);
}

/* ---- drivers -------------------------------------------------------------- */

static void run_all(void)
{
	RUN_ON(registry_new_bytes_state_aligned);
	RUN_ON(registry_new_bytes_state_unaligned);
	RUN_ON(registry_new_bytes_state_zero_pending);
	RUN_ON(registry_new_bytes_state_one_pending);
	RUN_ON(own_aligned_state_gap_then_proof);
	RUN_ON(prefers_checked_lower_state);
	RUN_ON(unproven_state_is_not_persisted);
	RUN_ON(forged_exact_state_and_rehash_on_finish);
	RUN_ON(store_options_version_2);
}

int main(void)
{
	char root[] = "/tmp/layerup-hstest.XXXXXX";

	return test_on_drivers(root, run_all);
}
