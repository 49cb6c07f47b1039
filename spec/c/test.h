/*
 * test.h - a minimal C test harness that prints TAP.
 *
 *   TEST(name) { CHECK(x == 1); CHECK_EQ_INT(a, b); ... }
 *   int main(void) { RUN(name); ...; return test_done(); }
 *
 * Each TEST is one TAP line ("ok N - name" / "not ok N - name"); failed
 * checks print a "# file:line: ..." diagnostic and the test goes on.
 * spec/run counts the lines.
 */
#ifndef LUP_TEST_H
#define LUP_TEST_H

#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static int test_failed_checks_;
static int test_count_;
static int test_failures_;

#define CHECK(cond)                                                        \
	do {                                                               \
		if (!(cond)) {                                             \
			test_failed_checks_++;                             \
			printf("# %s:%d: CHECK(%s) failed\n", __FILE__,    \
			       __LINE__, #cond);                           \
		}                                                          \
	} while (0)

#define CHECK_EQ_INT(a, b)                                                 \
	do {                                                               \
		long long a_ = (long long)(a), b_ = (long long)(b);        \
		if (a_ != b_) {                                            \
			test_failed_checks_++;                             \
			printf("# %s:%d: %s == %s failed: %lld != %lld\n", \
			       __FILE__, __LINE__, #a, #b, a_, b_);        \
		}                                                          \
	} while (0)

#define CHECK_EQ_STR(a, b)                                                 \
	do {                                                               \
		const char *a_ = (a), *b_ = (b);                           \
		if (!a_ || !b_ || strcmp(a_, b_) != 0) {                   \
			test_failed_checks_++;                             \
			printf("# %s:%d: %s == %s failed: \"%s\" != \"%s\"\n", \
			       __FILE__, __LINE__, #a, #b,                 \
			       a_ ? a_ : "(null)", b_ ? b_ : "(null)");    \
		}                                                          \
	} while (0)

#define TEST(name) static void name(void)

/* Print the TAP line of the test that just ran; prefix (may be "") goes
 * before the name, e.g. the driver a table of tests runs on. */
static inline void test_report(const char *prefix, const char *name)
{
	test_count_++;
	if (test_failed_checks_)
		test_failures_++;
	printf("%s %d - %s%s%s\n", test_failed_checks_ ? "not ok" : "ok",
	       test_count_, prefix, *prefix ? " " : "", name);
	fflush(stdout);
}

#define RUN(name)                                                          \
	do {                                                               \
		test_failed_checks_ = 0;                                   \
		name();                                                    \
		test_report("", #name);                                    \
	} while (0)

/* Deterministic pseudo-random bytes (xorshift32) for test data. */
static inline void test_fill(unsigned char *p, size_t n, uint32_t seed)
{
	uint32_t x = seed * 2654435761u + 1;

	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (unsigned char)x;
	}
}

static inline int test_done(void)
{
	printf("1..%d\n", test_count_);
	return test_failures_ ? 1 : 0;
}

#endif
