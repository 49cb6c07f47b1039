/*
 * test_layout.c - the parsers and path builders of src/store/layout.c: the
 * repository-name grammar, upload ids, digests, RFC 3339 startedat times,
 * and the registry v2 paths (reference/distribution-2.8.md 1.1, 1.2).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/layout.h"
#include "test.h"

static const char *const H64 =
	"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

/* ---- repository names ------------------------------------------------- */

TEST(repo_valid_names)
{
	static const char *const ok[] = {
		"a", "0", "a/b/c", "my.org/team-x/app__y", "a-----b", "a_b", "a.b",
		"library/ubuntu", "foo/bar", "a1/b2-c3.d4_e5", "a-b-c/d__e/f.g",
		"x/y/z/w/v/u",
	};

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		if (!lup_repo_valid(ok[i]))
			printf("# rejected valid name \"%s\"\n", ok[i]);
		CHECK(lup_repo_valid(ok[i]));
	}
}

TEST(repo_invalid_names)
{
	static const char *const bad[] = {
		"", "../x", "..", ".", "Foo", "fOo", "a//b", "/a", "a/", "-a", "a-",
		"a..b", "a._b", "a_.b", "a___b", "a__", "_a", "a_", ".a", "a.",
		"a b", "a\nb", "a\tb", "a/../b", "a/./b", "_uploads", "a/_layers",
		"a:b", "a@b", "a%2fb", "a\\b", "ä", "a/-b", "a/b-", "a/.b",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (lup_repo_valid(bad[i]))
			printf("# accepted invalid name \"%s\"\n", bad[i]);
		CHECK(!lup_repo_valid(bad[i]));
	}
	CHECK(!lup_repo_valid(NULL));
}

TEST(repo_length_limit)
{
	char name[300];

	memset(name, 'a', sizeof(name));
	name[255] = '\0';
	CHECK(lup_repo_valid(name));
	name[255] = 'a';
	name[256] = '\0';
	CHECK(!lup_repo_valid(name));
	/* 255 with separators: "ab/" * 84 + "abc" */
	for (int i = 0; i < 84; i++)
		memcpy(name + 3 * i, "ab/", 3);
	memcpy(name + 252, "abc", 4);
	CHECK_EQ_INT(strlen(name), 255);
	CHECK(lup_repo_valid(name));
}

/* ---- upload ids ------------------------------------------------------- */

TEST(uuid_forms)
{
	CHECK(lup_uuid_valid("6f1c8a2e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"));
	CHECK(lup_uuid_valid("00000000-0000-0000-0000-000000000000"));
	CHECK(!lup_uuid_valid("6F1C8A2E-3B4D-4E5F-8A9B-0C1D2E3F4A5B"));
	CHECK(!lup_uuid_valid("6f1c8a2e-3b4d-4e5f-8a9b-0c1d2e3f4a5"));
	CHECK(!lup_uuid_valid("6f1c8a2e-3b4d-4e5f-8a9b-0c1d2e3f4a5bb"));
	CHECK(!lup_uuid_valid("6f1c8a2e3b4d-4e5f-8a9b-0c1d2e3f4a5b-"));
	CHECK(!lup_uuid_valid("6f1c8a2e_3b4d_4e5f_8a9b_0c1d2e3f4a5b"));
	CHECK(!lup_uuid_valid("6f1c8a2g-3b4d-4e5f-8a9b-0c1d2e3f4a5b"));
	CHECK(!lup_uuid_valid("{f1c8a2e-3b4d-4e5f-8a9b-0c1d2e3f4a5}"));
	CHECK(!lup_uuid_valid("../../../../../../../../../../../../x"));
	CHECK(!lup_uuid_valid("asdf-asdf-asdf-adsf"));
	CHECK(!lup_uuid_valid(""));
	CHECK(!lup_uuid_valid(NULL));
}

/* ---- digests ---------------------------------------------------------- */

