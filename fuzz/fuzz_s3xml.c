/*
 * fuzz_s3xml.c - the S3 driver's XML lookups on hostile answers
 * (src/drivers/s3/s3_http.c): s3_xml_next walks every element it is asked
 * for without reading past the end, s3_xml_text decodes any value, and
 * s3_xml_etag unquotes any value into a bounded buffer.
 * A server (or whoever sits between) controls these bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/s3/s3_internal.h"

#define REQUIRE(c)                  \
	do {                        \
		if (!(c))           \
			abort();    \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const tags[] = {
		"Code", "Key", "UploadId", "Upload", "Part", "PartNumber", "Size",
		"ETag", "IsTruncated", "NextContinuationToken", "Contents",
		"CommonPrefixes", "Prefix", "Initiated", "Error",
	};
	/* A copy without a terminator: reads past the end are caught. */
	char *buf = malloc(size ? size : 1);
	const char *end, *p, *v, *next;
	size_t vl;

	if (!buf)
		return 0;
	memcpy(buf, data, size);
	end = buf + size;
	for (size_t t = 0; t < sizeof tags / sizeof tags[0]; t++) {
		p = buf;
		while (s3_xml_next(p, end, tags[t], &v, &vl, &next) == 0) {
			REQUIRE(v >= buf && v + vl <= end);
			REQUIRE(next > p && next <= end);
			char *txt = s3_xml_text(v, vl);
			REQUIRE(txt != NULL && strlen(txt) <= vl);
			free(txt);
			char etag[128], tiny[3];
			REQUIRE(s3_xml_etag(v, vl, etag, sizeof etag) == 0);
			REQUIRE(strlen(etag) < sizeof etag && strlen(etag) <= vl);
			REQUIRE(s3_xml_etag(v, vl, tiny, sizeof tiny) == 0);
			REQUIRE(strlen(tiny) < sizeof tiny);
			p = next;
		}
	}
	free(buf);
	return 0;
}
