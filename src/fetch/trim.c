// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * Trimming the entry while mounts use it (control request "trim", from `lazyerofs gc` and the
 * cache-max budget): evict the least recently read units of the blob -- holes punched, bits
 * cleared -- so that later reads fetch them again.
 *
 * What may never go, and why it cannot:
 * - Metadata: the kernel reads it without events (DESIGN fact 2), so a hole there would be
 *   read as zeros. Each mount sends the map its walk made ("pin"); units holding any of it are
 *   pinned, and nothing is trimmed before a map arrived.
 * - Anything of an entry whose mark was ever removed (verified, or complete without a
 *   digest): a superblock that opened the file unmarked never raises events again (fact 3).
 * - Bytes a read was just allowed to see: every allowed answer stamps its units' last read
 *   (fetch_trim_note) under the answer gate, before the answer; the trimmer clears bits under
 *   the gate held exclusively and only for units last read before the cutoff (at least
 *   FETCH_TRIM_COLD_MIN_MS ago), so a read allowed before the clearing finished long ago,
 *   and one after it finds the bits clear and fetches.
 * - Bytes a fetch is writing: stores wait while bits are cleared and holes punched
 *   (cache_entry_evict), and units a job in flight touches are skipped (a job sets the bits
 *   of its whole run as it goes).
 * - While the entry is verified (the hash would see holes) or filled, or while a mount is
 *   being made (its map is not in yet) or the daemon leaves.
 *
 * Locks, in order: the entry's flush_lock, its store_lock (cache_entry_evict), answer_gate,
 * d->lock.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "fetch/internal.h"
#include "fetch/trim.h"
#include "util/cleanup.h"
#include "util/config.h"
#include "util/log.h"
#include "util/macro.h"
#include "util/shared.h"
#include "util/strutil.h"
#include "util/time.h"

uint64_t fetch_trim_unit(uint64_t size)
{
	uint64_t unit = FETCH_TRIM_UNIT_MIN;

	while (DIV_ROUND_UP(size, unit) > FETCH_TRIM_MAX_UNITS)
		unit *= 2;
	return unit;
}

static int cmp_unit(const void *a, const void *b)
{
	const struct fetch_trim_unit *x = a, *y = b;

	if (x->last_read != y->last_read)
		return x->last_read < y->last_read ? -1 : 1;
	return x->index < y->index ? -1 : x->index > y->index;
}

size_t fetch_trim_pick(struct fetch_trim_unit *v, size_t n, uint64_t cutoff, uint64_t want_blocks)
{
	size_t k = 0;
	uint64_t got = 0;

	/* The cold ones first, in any order; then sort those. */
	for (size_t i = 0; i < n; i++)
		if (v[i].last_read < cutoff && v[i].blocks > 0) {
			struct fetch_trim_unit t = v[k];

			v[k++] = v[i];
			v[i] = t;
		}
	if (k > 1)
		qsort(v, k, sizeof(*v), cmp_unit);
	for (size_t i = 0; i < k; i++) {
		if (got >= want_blocks)
			return i;
		got += v[i].blocks;
	}
	return k;
}

/* ---- the daemon's state ------------------------------------------------------------------ */

int fetch_trim_init(struct fetch_daemon *d)
{
	uint64_t n;
	int r;

	const char *env = getenv("LAZYEROFS_TRIM_UNIT");
	uint64_t unit;

	struct util_error err = UTIL_ERROR_INIT;

	r = util_cache_max(&d->budget, &err);
	if (r < 0)
		log_warning("ignoring the cache budget: %s", err.message);
	d->have_budget = r > 0;
	d->trim_unit = fetch_trim_unit(d->cfg.blob.size);
	/* Tests: a smaller unit (a power of two, at least a block) trims around metadata more
	 * closely. */
	if (env && util_parse_u64(env, &unit) == 0 && unit >= CACHE_BLOCK_SIZE &&
	    !(unit & (unit - 1)) && DIV_ROUND_UP(d->cfg.blob.size, unit) <= FETCH_TRIM_MAX_UNITS)
		d->trim_unit = unit;
	n = DIV_ROUND_UP(d->cfg.blob.size, d->trim_unit);
	d->last_read = util_shared_alloc(n * 8);
	if (!d->last_read)
		return -errno;
	r = cache_bitmap_init(&d->pinned, n, true);
	if (r < 0) {
		/* Without the map of what is pinned, nothing may ever be trimmed. */
		util_shared_free(d->last_read, n * 8);
		d->last_read = NULL;
		return r;
	}
	d->trim_nunits = n;
	return 0;
}

void fetch_trim_note(struct fetch_daemon *d, uint64_t off, uint64_t len)
{
	uint64_t now = util_now_ms(), end;

	if (!d->last_read || len == 0 || off >= d->cfg.blob.size)
		return;
	end = MIN(off + MIN(len, d->cfg.blob.size - off) - 1, d->cfg.blob.size - 1);
	for (uint64_t u = off / d->trim_unit; u <= end / d->trim_unit; u++)
		__atomic_store_n(&d->last_read[u], now, __ATOMIC_RELEASE);
}

