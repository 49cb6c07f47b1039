/*
 * test_driver.c - the driver conformance table, run against the "inmemory"
 * and "filesystem" drivers through the lup_driver_* wrappers, plus the
 * wrapper mechanics (path grammar, error decoration, refcounts) and a few
 * filesystem-only checks.  Modelled on the registry's driver testsuite
 * (reference/distribution-2.8.md section 5.5): like its TearDownTest, every
 * test must leave list("/") empty.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "layerup/sys/driver.h"
#include "test.h"

static lup_driver *D;   /* the driver under test */
static const char *DN;  /* its name */
static char ROOT[256];  /* filesystem root of the fs driver under test */
static int IS_FS;

/* Like RUN, with the driver name in the TAP line and the registry's
 * "store must be empty afterwards" check. */
static void clear_store(void);
#define RUN_ON(name)                                                       \
	do {                                                               \
		lup_strlist l_ = { 0 };                                    \
		test_failed_checks_ = 0;                                   \
		name();                                                    \
		CHECK_EQ_INT(lup_driver_list(D, "/", &l_, NULL), 0);       \
		if (l_.count) {                                            \
			printf("# %s left %zu entries, first %s\n", #name, \
			       l_.count, l_.items[0]);                     \
			test_failed_checks_++;                             \
			clear_store();                                     \
		}                                                          \
		lup_strlist_free(&l_);                                     \
		test_report(DN, #name);                                    \
	} while (0)

static void clear_store(void)
{
	lup_strlist l = { 0 };

	if (lup_driver_list(D, "/", &l, NULL) == 0)
		for (size_t i = 0; i < l.count; i++)
			lup_driver_delete(D, l.items[i], NULL);
	lup_strlist_free(&l);
}

/* rc and err carry code, and the message names the driver exactly once. */
#define CHECK_ERR(rc, err, want)                                           \
	do {                                                               \
		size_t n_ = strlen(DN);                                    \
		CHECK_EQ_INT((rc), (want));                                \
		CHECK_EQ_INT((err).code, (want));                          \
		CHECK(strncmp((err).message, DN, n_) == 0 &&               \
		      strncmp((err).message + n_, ": ", 2) == 0);          \
		CHECK(strstr((err).message + n_ + 2, DN) == NULL);         \
	} while (0)

static int put(const char *path, const void *data, size_t n)
{
	lup_error err;
	int rc = lup_driver_put_content(D, path, data, n, &err);

	if (rc)
		printf("# put %s: %s\n", path, err.message);
	return rc;
}

static int puts_(const char *path, const char *s)
{
	return put(path, s, strlen(s));
}

/* 1 when path holds exactly data[0..n). */
static int has(const char *path, const void *data, size_t n)
{
	lup_buf b = { 0 };
	lup_error err;
	int ok = lup_driver_get_content(D, path, &b, &err) == 0 &&
		 b.len == n && (n == 0 || memcmp(b.data, data, n) == 0);

	lup_buf_free(&b);
	return ok;
}

static int missing(const char *path)
{
	lup_buf b = { 0 };
	lup_error err;
	int rc = lup_driver_get_content(D, path, &b, &err);

	lup_buf_free(&b);
	return rc == LUP_EPATH_NOT_FOUND;
}

/* Everything a reader gives, appended to out; the read result count. */
static int read_all(lup_reader *r, lup_buf *out, size_t chunk)
{
	unsigned char buf[4096];
	lup_error err;
	int64_t got;

	if (chunk > sizeof(buf))
		chunk = sizeof(buf);
	while ((got = r->read(r, buf, chunk, &err)) > 0)
		if (lup_buf_append(out, buf, (size_t)got) < 0)
			return -1;
	return got == 0 ? 0 : -1;
}

static int list_is(const char *path, const char *const *want, size_t n)
{
	lup_strlist l = { 0 };
	lup_error err;
	int ok = lup_driver_list(D, path, &l, &err) == 0 && l.count == n;

	for (size_t i = 0; ok && i < n; i++)
		ok = strcmp(l.items[i], want[i]) == 0;
	if (!ok) {
		printf("# list %s gave %zu:", path, l.count);
		for (size_t i = 0; i < l.count; i++)
			printf(" %s", l.items[i]);
		printf("\n");
	}
	lup_strlist_free(&l);
	return ok;
}

TEST(root_exists)
{
	lup_strlist l = { 0 };
	lup_stat st;

	CHECK_EQ_INT(lup_driver_list(D, "/", &l, NULL), 0);
	CHECK_EQ_INT(l.count, 0);
	lup_strlist_free(&l);
	CHECK_EQ_INT(lup_driver_stat(D, "/", &st, NULL), 0);
	CHECK(st.is_dir);
	CHECK_EQ_INT(st.size, 0);
}

TEST(valid_paths)
{
	static const char *const paths[] = {
		"/a", "/2", "/aa", "/a.a", "/0-9/abcdefg", "/abcdefg/z.75",
		"/abc/1.2.3.4.5-6_zyx/123.z/4", "/docker/docker-registry",
		"/123.abc", "/abc./abc", "/.abc", "/a--b", "/a-.b", "/_.abc",
		"/Docker/docker-registry", "/Abc/Cba", "/...", "/a/..b",
	};
	unsigned char data[64];

	for (size_t i = 0; i < sizeof(paths) / sizeof(*paths); i++) {
		char first[64];
		const char *slash = strchr(paths[i] + 1, '/');
		size_t n = slash ? (size_t)(slash - paths[i])
				 : strlen(paths[i]);

		CHECK(lup_path_valid(paths[i]));
		test_fill(data, sizeof(data), (unsigned)i);
		CHECK_EQ_INT(put(paths[i], data, sizeof(data)), 0);
		CHECK(has(paths[i], data, sizeof(data)));
		memcpy(first, paths[i], n);
		first[n] = '\0';
		CHECK_EQ_INT(lup_driver_delete(D, first, NULL), 0);
	}
}

TEST(invalid_paths)
{
	static const char *const paths[] = {
		"", "/", "abc", "123.abc", "//bcd", "/abc_123/", "/a/../b",
		"/./a", "/a/..", "/..", "/.", "/a/./b", "/a b", "/a//b",
		"/a:b", "/a/b/", "/\xc3\x9f",
	};
	lup_buf b = { 0 };
	lup_error err;
	char want[128];
	int rc;

	CHECK(!lup_path_valid(NULL));
	for (size_t i = 0; i < sizeof(paths) / sizeof(*paths); i++) {
		const char *p = paths[i];

		CHECK(!lup_path_valid(p));
		rc = lup_driver_put_content(D, p, "x", 1, &err);
		CHECK_ERR(rc, err, LUP_EINVALID_PATH);
		CHECK_EQ_STR(err.path, p);
		snprintf(want, sizeof(want), "%s: invalid path: %s", DN, p);
		CHECK_EQ_STR(err.message, want);
		rc = lup_driver_get_content(D, p, &b, &err);
		CHECK_ERR(rc, err, LUP_EINVALID_PATH);
		CHECK_EQ_INT(b.len, 0);
		if (strcmp(p, "/") != 0) {
			lup_stat st;
			lup_strlist l = { 0 };

			rc = lup_driver_stat(D, p, &st, &err);
			CHECK_ERR(rc, err, LUP_EINVALID_PATH);
			rc = lup_driver_list(D, p, &l, &err);
			CHECK_ERR(rc, err, LUP_EINVALID_PATH);
		}
	}
	lup_buf_free(&b);
	/* Every entry point validates. */
	{
		lup_reader *r = (lup_reader *)&err;
		lup_writer *w = (lup_writer *)&err;
		void *tok = &err;

		rc = lup_driver_reader(D, "abc", 0, &r, &err);
		CHECK_ERR(rc, err, LUP_EINVALID_PATH);
		CHECK(r == NULL);
		rc = lup_driver_writer(D, "/a/", 0, &w, &err);
		CHECK_ERR(rc, err, LUP_EINVALID_PATH);
		CHECK(w == NULL);
		rc = lup_driver_move(D, "/a/..", "/b", &err);
		CHECK_ERR(rc, err, LUP_EINVALID_PATH);
		rc = lup_driver_move(D, "/b", "b", &err);
		CHECK_ERR(rc, err, LUP_EINVALID_PATH);
		CHECK_EQ_STR(err.path, "b");
		rc = lup_driver_delete(D, "/", &err);
		CHECK_ERR(rc, err, LUP_EINVALID_PATH);
		rc = lup_driver_lock(D, "x", &tok, &err);
		CHECK_ERR(rc, err, LUP_EINVALID_PATH);
		CHECK(tok == NULL);
		/* NULL err is fine. */
		CHECK_EQ_INT(lup_driver_delete(D, "//", NULL),
			     LUP_EINVALID_PATH);
	}
}

TEST(write_read)
{
	static const struct {
		const char *data;
		size_t len;
	} cases[] = {
		{ "a", 1 },
		{ "\xc3\x9f", 2 },
		{ "\x80\x80\x80\x80", 4 },
		{ "a\0b\0\0c", 6 },
		{ "", 0 },
	};
	size_t big = 1 << 20;
	unsigned char *data = malloc(big);

	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		CHECK_EQ_INT(put("/wr/file", cases[i].data, cases[i].len), 0);
		CHECK(has("/wr/file", cases[i].data, cases[i].len));
	}
	CHECK(data != NULL);
	if (data) {
		test_fill(data, 32, 3);
		CHECK_EQ_INT(put("/wr/file", data, 32), 0);
		CHECK(has("/wr/file", data, 32));
		test_fill(data, big, 4);
		CHECK_EQ_INT(put("/wr/file", data, big), 0);
		CHECK(has("/wr/file", data, big));
		/* Truncation: a shorter put replaces everything. */
		CHECK_EQ_INT(put("/wr/file", data + 7, 1024), 0);
		CHECK(has("/wr/file", data + 7, 1024));
		CHECK_EQ_INT(put("/wr/file", data, 4096), 0);
		CHECK_EQ_INT(put("/wr/file", data + 1, 2048), 0);
		CHECK(has("/wr/file", data + 1, 2048));
	}
	free(data);
	CHECK_EQ_INT(lup_driver_delete(D, "/wr", NULL), 0);
}

