/*
 * test_s3.c - the S3 driver's pure parts, without a server: Signature V4
 * against AWS's published examples (S3 "Signature Calculations for the
 * Authorization Header: Transferring Payload in a Single Chunk"), URI
 * encoding, the XML lookups on hostile input, key naming and option
 * checks.
 */
#include <stdlib.h>
#include <string.h>

#include "drivers/s3/s3_internal.h"
#include "test.h"

#define AK "AKIAIOSFODNN7EXAMPLE"
#define SK "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define EMPTY_SHA "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define HOST "examplebucket.s3.amazonaws.com"
#define DATE "20130524T000000Z"

static const char *sig_of(const char *auth)
{
	const char *s = strstr(auth, "Signature=");
	return s ? s + 10 : "";
}

TEST(sigv4_get_object_with_range)
{
	s3_kv h[] = {{"host", HOST}, {"range", "bytes=0-9"},
		     {"x-amz-content-sha256", EMPTY_SHA}, {"x-amz-date", DATE}};
	s3_sign_in in = {"GET", "/test.txt", NULL, 0, h, 4, EMPTY_SHA, DATE,
			 "us-east-1", AK, SK};
	char auth[512];

	CHECK_EQ_INT(s3_sign(&in, auth, sizeof auth), 0);
	CHECK_EQ_STR(sig_of(auth), "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
	CHECK(strstr(auth, "Credential=" AK "/20130524/us-east-1/s3/aws4_request") != NULL);
	CHECK(strstr(auth, "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,") != NULL);
}

TEST(sigv4_put_object)
{
	const char *body = "Welcome to Amazon S3.";
	char ph[65], uri[64], auth[512];

	s3_sha256_hex(body, strlen(body), ph);
	CHECK_EQ_STR(ph, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
	CHECK(s3_uri_encode("/test$file.text", 1, uri, sizeof uri) > 0);
	CHECK_EQ_STR(uri, "/test%24file.text");
	/* Headers in any order: the signer sorts them. */
	s3_kv h[] = {{"x-amz-storage-class", "REDUCED_REDUNDANCY"},
		     {"host", HOST}, {"date", "Fri, 24 May 2013 00:00:00 GMT"},
		     {"x-amz-date", DATE}, {"x-amz-content-sha256", ph}};
	s3_sign_in in = {"PUT", uri, NULL, 0, h, 5, ph, DATE, "us-east-1", AK,
			 SK};
	CHECK_EQ_INT(s3_sign(&in, auth, sizeof auth), 0);
	CHECK_EQ_STR(sig_of(auth), "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
}

TEST(sigv4_subresource_and_query)
{
	s3_kv h[] = {{"host", HOST}, {"x-amz-content-sha256", EMPTY_SHA},
		     {"x-amz-date", DATE}};
	s3_kv q1[] = {{"lifecycle", ""}};
	s3_kv q2[] = {{"prefix", "J"}, {"max-keys", "2"}};
	char auth[512];
	s3_sign_in in = {"GET", "/", q1, 1, h, 3, EMPTY_SHA, DATE, "us-east-1",
			 AK, SK};

	CHECK_EQ_INT(s3_sign(&in, auth, sizeof auth), 0);
	CHECK_EQ_STR(sig_of(auth), "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
	in.query = q2;
	in.nquery = 2;
	CHECK_EQ_INT(s3_sign(&in, auth, sizeof auth), 0);
	CHECK_EQ_STR(sig_of(auth), "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
}

TEST(sigv4_refuses_bad_input)
{
	s3_kv h[] = {{"host", HOST}};
	char auth[16];
	s3_sign_in in = {"GET", "/", NULL, 0, h, 1, EMPTY_SHA, "2013", "us-east-1",
			 AK, SK};

	CHECK_EQ_INT(s3_sign(&in, auth, sizeof auth), -1); /* bad date */
	in.amz_date = DATE;
	CHECK_EQ_INT(s3_sign(&in, auth, sizeof auth), -1); /* out too small */
}

TEST(uri_encoding)
{
	char out[64];

	CHECK_EQ_INT(s3_uri_encode("a b/c~d_e.f-g", 1, out, sizeof out), 15);
	CHECK_EQ_STR(out, "a%20b/c~d_e.f-g");
	CHECK(s3_uri_encode("a/b", 0, out, sizeof out) > 0);
	CHECK_EQ_STR(out, "a%2Fb");
	CHECK(s3_uri_encode("\xff:", 0, out, sizeof out) > 0);
	CHECK_EQ_STR(out, "%FF%3A");
	CHECK_EQ_INT(s3_uri_encode("abcdef", 0, out, 4), -1);
}

TEST(xml_lookups)
{
	const char *x = "<R><IsTruncated>true</IsTruncated><Key>a&amp;b&#47;c"
			"</Key><Keys>x</Keys><Key>second</Key><Empty/></R>";
	const char *end = x + strlen(x), *v, *next;
	size_t vl;
	char *t;

	CHECK_EQ_INT(s3_xml_next(x, end, "Key", &v, &vl, &next), 0);
	t = s3_xml_text(v, vl);
	CHECK_EQ_STR(t, "a&b/c");
	free(t);
	/* <Keys> is another element, not <Key>. */
	CHECK_EQ_INT(s3_xml_next(next, end, "Key", &v, &vl, &next), 0);
	CHECK(vl == 6 && memcmp(v, "second", 6) == 0);
	CHECK_EQ_INT(s3_xml_next(next, end, "Key", &v, &vl, &next), -1);
	CHECK_EQ_INT(s3_xml_next(x, end, "Empty", &v, &vl, NULL), 0);
	CHECK_EQ_INT((int)vl, 0);
	/* Truncated and unterminated input: not found, never past end. */
	CHECK_EQ_INT(s3_xml_next(x, x + 20, "IsTruncated", &v, &vl, NULL), -1);
	CHECK_EQ_INT(s3_xml_next(x + 35, x + 43, "Key", &v, &vl, NULL) , -1);
	t = s3_xml_text("&#0;&#999;&bogus;&#x41;", 23);
	CHECK_EQ_STR(t, "&#0;&#999;&bogus;A");
	free(t);
}

TEST(options_are_checked)
{
	lup_s3_options o = LUP_S3_OPTIONS_INIT;
	lup_driver *d = NULL;
	lup_error err;

	unsetenv("AWS_ENDPOINT_URL");
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	o.bucket = "b";
	CHECK(lup_driver_s3(&d, &o, &err) < 0 && d == NULL); /* no endpoint */
	o.endpoint = "ftp://x";
	o.access_key = "a";
	o.secret_key = "s";
	CHECK(lup_driver_s3(&d, &o, &err) < 0);
	CHECK(strstr(err.message, "http://") != NULL);
	o.endpoint = "http://127.0.0.1:1";
	o.part_size = 1024;
	CHECK_EQ_INT(lup_driver_s3(&d, &o, &err), LUP_ESIZE_INVALID);
	o.part_size = 0;
	o.access_key = NULL;
	CHECK_EQ_INT(lup_driver_s3(&d, &o, &err), LUP_EDENIED);
	/* Credentials from the standard environment. */
	setenv("AWS_ACCESS_KEY_ID", "envkey", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
	CHECK_EQ_INT(lup_driver_s3(&d, &o, &err), 0);
	if (d) {
		s3_driver *s = (s3_driver *)d;
		CHECK_EQ_STR(s->access_key, "envkey");
		CHECK_EQ_STR(s->host, "127.0.0.1:1");
		lup_driver_release(d);
	}
	o.virtual_host = 1;
	o.prefix = "/root/dir/";
	d = NULL;
	CHECK_EQ_INT(lup_driver_s3(&d, &o, &err), 0);
	if (d) {
		s3_driver *s = (s3_driver *)d;
		char *k = s3_key(s, "/docker/x");
		CHECK_EQ_STR(s->host, "b.127.0.0.1:1");
		CHECK_EQ_STR(s->endpoint, "http://b.127.0.0.1:1");
		CHECK_EQ_STR(s->prefix, "root/dir");
		CHECK_EQ_STR(k, "root/dir/docker/x");
		char *p = s3_path(s, k, strlen(k));
		CHECK_EQ_STR(p, "/docker/x");
		free(p);
		CHECK(s3_path(s, "root/dirx/y", 11) == NULL);
		char *tk = s3_tail_key(s, k);
		CHECK_EQ_STR(tk, "root/dir/_layerup/tails/docker/x");
		free(tk);
		free(k);
		lup_driver_release(d);
	}
	/* A connection that fails is transient (the retry policy's cue). */
	o.virtual_host = 0;
	o.timeout_s = 5;
	d = NULL;
	CHECK_EQ_INT(lup_driver_s3(&d, &o, &err), 0);
	if (d) {
		lup_stat st;
		CHECK_EQ_INT(lup_driver_stat(d, "/a", &st, &err), LUP_EIO);
		CHECK_EQ_INT(err.transient, 1);
		lup_driver_release(d);
	}
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
}

int main(void)
{
	RUN(sigv4_get_object_with_range);
	RUN(sigv4_put_object);
	RUN(sigv4_subresource_and_query);
	RUN(sigv4_refuses_bad_input);
	RUN(uri_encoding);
	RUN(xml_lookups);
	RUN(options_are_checked);
	return test_done();
}
