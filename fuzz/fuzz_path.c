/*
 * fuzz_path.c - libFuzzer target for lup_path_valid.
 *
 * The input (cut at its first NUL, as a C string would be) is checked
 * against an independent statement of the grammar: split on '/', the first
 * piece must be empty, every other piece non-empty, made of
 * [A-Za-z0-9._-] and neither "." nor "..".  A valid path must also survive
 * being extended by a valid component and must stop being valid with a
 * trailing '/'.  Built and run by tools/fuzz.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "layerup/sys/driver.h"

#define REQUIRE(cond)                  \
	do {                           \
		if (!(cond))           \
			abort();       \
	} while (0)

static int reference_valid(const char *s)
{
	const char *piece, *end;

	if (s[0] != '/')
		return 0;
	for (piece = s + 1;; piece = end + 1) {
		size_t n;

		end = strchr(piece, '/');
		n = end ? (size_t)(end - piece) : strlen(piece);
		if (n == 0)
			return 0;
		if ((n == 1 && piece[0] == '.') ||
		    (n == 2 && piece[0] == '.' && piece[1] == '.'))
			return 0;
		for (size_t i = 0; i < n; i++)
			if (!strchr("abcdefghijklmnopqrstuvwxyz"
				    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-",
				    piece[i]))
				return 0;
		if (!end)
			return 1;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 8);
	size_t n;
	int v;

	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	n = strlen(s);
	v = lup_path_valid(s);
	REQUIRE(v == 0 || v == 1);
	REQUIRE(v == reference_valid(s));
	if (v) {
		memcpy(s + n, "/x", 3);
		REQUIRE(lup_path_valid(s));
		memcpy(s + n, "/", 2);
		REQUIRE(!lup_path_valid(s));
		memcpy(s + n, "/..", 4);
		REQUIRE(!lup_path_valid(s));
	}
	free(s);
	return 0;
}
