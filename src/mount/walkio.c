// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * The metadata walker's view of the cache file, and the walk's one record of presence: the
 * blocks an ensure batch made present (a bitmap; the walker asks it through io->present).
 * Each round the walker lists what it needs; here those ranges are grouped into requests
 * (mount/rounds.c) and sent to the daemon as ensure batches, in the background.
 *
 * Rounds are pipelined: the walk's levels form a chain (a directory's blocks name its
 * children), but a round's transfer need not hold the chain up. On a slow link a round goes
 * out as several batches (parts of it, so that some arrive early), run by a small pool of
 * workers, each on its own connection to the daemon (a handle is not thread-safe). A round
 * returns to the walker as soon as one batch is done (erofs.h allows it): the walker goes on
 * with what arrived, and lists again what it still lacks; what is on its way already is not
 * asked for twice. Everything below the pool -- presence, loading, the record -- happens on
 * the walker's thread, as each batch is taken back.
 *
 * Every read of the (marked) data file raises
 * one FAN_PRE_ACCESS event, and even a fast-path answer costs a round trip through the daemon
 * (tens of microseconds, far more on a loaded machine); the walker of a root filesystem makes
 * tens of thousands of small reads. So each round is made present (one ensure batch),
 * then read in a few large preads -- one event each -- into memory, and the walker's small
 * reads are served from there. A present block not loaded (bridged, or dropped) loads on its
 * first read; anything else is read directly (the daemon fetches it if needed). Memory is
 * capped; the oldest rounds are dropped first.
 *
 * Rounds load through the daemon's pre-mark read fd when it gives one (fetch_data_fd): those
 * reads raise no event at all. That fd reads zeros from holes, so it reads nothing but the
 * blocks of ranges an ensure batch has just confirmed present; every other read goes through
 * the marked fd, whose events make the daemon fetch.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "cache/cache.h"
#include "mount/rounds.h"
#include "mount/walkio.h"
#include "util/array.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/macro.h"
#include "util/u64map.h"
#include "util/time.h"

#define WIO_BLOCK 4096ULL
#define WIO_PREAD_MAX (8ULL << 20) /* one event per pread: large, but bounded */
#define WIO_MAX_COSTS 64	   /* rounds whose cost tells the link's rate */

/*
 * The pipeline. A batch costs the registry ~3 ms and each of its ranges ~0.3 ms (loopback);
 * splitting a round costs a request per part, worth it when a part takes the link longer
 * than that. Parts are at least the link's rate times WIO_BATCH_COST_US and WIO_PART_MIN, so
 * on loopback (1-2 GB/s) a round of a few MiB stays one batch, as before; on a slow link they
 * are a tenth of the link's bandwidth-delay product (100 Mbit/s, RTT 50 ms: ~70 KiB), so that
 * the first parts of a level arrive while the rest is on the wire, and the walk asks for the
 * next level meanwhile. Up to WIO_WORKERS batches run at once (what keeps the link full while
 * new ones wait their first round trip); the others wait their turn, oldest first. Until the
 * rounds tell the link's rate, a round is one batch.
 *
 * Splitting hides a link's round trip, time in which nothing moves; a registry on loopback
 * answers the quickest round in a few ms, and that time is the registry's and the daemon's
 * work (two cores here), which more batches only add to (measured: minbase lz4hc 210 -> 270
 * ms, plain 345 -> 465 ms with parts of ~100 KiB). So rounds are split only where the
 * quickest round took WIO_SPLIT_RTT_US or more: a network's round trip, not work. A registry
 * on a loaded machine takes 18-25 ms for the first requests on its own (its log's durations,
 * minbase on loopback): at 20 ms, 1 mount in 8 split its rounds there and took 474 ms
 * instead of 230-300 (32 batches instead of 6-7); a link with a round trip of 50 ms answers
 * the quickest round in 65 ms or more.
 * (Measured on Debian minbase over 100 Mbit/s + RTT 50 ms: parts of 10-25 % of the BDP, 8-16
 * workers, oldest or newest round first, with or without a cap on the bytes running: all
 * within the noise of each other; 4 workers: slower.)
 */
#define WIO_WORKERS 8	      /* batches running at once, one connection each */
#define WIO_MAX_JOBS 32	      /* batches sent and not yet taken back */
#define WIO_PART_MIN (64ULL << 10)
#define WIO_PART_BDP_DIV 10    /* parts: this fraction of the bandwidth-delay product */
#define WIO_BATCH_COST_US 3000 /* what one more batch costs a registry */
#define WIO_SPLIT_RTT_US 35000 /* rounds are split only over a link this slow to answer */
/* Parts of a metadata map sent before any round: on loopback 1, 2, 4 or 8 were within the
 * noise of each other (Debian minbase lz4hc, 4 mounts each: 157-295 ms); more parts let a
 * real link's connections ramp up together. */
#define WIO_AHEAD_PARTS 4

enum wio_job_state { JOB_QUEUED, JOB_RUNNING, JOB_DONE };

/* One ensure batch. The walker's thread fills it before queueing it and reads the results
 * once it is JOB_DONE (both under the lock); a worker owns it while JOB_RUNNING. */
