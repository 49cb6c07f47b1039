/*
 * test_hash.c - resumable hashing (src/core/hash.c): FIPS vectors, Go's
 * MarshalBinary bytes, export/import round trips at every split point, and
 * the hash-state files the real registry wrote (/work/shared/samples).
 *
 * Samples are read from $LUP_SAMPLES, else ../shared/samples relative to
 * the repository root (tests run from there).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/evp.h>

#include "layerup/hash.h"
#include "test.h"

static const lup_hash_alg all_algs[] = { LUP_SHA256, LUP_SHA384, LUP_SHA512 };
#define NALGS (sizeof(all_algs) / sizeof(all_algs[0]))

static const char *const small_digest =
	"ba4a9d6c6a20ee9bcc6bf0add6ed257571cd39c28f2223b0a4d46c196bc96d6f";
static const char *const big_digest =
	"fb1c7a865fb238f34da728a0be3f6cf96a45081ca06c21ad9308bd42081b825f";

/* ---- helpers ---------------------------------------------------------- */

/* Decode hex into out; returns the byte count, or -1 on bad input. */
static int unhex(const char *s, unsigned char *out, size_t cap)
{
	size_t n = strlen(s);

	if (n % 2 || n / 2 > cap)
		return -1;
	for (size_t i = 0; i < n / 2; i++) {
		unsigned int v;

		if (sscanf(s + 2 * i, "%2x", &v) != 1)
			return -1;
		out[i] = (unsigned char)v;
	}
	return (int)(n / 2);
}

static const EVP_MD *evp_md(lup_hash_alg alg)
{
	switch (alg) {
	case LUP_SHA256:
		return EVP_sha256();
	case LUP_SHA384:
		return EVP_sha384();
	case LUP_SHA512:
		return EVP_sha512();
	}
	return NULL;
}

/* Reference digest through EVP, independent of the code under test. */
static void ref_digest(lup_hash_alg alg, const void *p, size_t n,
		       unsigned char *out)
{
	unsigned int len = 0;

	if (!EVP_Digest(p, n, out, &len, evp_md(alg), NULL)) {
		printf("# EVP_Digest failed\n");
		memset(out, 0, LUP_HASH_MAX_DIGEST);
	}
}

/* Deterministic pseudo-random bytes (xorshift64). */
static void fill_random(unsigned char *p, size_t n, uint64_t seed)
{
	uint64_t x = seed ? seed : 1;

	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (unsigned char)(x >> 24);
	}
}

static int hash_equal(const lup_hash *a, const lup_hash *b)
{
	return memcmp(a, b, sizeof(*a)) == 0;
}

/* Read a whole file into a malloc'd buffer; NULL on error. */
static unsigned char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	unsigned char *buf = NULL;
	long sz;

	if (!f) {
		printf("# cannot open %s: %s\n", path, strerror(errno));
		return NULL;
	}
	if (fseek(f, 0, SEEK_END) != 0 || (sz = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) != 0)
		goto out;
	buf = malloc(sz ? (size_t)sz : 1);
	if (!buf)
		goto out;
	if (fread(buf, 1, (size_t)sz, f) != (size_t)sz) {
		free(buf);
		buf = NULL;
		goto out;
	}
	*len = (size_t)sz;
out:
	fclose(f);
	return buf;
}

static const char *samples_dir(void)
{
	const char *d = getenv("LUP_SAMPLES");

	return d && *d ? d : "../shared/samples";
}

static int samples_present(void)
{
	struct stat st;

	return stat(samples_dir(), &st) == 0 && S_ISDIR(st.st_mode);
}

static unsigned char *read_sample(const char *name, size_t *len)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s/%s", samples_dir(), name);
	return read_file(path, len);
}

/* `gen SEED N` from samples/INDEX.md: AES-128-CTR keystream, key = first
 * 16 bytes of SHA-256(SEED), IV = 0. Returns malloc'd N bytes or NULL. */
static unsigned char *gen(const char *seed, size_t n)
{
	unsigned char key[32], iv[16] = { 0 };
	unsigned char *zero = NULL, *out = NULL;
	unsigned int klen = 0;
	EVP_CIPHER_CTX *cx = NULL;
	int l1 = 0, l2 = 0;

	if (!EVP_Digest(seed, strlen(seed), key, &klen, EVP_sha256(), NULL))
		goto fail;
	zero = calloc(1, n);
	out = malloc(n + 16);
	cx = EVP_CIPHER_CTX_new();
	if (!zero || !out || !cx)
		goto fail;
	if (!EVP_EncryptInit_ex(cx, EVP_aes_128_ctr(), NULL, key, iv) ||
	    !EVP_EncryptUpdate(cx, out, &l1, zero, (int)n) ||
	    !EVP_EncryptFinal_ex(cx, out + l1, &l2) || (size_t)(l1 + l2) != n)
		goto fail;
	goto out;
fail:
	free(out);
	out = NULL;
out:
	EVP_CIPHER_CTX_free(cx);
	free(zero);
	return out;
}

