// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* The record of first accesses (record.h). */
#include "fetch/record.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/macro.h"
#include "util/shared.h"

struct fetch_record_store *fetch_record_store_new(void)
{
	return util_shared_alloc(sizeof(struct fetch_record_store));
}

int fetch_record_init(struct fetch_record *rec, uint64_t size, struct fetch_record_store *st)
{
	uint64_t n;
	int r;

	*rec = (struct fetch_record){.size = size, .st = st};
	if (!st) {
		/* calloc: a large block is mapped, its pages backed as ranges are recorded */
		rec->st = st = calloc(1, sizeof(*st));
		if (!st)
			return -ENOMEM;
		rec->own_store = true;
	}
	r = cache_bitmap_init(&rec->seen, DIV_ROUND_UP(size, CACHE_BLOCK_SIZE), false);
	if (r < 0) {
		if (rec->own_store)
			free(st);
		*rec = (struct fetch_record){0};
		return r;
	}
	/* What a predecessor recorded: its blocks are seen. */
	n = MIN(__atomic_load_n(&st->n, __ATOMIC_ACQUIRE), (uint64_t)FETCH_RECORD_MAX_RANGES);
	for (uint64_t i = 0; i < n; i++) {
		uint64_t first, nblk;

		if (!util_range_within(st->v[i].offset, st->v[i].length, size) ||
		    !cache_blocks_of(st->v[i].offset, st->v[i].length, size, &first, &nblk)) {
			n = i; /* not this blob's: keep what came before */
			break;
		}
		cache_bitmap_set_range(&rec->seen, first, nblk);
	}
	st->n = n;
	pthread_mutex_init(&rec->lock, NULL);
	return 0;
}

void fetch_record_destroy(struct fetch_record *rec)
{
	if (!rec->seen.words)
		return;
	cache_bitmap_destroy(&rec->seen);
	if (rec->own_store)
		free(rec->st);
	pthread_mutex_destroy(&rec->lock);
	*rec = (struct fetch_record){0};
}

/* Append blocks [b, b + n) (lock held); false once the cap is reached. */
static bool record_append(struct fetch_record *rec, uint64_t b, uint64_t n, uint32_t t)
{
	struct fetch_record_store *st = rec->st;
	uint64_t off = b * CACHE_BLOCK_SIZE, len = MIN(n * CACHE_BLOCK_SIZE, rec->size - off);
	struct profile_range *last = st->n ? &st->v[st->n - 1] : NULL;

	if (last && last->offset + last->length == off &&
	    (uint64_t)last->length + len <= PROFILE_RANGE_MAX) {
		last->length += (uint32_t)len;
		return true;
	}
	if (st->n >= FETCH_RECORD_MAX_RANGES) {
		st->truncated = 1;
		return false;
	}
	st->v[st->n] = (struct profile_range){.offset = off, .length = (uint32_t)len, .t_ms = t};
	__atomic_store_n(&st->n, st->n + 1, __ATOMIC_RELEASE); /* whole before it counts */
	return true;
}

void fetch_record_note(struct fetch_record *rec, uint64_t first, uint64_t n, uint64_t now_ms)
{
	uint64_t end, at, run_start, run_len;
	uint32_t t;

	if (!rec->seen.words || n == 0 || first >= rec->seen.nbits)
		return;
	end = MIN(first + n, rec->seen.nbits);
	if (cache_bitmap_test_range(&rec->seen, first, end - first))
		return; /* the common case: seen before, no lock */
	pthread_mutex_lock(&rec->lock);
	if (rec->st->truncated)
		goto out;
	if (rec->st->n == 0 && !rec->st->t0_ms)
		rec->st->t0_ms = now_ms;
	t = (uint32_t)MIN(now_ms - MIN(now_ms, rec->st->t0_ms), (uint64_t)UINT32_MAX);
	/* Noters take their time before this lock (two dispatchers, the control thread): one
	 * that waited for it comes after a later one and counts as its time, so that times
	 * never go down (a profile whose did would be refused by its format). */
	if (rec->st->n)
		t = MAX(t, rec->st->v[rec->st->n - 1].t_ms);
	for (at = first;
	     cache_bitmap_next_run(&rec->seen, at, end, false, &run_start, &run_len);
	     at = run_start + run_len) {
		/* Long runs are split so that no range exceeds PROFILE_RANGE_MAX. */
		for (uint64_t b = run_start; b < run_start + run_len;) {
			uint64_t k = MIN(run_start + run_len - b,
					 (uint64_t)PROFILE_RANGE_MAX / CACHE_BLOCK_SIZE);

			if (!record_append(rec, b, k, t))
				goto out;
			cache_bitmap_set_range(&rec->seen, b, k);
			b += k;
		}
	}
out:
	pthread_mutex_unlock(&rec->lock);
}

int fetch_record_profile(struct fetch_record *rec, const char *digest, struct profile *ret)
{
	*ret = (struct profile){.size = rec->size};
	snprintf(ret->digest, sizeof(ret->digest), "%s", digest);
	pthread_mutex_lock(&rec->lock);
	if (rec->st->n) {
		ret->v = malloc(rec->st->n * sizeof(*ret->v));
		if (!ret->v) {
			pthread_mutex_unlock(&rec->lock);
			return -ENOMEM;
		}
		memcpy(ret->v, rec->st->v, rec->st->n * sizeof(*ret->v));
		ret->n = rec->st->n;
	}
	pthread_mutex_unlock(&rec->lock);
	return 0;
}

size_t fetch_record_count(struct fetch_record *rec, bool *ret_truncated)
{
	size_t n;

	if (!rec->seen.words) {
		*ret_truncated = false;
		return 0;
	}
	pthread_mutex_lock(&rec->lock);
	n = rec->st->n;
	*ret_truncated = rec->st->truncated;
	pthread_mutex_unlock(&rec->lock);
	return n;
}