struct wio_job {
	struct util_extents v;	  /* the ranges, grouped: what the batch makes present */
	struct util_extents load; /* what of them the walk asked for: loaded once done */
	struct util_extents need; /* for the daemon's record: late blocks, then load */
	uint64_t seq;
	enum wio_job_state state; /* lock */
	bool shared;		  /* lock: another batch ran during part of it */
	uint64_t queued_us, start_us, done_us;
	bool have_fetched, replay; /* the daemon's counters around it: */
	uint64_t fetched;	   /* bytes fetched meanwhile (its own, and others') */
	int r;
	struct util_error err;
};

struct wio_worker {
	struct mount_walkio *w;
	struct fetch_handle *h; /* its own connection; NULL without a daemon (unit tests) */
	pthread_t thread;
};

/* Presence is tracked per cache block: a block-aligned span of an ensured range is present. */
_Static_assert(WIO_BLOCK == CACHE_BLOCK_SIZE, "walk blocks are cache blocks");

/*
 * The loaded bytes live in large chunks advised for transparent huge pages: on a virtual
 * machine a page fault can cost 10 us or more, and faulting in 4 KiB pages one by one cost
 * more than reading the bytes (Debian minbase lz4hc: 7.5 MiB in 500 ranges, 35-55 ms of
 * loading with a malloc per range). Buffers are carved from the newest chunk and released
 * oldest first (the eviction order), so a chunk is unmapped when its last buffer goes.
 *
 * Even a huge page can take 10 ms when the kernel must compact memory for it (0.3 ms
 * otherwise). So the first chunk is large (an eighth of the image, 4-64 MiB: Debian minbase
 * loads 7.5 and 17 MiB) and a thread populates it while the walk waits for the network.
 */
#define WIO_CHUNK (4ULL << 20)
#define WIO_HUGE (2ULL << 20)
#define WIO_RESERVE_MIN (4ULL << 20)
#define WIO_RESERVE_MAX (64ULL << 20)

struct wio_chunk {
	uint8_t *base; /* NULL once unmapped */
	size_t size, used, live;
};

struct wio_buf {
	uint8_t *data;
	uint64_t off, len; /* block-aligned */
	size_t chunk;	   /* index into the chunks */
};

struct mount_walkio {
	int fd;	     /* marked: reads raise events (the daemon fetches what is absent) */
	int premark; /* the daemon's pre-mark read fd, or -1: only for ensured blocks */
	struct fetch_handle *h;
	uint64_t size, cap;
	struct wio_buf *bufs; /* oldest first */
	size_t nbufs, abufs;
	struct wio_chunk *chunks; /* oldest first; the last one takes new buffers */
	size_t nchunks, achunks;
	pthread_t populater; /* populating chunk 0 while `populating` */
	bool populating;
	uint8_t *reserve; /* chunk 0, as the thread sees it (the chunks array may move) */
	size_t reserve_size;
	atomic_bool stop_populating;
	uint64_t bytes;       /* sum of buffer lengths */
	struct util_u64map map; /* block -> its bytes in one of the buffers */
	struct cache_bitmap present; /* blocks an ensure batch made present */
	struct mount_grouping grouping;
	struct util_extents round; /* the current round, grouped */
	/* Blocks read without a round asking for them (present since a gap was bridged): what
	 * the walk needed all the same, for the daemon's record (fetch_ensure_needed's need), at
	 * the next round or mount_walkio_flush. */
	struct util_extents late;
	struct mount_round_cost costs[WIO_MAX_COSTS]; /* the first rounds': what they cost */
	size_t ncosts;
	struct mount_walkio_stats st;
	struct util_error *err; /* the daemon's words when a round fails; may be NULL */

	/* The batches on their way. jobs/njobs change on the walker's thread, under the lock
	 * (workers look for queued ones there). */
	pthread_mutex_t lock;
	pthread_cond_t work_cond; /* a batch was queued, or stop */
	pthread_cond_t done_cond; /* a batch is done */
	struct wio_job *jobs[WIO_MAX_JOBS];
	size_t njobs;
	uint64_t seq;
	size_t running; /* lock: batches a worker runs now */
	uint64_t t0;	/* for the log: when the walk I/O began */
	bool stop;	/* lock: workers leave */
	struct wio_worker workers[WIO_WORKERS];
	size_t nworkers;
	struct cache_bitmap asked; /* blocks some batch fetches: present, or on their way */
	struct util_extents fresh; /* a round's blocks not asked for before */
};

