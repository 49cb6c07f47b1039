/*
 * hash.c - SHA-256/384/512 on OpenSSL's low-level contexts, with the running
 * state converted to and from Go's MarshalBinary layout (see layerup/hash.h).
 *
 * OpenSSL keeps, for SHA256_CTX: h[8] as native u32, the message length in
 * BITS split over Nl (low 32) and Nh (high 32), the pending input bytes in
 * data[] in input order (memcpy'd), and their count in num.  SHA512_CTX is
 * the same with u64 words, a 128-bit bit count (Nl low, Nh high) and u.p[].
 * Go stores the chaining words big-endian and the length in BYTES.
 */

/* The low-level SHA*_CTX API is deprecated in OpenSSL 3, but it is the only
 * one that exposes the running state we must export; EVP hides it. */
#define OPENSSL_SUPPRESS_DEPRECATED

#include <string.h>

#include <openssl/sha.h>

#include "layerup/hash.h"

_Static_assert(sizeof(SHA512_CTX) <= sizeof(((lup_hash *)0)->ctx.bytes),
	       "lup_hash ctx too small for SHA512_CTX");
_Static_assert(sizeof(SHA256_CTX) <= sizeof(((lup_hash *)0)->ctx.bytes),
	       "lup_hash ctx too small for SHA256_CTX");
_Static_assert(_Alignof(SHA512_CTX) <= _Alignof(uint64_t),
	       "lup_hash ctx under-aligned for SHA512_CTX");

#define SHA256_STATE_SIZE 108 /* "sha\x03" | 8 x u32 | 64 | u64 */
#define SHA512_STATE_SIZE 204 /* "sha\x0N" | 8 x u64 | 128 | u64 */

/* Longest message whose state we import: the bit count must fit in 64
 * bits for OpenSSL's sha256 and for Go's sha512 padding to agree with ours. */
#define LUP_HASH_MAX_LEN ((UINT64_C(1) << 61) - 1)

static const char magic256[4] = { 's', 'h', 'a', 0x03 };
static const char magic384[4] = { 's', 'h', 'a', 0x04 };
static const char magic512[4] = { 's', 'h', 'a', 0x07 };

static void put_be32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

static void put_be64(unsigned char *p, uint64_t v)
{
	put_be32(p, (uint32_t)(v >> 32));
	put_be32(p + 4, (uint32_t)v);
}

static uint32_t get_be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static uint64_t get_be64(const unsigned char *p)
{
	return (uint64_t)get_be32(p) << 32 | get_be32(p + 4);
}

/*
 * The hot path (update) hands a pointer into ctx.bytes straight to OpenSSL.
 * Everything that reads fields itself works on a memcpy'd local copy, which
 * keeps us clear of aliasing questions and costs nothing on these cold paths.
 */
static void load256(const lup_hash *h, SHA256_CTX *c)
{
	memcpy(c, h->ctx.bytes, sizeof(*c));
}

static void load512(const lup_hash *h, SHA512_CTX *c)
{
	memcpy(c, h->ctx.bytes, sizeof(*c));
}

int lup_hash_init(lup_hash *h, lup_hash_alg alg)
{
	void *ctx = h->ctx.bytes;

	switch (alg) {
	case LUP_SHA256:
		memset(h, 0, sizeof(*h));
		SHA256_Init(ctx);
		break;
	case LUP_SHA384:
		memset(h, 0, sizeof(*h));
		SHA384_Init(ctx);
		break;
	case LUP_SHA512:
		memset(h, 0, sizeof(*h));
		SHA512_Init(ctx);
		break;
	default:
		return LUP_EUNSUPPORTED;
	}
	h->alg = alg;
	return LUP_OK;
}

void lup_hash_update(lup_hash *h, const void *data, size_t n)
{
	/* sha384 and sha512 share the update; only init and h[] differ. */
	if (h->alg == LUP_SHA256)
		SHA256_Update((SHA256_CTX *)(void *)h->ctx.bytes, data, n);
	else
		SHA512_Update((SHA512_CTX *)(void *)h->ctx.bytes, data, n);
}

