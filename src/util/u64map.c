// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * The one u64 -> u64 hash map (util/u64map.h): the metadata walk's visited inodes and shared
 * xattrs, the walk I/O's loaded blocks. Linear probing with a Fibonacci hash (keys are often
 * consecutive block numbers or nids), at most half full; removal shifts the following run
 * back instead of leaving tombstones.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/u64map.h"

#define U64MAP_MIN_CAP 64u

static size_t slot_of(uint64_t stored, size_t cap)
{
	/* the high bits of the product are the well-mixed ones */
	return (size_t)((stored * 0x9E3779B97F4A7C15ull) >> 32) & (cap - 1);
}

void util_u64map_free(struct util_u64map *m)
{
	if (!m)
		return;
	free(m->v);
	*m = UTIL_U64MAP_INIT;
}

void util_u64map_clear(struct util_u64map *m)
{
	if (m->v)
		memset(m->v, 0, m->cap * sizeof(*m->v));
	m->n = 0;
	m->has_max = false;
	m->max_val = 0;
}

static size_t table_n(const struct util_u64map *m)
{
	return m->n - (m->has_max ? 1 : 0);
}

int util_u64map_reserve(struct util_u64map *m, size_t n)
{
	struct util_u64map_slot *nv;
	size_t ncap = m->cap ? m->cap : U64MAP_MIN_CAP;

	if (n > SIZE_MAX / 4 / sizeof(*nv))
		return -ENOMEM;
	while (n * 2 > ncap)
		ncap *= 2;
	if (ncap == m->cap)
		return 0;
	nv = calloc(ncap, sizeof(*nv));
	if (!nv)
		return -ENOMEM;
	for (size_t k = 0; k < m->cap; k++) {
		size_t i;

		if (!m->v[k].key)
			continue;
		for (i = slot_of(m->v[k].key, ncap); nv[i].key; i = (i + 1) & (ncap - 1))
			;
		nv[i] = m->v[k];
	}
	free(m->v);
	m->v = nv;
	m->cap = ncap;
	return 0;
}

int util_u64map_add(struct util_u64map *m, uint64_t key, bool *ret_new, uint64_t **ret_val)
{
	uint64_t stored = key + 1;
	bool dummy;
	size_t i;
	int r;

	if (!ret_new)
		ret_new = &dummy;
	if (key == UINT64_MAX) {
		*ret_new = !m->has_max;
		if (!m->has_max) {
			m->has_max = true;
			m->max_val = 0;
			m->n++;
		}
		*ret_val = &m->max_val;
		return 0;
	}
	if (m->cap) {
		for (i = slot_of(stored, m->cap); m->v[i].key; i = (i + 1) & (m->cap - 1))
			if (m->v[i].key == stored) {
				*ret_new = false;
				*ret_val = &m->v[i].val;
				return 0;
			}
	}
	r = util_u64map_reserve(m, table_n(m) + 1);
	if (r < 0)
		return r;
	for (i = slot_of(stored, m->cap); m->v[i].key; i = (i + 1) & (m->cap - 1))
		;
	m->v[i] = (struct util_u64map_slot){ .key = stored };
	m->n++;
	*ret_new = true;
	*ret_val = &m->v[i].val;
	return 0;
}

int util_u64map_put(struct util_u64map *m, uint64_t key, uint64_t val)
{
	uint64_t *p;
	int r = util_u64map_add(m, key, NULL, &p);

	if (r < 0)
		return r;
	*p = val;
	return 0;
}

uint64_t *util_u64map_find(const struct util_u64map *m, uint64_t key)
{
	uint64_t stored = key + 1;

	if (key == UINT64_MAX)
		return m->has_max ? (uint64_t *)&m->max_val : NULL;
	if (!m->cap)
		return NULL;
	for (size_t i = slot_of(stored, m->cap);; i = (i + 1) & (m->cap - 1)) {
		if (m->v[i].key == stored)
			return &m->v[i].val;
		if (!m->v[i].key)
			return NULL;
	}
}

bool util_u64map_remove(struct util_u64map *m, uint64_t key)
{
	uint64_t *p = util_u64map_find(m, key);
	size_t hole, i;

	if (!p)
		return false;
	m->n--;
	if (key == UINT64_MAX) {
		m->has_max = false;
		m->max_val = 0;
		return true;
	}
	hole = (size_t)((struct util_u64map_slot *)((char *)p - offsetof(struct util_u64map_slot,
									   val)) - m->v);
	/* Shift back every entry of the run after the hole that may move there: one whose home
	 * slot is not cyclically in (hole, i]. */
	for (i = (hole + 1) & (m->cap - 1); m->v[i].key; i = (i + 1) & (m->cap - 1)) {
		size_t home = slot_of(m->v[i].key, m->cap);
		bool stays = hole <= i ? (home > hole && home <= i) : (home > hole || home <= i);

		if (stays)
			continue;
		m->v[hole] = m->v[i];
		hole = i;
	}
	m->v[hole] = (struct util_u64map_slot){ 0 };
	return true;
}

bool util_u64map_next(const struct util_u64map *m, size_t *iter, uint64_t *ret_key,
		      uint64_t *ret_val)
{
	while (*iter < m->cap) {
		const struct util_u64map_slot *s = &m->v[(*iter)++];

		if (s->key) {
			*ret_key = s->key - 1;
			*ret_val = s->val;
			return true;
		}
	}
	if (*iter == m->cap && m->has_max) {
		(*iter)++;
		*ret_key = UINT64_MAX;
		*ret_val = m->max_val;
		return true;
	}
	return false;
}
