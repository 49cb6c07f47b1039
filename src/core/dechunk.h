/*
 * dechunk.h - an incremental HTTP/1.1 chunked transfer-coding decoder.
 *
 * A host that reads a chunked request body from a raw socket feeds the
 * bytes as they arrive, in any split; the decoder hands back the payload
 * spans in place (no copy) and consumes the framing:
 *   chunk = 1*HEXDIG [ *WSP ";" ext ] CRLF data CRLF ; last = "0" ... CRLF
 *   then trailer lines until an empty line.
 * A bare LF ends a size or trailer line too (as nginx accepts); the CRLF
 * after data is required.  Sizes have at most 12 hex digits, a size or
 * trailer line at most LUP_DECHUNK_MAX_LINE bytes, trailers at most
 * LUP_DECHUNK_MAX_TRAILERS lines.  Internal (not exported).
 */
#ifndef LUP_DECHUNK_H
#define LUP_DECHUNK_H

#include <stddef.h>
#include <stdint.h>

#define LUP_DECHUNK_MAX_LINE 4096
#define LUP_DECHUNK_MAX_TRAILERS 100

typedef struct lup_dechunk {
	int state;
	int digits;        /* hex digits of the size so far */
	uint64_t left;     /* data bytes left in the current chunk */
	size_t line;       /* bytes of the current size/trailer line */
	int trailers;      /* trailer lines seen */
	const char *error; /* set once framing failed (static string) */
} lup_dechunk;

void lup_dechunk_init(lup_dechunk *d);

/* Consume framing from p[0, n) up to the next payload span or the end of
 * the body.  Returns the bytes consumed (framing plus the span); when a
 * payload span was reached, *data and *len point into p (else *len = 0).
 * Call again with the rest.  Returns 0 with *len = 0 only when n == 0,
 * the body ended (lup_dechunk_done) or framing failed (d->error). */
size_t lup_dechunk_step(lup_dechunk *d, const unsigned char *p, size_t n,
			const unsigned char **data, size_t *len);

/* 1 once the last chunk and its trailers were consumed. */
int lup_dechunk_done(const lup_dechunk *d);

#endif
