/*
 * s3_lock.c - the upload lock of the S3 driver as lease objects.
 *
 * A lease is created with `If-None-Match: *` (one winner); a lease older
 * than lock_ttl_s is taken over with `If-Match: <etag>` (again one winner),
 * so a writer that died does not hold its upload forever; live writers
 * renew their leases as they send parts (s3_renew_locks).
 *
 * A lease body is "<token> <expiry>" or "<token> <expiry> <name>": the
 * name is the lazy-data flag (s3_internal.h): the child <name> of the
 * locked directory was opened by a writer that has created nothing yet, so
 * its absence means "empty", not "gone".  A new holder of an expired lease
 * carries the flag on; a holder that lets go while its lazy child still
 * does not exist leaves the lease behind, expired, flag and all.
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

#define LAZY_MAX 24

typedef struct s3_lock_tok {
	struct s3_lock_tok *next; /* the driver's held leases */
	char *key;
	char *path;      /* the locked driver path */
	char token[33];
	char etag[128];
	int64_t renewed; /* unix seconds */
	char lazy[LAZY_MAX]; /* the lazy-data flag, "" when none */
	int lazy_used;   /* a writer or stat of this driver relies on it */
	int fresh;       /* created (If-None-Match) for a new lazy writer */
	s3_keyrec rec;   /* while fresh: what this driver put below path */
} s3_lock_tok;

/* A writer that has created nothing yet (s3_lazy_open), and the keys this
 * driver put below its directory since (they pass to the lease's token
 * when the directory is locked). */
typedef struct s3_lazy_reg {
	struct s3_lazy_reg *next;
	char *path;
	s3_keyrec rec;
} s3_lazy_reg;

#define KEYREC_MAX 64

static void rec_push(s3_keyrec *r, const char *key)
{
	for (size_t i = 0; i < r->keys.count; i++)
		if (strcmp(r->keys.items[i], key) == 0)
			return;
	/* Beyond a handful (or out of memory) the removal lists instead. */
	if (r->keys.count >= KEYREC_MAX || lup_strlist_push(&r->keys, key))
		r->overflow = 1;
}

static int under(const char *dir, const char *path)
{
	size_t n = strlen(dir);

	return strncmp(dir, path, n) == 0 && path[n] == '/';
}

static void lease_body(const s3_driver *d, const s3_lock_tok *t, int expired,
		       char *out, size_t n)
{
	snprintf(out, n, "%s %lld%s%s", t->token,
		 expired ? 0LL
			 : (long long)time(NULL) + (long long)d->lock_ttl_s,
		 t->lazy[0] ? " " : "", t->lazy);
}

static int read_lease(s3_driver *d, const char *lk, long long *exp,
		      char etag[128], char *tok, char *lazy, lup_error *err);

/* Split "/a/b/name" at its last slash: 0 and the parent's length, the name
 * at path + *plen + 1; -1 when path has no usable name. */
static int split(const char *path, size_t *plen)
{
	const char *sl = strrchr(path, '/');

	if (!sl || !sl[1] || strlen(sl + 1) >= LAZY_MAX)
		return -1;
	*plen = (size_t)(sl - path);
	return 0;
}

static int is_parent(const char *dir, const char *path, size_t plen)
{
	return strlen(dir) == plen && strncmp(dir, path, plen) == 0;
}

static void unregister(s3_driver *d, const char *path)
{
	for (s3_lazy_reg **pp = &d->lazy; *pp; pp = &(*pp)->next)
		if (strcmp((*pp)->path, path) == 0) {
			s3_lazy_reg *g = *pp;
			*pp = g->next;
			lup_strlist_free(&g->rec.keys);
			free(g->path);
			free(g);
			return;
		}
}