TEST(read_nonexistent)
{
	lup_buf b = { 0 };
	lup_error err;
	char want[128];
	int rc;

	rc = lup_driver_get_content(D, "/missing/file", &b, &err);
	CHECK_ERR(rc, err, LUP_EPATH_NOT_FOUND);
	snprintf(want, sizeof(want), "%s: Path not found: /missing/file", DN);
	CHECK_EQ_STR(err.message, want);
	CHECK_EQ_STR(err.path, "/missing/file");
	CHECK_EQ_INT(b.len, 0);

	/* Below a file, and a directory read as a file. */
	CHECK_EQ_INT(puts_("/rn/f", "x"), 0);
	rc = lup_driver_get_content(D, "/rn/f/x", &b, &err);
	CHECK_ERR(rc, err, LUP_EPATH_NOT_FOUND);
	rc = lup_driver_get_content(D, "/rn", &b, &err);
	CHECK_ERR(rc, err, LUP_EIO);
	CHECK_EQ_INT(b.len, 0);
	lup_buf_free(&b);
	CHECK_EQ_INT(lup_driver_delete(D, "/rn", NULL), 0);
}

static void stream_roundtrip(const unsigned char *data, size_t n,
			     size_t chunk)
{
	lup_writer *w = NULL;
	lup_reader *r = NULL;
	lup_buf got = { 0 };
	lup_error err;

	CHECK_EQ_INT(lup_driver_writer(D, "/st/f", 0, &w, &err), 0);
	if (!w)
		return;
	CHECK_EQ_INT(w->size(w), 0);
	for (size_t off = 0; off < n; off += chunk) {
		size_t c = n - off < chunk ? n - off : chunk;

		CHECK_EQ_INT(w->write(w, data + off, c, &err), 0);
	}
	CHECK_EQ_INT(w->size(w), n);
	CHECK_EQ_INT(w->commit(w, &err), 0);
	CHECK_EQ_INT(w->close(w, &err), 0);
	CHECK_EQ_INT(lup_driver_reader(D, "/st/f", 0, &r, &err), 0);
	if (r) {
		CHECK_EQ_INT(read_all(r, &got, 1000), 0);
		r->close(r);
	}
	CHECK_EQ_INT(got.len, n);
	CHECK(got.len == n && (n == 0 || memcmp(got.data, data, n) == 0));
	lup_buf_free(&got);
}

TEST(write_read_streams)
{
	size_t big = (1 << 20) + 17;
	unsigned char *data = malloc(big);

	stream_roundtrip((const unsigned char *)"a", 1, 1);
	stream_roundtrip((const unsigned char *)"\xc3\x9f", 2, 1);
	stream_roundtrip((const unsigned char *)"\x80\x80\x80\x80", 4, 4);
	stream_roundtrip((const unsigned char *)"", 0, 1);
	CHECK(data != NULL);
	if (data) {
		test_fill(data, big, 9);
		stream_roundtrip(data, 32, 32);
		stream_roundtrip(data, big, 65536);
		stream_roundtrip(data, 10000, 7);
	}
	free(data);
	CHECK_EQ_INT(lup_driver_delete(D, "/st", NULL), 0);
}

/* Reader at offset gives exactly data[offset..]. */
static void check_reader_at(const char *path, const unsigned char *data,
			    size_t n, int64_t offset)
{
	lup_reader *r = NULL;
	lup_buf got = { 0 };
	lup_error err;
	size_t want = (uint64_t)offset >= n ? 0 : n - (size_t)offset;

	CHECK_EQ_INT(lup_driver_reader(D, path, offset, &r, &err), 0);
	if (!r)
		return;
	CHECK_EQ_INT(read_all(r, &got, 13), 0);
	CHECK_EQ_INT(got.len, want);
	CHECK(got.len == want &&
	      (want == 0 || memcmp(got.data, data + offset, want) == 0));
	/* EOF is sticky. */
	CHECK_EQ_INT(r->read(r, got.data ? got.data : (unsigned char *)&err,
			     1, &err), 0);
	r->close(r);
	lup_buf_free(&got);
}

TEST(reader_offsets)
{
	unsigned char data[96], byte;
	lup_reader *r = NULL;
	lup_error err;
	char want[128];
	int rc;

	test_fill(data, sizeof(data), 5);
	CHECK_EQ_INT(put("/ro/x", data, sizeof(data)), 0);
	check_reader_at("/ro/x", data, 96, 0);
	check_reader_at("/ro/x", data, 96, 32);
	check_reader_at("/ro/x", data, 96, 64);
	check_reader_at("/ro/x", data, 96, 95);
	check_reader_at("/ro/x", data, 96, 96);
	check_reader_at("/ro/x", data, 96, 1000);

	/* Reader(95): one byte, then 0 (EOF). */
	CHECK_EQ_INT(lup_driver_reader(D, "/ro/x", 95, &r, &err), 0);
	if (r) {
		CHECK_EQ_INT(r->read(r, &byte, 10, &err), 1);
		CHECK_EQ_INT(byte, data[95]);
		CHECK_EQ_INT(r->read(r, &byte, 10, &err), 0);
		r->close(r);
	}

	r = (lup_reader *)&err;
	rc = lup_driver_reader(D, "/ro/x", -1, &r, &err);
	CHECK_ERR(rc, err, LUP_EINVALID_OFFSET);
	CHECK(r == NULL);
	CHECK_EQ_INT(err.offset, -1);
	CHECK_EQ_STR(err.path, "/ro/x");
	snprintf(want, sizeof(want), "%s: invalid offset: -1 for path: /ro/x",
		 DN);
	CHECK_EQ_STR(err.message, want);
	/* The offset is checked before the path. */
	rc = lup_driver_reader(D, "abc", -5, &r, &err);
	CHECK_ERR(rc, err, LUP_EINVALID_OFFSET);
	CHECK_EQ_INT(err.offset, -5);

	/* A missing file, at 0 and past where it would end. */
	rc = lup_driver_reader(D, "/ro/missing", 0, &r, &err);
	CHECK_ERR(rc, err, LUP_EPATH_NOT_FOUND);
	rc = lup_driver_reader(D, "/ro/missing", 64, &r, &err);
	CHECK_ERR(rc, err, LUP_EPATH_NOT_FOUND);
	CHECK_EQ_STR(err.path, "/ro/missing");
	rc = lup_driver_reader(D, "/ro", 0, &r, &err);
	CHECK_ERR(rc, err, LUP_EIO);
	CHECK_EQ_INT(lup_driver_delete(D, "/ro", NULL), 0);
}

TEST(reader_snapshot)
{
	unsigned char a[5000], b[100];
	lup_reader *r = NULL;
	lup_writer *w = NULL;
	lup_buf got = { 0 };
	lup_error err;

	/* A reader keeps reading what it opened even when the file is
	 * replaced or removed meanwhile. */
	test_fill(a, sizeof(a), 1);
	test_fill(b, sizeof(b), 2);
	CHECK_EQ_INT(put("/snap/f", a, sizeof(a)), 0);
	CHECK_EQ_INT(lup_driver_reader(D, "/snap/f", 10, &r, &err), 0);
	CHECK_EQ_INT(put("/snap/f", b, sizeof(b)), 0);
	CHECK_EQ_INT(lup_driver_delete(D, "/snap", NULL), 0);
	if (r) {
		CHECK_EQ_INT(read_all(r, &got, 100), 0);
		r->close(r);
	}
	CHECK(got.len == sizeof(a) - 10 &&
	      memcmp(got.data, a + 10, got.len) == 0);
	lup_buf_free(&got);

	/* A writer survives removal of its file (its bytes go nowhere). */
	CHECK_EQ_INT(lup_driver_writer(D, "/snap/w", 0, &w, &err), 0);
	if (w) {
		CHECK_EQ_INT(w->write(w, "abc", 3, &err), 0);
		CHECK_EQ_INT(lup_driver_delete(D, "/snap", NULL), 0);
		CHECK_EQ_INT(w->write(w, "def", 3, &err), 0);
		CHECK_EQ_INT(w->size(w), 6);
		CHECK_EQ_INT(w->close(w, &err), 0);
	}
	CHECK(missing("/snap/w"));
}