TEST(digest_parse_valid)
{
	lup_digest d;
	lup_error err;
	char s[8 + 128 + 1];

	lup_error_clear(&err);
	snprintf(s, sizeof(s), "sha256:%s", H64);
	CHECK_EQ_INT(lup_digest_parse(s, &d, &err), 0);
	CHECK_EQ_INT(d.alg, LUP_SHA256);
	CHECK_EQ_STR(d.hex, H64);
	CHECK_EQ_STR(d.str, s);

	snprintf(s, sizeof(s), "sha384:%s%s", H64, "0123456789abcdef0123456789abcdef");
	CHECK_EQ_INT(lup_digest_parse(s, &d, &err), 0);
	CHECK_EQ_INT(d.alg, LUP_SHA384);
	CHECK_EQ_INT(strlen(d.hex), 96);
	CHECK_EQ_STR(d.str, s);

	snprintf(s, sizeof(s), "sha512:%s%s", H64, H64);
	CHECK_EQ_INT(lup_digest_parse(s, &d, &err), 0);
	CHECK_EQ_INT(d.alg, LUP_SHA512);
	CHECK_EQ_INT(strlen(d.hex), 128);
	CHECK_EQ_STR(d.str, s);
}

TEST(digest_parse_invalid)
{
	static const char *const bad[] = {
		"", "sha256", "sha256:", ":", ":abc", "md5:d41d8cd98f00b204e9800998ecf8427e",
		"sha1:da39a3ee5e6b4b0d3255bfef95601890afd80709",
		"sha256:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
		"SHA256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
		"sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a",
		"sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad0",
		"sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n",
		"sha256: ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a",
		"sha256:ga7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
		"sha256::a7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
		"sha512:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
		"sha256+b64:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
		"sha256/../..:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f2001",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		lup_digest d;
		lup_error err;

		lup_error_clear(&err);
		if (lup_digest_parse(bad[i], &d, &err) != LUP_EDIGEST_INVALID)
			printf("# accepted invalid digest \"%s\"\n", bad[i]);
		else
			CHECK_EQ_INT(err.code, LUP_EDIGEST_INVALID);
		CHECK(err.message[0] != '\0');
	}
	{
		lup_digest d;
		CHECK_EQ_INT(lup_digest_parse(NULL, &d, NULL), LUP_EDIGEST_INVALID);
	}
}

TEST(digest_from_hash)
{
	lup_hash h;
	lup_digest d;
	char want[80];

	lup_hash_init(&h, LUP_SHA256);
	lup_hash_update(&h, "abc", 3);
	lup_digest_from_hash(&h, &d);
	snprintf(want, sizeof(want), "sha256:%s", H64);
	CHECK_EQ_STR(d.str, want);
	CHECK_EQ_STR(d.hex, H64);
	CHECK_EQ_INT(d.alg, LUP_SHA256);
}

/* ---- times ------------------------------------------------------------ */

static int parse(const char *s, int64_t *out)
{
	return lup_time_parse(s, strlen(s), out);
}

TEST(time_parse_valid)
{
	int64_t t = -1;

	CHECK_EQ_INT(parse("2020-01-01T00:00:00Z", &t), 0);
	CHECK_EQ_INT(t, 1577836800);
	CHECK_EQ_INT(parse("2026-11-29T14:13:34Z", &t), 0);
	CHECK_EQ_INT(t, 1795961614);
	CHECK_EQ_INT(parse("1970-01-01T00:00:00Z", &t), 0);
	CHECK_EQ_INT(t, 0);
	CHECK_EQ_INT(parse("2020-01-01T00:00:00.123456789Z", &t), 0);
	CHECK_EQ_INT(t, 1577836800);
	CHECK_EQ_INT(parse("2020-01-01T00:00:00.5Z", &t), 0);
	CHECK_EQ_INT(t, 1577836800);
	CHECK_EQ_INT(parse("2020-01-01T00:00:00.123456789+02:00", &t), 0);
	CHECK_EQ_INT(t, 1577836800 - 7200);
	CHECK_EQ_INT(parse("2020-01-01T00:00:00-05:30", &t), 0);
	CHECK_EQ_INT(t, 1577836800 + 5 * 3600 + 1800);
	CHECK_EQ_INT(parse("2020-01-01T00:00:00+00:00", &t), 0);
	CHECK_EQ_INT(t, 1577836800);
	CHECK_EQ_INT(parse("2020-02-29T12:00:00Z", &t), 0); /* leap day */
	CHECK_EQ_INT(t, 1582977600);
	CHECK_EQ_INT(parse("1999-12-31T23:59:59Z", &t), 0);
	CHECK_EQ_INT(t, 946684799);
}