void s3_lazy_open(s3_driver *d, const char *path)
{
	s3_lazy_reg *g = calloc(1, sizeof *g);

	/* Out of memory: no flag; only a crash before the first close then
	 * loses the (empty) upload. */
	if (!g || !(g->path = strdup(path))) {
		free(g);
		return;
	}
	pthread_mutex_lock(&d->lock_mu);
	g->next = d->lazy;
	d->lazy = g;
	/* Its directory already locked here (a caller that locks before it
	 * opens; the store opens first): the lease gets the flag now. */
	size_t pl;
	s3_lock_tok *t = NULL;
	if (split(path, &pl) == 0)
		for (t = d->locks; t; t = t->next)
			if (is_parent(t->path, path, pl) && !t->lazy[0])
				break;
	if (t) {
		snprintf(t->lazy, sizeof t->lazy, "%s", path + pl + 1);
		t->lazy_used = 1;
		t->renewed = 0; /* rewritten, flag and all, just below */
	}
	pthread_mutex_unlock(&d->lock_mu);
	if (t)
		s3_renew_locks(d);
}

void s3_lazy_free_all(s3_driver *d)
{
	while (d->lazy)
		unregister(d, d->lazy->path);
}

void s3_lazy_put(s3_driver *d, const char *path, const char *key)
{
	size_t pl;

	pthread_mutex_lock(&d->lock_mu);
	for (s3_lazy_reg *g = d->lazy; g; g = g->next)
		if (split(g->path, &pl) == 0 && strncmp(g->path, path, pl) == 0 &&
		    path[pl] == '/')
			rec_push(&g->rec, key);
	for (s3_lock_tok *t = d->locks; t; t = t->next)
		if (t->fresh && under(t->path, path))
			rec_push(&t->rec, key);
	pthread_mutex_unlock(&d->lock_mu);
}

void s3_lazy_close(s3_driver *d, const char *path)
{
	pthread_mutex_lock(&d->lock_mu);
	unregister(d, path);
	pthread_mutex_unlock(&d->lock_mu);
}

void s3_lazy_created(s3_driver *d, const char *path)
{
	size_t pl;

	pthread_mutex_lock(&d->lock_mu);
	unregister(d, path);
	for (s3_lock_tok *t = d->locks; t; t = t->next) {
		if (!under(t->path, path))
			continue;
		/* A multipart upload below: the directory is not clean. */
		t->fresh = 0;
		if (split(path, &pl) == 0 && is_parent(t->path, path, pl) &&
		    strcmp(t->lazy, path + pl + 1) == 0) {
			/* Renewals drop the flag from here on. */
			t->lazy[0] = '\0';
			t->lazy_used = 0;
		}
	}
	pthread_mutex_unlock(&d->lock_mu);
}

int s3_lazy_absent(s3_driver *d, const char *path)
{
	size_t pl;
	int yes = 0;

	if (split(path, &pl) != 0)
		return 0;
	pthread_mutex_lock(&d->lock_mu);
	for (s3_lock_tok *t = d->locks; t && !yes; t = t->next)
		if (is_parent(t->path, path, pl) &&
		    strcmp(t->lazy, path + pl + 1) == 0)
			yes = t->lazy_used = 1;
	pthread_mutex_unlock(&d->lock_mu);
	return yes;
}

int s3_lazy_clean(s3_driver *d, const char *dir, lup_strlist *keys)
{
	int64_t now = (int64_t)time(NULL);
	int yes = 0;

	if (atomic_load(&d->no_cond_put))
		return 0; /* leases are best effort there */
	pthread_mutex_lock(&d->lock_mu);
	for (s3_lock_tok *t = d->locks; t && !yes; t = t->next) {
		/* Written or renewed with a condition less than a third of
		 * its life ago: nobody took it over since it was created
		 * (see s3_unlock). */
		yes = strcmp(t->path, dir) == 0 && t->fresh && t->lazy[0] &&
		      now - t->renewed < d->lock_ttl_s / 3;
		if (yes && !t->rec.overflow && t->rec.keys.count > 0)
			for (size_t i = 0; i < t->rec.keys.count; i++)
				if (lup_strlist_push(keys, t->rec.keys.items[i])) {
					lup_strlist_free(keys);
					break;
				}
	}
	pthread_mutex_unlock(&d->lock_mu);
	return yes;
}