TEST(writer_append)
{
	unsigned char data[96];
	lup_writer *w = NULL;
	lup_stat st;
	lup_error err;

	test_fill(data, sizeof(data), 6);
	CHECK_EQ_INT(lup_driver_writer(D, "/ap/f", 0, &w, &err), 0);
	if (!w)
		return;
	CHECK_EQ_INT(w->write(w, data, 32, &err), 0);
	CHECK_EQ_INT(w->close(w, &err), 0);
	CHECK_EQ_INT(lup_driver_stat(D, "/ap/f", &st, &err), 0);
	CHECK_EQ_INT(st.size, 32);

	CHECK_EQ_INT(lup_driver_writer(D, "/ap/f", 1, &w, &err), 0);
	if (!w)
		return;
	CHECK_EQ_INT(w->size(w), 32); /* before any write */
	CHECK_EQ_INT(w->write(w, data + 32, 32, &err), 0);
	CHECK_EQ_INT(w->size(w), 64);
	CHECK_EQ_INT(w->close(w, &err), 0);
	CHECK_EQ_INT(lup_driver_stat(D, "/ap/f", &st, &err), 0);
	CHECK_EQ_INT(st.size, 64);

	CHECK_EQ_INT(lup_driver_writer(D, "/ap/f", 1, &w, &err), 0);
	if (!w)
		return;
	CHECK_EQ_INT(w->size(w), 64);
	CHECK_EQ_INT(w->write(w, data + 64, 32, &err), 0);
	CHECK_EQ_INT(w->commit(w, &err), 0);
	CHECK_EQ_INT(w->close(w, &err), 0);
	CHECK(has("/ap/f", data, 96));

	/* append=0 truncates an existing file. */
	CHECK_EQ_INT(lup_driver_writer(D, "/ap/f", 0, &w, &err), 0);
	if (!w)
		return;
	CHECK_EQ_INT(w->size(w), 0);
	CHECK_EQ_INT(w->write(w, "xy", 2, &err), 0);
	CHECK_EQ_INT(w->commit(w, &err), 0);
	CHECK_EQ_INT(w->close(w, &err), 0);
	CHECK(has("/ap/f", "xy", 2));

	/* append=1 on a missing file starts it. */
	CHECK_EQ_INT(lup_driver_writer(D, "/ap/new/g", 1, &w, &err), 0);
	if (!w)
		return;
	CHECK_EQ_INT(w->size(w), 0);
	CHECK_EQ_INT(w->write(w, "z", 1, &err), 0);
	CHECK_EQ_INT(w->close(w, &err), 0);
	CHECK(has("/ap/new/g", "z", 1));
	CHECK_EQ_INT(lup_driver_delete(D, "/ap", NULL), 0);
}

TEST(writer_states)
{
	lup_writer *w = NULL;
	lup_error err;
	char want[128];
	int rc;

	CHECK_EQ_INT(lup_driver_writer(D, "/ws/f", 0, &w, &err), 0);
	if (!w)
		return;
	CHECK_EQ_INT(w->write(w, "abc", 3, &err), 0);
	CHECK_EQ_INT(w->write(w, "", 0, &err), 0);
	CHECK_EQ_INT(w->commit(w, &err), 0);
	rc = w->write(w, "d", 1, &err);
	CHECK_ERR(rc, err, LUP_EIO);
	snprintf(want, sizeof(want), "%s: already committed", DN);
	CHECK_EQ_STR(err.message, want);
	rc = w->cancel(w, &err);
	CHECK_ERR(rc, err, LUP_EIO);
	CHECK_EQ_INT(w->commit(w, &err), 0); /* idempotent */
	CHECK_EQ_INT(w->close(w, &err), 0);
	CHECK(has("/ws/f", "abc", 3));

	/* cancel removes the whole file, even an appended one. */
	CHECK_EQ_INT(lup_driver_writer(D, "/ws/f", 1, &w, &err), 0);
	if (!w)
		return;
	CHECK_EQ_INT(w->write(w, "def", 3, &err), 0);
	CHECK_EQ_INT(w->cancel(w, &err), 0);
	CHECK(missing("/ws/f"));
	rc = w->write(w, "g", 1, &err);
	CHECK_ERR(rc, err, LUP_EIO);
	snprintf(want, sizeof(want), "%s: already cancelled", DN);
	CHECK_EQ_STR(err.message, want);
	rc = w->commit(w, &err);
	CHECK_ERR(rc, err, LUP_EIO);
	CHECK_EQ_INT(w->cancel(w, &err), 0);
	CHECK_EQ_INT(w->close(w, &err), 0);
	CHECK(missing("/ws/f"));

	/* A writer cannot open a directory or below a file. */
	CHECK_EQ_INT(puts_("/ws/d/f", "x"), 0);
	w = (lup_writer *)&err;
	rc = lup_driver_writer(D, "/ws/d", 0, &w, &err);
	CHECK_ERR(rc, err, LUP_EIO);
	CHECK(w == NULL);
	rc = lup_driver_writer(D, "/ws/d/f/g", 0, &w, &err);
	CHECK_ERR(rc, err, LUP_EIO);
	CHECK(has("/ws/d/f", "x", 1));
	CHECK_EQ_INT(lup_driver_delete(D, "/ws", NULL), 0);
}

TEST(put_conflicts)
{
	lup_error err;
	int rc;

	CHECK_EQ_INT(puts_("/pc/dir/f", "x"), 0);
	rc = lup_driver_put_content(D, "/pc/dir", "y", 1, &err);
	CHECK_ERR(rc, err, LUP_EIO);
	CHECK_EQ_STR(err.path, "/pc/dir");
	rc = lup_driver_put_content(D, "/pc/dir/f/g", "y", 1, &err);
	CHECK_ERR(rc, err, LUP_EIO);
	CHECK(has("/pc/dir/f", "x", 1));
	CHECK_EQ_INT(lup_driver_delete(D, "/pc", NULL), 0);
}

TEST(list)
{
	static const char *const top[] = { "/R" }, *const r[] = { "/R/P" };
	const char *want[13];
	char names[13][32];
	lup_strlist l = { 0 };
	lup_error err;
	char msg[128];
	int rc;

	rc = lup_driver_list(D, "/R/nonexistent", &l, &err);
	CHECK_ERR(rc, err, LUP_EPATH_NOT_FOUND);
	CHECK_EQ_STR(err.path, "/R/nonexistent");
	snprintf(msg, sizeof(msg), "%s: Path not found: /R/nonexistent", DN);
	CHECK_EQ_STR(err.message, msg);
	CHECK_EQ_INT(l.count, 0);

	/* Written out of order; names chosen to sort across the '/' byte. */
	for (int i = 12; i >= 0; i--) {
		if (i == 11)
			snprintf(names[i], sizeof(names[i]), "/R/P/s");
		else if (i == 12)
			snprintf(names[i], sizeof(names[i]), "/R/P/s-x");
		else
			snprintf(names[i], sizeof(names[i]), "/R/P/f%02d", i);
		want[i] = names[i];
		CHECK_EQ_INT(puts_(i == 11 ? "/R/P/s/inner" : names[i], "x"),
			     0);
	}
	CHECK_EQ_INT(puts_("/R/P/s/more/deep", "y"), 0);
	CHECK(list_is("/", top, 1));
	CHECK(list_is("/R", r, 1));
	/* Bytewise order: "/R/P/s" < "/R/P/s-x"? '-' < '/' is irrelevant
	 * here: children are compared as whole paths. */
	CHECK(list_is("/R/P", want, 13));
	rc = lup_driver_list(D, "/R/P/f00", &l, &err);
	CHECK_ERR(rc, err, LUP_EIO);
	rc = lup_driver_list(D, "/R/P/f00/x", &l, &err);
	CHECK_ERR(rc, err, LUP_EPATH_NOT_FOUND);
	CHECK_EQ_INT(l.count, 0);

	/* A failed list leaves out alone; a good one replaces an empty out
	 * and appends to a non-empty one. */
	CHECK_EQ_INT(lup_strlist_push(&l, "/keep"), 0);
	rc = lup_driver_list(D, "/nope", &l, &err);
	CHECK_EQ_INT(rc, LUP_EPATH_NOT_FOUND);
	CHECK_EQ_INT(l.count, 1);
	CHECK_EQ_INT(lup_driver_list(D, "/R", &l, &err), 0);
	CHECK_EQ_INT(l.count, 2);
	if (l.count == 2) {
		CHECK_EQ_STR(l.items[0], "/R/P");
		CHECK_EQ_STR(l.items[1], "/keep");
	}
	lup_strlist_free(&l);
	CHECK_EQ_INT(lup_driver_delete(D, "/R", NULL), 0);
}

TEST(move)
{
	unsigned char a[64], b[32];
	lup_error err;
	int rc;

	test_fill(a, sizeof(a), 7);
	test_fill(b, sizeof(b), 8);
	CHECK_EQ_INT(put("/mv/src", b, sizeof(b)), 0);
	CHECK_EQ_INT(lup_driver_move(D, "/mv/src", "/mv/deep/er/dst", &err),
		     0);
	CHECK(has("/mv/deep/er/dst", b, sizeof(b)));
	CHECK(missing("/mv/src"));

	/* Overwrite. */
	CHECK_EQ_INT(put("/mv/src", a, sizeof(a)), 0);
	CHECK_EQ_INT(lup_driver_move(D, "/mv/src", "/mv/deep/er/dst", &err),
		     0);
	CHECK(has("/mv/deep/er/dst", a, sizeof(a)));
	CHECK(missing("/mv/src"));

	/* Missing source: dst untouched. */
	rc = lup_driver_move(D, "/mv/nope", "/mv/deep/er/dst", &err);
	CHECK_ERR(rc, err, LUP_EPATH_NOT_FOUND);
	CHECK_EQ_STR(err.path, "/mv/nope");
	CHECK(has("/mv/deep/er/dst", a, sizeof(a)));

	/* Source below a file. */
	CHECK_EQ_INT(puts_("/notadir", "x"), 0);
	rc = lup_driver_move(D, "/notadir/foo", "/notadir/bar", &err);
	CHECK(rc < 0);
	CHECK_ERR(rc, err, LUP_EPATH_NOT_FOUND);
	CHECK_EQ_INT(lup_driver_delete(D, "/notadir", NULL), 0);

	/* Onto itself: a no-op when it exists. */
	CHECK_EQ_INT(lup_driver_move(D, "/mv/deep/er/dst", "/mv/deep/er/dst",
				     &err), 0);
	CHECK(has("/mv/deep/er/dst", a, sizeof(a)));
	rc = lup_driver_move(D, "/mv/x", "/mv/x", &err);
	CHECK_ERR(rc, err, LUP_EPATH_NOT_FOUND);

	/* A file cannot replace a directory. */
	CHECK_EQ_INT(puts_("/mv/f", "f"), 0);
	rc = lup_driver_move(D, "/mv/f", "/mv/deep", &err);
	CHECK_ERR(rc, err, LUP_EIO);
	CHECK(has("/mv/f", "f", 1));
	CHECK(has("/mv/deep/er/dst", a, sizeof(a)));
	/* Nor go below a file. */
	rc = lup_driver_move(D, "/mv/deep/er/dst", "/mv/f/x", &err);
	CHECK_ERR(rc, err, LUP_EIO);
	CHECK(has("/mv/deep/er/dst", a, sizeof(a)));
	CHECK_EQ_INT(lup_driver_delete(D, "/mv/f", NULL), 0);

	/* A directory moves with its contents; not into itself. */
	CHECK_EQ_INT(puts_("/mv/deep/er/two", "2"), 0);
	rc = lup_driver_move(D, "/mv/deep", "/mv/deep/x", &err);
	CHECK_ERR(rc, err, LUP_EIO);
	CHECK_EQ_INT(lup_driver_move(D, "/mv/deep", "/mv2/d", &err), 0);
	CHECK(has("/mv2/d/er/dst", a, sizeof(a)));
	CHECK(has("/mv2/d/er/two", "2", 1));
	CHECK(missing("/mv/deep/er/two"));
	{
		static const char *const want[] = { "/mv2/d/er/dst",
						    "/mv2/d/er/two" };
		CHECK(list_is("/mv2/d/er", want, 2));
	}
	CHECK_EQ_INT(lup_driver_delete(D, "/mv2", NULL), 0);
	lup_driver_delete(D, "/mv", NULL);
}