void fetch_trim_pin(struct fetch_daemon *d, const struct util_extent *v, size_t n)
{
	if (!d->last_read)
		return; /* never trimmed: nothing to pin */
	for (size_t i = 0; i < n; i++) {
		uint64_t first, end;

		if (!v[i].length || v[i].offset >= d->cfg.blob.size)
			continue;
		first = v[i].offset / d->trim_unit;
		end = DIV_ROUND_UP(MIN(v[i].offset + v[i].length, d->cfg.blob.size), d->trim_unit);
		cache_bitmap_set_range(&d->pinned, first, end - first);
	}
	SH_STORE(d->sh->pinned, 1);
}

/* Why the entry cannot be trimmed now, or NULL. Under d->lock. */
static const char *not_trimmable(struct fetch_daemon *d)
{
	if (d->fan_fd < 0 || !SH_LOAD(d->sh->marked) || SH_LOAD(d->sh->mark_dropped))
		return "its fanotify mark is gone (the entry was verified or complete): a "
		       "hole would be read as zeros";
	if (__atomic_load_n(&d->sh->state, __ATOMIC_ACQUIRE) != FETCH_STATE_RUNNING ||
	    __atomic_load_n(&d->verify_started, __ATOMIC_ACQUIRE))
		return "the entry is being verified";
	if (!SH_LOAD(d->sh->pinned))
		return "no mount sent the image's metadata map";
	if (d->leaving || d->stopping)
		return "the daemon is leaving";
	if (d->trimming)
		return "a trim is under way";
	if (d->holds || d->nensure || d->sched.pol.prefetch_all)
		return "a mount is being made, or the entry is being filled";
	if (!d->last_read)
		return "no record of reads";
	return NULL;
}

struct trim_ctx {
	struct fetch_daemon *d;
	const struct fetch_trim_unit *v;
	size_t n;
	uint64_t cutoff;
};

/* Under the entry's store and flush locks: clear the bits of the chosen units that are still
 * cold and that no fetch in flight touches, with every answer held back meanwhile. */
static int clear_cold(void *arg, uint64_t *cleared)
{
	struct trim_ctx *t = arg;
	struct fetch_daemon *d = t->d;
	struct cache_bitmap *bm = &d->entry->present;
	uint64_t per = d->trim_unit / CACHE_BLOCK_SIZE;

	pthread_rwlock_wrlock(&d->answer_gate);
	pthread_mutex_lock(&d->lock);
	for (size_t i = 0; i < t->n; i++) {
		uint64_t u = t->v[i].index, first = u * per, nblk = MIN(per, bm->nbits - first);

		if (__atomic_load_n(&d->last_read[u], __ATOMIC_ACQUIRE) >= t->cutoff ||
		    fetch_sched_overlaps_flight(&d->sched, first, nblk))
			continue;
		for (size_t w = first / 64; w <= (first + nblk - 1) / 64; w++)
			cleared[w] |=
			    cache_bitmap_clear_word(bm, w, cache_bitmap_word_mask(first, nblk, w));
	}
	pthread_mutex_unlock(&d->lock);
	pthread_rwlock_unlock(&d->answer_gate);
	return 0;
}

/* Trim about `want` bytes: 0 and *ret_freed (0 with *ret_why when nothing may go). */
static int trim(struct fetch_daemon *d, uint64_t want, uint64_t cold_ms, uint64_t *ret_freed,
		const char **ret_why)
{
	_cleanup_free_ struct fetch_trim_unit *v = NULL;
	struct cache_bitmap *bm = &d->entry->present;
	uint64_t per = d->trim_unit / CACHE_BLOCK_SIZE, now = util_now_ms(), blocks = 0;
	struct trim_ctx t = {.d = d};
	size_t n = 0;
	int r;

	*ret_freed = 0;
	pthread_mutex_lock(&d->lock);
	*ret_why = not_trimmable(d);
	if (!*ret_why)
		d->trimming = true;
	pthread_mutex_unlock(&d->lock);
	if (*ret_why)
		return 0;
	v = calloc(d->trim_nunits, sizeof(*v));
	if (!v) {
		r = -ENOMEM;
		goto out;
	}
	t.cutoff = now > cold_ms ? now - cold_ms : 0;
	for (uint64_t u = 0; u < d->trim_nunits; u++) {
		uint64_t first = u * per, nblk = MIN(per, bm->nbits - first), c = 0;

		if (cache_bitmap_test(&d->pinned, u))
			continue;
		for (uint64_t b = first; b < first + nblk;) {
			uint64_t s, len;

			if (!cache_bitmap_next_run(bm, b, first + nblk, true, &s, &len))
				break;
			c += len;
			b = s + len;
		}
		if (c)
			v[n++] = (struct fetch_trim_unit){
			    .index = u,
			    .last_read = __atomic_load_n(&d->last_read[u], __ATOMIC_ACQUIRE),
			    .blocks = c};
	}
	t.v = v;
	t.n = fetch_trim_pick(v, n, t.cutoff, DIV_ROUND_UP(want, CACHE_BLOCK_SIZE));
	if (!t.n) {
		*ret_why = "nothing unread for long enough";
		r = 0;
		goto out;
	}
	r = cache_entry_evict(d->entry, clear_cold, &t, &blocks);
	*ret_freed = blocks * CACHE_BLOCK_SIZE;
	if (blocks) {
		SH_ADD(d->sh->trimmed_bytes, *ret_freed);
		SH_ADD(d->sh->trims, 1);
	}
	log_info("trimmed %" PRIu64 " blocks (%" PRIu64 " KiB) unread for %" PRIu64
		 " s or more, of %zu cold units%s%s",
		 blocks, *ret_freed >> 10, cold_ms / 1000, t.n, r < 0 ? ": " : "",
		 r < 0 ? strerror(-r) : "");
out:
	pthread_mutex_lock(&d->lock);
	d->trimming = false;
	pthread_mutex_unlock(&d->lock);
	return r;
}

