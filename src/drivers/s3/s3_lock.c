/*
 * s3_lock.c - the upload lock of the S3 driver as lease objects.
 *
 * A lease is created with `If-None-Match: *` (one winner); a lease older
 * than lock_ttl_s is taken over with `If-Match: <etag>` (again one winner),
 * so a writer that died does not hold its upload forever; live writers
 * renew their leases as they send parts (s3_renew_locks).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "drivers/s3/s3_internal.h"

static int oom(lup_error *err)
{
	return lup_error_set(err, LUP_EIO, NULL, "out of memory");
}

typedef struct s3_lock_tok {
	struct s3_lock_tok *next; /* the driver's held leases */
	char *key;
	char token[33];
	char etag[128];
	int64_t renewed; /* unix seconds */
} s3_lock_tok;

static void lease_body(const s3_driver *d, const s3_lock_tok *t, char *out,
		       size_t n)
{
	snprintf(out, n, "%s %lld", t->token,
		 (long long)time(NULL) + (long long)d->lock_ttl_s);
}

static int read_lease(s3_driver *d, const char *lk, long long *exp,
		      char etag[128], char *tok, lup_error *err);

void s3_renew_locks(s3_driver *d)
{
	int64_t now = (int64_t)time(NULL);

	/* Renew each lease a third into its life, so that a live writer
	 * never loses it (a request is far shorter than lock_ttl/3). */
	pthread_mutex_lock(&d->lock_mu);
	for (s3_lock_tok *t = d->locks; t; t = t->next) {
		char body[96];
		s3_req r;
		s3_resp resp = {0};
		if (now - t->renewed < d->lock_ttl_s / 3)
			continue;
		lease_body(d, t, body, sizeof body);
		r = (s3_req){.method = "PUT", .key = t->key, .body = body,
			     .blen = strlen(body), .sign_payload = 1};
		if (atomic_load(&d->no_cond_put)) {
			char etag[128], tok[33];
			long long exp;
			if (read_lease(d, t->key, &exp, etag, tok, NULL) != 0 ||
			    strcmp(tok, t->token) != 0)
				continue; /* lost: the complete's check decides */
		} else {
			r.hdr[r.nh++] = (s3_kv){"if-match", t->etag};
		}
		if (s3_do(d, &r, &resp, NULL) == 0 && resp.status == 200) {
			snprintf(t->etag, sizeof t->etag, "%s", resp.etag);
			t->renewed = now;
		}
		s3_resp_free(&resp);
	}
	pthread_mutex_unlock(&d->lock_mu);
}

/* Read the lease at lk: its expiry (0 when absent or unreadable), its
 * etag and, if tok is not NULL, its holder's token (33 bytes). */
static int read_lease(s3_driver *d, const char *lk, long long *exp,
		      char etag[128], char *tok, lup_error *err)
{
	lup_buf cur = {0};
	s3_req r = {.method = "GET", .key = lk, .sink = &cur};
	s3_resp resp = {0};
	int rc;

	*exp = 0;
	etag[0] = '\0';
	if (tok)
		tok[0] = '\0';
	if ((rc = s3_do(d, &r, &resp, err)) != 0) {
		lup_buf_free(&cur);
		return rc;
	}
	snprintf(etag, 128, "%s", resp.etag);
	if (resp.status == 200 && cur.len < 90) {
		char tmp[96];
		memcpy(tmp, cur.data, cur.len);
		tmp[cur.len] = '\0';
		const char *sp = strchr(tmp, ' ');
		*exp = sp ? strtoll(sp + 1, NULL, 10) : 0;
		if (tok && sp && sp - tmp == 32) {
			memcpy(tok, tmp, 32);
			tok[32] = '\0';
		}
	} else if (resp.status != 200 && resp.status != 404) {
		rc = s3_fail(&resp, "GET lock", NULL, err);
	}
	lup_buf_free(&cur);
	s3_resp_free(&resp);
	return rc;
}

/* A lease where the server has no conditional writes: check, write, wait a
 * moment and read back; the last writer wins and the others see LOCKED.
 * Best effort (two writers racing within the pause can both hold it); the
 * ETag check of CompleteMultipartUpload still keeps a blob from differing
 * from what its committing writer hashed. */
static int lock_unconditional(s3_driver *d, const char *lk, s3_lock_tok *t,
			      const char *body, const char *path,
			      s3_resp *resp, lup_error *err)
{
	char etag[128], tok[33];
	long long exp;
	s3_req r;
	int rc;

	if ((rc = read_lease(d, lk, &exp, etag, tok, err)) != 0)
		return rc;
	if (exp > (long long)time(NULL))
		return lup_error_set(err, LUP_ELOCKED, path,
				     "held by another writer");
	r = (s3_req){.method = "PUT", .key = lk, .body = body,
		     .blen = strlen(body), .sign_payload = 1};
	if ((rc = s3_do(d, &r, resp, err)) != 0)
		return rc;
	if (resp->status != 200)
		return 0; /* the caller reports it */
	{
		struct timespec ts = {0, 50000000L};
		nanosleep(&ts, NULL);
	}
	if ((rc = read_lease(d, lk, &exp, etag, tok, err)) != 0)
		return rc;
	if (strcmp(tok, t->token) != 0)
		return lup_error_set(err, LUP_ELOCKED, path,
				     "held by another writer");
	snprintf(resp->etag, sizeof resp->etag, "%s", etag);
	return 0;
}

