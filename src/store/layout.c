/* layout.c - registry v2 names and paths (see layout.h for the tree). */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "store/layout.h"

static int is_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static int is_lower_hex(char c)
{
	return (c >= 'a' && c <= 'f') || (c >= '0' && c <= '9');
}

/* One path component: alnum runs separated by ".", "_", "__" or "-"+. */
static int component_valid(const char *s, size_t n)
{
	size_t i = 0;

	if (n == 0 || !is_lower_alnum(s[0]) || !is_lower_alnum(s[n - 1]))
		return 0;
	while (i < n) {
		size_t start;

		while (i < n && is_lower_alnum(s[i]))
			i++;
		if (i == n)
			return 1;
		start = i;
		while (i < n && !is_lower_alnum(s[i]))
			i++;
		size_t len = i - start;
		const char *sep = s + start;
		int dashes = 1;
		for (size_t k = 0; k < len; k++)
			if (sep[k] != '-')
				dashes = 0;
		if (!(dashes || (len == 1 && (sep[0] == '.' || sep[0] == '_')) ||
		      (len == 2 && sep[0] == '_' && sep[1] == '_')))
			return 0;
	}
	return 1;
}

int lup_repo_valid(const char *name)
{
	size_t n, start = 0;

	if (!name)
		return 0;
	n = strlen(name);
	if (n == 0 || n > LUP_REPO_MAX)
		return 0;
	for (size_t i = 0; i <= n; i++) {
		if (i == n || name[i] == '/') {
			if (!component_valid(name + start, i - start))
				return 0;
			start = i + 1;
		}
	}
	return 1;
}

int lup_uuid_valid(const char *s)
{
	static const int dash[] = { 8, 13, 18, 23 };

	if (!s || strlen(s) != 36)
		return 0;
	for (int i = 0, d = 0; i < 36; i++) {
		if (d < 4 && i == dash[d]) {
			if (s[i] != '-')
				return 0;
			d++;
		} else if (!is_lower_hex(s[i])) {
			return 0;
		}
	}
	return 1;
}

int lup_digest_parse(const char *s, lup_digest *out, lup_error *err)
{
	const char *colon;
	size_t hexlen;
	lup_hash_alg alg;

	if (!s || !(colon = strchr(s, ':')))
		return lup_error_set(err, LUP_EDIGEST_INVALID, NULL,
				     "invalid digest: missing algorithm");
	if (lup_hash_alg_parse(s, (size_t)(colon - s), &alg) != 0)
		return lup_error_set(err, LUP_EDIGEST_INVALID, NULL,
				     "unsupported digest algorithm: %.*s",
				     (int)(colon - s) > 32 ? 32 : (int)(colon - s), s);
	hexlen = strlen(colon + 1);
	if (hexlen != lup_hash_size(alg) * 2)
		return lup_error_set(err, LUP_EDIGEST_INVALID, NULL,
				     "invalid digest length for %s",
				     lup_hash_alg_name(alg));
	for (size_t i = 0; i < hexlen; i++)
		if (!is_lower_hex(colon[1 + i]))
			return lup_error_set(err, LUP_EDIGEST_INVALID, NULL,
					     "invalid digest: hex must be lowercase [0-9a-f]");
	out->alg = alg;
	memcpy(out->hex, colon + 1, hexlen + 1);
	snprintf(out->str, sizeof(out->str), "%s:%s", lup_hash_alg_name(alg),
		 out->hex);
	return 0;
}

void lup_digest_from_hash(const lup_hash *h, lup_digest *out)
{
	out->alg = h->alg;
	lup_hash_peek_hex(h, out->hex);
	snprintf(out->str, sizeof(out->str), "%s:%s", lup_hash_alg_name(h->alg),
		 out->hex);
}

void lup_time_format(int64_t secs, char out[21])
{
	struct tm tm;
	time_t t = (time_t)secs;

	if (!gmtime_r(&t, &tm) || strftime(out, 21, "%Y-%m-%dT%H:%M:%SZ", &tm) != 20)
		memcpy(out, "1970-01-01T00:00:00Z", 21);
}