void lup_hash_peek(const lup_hash *h, unsigned char *out)
{
	/* Finalise a copy: Final pads and scrubs the context it is given. */
	if (h->alg == LUP_SHA256) {
		SHA256_CTX c;

		load256(h, &c);
		SHA256_Final(out, &c);
	} else {
		SHA512_CTX c;

		load512(h, &c);
		if (h->alg == LUP_SHA384)
			SHA384_Final(out, &c);
		else
			SHA512_Final(out, &c);
	}
}

void lup_hash_peek_hex(const lup_hash *h, char *out)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[LUP_HASH_MAX_DIGEST];
	size_t n = lup_hash_size(h->alg);

	lup_hash_peek(h, md);
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 0xf];
	}
	out[2 * n] = '\0';
}

uint64_t lup_hash_length(const lup_hash *h)
{
	if (h->alg == LUP_SHA256) {
		SHA256_CTX c;

		load256(h, &c);
		return ((uint64_t)c.Nh << 32 | c.Nl) >> 3;
	} else {
		SHA512_CTX c;

		load512(h, &c);
		return (uint64_t)c.Nh << 61 | (uint64_t)c.Nl >> 3;
	}
}

size_t lup_hash_pending(const lup_hash *h, unsigned char *out)
{
	if (h->alg == LUP_SHA256) {
		SHA256_CTX c;

		load256(h, &c);
		memcpy(out, c.data, c.num);
		return c.num;
	} else {
		SHA512_CTX c;

		load512(h, &c);
		memcpy(out, c.u.p, c.num);
		return c.num;
	}
}

size_t lup_hash_size(lup_hash_alg alg)
{
	switch (alg) {
	case LUP_SHA256:
		return 32;
	case LUP_SHA384:
		return 48;
	case LUP_SHA512:
		return 64;
	}
	return 0;
}

size_t lup_hash_state_size(lup_hash_alg alg)
{
	switch (alg) {
	case LUP_SHA256:
		return SHA256_STATE_SIZE;
	case LUP_SHA384:
	case LUP_SHA512:
		return SHA512_STATE_SIZE;
	}
	return 0;
}

const char *lup_hash_alg_name(lup_hash_alg alg)
{
	switch (alg) {
	case LUP_SHA256:
		return "sha256";
	case LUP_SHA384:
		return "sha384";
	case LUP_SHA512:
		return "sha512";
	}
	return "unknown";
}

int lup_hash_alg_parse(const char *name, size_t len, lup_hash_alg *out)
{
	static const lup_hash_alg algs[] = { LUP_SHA256, LUP_SHA384,
					     LUP_SHA512 };

	for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
		const char *s = lup_hash_alg_name(algs[i]);

		if (name && len == strlen(s) && memcmp(name, s, len) == 0) {
			*out = algs[i];
			return LUP_OK;
		}
	}
	return LUP_EUNSUPPORTED;
}

int lup_hash_export(const lup_hash *h, unsigned char *out, size_t cap)
{
	size_t size = lup_hash_state_size(h->alg);

	if (size == 0 || cap < size)
		return LUP_EIO;
	memset(out, 0, size);

	if (h->alg == LUP_SHA256) {
		SHA256_CTX c;

		load256(h, &c);
		memcpy(out, magic256, 4);
		for (int i = 0; i < 8; i++)
			put_be32(out + 4 + 4 * i, c.h[i]);
		/* data[] past num may hold stale bytes; Go writes zeros. */
		memcpy(out + 36, c.data, c.num);
		put_be64(out + 100, ((uint64_t)c.Nh << 32 | c.Nl) >> 3);
	} else {
		SHA512_CTX c;

		load512(h, &c);
		memcpy(out, h->alg == LUP_SHA384 ? magic384 : magic512, 4);
		for (int i = 0; i < 8; i++)
			put_be64(out + 4 + 8 * i, c.h[i]);
		memcpy(out + 68, c.u.p, c.num);
		put_be64(out + 196, (uint64_t)c.Nh << 61 | (uint64_t)c.Nl >> 3);
	}
	return (int)size;
}