TEST(delete)
{
	lup_error err;
	int rc;

	CHECK_EQ_INT(puts_("/del/a", "1"), 0);
	CHECK_EQ_INT(lup_driver_delete(D, "/del/a", &err), 0);
	CHECK(missing("/del/a"));
	rc = lup_driver_delete(D, "/del/a", &err);
	CHECK_ERR(rc, err, LUP_EPATH_NOT_FOUND);
	CHECK_EQ_STR(err.path, "/del/a");
	rc = lup_driver_delete(D, "/nonexistent/x", &err);
	CHECK_ERR(rc, err, LUP_EPATH_NOT_FOUND);
	/* The one known difference: an emptied directory stays on disk (as
	 * with the registry) but vanishes from memory (it is implicit). */
	if (IS_FS) {
		CHECK_EQ_INT(lup_driver_delete(D, "/del", &err), 0);
	} else {
		lup_stat st;

		rc = lup_driver_stat(D, "/del", &st, &err);
		CHECK_ERR(rc, err, LUP_EPATH_NOT_FOUND);
	}

	/* A folder: one file at a time, then all at once. */
	CHECK_EQ_INT(puts_("/fold/f1", "1"), 0);
	CHECK_EQ_INT(puts_("/fold/f2", "2"), 0);
	CHECK_EQ_INT(puts_("/fold/sub/f3", "3"), 0);
	CHECK_EQ_INT(lup_driver_delete(D, "/fold/f1", &err), 0);
	CHECK(missing("/fold/f1"));
	CHECK(has("/fold/f2", "2", 1));
	CHECK(has("/fold/sub/f3", "3", 1));
	CHECK_EQ_INT(lup_driver_delete(D, "/fold", &err), 0);
	CHECK(missing("/fold/f2"));
	CHECK(missing("/fold/sub/f3"));
	rc = lup_driver_delete(D, "/fold", &err);
	CHECK_ERR(rc, err, LUP_EPATH_NOT_FOUND);

	/* Only sub-paths: /d/f spares /d/fsuffix, /d/d spares /d/dsuffix. */
	CHECK_EQ_INT(puts_("/d/f", "f"), 0);
	CHECK_EQ_INT(puts_("/d/fsuffix", "fs"), 0);
	CHECK_EQ_INT(puts_("/d/d/f", "ddf"), 0);
	CHECK_EQ_INT(puts_("/d/dsuffix/f", "dsf"), 0);
	CHECK_EQ_INT(puts_("/d/d-x", "dx"), 0);
	CHECK_EQ_INT(lup_driver_delete(D, "/d/f", &err), 0);
	CHECK(missing("/d/f"));
	CHECK(has("/d/fsuffix", "fs", 2));
	CHECK_EQ_INT(lup_driver_delete(D, "/d/d", &err), 0);
	CHECK(missing("/d/d/f"));
	CHECK(has("/d/dsuffix/f", "dsf", 3));
	CHECK(has("/d/d-x", "dx", 2));
	CHECK_EQ_INT(lup_driver_delete(D, "/d", &err), 0);
	CHECK(missing("/d/fsuffix"));
}

TEST(stat_call)
{
	unsigned char data[4096];
	struct timespec now;
	lup_stat st, st2;
	lup_error err;
	int64_t now_ns;
	int rc;

	rc = lup_driver_stat(D, "/sc/missing/dir", &st, &err);
	CHECK_ERR(rc, err, LUP_EPATH_NOT_FOUND);
	rc = lup_driver_stat(D, "/sc/missing", &st, &err);
	CHECK_ERR(rc, err, LUP_EPATH_NOT_FOUND);
	CHECK_EQ_STR(err.path, "/sc/missing");

	test_fill(data, sizeof(data), 11);
	CHECK_EQ_INT(put("/sc/dir/file", data, sizeof(data)), 0);
	CHECK_EQ_INT(lup_driver_stat(D, "/sc/dir/file", &st, &err), 0);
	CHECK_EQ_INT(st.size, 4096);
	CHECK(!st.is_dir);
	clock_gettime(CLOCK_REALTIME, &now);
	now_ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
	/* Plausible (same clock), not a timing assertion. */
	CHECK(st.mtime_ns > now_ns - 3600 * (int64_t)1000000000);
	CHECK(st.mtime_ns < now_ns + 3600 * (int64_t)1000000000);

	CHECK_EQ_INT(put("/sc/dir/file", data, 100), 0);
	CHECK_EQ_INT(lup_driver_stat(D, "/sc/dir/file", &st2, &err), 0);
	CHECK_EQ_INT(st2.size, 100);
	CHECK(st2.mtime_ns >= st.mtime_ns);

	CHECK_EQ_INT(lup_driver_stat(D, "/sc/dir", &st, &err), 0);
	CHECK(st.is_dir);
	CHECK_EQ_INT(st.size, 0);
	CHECK_EQ_INT(lup_driver_stat(D, "/sc", &st, &err), 0);
	CHECK(st.is_dir);
	rc = lup_driver_stat(D, "/sc/dir/file/x", &st, &err);
	CHECK_ERR(rc, err, LUP_EPATH_NOT_FOUND);
	CHECK_EQ_INT(lup_driver_delete(D, "/sc", NULL), 0);
}

TEST(locks)
{
	void *t1 = NULL, *t2 = &t1;
	lup_error err;
	char want[128];
	int rc;

	CHECK_EQ_INT(puts_("/lk/data", ""), 0);
	CHECK_EQ_INT(lup_driver_lock(D, "/lk/data", &t1, &err), 0);
	CHECK(t1 != NULL);
	rc = lup_driver_lock(D, "/lk/data", &t2, &err);
	CHECK_ERR(rc, err, LUP_ELOCKED);
	CHECK(t2 == NULL);
	CHECK_EQ_STR(err.path, "/lk/data");
	snprintf(want, sizeof(want), "%s: locked by another writer: /lk/data",
		 DN);
	CHECK_EQ_STR(err.message, want);
	/* Another path is independent. */
	CHECK_EQ_INT(puts_("/lk/other", ""), 0);
	CHECK_EQ_INT(lup_driver_lock(D, "/lk/other", &t2, &err), 0);
	lup_driver_unlock(D, t2);
	lup_driver_unlock(D, t1);
	CHECK_EQ_INT(lup_driver_lock(D, "/lk/data", &t2, &err), 0);
	CHECK(t2 != NULL);
	lup_driver_unlock(D, t2);
	lup_driver_unlock(D, NULL);

	rc = lup_driver_lock(D, "/lk/missing", &t1, &err);
	CHECK_ERR(rc, err, LUP_EPATH_NOT_FOUND);
	CHECK(t1 == NULL);
	CHECK_EQ_INT(lup_driver_delete(D, "/lk", NULL), 0);
}

struct hammer {
	int id;
	int failures;
};

static void *hammer_run(void *arg)
{
	struct hammer *h = arg;
	unsigned char data[3000];
	char path[64];

	for (int i = 0; i < 50; i++) {
		lup_reader *r = NULL;
		lup_writer *w = NULL;
		lup_strlist l = { 0 };
		lup_buf got = { 0 };
		size_t n = (size_t)(i * 61 % 3000);

		snprintf(path, sizeof(path), "/ham/t%d/f%d", h->id, i % 5);
		test_fill(data, n, (unsigned)(h->id * 100 + i));
		if (lup_driver_put_content(D, path, data, n, NULL) != 0 ||
		    lup_driver_reader(D, path, 0, &r, NULL) != 0) {
			h->failures++;
			continue;
		}
		if (read_all(r, &got, 512) != 0 || got.len != n ||
		    (n && memcmp(got.data, data, n) != 0))
			h->failures++;
		r->close(r);
		lup_buf_free(&got);
		if (lup_driver_writer(D, path, 1, &w, NULL) == 0) {
			if (w->write(w, "tail", 4, NULL) != 0 ||
			    w->size(w) != (int64_t)n + 4)
				h->failures++;
			w->close(w, NULL);
		} else {
			h->failures++;
		}
		/* Shared directories change under our feet; list must
		 * still work. */
		if (lup_driver_list(D, "/ham", &l, NULL) != 0)
			h->failures++;
		lup_strlist_free(&l);
	}
	return NULL;
}

