/* error.c - error records and code names (see layerup/error.h). */
#include <stdio.h>
#include <string.h>

#include "layerup/error.h"

static const struct {
	int code;
	const char *name;
} names[] = {
	{ LUP_OK, "OK" },
	{ LUP_EBLOB_UNKNOWN, "BLOB_UNKNOWN" },
	{ LUP_EBLOB_UPLOAD_INVALID, "BLOB_UPLOAD_INVALID" },
	{ LUP_EBLOB_UPLOAD_UNKNOWN, "BLOB_UPLOAD_UNKNOWN" },
	{ LUP_EDIGEST_INVALID, "DIGEST_INVALID" },
	{ LUP_ENAME_INVALID, "NAME_INVALID" },
	{ LUP_ESIZE_INVALID, "SIZE_INVALID" },
	{ LUP_ERANGE_INVALID, "RANGE_INVALID" },
	{ LUP_EDENIED, "DENIED" },
	{ LUP_EUNSUPPORTED, "UNSUPPORTED" },
	{ LUP_EPATH_NOT_FOUND, "PATH_NOT_FOUND" },
	{ LUP_EINVALID_PATH, "INVALID_PATH" },
	{ LUP_EINVALID_OFFSET, "INVALID_OFFSET" },
	{ LUP_ELOCKED, "LOCKED" },
	{ LUP_EIO, "IO" },
};

void lup_error_clear(lup_error *err)
{
	if (!err)
		return;
	err->code = LUP_OK;
	err->transient = 0;
	err->offset = -1;
	err->path[0] = '\0';
	err->message[0] = '\0';
}

int lup_error_vset(lup_error *err, int code, const char *path,
		   const char *fmt, va_list ap)
{
	if (!err)
		return code;
	err->code = code;
	err->transient = 0;
	err->offset = -1;
	snprintf(err->path, sizeof(err->path), "%s", path ? path : "");
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	return code;
}

int lup_error_set(lup_error *err, int code, const char *path,
		  const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	lup_error_vset(err, code, path, fmt, ap);
	va_end(ap);
	return code;
}

int lup_error_copy(lup_error *dst, const lup_error *src)
{
	if (!src)
		return LUP_OK;
	if (dst && dst != src)
		memcpy(dst, src, sizeof(*dst));
	return src->code;
}

const char *lup_error_name(int code)
{
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (names[i].code == code)
			return names[i].name;
	return "UNKNOWN";
}

int lup_error_code(const char *name)
{
	for (size_t i = 0; name && i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(names[i].name, name) == 0)
			return names[i].code;
	return LUP_EIO;
}