void s3_lazy_removed(s3_driver *d, const char *dir)
{
	pthread_mutex_lock(&d->lock_mu);
	for (s3_lock_tok *t = d->locks; t; t = t->next)
		if (strcmp(t->path, dir) == 0) {
			t->lazy[0] = '\0';
			t->lazy_used = t->fresh = 0;
			lup_strlist_free(&t->rec.keys);
		}
	pthread_mutex_unlock(&d->lock_mu);
}

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
		lease_body(d, t, 0, body, sizeof body);
		r = (s3_req){.method = "PUT", .key = t->key, .body = body,
			     .blen = strlen(body), .sign_payload = 1};
		if (atomic_load(&d->no_cond_put)) {
			char etag[128], tok[33];
			long long exp;
			if (read_lease(d, t->key, &exp, etag, tok, NULL,
				       NULL) != 0 ||
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
 * etag and, if tok is not NULL, its holder's token (33 bytes), if lazy is
 * not NULL its lazy-data flag (LAZY_MAX bytes, "" when none). */
static int read_lease(s3_driver *d, const char *lk, long long *exp,
		      char etag[128], char *tok, char *lazy, lup_error *err)
{
	lup_buf cur = {0};
	s3_req r = {.method = "GET", .key = lk, .sink = &cur};
	s3_resp resp = {0};
	int rc;

	*exp = 0;
	etag[0] = '\0';
	if (tok)
		tok[0] = '\0';
	if (lazy)
		lazy[0] = '\0';
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
		char *end = NULL;
		*exp = sp ? strtoll(sp + 1, &end, 10) : 0;
		if (lazy && end && *end == ' ' && strlen(end + 1) < LAZY_MAX &&
		    end[1] && !strchr(end + 1, '/') && !strchr(end + 1, ' '))
			snprintf(lazy, LAZY_MAX, "%s", end + 1);
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
			      char *body, size_t bn, const char *path,
			      s3_resp *resp, lup_error *err)
{
	char etag[128], tok[33], lazy[LAZY_MAX];
	long long exp;
	s3_req r;
	int rc;

	if ((rc = read_lease(d, lk, &exp, etag, tok, lazy, err)) != 0)
		return rc;
	if (exp > (long long)time(NULL))
		return lup_error_set(err, LUP_ELOCKED, path,
				     "held by another writer");
	if (!t->lazy[0] && lazy[0]) {
		/* The flag of the holder before: carried on. */
		snprintf(t->lazy, sizeof t->lazy, "%s", lazy);
		lease_body(d, t, 0, body, bn);
	}
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
	if ((rc = read_lease(d, lk, &exp, etag, tok, NULL, err)) != 0)
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
	if (!(t->path = strdup(path))) {
		rc = oom(err);
		goto fail;
	}
	/* A writer of this driver below path that has created nothing yet
	 * (opened before the lock, as the store opens a new upload's data):
	 * the lease says so. */
	pthread_mutex_lock(&d->lock_mu);
	for (s3_lazy_reg *g = d->lazy; g && !t->lazy[0]; g = g->next) {
		size_t pl;
		if (split(g->path, &pl) == 0 && is_parent(path, g->path, pl)) {
			snprintf(t->lazy, sizeof t->lazy, "%s",
				 g->path + pl + 1);
			t->lazy_used = 1;
		}
	}
	pthread_mutex_unlock(&d->lock_mu);
	lease_body(d, t, 0, body, sizeof body);

	if (!atomic_load(&d->no_cond_put)) {
		r = (s3_req){.method = "PUT", .key = lk, .body = body,
			     .blen = strlen(body), .sign_payload = 1};
		r.hdr[r.nh++] = (s3_kv){"if-none-match", "*"};
		if ((rc = s3_do(d, &r, &resp, err)) != 0)
			goto fail;
		/* No lease was there: nobody held this path before us. */
		t->fresh = resp.status == 200 && t->lazy[0];
		if (resp.status == 501) {
			/* No conditional writes here (Swift 2.30's s3api). */
			atomic_store(&d->no_cond_put, 1);
			s3_resp_free(&resp);
			memset(&resp, 0, sizeof resp);
		}
	}
	if (atomic_load(&d->no_cond_put)) {
		rc = lock_unconditional(d, lk, t, body, sizeof body, path,
					&resp, err);
		if (rc)
			goto fail;
	} else if (resp.status == 412) {
		/* Held: take it over only when its lease has run out. */
		char etag[128], lazy[LAZY_MAX];
		long long exp = 0;
		s3_resp_free(&resp);
		memset(&resp, 0, sizeof resp);
		if ((rc = read_lease(d, lk, &exp, etag, NULL, lazy, err)) != 0)
			goto fail;
		if (exp > (long long)time(NULL)) {
			rc = lup_error_set(err, LUP_ELOCKED, path,
					   "held by another writer");
			goto fail;
		}
		if (!t->lazy[0] && lazy[0]) {
			/* The flag of the holder before: carried on. */
			snprintf(t->lazy, sizeof t->lazy, "%s", lazy);
			lease_body(d, t, 0, body, sizeof body);
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
	if (t->fresh) {
		/* The keys put below path so far (by a put that raced this
		 * lock), in the same step as the token becomes visible to
		 * s3_lazy_put: none is missed. */
		t->fresh = 0;
		for (s3_lazy_reg *g = d->lazy; g; g = g->next) {
			size_t pl;
			if (split(g->path, &pl) != 0 ||
			    !is_parent(path, g->path, pl))
				continue;
			t->fresh = 1;
			t->rec.overflow |= g->rec.overflow;
			for (size_t i = 0; i < g->rec.keys.count; i++)
				rec_push(&t->rec, g->rec.keys.items[i]);
		}
	}
	t->next = d->locks;
	d->locks = t;
	pthread_mutex_unlock(&d->lock_mu);
	*token = t;
	return 0;
fail:
	s3_resp_free(&resp);
	if (t)
		free(t->path);
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

	if (t->lazy[0] && t->lazy_used) {
		/* The lazy child was never created and its directory was not
		 * removed (a close that failed to create it): leave the lease,
		 * expired, with its flag, so that the next holder reads the
		 * child as empty.  Only while it is still ours. */
		char body[96];
		s3_req p;
		s3_resp pr = {0};
		int ours = 1;
		lease_body(d, t, 1, body, sizeof body);
		p = (s3_req){.method = "PUT", .key = t->key, .body = body,
			     .blen = strlen(body), .sign_payload = 1};
		if (!atomic_load(&d->no_cond_put))
			p.hdr[p.nh++] = (s3_kv){"if-match", t->etag};
		else
			ours = s3_do(d, &r, &resp, NULL) == 0 &&
			       resp.status == 200 && cur.len >= 32 &&
			       memcmp(cur.data, t->token, 32) == 0;
		if (ours)
			s3_do(d, &p, &pr, NULL);
		s3_resp_free(&pr);
	}
	/* Remove the lease only while it is still ours.  A lease written
	 * with a condition less than a third of its life ago is: another
	 * writer takes one over only once it has run out (short of clocks
	 * that differ by more than two thirds of lock_ttl), so it goes
	 * without being read back first. */
	else if (!atomic_load(&d->no_cond_put) &&
	    (int64_t)time(NULL) - t->renewed < d->lock_ttl_s / 3)
		s3_delete(d, t->key, NULL);
	else if (s3_do(d, &r, &resp, NULL) == 0 && resp.status == 200 &&
		 cur.len >= 32 && memcmp(cur.data, t->token, 32) == 0)
		s3_delete(d, t->key, NULL);
	s3_resp_free(&resp);
	lup_buf_free(&cur);
	free(t->key);
	free(t->path);
	lup_strlist_free(&t->rec.keys);
	free(t);
}