/* Print a test as skipped (TAP directive) without running it. */
#define SKIP(name, why)                                                    \
	do {                                                               \
		test_count_++;                                             \
		printf("ok %d - %s # SKIP %s\n", test_count_, #name, why); \
		fflush(stdout);                                            \
	} while (0)

/* ---- FIPS 180 vectors -------------------------------------------------- */

static const char msg448[] =
	"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
static const char msg896[] =
	"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmn"
	"hijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";

struct vector {
	lup_hash_alg alg;
	const char *msg; /* NULL: one million 'a' */
	const char *hex;
};

static const struct vector fips[] = {
	{ LUP_SHA256, "",
	  "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
	{ LUP_SHA256, "abc",
	  "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
	{ LUP_SHA256, msg448,
	  "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
	{ LUP_SHA256, msg896,
	  "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1" },
	{ LUP_SHA256, NULL,
	  "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0" },
	{ LUP_SHA384, "",
	  "38b060a751ac96384cd9327eb1b1e36a21fdb71114be0743"
	  "4c0cc7bf63f6e1da274edebfe76f65fbd51ad2f14898b95b" },
	{ LUP_SHA384, "abc",
	  "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded163"
	  "1a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7" },
	{ LUP_SHA384, msg448,
	  "3391fdddfc8dc7393707a65b1b4709397cf8b1d162af05ab"
	  "fe8f450de5f36bc6b0455a8520bc4e6f5fe95b1fe3c8452b" },
	{ LUP_SHA384, msg896,
	  "09330c33f71147e83d192fc782cd1b4753111b173b3b05d2"
	  "2fa08086e3b0f712fcc7c71a557e2db966c3e9fa91746039" },
	{ LUP_SHA384, NULL,
	  "9d0e1809716474cb086e834e310a4a1ced149e9c00f24852"
	  "7972cec5704c2a5b07b8b3dc38ecc4ebae97ddd87f3d8985" },
	{ LUP_SHA512, "",
	  "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"
	  "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e" },
	{ LUP_SHA512, "abc",
	  "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
	  "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f" },
	{ LUP_SHA512, msg448,
	  "204a8fc6dda82f0a0ced7beb8e08a41657c16ef468b228a8279be331a703c335"
	  "96fd15c13b1b07f9aa1d3bea57789ca031ad85c7a71dd70354ec631238ca3445" },
	{ LUP_SHA512, msg896,
	  "8e959b75dae313da8cf4f72814fc143f8f7779c6eb9f7fa17299aeadb6889018"
	  "501d289e4900f7e4331b99dec4b5433ac7d329eeb6dd26545e96e55b874be909" },
	{ LUP_SHA512, NULL,
	  "e718483d0ce769644e2e42c7bc15b4638e1f98b13b2044285632a803afa973eb"
	  "de0ff244877ea60a4cb0432ce577c31beb009c5c2c49aa2e4eadb217ad8cc09b" },
};

static void check_fips(lup_hash_alg alg)
{
	static unsigned char million[1000000];
	char hex[2 * LUP_HASH_MAX_DIGEST + 1];
	unsigned char md[LUP_HASH_MAX_DIGEST], want[LUP_HASH_MAX_DIGEST];

	memset(million, 'a', sizeof(million));
	for (size_t i = 0; i < sizeof(fips) / sizeof(fips[0]); i++) {
		const struct vector *v = &fips[i];
		const unsigned char *m = v->msg ? (const void *)v->msg
						: million;
		size_t n = v->msg ? strlen(v->msg) : sizeof(million);
		lup_hash h;

		if (v->alg != alg)
			continue;
		CHECK_EQ_INT(unhex(v->hex, want, sizeof(want)),
			     lup_hash_size(alg));

		/* One shot. */
		CHECK_EQ_INT(lup_hash_init(&h, alg), LUP_OK);
		lup_hash_update(&h, m, n);
		lup_hash_peek_hex(&h, hex);
		CHECK_EQ_STR(hex, v->hex);
		lup_hash_peek(&h, md);
		CHECK(memcmp(md, want, lup_hash_size(alg)) == 0);
		CHECK_EQ_INT(lup_hash_length(&h), n);

		/* Odd-sized pieces cross every block boundary differently. */
		CHECK_EQ_INT(lup_hash_init(&h, alg), LUP_OK);
		for (size_t off = 0, step = 1; off < n; step = step * 7 % 997 + 1) {
			size_t k = n - off < step ? n - off : step;

			lup_hash_update(&h, m + off, k);
			off += k;
		}
		lup_hash_peek_hex(&h, hex);
		CHECK_EQ_STR(hex, v->hex);
	}
}

TEST(fips_sha256) { check_fips(LUP_SHA256); }
TEST(fips_sha384) { check_fips(LUP_SHA384); }
TEST(fips_sha512) { check_fips(LUP_SHA512); }

/* ---- names and sizes ---------------------------------------------------- */

TEST(names_and_sizes)
{
	lup_hash_alg a = LUP_SHA512;
	lup_hash h;

	CHECK_EQ_INT(lup_hash_size(LUP_SHA256), 32);
	CHECK_EQ_INT(lup_hash_size(LUP_SHA384), 48);
	CHECK_EQ_INT(lup_hash_size(LUP_SHA512), 64);
	CHECK_EQ_INT(lup_hash_state_size(LUP_SHA256), 108);
	CHECK_EQ_INT(lup_hash_state_size(LUP_SHA384), 204);
	CHECK_EQ_INT(lup_hash_state_size(LUP_SHA512), 204);
	CHECK_EQ_STR(lup_hash_alg_name(LUP_SHA256), "sha256");
	CHECK_EQ_STR(lup_hash_alg_name(LUP_SHA384), "sha384");
	CHECK_EQ_STR(lup_hash_alg_name(LUP_SHA512), "sha512");

	CHECK_EQ_INT(lup_hash_alg_parse("sha256", 6, &a), LUP_OK);
	CHECK_EQ_INT(a, LUP_SHA256);
	CHECK_EQ_INT(lup_hash_alg_parse("sha384", 6, &a), LUP_OK);
	CHECK_EQ_INT(a, LUP_SHA384);
	/* Length-delimited: the name may sit inside a longer digest. */
	CHECK_EQ_INT(lup_hash_alg_parse("sha512:abcd", 6, &a), LUP_OK);
	CHECK_EQ_INT(a, LUP_SHA512);
	a = LUP_SHA384;
	CHECK_EQ_INT(lup_hash_alg_parse("sha25", 5, &a), LUP_EUNSUPPORTED);
	CHECK_EQ_INT(lup_hash_alg_parse("sha2566", 7, &a), LUP_EUNSUPPORTED);
	CHECK_EQ_INT(lup_hash_alg_parse("SHA256", 6, &a), LUP_EUNSUPPORTED);
	CHECK_EQ_INT(lup_hash_alg_parse("sha224", 6, &a), LUP_EUNSUPPORTED);
	CHECK_EQ_INT(lup_hash_alg_parse("", 0, &a), LUP_EUNSUPPORTED);
	CHECK_EQ_INT(a, LUP_SHA384);

	CHECK_EQ_INT(lup_hash_init(&h, (lup_hash_alg)7), LUP_EUNSUPPORTED);
	CHECK_EQ_INT(lup_hash_init(&h, (lup_hash_alg)-1), LUP_EUNSUPPORTED);
}

/* ---- Go MarshalBinary vectors (distribution-2.8.md §1.3) --------------- */

/* Build an expected state: hex head, then zeros up to the length field,
 * then the u64 length. */
static size_t go_state(unsigned char *out, size_t size, const char *head,
		       uint64_t len)
{
	int n;

	memset(out, 0, size);
	n = unhex(head, out, size - 8);
	if (n < 0)
		return 0;
	for (int i = 0; i < 8; i++)
		out[size - 1 - i] = (unsigned char)(len >> (8 * i));
	return size;
}

static void check_state(lup_hash_alg alg, const void *msg, size_t n,
			const char *head)
{
	unsigned char want[LUP_HASH_MAX_STATE], got[LUP_HASH_MAX_STATE];
	unsigned char md1[LUP_HASH_MAX_DIGEST], md2[LUP_HASH_MAX_DIGEST];
	size_t size = lup_hash_state_size(alg);
	lup_error err = { 0 };
	lup_hash h, r;

	CHECK_EQ_INT(go_state(want, size, head, n), size);
	CHECK_EQ_INT(lup_hash_init(&h, alg), LUP_OK);
	lup_hash_update(&h, msg, n);
	memset(got, 0xee, sizeof(got));
	CHECK_EQ_INT(lup_hash_export(&h, got, sizeof(got)), size);
	CHECK(memcmp(got, want, size) == 0);

	/* And Go's bytes import to a state that finishes the same way. */
	CHECK_EQ_INT(lup_hash_import(&r, want, size, &err), LUP_OK);
	CHECK_EQ_INT(r.alg, alg);
	CHECK_EQ_INT(lup_hash_length(&r), n);
	lup_hash_peek(&h, md1);
	lup_hash_peek(&r, md2);
	CHECK(memcmp(md1, md2, lup_hash_size(alg)) == 0);
}

TEST(go_marshal_vectors)
{
	static const char iv256[] =
		"736861036a09e667bb67ae853c6ef372a54ff53a510e527f9b05688c"
		"1f83d9ab5be0cd19";
	char head[512];
	unsigned char a64[64], digits[100];

	check_state(LUP_SHA256, "", 0, iv256);

	snprintf(head, sizeof(head), "%s616263", iv256);
	check_state(LUP_SHA256, "abc", 3, head);

	memset(a64, 'a', sizeof(a64));
	check_state(LUP_SHA256, a64, 64,
		    "73686103df5bb81ce81e0626fb45a8944fd40f31b25e6816d6d499c1"
		    "ab90492900635e66");

	for (int i = 0; i < 100; i++)
		digits[i] = (unsigned char)('0' + i % 10);
	check_state(LUP_SHA256, digits, 100,
		    "73686103f1fe7b0990beace30f0b4ecb81f036bc154ecb060d1b3fda"
		    "528f9103b9275e1c"
		    "343536373839303132333435363738393031323334353637383930"
		    "313233343536373839");

	check_state(LUP_SHA512, "abc", 3,
		    "736861076a09e667f3bcc908bb67ae8584caa73b3c6ef372fe94f82b"
		    "a54ff53a5f1d36f1510e527fade682d19b05688c2b3e6c1f1f83d9ab"
		    "fb41bd6b5be0cd19137e2179616263");

	check_state(LUP_SHA384, "", 0,
		    "73686104cbbb9d5dc1059ed8629a292a367cd5079159015a3070dd17"
		    "152fecd8f70e593967332667ffc00b318eb44a8768581511db0c2e0d"
		    "64f98fa747b5481dbefa4fa4");
}

/* ---- round trips --------------------------------------------------------- */

#define RT_LEN 3333 /* > 3 KiB, not a multiple of either block size */

static void check_roundtrip(lup_hash_alg alg)
{
	static unsigned char buf[RT_LEN];
	unsigned char want[LUP_HASH_MAX_DIGEST], got[LUP_HASH_MAX_DIGEST];
	unsigned char st1[LUP_HASH_MAX_STATE], st2[LUP_HASH_MAX_STATE];
	unsigned char pend[128];
	size_t size = lup_hash_state_size(alg);
	size_t bs = alg == LUP_SHA256 ? 64 : 128;
	int bad = 0;

	fill_random(buf, sizeof(buf), 0x9e3779b97f4a7c15ull + alg);
	ref_digest(alg, buf, sizeof(buf), want);

	for (size_t split = 0; split <= sizeof(buf) && bad < 5; split++) {
		lup_error err = { 0 };
		lup_hash h, r;
		int fail = 0;

		CHECK_EQ_INT(lup_hash_init(&h, alg), LUP_OK);
		lup_hash_update(&h, buf, split);
		fail |= lup_hash_export(&h, st1, sizeof(st1)) != (int)size;
		/* Fresh handle full of junk: import must set everything. */
		memset(&r, 0xa5, sizeof(r));
		fail |= lup_hash_import(&r, st1, size, &err) != LUP_OK;
		fail |= r.alg != alg;
		fail |= lup_hash_length(&r) != split;
		fail |= lup_hash_pending(&r, pend) != split % bs;
		fail |= memcmp(pend, buf + split - split % bs, split % bs) != 0;
		fail |= lup_hash_export(&r, st2, sizeof(st2)) != (int)size;
		fail |= memcmp(st1, st2, size) != 0;
		lup_hash_update(&r, buf + split, sizeof(buf) - split);
		lup_hash_peek(&r, got);
		fail |= memcmp(got, want, lup_hash_size(alg)) != 0;
		if (fail) {
			printf("# %s round trip failed at split %zu (%s)\n",
			       lup_hash_alg_name(alg), split, err.message);
			bad++;
		}
	}
	CHECK_EQ_INT(bad, 0);
}

TEST(roundtrip_every_split_sha256) { check_roundtrip(LUP_SHA256); }
TEST(roundtrip_every_split_sha384) { check_roundtrip(LUP_SHA384); }
TEST(roundtrip_every_split_sha512) { check_roundtrip(LUP_SHA512); }

/* Chained: export/import after every piece of an uneven split, the way an
 * upload made of many PATCHes would go. */
TEST(roundtrip_chained)
{
	static unsigned char buf[10000];
	unsigned char want[LUP_HASH_MAX_DIGEST], got[LUP_HASH_MAX_DIGEST];
	unsigned char st[LUP_HASH_MAX_STATE];

	fill_random(buf, sizeof(buf), 42);
	for (size_t a = 0; a < NALGS; a++) {
		lup_hash_alg alg = all_algs[a];
		lup_error err = { 0 };
		lup_hash h;
		size_t off = 0, step = 1;

		ref_digest(alg, buf, sizeof(buf), want);
		CHECK_EQ_INT(lup_hash_init(&h, alg), LUP_OK);
		while (off < sizeof(buf)) {
			size_t k = sizeof(buf) - off < step ? sizeof(buf) - off
							    : step;
			lup_hash n;

			lup_hash_update(&h, buf + off, k);
			off += k;
			step = step * 5 % 613 + 1;
			CHECK(lup_hash_export(&h, st, sizeof(st)) > 0);
			CHECK_EQ_INT(lup_hash_import(&n, st,
						     lup_hash_state_size(alg),
						     &err), LUP_OK);
			h = n;
		}
		lup_hash_peek(&h, got);
		CHECK(memcmp(got, want, lup_hash_size(alg)) == 0);
	}
}

/* ---- peek, copy, export capacity -------------------------------------- */

TEST(peek_does_not_disturb)
{
	static unsigned char buf[1000];

	fill_random(buf, sizeof(buf), 7);
	for (size_t a = 0; a < NALGS; a++) {
		lup_hash_alg alg = all_algs[a];
		unsigned char want[LUP_HASH_MAX_DIGEST], part[LUP_HASH_MAX_DIGEST];
		unsigned char md[LUP_HASH_MAX_DIGEST];
		unsigned char st1[LUP_HASH_MAX_STATE], st2[LUP_HASH_MAX_STATE];
		lup_hash h, before;

		ref_digest(alg, buf, sizeof(buf), want);
		ref_digest(alg, buf, 300, part);
		CHECK_EQ_INT(lup_hash_init(&h, alg), LUP_OK);
		lup_hash_update(&h, buf, 300);
		before = h;
		CHECK(lup_hash_export(&h, st1, sizeof(st1)) > 0);

		lup_hash_peek(&h, md);
		CHECK(memcmp(md, part, lup_hash_size(alg)) == 0);
		lup_hash_peek(&h, md); /* twice gives the same */
		CHECK(memcmp(md, part, lup_hash_size(alg)) == 0);
		CHECK(hash_equal(&h, &before));
		CHECK(lup_hash_export(&h, st2, sizeof(st2)) > 0);
		CHECK(memcmp(st1, st2, lup_hash_state_size(alg)) == 0);

		lup_hash_update(&h, buf + 300, sizeof(buf) - 300);
		lup_hash_peek(&h, md);
		CHECK(memcmp(md, want, lup_hash_size(alg)) == 0);
		CHECK_EQ_INT(lup_hash_length(&h), sizeof(buf));
	}
}

TEST(copy_is_independent)
{
	unsigned char md[LUP_HASH_MAX_DIGEST], want[LUP_HASH_MAX_DIGEST];
	lup_hash a, b;

	CHECK_EQ_INT(lup_hash_init(&a, LUP_SHA256), LUP_OK);
	lup_hash_update(&a, "ab", 2);
	b = a;
	lup_hash_update(&b, "c", 1);
	ref_digest(LUP_SHA256, "ab", 2, want);
	lup_hash_peek(&a, md);
	CHECK(memcmp(md, want, 32) == 0);
	ref_digest(LUP_SHA256, "abc", 3, want);
	lup_hash_peek(&b, md);
	CHECK(memcmp(md, want, 32) == 0);
}

TEST(export_needs_room)
{
	unsigned char st[LUP_HASH_MAX_STATE];
	lup_hash h;

	CHECK_EQ_INT(lup_hash_init(&h, LUP_SHA256), LUP_OK);
	CHECK_EQ_INT(lup_hash_export(&h, st, 107), LUP_EIO);
	CHECK_EQ_INT(lup_hash_export(&h, st, 108), 108);
	CHECK_EQ_INT(lup_hash_init(&h, LUP_SHA512), LUP_OK);
	CHECK_EQ_INT(lup_hash_export(&h, st, 203), LUP_EIO);
	CHECK_EQ_INT(lup_hash_export(&h, st, 204), 204);
	CHECK_EQ_INT(lup_hash_export(&h, st, 0), LUP_EIO);
}

/* ---- import validation --------------------------------------------------- */

/* Import must fail with code and a message containing want_msg, and leave
 * the target byte-for-byte unchanged. */
static void expect_reject(const unsigned char *in, size_t len,
			  const char *want_msg)
{
	lup_hash h, saved;
	lup_error err;

	CHECK_EQ_INT(lup_hash_init(&h, LUP_SHA512), LUP_OK);
	lup_hash_update(&h, "keep me", 7);
	saved = h;
	lup_error_clear(&err);
	CHECK_EQ_INT(lup_hash_import(&h, in, len, &err),
		     LUP_EBLOB_UPLOAD_INVALID);
	CHECK_EQ_INT(err.code, LUP_EBLOB_UPLOAD_INVALID);
	if (!strstr(err.message, want_msg)) {
		test_failed_checks_++;
		printf("# message \"%s\" lacks \"%s\" (len %zu)\n",
		       err.message, want_msg, len);
	}
	CHECK(hash_equal(&h, &saved));
	/* A NULL error record is allowed. */
	CHECK_EQ_INT(lup_hash_import(&h, in, len, NULL),
		     LUP_EBLOB_UPLOAD_INVALID);
	CHECK(hash_equal(&h, &saved));
}

static void set_len(unsigned char *st, size_t size, uint64_t len)
{
	for (int i = 0; i < 8; i++)
		st[size - 1 - i] = (unsigned char)(len >> (8 * i));
}

TEST(import_rejects)
{
	unsigned char s256[108], s512[204], big[300];
	lup_hash h;

	CHECK_EQ_INT(lup_hash_init(&h, LUP_SHA256), LUP_OK);
	lup_hash_update(&h, "hello", 5);
	CHECK_EQ_INT(lup_hash_export(&h, s256, sizeof(s256)), 108);
	CHECK_EQ_INT(lup_hash_init(&h, LUP_SHA512), LUP_OK);
	lup_hash_update(&h, "hello", 5);
	CHECK_EQ_INT(lup_hash_export(&h, s512, sizeof(s512)), 204);

	/* Wrong magic, including Go algorithms we do not support. */
	{
		static const char *const magics[] = {
			"sha\x02", "sha\x05", "sha\x06", "sha\x01", "md5\x01",
			"SHA\x03", "sha\x00", "\x00\x00\x00\x00"
		};
		unsigned char t[108];

		for (size_t i = 0; i < sizeof(magics) / sizeof(magics[0]); i++) {
			memcpy(t, s256, sizeof(t));
			memcpy(t, magics[i], 4);
			expect_reject(t, sizeof(t),
				      "invalid hash state identifier");
		}
	}
	expect_reject(s256, 0, "invalid hash state identifier");
	expect_reject(NULL, 0, "invalid hash state identifier");
	expect_reject(s256, 3, "invalid hash state identifier");

	/* Right magic, wrong size: truncated, extended, other family's. */
	expect_reject(s256, 4, "invalid hash state size");
	expect_reject(s256, 107, "invalid hash state size");
	expect_reject(s256, 50, "invalid hash state size");
	memset(big, 0, sizeof(big));
	memcpy(big, s256, sizeof(s256));
	expect_reject(big, 109, "invalid hash state size");
	expect_reject(big, 204, "invalid hash state size");
	expect_reject(s512, 203, "invalid hash state size");
	expect_reject(s512, 108, "invalid hash state size");
	memcpy(big, s512, sizeof(s512));
	expect_reject(big, 205, "invalid hash state size");

	/* Non-zero padding right after the 5 pending bytes, and at the end. */
	{
		unsigned char t[204];

		memcpy(t, s256, 108);
		t[36 + 5] = 1;
		expect_reject(t, 108, "hash state padding is not zero");
		memcpy(t, s256, 108);
		t[99] = 0x80;
		expect_reject(t, 108, "hash state padding is not zero");
		memcpy(t, s512, 204);
		t[68 + 5] = 1;
		expect_reject(t, 204, "hash state padding is not zero");
		memcpy(t, s512, 204);
		t[195] = 1;
		expect_reject(t, 204, "hash state padding is not zero");
		/* The len says 0 pending: a stray pending byte is padding. */
		memcpy(t, s256, 108);
		set_len(t, 108, 64);
		expect_reject(t, 108, "hash state padding is not zero");
	}

	/* Lengths whose bit count overflows 64 bits (>= 2^61 bytes). */
	{
		static const uint64_t lens[] = {
			UINT64_C(1) << 61, (UINT64_C(1) << 61) + 5,
			UINT64_C(1) << 63, UINT64_MAX - 127, UINT64_MAX
		};
		unsigned char t[204];

		for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
			memcpy(t, s256, 108);
			memset(t + 36, 0, 64);
			memset(t + 36, 0x41, (size_t)(lens[i] % 64));
			set_len(t, 108, lens[i]);
			expect_reject(t, 108, "out of range");
			memcpy(t, s512, 204);
			memset(t + 68, 0, 128);
			memset(t + 68, 0x41, (size_t)(lens[i] % 128));
			set_len(t, 204, lens[i]);
			expect_reject(t, 204, "out of range");
			memcpy(t, "sha\x04", 4);
			expect_reject(t, 204, "out of range");
		}
	}
}

/* Extreme but legal lengths survive the bit-count conversion. */
TEST(import_extreme_lengths)
{
	unsigned char st[LUP_HASH_MAX_STATE], out[LUP_HASH_MAX_STATE];
	static const uint64_t lens512[] = {
		(UINT64_C(1) << 61) - 1, (UINT64_C(1) << 61) - 128,
		UINT64_C(1) << 32, 127
	};
	lup_error err = { 0 };
	lup_hash h;

	/* sha256: the largest representable length, 63 pending bytes. */
	CHECK_EQ_INT(lup_hash_init(&h, LUP_SHA256), LUP_OK);
	CHECK_EQ_INT(lup_hash_export(&h, st, sizeof(st)), 108);
	memset(st + 36, 0x5a, 63);
	set_len(st, 108, (UINT64_C(1) << 61) - 1);
	CHECK_EQ_INT(lup_hash_import(&h, st, 108, &err), LUP_OK);
	CHECK(lup_hash_length(&h) == (UINT64_C(1) << 61) - 1);
	CHECK_EQ_INT(lup_hash_export(&h, out, sizeof(out)), 108);
	CHECK(memcmp(st, out, 108) == 0);
	/* Crossing 2^32 bits exercises the carry from Nl into Nh. */
	memset(st + 36, 0, 64);
	set_len(st, 108, (UINT64_C(1) << 29) - 1);
	memset(st + 36, 0x11, 63);
	CHECK_EQ_INT(lup_hash_import(&h, st, 108, &err), LUP_OK);
	lup_hash_update(&h, "xy", 2);
	CHECK(lup_hash_length(&h) == (UINT64_C(1) << 29) + 1);

	for (size_t i = 0; i < sizeof(lens512) / sizeof(lens512[0]); i++) {
		size_t nx = (size_t)(lens512[i] % 128);

		CHECK_EQ_INT(lup_hash_init(&h, LUP_SHA512), LUP_OK);
		CHECK_EQ_INT(lup_hash_export(&h, st, sizeof(st)), 204);
		memset(st + 68, 0x33, nx);
		set_len(st, 204, lens512[i]);
		CHECK_EQ_INT(lup_hash_import(&h, st, 204, &err), LUP_OK);
		CHECK(lup_hash_length(&h) == lens512[i]);
		CHECK_EQ_INT(lup_hash_export(&h, out, sizeof(out)), 204);
		CHECK(memcmp(st, out, 204) == 0);
	}
}

/* ---- samples from the real registry ------------------------------------- */

/* Import a sample state and check its length; 0 on success. */
static int load_state(const char *name, uint64_t want_len, lup_hash *h)
{
	lup_error err = { 0 };
	unsigned char *st;
	size_t len = 0;
	int rc;

	st = read_sample(name, &len);
	if (!st) {
		printf("# cannot read sample %s\n", name);
		return -1;
	}
	rc = lup_hash_import(h, st, len, &err);
	free(st);
	if (rc != LUP_OK) {
		printf("# %s: %s\n", name, err.message);
		return -1;
	}
	if (h->alg != LUP_SHA256 || lup_hash_length(h) != want_len) {
		printf("# %s: length %llu, want %llu\n", name,
		       (unsigned long long)lup_hash_length(h),
		       (unsigned long long)want_len);
		return -1;
	}
	return 0;
}

/* Export h and compare with a sample file byte for byte. */
static int same_as_sample(const lup_hash *h, const char *name)
{
	unsigned char st[LUP_HASH_MAX_STATE], *want;
	size_t len = 0;
	int n, ok;

	want = read_sample(name, &len);
	if (!want)
		return 0;
	n = lup_hash_export(h, st, sizeof(st));
	ok = n > 0 && (size_t)n == len && memcmp(st, want, len) == 0;
	if (!ok)
		printf("# export differs from %s\n", name);
	free(want);
	return ok;
}

TEST(samples_small)
{
	unsigned char *c1 = NULL, *c2 = NULL, pend[128];
	size_t n1 = 0, n2 = 0;
	char hex[65];
	lup_hash h;

	c1 = read_sample("small/chunk1.bin", &n1);
	c2 = read_sample("small/chunk2.bin", &n2);
	CHECK(c1 && c2);
	if (!c1 || !c2)
		goto out;
	CHECK_EQ_INT(n1, 1000);
	CHECK_EQ_INT(n2, 500);

	/* Go's initial state, then both chunks. */
	CHECK_EQ_INT(load_state("small/hashstate.0", 0, &h), 0);
	lup_hash_update(&h, c1, n1);
	lup_hash_update(&h, c2, n2);
	lup_hash_peek_hex(&h, hex);
	CHECK_EQ_STR(hex, small_digest);

	/* Resume after chunk 1 (40 pending bytes). */
	CHECK_EQ_INT(load_state("small/hashstate.1000", 1000, &h), 0);
	CHECK_EQ_INT(lup_hash_pending(&h, pend), 40);
	CHECK(memcmp(pend, c1 + 960, 40) == 0);
	lup_hash_update(&h, c2, n2);
	lup_hash_peek_hex(&h, hex);
	CHECK_EQ_STR(hex, small_digest);

	/* The final state finishes to the blob digest as is. */
	CHECK_EQ_INT(load_state("small/hashstate.1500", 1500, &h), 0);
	CHECK_EQ_INT(lup_hash_pending(&h, pend), 28);
	CHECK(memcmp(pend, c2 + 500 - 28, 28) == 0);
	lup_hash_peek_hex(&h, hex);
	CHECK_EQ_STR(hex, small_digest);

	/* Our exports equal what Go wrote. */
	CHECK_EQ_INT(lup_hash_init(&h, LUP_SHA256), LUP_OK);
	CHECK(same_as_sample(&h, "small/hashstate.0"));
	CHECK(same_as_sample(&h, "big/hashstate.0"));
	lup_hash_update(&h, c1, n1);
	CHECK(same_as_sample(&h, "small/hashstate.1000"));
	lup_hash_update(&h, c2, n2);
	CHECK(same_as_sample(&h, "small/hashstate.1500"));
out:
	free(c1);
	free(c2);
}

TEST(samples_bogus)
{
	unsigned char *c1 = NULL, *c2 = NULL, pend[128];
	size_t n1 = 0, n2 = 0;
	char hex[65];
	lup_hash h;

	c1 = read_sample("small/chunk1.bin", &n1);
	c2 = read_sample("small/chunk2.bin", &n2);
	CHECK(c1 && c2);
	if (!c1 || !c2)
		goto out;
	/* It decodes, and describes chunk2 alone (500 bytes, 52 pending). */
	CHECK_EQ_INT(load_state("bogus/hashstate.500", 500, &h), 0);
	CHECK_EQ_INT(lup_hash_pending(&h, pend), 52);
	CHECK(memcmp(pend, c2 + 500 - 52, 52) == 0);
	CHECK_EQ_INT(lup_hash_init(&h, LUP_SHA256), LUP_OK);
	lup_hash_update(&h, c2, n2);
	CHECK(same_as_sample(&h, "bogus/hashstate.500"));
	/* Taken as "chunk1 hashed, continue at 500" it gives a wrong digest. */
	CHECK_EQ_INT(load_state("bogus/hashstate.500", 500, &h), 0);
	lup_hash_update(&h, c1 + 500, n1 - 500);
	lup_hash_update(&h, c2, n2);
	lup_hash_peek_hex(&h, hex);
	CHECK(strcmp(hex, small_digest) != 0);
out:
	free(c1);
	free(c2);
}

TEST(samples_big)
{
	const size_t n1 = 3145728, n2 = 1048583;
	unsigned char *c1 = NULL, *c2 = NULL, pend[128];
	char hex[65];
	lup_hash h;

	c1 = gen("peer-chunk-1", n1);
	c2 = gen("peer-chunk-2", n2);
	CHECK(c1 && c2);
	if (!c1 || !c2)
		goto out;

	CHECK_EQ_INT(load_state("big/hashstate.0", 0, &h), 0);
	CHECK_EQ_INT(lup_hash_pending(&h, pend), 0);

	/* The "stopped" upload: resume after chunk 1 and finish. */
	CHECK_EQ_INT(load_state("big/hashstate.3145728", n1, &h), 0);
	CHECK_EQ_INT(lup_hash_pending(&h, pend), 0);
	lup_hash_update(&h, c2, n2);
	lup_hash_peek_hex(&h, hex);
	CHECK_EQ_STR(hex, big_digest);

	CHECK_EQ_INT(load_state("big/hashstate.4194311", n1 + n2, &h), 0);
	CHECK_EQ_INT(lup_hash_pending(&h, pend), 7);
	CHECK(memcmp(pend, c2 + n2 - 7, 7) == 0);
	lup_hash_peek_hex(&h, hex);
	CHECK_EQ_STR(hex, big_digest);

	CHECK_EQ_INT(lup_hash_init(&h, LUP_SHA256), LUP_OK);
	lup_hash_update(&h, c1, n1);
	CHECK(same_as_sample(&h, "big/hashstate.3145728"));
	lup_hash_update(&h, c2, n2);
	CHECK(same_as_sample(&h, "big/hashstate.4194311"));
	lup_hash_peek_hex(&h, hex);
	CHECK_EQ_STR(hex, big_digest);
out:
	free(c1);
	free(c2);
}

int main(void)
{
	int have_samples = samples_present();

	RUN(fips_sha256);
	RUN(fips_sha384);
	RUN(fips_sha512);
	RUN(names_and_sizes);
	RUN(go_marshal_vectors);
	RUN(roundtrip_every_split_sha256);
	RUN(roundtrip_every_split_sha384);
	RUN(roundtrip_every_split_sha512);
	RUN(roundtrip_chained);
	RUN(peek_does_not_disturb);
	RUN(copy_is_independent);
	RUN(export_needs_room);
	RUN(import_rejects);
	RUN(import_extreme_lengths);
	if (have_samples) {
		RUN(samples_small);
		RUN(samples_bogus);
		RUN(samples_big);
	} else {
		printf("# samples not found at %s (set LUP_SAMPLES)\n",
		       samples_dir());
		SKIP(samples_small, "samples not found");
		SKIP(samples_bogus, "samples not found");
		SKIP(samples_big, "samples not found");
	}
	return test_done();
}
