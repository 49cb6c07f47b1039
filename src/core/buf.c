/* buf.c - growable byte buffers and string lists (see layerup/sys/driver.h). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "layerup/sys/driver.h"

int lup_buf_append(lup_buf *b, const void *p, size_t n)
{
	if (n == 0)
		return 0;
	if (n > SIZE_MAX - b->len)
		return LUP_EIO;
	if (b->len + n > b->cap) {
		/* Doubling keeps a long run of small appends linear. */
		size_t cap = b->cap ? b->cap : 64;
		unsigned char *data;

		while (cap < b->len + n)
			cap = cap > SIZE_MAX / 2 ? b->len + n : cap * 2;
		data = realloc(b->data, cap);
		if (!data)
			return LUP_EIO;
		b->data = data;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

void lup_buf_free(lup_buf *b)
{
	if (!b)
		return;
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

int lup_strlist_push(lup_strlist *l, const char *s)
{
	char *copy;

	if (l->count == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 8;
		char **items;

		if (cap > SIZE_MAX / sizeof(*items))
			return LUP_EIO;
		items = realloc(l->items, cap * sizeof(*items));
		if (!items)
			return LUP_EIO;
		l->items = items;
		l->cap = cap;
	}
	copy = strdup(s);
	if (!copy)
		return LUP_EIO;
	l->items[l->count++] = copy;
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	/* strcmp compares as unsigned char: a bytewise order. */
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void lup_strlist_sort(lup_strlist *l)
{
	if (l->count > 1)
		qsort(l->items, l->count, sizeof(*l->items), cmp_str);
}

void lup_strlist_free(lup_strlist *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->count; i++)
		free(l->items[i]);
	free(l->items);
	l->items = NULL;
	l->count = 0;
	l->cap = 0;
}