int s3_lock(lup_driver *drv, const char *path, void **token,
		   lup_error *err)
{
	s3_driver *d = (s3_driver *)drv;
	char *k = s3_key(d, path), *lk = NULL, body[96];
	unsigned char rnd[16];
	s3_lock_tok *t = NULL;
	s3_resp resp = {0};
	s3_req r;
	int rc;
	size_t n;

	if (!k)
		return oom(err);
	n = strlen(d->prefix) + strlen(path) + 32;
	lk = malloc(n);
	t = calloc(1, sizeof *t);
	if (!lk || !t || RAND_bytes(rnd, sizeof rnd) != 1) {
		rc = oom(err);
		goto fail;
	}
	snprintf(lk, n, "%s%s_layerup/locks%s", d->prefix,
		 d->prefix[0] ? "/" : "", path);
	for (int i = 0; i < 16; i++)
		snprintf(t->token + 2 * i, 3, "%02x", rnd[i]);
	lease_body(d, t, body, sizeof body);

	if (!atomic_load(&d->no_cond_put)) {
		r = (s3_req){.method = "PUT", .key = lk, .body = body,
			     .blen = strlen(body), .sign_payload = 1};
		r.hdr[r.nh++] = (s3_kv){"if-none-match", "*"};
		if ((rc = s3_do(d, &r, &resp, err)) != 0)
			goto fail;
		if (resp.status == 501) {
			/* No conditional writes here (Swift 2.30's s3api). */
			atomic_store(&d->no_cond_put, 1);
			s3_resp_free(&resp);
			memset(&resp, 0, sizeof resp);
		}
	}
	if (atomic_load(&d->no_cond_put)) {
		rc = lock_unconditional(d, lk, t, body, path, &resp, err);
		if (rc)
			goto fail;
	} else if (resp.status == 412) {
		/* Held: take it over only when its lease has run out. */
		char etag[128];
		long long exp = 0;
		s3_resp_free(&resp);
		memset(&resp, 0, sizeof resp);
		if ((rc = read_lease(d, lk, &exp, etag, NULL, err)) != 0)
			goto fail;
		if (exp > (long long)time(NULL)) {
			rc = lup_error_set(err, LUP_ELOCKED, path,
					   "held by another writer");
			goto fail;
		}
		r = (s3_req){.method = "PUT", .key = lk, .body = body,
			     .blen = strlen(body), .sign_payload = 1};
		r.hdr[r.nh++] = (s3_kv){"if-match", etag};
		if ((rc = s3_do(d, &r, &resp, err)) != 0)
			goto fail;
		if (resp.status == 412) {
			rc = lup_error_set(err, LUP_ELOCKED, path,
					   "held by another writer");
			goto fail;
		}
	}
	if (resp.status != 200) {
		rc = s3_fail(&resp, "PUT lock", path, err);
		goto fail;
	}
	/* The etag (unquoted: RGW compares If-Match without quotes) is what
	 * a renewal must still find. */
	snprintf(t->etag, sizeof t->etag, "%s", resp.etag);
	t->renewed = (int64_t)time(NULL);
	s3_resp_free(&resp);
	t->key = lk;
	free(k);
	pthread_mutex_lock(&d->lock_mu);
	t->next = d->locks;
	d->locks = t;
	pthread_mutex_unlock(&d->lock_mu);
	*token = t;
	return 0;
fail:
	s3_resp_free(&resp);
	free(t);
	free(lk);
	free(k);
	return rc;
}

void s3_unlock(lup_driver *drv, void *token)
{
	s3_driver *d = (s3_driver *)drv;
	s3_lock_tok *t = token, **pp;
	lup_buf cur = {0};
	s3_req r = {.method = "GET", .key = t->key, .sink = &cur};
	s3_resp resp = {0};

	pthread_mutex_lock(&d->lock_mu);
	for (pp = &d->locks; *pp; pp = &(*pp)->next)
		if (*pp == t) {
			*pp = t->next;
			break;
		}
	pthread_mutex_unlock(&d->lock_mu);

	/* Remove the lease only while it is still ours.  A lease written
	 * with a condition less than a third of its life ago is: another
	 * writer takes one over only once it has run out (short of clocks
	 * that differ by more than two thirds of lock_ttl), so it goes
	 * without being read back first. */
	if (!atomic_load(&d->no_cond_put) &&
	    (int64_t)time(NULL) - t->renewed < d->lock_ttl_s / 3)
		s3_delete(d, t->key, NULL);
	else if (s3_do(d, &r, &resp, NULL) == 0 && resp.status == 200 &&
		 cur.len >= 32 && memcmp(cur.data, t->token, 32) == 0)
		s3_delete(d, t->key, NULL);
	s3_resp_free(&resp);
	lup_buf_free(&cur);
	free(t->key);
	free(t);
}