TEST(time_parse_invalid)
{
	static const char *const bad[] = {
		"", "2020", "2020-01-01", "2020-01-01T00:00:00", "2020-01-01T00:00Z",
		"2020-01-01T00:00:00Z\n", "2020-01-01T00:00:00Z ", " 2020-01-01T00:00:00Z",
		"2020-01-01 00:00:00Z", "2020/01/01T00:00:00Z", "2020-1-01T00:00:00Z",
		"2020-13-01T00:00:00Z", "2020-00-01T00:00:00Z", "2020-01-00T00:00:00Z",
		"2020-01-32T00:00:00Z", "2020-01-01T24:00:00Z", "2020-01-01T00:60:00Z",
		"2020-01-01T00:00:00.Z", "2020-01-01T00:00:00+0200", "2020-01-01T00:00:00+02",
		"2020-01-01T00:00:00+2:00", "2020-01-01T00:00:00UTC", "yesterday-at-noon!!!",
		"2020-01-01T00:00:00ZZ", "2020-01-01T00:00:00+02:00Z", "202a-01-01T00:00:00Z",
		"2020-01-01T00:00:00+24:00",
	};
	int64_t t;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (parse(bad[i], &t) == 0)
			printf("# accepted invalid time \"%s\"\n", bad[i]);
		CHECK(parse(bad[i], &t) != 0);
	}
	/* a NUL inside the given length is a trailing byte */
	CHECK(lup_time_parse("2020-01-01T00:00:00Z\0", 21, &t) != 0);
	/* shorter than a time */
	CHECK(lup_time_parse("2020-01-01T00:00:00Z", 19, &t) != 0);
}

/* Days that do not exist and second 60 (Go's time.Parse: "day out of
 * range", "second out of range"); accepting them makes the time differ
 * from the text (2020-02-30 reads as March 1st). */
TEST(time_parse_out_of_range)
{
	static const char *const bad[] = {
		"2021-02-29T00:00:00Z", "2020-02-30T00:00:00Z", "2020-04-31T00:00:00Z",
		"2100-02-29T00:00:00Z", "2020-06-31T00:00:00Z", "2020-01-01T00:00:60Z",
		"2016-12-31T23:59:60Z",
	};
	int64_t t;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (parse(bad[i], &t) == 0)
			printf("# accepted out-of-range time \"%s\" as %lld\n", bad[i],
			       (long long)t);
		CHECK(parse(bad[i], &t) != 0);
	}
}

TEST(time_format)
{
	char out[21];
	int64_t t = -1;

	lup_time_format(0, out);
	CHECK_EQ_STR(out, "1970-01-01T00:00:00Z");
	lup_time_format(1577836800, out);
	CHECK_EQ_STR(out, "2020-01-01T00:00:00Z");
	lup_time_format(1795961614, out);
	CHECK_EQ_STR(out, "2026-11-29T14:13:34Z");
	CHECK_EQ_INT(strlen(out), 20);
	for (int64_t s = 946684799; s < 4102444800; s += 86400 * 397 + 3671) {
		lup_time_format(s, out);
		CHECK_EQ_INT(lup_time_parse(out, 20, &t), 0);
		CHECK_EQ_INT(t, s);
	}
}

/* ---- paths ------------------------------------------------------------ */