static int digits(const char *s, size_t n, int *out)
{
	int v = 0;

	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

static int days_in_month(int y, int m)
{
	static const int days[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

	return m == 2 && leap ? 29 : days[m - 1];
}

int lup_time_parse(const char *s, size_t n, int64_t *secs_out)
{
	int Y, M, D, h, m, sec, oh = 0, om = 0, sign = 0;
	size_t i = 19;
	struct tm tm;

	if (n < 20 || digits(s, 4, &Y) || s[4] != '-' || digits(s + 5, 2, &M) ||
	    s[7] != '-' || digits(s + 8, 2, &D) || (s[10] != 'T' && s[10] != 't') ||
	    digits(s + 11, 2, &h) || s[13] != ':' || digits(s + 14, 2, &m) ||
	    s[16] != ':' || digits(s + 17, 2, &sec))
		goto bad;
	if (s[i] == '.') {
		size_t start = ++i;
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
		if (i == start || i - start > 9)
			goto bad;
	}
	if (i < n && (s[i] == 'Z' || s[i] == 'z')) {
		i++;
	} else if (i + 6 <= n && (s[i] == '+' || s[i] == '-') &&
		   !digits(s + i + 1, 2, &oh) && s[i + 3] == ':' &&
		   !digits(s + i + 4, 2, &om)) {
		sign = s[i] == '-' ? -1 : 1;
		i += 6;
	} else {
		goto bad;
	}
	if (i != n || M < 1 || M > 12 || D < 1 || D > days_in_month(Y, M) ||
	    h > 23 || m > 59 || sec > 59 || oh > 23 || om > 59)
		goto bad; /* Go's time.Parse rejects the same */
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = Y - 1900;
	tm.tm_mon = M - 1;
	tm.tm_mday = D;
	tm.tm_hour = h;
	tm.tm_min = m;
	tm.tm_sec = sec;
	*secs_out = (int64_t)timegm(&tm) - sign * (oh * 3600 + om * 60);
	return 0;
bad:
	return LUP_EBLOB_UPLOAD_INVALID;
}

static int fit(int n)
{
	return (n < 0 || n >= LUP_PATH_BUF) ? LUP_EINVALID_PATH : 0;
}

int lup_path_repo_dir(char *buf, const char *repo)
{
	return fit(snprintf(buf, LUP_PATH_BUF, LUP_REPOS_ROOT "/%s", repo));
}

int lup_path_upload_dir(char *buf, const char *repo, const char *uuid)
{
	return fit(snprintf(buf, LUP_PATH_BUF, LUP_REPOS_ROOT "/%s/_uploads/%s",
			    repo, uuid));
}

int lup_path_upload_file(char *buf, const char *repo, const char *uuid,
			 const char *leaf)
{
	return fit(snprintf(buf, LUP_PATH_BUF,
			    LUP_REPOS_ROOT "/%s/_uploads/%s/%s", repo, uuid,
			    leaf));
}

int lup_path_hashstate_dir(char *buf, const char *repo, const char *uuid)
{
	return fit(snprintf(buf, LUP_PATH_BUF,
			    LUP_REPOS_ROOT "/%s/_uploads/%s/hashstates/sha256",
			    repo, uuid));
}

int lup_path_hashstate(char *buf, const char *repo, const char *uuid,
		       int64_t offset)
{
	return fit(snprintf(buf, LUP_PATH_BUF,
			    LUP_REPOS_ROOT "/%s/_uploads/%s/hashstates/sha256/%lld",
			    repo, uuid, (long long)offset));
}

int lup_path_blob_data(char *buf, const lup_digest *d)
{
	return fit(snprintf(buf, LUP_PATH_BUF, LUP_V2_ROOT "/blobs/%s/%.2s/%s/data",
			    lup_hash_alg_name(d->alg), d->hex, d->hex));
}

int lup_path_layer_link(char *buf, const char *repo, const lup_digest *d)
{
	return fit(snprintf(buf, LUP_PATH_BUF,
			    LUP_REPOS_ROOT "/%s/_layers/%s/%s/link", repo,
			    lup_hash_alg_name(d->alg), d->hex));
}
