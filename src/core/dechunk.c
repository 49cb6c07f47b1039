/* dechunk.c - incremental chunked transfer-coding decoder (dechunk.h). */
#include "core/dechunk.h"

enum {
	S_SIZE,      /* hex digits of a chunk size */
	S_SIZE_WS,   /* blanks after the digits, before ';' or the line end */
	S_EXT,       /* a chunk extension, up to the line end */
	S_SIZE_LF,   /* CR seen after the size line: LF must follow */
	S_DATA,      /* payload */
	S_DATA_CR,   /* CR after the payload */
	S_DATA_LF,   /* LF after the payload */
	S_TRAILER,   /* start of a trailer line (or the final empty line) */
	S_TRAILER_IN,/* inside a trailer line */
	S_TRAILER_LF,/* CR seen in a trailer line: LF must follow */
	S_FINAL_LF,  /* CR of the final empty line: LF must follow */
	S_DONE,
	S_ERROR,
};

void lup_dechunk_init(lup_dechunk *d)
{
	d->state = S_SIZE;
	d->digits = 0;
	d->left = 0;
	d->line = 0;
	d->trailers = 0;
	d->error = NULL;
}

int lup_dechunk_done(const lup_dechunk *d) { return d->state == S_DONE; }

static int hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static size_t fail(lup_dechunk *d, const char *msg)
{
	d->state = S_ERROR;
	d->error = msg;
	return 0;
}

/* The size line ended: data follows, or the trailers after the last one. */
static void size_line_done(lup_dechunk *d)
{
	d->line = 0;
	d->state = d->left ? S_DATA : S_TRAILER;
}

size_t lup_dechunk_step(lup_dechunk *d, const unsigned char *p, size_t n,
			const unsigned char **data, size_t *len)
{
	size_t i = 0;

	*data = NULL;
	*len = 0;
	while (i < n) {
		unsigned char c = p[i];

		switch (d->state) {
		case S_DATA: {
			size_t take = n - i;

			if ((uint64_t)take > d->left)
				take = (size_t)d->left;
			d->left -= take;
			if (d->left == 0)
				d->state = S_DATA_CR;
			*data = p + i;
			*len = take;
			return i + take;
		}
		case S_SIZE: {
			int v = hexval(c);

			if (v >= 0) {
				if (++d->digits > 12)
					return fail(d, "chunked framing error: chunk size too large");
				d->left = d->left * 16 + (uint64_t)v;
				break;
			}
			if (d->digits == 0)
				return fail(d, "chunked framing error: bad chunk size line");
			if (c == ' ' || c == '\t')
				d->state = S_SIZE_WS;
			else if (c == ';')
				d->state = S_EXT;
			else if (c == '\r')
				d->state = S_SIZE_LF;
			else if (c == '\n')
				size_line_done(d);
			else
				return fail(d, "chunked framing error: bad chunk size line");
			break;
		}
		case S_SIZE_WS:
			if (c == ';')
				d->state = S_EXT;
			else if (c != ' ' && c != '\t')
				return fail(d, "chunked framing error: bad chunk size line");
			break;
		case S_EXT:
			if (c == '\r')
				d->state = S_SIZE_LF;
			else if (c == '\n')
				size_line_done(d);
			break;
		case S_SIZE_LF:
			if (c != '\n')
				return fail(d, "chunked framing error: bad chunk size line");
			size_line_done(d);
			break;
		case S_DATA_CR:
			if (c != '\r')
				return fail(d, "chunked framing error: missing CRLF after chunk");
			d->state = S_DATA_LF;
			break;
		case S_DATA_LF:
			if (c != '\n')
				return fail(d, "chunked framing error: missing CRLF after chunk");
			d->state = S_SIZE;
			d->digits = 0;
			d->left = 0;
			d->line = 0;
			break;
		case S_TRAILER:
			if (c == '\r') {
				d->state = S_FINAL_LF;
			} else if (c == '\n') {
				d->state = S_DONE;
				return i + 1;
			} else {
				if (++d->trailers > LUP_DECHUNK_MAX_TRAILERS)
					return fail(d, "chunked framing error: too many trailers");
				d->state = S_TRAILER_IN;
			}
			break;
		case S_TRAILER_IN:
			if (c == '\r')
				d->state = S_TRAILER_LF;
			else if (c == '\n') {
				d->state = S_TRAILER;
				d->line = 0;
			}
			break;
		case S_TRAILER_LF:
			if (c != '\n')
				return fail(d, "chunked framing error: bad trailer line");
			d->state = S_TRAILER;
			d->line = 0;
			break;
		case S_FINAL_LF:
			if (c != '\n')
				return fail(d, "chunked framing error: bad trailer line");
			d->state = S_DONE;
			return i + 1;
		default: /* S_DONE, S_ERROR: consume nothing */
			return 0;
		}
		/* Every framing byte counts against its line. */
		if (d->state != S_DATA && ++d->line > LUP_DECHUNK_MAX_LINE)
			return fail(d, "chunked framing error: line too long");
		i++;
	}
	return i;
}
