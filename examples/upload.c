/*
 * upload.c - the C API in a nutshell: start an upload on the filesystem
 * driver, write it in chunks, stop (close), resume it by id, write the
 * rest, and finish it with the digest computed alongside with lup_hash.
 * Reads the blob back through the store to check it.  Prints the digest;
 * exit status 0 on success.
 *
 * After `make install`:
 *   cc -o upload examples/upload.c $(pkg-config --cflags --libs layerup)
 * From a checkout, `make` builds it as build/examples/upload.
 *   ./upload [root]       (default: a fresh directory under /tmp, removed after)
 */
#define _XOPEN_SOURCE 700 /* mkdtemp, nftw */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layerup.h"

#define CHUNK 4096
#define TOTAL (10 * CHUNK + 123)

static int rm_entry(const char *p, const struct stat *sb, int flag,
		    struct FTW *f)
{
	(void)sb;
	(void)flag;
	(void)f;
	return remove(p);
}

int main(int argc, char **argv)
{
	char tmp[] = "/tmp/layerup-example.XXXXXX";
	const char *root = argc > 1 ? argv[1] : NULL;
	lup_driver *driver = NULL;
	lup_store *store = NULL;
	lup_upload *up = NULL;
	lup_blob_info blob;
	lup_error err;
	lup_hash hash, check;
	lup_reader *reader;
	int64_t got;
	unsigned char chunk[CHUNK];
	char uuid[37], hex[LUP_HASH_MAX_DIGEST * 2 + 1], digest[8 + sizeof(hex)];
	size_t sent = 0;
	int rc = 1;

	lup_error_clear(&err);
	if (!root && !(root = mkdtemp(tmp))) {
		perror("mkdtemp");
		return 1;
	}
	if (lup_driver_filesystem(&driver, root, NULL, &err) != 0 ||
	    lup_store_open(&store, driver, NULL, &err) != 0)
		goto out;
	lup_hash_init(&hash, LUP_SHA256);

	/* Session 1: start and send the first half. */
	if (lup_upload_start(&up, store, "examples/hello", &err) != 0)
		goto out;
	snprintf(uuid, sizeof(uuid), "%s", lup_upload_uuid(up));
	while (sent < TOTAL / 2) {
		size_t n = TOTAL - sent < CHUNK ? TOTAL - sent : CHUNK;

		for (size_t i = 0; i < n; i++)
			chunk[i] = (unsigned char)((sent + i) * 31 + 7);
		if (lup_upload_write(up, chunk, n, &err) != 0)
			goto out;
		lup_hash_update(&hash, chunk, n);
		sent += n;
	}
	/* Stop: the data is made durable and the hash state saved beside it. */
	if (lup_upload_close(up, &err) != 0)
		goto out;
	lup_upload_free(up);
	up = NULL;
	printf("stopped %s after %zu bytes\n", uuid, sent);

	/* Session 2: resume by id; the offset is where we stopped. */
	if (lup_upload_resume(&up, store, "examples/hello", uuid, &err) != 0)
		goto out;
	if ((size_t)lup_upload_size(up) != sent) {
		fprintf(stderr, "resumed at %lld, expected %zu\n",
			(long long)lup_upload_size(up), sent);
		goto out;
	}
	while (sent < TOTAL) {
		size_t n = TOTAL - sent < CHUNK ? TOTAL - sent : CHUNK;

		for (size_t i = 0; i < n; i++)
			chunk[i] = (unsigned char)((sent + i) * 31 + 7);
		/* write_at states the offset: a lost or repeated chunk is
		 * refused with LUP_ERANGE_INVALID instead of corrupting data. */
		if (lup_upload_write_at(up, (int64_t)sent, chunk, n, &err) != 0)
			goto out;
		lup_hash_update(&hash, chunk, n);
		sent += n;
	}

	/* Finish with the digest the client computed. */
	lup_hash_peek_hex(&hash, hex);
	snprintf(digest, sizeof(digest), "sha256:%s", hex);
	if (lup_upload_finish(up, digest, (int64_t)sent, &blob, &err) != 0)
		goto out;
	printf("%s %lld bytes (re-read %lld)\n", blob.digest, (long long)blob.size,
	       (long long)lup_upload_bytes_reread(up));
	if (strcmp(blob.digest, digest) != 0 || blob.size != TOTAL)
		goto out;

	/* Read it back: the reader streams the blob linked in the repo. */
	if (lup_store_open_blob(store, "examples/hello", digest, &reader,
				&err) != 0)
		goto out;
	lup_hash_init(&check, LUP_SHA256);
	while ((got = lup_reader_read(reader, chunk, sizeof(chunk), &err)) > 0)
		lup_hash_update(&check, chunk, (size_t)got);
	lup_reader_close(reader);
	if (got < 0)
		goto out;
	lup_hash_peek_hex(&check, hex);
	if (strcmp(digest + 7, hex) != 0) {
		fprintf(stderr, "read back sha256:%s\n", hex);
		goto out;
	}
	rc = 0;
out:
	if (rc && err.code)
		fprintf(stderr, "error: %s: %s\n", lup_error_name(err.code),
			err.message);
	lup_upload_free(up);
	lup_store_release(store);
	lup_driver_release(driver);
	if (root == tmp)
		nftw(tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	return rc;
}