TEST(paths)
{
	char buf[LUP_PATH_BUF];
	lup_digest d;
	char s[200];

	CHECK_EQ_INT(lup_path_repo_dir(buf, "foo/bar"), 0);
	CHECK_EQ_STR(buf, "/docker/registry/v2/repositories/foo/bar");
	CHECK_EQ_INT(lup_path_upload_dir(buf, "foo/bar", "asdf-asdf-asdf-adsf"), 0);
	CHECK_EQ_STR(buf, "/docker/registry/v2/repositories/foo/bar/_uploads/asdf-asdf-asdf-adsf");
	CHECK_EQ_INT(lup_path_upload_file(buf, "foo/bar", "asdf-asdf-asdf-adsf", "startedat"), 0);
	CHECK_EQ_STR(buf, "/docker/registry/v2/repositories/foo/bar/_uploads/asdf-asdf-asdf-adsf/startedat");
	CHECK_EQ_INT(lup_path_upload_file(buf, "foo/bar", "asdf-asdf-asdf-adsf", "data"), 0);
	CHECK_EQ_STR(buf, "/docker/registry/v2/repositories/foo/bar/_uploads/asdf-asdf-asdf-adsf/data");
	CHECK_EQ_INT(lup_path_hashstate_dir(buf, "foo/bar", "u"), 0);
	CHECK_EQ_STR(buf, "/docker/registry/v2/repositories/foo/bar/_uploads/u/hashstates/sha256");
	CHECK_EQ_INT(lup_path_hashstate(buf, "foo/bar", "u", 0), 0);
	CHECK_EQ_STR(buf, "/docker/registry/v2/repositories/foo/bar/_uploads/u/hashstates/sha256/0");
	CHECK_EQ_INT(lup_path_hashstate(buf, "foo/bar", "u", 4194311), 0);
	CHECK_EQ_STR(buf, "/docker/registry/v2/repositories/foo/bar/_uploads/u/hashstates/sha256/4194311");
	CHECK_EQ_INT(lup_path_hashstate(buf, "r", "u", INT64_MAX), 0);
	CHECK_EQ_STR(buf, "/docker/registry/v2/repositories/r/_uploads/u/hashstates/sha256/9223372036854775807");

	snprintf(s, sizeof(s), "sha256:%s", H64);
	CHECK_EQ_INT(lup_digest_parse(s, &d, NULL), 0);
	CHECK_EQ_INT(lup_path_blob_data(buf, &d), 0);
	CHECK_EQ_STR(buf, "/docker/registry/v2/blobs/sha256/ba/ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad/data");
	CHECK_EQ_INT(lup_path_layer_link(buf, "foo/bar", &d), 0);
	CHECK_EQ_STR(buf, "/docker/registry/v2/repositories/foo/bar/_layers/sha256/ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad/link");

	snprintf(s, sizeof(s), "sha512:%s%s", H64, H64);
	CHECK_EQ_INT(lup_digest_parse(s, &d, NULL), 0);
	CHECK_EQ_INT(lup_path_layer_link(buf, "a", &d), 0);
	snprintf(s, sizeof(s), "/docker/registry/v2/repositories/a/_layers/sha512/%s%s/link", H64, H64);
	CHECK_EQ_STR(buf, s);
}

TEST(paths_too_long)
{
	char buf[LUP_PATH_BUF], repo[256], leaf[1100];

	memset(repo, 'a', 255);
	repo[255] = '\0';
	/* the longest valid name still fits every upload path */
	CHECK_EQ_INT(lup_path_hashstate(buf, repo, "6f1c8a2e-3b4d-4e5f-8a9b-0c1d2e3f4a5b",
					INT64_MAX), 0);
	CHECK(strlen(buf) < LUP_PATH_BUF);
	memset(leaf, 'x', sizeof(leaf) - 1);
	leaf[sizeof(leaf) - 1] = '\0';
	CHECK_EQ_INT(lup_path_upload_file(buf, repo, "u", leaf), LUP_EINVALID_PATH);
	CHECK_EQ_INT(lup_path_repo_dir(buf, leaf), LUP_EINVALID_PATH);
}

int main(void)
{
	RUN(repo_valid_names);
	RUN(repo_invalid_names);
	RUN(repo_length_limit);
	RUN(uuid_forms);
	RUN(digest_parse_valid);
	RUN(digest_parse_invalid);
	RUN(digest_from_hash);
	RUN(time_parse_valid);
	RUN(time_parse_invalid);
	RUN(time_parse_out_of_range);
	RUN(time_format);
	RUN(paths);
	RUN(paths_too_long);
	return test_done();
}
