/*
 * layout.h - names and paths of the registry v2 storage layout, and the
 * parsers for everything that reaches a path from outside (repository
 * names, upload ids, digests, startedat times).  Nothing here touches a
 * driver.  The whole tree:
 *
 *   /docker/registry/v2/
 *     blobs/<alg>/<hex[0:2]>/<hex>/data                    blob bytes (sha256 only)
 *     repositories/<repo>/
 *       _layers/<alg>/<hex>/link                           "sha256:<hex>", 71 bytes
 *       _uploads/<uuid>/data                               bytes so far
 *       _uploads/<uuid>/startedat                          RFC 3339 UTC, 20 bytes
 *       _uploads/<uuid>/hashstates/sha256/<offset>         Go MarshalBinary state
 *       _manifests/...                                     (not ours; never touched)
 */
#ifndef LUP_LAYOUT_H
#define LUP_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#include "layerup.h"
#include "layerup/sys/driver.h"

#define LUP_V2_ROOT "/docker/registry/v2"
#define LUP_REPOS_ROOT LUP_V2_ROOT "/repositories"
#define LUP_PATH_BUF 1024
#define LUP_REPO_MAX 255

/* A parsed digest "<alg>:<hex>". */
typedef struct lup_digest {
	lup_hash_alg alg;
	char hex[LUP_HASH_MAX_DIGEST * 2 + 1];
	char str[8 + LUP_HASH_MAX_DIGEST * 2 + 1]; /* canonical text form */
} lup_digest;

/* 1 if name follows the distribution grammar (lowercase components
 * [a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)* joined by '/', <= 255 chars). */
int lup_repo_valid(const char *name);

/* 1 for a lowercase 8-4-4-4-12 hex uuid. */
int lup_uuid_valid(const char *s);

/* Parse "sha256:<64 hex>", "sha384:<96>", "sha512:<128>" (lowercase hex).
 * LUP_EDIGEST_INVALID (syntax) or LUP_EUNSUPPORTED-free: unknown algorithms
 * are DIGEST_INVALID too, as the registry answers. */
int lup_digest_parse(const char *s, lup_digest *out, lup_error *err);

/* Fill out from a finished hash. */
void lup_digest_from_hash(const lup_hash *h, lup_digest *out);

/* Format unix seconds as "2026-11-29T14:13:34Z" (out: 21 bytes). */
void lup_time_format(int64_t secs, char out[21]);

/* Parse RFC 3339 (fractional seconds and numeric offsets accepted, as Go's
 * time.Parse does; trailing bytes rejected).  0 or LUP_EBLOB_UPLOAD_INVALID. */
int lup_time_parse(const char *s, size_t n, int64_t *secs_out);

/* Path builders: write into buf (LUP_PATH_BUF bytes); inputs must already
 * be validated.  Return 0, or LUP_EINVALID_PATH if the path would not fit. */
int lup_path_upload_dir(char *buf, const char *repo, const char *uuid);
int lup_path_upload_file(char *buf, const char *repo, const char *uuid,
			 const char *leaf);
int lup_path_hashstate_dir(char *buf, const char *repo, const char *uuid);
int lup_path_hashstate(char *buf, const char *repo, const char *uuid,
		       int64_t offset);
int lup_path_blob_data(char *buf, const lup_digest *d);
int lup_path_layer_link(char *buf, const char *repo, const lup_digest *d);
int lup_path_repo_dir(char *buf, const char *repo);

#endif
