/*
 * layerup/hash.h - SHA-256/384/512 whose running state can be saved and
 * restored in Go's encoding.BinaryMarshaler format, which is what the
 * registry stores under _uploads/<id>/hashstates/<alg>/<offset>.
 *
 *   sha256: 108 bytes  "sha\x03" | h[8] u32 BE | 64-byte block | len u64 BE
 *   sha384: 204 bytes  "sha\x04" | h[8] u64 BE | 128-byte block | len u64 BE
 *   sha512: 204 bytes  "sha\x07" | h[8] u64 BE | 128-byte block | len u64 BE
 *
 * The block holds the len % blocksize pending input bytes, then zeros; len
 * counts bytes.  The compression function is OpenSSL's (SHA-NI/AVX2).
 * A lup_hash is a plain value: copy it with '=', no cleanup needed.
 */
#ifndef LAYERUP_HASH_H
#define LAYERUP_HASH_H

#include <stddef.h>
#include <stdint.h>

#include "layerup/common.h"
#include "layerup/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum lup_hash_alg {
	LUP_SHA256 = 0,
	LUP_SHA384 = 1,
	LUP_SHA512 = 2
} lup_hash_alg;

#define LUP_HASH_MAX_DIGEST 64  /* bytes of the largest digest (sha512) */
#define LUP_HASH_MAX_STATE 204  /* bytes of the largest marshaled state */

/* Opaque storage big enough for any algorithm's context; treat as opaque. */
typedef struct lup_hash {
	lup_hash_alg alg;
	union {
		unsigned char bytes[256];
		uint64_t align_;
	} ctx;
} lup_hash;

/* Start a fresh hash. LUP_EUNSUPPORTED for an unknown algorithm. */
LUP_API int lup_hash_init(lup_hash *h, lup_hash_alg alg);

/* Feed n bytes. */
LUP_API void lup_hash_update(lup_hash *h, const void *data, size_t n);

/* Write the digest of everything fed so far into out (lup_hash_size bytes)
 * without disturbing h: hashing can continue afterwards. */
LUP_API void lup_hash_peek(const lup_hash *h, unsigned char *out);

/* Same, as lowercase hex plus NUL into out (2*size+1 bytes). */
LUP_API void lup_hash_peek_hex(const lup_hash *h, char *out);

/* Total bytes fed so far. */
LUP_API uint64_t lup_hash_length(const lup_hash *h);

/* Copy the pending (not yet compressed) input bytes, len % blocksize of
 * them, into out (at least 128 bytes) and return their count.  Used to check
 * a restored state against the data it claims to describe. */
LUP_API size_t lup_hash_pending(const lup_hash *h, unsigned char *out);

/* Digest size in bytes (32, 48, 64) and marshaled state size (108, 204). */
LUP_API size_t lup_hash_size(lup_hash_alg alg);
LUP_API size_t lup_hash_state_size(lup_hash_alg alg);

/* Algorithm name as in digests: "sha256", "sha384", "sha512". */
LUP_API const char *lup_hash_alg_name(lup_hash_alg alg);

/* Parse an algorithm name; 0 and *out set, or LUP_EUNSUPPORTED. */
LUP_API int lup_hash_alg_parse(const char *name, size_t len,
			       lup_hash_alg *out);

/* Marshal the running state (Go MarshalBinary) into out, which holds cap
 * bytes; returns the number of bytes written or LUP_EIO if cap is small. */
LUP_API int lup_hash_export(const lup_hash *h, unsigned char *out, size_t cap);

/* Restore a state produced by lup_hash_export or by Go.  The algorithm is
 * taken from the magic.  Rejects wrong magic, wrong length, a non-zero
 * padding after the pending bytes (0 on success, LUP_EBLOB_UPLOAD_INVALID
 * with a message otherwise; h is unchanged on failure). */
LUP_API int lup_hash_import(lup_hash *h, const unsigned char *in, size_t len,
			    lup_error *err);

#ifdef __cplusplus
}
#endif
#endif
