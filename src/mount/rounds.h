/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/* How a metadata walk round's ranges become requests (internal to the mount module): the
 * EROFS reader lists exactly what it needs; the mount groups those ranges so that a
 * registry's per-range cost does not dominate. */
#ifndef LAZYEROFS_MOUNT_ROUNDS_H
#define LAZYEROFS_MOUNT_ROUNDS_H

#include <stdbool.h>
#include <stdint.h>

#include "util/extents.h"

/* Bridged gaps of a round never exceed this (a gap this large holds file data, not the
 * next round's metadata). */
#define MOUNT_ROUND_MAX_GAP (64u * 1024u)

struct mount_grouping {
	uint64_t merge_gap; /* gaps up to this are always bridged (and reaching present blocks) */
	uint64_t budget;    /* bytes all budgeted bridges (gaps up to MOUNT_ROUND_MAX_GAP,
			     * smallest first) may still add; each round spends from it */
};

/* Group one round's ranges (sorted or not) in place: align them to 4 KiB blocks within the
 * image of `size` bytes, extend each to present blocks within merge_gap, merge across gaps up
 * to merge_gap, then bridge the smallest remaining gaps while g->budget lasts. present (may
 * be NULL: nothing is present) tells which bytes are there already. The result is sorted,
 * disjoint and covers every input range. -ENOMEM. */
int mount_group_round(struct util_extents *v, uint64_t size, struct mount_grouping *g,
		      bool (*present)(void *ctx, uint64_t off, uint64_t len), void *ctx);

#endif