/* True if p[0..n) is all zero. */
static int all_zero(const unsigned char *p, size_t n)
{
	unsigned char acc = 0;

	for (size_t i = 0; i < n; i++)
		acc |= p[i];
	return acc == 0;
}

int lup_hash_import(lup_hash *h, const unsigned char *in, size_t len,
		    lup_error *err)
{
	const unsigned char *block;
	lup_hash tmp;
	lup_hash_alg alg;
	uint64_t n;
	size_t bs, nx;

	/* Same order of checks as Go's UnmarshalBinary: magic, then size. */
	if (len < 4)
		goto bad_magic;
	if (memcmp(in, magic256, 4) == 0)
		alg = LUP_SHA256;
	else if (memcmp(in, magic384, 4) == 0)
		alg = LUP_SHA384;
	else if (memcmp(in, magic512, 4) == 0)
		alg = LUP_SHA512;
	else
		goto bad_magic;
	if (len != lup_hash_state_size(alg))
		return lup_error_set(err, LUP_EBLOB_UPLOAD_INVALID, NULL,
				     "invalid hash state size: %zu bytes, "
				     "want %zu for %s", len,
				     lup_hash_state_size(alg),
				     lup_hash_alg_name(alg));

	/* Where the block buffer and the length sit in this layout. */
	bs = alg == LUP_SHA256 ? 64 : 128;
	block = in + len - 8 - bs;
	n = get_be64(in + len - 8);
	nx = (size_t)(n % bs);
	if (!all_zero(block + nx, bs - nx))
		goto bad_padding;
	/* Go would take any u64, but a longer message cannot be continued
	 * the way Go does: OpenSSL's sha256 counts bits in 64, and Go's
	 * sha512 drops the high half of the 128-bit bit count. */
	if (n > LUP_HASH_MAX_LEN)
		return lup_error_set(err, LUP_EBLOB_UPLOAD_INVALID, NULL,
				     "hash state length %llu out of range",
				     (unsigned long long)n);

	if (lup_hash_init(&tmp, alg) != LUP_OK)
		return lup_error_set(err, LUP_EIO, NULL,
				     "cannot initialise %s",
				     lup_hash_alg_name(alg));

	if (alg == LUP_SHA256) {
		SHA256_CTX c;

		load256(&tmp, &c);
		for (int i = 0; i < 8; i++)
			c.h[i] = get_be32(in + 4 + 4 * i);
		memset(c.data, 0, sizeof(c.data));
		memcpy(c.data, block, nx);
		c.num = (unsigned int)nx;
		c.Nl = (SHA_LONG)(n << 3);
		c.Nh = (SHA_LONG)(n >> 29);
		memcpy(tmp.ctx.bytes, &c, sizeof(c));
	} else {
		SHA512_CTX c;

		load512(&tmp, &c);
		for (int i = 0; i < 8; i++)
			c.h[i] = get_be64(in + 4 + 8 * i);
		memset(c.u.p, 0, sizeof(c.u.p));
		memcpy(c.u.p, block, nx);
		c.num = (unsigned int)nx;
		c.Nl = n << 3;
		c.Nh = 0; /* n < 2^61, so the bit count fits in Nl */
		memcpy(tmp.ctx.bytes, &c, sizeof(c));
	}
	*h = tmp;
	return LUP_OK;

bad_magic:
	return lup_error_set(err, LUP_EBLOB_UPLOAD_INVALID, NULL,
			     "invalid hash state identifier");
bad_padding:
	return lup_error_set(err, LUP_EBLOB_UPLOAD_INVALID, NULL,
			     "hash state padding is not zero");
}
