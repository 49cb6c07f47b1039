/*
 * fuzz_layout.c - libFuzzer target for the parsers that see outside input
 * before a path is built (src/store/layout.c): lup_repo_valid, lup_uuid_valid,
 * lup_digest_parse and lup_time_parse.
 *
 * Every input goes to all four.  Names and ids are checked against
 * independent statements of their grammars (a POSIX regex for repository
 * names, a position table for uuids); an accepted name must give upload
 * paths without "." or ".." components; an accepted digest must print back
 * as the input; an accepted startedat in the registry's own 20-byte form
 * must format back to the same bytes (so impossible dates such as
 * 2021-02-30 must be refused).  Built and run by tools/fuzz.
 */
#include <regex.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/layout.h"

#define REQUIRE(cond)                  \
	do {                           \
		if (!(cond))           \
			abort();       \
	} while (0)

/* distribution/reference: path-component (joined by '/'), <= 255 chars. */
#define REPO_RE "^[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)*$"

static int reference_repo(const char *s)
{
	static regex_t re; /* compiled once: the fuzzer process only */
	static int ready;

	if (!ready) {
		REQUIRE(regcomp(&re, REPO_RE, REG_EXTENDED | REG_NOSUB) == 0);
		ready = 1;
	}
	return strlen(s) <= 255 && regexec(&re, s, 0, NULL, 0) == 0;
}

static int reference_uuid(const char *s)
{
	if (strlen(s) != 36)
		return 0;
	for (int i = 0; i < 36; i++) {
		int dash = i == 8 || i == 13 || i == 18 || i == 23;

		if (dash != (s[i] == '-'))
			return 0;
		if (!dash && !strchr("0123456789abcdef", s[i]))
			return 0;
	}
	return 1;
}

/* No empty, "." or ".." component in an absolute path. */
static int clean_path(const char *p)
{
	const char *c = p + 1;

	if (p[0] != '/')
		return 0;
	for (;;) {
		const char *end = strchr(c, '/');
		size_t n = end ? (size_t)(end - c) : strlen(c);

		if (n == 0 || (n == 1 && c[0] == '.') ||
		    (n == 2 && c[0] == '.' && c[1] == '.'))
			return 0;
		if (!end)
			return 1;
		c = end + 1;
	}
}

static void check_repo(const char *s)
{
	int ok = lup_repo_valid(s);
	char buf[LUP_PATH_BUF];

	REQUIRE(ok == reference_repo(s));
	if (!ok)
		return;
	REQUIRE(lup_path_hashstate(buf, s, "6f1c8a2e-3b4d-4e5f-8a9b-0c1d2e3f4a5b",
				   INT64_MAX) == 0);
	REQUIRE(clean_path(buf));
	REQUIRE(lup_path_upload_file(buf, s, "6f1c8a2e-3b4d-4e5f-8a9b-0c1d2e3f4a5b",
				     "startedat") == 0);
	REQUIRE(clean_path(buf));
	REQUIRE(strncmp(buf, LUP_REPOS_ROOT "/", strlen(LUP_REPOS_ROOT) + 1) == 0);
}

static void check_uuid(const char *s)
{
	REQUIRE(lup_uuid_valid(s) == reference_uuid(s));
}

static void check_digest(const char *s)
{
	lup_digest d;
	lup_error err;
	char buf[LUP_PATH_BUF];

	lup_error_clear(&err);
	if (lup_digest_parse(s, &d, &err) != 0) {
		REQUIRE(err.code == LUP_EDIGEST_INVALID);
		REQUIRE(err.message[0] != '\0');
		return;
	}
	REQUIRE(strcmp(d.str, s) == 0);
	REQUIRE(strlen(d.hex) == 2 * lup_hash_size(d.alg));
	REQUIRE(lup_path_layer_link(buf, "a", &d) == 0);
	REQUIRE(clean_path(buf));
	REQUIRE(lup_path_blob_data(buf, &d) == 0);
	REQUIRE(clean_path(buf));
}

static void check_time(const uint8_t *data, size_t size)
{
	int64_t t = 0;
	char back[21];

	if (lup_time_parse((const char *)data, size, &t) != 0)
		return;
	/* the registry's own form: whole seconds, literal Z, 20 bytes */
	if (size == 20 && data[19] == 'Z' && data[10] == 'T' && t >= 0) {
		lup_time_format(t, back);
		REQUIRE(memcmp(back, data, 20) == 0);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);

	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0'; /* a C string stops at the first NUL, as callers' do */
	check_repo(s);
	check_uuid(s);
	check_digest(s);
	check_time(data, size);
	free(s);
	return 0;
}
