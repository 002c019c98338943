/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/*
 * A list of byte ranges [offset, offset + length): collected unordered, then
 * sorted and merged (optionally bridging gaps up to a tolerance) so that a
 * prefetch needs few, large requests.
 */
#ifndef LAZYEROFS_UTIL_EXTENTS_H
#define LAZYEROFS_UTIL_EXTENTS_H

#include <stddef.h>
#include <stdint.h>

struct util_extent {
	uint64_t offset;
	uint64_t length;
};

struct util_extents {
	struct util_extent *v;
	size_t n;
	size_t alloc;
	size_t max; /* hard cap on n before a merge is forced; 0 = default */
};

void util_extents_init(struct util_extents *e);
void util_extents_free(struct util_extents *e);
/* Add a range; zero-length ranges are ignored. -EOVERFLOW if offset + length wraps. When
 * the list grows past its cap it is merged in place first; -EFBIG if still too many. */
int util_extents_add(struct util_extents *e, uint64_t offset, uint64_t length);
/* Sort and merge overlapping/adjacent ranges, and ranges separated by at most `gap` bytes. */
void util_extents_merge(struct util_extents *e, uint64_t gap);
/* Align every range outward to `align` (a power of two) and clamp to `size`, then merge. */
void util_extents_align(struct util_extents *e, uint64_t align, uint64_t size);
uint64_t util_extents_total(const struct util_extents *e);

#endif
