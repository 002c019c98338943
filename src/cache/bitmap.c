// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * The presence bitmap: one bit per 4 KiB block, 64-bit words read and set with atomics so
 * the daemon's fast path can test bits without taking a lock.
 */
#include "cache/cache.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/macro.h"
#include "util/shared.h"

static inline uint64_t load_word(const struct cache_bitmap *b, size_t i)
{
	return __atomic_load_n(&b->words[i], __ATOMIC_ACQUIRE);
}

/* Mask of bits [lo, hi) inside one word, 0 <= lo < hi <= 64. */
static inline uint64_t word_mask(unsigned lo, unsigned hi)
{
	uint64_t m = hi == 64 ? ~UINT64_C(0) : (UINT64_C(1) << hi) - 1;

	return m & ~((UINT64_C(1) << lo) - 1);
}

int cache_bitmap_init(struct cache_bitmap *b, uint64_t nbits, bool shared)
{
	uint64_t nwords = DIV_ROUND_UP(nbits, 64);
	size_t bytes;

	*b = (struct cache_bitmap){0};
	if (nwords == 0)
		nwords = 1;
	if (nwords > SIZE_MAX / 8)
		return -EFBIG;
	bytes = (size_t)nwords * 8;
	if (shared) {
		b->words = util_shared_alloc(bytes);
		if (!b->words)
			return -errno;
	} else {
		b->words = calloc(nwords, 8);
		if (!b->words)
			return -ENOMEM;
	}
	b->nbits = nbits;
	b->nwords = (size_t)nwords;
	b->shared = shared;
	return 0;
}

void cache_bitmap_destroy(struct cache_bitmap *b)
{
	if (!b->words)
		return;
	if (b->shared)
		util_shared_free(b->words, b->nwords * 8);
	else
		free(b->words);
	*b = (struct cache_bitmap){0};
}

bool cache_bitmap_test(const struct cache_bitmap *b, uint64_t bit)
{
	if (bit >= b->nbits)
		return false;
	return (load_word(b, bit / 64) >> (bit % 64)) & 1;
}

bool cache_bitmap_test_range(const struct cache_bitmap *b, uint64_t first, uint64_t n)
{
	uint64_t end;

	if (n == 0)
		return true;
	if (util_add_overflow_u64(first, n, &end) || end > b->nbits)
		return false;
	return cache_bitmap_find(b, first, end, false) == end;
}

void cache_bitmap_set_range(struct cache_bitmap *b, uint64_t first, uint64_t n)
{
	uint64_t end;

	if (first >= b->nbits)
		return;
	if (util_add_overflow_u64(first, n, &end) || end > b->nbits)
		end = b->nbits;
	while (first < end) {
		size_t w = first / 64;
		unsigned lo = first % 64;
		unsigned hi =
		    end - (uint64_t)w * 64 >= 64 ? 64 : (unsigned)(end - (uint64_t)w * 64);

		__atomic_fetch_or(&b->words[w], word_mask(lo, hi), __ATOMIC_RELEASE);
		first = (uint64_t)w * 64 + hi;
	}
}

uint64_t cache_bitmap_clear_word(struct cache_bitmap *b, size_t w, uint64_t mask)
{
	if (w >= b->nwords)
		return 0;
	return __atomic_fetch_and(&b->words[w], ~mask, __ATOMIC_ACQ_REL) & mask;
}

void cache_bitmap_set_word(struct cache_bitmap *b, size_t w, uint64_t mask)
{
	if (w >= b->nwords)
		return;
	if (w == b->nwords - 1 && b->nbits % 64)
		mask &= (UINT64_C(1) << (b->nbits % 64)) - 1;
	__atomic_fetch_or(&b->words[w], mask, __ATOMIC_ACQ_REL);
}

uint64_t cache_bitmap_word_mask(uint64_t first, uint64_t n, size_t w)
{
	uint64_t lo = (uint64_t)w * 64, hi = lo + 64, end;

	if (__builtin_add_overflow(first, n, &end))
		end = UINT64_MAX;
	if (end <= lo || first >= hi)
		return 0;
	lo = MAX(lo, first) - lo;
	hi = MIN(hi, end) - (uint64_t)w * 64;
	return (hi - lo == 64 ? ~UINT64_C(0) : ((UINT64_C(1) << (hi - lo)) - 1)) << lo;
}

void cache_bitmap_clear_all(struct cache_bitmap *b)
{
	memset(b->words, 0, b->nwords * 8);
}

uint64_t cache_bitmap_find(const struct cache_bitmap *b, uint64_t from, uint64_t limit, bool value)
{
	if (limit > b->nbits)
		limit = b->nbits;
	while (from < limit) {
		size_t w = from / 64;
		unsigned lo = from % 64;
		uint64_t word = load_word(b, w);
		uint64_t m;

		if (!value)
			word = ~word;
		m = word & word_mask(lo, 64);
		if (m) {
			uint64_t bit = (uint64_t)w * 64 + (unsigned)__builtin_ctzll(m);

			return bit < limit ? bit : limit;
		}
		from = (uint64_t)(w + 1) * 64;
	}
	return limit;
}

bool cache_bitmap_next_run(const struct cache_bitmap *b, uint64_t from, uint64_t limit, bool value,
			   uint64_t *ret_start, uint64_t *ret_len)
{
	uint64_t start, end;

	if (limit > b->nbits)
		limit = b->nbits;
	start = cache_bitmap_find(b, from, limit, value);
	if (start >= limit)
		return false;
	end = cache_bitmap_find(b, start, limit, !value);
	*ret_start = start;
	*ret_len = end - start;
	return true;
}

uint64_t cache_bitmap_count(const struct cache_bitmap *b)
{
	uint64_t n = 0;

	for (size_t i = 0; i < b->nwords; i++) {
		uint64_t w = load_word(b, i);

		if (i == b->nwords - 1 && b->nbits % 64)
			w &= word_mask(0, b->nbits % 64);
		n += (uint64_t)__builtin_popcountll(w);
	}
	return n;
}

bool cache_bitmap_any_of(const struct cache_bitmap *b, const struct util_extent *v, size_t n,
			 uint64_t size, bool value)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t first, k;

		if (cache_blocks_of(v[i].offset, v[i].length, size, &first, &k) &&
		    cache_bitmap_find(b, first, first + k, value) < first + k)
			return true;
	}
	return false;
}

bool cache_blocks_of(uint64_t off, uint64_t len, uint64_t size, uint64_t *ret_first,
		     uint64_t *ret_n)
{
	uint64_t end;

	if (len == 0 || off >= size)
		return false;
	if (util_add_overflow_u64(off, len, &end) || end > size)
		end = size;
	*ret_first = off >> CACHE_BLOCK_SHIFT;
	*ret_n = DIV_ROUND_UP(end, CACHE_BLOCK_SIZE) - *ret_first;
	return true;
}
