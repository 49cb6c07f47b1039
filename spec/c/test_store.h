/*
 * test_store.h - what the store-level C tests share: the driver under test
 * (D, named DN), RUN_ON (a TEST with the driver's name in its TAP line),
 * the digest string of some bytes, and a main that runs a table of tests
 * on the memory driver and then on a filesystem driver in a fresh temp
 * directory.  Include after test.h.
 */
#ifndef LUP_TEST_STORE_H
#define LUP_TEST_STORE_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layerup.h"
#include "layerup/sys/driver.h"

static lup_driver *D;  /* the driver under test */
static const char *DN; /* its name */

#define RUN_ON(name)                                                       \
	do {                                                               \
		test_failed_checks_ = 0;                                   \
		name();                                                    \
		test_report(DN, #name);                                    \
	} while (0)

/* "sha256:<hex>" of p[0, n) into out. */
static inline void test_sha256_str(const void *p, size_t n, char out[80])
{
	lup_hash h;
	char hex[LUP_HASH_MAX_DIGEST * 2 + 1];

	lup_hash_init(&h, LUP_SHA256);
	lup_hash_update(&h, p, n);
	lup_hash_peek_hex(&h, hex);
	memcpy(out, "sha256:", 7);
	memcpy(out + 7, hex, 65); /* 64 hex digits and the NUL */
}

static inline int test_rm_entry(const char *p, const struct stat *sb,
				int flag, struct FTW *f)
{
	(void)sb;
	(void)flag;
	(void)f;
	return remove(p);
}

/* run_all on the memory driver ("inmemory"), then on a filesystem driver
 * rooted at mkdtemp(tmpl) ("filesystem"), removed afterwards.  The exit
 * status of the test program. */
static inline int test_on_drivers(char *tmpl, void (*run_all)(void))
{
	lup_error err;

	if (lup_driver_memory(&D, &err) != 0) {
		printf("# memory driver: %s\n", err.message);
		printf("not ok 1 - memory driver\n1..1\n");
		return 1;
	}
	DN = "inmemory";
	run_all();
	lup_driver_release(D);

	if (!mkdtemp(tmpl)) {
		printf("not ok %d - mkdtemp\n", ++test_count_);
		return test_done() | 1;
	}
	if (lup_driver_filesystem(&D, tmpl, NULL, &err) != 0) {
		printf("# filesystem driver: %s\n", err.message);
		printf("not ok %d - filesystem driver\n", ++test_count_);
		nftw(tmpl, test_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
		return test_done() | 1;
	}
	DN = "filesystem";
	run_all();
	lup_driver_release(D);
	nftw(tmpl, test_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	return test_done();
}

#endif
