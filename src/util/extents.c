// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Range lists: add, sort, merge with gap tolerance, align. */
#include "util/extents.h"

#include <errno.h>
#include <stdlib.h>

#include "util/macro.h"

#define EXTENTS_DEFAULT_MAX (1u << 24)

void util_extents_init(struct util_extents *e)
{
	*e = (struct util_extents){ 0 };
}

void util_extents_free(struct util_extents *e)
{
	free(e->v);
	*e = (struct util_extents){ 0 };
}

int util_extents_add(struct util_extents *e, uint64_t offset, uint64_t length)
{
	size_t max = e->max ? e->max : EXTENTS_DEFAULT_MAX;
	uint64_t end;

	if (length == 0)
		return 0;
	if (util_add_overflow_u64(offset, length, &end))
		return -EOVERFLOW;
	/* Cheap coalescing with the previous range keeps sequential walks compact. */
	if (e->n > 0) {
		struct util_extent *last = &e->v[e->n - 1];

		if (offset >= last->offset && offset <= last->offset + last->length) {
			if (end > last->offset + last->length)
				last->length = end - last->offset;
			return 0;
		}
	}
	if (e->n == e->alloc) {
		if (e->n >= max) {
			util_extents_merge(e, 0);
			if (e->n >= max)
				return -EFBIG;
		}
		if (e->n == e->alloc) {
			size_t alloc = e->alloc ? e->alloc * 2 : 64;
			struct util_extent *v;

			if (alloc > max)
				alloc = max;
			v = realloc(e->v, alloc * sizeof(*v));
			if (!v)
				return -ENOMEM;
			e->v = v;
			e->alloc = alloc;
		}
	}
	e->v[e->n++] = (struct util_extent){ .offset = offset, .length = length };
	return 0;
}

static int extent_cmp(const void *a, const void *b)
{
	const struct util_extent *x = a, *y = b;

	if (x->offset != y->offset)
		return x->offset < y->offset ? -1 : 1;
	if (x->length != y->length)
		return x->length < y->length ? -1 : 1;
	return 0;
}

void util_extents_merge(struct util_extents *e, uint64_t gap)
{
	size_t out = 0;

	if (e->n == 0)
		return;
	qsort(e->v, e->n, sizeof(*e->v), extent_cmp);
	for (size_t i = 1; i < e->n; i++) {
		struct util_extent *cur = &e->v[out];
		uint64_t cur_end = cur->offset + cur->length;
		uint64_t reach;
		uint64_t end = e->v[i].offset + e->v[i].length;

		if (util_add_overflow_u64(cur_end, gap, &reach))
			reach = UINT64_MAX;
		if (e->v[i].offset <= reach) {
			if (end > cur_end)
				cur->length = end - cur->offset;
		} else {
			e->v[++out] = e->v[i];
		}
	}
	e->n = out + 1;
}

void util_extents_align(struct util_extents *e, uint64_t align, uint64_t size)
{
	size_t out = 0;

	for (size_t i = 0; i < e->n; i++) {
		uint64_t start = e->v[i].offset & ~(align - 1);
		uint64_t end = e->v[i].offset + e->v[i].length;

		end = end > UINT64_MAX - align ? UINT64_MAX : (end + align - 1) & ~(align - 1);
		if (end > size)
			end = size;
		if (start >= end)
			continue;
		e->v[out++] = (struct util_extent){ .offset = start, .length = end - start };
	}
	e->n = out;
	util_extents_merge(e, 0);
}

uint64_t util_extents_total(const struct util_extents *e)
{
	uint64_t t = 0;

	for (size_t i = 0; i < e->n; i++)
		t += e->v[i].length;
	return t;
}