/* cache-max is applied before a mount makes a new entry (mount_cache_max_apply), and while
 * reads fill the cache, here: the cache grew since the last look (every FETCH_BUDGET_MS, or
 * every tick while the cache disk is nearly full), unused entries go, least recently used
 * first, until it is within its budget (an unused 20 MiB entry was kept while the reads of a
 * mounted image failed on the disk it filled, the cache 7 MiB over its budget of 32); then,
 * still over it, this entry gives back what was not read for FETCH_TRIM_COLD_MS (at most
 * every FETCH_BUDGET_TRIM_MS). Entries other daemons use are theirs to trim (gc asks). */
#define FETCH_BUDGET_MS	     1000
#define FETCH_BUDGET_TRIM_MS 10000

void fetch_budget_keep(struct fetch_daemon *d, uint64_t now_ms)
{
	struct cache_gc_hooks hooks = {.each = cache_gc_log_budget};
	uint64_t fetched = SH_LOAD(d->sh->fetched_bytes), left, freed;
	struct cache_gc_result res;
	const char *why = NULL;
	bool tight;
	int r;

	if (!d->have_budget || fetched == d->budget_fetched)
		return;
	pthread_mutex_lock(&d->lock);
	tight = fetch_sched_room_short(&d->sched);
	pthread_mutex_unlock(&d->lock);
	if (!tight && now_ms < d->budget_at_ms + FETCH_BUDGET_MS)
		return;
	d->budget_fetched = fetched;
	d->budget_at_ms = now_ms;
	r = cache_gc(d->cfg.cache_dir, &d->budget, false, &hooks, &res);
	if (r < 0) {
		log_debug("cache-max: looking at the cache: %s", strerror(-r));
		return;
	}
	left = res.total - MIN(res.freed, res.total);
	if (left <= res.budget || now_ms < d->budget_trim_ms + FETCH_BUDGET_TRIM_MS)
		return;
	d->budget_trim_ms = now_ms;
	(void)trim(d, left - res.budget, FETCH_TRIM_COLD_MS, &freed, &why);
}

/* {"op":"trim","bytes":N[,"cold_ms":M]} -> {"ok":true,"freed":F[,"why":"..."]} */
int fetch_trim_request(struct fetch_daemon *d, int cfd, json_t *req)
{
	_cleanup_json_ json_t *o = NULL;
	uint64_t want = 0, cold = FETCH_TRIM_COLD_MS, freed = 0;
	const char *why = NULL;
	int r;

	if (util_json_get_u64(req, "bytes", &want) < 0)
		return fetch_reply_error(cfd, EINVAL, "trim: 'bytes' must be a byte count");
	(void)util_json_get_u64(req, "cold_ms", &cold);
	cold = MAX(cold, (uint64_t)FETCH_TRIM_COLD_MIN_MS);
	r = trim(d, want, cold, &freed, &why);
	if (r < 0)
		return fetch_reply_error(cfd, -r, "trim: %s", strerror(-r));
	o = json_pack("{s:b,s:I}", "ok", 1, "freed", (json_int_t)freed);
	if (o && why)
		json_object_set_new(o, "why", json_string(why));
	return o ? fetch_proto_send(cfd, o, -1) : -ENOMEM;
}

void fetch_trim_status(struct fetch_daemon *d, json_t *o)
{
	const char *why;

	pthread_mutex_lock(&d->lock);
	why = not_trimmable(d);
	pthread_mutex_unlock(&d->lock);
	json_object_set_new(o, "trimmed_bytes",
			    json_integer((json_int_t)SH_LOAD(d->sh->trimmed_bytes)));
	json_object_set_new(o, "trims", json_integer((json_int_t)SH_LOAD(d->sh->trims)));
	json_object_set_new(o, "pinned_units",
			    json_integer((json_int_t)cache_bitmap_count(&d->pinned)));
	json_object_set_new(o, "trimmable", json_boolean(!why));
	if (why)
		json_object_set_new(o, "trim_blocked", json_string(why));
}
