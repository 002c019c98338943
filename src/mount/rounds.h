/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/* How a metadata walk round's ranges become requests (internal to the mount module): the
 * EROFS reader lists exactly what it needs; the mount groups those ranges so that a
 * registry's per-range cost does not dominate. */
#ifndef LAZYEROFS_MOUNT_ROUNDS_H
#define LAZYEROFS_MOUNT_ROUNDS_H

#include <stdbool.h>
#include <stdint.h>

#include "util/extents.h"

struct mount_grouping {
	uint64_t merge_gap; /* gaps up to this are always bridged (and reaching present blocks) */
	uint64_t max_gap;   /* budgeted bridges: gaps up to this, smallest first ... */
	uint64_t budget;    /* ... while they add at most this many bytes in all; each round
			     * spends from it */
	/* With a server's cost per range (microseconds; 0: max_gap as is), the walk I/O lowers
	 * max_gap to the gap worth fetching at the link's rate (mount_round_worth_gap), and to 0
	 * until a round told that rate; merge_gap too, once it is known. */
	uint64_t range_cost_us;
};

/* What one round cost: its time, ranges and bytes as sent. */
struct mount_round_cost {
	uint64_t us, ranges, bytes;
};

/* Rounds of at least this many bytes tell the link's rate. */
#define MOUNT_RATE_MIN_BYTES (256u << 10)

/* The link's rate in bytes per second as these rounds tell it (0 while none does), and the
 * largest gap worth fetching rather than splitting a range, after these rounds: what the
 * link moves in the time one range costs the server (range_cost_us), with the link's rate
 * estimated from the rounds (model: time = fixed + the larger of ranges * range_cost and
 * bytes / rate, as the server's work on a range overlaps the bytes on the wire; the round
 * that moved the most bytes tells which; the fixed part is taken as the quickest round's
 * time). 0 while no round tells the rate. */
uint64_t mount_round_rate(const struct mount_round_cost *v, size_t n, uint64_t range_cost_us);
/* The quickest round's time (UINT64_MAX without one): the fixed part of the model above,
 * about one round trip of the link. */
uint64_t mount_round_fixed_us(const struct mount_round_cost *v, size_t n);
uint64_t mount_round_worth_gap(const struct mount_round_cost *v, size_t n,
			       uint64_t range_cost_us);

/* A metadata zone (mkfs.erofs >= 1.9 --MZ: every inode, directory and xattr from meta_offset
 * to the image's end) is fetched whole in one round before the walk, which then finds nearly
 * everything present instead of going level by level. True and the range when the image
 * seems to have one: meta_offset past 0 and the span from it at most half the image (mkfs
 * 1.5 images start their inodes at 0, mixed with the data). */
bool mount_metadata_zone(uint64_t meta_offset, uint64_t size, struct util_extent *ret);

/* Group one round's ranges (sorted or not) in place: align them to 4 KiB blocks within the
 * image of `size` bytes, extend each to present blocks within merge_gap, merge across gaps up
 * to merge_gap, then bridge the smallest remaining gaps while g->budget lasts. present (may
 * be NULL: nothing is present) tells which bytes are there already. The result is sorted,
 * disjoint and covers every input range. -ENOMEM. */
int mount_group_round(struct util_extents *v, uint64_t size, struct mount_grouping *g,
		      bool (*present)(void *ctx, uint64_t off, uint64_t len), void *ctx);

#endif