/* A 2 MiB-aligned anonymous mapping of `size` (a multiple of 2 MiB), advised for huge pages. */
static uint8_t *chunk_map(size_t size)
{
	uint8_t *p = mmap(NULL, size + WIO_HUGE, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uintptr_t a;

	if (p == MAP_FAILED)
		return NULL;
	a = ROUND_UP((uintptr_t)p, WIO_HUGE);
	if (a > (uintptr_t)p)
		munmap(p, a - (uintptr_t)p);
	munmap((uint8_t *)a + size, (uintptr_t)p + WIO_HUGE - a);
	/* Best effort: without huge pages the chunk still works, page by page. */
	(void)madvise((void *)a, size, MADV_HUGEPAGE);
	return (uint8_t *)a;
}

static int buf_alloc(struct mount_walkio *w, struct wio_buf *b)
{
	struct wio_chunk *c = w->nchunks ? &w->chunks[w->nchunks - 1] : NULL;

	if (!c || !c->base || c->size - c->used < b->len) {
		size_t size = (size_t)ROUND_UP(MAX(b->len, WIO_CHUNK), WIO_HUGE);

		if (UTIL_ARRAY_RESERVE(w->chunks, w->achunks, w->nchunks, 16) < 0)
			return -ENOMEM;
		c = &w->chunks[w->nchunks];
		*c = (struct wio_chunk){ .base = chunk_map(size), .size = size };
		if (!c->base)
			return -ENOMEM;
		w->nchunks++;
	}
	b->data = c->base + c->used;
	b->chunk = w->nchunks - 1;
	c->used += (size_t)b->len;
	c->live++;
	return 0;
}

/* Fault in chunk 0 ahead of its use, one huge page at a time, until told to stop. */
static void *populate_main(void *arg)
{
	struct mount_walkio *w = arg;

	for (size_t off = 0; off < w->reserve_size; off += WIO_HUGE) {
		if (atomic_load_explicit(&w->stop_populating, memory_order_relaxed))
			break;
		/* Faults the pages in as a write would, without changing any byte: the walk may
		 * be filling them at the same time. */
		if (madvise(w->reserve + off, MIN((size_t)WIO_HUGE, w->reserve_size - off),
			    MADV_POPULATE_WRITE) < 0)
			break;
	}
	return NULL;
}

static void populate_stop(struct mount_walkio *w)
{
	if (!w->populating)
		return;
	atomic_store(&w->stop_populating, true);
	pthread_join(w->populater, NULL);
	w->populating = false;
}

static void chunk_unmap(struct mount_walkio *w, size_t i)
{
	struct wio_chunk *c = &w->chunks[i];

	if (i == 0)
		populate_stop(w);
	if (c->base)
		munmap(c->base, c->size);
	c->base = NULL;
}

static void buf_release(struct mount_walkio *w, struct wio_buf *b)
{
	struct wio_chunk *c = &w->chunks[b->chunk];

	/* The newest chunk stays for the buffers still to come. */
	if (--c->live == 0 && b->chunk + 1 < w->nchunks)
		chunk_unmap(w, b->chunk);
	b->data = NULL;
}

/* The first chunk, and the thread that populates it. */
static int reserve_init(struct mount_walkio *w)
{
	size_t size = (size_t)ROUND_UP(w->size / 8, WIO_HUGE);

	size = (size_t)MAX(MIN((uint64_t)size, MIN(WIO_RESERVE_MAX, w->cap)), WIO_RESERVE_MIN);
	if (UTIL_ARRAY_RESERVE(w->chunks, w->achunks, w->nchunks, 16) < 0)
		return -ENOMEM;
	w->chunks[0] = (struct wio_chunk){ .base = chunk_map(size), .size = size };
	if (!w->chunks[0].base)
		return -ENOMEM;
	w->nchunks = 1;
	w->reserve = w->chunks[0].base;
	w->reserve_size = size;
	atomic_init(&w->stop_populating, false);
	if (pthread_create(&w->populater, NULL, populate_main, w) == 0)
		w->populating = true;
	else
		log_debug("no thread to populate the walk's memory ahead: %m");
	return 0;
}

static const uint8_t *map_get(const struct mount_walkio *w, uint64_t block)
{
	const uint64_t *p = util_u64map_find(&w->map, block);

	return p ? (const uint8_t *)(uintptr_t)*p : NULL;
}

static int map_add_buf(struct mount_walkio *w, const struct wio_buf *b)
{
	uint64_t n = b->len / WIO_BLOCK;
	int r = util_u64map_reserve(&w->map, w->map.n + (size_t)n);

	for (uint64_t k = 0; k < n && r >= 0; k++) {
		uint64_t *p;
		bool fresh;

		/* a block some buffer holds already: the newest copy (the older buffer is the
		 * first to be dropped, and takes only its own entries with it) */
		r = util_u64map_add(&w->map, b->off / WIO_BLOCK + k, &fresh, &p);
		if (r >= 0)
			*p = (uintptr_t)(b->data + k * WIO_BLOCK);
	}
	return r;
}

/* Drop the oldest buffers until `need` more bytes fit under the cap, and the blocks the map
 * has from them (those a newer buffer holds point there already). Not a rebuild of the map
 * from every buffer left: with the cap reached, that was done for every load (a mount of an
 * image with 1.4 GiB of metadata spent 4.5 minutes of CPU on it). */
static int make_room(struct mount_walkio *w, uint64_t need)
{
	size_t drop = 0;

	while (drop < w->nbufs && w->bytes + need > w->cap) {
		const struct wio_buf *b = &w->bufs[drop];

		for (uint64_t k = 0; k < b->len / WIO_BLOCK; k++) {
			const uint64_t *p = util_u64map_find(&w->map, b->off / WIO_BLOCK + k);

			if (p && *p == (uintptr_t)(b->data + k * WIO_BLOCK))
				util_u64map_remove(&w->map, b->off / WIO_BLOCK + k);
		}
		w->bytes -= b->len;
		buf_release(w, &w->bufs[drop]);
		drop++;
	}
	if (!drop)
		return 0;
	memmove(w->bufs, w->bufs + drop, (w->nbufs - drop) * sizeof(*w->bufs));
	w->nbufs -= drop;
	w->st.evicted += drop;
	return 0;
}

/* Whether every block of [off, off + len) is loaded already. */
static bool loaded(const struct mount_walkio *w, uint64_t off, uint64_t len)
{
	for (uint64_t b = off / WIO_BLOCK; b * WIO_BLOCK < off + len; b++)
		if (!map_get(w, b))
			return false;
	return true;
}

/* Load [off, off + len): through the pre-mark fd only when `ensured` (every block of it was
 * confirmed present by the batch just returned). */
static int load_range(struct mount_walkio *w, uint64_t off, uint64_t len, bool ensured)
{
	int fd = ensured && w->premark >= 0 ? w->premark : w->fd;
	struct wio_buf b;
	int r;

	if (loaded(w, off, len))
		return 0;
	if (len > w->cap)
		return 0; /* too big to keep: the walker's reads of it go straight to the file */
	r = make_room(w, len);
	if (r < 0)
		return r;
	if (UTIL_ARRAY_RESERVE(w->bufs, w->abufs, w->nbufs, 64) < 0)
		return -ENOMEM;
	b.off = off;
	b.len = len;
	/* (Mapping the page cache through the pre-mark fd instead of copying measured no
	 * better: the walker's reads then paid the page faults the copy saved.) */
	r = buf_alloc(w, &b);
	if (r < 0)
		return r;
	for (uint64_t done = 0; done < len;) {
		uint64_t n = MIN(len - done, WIO_PREAD_MAX);

		r = util_pread_full(fd, b.data + done, (size_t)n, off + done);
		if (r < 0) {
			buf_release(w, &b);
			return r;
		}
		w->st.preads++;
		if (fd != w->fd)
			w->st.premark_preads++;
		done += n;
	}
	r = map_add_buf(w, &b);
	if (r < 0) {
		buf_release(w, &b);
		return r;
	}
	w->bufs[w->nbufs++] = b;
	w->bytes += len;
	w->st.loaded_bytes += len;
	return 0;
}

/* Are all blocks of [off, off + len) set in bm (present, or asked for)? An empty range is; one
 * past the image's end is not. */
static bool blocks_set(const struct mount_walkio *w, const struct cache_bitmap *bm, uint64_t off,
		       uint64_t len)
{
	uint64_t end;

	if (len == 0)
		return true;
	if (util_add_overflow_u64(off, len, &end) || end > w->size)
		return false;
	return cache_bitmap_test_range(bm, off / WIO_BLOCK,
				       DIV_ROUND_UP(end, WIO_BLOCK) - off / WIO_BLOCK);
}

/* Set the blocks of [off, off + len) (within the image) in bm. */
static void set_blocks(const struct mount_walkio *w, struct cache_bitmap *bm, uint64_t off,
		       uint64_t len)
{
	uint64_t first, n;

	if (cache_blocks_of(off, len, w->size, &first, &n))
		cache_bitmap_set_range(bm, first, n);
}

static bool wio_present(void *ctx, uint64_t off, uint64_t len)
{
	const struct mount_walkio *w = ctx;

	return blocks_set(w, &w->present, off, len);
}

/* Has the daemon replayed a startup profile (or is it replaying one)? */
static bool replay_seen(const struct fetch_status *s)
{
	return s->profile_state[0] && strcmp(s->profile_state, "none") != 0;
}

static void job_free(struct wio_job *job)
{
	if (!job)
		return;
	util_extents_free(&job->v);
	util_extents_free(&job->load);
	util_extents_free(&job->need);
	free(job);
}

/* The oldest queued batch (lock held), or NULL. */
static struct wio_job *next_queued(struct mount_walkio *w)
{
	struct wio_job *best = NULL;

	for (size_t i = 0; i < w->njobs; i++)
		if (w->jobs[i]->state == JOB_QUEUED && (!best || w->jobs[i]->seq < best->seq))
			best = w->jobs[i];
	return best;
}

static void run_job(struct wio_worker *k, struct wio_job *job)
{
	struct fetch_status s0, s1;
	bool counted = k->w->grouping.range_cost_us && fetch_status(k->h, &s0) >= 0;

	job->start_us = util_now_us();
	job->r = fetch_ensure_needed(k->h, job->v.v, job->v.n, job->need.v, job->need.n,
				     &job->err);
	job->done_us = util_now_us();
	if (counted && job->r >= 0 && fetch_status(k->h, &s1) >= 0) {
		job->have_fetched = true;
		job->fetched = s1.fetched_bytes - MIN(s1.fetched_bytes, s0.fetched_bytes);
		job->replay = replay_seen(&s0) || replay_seen(&s1);
	}
}

static void *worker_main(void *arg)
{
	struct wio_worker *k = arg;
	struct mount_walkio *w = k->w;

	pthread_mutex_lock(&w->lock);
	for (;;) {
		struct wio_job *job;

		while (!w->stop && !(job = next_queued(w)))
			pthread_cond_wait(&w->work_cond, &w->lock);
		if (w->stop)
			break;
		job->state = JOB_RUNNING;
		/* batches that overlap share the link: none of them times it alone */
		if (w->running) {
			job->shared = true;
			for (size_t i = 0; i < w->njobs; i++)
				if (w->jobs[i]->state == JOB_RUNNING)
					w->jobs[i]->shared = true;
		}
		w->running++;
		pthread_mutex_unlock(&w->lock);
		run_job(k, job);
		pthread_mutex_lock(&w->lock);
		w->running--;
		job->state = JOB_DONE;
		pthread_cond_broadcast(&w->done_cond);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

/* Workers for the queued batches, up to WIO_WORKERS; each connects to the daemon here. */
static int spawn_workers(struct mount_walkio *w)
{
	while (w->nworkers < MIN((size_t)WIO_WORKERS, w->njobs)) {
		struct wio_worker *k = &w->workers[w->nworkers];
		int r;

		*k = (struct wio_worker){ .w = w };
		if (w->h) {
			r = fetch_connect(w->h->socket_path, &k->h);
			if (r < 0) {
				if (w->nworkers)
					return 0; /* fewer workers: batches wait their turn */
				return util_err_set(w->err, r, "connecting to the daemon: %s",
						    strerror(-r));
			}
		}
		r = pthread_create(&k->thread, NULL, worker_main, k);
		if (r != 0) {
			fetch_handle_free(k->h);
			if (w->nworkers)
				return 0;
			return -r;
		}
		w->nworkers++;
	}
	return 0;
}

static void stop_workers(struct mount_walkio *w)
{
	pthread_mutex_lock(&w->lock);
	w->stop = true;
	pthread_cond_broadcast(&w->work_cond);
	pthread_mutex_unlock(&w->lock);
	for (size_t i = 0; i < w->nworkers; i++) {
		pthread_join(w->workers[i].thread, NULL);
		fetch_handle_free(w->workers[i].h);
	}
	w->nworkers = 0;
}

static bool wio_asked(void *ctx, uint64_t off, uint64_t len)
{
	const struct mount_walkio *w = ctx;

	return blocks_set(w, &w->asked, off, len);
}

/* A batch of the grouped round's ranges v[0, n), loading the fresh blocks within them; with
 * late, it carries the late blocks to the daemon's record. */
static int job_new(struct mount_walkio *w, const struct util_extent *v, size_t n, bool late,
		   struct wio_job **ret)
{
	uint64_t start = v[0].offset, end = v[n - 1].offset + v[n - 1].length;
	struct wio_job *job = calloc(1, sizeof(*job));
	int r = 0;

	if (!job)
		return -ENOMEM;
	util_extents_init(&job->v);
	util_extents_init(&job->load);
	util_extents_init(&job->need);
	for (size_t i = 0; i < n && r >= 0; i++)
		r = util_extents_add(&job->v, v[i].offset, v[i].length);
	for (size_t i = 0; late && i < w->late.n && r >= 0; i++)
		r = util_extents_add(&job->need, w->late.v[i].offset, w->late.v[i].length);
	for (size_t i = 0; i < w->fresh.n && r >= 0; i++) {
		const struct util_extent *e = &w->fresh.v[i];

		if (e->offset < start || e->offset >= end)
			continue;
		r = util_extents_add(&job->load, e->offset, e->length);
		if (r >= 0)
			r = util_extents_add(&job->need, e->offset, e->length);
	}
	if (r < 0) {
		job_free(job);
		return r;
	}
	*ret = job;
	return 0;
}

/* How many bytes a part of a round is: see WIO_PART_MIN; UINT64_MAX while the rate is unknown */
static uint64_t part_size(const struct mount_walkio *w, uint64_t range_cost_us)
{
	uint64_t rate = mount_round_rate(w->costs, w->ncosts, range_cost_us);
	uint64_t fixed = mount_round_fixed_us(w->costs, w->ncosts);

	if (!rate)
		return UINT64_MAX;
	if (fixed < WIO_SPLIT_RTT_US)
		return UINT64_MAX;
	return MAX(MAX(WIO_PART_MIN, rate / 1000000 * WIO_BATCH_COST_US),
		   rate / 1000 * (fixed / 1000) / WIO_PART_BDP_DIV);
}

/* Send what of in[] no batch fetches yet: grouped, then cut into parts (at range boundaries).
 * A map of what the walk will need (ahead) is not a level the walk waits for before the
 * next: all of it goes out at once, in WIO_AHEAD_PARTS parts before any round told the
 * link's rate, else in a part for each worker over a link slow to answer, or over a quick one
 * (loopback) as one batch on this thread -- or in WIO_AHEAD_PARTS parts when `spread`: the
 * lz4hc minbase's map, bridged into ~155 ranges and 11 MiB, in 58-74 ms of metadata instead of
 * 74 (the registry's work is per range, and parts share it out over its CPUs), while the
 * plain one's, ~340 ranges and 34 MiB, mostly bytes, took 149-162 ms in parts, 127-131 ms in
 * one. */
static int submit_round(struct mount_walkio *w, const struct util_extent *in, size_t nin,
			bool ahead, bool spread)
{
	uint64_t part = UINT64_MAX, acc = 0;
	size_t from = 0;
	const struct util_extent *v;
	size_t n;
	int r;

	if (w->njobs == WIO_MAX_JOBS)
		return 0; /* the walk lists it again after the next batch is back */
	w->fresh.n = 0;
	for (size_t i = 0; i < nin; i++) {
		uint64_t b = in[i].offset / WIO_BLOCK, last = DIV_ROUND_UP(in[i].offset +
									 in[i].length, WIO_BLOCK);

		if (!util_range_within(in[i].offset, in[i].length, w->size))
			return -EINVAL;
		for (; b < last; b++) {
			if (cache_bitmap_test(&w->asked, b))
				continue;
			r = util_extents_add(&w->fresh, b * WIO_BLOCK,
					     MIN(WIO_BLOCK, w->size - b * WIO_BLOCK));
			if (r < 0)
				return r;
		}
	}
	util_extents_merge(&w->fresh, 0);
	if (!w->fresh.n)
		return 0;
	w->round.n = 0;
	for (size_t i = 0; i < w->fresh.n; i++) {
		r = util_extents_add(&w->round, w->fresh.v[i].offset, w->fresh.v[i].length);
		if (r < 0)
			return r;
	}
	/* what is on its way counts as present for grouping: ranges reach up to it */
	if (w->grouping.range_cost_us) {
		struct mount_grouping g = w->grouping;
		uint64_t worth = mount_round_worth_gap(w->costs, w->ncosts, g.range_cost_us);

		/* Once the rate is known, a slow link merges across less than the default gap
		 * too; until a round told it, nothing is bridged, and what goes ahead of the
		 * first round (a map) goes as listed: metadata blocks lie a block apart where a
		 * small file's data is between them (the lz4hc minbase: 0.6 of 6.4 MiB). Over 100
		 * Mbit/s + RTT 50 ms its mount took 656 instead of 715 ms (median of 6,
		 * interleaved), the programs row 0.21 instead of 0.22. */
		g.max_gap = MIN(g.max_gap, worth);
		if (!w->st.batches)
			g.merge_gap = 0;
		else if (worth)
			g.merge_gap = MIN(g.merge_gap, MAX(worth, WIO_BLOCK));
		/* Bridges add at most the budget the walk starts with (a share of the image)
		 * plus as much as the walk itself asks for: an image of many small files has
		 * much of its bytes in inode blocks and inline data (200,000 files of 0-10 KB:
		 * 243 MiB of 620), and a quarter of the image left it 8,400 ranges on loopback
		 * (a 5.2-5.9 s mount, 3.2-3.8 s of it waiting for them); bridging the gaps worth
		 * it leaves 900-2,400 (2.3-3.4 s). Bytes a gap adds are still priced by the
		 * link's rate. */
		if (util_add_overflow_u64(g.budget, util_extents_total(&w->fresh), &g.budget))
			g.budget = UINT64_MAX;
		r = mount_group_round(&w->round, w->size, &g, wio_asked, w);
		if (r >= 0) /* a round that failed is listed again: its bytes count then */
			w->grouping.budget = g.budget;
		w->st.bridge_gap = g.max_gap;
		part = part_size(w, g.range_cost_us);
		if (ahead && (!w->ncosts || part != UINT64_MAX || spread))
			part =
			    MAX(WIO_PART_MIN,
				DIV_ROUND_UP(util_extents_total(&w->round),
					     part != UINT64_MAX ? WIO_WORKERS : WIO_AHEAD_PARTS));
	} else {
		r = mount_group_round(&w->round, w->size, &w->grouping, wio_asked, w);
	}
	if (r < 0)
		return r;
	v = w->round.v;
	n = w->round.n;
	for (size_t i = 0; i < n; i++) {
		struct wio_job *job;

		acc += v[i].length;
		/* the last free slot takes the rest */
		if (i + 1 < n && (w->njobs + 1 == WIO_MAX_JOBS || acc < part))
			continue;
		r = job_new(w, v + from, i + 1 - from, from == 0, &job);
		if (r < 0)
			return r;
		for (size_t k = from; k <= i; k++) {
			set_blocks(w, &w->asked, v[k].offset, v[k].length);
			w->st.ensured_bytes += v[k].length;
		}
		w->st.batches++;
		w->st.ranges += i + 1 - from;
		job->queued_us = util_now_us();
		if (part == UINT64_MAX) {
			/* Not split (loopback, or the rate unknown yet): no pipeline to feed, so
			 * the batch runs here, on the walk's own connection, with no thread to
			 * wake. (Through a worker, the daemon's answers came later: minbase on
			 * loopback took ~10 % longer.) */
			struct wio_worker self = { .w = w, .h = w->h };

			run_job(&self, job);
			job->state = JOB_DONE;
		}
		pthread_mutex_lock(&w->lock);
		job->seq = w->seq++;
		w->jobs[w->njobs++] = job;
		pthread_cond_signal(&w->work_cond);
		pthread_mutex_unlock(&w->lock);
		from = i + 1;
		acc = 0;
	}
	w->late.n = 0;
	return part == UINT64_MAX ? 0 : spawn_workers(w);
}

/* Take a done batch back: presence, the link's rate, loading. */
static int take_back(struct mount_walkio *w, struct wio_job *job)
{
	const struct util_extent *v = job->v.v;
	size_t n = job->v.n;
	uint64_t t1 = util_now_us();
	int r;

	if (job->r < 0) {
		if (util_err_has_msg(&job->err))
			util_err_set(w->err, job->r, "%s", job->err.message);
		return job->r;
	}
	/* A batch that overlapped another shared the link (and the server) with it: its time
	 * is not what its bytes cost, and would tell a rate too low by up to the number in
	 * flight. Batches that ran alone are samples -- the first rounds, and later ones
	 * wherever the walk waited for all that it had asked. */
	if (w->ncosts < WIO_MAX_COSTS && !job->shared) {
		struct mount_round_cost c = { .us = job->done_us - job->start_us, .ranges = n };
		bool alone = true;

		c.bytes = util_extents_total(&job->v);
		if (job->have_fetched) {
			/* A startup profile's replay (or more fetched than the round asked
			 * for: other readers of the entry) shares the link, and may have made
			 * the round's bytes present before it asked: its time tells nothing of
			 * the link's rate. */
			alone = job->fetched <= c.bytes && !job->replay;
			c.bytes = MIN(c.bytes, job->fetched);
		}
		if (alone)
			w->costs[w->ncosts++] = c;
	}
	for (size_t i = 0; i < n; i++)
		set_blocks(w, &w->present, v[i].offset, v[i].length);
	/* Load what the walk asked for, not the gaps bridged around it (file data, mostly): a
	 * bridged block it needs later is present and loads on its first read. */
	for (size_t i = 0; i < job->load.n; i++) {
		const struct util_extent *e = &job->load.v[i];
		uint64_t start = ROUND_DOWN(e->offset, WIO_BLOCK);
		uint64_t end = MIN(ROUND_UP(e->offset + e->length, WIO_BLOCK),
				   ROUND_UP(w->size, WIO_BLOCK));

		/* A tail beyond the file's end reads short: keep whole blocks inside it. */
		if (end > w->size)
			end = ROUND_DOWN(w->size, WIO_BLOCK);
		if (end <= start)
			continue;
		/* Blocks are present or absent as a whole (the cache's 4 KiB bitmap): the
		 * block-aligned span is as present as the range. */
		r = load_range(w, start, end - start, true);
		if (r < 0)
			return r;
	}
	w->st.load_us += util_now_us() - t1;
	log_debug("metadata batch %llu: %zu range(s), %llu KiB from %llu: queued at %llu ms, "
		  "ran %llu..%llu ms%s, taken back at %llu ms, load %llu us",
		  (unsigned long long)job->seq, n,
		  (unsigned long long)util_extents_total(&job->v) >> 10,
		  (unsigned long long)v[0].offset,
		  (unsigned long long)(job->queued_us - w->t0) / 1000,
		  (unsigned long long)(job->start_us - w->t0) / 1000,
		  (unsigned long long)(job->done_us - w->t0) / 1000,
		  job->shared ? " (shared)" : "", (unsigned long long)(t1 - w->t0) / 1000,
		  (unsigned long long)(util_now_us() - t1));
	return 0;
}

/* Wait until a batch is done (or, with all, every one), and take back every done one. */
static int wait_batches(struct mount_walkio *w, bool all)
{
	int r = 0;

	while (w->njobs && r >= 0) {
		struct wio_job *done[WIO_MAX_JOBS];
		size_t ndone = 0, keep = 0;

		pthread_mutex_lock(&w->lock);
		for (;;) {
			for (size_t i = 0; i < w->njobs; i++) {
				if (w->jobs[i]->state == JOB_DONE)
					done[ndone++] = w->jobs[i];
				else
					w->jobs[keep++] = w->jobs[i];
			}
			w->njobs = keep;
			if (ndone)
				break;
			keep = 0;
			pthread_cond_wait(&w->done_cond, &w->lock);
		}
		pthread_mutex_unlock(&w->lock);
		/* in the order they were sent: the loads' order does not matter, the record's
		 * order was the daemon's */
		for (size_t i = 0; i < ndone; i++) {
			if (r >= 0)
				r = take_back(w, done[i]);
			job_free(done[i]);
		}
		if (!all)
			break;
	}
	return r;
}

/* Submit a round, then wait for one batch of it (or of an earlier one) or for all; the time
 * spent waiting, not loading, is the walk's ensure time. */
static int prefetch_round(struct mount_walkio *w, const struct util_extent *v, size_t n, bool all)
{
	uint64_t t0 = util_now_us(), load0 = w->st.load_us;
	int r;

	r = submit_round(w, v, n, false, false);
	if (r >= 0)
		r = wait_batches(w, all);
	w->st.ensure_us += util_now_us() - t0 - (w->st.load_us - load0);
	return r;
}

/* The walk's call (erofs.h): return once something it listed is present, not merely a batch
 * of an earlier round that brought none of it -- with WIO_MAX_JOBS batches out, a round's
 * fresh ranges wait for a free slot, and the walk took a return without them for a prefetch
 * that failed ("nothing arrived", 1 mount in 25 over 100 Mbit/s + RTT 50 ms with a profile
 * replayed beside it). Each batch taken back frees a slot for what the round still lacks. */
static int wio_prefetch(void *ctx, const struct util_extent *in, size_t nin)
{
	struct mount_walkio *w = ctx;
	int r;

	r = prefetch_round(w, in, nin, false);
	while (r >= 0 && w->njobs && !cache_bitmap_any_of(&w->present, in, nin, w->size, true)) {
		w->st.rewaits++;
		log_debug("a batch came back with none of the %zu range(s) the walk listed (from "
			  "%llu): waiting for the next of %zu", nin,
			  (unsigned long long)in[0].offset, w->njobs);
		r = prefetch_round(w, in, nin, false);
	}
	return r;
}

int mount_walkio_prefetch_all(struct mount_walkio *w, const struct util_extent *v, size_t n)
{
	return prefetch_round(w, v, n, true);
}

int mount_walkio_prefetch_ahead(struct mount_walkio *w, const struct util_extent *v, size_t n,
				bool spread)
{
	uint64_t t0 = util_now_us();
	int r = n ? submit_round(w, v, n, true, spread) : 0;

	w->st.ensure_us += util_now_us() - t0;
	return r;
}

static int wio_read(void *ctx, void *buf, uint64_t len, uint64_t off)
{
	struct mount_walkio *w = ctx;
	uint8_t *out = buf;
	uint64_t end;

	if (util_add_overflow_u64(off, len, &end))
		return -EINVAL;
	/* Present but not loaded (a bridged block, or one dropped under the memory cap): load
	 * its blocks now, in one read. */
	if (len && !loaded(w, off, len) && wio_present(w, off, len)) {
		uint64_t start = ROUND_DOWN(off, WIO_BLOCK);
		uint64_t stop = MIN(ROUND_UP(end, WIO_BLOCK), ROUND_DOWN(w->size, WIO_BLOCK));

		if (stop > start) {
			int r = load_range(w, start, stop - start, true);

			if (r < 0)
				return r;
			w->st.lazy_loads++;
			/* (a record short of a range loses a profile one range, not the walk) */
			(void)util_extents_add(&w->late, start, stop - start);
		}
	}
	if (loaded(w, off, len)) {
		for (uint64_t pos = off; pos < end;) {
			const uint8_t *p = map_get(w, pos / WIO_BLOCK);
			uint64_t in = pos % WIO_BLOCK, n = MIN(WIO_BLOCK - in, end - pos);

			memcpy(out + (pos - off), p + in, n);
			pos += n;
		}
		w->st.cached_reads++;
		return 0;
	}
	/* Not loaded: the read raises an event and the daemon fetches what is missing. */
	w->st.direct_reads++;
	return util_pread_full(w->fd, buf, (size_t)len, off);
}

int mount_walkio_new(int fd, int premark_fd, struct fetch_handle *h, uint64_t size, uint64_t cap,
		     struct util_error *err, struct mount_walkio **ret)
{
	struct mount_walkio *w = calloc(1, sizeof(*w));

	if (!w)
		return -ENOMEM;
	w->t0 = util_now_us();
	w->fd = fd;
	w->premark = premark_fd;
	w->h = h;
	w->size = size;
	w->cap = cap;
	w->err = err;
	util_extents_init(&w->round);
	util_extents_init(&w->late);
	util_extents_init(&w->fresh);
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->work_cond, NULL);
	pthread_cond_init(&w->done_cond, NULL);
	if (cache_bitmap_init(&w->present, DIV_ROUND_UP(size, WIO_BLOCK), false) < 0 ||
	    cache_bitmap_init(&w->asked, DIV_ROUND_UP(size, WIO_BLOCK), false) < 0 ||
	    reserve_init(w) < 0) {
		mount_walkio_free(w);
		return -ENOMEM;
	}
	*ret = w;
	return 0;
}

int mount_walkio_flush(struct mount_walkio *w)
{
	int r = wait_batches(w, true);

	if (r < 0)
		return r;
	if (w->late.n && w->h)
		r = fetch_ensure_needed(w->h, NULL, 0, w->late.v, w->late.n, w->err);
	w->late.n = 0;
	return r;
}

void mount_walkio_free(struct mount_walkio *w)
{
	if (!w)
		return;
	stop_workers(w);
	for (size_t i = 0; i < w->njobs; i++)
		job_free(w->jobs[i]);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->work_cond);
	pthread_cond_destroy(&w->done_cond);
	populate_stop(w);
	for (size_t i = 0; i < w->nchunks; i++)
		chunk_unmap(w, i);
	free(w->chunks);
	free(w->bufs);
	util_u64map_free(&w->map);
	cache_bitmap_destroy(&w->present);
	cache_bitmap_destroy(&w->asked);
	util_extents_free(&w->round);
	util_extents_free(&w->late);
	util_extents_free(&w->fresh);
	free(w);
}

void mount_walkio_io(struct mount_walkio *w, struct erofs_io *io)
{
	memset(io, 0, sizeof(*io));
	io->ctx = w;
	io->size = w->size;
	io->read = wio_read;
	io->present = wio_present;
	io->prefetch = wio_prefetch;
}

void mount_walkio_set_grouping(struct mount_walkio *w, const struct mount_grouping *g)
{
	w->grouping = *g;
}

const struct mount_walkio_stats *mount_walkio_stats(const struct mount_walkio *w)
{
	return &w->st;
}
