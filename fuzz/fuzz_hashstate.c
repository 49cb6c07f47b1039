/*
 * fuzz_hashstate.c - libFuzzer target for lup_hash_import/export.
 *
 * The input is taken as a marshaled hash state.  If it imports, exporting
 * must give back the same bytes, the length and pending bytes must match
 * the encoding, the length must be below 2^61, and hashing must go on and
 * survive another round trip.
 * If it does not import, the target must be untouched.  Independently, the
 * input is also hashed as a message, split at an input-chosen point with an
 * export/import in between, and must give the one-shot digest.
 * Built and run by tools/fuzz.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "layerup/hash.h"

#define REQUIRE(cond)                  \
	do {                           \
		if (!(cond))           \
			abort();       \
	} while (0)

static uint64_t be64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

/* Export h, import the bytes into a fresh handle, export again: the two
 * exports must agree and the new handle must equal h in behaviour. */
static void roundtrip(const lup_hash *h, lup_hash *out)
{
	unsigned char a[LUP_HASH_MAX_STATE], b[LUP_HASH_MAX_STATE];
	unsigned char d1[LUP_HASH_MAX_DIGEST], d2[LUP_HASH_MAX_DIGEST];
	lup_error err;
	int n;

	n = lup_hash_export(h, a, sizeof(a));
	REQUIRE(n > 0 && (size_t)n == lup_hash_state_size(h->alg));
	lup_error_clear(&err);
	REQUIRE(lup_hash_import(out, a, (size_t)n, &err) == LUP_OK);
	REQUIRE(lup_hash_export(out, b, sizeof(b)) == n);
	REQUIRE(memcmp(a, b, (size_t)n) == 0);
	REQUIRE(lup_hash_length(out) == lup_hash_length(h));
	lup_hash_peek(h, d1);
	lup_hash_peek(out, d2);
	REQUIRE(memcmp(d1, d2, lup_hash_size(h->alg)) == 0);
}

static void as_state(const uint8_t *data, size_t size)
{
	unsigned char st[LUP_HASH_MAX_STATE], pend[128];
	lup_hash h, saved, again;
	lup_error err;
	uint64_t len;
	size_t bs, np;
	int n;

	REQUIRE(lup_hash_init(&h, LUP_SHA384) == LUP_OK);
	lup_hash_update(&h, "sentinel", 8);
	saved = h;
	lup_error_clear(&err);
	if (lup_hash_import(&h, data, size, &err) != LUP_OK) {
		REQUIRE(err.code == LUP_EBLOB_UPLOAD_INVALID);
		REQUIRE(err.message[0] != '\0');
		REQUIRE(memcmp(&h, &saved, sizeof(h)) == 0);
		return;
	}

	/* Accepted: the bytes must be a canonical encoding. */
	REQUIRE(size == lup_hash_state_size(h.alg));
	n = lup_hash_export(&h, st, sizeof(st));
	REQUIRE(n > 0 && (size_t)n == size);
	REQUIRE(memcmp(st, data, size) == 0);

	len = be64(data + size - 8);
	REQUIRE(len < UINT64_C(1) << 61);
	bs = h.alg == LUP_SHA256 ? 64 : 128;
	REQUIRE(lup_hash_length(&h) == len);
	np = lup_hash_pending(&h, pend);
	REQUIRE(np == len % bs);
	REQUIRE(memcmp(pend, data + size - 8 - bs, np) == 0);

	/* Import caps the length at 2^61 - 1 bytes, so only continue (with
	 * the state itself as input, crossing a block) while it stays below. */
	if (len <= (UINT64_C(1) << 61) - 1 - size) {
		lup_hash_update(&h, data, size);
		REQUIRE(lup_hash_length(&h) == len + size);
		roundtrip(&h, &again);
	}
}

static void as_message(const uint8_t *data, size_t size)
{
	static const lup_hash_alg algs[] = { LUP_SHA256, LUP_SHA384,
					     LUP_SHA512 };
	size_t split = size ? data[0] % (size + 1) : 0;

	if (size > 1)
		split = (size_t)(data[0] | data[1] << 8) % (size + 1);
	for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
		unsigned char d1[LUP_HASH_MAX_DIGEST], d2[LUP_HASH_MAX_DIGEST];
		lup_hash whole, part, resumed;

		REQUIRE(lup_hash_init(&whole, algs[i]) == LUP_OK);
		lup_hash_update(&whole, data, size);
		REQUIRE(lup_hash_init(&part, algs[i]) == LUP_OK);
		lup_hash_update(&part, data, split);
		roundtrip(&part, &resumed);
		lup_hash_update(&resumed, data + split, size - split);
		lup_hash_peek(&whole, d1);
		lup_hash_peek(&resumed, d2);
		REQUIRE(memcmp(d1, d2, lup_hash_size(algs[i])) == 0);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	as_state(data, size);
	as_message(data, size);
	return 0;
}
