// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * The grouping of a metadata walk round into requests (mount/rounds.h). A range costs a
 * registry about as much as a large payload (docker-registry reopens the blob and fills a
 * 4 MiB buffer per range), so small gaps are worth fetching: the bytes in between are cheap,
 * and bridged blocks may serve later rounds.
 */
#include <errno.h>
#include <stdlib.h>

#include "mount/rounds.h"
#include "util/macro.h"

#define ROUND_BLOCK 4096ULL

static bool block_present(uint64_t b, uint64_t size,
			  bool (*present)(void *ctx, uint64_t off, uint64_t len), void *ctx)
{
	uint64_t off = b * ROUND_BLOCK;

	return present && off < size && present(ctx, off, MIN(ROUND_BLOCK, size - off));
}

/* A range that comes within the merge gap of present blocks extends to them: fetched now, the
 * gap costs no range of its own later. */
static void fill_to_present(struct util_extents *v, uint64_t size, uint64_t gap,
			    bool (*present)(void *ctx, uint64_t off, uint64_t len), void *ctx)
{
	uint64_t reach = gap / ROUND_BLOCK, nblocks = DIV_ROUND_UP(size, ROUND_BLOCK);

	if (!present || !reach)
		return;
	for (size_t i = 0; i < v->n; i++) {
		struct util_extent *e = &v->v[i];
		uint64_t first = e->offset / ROUND_BLOCK;
		uint64_t last = (e->offset + e->length - 1) / ROUND_BLOCK;

		for (uint64_t k = 1; k <= reach && k <= first; k++)
			if (block_present(first - k, size, present, ctx)) {
				e->offset -= (k - 1) * ROUND_BLOCK;
				e->length += (k - 1) * ROUND_BLOCK;
				break;
			}
		for (uint64_t k = 1; k <= reach && last + k < nblocks; k++)
			if (block_present(last + k, size, present, ctx)) {
				e->length += (k - 1) * ROUND_BLOCK;
				break;
			}
	}
}

static int gap_cmp(const void *a, const void *b)
{
	const uint64_t *x = a, *y = b;

	if (x[0] != y[0])
		return x[0] < y[0] ? -1 : 1;
	return x[1] < y[1] ? -1 : x[1] > y[1];
}

/* Bridge the smallest gaps while the budget lasts. */
static int bridge(struct util_extents *v, struct mount_grouping *g)
{
	size_t n = v->n, out = 0, ngaps = 0;
	uint64_t (*gaps)[2];
	bool *join;

	if (n < 2 || g->budget == 0)
		return 0;
	gaps = calloc(n - 1, sizeof(*gaps));
	join = calloc(n, sizeof(*join));
	if (!gaps || !join) {
		free(gaps);
		free(join);
		return -ENOMEM;
	}
	for (size_t i = 1; i < n; i++) {
		uint64_t gap = v->v[i].offset - (v->v[i - 1].offset + v->v[i - 1].length);

		if (gap <= g->max_gap && gap <= g->budget) {
			gaps[ngaps][0] = gap;
			gaps[ngaps++][1] = i;
		}
	}
	qsort(gaps, ngaps, sizeof(*gaps), gap_cmp);
	for (size_t k = 0; k < ngaps && gaps[k][0] <= g->budget; k++) {
		g->budget -= gaps[k][0];
		join[gaps[k][1]] = true;
	}
	for (size_t i = 1; i < n; i++) {
		if (join[i])
			v->v[out].length = v->v[i].offset + v->v[i].length - v->v[out].offset;
		else
			v->v[++out] = v->v[i];
	}
	v->n = out + 1;
	free(gaps);
	free(join);
	return 0;
}

/* What the server spends on a round's ranges (saturating). */
static uint64_t ranges_us(const struct mount_round_cost *c, uint64_t range_cost_us)
{
	uint64_t us;

	return util_mul_overflow_u64(c->ranges, range_cost_us, &us) ? UINT64_MAX : us;
}

/* Bytes per second of bytes moved in us (> 0) microseconds (saturating). */
static uint64_t rate_of(uint64_t bytes, uint64_t us)
{
	return bytes > UINT64_MAX / 1000000 ? UINT64_MAX / us : bytes * 1000000 / us;
}

/* A round's rate with the server's ranges paid for: what is left of its time once the ranges
 * are, at least an eighth of the round, since both terms are estimates (on loopback the
 * ranges are nearly all of it). */
static uint64_t rate_past_ranges(const struct mount_round_cost *c, uint64_t fixed,
				 uint64_t range_cost_us)
{
	uint64_t spent = c->us - fixed, per_range = ranges_us(c, range_cost_us);

	spent = spent > per_range ? spent - per_range : 0;
	return rate_of(c->bytes, MAX(spent, MAX(c->us / 8, UINT64_C(1))));
}

uint64_t mount_round_fixed_us(const struct mount_round_cost *v, size_t n)
{
	uint64_t fixed = UINT64_MAX;

	for (size_t i = 0; i < n; i++)
		fixed = MIN(fixed, v[i].us);
	return fixed;
}

uint64_t mount_round_rate(const struct mount_round_cost *v, size_t n, uint64_t range_cost_us)
{
	uint64_t fixed = mount_round_fixed_us(v, n), rate = 0, spent;
	const struct mount_round_cost *big = NULL;

	for (size_t i = 0; i < n; i++)
		if (v[i].bytes >= MOUNT_RATE_MIN_BYTES && (!big || v[i].bytes > big->bytes))
			big = &v[i];
	if (!big)
		return 0;
	/* The round that moved the most bytes tells best which limits: when its ranges cost the
	 * server less than half its time, they overlapped its bytes on the wire, and the link's
	 * rate is its bytes over its time (a small round is mostly the fixed part, and an error
	 * there multiplies: the others are not asked). Otherwise the server's ranges are what
	 * costs (loopback): the fastest of the rounds with their ranges paid for. */
	spent = MAX(big->us - fixed, UINT64_C(1));
	if (ranges_us(big, range_cost_us) <= spent / 2) {
		rate = rate_of(big->bytes, spent);
	} else {
		for (size_t i = 0; i < n; i++)
			if (v[i].bytes >= MOUNT_RATE_MIN_BYTES)
				rate = MAX(rate, rate_past_ranges(&v[i], fixed, range_cost_us));
	}
	return rate;
}

uint64_t mount_round_worth_gap(const struct mount_round_cost *v, size_t n,
			       uint64_t range_cost_us)
{
	uint64_t rate = mount_round_rate(v, n, range_cost_us);

	if (!rate || rate > UINT64_MAX / MAX(range_cost_us, 1))
		return rate ? UINT64_MAX : 0;
	return rate * range_cost_us / 1000000;
}

bool mount_metadata_zone(uint64_t meta_offset, uint64_t size, struct util_extent *ret)
{
	uint64_t start = ROUND_DOWN(meta_offset, ROUND_BLOCK);

	if (meta_offset == 0 || meta_offset >= size || size - start > size / 2)
		return false;
	*ret = (struct util_extent){ .offset = start, .length = size - start };
	return true;
}

int mount_group_round(struct util_extents *v, uint64_t size, struct mount_grouping *g,
		      bool (*present)(void *ctx, uint64_t off, uint64_t len), void *ctx)
{
	if (!v->n || !size)
		return 0;
	util_extents_align(v, ROUND_BLOCK, size);
	fill_to_present(v, size, g->merge_gap, present, ctx);
	util_extents_merge(v, g->merge_gap);
	return bridge(v, g);
}
