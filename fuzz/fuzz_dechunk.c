/*
 * fuzz_dechunk.c - libFuzzer target for the chunked-body decoder
 * (src/core/dechunk.c).
 *
 * The input (after its first byte, which picks a split step) is decoded
 * twice: in one piece and in pieces of the chosen step.  Both must give the
 * same payload, the same end (done / error / wanting more) and the same
 * error, the payload is never longer than the input, spans always lie
 * inside the piece given, and a decoder that ended or failed consumes
 * nothing more.  Built and run by tools/fuzz.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/dechunk.h"

#define REQUIRE(cond)                  \
	do {                           \
		if (!(cond))           \
			abort();       \
	} while (0)

/* Decode p[0, n) in pieces of step; payload into out (n bytes room). */
static size_t decode(const unsigned char *p, size_t n, size_t step,
		     unsigned char *out, lup_dechunk *d)
{
	size_t got = 0, off = 0;

	lup_dechunk_init(d);
	while (off < n && !lup_dechunk_done(d) && !d->error) {
		size_t piece = n - off < step ? n - off : step;
		const unsigned char *q = p + off;

		while (piece > 0 && !lup_dechunk_done(d) && !d->error) {
			const unsigned char *data;
			size_t len, used = lup_dechunk_step(d, q, piece, &data, &len);

			REQUIRE(used <= piece);
			if (len > 0) {
				REQUIRE(data >= q && data + len <= q + used);
				REQUIRE(got + len <= n);
				memcpy(out + got, data, len);
				got += len;
			}
			if (used == 0) {
				REQUIRE(lup_dechunk_done(d) || d->error);
				break;
			}
			q += used;
			piece -= used;
			off += used;
		}
		if (lup_dechunk_done(d) || d->error)
			break;
	}
	if (lup_dechunk_done(d) || d->error) {
		const unsigned char *data;
		size_t len;

		REQUIRE(lup_dechunk_step(d, (const unsigned char *)"0\r\n", 3, &data, &len) == 0);
		REQUIRE(len == 0);
	}
	return got;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char *a, *b;
	lup_dechunk da, db;
	size_t na, nb, step;

	if (size < 1)
		return 0;
	step = (size_t)data[0] % 17 + 1;
	data++;
	size--;
	a = malloc(size + 1);
	b = malloc(size + 1);
	if (!a || !b)
		abort();
	na = decode(data, size, size + 1, a, &da);
	nb = decode(data, size, step, b, &db);
	REQUIRE(na == nb);
	REQUIRE(memcmp(a, b, na) == 0);
	REQUIRE(lup_dechunk_done(&da) == lup_dechunk_done(&db));
	REQUIRE((da.error == NULL) == (db.error == NULL));
	if (da.error)
		REQUIRE(strcmp(da.error, db.error) == 0);
	free(a);
	free(b);
	return 0;
}
