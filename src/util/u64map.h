/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/*
 * A hash map of 64-bit keys to 64-bit values (integers, or pointers through uintptr_t):
 * open addressing with linear probing, growing to stay at most half full. Every key is
 * allowed, UINT64_MAX included. Pointers to values stay valid until the next insertion,
 * removal or clear.
 */
#ifndef LAZYEROFS_UTIL_U64MAP_H
#define LAZYEROFS_UTIL_U64MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct util_u64map_slot {
	uint64_t key; /* key + 1; 0 = empty */
	uint64_t val;
};

struct util_u64map {
	struct util_u64map_slot *v;
	size_t cap, n; /* slots (0 or a power of two); keys held, the side slot's included */
	bool has_max;  /* the key UINT64_MAX (it has no key + 1) lives beside the table */
	uint64_t max_val;
};

#define UTIL_U64MAP_INIT ((struct util_u64map){ 0 })

void util_u64map_free(struct util_u64map *m);
/* Forget every key, keep the memory. */
void util_u64map_clear(struct util_u64map *m);
/* Make room for n keys in all without growing again; -ENOMEM. */
int util_u64map_reserve(struct util_u64map *m, size_t n);
/* Find key, or insert it with value 0: *ret_new tells which (may be NULL), *ret_val points
 * at its value. -ENOMEM. */
int util_u64map_add(struct util_u64map *m, uint64_t key, bool *ret_new, uint64_t **ret_val);
/* Insert key with val, or give an existing key val; -ENOMEM. */
int util_u64map_put(struct util_u64map *m, uint64_t key, uint64_t val);
/* The value of key, or NULL when absent. */
uint64_t *util_u64map_find(const struct util_u64map *m, uint64_t key);
/* Remove key: true when it was there. */
bool util_u64map_remove(struct util_u64map *m, uint64_t key);
/* Iterate: *iter starts at 0; false when done. Order is unspecified; the map must not change
 * during the iteration. */
bool util_u64map_next(const struct util_u64map *m, size_t *iter, uint64_t *ret_key,
		      uint64_t *ret_val);

#endif