TEST(threads)
{
	pthread_t th[4];
	struct hammer h[4];

	for (int i = 0; i < 4; i++) {
		h[i].id = i;
		h[i].failures = 0;
		CHECK_EQ_INT(pthread_create(&th[i], NULL, hammer_run, &h[i]),
			     0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		CHECK_EQ_INT(h[i].failures, 0);
	}
	CHECK_EQ_INT(lup_driver_delete(D, "/ham", NULL), 0);
}

/* Wrapper mechanics, on a hand-made driver. */

typedef struct {
	lup_driver base;
	int frees;
	int mode; /* what get_content does */
} fake_driver;

static void fake_free(lup_driver *d)
{
	((fake_driver *)d)->frees++;
}

static int fake_get(lup_driver *d, const char *path, lup_buf *out,
		    lup_error *err)
{
	fake_driver *f = (fake_driver *)d;

	(void)out;
	switch (f->mode) {
	case 0: /* forgets to fill err */
		return LUP_EIO;
	case 1: /* already named itself */
		return lup_error_set(err, LUP_EPATH_NOT_FOUND, path,
				     "fake: Path not found: %s", path);
	case 2: /* a plain message, and a bogus code */
		lup_error_set(err, LUP_EIO, NULL, "boom");
		err->transient = 1;
		return -1000;
	default: /* appends, then fails: the wrapper drops the bytes */
		lup_buf_append(out, "junk", 4);
		return lup_error_set(err, LUP_EIO, path, "partial");
	}
}

/* Versions: a driver and a writer built against version 1 of the contract
 * keep working; LUP_WRITE_NEW and publish reach version-2 ones only. */
typedef struct {
	lup_writer base;
	int published;
} fake_writer;

typedef struct {
	lup_driver base;
	int last_append;
	int writer_version;
} vers_driver;

static int fw_write(lup_writer *w, const void *p, size_t n, lup_error *e)
{
	(void)w, (void)p, (void)n, (void)e;
	return 0;
}
static int64_t fw_size(lup_writer *w) { (void)w; return 0; }
static int fw_commit(lup_writer *w, lup_error *e) { (void)w, (void)e; return 0; }
static int fw_close(lup_writer *w, lup_error *e)
{
	(void)e;
	free(w);
	return 0;
}
static int fw_publish(lup_writer *w, const char *dst, const char *hex,
		      lup_error *e)
{
	(void)dst, (void)hex, (void)e;
	return ((fake_writer *)w)->published++ ? 1 : 0;
}

static int vers_writer(lup_driver *d, const char *path, int append,
		       lup_writer **out, lup_error *err)
{
	vers_driver *v = (vers_driver *)d;
	fake_writer *w = calloc(1, sizeof(*w));

	(void)path, (void)err;
	v->last_append = append;
	w->base.version = (unsigned)v->writer_version;
	w->base.write = fw_write;
	w->base.size = fw_size;
	w->base.commit = fw_commit;
	w->base.cancel = fw_commit;
	w->base.close = fw_close;
	/* A version-1 writer has no such member: whatever lies there must
	 * never be called. */
	w->base.publish = v->writer_version >= 2
				  ? fw_publish
				  : (int (*)(lup_writer *, const char *,
					     const char *, lup_error *))abort;
	*out = &w->base;
	return 0;
}

TEST(versions)
{
	vers_driver v;
	lup_writer *w;
	lup_error err;

	for (unsigned ver = 1; ver <= 2; ver++) {
		memset(&v, 0, sizeof(v));
		v.base.name = "vers";
		v.base.writer = vers_writer;
		v.writer_version = (int)ver;
		CHECK_EQ_INT(lup_driver_init(&v.base, ver, &err), 0);
		CHECK_EQ_INT(lup_driver_writer(&v.base, "/a", LUP_WRITE_NEW, &w,
					       &err), 0);
		CHECK_EQ_INT(v.last_append, ver == 1 ? 0 : LUP_WRITE_NEW);
		if (ver == 1) {
			CHECK(w->version >= 2 && w->publish == NULL);
		} else {
			CHECK_EQ_INT(w->publish(w, "/b/../c", NULL, &err),
				     LUP_EINVALID_PATH);
			CHECK_EQ_INT(w->publish(w, "/b", NULL, &err), 0);
			CHECK_EQ_INT(w->publish(w, "/b", NULL, &err), 1);
		}
		CHECK_EQ_INT(w->close(w, &err), 0);
		CHECK_EQ_INT(lup_driver_writer(&v.base, "/a", 1, &w, &err), 0);
		CHECK_EQ_INT(v.last_append, 1);
		CHECK_EQ_INT(w->close(w, &err), 0);
		CHECK_EQ_INT(lup_driver_writer(&v.base, "/a", 0, &w, &err), 0);
		CHECK_EQ_INT(v.last_append, 0);
		CHECK_EQ_INT(w->close(w, &err), 0);
	}
	CHECK_EQ_INT(lup_driver_init(&v.base, 3, &err), LUP_EUNSUPPORTED);
}

TEST(wrapper_mechanics)
{
	fake_driver f;
	lup_buf b = { 0 };
	lup_error err;
	lup_stat st;
	void *tok = &err;
	int rc;

	memset(&f, 0, sizeof(f));
	f.base.name = "fake";
	f.base.get_content = fake_get;
	f.base.free = fake_free;
	rc = lup_driver_init(&f.base, 99, &err);
	CHECK_EQ_INT(rc, LUP_EUNSUPPORTED);
	CHECK_EQ_INT(err.code, LUP_EUNSUPPORTED);
	CHECK_EQ_INT(lup_driver_init(&f.base, LUP_DRIVER_VERSION, &err), 0);
	CHECK_EQ_INT(f.base.version, LUP_DRIVER_VERSION);

	f.mode = 0;
	rc = lup_driver_get_content(&f.base, "/x", &b, &err);
	CHECK_EQ_INT(rc, LUP_EIO);
	CHECK_EQ_STR(err.message, "fake: IO");
	CHECK_EQ_STR(err.path, "/x");
	f.mode = 1;
	rc = lup_driver_get_content(&f.base, "/x", &b, &err);
	CHECK_EQ_INT(rc, LUP_EPATH_NOT_FOUND);
	CHECK_EQ_STR(err.message, "fake: Path not found: /x");
	f.mode = 2;
	rc = lup_driver_get_content(&f.base, "/y", &b, &err);
	CHECK_EQ_INT(rc, LUP_EIO);
	CHECK_EQ_INT(err.code, LUP_EIO);
	CHECK_EQ_INT(err.transient, 1);
	CHECK_EQ_STR(err.message, "fake: boom");
	CHECK_EQ_STR(err.path, "/y");
	f.mode = 3;
	CHECK_EQ_INT(lup_buf_append(&b, "ab", 2), 0);
	rc = lup_driver_get_content(&f.base, "/z", &b, &err);
	CHECK_EQ_INT(rc, LUP_EIO);
	CHECK_EQ_INT(b.len, 2);
	lup_buf_free(&b);

	/* Missing methods: unsupported, named; a missing lock is a no-op. */
	rc = lup_driver_stat(&f.base, "/x", &st, &err);
	CHECK_EQ_INT(rc, LUP_EUNSUPPORTED);
	CHECK_EQ_STR(err.message, "fake: unsupported method");
	rc = lup_driver_delete(&f.base, "/x", &err);
	CHECK_EQ_INT(rc, LUP_EUNSUPPORTED);
	CHECK_EQ_INT(lup_driver_lock(&f.base, "/x", &tok, &err), 0);
	CHECK(tok == NULL);
	lup_driver_unlock(&f.base, tok);

	/* Reference counting: free exactly once, at zero. */
	lup_driver_retain(&f.base);
	lup_driver_release(&f.base);
	CHECK_EQ_INT(f.frees, 0);
	lup_driver_release(&f.base);
	CHECK_EQ_INT(f.frees, 1);
}

TEST(refs_outlive_release)
{
	lup_driver *d = NULL;
	lup_reader *r = NULL;
	lup_writer *w = NULL;
	lup_buf got = { 0 };
	void *tok = NULL;

	/* Readers, writers and locks keep their driver alive (valgrind and
	 * ASan check that nothing is used after free). */
	CHECK_EQ_INT(lup_driver_memory(&d, NULL), 0);
	if (!d)
		return;
	CHECK_EQ_INT(lup_driver_put_content(d, "/a", "hello", 5, NULL), 0);
	CHECK_EQ_INT(lup_driver_reader(d, "/a", 1, &r, NULL), 0);
	CHECK_EQ_INT(lup_driver_writer(d, "/b", 0, &w, NULL), 0);
	CHECK_EQ_INT(lup_driver_lock(d, "/a", &tok, NULL), 0);
	CHECK_EQ_INT(__atomic_load_n(&d->refcount_, __ATOMIC_SEQ_CST), 4);
	lup_driver_release(d);
	if (w) {
		CHECK_EQ_INT(w->write(w, "x", 1, NULL), 0);
		CHECK_EQ_INT(w->close(w, NULL), 0);
	}
	lup_driver_unlock(d, tok);
	if (r) {
		CHECK_EQ_INT(read_all(r, &got, 2), 0);
		CHECK(got.len == 4 && memcmp(got.data, "ello", 4) == 0);
		r->close(r); /* the last reference: frees the driver */
	}
	lup_buf_free(&got);
}

/* Filesystem-only behaviour. */

static int rm_cb(const char *p, const struct stat *sb, int flag,
		 struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static void rm_rf(const char *p)
{
	nftw(p, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* Entries of dir (on disk) whose name contains needle. */
static int count_dir(const char *dir, const char *needle)
{
	struct dirent *de;
	DIR *d = opendir(dir);
	int n = 0;

	if (!d)
		return -1;
	while ((de = readdir(d)))
		if (strstr(de->d_name, needle))
			n++;
	closedir(d);
	return n;
}

TEST(fs_layout)
{
	char p[512];
	struct stat st;
	FILE *f;
	static const char *const want[] = { "/lay/ok" };

	/* Driver path /lay/f is root/lay/f, a plain file. */
	CHECK_EQ_INT(puts_("/lay/f", "content"), 0);
	snprintf(p, sizeof(p), "%s/lay/f", ROOT);
	CHECK_EQ_INT(stat(p, &st), 0);
	CHECK(S_ISREG(st.st_mode));
	CHECK_EQ_INT(st.st_size, 7);
	CHECK_EQ_INT(st.st_mode & 0111, 0);
	/* put_content leaves no temporary behind. */
	snprintf(p, sizeof(p), "%s/lay", ROOT);
	CHECK_EQ_INT(count_dir(p, "~"), 0);
	CHECK_EQ_INT(lup_driver_delete(D, "/lay/f", NULL), 0);

	/* Names no driver path can address (temporaries) are not listed. */
	CHECK_EQ_INT(puts_("/lay/ok", "1"), 0);
	snprintf(p, sizeof(p), "%s/lay/.lup~0123456789abcdef", ROOT);
	f = fopen(p, "w");
	CHECK(f != NULL);
	if (f)
		fclose(f);
	snprintf(p, sizeof(p), "%s/lay/with space", ROOT);
	f = fopen(p, "w");
	CHECK(f != NULL);
	if (f)
		fclose(f);
	CHECK(list_is("/lay", want, 1));
	/* ... but delete removes them with their directory. */
	CHECK_EQ_INT(lup_driver_delete(D, "/lay", NULL), 0);
	snprintf(p, sizeof(p), "%s/lay", ROOT);
	CHECK(stat(p, &st) < 0 && errno == ENOENT);
}

TEST(fs_two_handles)
{
	lup_driver *d2 = NULL;
	lup_fs_options opts = LUP_FS_OPTIONS_INIT;
	void *t1 = NULL, *t2 = NULL;
	lup_error err;
	char sub[512];
	int rc;

	/* A second handle on the same root, with fsync on. */
	opts.fsync = 1;
	CHECK_EQ_INT(lup_driver_filesystem(&d2, ROOT, &opts, &err), 0);
	if (!d2)
		return;
	CHECK_EQ_INT(puts_("/two/data", "abc"), 0);
	CHECK_EQ_INT(lup_driver_lock(D, "/two/data", &t1, &err), 0);
	rc = lup_driver_lock(d2, "/two/data", &t2, &err);
	CHECK_EQ_INT(rc, LUP_ELOCKED);
	CHECK_EQ_STR(err.message,
		     "filesystem: locked by another writer: /two/data");
	lup_driver_unlock(D, t1);
	CHECK_EQ_INT(lup_driver_lock(d2, "/two/data", &t2, &err), 0);
	rc = lup_driver_lock(D, "/two/data", &t1, &err);
	CHECK_EQ_INT(rc, LUP_ELOCKED);
	lup_driver_unlock(d2, t2);

	/* fsync'ing paths work and each handle sees the other's data. */
	{
		lup_writer *w = NULL;
		lup_buf b = { 0 };

		CHECK_EQ_INT(lup_driver_put_content(d2, "/two/n/x", "12", 2,
						    &err), 0);
		CHECK_EQ_INT(lup_driver_writer(d2, "/two/n/y", 0, &w, &err),
			     0);
		if (w) {
			CHECK_EQ_INT(w->write(w, "yy", 2, &err), 0);
			CHECK_EQ_INT(w->commit(w, &err), 0);
			CHECK_EQ_INT(w->close(w, &err), 0);
		}
		CHECK_EQ_INT(lup_driver_move(d2, "/two/n/y", "/two/m/y", &err),
			     0);
		CHECK(has("/two/n/x", "12", 2));
		CHECK(has("/two/m/y", "yy", 2));
		CHECK_EQ_INT(lup_driver_get_content(d2, "/two/data", &b, &err),
			     0);
		CHECK(b.len == 3 && memcmp(b.data, "abc", 3) == 0);
		lup_buf_free(&b);
		CHECK_EQ_INT(lup_driver_delete(d2, "/two", &err), 0);
	}
	lup_driver_release(d2);

	/* A root that does not exist yet is created (mkdir -p), with a
	 * trailing slash tolerated. */
	snprintf(sub, sizeof(sub), "%s/nested/root/", ROOT);
	CHECK_EQ_INT(lup_driver_filesystem(&d2, sub, NULL, &err), 0);
	if (d2) {
		lup_strlist l = { 0 };

		CHECK_EQ_INT(lup_driver_list(d2, "/", &l, &err), 0);
		CHECK_EQ_INT(l.count, 0);
		lup_driver_release(d2);
	}
	rm_rf(sub);
	snprintf(sub, sizeof(sub), "%s/nested", ROOT);
	rm_rf(sub);

	/* Bad options and roots. */
	opts.version = 42;
	CHECK_EQ_INT(lup_driver_filesystem(&d2, ROOT, &opts, &err),
		     LUP_EUNSUPPORTED);
	CHECK(d2 == NULL);
	CHECK_EQ_INT(lup_driver_filesystem(&d2, "", NULL, &err), LUP_EIO);
	CHECK(strncmp(err.message, "filesystem: ", 12) == 0);
	CHECK_EQ_INT(puts_("/file", "x"), 0);
	snprintf(sub, sizeof(sub), "%s/file", ROOT);
	CHECK_EQ_INT(lup_driver_filesystem(&d2, sub, NULL, &err), LUP_EIO);
	CHECK_EQ_INT(lup_driver_delete(D, "/file", NULL), 0);

	/* A caller built against fs options version 1 (before resolve): its
	 * struct is read through that layout only (heap: ASan sees exact
	 * bounds). */
	{
		struct fs_options_v1 {
			unsigned version;
			int fsync;
		} *o1 = malloc(sizeof(*o1));

		if (o1) {
			o1->version = 1;
			o1->fsync = 0;
			CHECK_EQ_INT(lup_driver_filesystem(&d2, ROOT,
				(const lup_fs_options *)(void *)o1, &err), 0);
			lup_driver_release(d2);
			d2 = NULL;
			free(o1);
		}
	}
}


/* Hostile trees: symlinks, special files and files where directories
 * belong, on both resolvers (openat2 and the O_NOFOLLOW walk).  OUT is a
 * directory beside the root that nothing may ever touch. */

static char OUT[300];

static void host_write(const char *path, const char *s)
{
	FILE *f = fopen(path, "w");

	CHECK(f != NULL);
	if (f) {
		fputs(s, f);
		fclose(f);
	}
}

/* 1 when the host file at path holds exactly s. */
static int host_has(const char *path, const char *s)
{
	char buf[256];
	size_t n;
	FILE *f = fopen(path, "r");

	if (!f)
		return 0;
	n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	return n == strlen(s) && memcmp(buf, s, n) == 0;
}

static int host_is_link(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0 && S_ISLNK(st.st_mode);
}

static int host_exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

/* A fresh OUT holding victim ("secret") and sub/keep ("keep"). */
static void make_out(void)
{
	char p[600];

	rm_rf(OUT);
	CHECK_EQ_INT(mkdir(OUT, 0755), 0);
	snprintf(p, sizeof(p), "%s/victim", OUT);
	host_write(p, "secret");
	snprintf(p, sizeof(p), "%s/sub", OUT);
	CHECK_EQ_INT(mkdir(p, 0755), 0);
	snprintf(p, sizeof(p), "%s/sub/keep", OUT);
	host_write(p, "keep");
}

/* OUT is exactly as make_out left it. */
static int out_intact(void)
{
	char p[600];

	snprintf(p, sizeof(p), "%s/victim", OUT);
	if (!host_has(p, "secret"))
		return 0;
	snprintf(p, sizeof(p), "%s/sub/keep", OUT);
	if (!host_has(p, "keep"))
		return 0;
	return count_dir(OUT, "") == 4 && /* ".", "..", victim, sub */
	       (snprintf(p, sizeof(p), "%s/sub", OUT), count_dir(p, "")) == 3;
}

static void link_in_root(const char *target, const char *rel)
{
	char p[600];

	snprintf(p, sizeof(p), "%s/%s", ROOT, rel);
	CHECK_EQ_INT(symlink(target, p), 0);
}

/* rc is INVALID_PATH, the message says a symlink was not followed, and
 * err.path names the link. */
#define CHECK_SYMLINK(rc, err, link)                                       \
	do {                                                               \
		CHECK_EQ_INT((rc), LUP_EINVALID_PATH);                     \
		CHECK(strstr((err).message, "is a symlink (not followed)")); \
		CHECK_EQ_STR((err).path, (link));                          \
	} while (0)

TEST(fs_symlink_dir)
{
	lup_error err;
	lup_buf b = { 0 };
	lup_reader *r = NULL;
	lup_writer *w = NULL;
	lup_stat st;
	lup_strlist l = { 0 };
	void *tok = NULL;
	char p[600];

	make_out();
	/* /a is a symlink to OUT: every call through it refuses. */
	link_in_root(OUT, "a");
	CHECK_SYMLINK(lup_driver_get_content(D, "/a/victim", &b, &err), err,
		      "/a");
	CHECK(strstr(err.message, "/a is a symlink (not followed) on the way to /a/victim"));
	CHECK_EQ_INT(b.len, 0);
	CHECK_SYMLINK(lup_driver_put_content(D, "/a/new", "x", 1, &err), err,
		      "/a");
	CHECK_SYMLINK(lup_driver_put_content(D, "/a/sub/deep/new", "x", 1,
					     &err), err, "/a");
	CHECK_SYMLINK(lup_driver_put_content(D, "/a/victim", "pwned", 5, &err),
		      err, "/a");
	CHECK_SYMLINK(lup_driver_reader(D, "/a/victim", 0, &r, &err), err,
		      "/a");
	CHECK(r == NULL);
	CHECK_SYMLINK(lup_driver_writer(D, "/a/victim", 1, &w, &err), err,
		      "/a");
	CHECK_SYMLINK(lup_driver_writer(D, "/a/victim", 0, &w, &err), err,
		      "/a");
	CHECK_SYMLINK(lup_driver_writer(D, "/a/n/m", 0, &w, &err), err, "/a");
	CHECK(w == NULL);
	CHECK_SYMLINK(lup_driver_stat(D, "/a/victim", &st, &err), err, "/a");
	CHECK_SYMLINK(lup_driver_stat(D, "/a", &st, &err), err, "/a");
	CHECK_SYMLINK(lup_driver_list(D, "/a", &l, &err), err, "/a");
	CHECK_SYMLINK(lup_driver_list(D, "/a/sub", &l, &err), err, "/a");
	CHECK_EQ_INT(l.count, 0);
	CHECK_SYMLINK(lup_driver_move(D, "/a/victim", "/stolen", &err), err,
		      "/a");
	CHECK_EQ_INT(puts_("/f", "mine"), 0);
	CHECK_SYMLINK(lup_driver_move(D, "/f", "/a/f", &err), err, "/a");
	CHECK(has("/f", "mine", 4));
	CHECK_SYMLINK(lup_driver_delete(D, "/a/victim", &err), err, "/a");
	CHECK_SYMLINK(lup_driver_delete(D, "/a/sub", &err), err, "/a");
	CHECK_SYMLINK(lup_driver_lock(D, "/a/victim", &tok, &err), err, "/a");
	CHECK(tok == NULL);
	CHECK(out_intact());
	/* list shows the link (so a walk can report it) ... */
	{
		static const char *const want[] = { "/a", "/f" };

		CHECK(list_is("/", want, 2));
	}
	/* ... and delete removes the link, never what it points at. */
	CHECK_EQ_INT(lup_driver_delete(D, "/a", &err), 0);
	snprintf(p, sizeof(p), "%s/a", ROOT);
	CHECK(!host_exists(p));
	CHECK(out_intact());
	CHECK_EQ_INT(lup_driver_delete(D, "/f", &err), 0);
	lup_buf_free(&b);
	lup_strlist_free(&l);
}

TEST(fs_symlink_leaf)
{
	lup_error err;
	lup_buf b = { 0 };
	lup_reader *r = NULL;
	lup_writer *w = NULL;
	lup_stat st;
	void *tok = NULL;
	char p[600], victim[600], ghost[600];

	make_out();
	snprintf(victim, sizeof(victim), "%s/victim", OUT);
	snprintf(ghost, sizeof(ghost), "%s/ghost", OUT);
	CHECK_EQ_INT(puts_("/d/ok", "fine"), 0);
	link_in_root(victim, "d/l");
	link_in_root(ghost, "d/dangling");
	CHECK_SYMLINK(lup_driver_get_content(D, "/d/l", &b, &err), err,
		      "/d/l");
	CHECK_EQ_STR(err.message,
		     "filesystem: /d/l is a symlink (not followed)");
	CHECK_SYMLINK(lup_driver_reader(D, "/d/l", 0, &r, &err), err, "/d/l");
	CHECK_SYMLINK(lup_driver_writer(D, "/d/l", 1, &w, &err), err, "/d/l");
	CHECK_SYMLINK(lup_driver_writer(D, "/d/l", 0, &w, &err), err, "/d/l");
	CHECK_SYMLINK(lup_driver_writer(D, "/d/dangling", 0, &w, &err), err,
		      "/d/dangling");
	CHECK_SYMLINK(lup_driver_stat(D, "/d/l", &st, &err), err, "/d/l");
	CHECK_SYMLINK(lup_driver_lock(D, "/d/l", &tok, &err), err, "/d/l");
	CHECK_SYMLINK(lup_driver_put_content(D, "/d/l", "pwned", 5, &err), err,
		      "/d/l");
	CHECK_SYMLINK(lup_driver_put_content(D, "/d/dangling", "x", 1, &err),
		      err, "/d/dangling");
	/* moving a link would smuggle it where readers trust it */
	CHECK_SYMLINK(lup_driver_move(D, "/d/l", "/d/moved", &err), err,
		      "/d/l");
	CHECK_SYMLINK(lup_driver_move(D, "/d/ok", "/d/l", &err), err, "/d/l");
	CHECK(has("/d/ok", "fine", 4));
	CHECK(r == NULL && w == NULL && tok == NULL);
	CHECK(!host_exists(ghost));
	CHECK(out_intact());
	snprintf(p, sizeof(p), "%s/d/l", ROOT);
	CHECK(host_is_link(p));
	snprintf(p, sizeof(p), "%s/d", ROOT);
	CHECK_EQ_INT(count_dir(p, ".lup~"), 0); /* no temporary left */

	/* Deleting a link removes the link. */
	CHECK_EQ_INT(lup_driver_delete(D, "/d/l", &err), 0);
	CHECK(out_intact());
	/* A tree holding links to a directory and a file: the links go,
	 * their targets stay. */
	link_in_root(OUT, "d/dirlink");
	CHECK_EQ_INT(puts_("/d/sub/x", "x"), 0);
	link_in_root(victim, "d/sub/filelink");
	CHECK_EQ_INT(lup_driver_delete(D, "/d", &err), 0);
	snprintf(p, sizeof(p), "%s/d", ROOT);
	CHECK(!host_exists(p));
	CHECK(out_intact());
	lup_buf_free(&b);
}

TEST(fs_special_files)
{
	lup_error err;
	lup_buf b = { 0 };
	lup_reader *r = NULL;
	lup_writer *w = NULL;
	lup_strlist l = { 0 };
	void *tok = NULL;
	char p[600];

	/* A FIFO where a file belongs: refused at once, never a hang (main
	 * arms an alarm). */
	CHECK_EQ_INT(puts_("/sp/x", "x"), 0);
	snprintf(p, sizeof(p), "%s/sp/fifo", ROOT);
	CHECK_EQ_INT(mkfifo(p, 0644), 0);
	CHECK_EQ_INT(lup_driver_get_content(D, "/sp/fifo", &b, &err), LUP_EIO);
	CHECK(strstr(err.message, "not a file"));
	CHECK_EQ_INT(lup_driver_reader(D, "/sp/fifo", 0, &r, &err), LUP_EIO);
	CHECK_EQ_INT(lup_driver_writer(D, "/sp/fifo", 1, &w, &err), LUP_EIO);
	CHECK_EQ_INT(lup_driver_writer(D, "/sp/fifo", 0, &w, &err), LUP_EIO);
	CHECK_EQ_INT(lup_driver_lock(D, "/sp/fifo", &tok, &err), LUP_EIO);
	CHECK(r == NULL && w == NULL && tok == NULL);

	/* Files where directories belong: clear errors. */
	CHECK_EQ_INT(lup_driver_put_content(D, "/sp/x/y", "1", 1, &err),
		     LUP_EIO);
	CHECK(strstr(err.message, "not a directory: /sp/x"));
	CHECK_EQ_INT(lup_driver_writer(D, "/sp/x/y/z", 0, &w, &err), LUP_EIO);
	CHECK(strstr(err.message, "not a directory: /sp/x"));
	CHECK_EQ_INT(lup_driver_move(D, "/sp/fifo", "/sp/x/fifo", &err),
		     LUP_EIO);
	CHECK_EQ_INT(lup_driver_get_content(D, "/sp/x/y", &b, &err),
		     LUP_EPATH_NOT_FOUND);
	CHECK_EQ_INT(lup_driver_list(D, "/sp/x", &l, &err), LUP_EIO);
	CHECK_EQ_INT(l.count, 0);
	CHECK_EQ_INT(lup_driver_delete(D, "/sp", &err), 0);
	lup_buf_free(&b);
}

TEST(fs_symlinked_root)
{
	lup_driver *d2 = NULL;
	lup_error err;
	lup_buf b = { 0 };
	char link[600], p[600];

	/* The root itself may be a symlink: resolved once, at open. */
	snprintf(link, sizeof(link), "%s-link", ROOT);
	unlink(link);
	CHECK_EQ_INT(symlink(ROOT, link), 0);
	CHECK_EQ_INT(lup_driver_filesystem(&d2, link, NULL, &err), 0);
	if (d2) {
		CHECK_EQ_INT(lup_driver_put_content(d2, "/via/link", "ok", 2,
						    &err), 0);
		CHECK_EQ_INT(lup_driver_get_content(d2, "/via/link", &b, &err),
			     0);
		CHECK(b.len == 2 && memcmp(b.data, "ok", 2) == 0);
		snprintf(p, sizeof(p), "%s/via/link", ROOT);
		CHECK(host_has(p, "ok"));
		/* Moving the link afterwards does not move the store. */
		CHECK_EQ_INT(unlink(link), 0);
		CHECK_EQ_INT(symlink(OUT, link), 0);
		CHECK_EQ_INT(lup_driver_put_content(d2, "/via/two", "2", 1,
						    &err), 0);
		snprintf(p, sizeof(p), "%s/via/two", ROOT);
		CHECK(host_has(p, "2"));
		CHECK_EQ_INT(lup_driver_delete(d2, "/via", &err), 0);
		lup_driver_release(d2);
	}
	unlink(link);
	lup_buf_free(&b);
}

/* The race a check-then-open design loses: a directory on the path is
 * swapped for a symlink to OUT (renameat2 RENAME_EXCHANGE, atomic) while
 * the driver works through it.  Nothing may ever land in OUT. */
typedef struct {
	atomic_int stop;
	char a[600], b[600];
	long swaps;
} swapper;

static void *swap_run(void *arg)
{
	swapper *sw = arg;

	while (!atomic_load(&sw->stop)) {
		if (renameat2(AT_FDCWD, sw->a, AT_FDCWD, sw->b,
			      RENAME_EXCHANGE) == 0)
			sw->swaps++;
		sched_yield(); /* let the driver run (valgrind serialises) */
	}
	return NULL;
}

TEST(fs_swap_race)
{
	static swapper sw;
	pthread_t th;
	lup_error err;
	lup_buf b = { 0 };
	int i, hits = 0;

	make_out();
	CHECK_EQ_INT(puts_("/race/s/seed", "x"), 0);
	snprintf(sw.a, sizeof(sw.a), "%s/race/s", ROOT);
	snprintf(sw.b, sizeof(sw.b), "%s/race/t", ROOT);
	CHECK_EQ_INT(symlink(OUT, sw.b), 0);
	atomic_init(&sw.stop, 0);
	sw.swaps = 0;
	if (pthread_create(&th, NULL, swap_run, &sw) != 0) {
		CHECK(0);
		return;
	}
	for (i = 0; i < 1500; i++) {
		lup_writer *w = NULL;

		lup_driver_put_content(D, "/race/s/victim", "pwned", 5, &err);
		lup_driver_put_content(D, "/race/s/sub/new", "new", 3, &err);
		b.len = 0;
		if (lup_driver_get_content(D, "/race/s/victim", &b, &err) == 0 &&
		    b.len == 6 && memcmp(b.data, "secret", 6) == 0)
			hits++;
		if (lup_driver_writer(D, "/race/s/w", 1, &w, &err) == 0) {
			w->write(w, "w", 1, &err);
			w->close(w, &err);
		}
		lup_driver_delete(D, "/race/s/victim", &err);
		lup_driver_delete(D, "/race/s/sub", &err);
		/* Swap here too, so both states are met whatever the
		 * scheduler does; the thread adds the mid-call swaps. */
		(void)renameat2(AT_FDCWD, sw.a, AT_FDCWD, sw.b,
				RENAME_EXCHANGE);
	}
	atomic_store(&sw.stop, 1);
	pthread_join(th, NULL);
	printf("# %ld swaps during 1500 rounds\n", sw.swaps);
	CHECK_EQ_INT(hits, 0);
	CHECK(out_intact());
	CHECK_EQ_INT(lup_driver_delete(D, "/race", &err), 0);
	lup_buf_free(&b);
}

static int tmp_count, tmp_removed;
static char tmp_last[600];

static void tmp_cb(void *arg, const char *path, int64_t mtime_ns,
		   int64_t size, int removed)
{
	(void)arg;
	(void)mtime_ns;
	(void)size;
	tmp_count++;
	tmp_removed += removed;
	snprintf(tmp_last, sizeof(tmp_last), "%s", path);
}

static void make_old(const char *path)
{
	struct timespec ts[2] = { { 1577836800, 0 }, { 1577836800, 0 } };

	CHECK_EQ_INT(utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW), 0);
}

TEST(fs_stale_temporaries)
{
	lup_error err;
	lup_driver *mem = NULL;
	char old1[600], old2[600], fresh[600], odd[600], outside[600];
	int64_t hour_ago = ((int64_t)time(NULL) - 3600) * 1000000000;

	make_out();
	CHECK_EQ_INT(puts_("/tt/a/b/file", "f"), 0);
	snprintf(old1, sizeof(old1), "%s/tt/a/b/.lup~0123456789abcdef", ROOT);
	snprintf(old2, sizeof(old2), "%s/tt/.lup~00000000000000ff", ROOT);
	snprintf(fresh, sizeof(fresh), "%s/tt/a/.lup~fedcba9876543210", ROOT);
	snprintf(odd, sizeof(odd), "%s/tt/.lup~not-hex-at-all!", ROOT);
	snprintf(outside, sizeof(outside), "%s/.lup~1111111111111111", OUT);
	host_write(old1, "o1");
	host_write(old2, "o2");
	host_write(fresh, "fr");
	host_write(odd, "od");
	host_write(outside, "out");
	make_old(old1);
	make_old(old2);
	make_old(odd);
	make_old(outside);
	link_in_root(OUT, "tt/a/ln"); /* never walked through */

	tmp_count = tmp_removed = 0;
	CHECK_EQ_INT(lup_fs_temporaries(D, "/tt", hour_ago, 0, tmp_cb, NULL,
					&err), 0);
	CHECK_EQ_INT(tmp_count, 2);
	CHECK_EQ_INT(tmp_removed, 0);
	CHECK(host_exists(old1) && host_exists(old2));
	tmp_count = 0;
	CHECK_EQ_INT(lup_fs_temporaries(D, "/tt/a", hour_ago, 1, tmp_cb, NULL,
					&err), 0);
	CHECK_EQ_INT(tmp_count, 1);
	CHECK_EQ_INT(tmp_removed, 1);
	CHECK_EQ_STR(tmp_last, "/tt/a/b/.lup~0123456789abcdef");
	CHECK(!host_exists(old1) && host_exists(old2) && host_exists(fresh));
	tmp_count = tmp_removed = 0;
	CHECK_EQ_INT(lup_fs_temporaries(D, "/", hour_ago, 1, tmp_cb, NULL,
					&err), 0);
	CHECK_EQ_INT(tmp_count, 1);
	CHECK_EQ_INT(tmp_removed, 1);
	CHECK(!host_exists(old2) && host_exists(fresh) && host_exists(odd));
	CHECK(host_has(outside, "out"));
	CHECK_EQ_INT(lup_fs_temporaries(D, "/none", hour_ago, 1, NULL, NULL,
					&err), LUP_EPATH_NOT_FOUND);
	CHECK_EQ_INT(lup_fs_temporaries(D, "/tt/a/ln", hour_ago, 1, NULL, NULL,
					&err), LUP_EINVALID_PATH);
	CHECK_EQ_INT(lup_fs_temporaries(D, "/../x", hour_ago, 1, NULL, NULL,
					&err), LUP_EINVALID_PATH);
	CHECK(host_has(outside, "out"));
	CHECK_EQ_INT(lup_driver_memory(&mem, &err), 0);
	CHECK_EQ_INT(lup_fs_temporaries(mem, "/", hour_ago, 1, NULL, NULL,
					&err), LUP_EUNSUPPORTED);
	lup_driver_release(mem);
	CHECK_EQ_INT(lup_driver_delete(D, "/tt", &err), 0);
	unlink(outside);
}

static void run_table(void)
{
	RUN_ON(root_exists);
	RUN_ON(valid_paths);
	RUN_ON(invalid_paths);
	RUN_ON(write_read);
	RUN_ON(read_nonexistent);
	RUN_ON(write_read_streams);
	RUN_ON(reader_offsets);
	RUN_ON(reader_snapshot);
	RUN_ON(writer_append);
	RUN_ON(writer_states);
	RUN_ON(put_conflicts);
	RUN_ON(list);
	RUN_ON(move);
	RUN_ON(delete);
	RUN_ON(stat_call);
	RUN_ON(locks);
	RUN_ON(threads);
}

int main(void)
{
	lup_error err;
	char tmpl[] = "/tmp/lup-test-driver-XXXXXX";

	RUN(wrapper_mechanics);
	RUN(versions);
	RUN(refs_outlive_release);

	if (lup_driver_memory(&D, &err) != 0) {
		printf("Bail out! memory driver: %s\n", err.message);
		return 1;
	}
	DN = D->name;
	run_table();
	lup_driver_release(D);

	if (!mkdtemp(tmpl)) {
		printf("Bail out! mkdtemp: %s\n", strerror(errno));
		return 1;
	}
	snprintf(ROOT, sizeof(ROOT), "%s/store", tmpl);
	snprintf(OUT, sizeof(OUT), "%s/outside", tmpl);
	/* A FIFO or a walk through a symlink loop must never hang us. */
	alarm(600);
	for (int walk = 0; walk < 2; walk++) {
		lup_fs_options opts = LUP_FS_OPTIONS_INIT;

		opts.resolve = walk ? LUP_FS_RESOLVE_WALK : LUP_FS_RESOLVE_AUTO;
		if (lup_driver_filesystem(&D, ROOT, &opts, &err) != 0) {
			printf("Bail out! filesystem driver: %s\n",
			       err.message);
			rm_rf(tmpl);
			return 1;
		}
		DN = D->name;
		IS_FS = 1;
		printf("# filesystem driver, %s resolver\n",
		       lup_fs_resolver(D) == LUP_FS_RESOLVE_WALK ? "walk"
								 : "openat2");
		if (walk)
			CHECK_EQ_INT(lup_fs_resolver(D), LUP_FS_RESOLVE_WALK);
		else
			CHECK_EQ_INT(lup_fs_resolver(NULL), -1);
		run_table();
		RUN_ON(fs_layout);
		RUN_ON(fs_two_handles);
		RUN_ON(fs_symlink_dir);
		RUN_ON(fs_symlink_leaf);
		RUN_ON(fs_special_files);
		RUN_ON(fs_symlinked_root);
		RUN_ON(fs_swap_race);
		RUN_ON(fs_stale_temporaries);
		lup_driver_release(D);
	}
	rm_rf(tmpl);
	return test_done();
}
