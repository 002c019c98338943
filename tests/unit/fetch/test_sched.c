// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Unit tests for the daemon's scheduler: chunk alignment, coalescing, never refetching present
 * blocks, ensure batches, retries/deadlines, read-ahead detection, background fill. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "fetch/files.h"
#include "fetch/sched.h"
#include "util/macro.h"

#define KiB (UINT64_C(1) << 10)
#define MiB (UINT64_C(1) << 20)

struct env {
	struct cache_bitmap bm;
	struct fetch_sched s;
};

static void env_init(struct env *e, uint64_t size, bool prefetch_all)
{
	struct fetch_policy p;

	fetch_policy_default(&p);
	p.chunk_size = 1 * MiB;
	p.max_job_bytes = 4 * MiB;
	p.ra_initial = 2 * MiB;
	p.ra_max = 8 * MiB;
	p.max_side_jobs = 2;
	p.timeout_ms = 1000;
	p.prefetch_all = prefetch_all;
	assert_int_equal(cache_bitmap_init(&e->bm, (size + 4095) / 4096, false), 0);
	assert_int_equal(fetch_sched_init(&e->s, &e->bm, size, &p, 8), 0);
}

static void env_free(struct env *e)
{
	fetch_sched_destroy(&e->s);
	cache_bitmap_destroy(&e->bm);
}

static void event(struct fetch_req *r, uint64_t off, uint64_t len)
{
	*r = (struct fetch_req){.kind = FETCH_REQ_EVENT, .one = {off, len}};
}

/* What a fetcher does after a successful job: write and set the bits. */
static void complete_job_at(struct cache_bitmap *bm, struct fetch_sched *s, struct fetch_job *job,
			    uint64_t now_ms)
{
	for (size_t i = 0; i < job->nruns; i++)
		cache_bitmap_set_range(bm, job->runs[i].offset / 4096,
				       (job->runs[i].length + 4095) / 4096);
	job->received = job->bytes;
	fetch_sched_job_done(s, job, 0, now_ms);
}

static void complete_job(struct cache_bitmap *bm, struct fetch_sched *s, struct fetch_job *job)
{
	complete_job_at(bm, s, job, 0);
}

static void complete(struct env *e, struct fetch_job *job)
{
	complete_job(&e->bm, &e->s, job);
}

/* The job asks for one range: [off, off + len). */
static void assert_one_run(const struct fetch_job *job, uint64_t off, uint64_t len)
{
	assert_int_equal(job->nruns, 1);
	assert_int_equal(job->runs[0].offset, off);
	assert_int_equal(job->runs[0].length, len);
}

static void test_chunk_window(void **state)
{
	uint64_t a, b;

	fetch_chunk_window(0, MiB, 10 * MiB, &a, &b);
	assert_int_equal(a, 0);
	assert_int_equal(b, MiB);
	fetch_chunk_window(3 * MiB + 5, MiB, 10 * MiB, &a, &b);
	assert_int_equal(a, 3 * MiB);
	assert_int_equal(b, 4 * MiB);
	fetch_chunk_window(10 * MiB - 1, 4 * MiB, 10 * MiB, &a, &b); /* last, short chunk */
	assert_int_equal(a, 8 * MiB);
	assert_int_equal(b, 10 * MiB);
	fetch_chunk_window(UINT64_MAX - 10, 4 * MiB, UINT64_MAX, &a, &b);
	assert_int_equal(b, UINT64_MAX);
}

static void test_policy_fix(void **state)
{
	struct fetch_policy p = {.chunk_size = 3 * MiB,
				 .max_job_bytes = 5,
				 .ra_initial = 1,
				 .ra_max = 0,
				 .max_side_jobs = 100};

	fetch_policy_fix(&p);
	assert_int_equal(p.chunk_size, 2 * MiB); /* power of two */
	assert_int_equal(p.max_job_bytes, 2 * MiB);
	assert_true(p.ra_max >= p.ra_initial);
	assert_true(p.max_side_jobs <= FETCH_MAX_JOBS / 2);
	assert_int_equal(p.timeout_ms, 60000);
	p = (struct fetch_policy){.chunk_size = 100};
	fetch_policy_fix(&p);
	assert_int_equal(p.chunk_size, 4096);
}

static void test_coalescing(void **state)
{
	struct env e;
	struct fetch_req r1, r2, r3, *out[8];
	struct fetch_job *job, *job2;
	uint64_t wake;

	env_init(&e, 10 * MiB + 100, false);
	event(&r1, 1 * MiB + 8192, 128 * KiB);
	event(&r2, 1 * MiB + 512 * KiB, 128 * KiB); /* same chunk */
	event(&r3, 5 * MiB, 4096);		    /* another chunk */
	assert_int_equal(fetch_sched_add(&e.s, &r1, 0), 0);
	assert_int_equal(fetch_sched_add(&e.s, &r2, 0), 0);

	job = fetch_sched_pick(&e.s, 0, &wake);
	assert_non_null(job);
	assert_int_equal(job->kind, FETCH_JOB_DEMAND);
	assert_one_run(job, 1 * MiB, 1 * MiB); /* the whole chunk */
	assert_true(fetch_sched_in_flight(&e.s, 256, 256));
	/* The second reader of the chunk waits for the first fetch: no second job. */
	assert_null(fetch_sched_pick(&e.s, 0, &wake));
	assert_int_equal(wake, UINT64_MAX);

	/* A reader of another chunk is not blocked by the first fetch: arriving with it, it
	 * waits a moment for company, no longer. */
	assert_int_equal(fetch_sched_add(&e.s, &r3, 0), 0);
	assert_null(fetch_sched_pick(&e.s, 0, &wake));
	assert_int_equal(wake, FETCH_GATHER_MS);
	job2 = fetch_sched_pick(&e.s, FETCH_GATHER_MS, &wake);
	assert_non_null(job2);
	assert_int_equal(job2->runs[0].offset, 5 * MiB);

	assert_int_equal(fetch_sched_collect(&e.s, 0, out, 8), 0);
	complete(&e, job);
	assert_int_equal(fetch_sched_collect(&e.s, 0, out, 8), 2);
	assert_ptr_equal(out[0], &r1);
	assert_ptr_equal(out[1], &r2);
	assert_int_equal(r1.result, 0);
	assert_int_equal(r2.result, 0);
	complete(&e, job2);
	assert_int_equal(fetch_sched_collect(&e.s, 0, out, 8), 1);
	assert_int_equal(e.s.njobs, 0);

	/* Present now: a new reader is satisfied without queueing. */
	event(&r1, 1 * MiB, 4096);
	assert_int_equal(fetch_sched_add(&e.s, &r1, 0), 1);
	env_free(&e);
}

static void test_never_refetch_present(void **state)
{
	struct env e;
	struct fetch_req r;
	struct fetch_job *job;

	env_init(&e, 4 * MiB, false);
	/* Blocks 10..19 and 100..255 of chunk 0 are present already. */
	cache_bitmap_set_range(&e.bm, 10, 10);
	cache_bitmap_set_range(&e.bm, 100, 156);
	event(&r, 0, 4096);
	assert_int_equal(fetch_sched_add(&e.s, &r, 0), 0);
	job = fetch_sched_pick(&e.s, 0, NULL);
	assert_non_null(job);
	assert_int_equal(job->nruns, 2);
	assert_int_equal(job->runs[0].offset, 0);
	assert_int_equal(job->runs[0].length, 10 * 4096);
	assert_int_equal(job->runs[1].offset, 20 * 4096);
	assert_int_equal(job->runs[1].length, 80 * 4096);
	assert_int_equal(job->bytes, 90 * 4096);
	env_free(&e);
}

static void test_short_last_block(void **state)
{
	struct env e;
	struct fetch_req r, *out[2];
	struct fetch_job *job;

	env_init(&e, 3 * MiB + 100, false);
	event(&r, 3 * MiB + 50, 1000); /* crosses EOF: clamped */
	assert_int_equal(fetch_sched_add(&e.s, &r, 0), 0);
	job = fetch_sched_pick(&e.s, 0, NULL);
	assert_non_null(job);
	assert_int_equal(job->runs[0].offset, 3 * MiB);
	assert_int_equal(job->runs[0].length, 100); /* never past the blob */
	complete(&e, job);
	assert_int_equal(fetch_sched_collect(&e.s, 0, out, 2), 1);
	env_free(&e);
}

static void test_ensure_batches(void **state)
{
	struct env e;
	struct util_extent v[100];
	struct fetch_req r = {.kind = FETCH_REQ_ENSURE, .v = v, .n = 100}, *out[2];
	struct fetch_job *j1;

	env_init(&e, 100 * MiB, false);
	for (int i = 0; i < 100; i++)
		v[i] = (struct util_extent){.offset = (uint64_t)i * MiB + 100, .length = 200};
	cache_bitmap_set_range(&e.bm, 256 * 3, 1); /* range 3 is present */
	assert_int_equal(fetch_sched_add(&e.s, &r, 0), 0);
	/* Exact ranges (block-aligned), not chunks: metadata must not drag whole chunks in;
	 * all of them in one job (one request): more than a demand job's 64 runs. */
	j1 = fetch_sched_pick(&e.s, 0, NULL);
	assert_non_null(j1);
	assert_true(j1->batch);
	assert_int_equal(j1->nruns, 99);
	assert_int_equal(j1->runs[0].offset, 0);
	assert_int_equal(j1->runs[0].length, 4096);
	assert_int_equal(j1->runs[3].offset, 4 * MiB); /* range 3 skipped */
	assert_null(fetch_sched_pick(&e.s, 0, NULL));
	complete(&e, j1);
	assert_int_equal(fetch_sched_collect(&e.s, 0, out, 2), 1);
	assert_int_equal(r.result, 0);
	env_free(&e);
}

/* The Range header a job's request carries. */
static size_t header_of(const struct fetch_job *job)
{
	size_t n = strlen("bytes=");

	for (size_t i = 0; i < job->nruns; i++)
		n += oci_range_spec_len(job->runs[i].offset, job->runs[i].length);
	return n;
}

static void test_ensure_batch_split_by_header(void **state)
{
	enum { N = 2000 };
	struct env e;
	static struct util_extent v[N];
	struct fetch_req r = {.kind = FETCH_REQ_ENSURE, .v = v, .n = N}, *out[2];
	struct fetch_job *jobs[FETCH_MAX_JOBS];
	size_t njobs = 0, runs = 0;
	uint64_t prev_end = 0;

	/* 2,000 scattered blocks of a 4 GiB blob: ~22 characters of Range header each, far
	 * more than one header line of OCI_RANGE_HEADER_MAX takes. */
	env_init(&e, 4096ull * MiB, false);
	for (int i = 0; i < N; i++)
		v[i] = (struct util_extent){.offset = (uint64_t)i * MiB + 1000000000ull,
					    .length = 4096};
	assert_int_equal(fetch_sched_add(&e.s, &r, 0), 0);
	while ((jobs[njobs] = fetch_sched_pick(&e.s, 0, NULL)) != NULL) {
		struct fetch_job *j = jobs[njobs++];

		assert_true(j->batch);
		assert_true(header_of(j) <= OCI_RANGE_HEADER_MAX);
		assert_int_equal(header_of(j), j->header);
		assert_true(j->runs[0].offset >= prev_end);
		prev_end = j->runs[j->nruns - 1].offset + j->runs[j->nruns - 1].length;
		runs += j->nruns;
		assert_true(njobs < FETCH_MAX_JOBS);
	}
	/* As few requests as the header limit allows: ~317 ranges each; every job but the
	 * last has no room for one more range of this size. */
	assert_int_equal(runs, N);
	assert_int_equal(njobs, 7);
	for (size_t i = 0; i + 1 < njobs; i++)
		assert_true(header_of(jobs[i]) + 22 > OCI_RANGE_HEADER_MAX);
	for (size_t i = 0; i < njobs; i++)
		complete(&e, jobs[i]);
	assert_int_equal(fetch_sched_collect(&e.s, 0, out, 2), 1);
	assert_int_equal(r.result, 0);
	env_free(&e);
}

static void test_demand_jobs_keep_run_cap(void **state)
{
	struct env e;
	struct fetch_req r = {.kind = FETCH_REQ_EVENT, .fd = 3};
	struct fetch_job *job;

	/* Every other block of the first chunk present: a demand job for the chunk would need
	 * 128 runs; it stops at FETCH_MAX_RUNS (the rest follows in another job). */
	env_init(&e, 64 * MiB, false);
	for (uint64_t b = 0; b < 256; b += 2)
		cache_bitmap_set_range(&e.bm, b, 1);
	r.one = (struct util_extent){.offset = 4096, .length = 4096};
	assert_int_equal(fetch_sched_add(&e.s, &r, 0), 0);
	job = fetch_sched_pick(&e.s, 0, NULL);
	assert_non_null(job);
	assert_false(job->batch);
	assert_int_equal(job->nruns, FETCH_MAX_RUNS);
	env_free(&e);
}

static void test_ensure_ranges_sharing_blocks(void **state)
{
	struct env e;
	/* Sorted, disjoint byte ranges, but several share 4 KiB blocks. */
	struct util_extent v[] = {{0, 100},   {200, 100},   {4000, 200},
				  {8192, 10}, {8300, 5000}, {20480, 4096}};
	struct fetch_req r = {.kind = FETCH_REQ_ENSURE, .v = v, .n = 6};
	struct fetch_job *job;

	env_init(&e, 1 * MiB, false);
	assert_int_equal(fetch_sched_add(&e.s, &r, 0), 0);
	job = fetch_sched_pick(&e.s, 0, NULL);
	assert_non_null(job);
	/* Blocks 0-1 and 2-3 are adjacent: one run [0, 16 KiB); then block 5. */
	assert_int_equal(job->nruns, 2);
	assert_int_equal(job->runs[0].offset, 0);
	assert_int_equal(job->runs[0].length, 16384);
	assert_int_equal(job->runs[1].offset, 20480);
	assert_int_equal(job->runs[1].length, 4096);
	for (size_t i = 1; i < job->nruns; i++)
		assert_true(job->runs[i - 1].offset + job->runs[i - 1].length <
			    job->runs[i].offset);
	assert_null(fetch_sched_pick(&e.s, 0, NULL));
	env_free(&e);
}

static void test_retry_backoff_and_failures(void **state)
{
	struct env e;
	struct fetch_req r, r2, *out[4];
	struct fetch_job *job;
	uint64_t wake, now = 1000;

	env_init(&e, 8 * MiB, false);
	event(&r, 0, 4096);
	assert_int_equal(fetch_sched_add(&e.s, &r, now), 0);
	assert_int_equal(r.deadline_ms, now + 1000);
	job = fetch_sched_pick(&e.s, now, NULL);
	fetch_sched_job_done(&e.s, job, -EAGAIN, now);
	assert_int_equal(r.attempts, 1);
	/* Backing off: nothing to do until the retry is due. */
	assert_null(fetch_sched_pick(&e.s, now + 10, &wake));
	assert_int_equal(wake, now + fetch_backoff_ms(1));
	assert_int_equal(fetch_sched_collect(&e.s, now + 10, out, 4), 0);
	job = fetch_sched_pick(&e.s, wake, NULL);
	assert_non_null(job);
	fetch_sched_job_done(&e.s, job, -EAGAIN, wake);
	/* The deadline ends it with the last error. */
	assert_int_equal(fetch_sched_collect(&e.s, now + 1000, out, 4), 1);
	assert_int_equal(r.result, -EAGAIN);

	/* A permanent error (404) fails at once, without waiting for the deadline. */
	event(&r2, 4 * MiB, 4096);
	assert_int_equal(fetch_sched_add(&e.s, &r2, now), 0);
	job = fetch_sched_pick(&e.s, now, NULL);
	fetch_sched_job_done(&e.s, job, -ENOENT, now);
	assert_int_equal(fetch_sched_collect(&e.s, now, out, 4), 1);
	assert_int_equal(r2.result, -ENOENT);

	/* Bounded attempts (other blocks: those at 4 MiB just failed and are denied at once
	 * for a while, see test_recent_failure_fails_fast). */
	event(&r2, 6 * MiB, 4096);
	r2.deadline_ms = UINT64_MAX;
	assert_int_equal(fetch_sched_add(&e.s, &r2, now), 0);
	for (unsigned i = 0; i < FETCH_MAX_ATTEMPTS; i++) {
		job = fetch_sched_pick(&e.s, UINT64_MAX / 2, NULL);
		assert_non_null(job);
		fetch_sched_job_done(&e.s, job, -EIO, now);
	}
	assert_int_equal(fetch_sched_collect(&e.s, now, out, 4), 1);
	assert_int_equal(r2.result, -EIO);
	assert_int_equal(e.s.njobs, 0);
	assert_true(fetch_backoff_ms(1) < fetch_backoff_ms(3));
	assert_int_equal(fetch_backoff_ms(50), 2000);
	env_free(&e);
}

/* Fail a fresh event at [off, off + len) whose fetch fails: one attempt, then the deadline. */
static void fail_event(struct env *e, struct fetch_req *r, uint64_t off, uint64_t len, uint64_t now)
{
	struct fetch_req *out[4];
	struct fetch_job *job;

	event(r, off, len);
	assert_int_equal(fetch_sched_add(&e->s, r, now), 0);
	job = fetch_sched_pick(&e->s, now, NULL);
	assert_non_null(job);
	fetch_sched_job_done(&e->s, job, -EAGAIN, now + 900);
	assert_int_equal(fetch_sched_collect(&e->s, now + 1000, out, 4), 1);
	assert_ptr_equal(out[0], r);
	assert_int_equal(r->result, -EAGAIN);
}

static void test_recent_failure_probes_once(void **state)
{
	struct env e;
	struct fetch_req r, r2, r3, r4, *out[4];
	struct fetch_job *job, *probe;
	uint64_t now = 5000, t;

	env_init(&e, 8 * MiB, false); /* 1 MiB chunks, timeout 1000 ms: window 1000 ms */
	assert_int_equal(e.s.fail_window_ms, 1000);
	fail_event(&e, &r, 64 * KiB, 64 * KiB, now);
	t = now + 1000; /* the failure */

	/* The kernel's retry of one page of it becomes the probe: one job, a single attempt. */
	event(&r2, 64 * KiB, 4096);
	assert_int_equal(fetch_sched_add(&e.s, &r2, t + 1), 0);
	assert_true(r2.probe);
	assert_ptr_equal(e.s.probe, &r2);
	job = fetch_sched_pick(&e.s, t + 1, NULL);
	assert_non_null(job);
	assert_true(job->probe);
	/* The rest of the kernel's readahead, elsewhere in the failed chunk or reaching past
	 * its end, waits for the probe: nothing more is fetched. */
	event(&r3, 512 * KiB, 64 * KiB);
	assert_int_equal(fetch_sched_add(&e.s, &r3, t + 10), 0);
	assert_true(r3.held);
	event(&r4, MiB - 8 * KiB, 64 * KiB);
	assert_int_equal(fetch_sched_add(&e.s, &r4, t + 10), 0);
	assert_true(r4.held);
	assert_null(fetch_sched_pick(&e.s, t + 10, NULL));
	/* The probe fails (one attempt, no backoff): every waiting read fails with it, at
	 * once, long before its own deadline. */
	fetch_sched_job_done(&e.s, job, -ECONNREFUSED, t + 20);
	assert_int_equal(fetch_sched_collect(&e.s, t + 20, out, 4), 3);
	assert_int_equal(r2.result, -ECONNREFUSED);
	assert_int_equal(r3.result, -ECONNREFUSED);
	assert_int_equal(r4.result, -ECONNREFUSED);
	assert_null(e.s.probe);
	assert_int_equal(e.s.nreqs, 0);

	/* Present blocks inside the failed range are served as ever. */
	cache_bitmap_set_range(&e.bm, 200, 2);
	event(&r2, 200 * 4096, 8192);
	assert_int_equal(fetch_sched_add(&e.s, &r2, t + 30), 1);
	/* Other blocks fetch normally, inside the window too: no probe. */
	event(&r2, 4 * MiB, 4096);
	assert_int_equal(fetch_sched_add(&e.s, &r2, t + 30), 0);
	assert_false(r2.probe);
	assert_false(r2.held);
	job = fetch_sched_pick(&e.s, t + 30, NULL);
	assert_non_null(job);
	assert_false(job->probe);
	assert_int_equal(job->runs[0].offset, 4 * MiB);
	fetch_sched_job_done(&e.s, job, -EAGAIN, t + 30);
	assert_int_equal(fetch_sched_drain(&e.s, out, 4), 1);
	/* An ensure batch (the mount's walk) fetches even inside the window. */
	r2 = (struct fetch_req){
	    .kind = FETCH_REQ_ENSURE, .v = &r2.one, .n = 1, .one = {128 * KiB, 4096}};
	assert_int_equal(fetch_sched_add(&e.s, &r2, t + 30), 0);
	assert_false(r2.probe);
	job = fetch_sched_pick(&e.s, t + 30, NULL);
	assert_non_null(job);
	assert_true(job->batch);
	fetch_sched_job_done(&e.s, job, -EAGAIN, t + 30);
	assert_int_equal(fetch_sched_drain(&e.s, out, 4), 1);

	/* The registry answers again: the next read probes, the probe succeeds, and the reads
	 * that waited for it go on and get their bytes. */
	event(&r2, 64 * KiB, 4096);
	assert_int_equal(fetch_sched_add(&e.s, &r2, t + 40), 0);
	assert_true(r2.probe);
	job = fetch_sched_pick(&e.s, t + 40, NULL);
	event(&r3, MiB - 4096, 8192); /* reaches into a chunk the probe does not fetch */
	assert_int_equal(fetch_sched_add(&e.s, &r3, t + 41), 0);
	assert_true(r3.held);
	complete(&e, job);
	assert_null(e.s.probe);
	assert_false(r3.held);
	assert_int_equal(fetch_sched_collect(&e.s, t + 42, out, 4), 1);
	assert_ptr_equal(out[0], &r2);
	assert_int_equal(r2.result, 0);
	job = fetch_sched_pick(&e.s, t + 42, NULL);
	assert_non_null(job);
	complete(&e, job);
	assert_int_equal(fetch_sched_collect(&e.s, t + 43, out, 4), 1);
	assert_int_equal(r3.result, 0);

	/* A probe that outlives its deadline ends the wait of the others too. */
	fail_event(&e, &r, 6 * MiB, 4096, t + 100);
	event(&r2, 6 * MiB, 4096);
	assert_int_equal(fetch_sched_add(&e.s, &r2, t + 1101), 0);
	assert_true(r2.probe);
	assert_non_null(fetch_sched_pick(&e.s, t + 1101, NULL)); /* stalls */
	event(&r3, 6 * MiB + 8192, 4096);
	assert_int_equal(fetch_sched_add(&e.s, &r3, t + 1102), 0);
	assert_true(r3.held);
	assert_int_equal(fetch_sched_collect(&e.s, t + 2101, out, 4), 2);
	assert_int_equal(r2.result, -EAGAIN);
	assert_int_equal(r3.result, -EAGAIN);
	env_free(&e);

	/* A read fails while the retry of its fetch is still under way. A probe of those bytes
	 * fetches them itself, at once, instead of waiting for that older fetch to give up. */
	env_init(&e, 8 * MiB, false);
	event(&r, 0, 4096);
	assert_int_equal(fetch_sched_add(&e.s, &r, now), 0);
	fetch_sched_job_done(&e.s, fetch_sched_pick(&e.s, now, NULL), -EAGAIN, now + 10);
	job = fetch_sched_pick(&e.s, now + 900, NULL); /* the retry, still running ... */
	assert_non_null(job);
	assert_int_equal(fetch_sched_collect(&e.s, now + 1000, out, 4), 1); /* ... at the deadline */
	assert_int_equal(r.result, -EAGAIN);
	event(&r2, 4096, 4096);
	r2.pid = 42;
	assert_int_equal(fetch_sched_add(&e.s, &r2, now + 1001), 0);
	assert_true(r2.probe);
	probe = fetch_sched_pick(&e.s, now + 1001, NULL);
	assert_non_null(probe);
	assert_true(probe->probe);
	assert_one_run(probe, 4096, 4096);
	assert_null(fetch_sched_pick(&e.s, now + 1001, NULL)); /* one probe fetch */
	fetch_sched_job_done(&e.s, probe, -ECONNREFUSED, now + 1002);
	assert_int_equal(fetch_sched_collect(&e.s, now + 1002, out, 4), 1);
	assert_int_equal(r2.result, -ECONNREFUSED);
	assert_null(e.s.probe);
	/* The kernel's next ask of that read (the same process), a moment later, fails at once;
	 * another process's read then probes again (the registry may be back by then). */
	event(&r3, 4096, 4096);
	r3.pid = 42;
	assert_int_equal(fetch_sched_add(&e.s, &r3, now + 1003), -ECONNREFUSED);
	event(&r3, 4096, 4096);
	r3.pid = 43;
	assert_int_equal(fetch_sched_add(&e.s, &r3, now + 1003), 0);
	assert_true(r3.probe);
	assert_int_equal(fetch_sched_drain(&e.s, out, 4), 1);
	fetch_sched_job_done(&e.s, job, -EAGAIN, now + 1004);
	env_free(&e);
}

static void test_recent_failure_forgotten(void **state)
{
	struct env e;
	struct fetch_req r, r2, *out[4];
	struct fetch_job *job, *probe;
	uint64_t now = 5000, t = now + 1000;

	/* A deadline that passes while the fetch is still under way (a registry that stalls)
	 * is remembered: the kernel's retry probes, within what is left of the failure window
	 * (not a whole deadline more), and the stalled fetch may still serve it. */
	env_init(&e, 8 * MiB, false);
	event(&r, 0, 4096);
	assert_int_equal(fetch_sched_add(&e.s, &r, now), 0);
	job = fetch_sched_pick(&e.s, now, NULL);
	assert_non_null(job);
	assert_int_equal(fetch_sched_collect(&e.s, t, out, 4), 1);
	assert_int_equal(r.result, -ETIMEDOUT);
	event(&r2, 0, 4096);
	assert_int_equal(fetch_sched_add(&e.s, &r2, t + 1), 0);
	assert_true(r2.probe);
	assert_int_equal(r2.deadline_ms, t + e.s.fail_window_ms); /* 1 s: the timeout here */
	probe = fetch_sched_pick(&e.s, t + 1, NULL);
	assert_non_null(probe);
	assert_true(probe->probe);
	complete(&e, job); /* the stalled fetch lands first */
	assert_int_equal(fetch_sched_collect(&e.s, t + 2, out, 4), 1);
	assert_int_equal(r2.result, 0);
	fetch_sched_job_done(&e.s, probe, 0, t + 3);
	env_free(&e);

	/* Any successful fetch forgets the failures: the registry answers again. */
	env_init(&e, 8 * MiB, false);
	fail_event(&e, &r, 0, 4096, now);
	event(&r2, 4096, 4096);
	assert_int_equal(fetch_sched_add(&e.s, &r2, t + 1), 0);
	assert_true(r2.probe);
	assert_int_equal(fetch_sched_drain(&e.s, out, 4), 1);
	assert_null(e.s.probe);
	event(&r2, 4 * MiB, 4096);
	assert_int_equal(fetch_sched_add(&e.s, &r2, t + 1), 0);
	complete(&e, fetch_sched_pick(&e.s, t + 1, NULL));
	assert_int_equal(fetch_sched_collect(&e.s, t + 2, out, 4), 1);
	event(&r2, 4096, 4096);
	assert_int_equal(fetch_sched_add(&e.s, &r2, t + 3), 0);
	assert_false(r2.probe);
	env_free(&e);

	/* The window is at most 2 s, however long the timeout; every failure is remembered,
	 * however many fail at once (400 readers of a stalled registry), and what the window
	 * has passed is pruned as more come. */
	{
		enum { N = 600 };
		struct fetch_policy p;
		struct fetch_req rs[N];

		fetch_policy_default(&p);
		p.chunk_size = 64 * KiB;
		assert_int_equal(cache_bitmap_init(&e.bm, 512 * MiB / 4096, false), 0);
		assert_int_equal(fetch_sched_init(&e.s, &e.bm, 512 * MiB, &p, 8), 0);
		assert_int_equal(e.s.fail_window_ms, FETCH_FAIL_WINDOW_MS);
		for (unsigned i = 0; i < N; i++) {
			event(&rs[i], i * 64 * KiB, 4096);
			assert_int_equal(fetch_sched_add(&e.s, &rs[i], now), 0);
			job = fetch_sched_pick(&e.s, now, NULL);
			assert_non_null(job);
			fetch_sched_job_done(&e.s, job, -ECONNREFUSED, now);
			rs[i].attempts = FETCH_MAX_ATTEMPTS;
			assert_int_equal(fetch_sched_collect(&e.s, now, out, 4), 1);
		}
		event(&r2, ((N - 1) * 64 + 8) * KiB, 4096); /* the newest */
		assert_int_equal(fetch_sched_add(&e.s, &r2, now + FETCH_FAIL_WINDOW_MS - 1), 0);
		assert_true(r2.probe);
		assert_int_equal(fetch_sched_drain(&e.s, out, 4), 1);
		assert_int_equal(fetch_sched_add(&e.s, &r2, now + FETCH_FAIL_WINDOW_MS), 0);
		assert_false(r2.probe);
		assert_int_equal(fetch_sched_drain(&e.s, out, 4), 1);
		event(&r2, 8 * KiB, 4096); /* the oldest */
		assert_int_equal(fetch_sched_add(&e.s, &r2, now + 1), 0);
		assert_true(r2.probe);
		assert_int_equal(fetch_sched_drain(&e.s, out, 4), 1);
		/* Thousands of failures later (one a millisecond, each its own chunk and
		 * process), those the window passed are gone: 4,800 would be there. */
		for (unsigned i = 0; i < 4200; i++) {
			event(&r2, (uint64_t)(N + i) * 64 * KiB, 4096);
			r2.pid = (int)i + 1;
			assert_int_equal(fetch_sched_add(&e.s, &r2, now + 3000 + i), 0);
			job = fetch_sched_pick(&e.s, now + 3000 + i, NULL);
			assert_non_null(job);
			fetch_sched_job_done(&e.s, job, -ECONNREFUSED, now + 3000 + i);
			r2.attempts = FETCH_MAX_ATTEMPTS;
			assert_int_equal(fetch_sched_collect(&e.s, now + 3000 + i, out, 4), 1);
		}
		assert_true(e.s.failed.n >= FETCH_FAIL_WINDOW_MS && e.s.failed.n < 4200);
		assert_true(e.s.failed_by.n >= FETCH_FAIL_WINDOW_MS && e.s.failed_by.n < 4200);
		env_free(&e);
	}
}

/* A read(2) fails after the timeout, not the timeout and a probe: the kernel's next ask of a
 * read whose time ran out (the same process, a moment later) fails at once, whichever of the
 * many readers that failed together it is; another process's read probes. */
static void test_followup_of_a_timed_out_read_fails_at_once(void **state)
{
	enum { N = 40 };
	struct env e;
	struct fetch_req r[N], r2, *out[N];
	uint64_t now = 5000;

	env_init(&e, 16 * MiB, false);
	fetch_sched_destroy(&e.s);
	{
		struct fetch_policy p = e.s.pol;

		p.timeout_ms = 5000; /* the failure window: 2 s */
		assert_int_equal(fetch_sched_init(&e.s, &e.bm, 16 * MiB, &p, N), 0);
	}
	for (int i = 0; i < N; i++) {
		event(&r[i], (uint64_t)i * 256 * KiB, 4096);
		r[i].pid = 100 + i;
		assert_int_equal(fetch_sched_add(&e.s, &r[i], now), 0);
	}
	while (fetch_sched_pick(&e.s, now, NULL))
		; /* the registry stalls: they stay in flight */
	assert_int_equal(fetch_sched_collect(&e.s, now + 5000, out, N), N);
	for (int i = 0; i < N; i++) {
		assert_int_equal(r[i].result, -ETIMEDOUT);
		event(&r2, (uint64_t)i * 256 * KiB, 4096);
		r2.pid = 100 + i;
		assert_int_equal(fetch_sched_add(&e.s, &r2, now + 5001), -ETIMEDOUT);
	}
	event(&r2, 0, 4096);
	r2.pid = 99;
	assert_int_equal(fetch_sched_add(&e.s, &r2, now + 5001), 0);
	assert_true(r2.probe);
	assert_int_equal(fetch_sched_drain(&e.s, out, N), 1);
	/* the same process in a chunk (1 MiB here) where only others failed: not a follow-up */
	event(&r2, 5 * 256 * KiB, 4096);
	r2.pid = 100;
	assert_int_equal(fetch_sched_add(&e.s, &r2, now + 5001), 0);
	assert_true(r2.probe);
	assert_int_equal(fetch_sched_drain(&e.s, out, N), 1);
	/* later than a moment, the same process probes too */
	event(&r2, 256 * KiB, 4096);
	r2.pid = 101;
	assert_int_equal(fetch_sched_add(&e.s, &r2, now + 5000 + 1000), 0);
	assert_true(r2.probe);
	assert_int_equal(fetch_sched_drain(&e.s, out, N), 1);
	env_free(&e);

	/* The kernel asks for the rest of a failed readahead piece by piece, each starting
	 * where the one before ended: the pieces in the chunks after the failed read's are of
	 * the same read(2) and fail at once too (a cat of a stalled registry: a deadline for
	 * each chunk its readahead spanned); the chain counts from the failure it follows. */
	env_init(&e, 16 * MiB, false);
	event(&r[0], 0, 64 * KiB);
	r[0].pid = 7;
	assert_int_equal(fetch_sched_add(&e.s, &r[0], now), 0);
	while (fetch_sched_pick(&e.s, now, NULL))
		;
	assert_int_equal(fetch_sched_collect(&e.s, now + e.s.pol.timeout_ms, out, N), 1);
	now += e.s.pol.timeout_ms;
	for (uint64_t off = 64 * KiB, i = 1; off < 3 * MiB; off += 64 * KiB, i++) {
		event(&r2, off, 64 * KiB);
		r2.pid = 7;
		assert_int_equal(fetch_sched_add(&e.s, &r2, now + i), -ETIMEDOUT);
	}
	/* not where a piece ended: a read like any other; another process: a probe */
	event(&r2, 5 * MiB, 64 * KiB);
	r2.pid = 7;
	assert_int_equal(fetch_sched_add(&e.s, &r2, now + 100), 0);
	assert_false(r2.probe);
	assert_int_equal(fetch_sched_drain(&e.s, out, N), 1);
	event(&r2, 2 * MiB, 64 * KiB);
	r2.pid = 8;
	assert_int_equal(fetch_sched_add(&e.s, &r2, now + 100), 0);
	assert_true(r2.probe);
	assert_int_equal(fetch_sched_drain(&e.s, out, N), 1);
	/* a moment after the failure itself, the next piece is fetched (the registry may be
	 * back) */
	event(&r2, 3 * MiB, 64 * KiB);
	r2.pid = 7;
	assert_int_equal(fetch_sched_add(&e.s, &r2, now + 1000), 0);
	assert_false(r2.probe);
	assert_int_equal(fetch_sched_drain(&e.s, out, N), 1);
	env_free(&e);
}

static void test_capacity(void **state)
{
	struct env e;
	struct fetch_req r[9];

	env_init(&e, 100 * MiB, false);
	for (int i = 0; i < 8; i++) {
		event(&r[i], (uint64_t)i * MiB, 10);
		assert_int_equal(fetch_sched_add(&e.s, &r[i], 0), 0);
	}
	event(&r[8], 50 * MiB, 10);
	assert_int_equal(fetch_sched_add(&e.s, &r[8], 0), -ENOSPC);
	env_free(&e);
}

static void test_readahead_detection(void **state)
{
	struct env e;
	struct fetch_job *job;
	struct fetch_req r;

	env_init(&e, 64 * MiB, false);
	/* Random reads queue nothing. */
	assert_false(fetch_sched_note_read(&e.s, 40 * MiB, 128 * KiB));
	assert_false(fetch_sched_note_read(&e.s, 7 * MiB, 128 * KiB));
	assert_false(fetch_sched_note_read(&e.s, 22 * MiB, 128 * KiB));
	assert_int_equal(e.s.nra, 0);
	assert_null(fetch_sched_pick(&e.s, 0, NULL));

	/* A sequential reader: the second read in a row starts read-ahead. */
	assert_false(fetch_sched_note_read(&e.s, 0, 128 * KiB));
	assert_true(fetch_sched_note_read(&e.s, 128 * KiB, 128 * KiB));
	assert_int_equal(e.s.nra, 1);
	assert_int_equal(e.s.ra[0].offset, 256 * KiB);
	assert_int_equal(e.s.ra[0].length, 2 * MiB);
	/* Not again while the reader is far from the frontier. */
	assert_false(fetch_sched_note_read(&e.s, 256 * KiB, 128 * KiB));

	/* Demand comes first: a waiting reader's chunk is picked before read-ahead. */
	event(&r, 30 * MiB, 4096);
	assert_int_equal(fetch_sched_add(&e.s, &r, 0), 0);
	job = fetch_sched_pick(&e.s, 0, NULL);
	assert_int_equal(job->kind, FETCH_JOB_DEMAND);
	job = fetch_sched_pick(&e.s, 0, NULL);
	assert_non_null(job);
	assert_int_equal(job->kind, FETCH_JOB_READAHEAD);
	assert_int_equal(job->runs[0].offset, 256 * KiB);
	assert_int_equal(job->bytes, 2 * MiB);
	complete(&e, job);

	/* Close to the frontier (within half a window): the next, larger window, once. */
	{
		unsigned triggers = 0;
		uint64_t at = 0;

		/* present now: hits (a miss would grow the window fourfold) */
		for (uint64_t off = 384 * KiB; off <= 1536 * KiB; off += 128 * KiB)
			if (fetch_sched_note_hit(&e.s, off, 128 * KiB)) {
				triggers++;
				at = off;
			}
		assert_int_equal(triggers, 1);
		assert_int_equal(at,
				 1152 * KiB); /* its end is half a window (1 MiB) from 2304 KiB */
	}
	assert_int_equal(e.s.ra[0].offset, 2304 * KiB);
	assert_int_equal(e.s.ra[0].length, 4 * MiB);
	/* Windows grow up to ra_max and jobs are capped at max_job_bytes. */
	job = fetch_sched_pick(&e.s, 0, NULL);
	assert_int_equal(job->kind, FETCH_JOB_READAHEAD);
	assert_int_equal(job->bytes, 4 * MiB);
	/* Not while the reader is far from the new frontier. */
	assert_false(fetch_sched_note_read(&e.s, 1664 * KiB, 128 * KiB));
	/* Other sequential readers get their own streams; side jobs are limited
	 * (max_side_jobs = 2, one is running). */
	assert_true(fetch_sched_note_read(&e.s, 40 * MiB + 128 * KiB, 128 * KiB));
	job = fetch_sched_pick(&e.s, 0, NULL);
	assert_non_null(job);
	assert_int_equal(job->runs[0].offset, 40 * MiB + 256 * KiB);
	assert_true(fetch_sched_note_read(&e.s, 7 * MiB + 128 * KiB, 128 * KiB));
	assert_null(fetch_sched_pick(&e.s, 0, NULL));
	assert_int_equal(e.s.nra, 1);
	env_free(&e);
}

/* On a long link: the rate is the link's (what all requests received while one's body
 * arrived), read-ahead is asked for a piece of four bandwidth-delay products at a time,
 * whenever less than a window is asked for ahead of the reader (a window's pieces asked for
 * at once arrive together). */
static void test_long_link_readahead(void **state)
{
	struct env e;
	struct fetch_job *job;

	env_init(&e, 256 * MiB, false);
	fetch_sched_link_sample(&e.s, 50000, 100000, 1 * MiB, 3 * MiB);
	assert_int_equal(e.s.link_rtt_us, 50000);
	assert_int_equal(e.s.link_bytes_per_s, 30 * MiB); /* not the request's 10 MiB/s */
	e.s.link_bytes_per_s = 10 * MiB;		 /* one product: 524,250 bytes */
	assert_false(fetch_sched_note_read(&e.s, 0, 128 * KiB));
	assert_true(fetch_sched_note_read(&e.s, 128 * KiB, 128 * KiB));
	assert_int_equal(e.s.ra[0].length, 2 * MiB);
	/* 1,920 KiB from the frontier: within the window of 2 MiB, so the window grows (4 MiB)
	 * and one piece more is asked for (2 MiB), not the whole window. */
	assert_true(fetch_sched_note_read(&e.s, 256 * KiB, 128 * KiB));
	assert_int_equal(e.s.nra, 1);
	assert_int_equal(e.s.ra[0].offset, 256 * KiB);
	assert_int_equal(e.s.ra[0].length, 4 * MiB);
	/* 3,840 KiB ahead, within the 4 MiB window: another piece as the reader moves on. */
	assert_true(fetch_sched_note_read(&e.s, 384 * KiB, 128 * KiB));
	assert_int_equal(e.s.ra[0].length, 6 * MiB);
	/* 5,760 KiB ahead, within the window of 8 MiB: one more; then 7,680 KiB ahead of
	 * 8 MiB: one more; then 9,600 KiB: enough. */
	assert_true(fetch_sched_note_read(&e.s, 512 * KiB, 128 * KiB));
	assert_true(fetch_sched_note_read(&e.s, 640 * KiB, 128 * KiB));
	assert_false(fetch_sched_note_read(&e.s, 768 * KiB, 128 * KiB));
	assert_int_equal(e.s.ra[0].length, 10 * MiB);
	for (int i = 0; i < 2; i++) { /* two side jobs at most (env) */
		job = fetch_sched_pick(&e.s, 0, NULL);
		assert_non_null(job);
		assert_int_equal(job->kind, FETCH_JOB_READAHEAD);
		assert_int_equal(job->runs[0].offset, 256 * KiB + (uint64_t)i * 2 * MiB);
		assert_int_equal(job->bytes, 2 * MiB); /* 4 x 524,250 in whole blocks */
	}
	env_free(&e);
}

/* On a short link (RTT under 5 ms) windows double from the first one: a bandwidth-delay
 * product measured there (4 MiB here) is no reason to jump to twice it (random 1 MiB reads
 * on loopback fetched 2.9 times what they read). */
static void test_short_link_windows_double(void **state)
{
	struct env e;

	env_init(&e, 256 * MiB, false);
	e.s.link_rtt_us = 1000;
	e.s.link_bytes_per_s = 4000 * MiB; /* one product: 4,194,000 bytes */
	assert_false(fetch_sched_note_read(&e.s, 0, 128 * KiB));
	assert_true(fetch_sched_note_read(&e.s, 128 * KiB, 128 * KiB));
	assert_int_equal(e.s.ra[0].length, 2 * MiB);
	for (uint64_t off = 256 * KiB; off < 1152 * KiB; off += 128 * KiB)
		assert_false(fetch_sched_note_read(&e.s, off, 128 * KiB));
	assert_true(fetch_sched_note_read(&e.s, 1152 * KiB, 128 * KiB)); /* half a window left */
	assert_int_equal(e.s.nra, 1);
	assert_int_equal(e.s.ra[0].length, 6 * MiB); /* 2 MiB, then 4 (not 8) */
	env_free(&e);
}

/* A read reaching into the next chunk fetches both chunks in one job. */
static void test_event_spanning_chunks(void **state)
{
	struct env e;
	struct fetch_job *job;
	struct fetch_req r;

	env_init(&e, 64 * MiB, false);
	event(&r, 3 * MiB - 8192, 64 * KiB);
	assert_int_equal(fetch_sched_add(&e.s, &r, 0), 0);
	job = fetch_sched_pick(&e.s, 0, NULL);
	assert_non_null(job);
	assert_one_run(job, 2 * MiB, 2 * MiB);
	assert_null(fetch_sched_pick(&e.s, 0, NULL));
	complete(&e, job);
	env_free(&e);
}

/* Fast-path hits (bytes already present, e.g. the mount loading what an ensure batch fetched)
 * never create or start a stream; they follow a stream that a miss created, and feed one
 * whose read-ahead has started. */
static void test_readahead_hits(void **state)
{
	struct env e;

	env_init(&e, 64 * MiB, false);
	for (uint64_t off = 0; off < 8 * MiB; off += 128 * KiB)
		assert_false(fetch_sched_note_hit(&e.s, off, 128 * KiB));
	assert_int_equal(e.s.nra, 0);
	assert_null(fetch_sched_pick(&e.s, 0, NULL));

	/* A miss, hits through its chunk, then the next chunk's miss: read-ahead starts. */
	assert_false(fetch_sched_note_read(&e.s, 16 * MiB, 128 * KiB));
	for (uint64_t off = 16 * MiB + 128 * KiB; off < 17 * MiB; off += 128 * KiB)
		assert_false(fetch_sched_note_hit(&e.s, off, 128 * KiB));
	assert_int_equal(e.s.nra, 0);
	assert_true(fetch_sched_note_read(&e.s, 17 * MiB, 128 * KiB));
	assert_int_equal(e.s.nra, 1);
	assert_int_equal(e.s.ra[0].offset, 17 * MiB + 128 * KiB);
	assert_int_equal(e.s.ra[0].length, 2 * MiB);
	/* Hits inside the window feed it: near its end, the next window. */
	{
		unsigned triggers = 0;

		for (uint64_t off = 17 * MiB + 128 * KiB; off < 19 * MiB; off += 128 * KiB)
			triggers += fetch_sched_note_hit(&e.s, off, 128 * KiB);
		assert_int_equal(triggers, 1);
	}
	/* (the queued windows merge: 2 MiB, then 4 MiB) */
	assert_int_equal(e.s.nra, 1);
	assert_int_equal(e.s.ra[0].offset + e.s.ra[0].length, 17 * MiB + 128 * KiB + 6 * MiB);
	env_free(&e);
}

/* More reads wait than requests are free: they share requests, several windows each, so that
 * every one of them is on its way at once; with few waiting, one request each. */
static void test_demand_shares_budget(void **state)
{
	enum { N = 1019 };
	static struct fetch_req r[N];
	static struct fetch_req *out[N];
	struct cache_bitmap bm;
	struct fetch_sched s;
	struct fetch_policy p;
	struct fetch_job *job;
	uint64_t size = 2048 * 256 * KiB; /* 512 MiB: 2048 chunks */
	unsigned jobs = 0;

	fetch_policy_default(&p);
	p.max_requests = 64;
	assert_int_equal(cache_bitmap_init(&bm, size / 4096, false), 0);
	assert_int_equal(fetch_sched_init(&s, &bm, size, &p, N), 0);
	/* A read first, alone: a request of its own at once. */
	event(&r[0], 0, 4096);
	assert_int_equal(fetch_sched_add(&s, &r[0], 0), 0);
	job = fetch_sched_pick(&s, 0, NULL);
	assert_non_null(job);
	assert_int_equal(job->nruns, 1);
	assert_int_equal(job->bytes, 256 * KiB);
	assert_false(job->batch);
	/* Then many at distinct chunks (every other one): they all go out within the budget. */
	for (size_t i = 1; i < N; i++) {
		event(&r[i], (uint64_t)(2 * i) * 256 * KiB + 8192, 4096);
		assert_int_equal(fetch_sched_add(&s, &r[i], 0), 0);
	}
	while ((job = fetch_sched_pick(&s, FETCH_GATHER_MS, NULL))) {
		assert_true(job->nruns <= FETCH_MAX_RUNS);
		for (size_t k = 1; k < job->nruns; k++) /* sorted, disjoint */
			assert_true(job->runs[k - 1].offset + job->runs[k - 1].length <
				    job->runs[k].offset);
		jobs++;
	}
	assert_int_equal(jobs + 1, 64); /* the whole budget, no more */
	assert_int_equal(s.njobs, 64);
	for (size_t i = 0; i < N; i++)
		assert_true(fetch_sched_in_flight(&s, r[i].one.offset / 4096, 1));
	/* Nothing is answered before its bytes are there. */
	assert_int_equal(fetch_sched_collect(&s, 0, out, N), 0);
	fetch_sched_destroy(&s);
	cache_bitmap_destroy(&bm);
}

/* Reads that arrive together (threads of one program, a parallel loader) share requests: those
 * that come while another's request has just left wait a moment, then travel as one request
 * of up to 4 MiB of windows (the link's rate unknown), read-ahead waiting with them. A read
 * that follows an answered one never waits; on a slow link each chunk still has a request. */
static void test_reads_arriving_together_share_requests(void **state)
{
	enum { N = 24 };
	struct fetch_req r[N], *out[N];
	struct fetch_job *first, *job, *jobs[N];
	struct cache_bitmap bm;
	struct fetch_sched s;
	struct fetch_policy p;
	uint64_t size = 256 * MiB, wake, covered = 0;
	size_t njobs = 0, ndemand = 0;

	fetch_policy_default(&p);
	assert_int_equal(cache_bitmap_init(&bm, size / 4096, false), 0);
	assert_int_equal(fetch_sched_init(&s, &bm, size, &p, N), 0);
	event(&r[0], 0, 4096);
	assert_int_equal(fetch_sched_add(&s, &r[0], 0), 0);
	first = fetch_sched_pick(&s, 0, &wake);
	assert_non_null(first);
	assert_false(first->batch);
	/* 20 more at once, sequential from their first byte (read-ahead would follow each). */
	for (size_t i = 1; i <= 20; i++) {
		event(&r[i], i * 8 * MiB, 4096);
		assert_int_equal(fetch_sched_add(&s, &r[i], 0), 0);
		(void)fetch_sched_note_read(&s, i * 8 * MiB, 4096);
		(void)fetch_sched_note_read(&s, i * 8 * MiB + 4096, 4096);
	}
	assert_null(fetch_sched_pick(&s, 1, &wake)); /* nothing leaves yet, read-ahead neither */
	assert_int_equal(wake, FETCH_GATHER_MS);
	while (njobs < N && (job = fetch_sched_pick(&s, FETCH_GATHER_MS, &wake))) {
		jobs[njobs++] = job;
		if (job->kind != FETCH_JOB_DEMAND)
			continue; /* read-ahead, after them */
		assert_true(job->batch);
		assert_true(job->bytes <= 4 * MiB);
		/* Each read goes as soon as its own bytes are there: where they end. */
		assert_int_equal(job->nanswer, job->nruns);
		for (size_t k = 0; k < job->nruns; k++)
			assert_int_equal(job->answer_at[k], job->runs[k].offset + 4096);
		covered += job->nruns;
		ndemand++;
	}
	assert_int_equal(covered, 20); /* every read on its way */
	assert_int_equal(ndemand, 2);  /* in two requests, not twenty */
	for (size_t i = 1; i <= 20; i++)
		assert_true(fetch_sched_in_flight(&s, i * 8 * MiB / 4096, 1));
	/* Answered, the next read goes at once. */
	complete_job(&bm, &s, first);
	for (size_t i = 0; i < njobs; i++)
		complete_job(&bm, &s, jobs[i]);
	while ((job = fetch_sched_pick(&s, FETCH_GATHER_MS, &wake)))
		complete_job(&bm, &s, job); /* the rest of read-ahead */
	assert_int_equal(fetch_sched_collect(&s, FETCH_GATHER_MS, out, N), 21);
	event(&r[21], 200 * MiB, 4096);
	assert_int_equal(fetch_sched_add(&s, &r[21], FETCH_GATHER_MS), 0);
	job = fetch_sched_pick(&s, FETCH_GATHER_MS, &wake);
	assert_non_null(job);
	/* On a slow link (12.5 MB/s) two reads that come together still have a request each. */
	s.link_bytes_per_s = 12500000;
	event(&r[22], 220 * MiB, 4096);
	event(&r[23], 230 * MiB, 4096);
	assert_int_equal(fetch_sched_add(&s, &r[22], FETCH_GATHER_MS), 0);
	assert_int_equal(fetch_sched_add(&s, &r[23], FETCH_GATHER_MS), 0);
	job = fetch_sched_pick(&s, 2 * FETCH_GATHER_MS, &wake);
	assert_non_null(job);
	assert_int_equal(job->nruns, 1);
	assert_false(job->batch);
	job = fetch_sched_pick(&s, 2 * FETCH_GATHER_MS, &wake);
	assert_non_null(job);
	assert_int_equal(job->nruns, 1);
	fetch_sched_destroy(&s);
	cache_bitmap_destroy(&bm);
}

static struct fetch_files *make_files(uint64_t size, const struct util_extent *const *files,
				      const size_t *counts, size_t n)
{
	struct fetch_files_builder *b;
	struct fetch_files *f;
	uint8_t *buf;
	size_t len;
	struct util_error err = UTIL_ERROR_INIT;

	assert_int_equal(fetch_files_builder_new(size, 0, &b), 0);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(fetch_files_builder_add(b, files[i], counts[i]), 0);
	assert_int_equal(fetch_files_builder_finish(b, &buf, &len, NULL), 0);
	fetch_files_builder_free(b);
	assert_int_equal(fetch_files_parse(buf, len, size, &f, &err), 0);
	free(buf);
	return f;
}

/* env_init's scheduler (16 MiB, 1 MiB chunks, read-ahead 2..8 MiB) with an index of n files. */
static struct fetch_files *env_files(struct env *e, const struct util_extent *const *files,
				     const size_t *counts, size_t n)
{
	struct fetch_files *f;

	env_init(e, 16 * MiB, false);
	f = make_files(16 * MiB, files, counts, n);
	e->s.files = f;
	return f;
}

static void env_files_free(struct env *e, struct fetch_files *f)
{
	e->s.files = NULL;
	fetch_files_free(f);
	env_free(e);
}

/* Reads that leave together take their neighbours in the blob first: 15 readers of 15 files of
 * 1 MiB lying side by side, arriving in a scrambled order, go in requests of one range each
 * (4 MiB: files next to each other), not of four ranges apart (a multipart answer the registry
 * pays for per part). */
static void test_reads_together_take_their_neighbours(void **state)
{
	enum { N = 16 };
	struct util_extent ext[N];
	const struct util_extent *files[N];
	size_t counts[N];
	struct fetch_req r[N];
	struct fetch_job *job, *first;
	struct fetch_files *f;
	struct cache_bitmap bm;
	struct fetch_sched s;
	struct fetch_policy p;
	uint64_t size = 64 * MiB, wake, bytes = 0;
	size_t ndemand = 0;

	fetch_policy_default(&p);
	assert_int_equal(cache_bitmap_init(&bm, size / 4096, false), 0);
	assert_int_equal(fetch_sched_init(&s, &bm, size, &p, N), 0);
	for (size_t i = 0; i < N; i++) {
		ext[i] = (struct util_extent){8 * MiB + i * MiB, MiB};
		files[i] = &ext[i];
		counts[i] = 1;
	}
	f = make_files(size, files, counts, N);
	s.files = f;
	event(&r[0], ext[0].offset, 128 * KiB);
	assert_int_equal(fetch_sched_add(&s, &r[0], 0), 0);
	first = fetch_sched_pick(&s, 0, &wake);
	assert_non_null(first);
	assert_one_run(first, ext[0].offset, MiB); /* a file from its start: all of it */
	for (size_t i = 1; i < N; i++) {
		size_t x = 1 + (i * 7) % (N - 1); /* 8, 15, 7, 14, ...: every one of 1..15 */

		event(&r[i], ext[x].offset, 128 * KiB);
		assert_int_equal(fetch_sched_add(&s, &r[i], 0), 0);
	}
	assert_null(fetch_sched_pick(&s, 1, &wake)); /* they wait for each other */
	while ((job = fetch_sched_pick(&s, FETCH_GATHER_MS, &wake))) {
		if (job->kind != FETCH_JOB_DEMAND)
			continue;
		assert_int_equal(job->nruns, 1);
		assert_true(job->bytes <= 4 * MiB);
		bytes += job->bytes;
		ndemand++;
	}
	assert_int_equal(bytes, 15 * MiB); /* every file, once */
	assert_true(ndemand <= 5);
	for (size_t i = 1; i < N; i++)
		assert_true(fetch_sched_in_flight(&s, ext[i].offset / 4096, 256));
	s.files = NULL;
	fetch_files_free(f);
	fetch_sched_destroy(&s);
	cache_bitmap_destroy(&bm);
}

/* A file whose first bytes came with something else (the mount's first round): its first
 * missing byte is where its reader starts missing, a file start (first window, read-ahead),
 * when all before it is present; a miss after a hole is not. */
static void test_file_start_after_present_head(void **state)
{
	static const struct util_extent a[] = {{1 * MiB, 8 * MiB}};
	static const struct util_extent b[] = {{9 * MiB, 6 * MiB}};
	const struct util_extent *const files[] = {a, b};
	const size_t counts[] = {1, 1};
	struct fetch_req r[2];
	struct fetch_job *job;
	struct fetch_files *f;
	struct env e;

	f = env_files(&e, files, counts, 2);
	cache_bitmap_set_range(&e.bm, 0, (1 * MiB + 256 * KiB) / 4096); /* a's first 256 KiB */
	cache_bitmap_set_range(&e.bm, 9 * MiB / 4096, 256 * KiB / 4096); /* b's, and not ... */
	cache_bitmap_set_range(&e.bm, (9 * MiB + 512 * KiB) / 4096, 1); /* ... a block beyond */
	event(&r[0], 1 * MiB + 256 * KiB, 4096);
	assert_int_equal(fetch_sched_add(&e.s, &r[0], 0), 0);
	assert_true(fetch_sched_note_read(&e.s, 1 * MiB + 256 * KiB, 4096)); /* read-ahead */
	job = fetch_sched_pick(&e.s, 0, NULL);
	assert_non_null(job);
	assert_int_equal(job->runs[0].offset, 1 * MiB + 256 * KiB);
	assert_int_equal(job->bytes, 4 * MiB); /* the first window, not a chunk */
	/* b: a hole between its present head and the read: a read in the middle of it. */
	event(&r[1], 9 * MiB + 512 * KiB + 4096, 4096);
	assert_int_equal(fetch_sched_add(&e.s, &r[1], 0), 0);
	assert_false(fetch_sched_note_read(&e.s, 9 * MiB + 512 * KiB + 4096, 4096));
	job = fetch_sched_pick(&e.s, FETCH_GATHER_MS, NULL);
	assert_non_null(job);
	assert_int_equal(job->runs[0].offset, 9 * MiB + 512 * KiB + 4096);
	assert_true(job->bytes <= 1 * MiB);
	env_files_free(&e, f);
}

/* With a file index a read fetches its file: a small one whole (both of its ranges, nothing
 * between them), a big one a chunk's worth of its own data, read-ahead never past its end. */
static void test_file_aware_fetching(void **state)
{
	static const struct util_extent small[] = {{100 * KiB, 8 * KiB}, {300 * KiB, 4 * KiB}};
	static const struct util_extent big[] = {{1 * MiB, 3 * MiB}};
	const struct util_extent *const files[] = {small, big};
	const size_t counts[] = {2, 1};
	struct fetch_req r[8];
	struct fetch_job *job;
	struct fetch_files *f;
	struct env e;

	f = env_files(&e, files, counts, 2);
	event(&r[0], 300 * KiB, 4096);
	assert_int_equal(fetch_sched_add(&e.s, &r[0], 0), 0);
	job = fetch_sched_pick(&e.s, 0, NULL);
	assert_non_null(job);
	assert_int_equal(job->nruns, 2);
	assert_int_equal(job->runs[0].offset, 100 * KiB);
	assert_int_equal(job->runs[0].length, 8 * KiB);
	assert_int_equal(job->runs[1].offset, 300 * KiB);
	assert_int_equal(job->runs[1].length, 4 * KiB);
	complete(&e, job);
	/* A big file: from the missing block, one chunk of its data. */
	event(&r[1], 3 * MiB + 512 * KiB, 4096);
	assert_int_equal(fetch_sched_add(&e.s, &r[1], 0), 0);
	assert_true(fetch_sched_note_read(&e.s, 3 * MiB + 512 * KiB, 4096) == false);
	job = fetch_sched_pick(&e.s, 0, NULL);
	assert_non_null(job);
	assert_one_run(job, 3 * MiB + 512 * KiB, 512 * KiB); /* the file ends at 4 MiB */
	complete(&e, job);
	/* A read from the file's first byte fetches the first read-ahead window with it, in one
	 * demand request (four chunks; here what the file lacks: up to its last 512 KiB, fetched
	 * above); the read-ahead queued for that window finds it on its way. */
	event(&r[2], 1 * MiB, 64 * KiB);
	assert_int_equal(fetch_sched_add(&e.s, &r[2], 0), 0);
	assert_true(fetch_sched_note_read(&e.s, 1 * MiB, 64 * KiB));
	job = fetch_sched_pick(&e.s, 0, NULL);
	assert_non_null(job);
	assert_int_equal(job->kind, FETCH_JOB_DEMAND);
	assert_one_run(job, 1 * MiB, 2 * MiB + 512 * KiB);
	assert_null(fetch_sched_pick(&e.s, 0, NULL));
	complete(&e, job);
	while ((job = fetch_sched_pick(&e.s, 0, NULL)) || e.s.njobs) {
		if (!job) /* the read-ahead picked above */
			for (size_t j = 0; j < FETCH_MAX_JOBS; j++)
				if (e.s.jobs[j].busy)
					job = &e.s.jobs[j];
		for (size_t i = 0; i < job->nruns; i++)
			assert_true(job->runs[i].offset + job->runs[i].length <= 4 * MiB);
		complete(&e, job);
	}
	assert_true(cache_bitmap_test_range(&e.bm, 2 * MiB / 4096, 2 * MiB / 4096)); /* to the end */
	assert_int_equal(cache_bitmap_find(&e.bm, 4 * MiB / 4096, 16 * MiB / 4096, true),
			 16 * MiB / 4096); /* nothing past it */
	env_files_free(&e, f);
}

/* The job picked for a read of a block at off, added now. */
static struct fetch_job *demand_job(struct env *e, struct fetch_req *r, uint64_t off)
{
	struct fetch_job *job;

	event(r, off, 4096);
	assert_int_equal(fetch_sched_add(&e->s, r, 0), 0);
	job = fetch_sched_pick(&e->s, 0, NULL);
	assert_non_null(job);
	return job;
}

/* A read at a second place in a file that is partly here fetches all the file lacks (a
 * program faulting in an executable's pages at random), both sides of the read, when the
 * file is not large (4 MiB here, no link measured); a larger file keeps chunk windows. */
static void test_second_fault_fetches_the_file(void **state)
{
	static const struct util_extent mid[] = {{1 * MiB, 3 * MiB}};
	static const struct util_extent large[] = {{8 * MiB, 6 * MiB}};
	const struct util_extent *const files[] = {mid, large};
	const size_t counts[] = {1, 1};
	struct fetch_req r[4];
	struct fetch_job *job;
	struct fetch_files *f;
	struct env e;

	f = env_files(&e, files, counts, 2);
	job = demand_job(&e, &r[0], 2 * MiB + 512 * KiB); /* nothing of it here: one chunk */
	assert_one_run(job, 2 * MiB + 512 * KiB, 1 * MiB);
	complete(&e, job);
	job = demand_job(&e, &r[1], 1 * MiB + 256 * KiB); /* a second place: the rest, both sides */
	assert_int_equal(job->nruns, 2);
	assert_int_equal(job->runs[0].offset, 1 * MiB);
	assert_int_equal(job->runs[0].length, 1 * MiB + 512 * KiB);
	assert_int_equal(job->runs[1].offset, 3 * MiB + 512 * KiB);
	assert_int_equal(job->runs[1].length, 512 * KiB);
	complete(&e, job);
	job = demand_job(&e, &r[2], 10 * MiB); /* 6 MiB of data: over the limit */
	complete(&e, job);
	job = demand_job(&e, &r[3], 9 * MiB);
	assert_one_run(job, 9 * MiB, 1 * MiB);
	complete(&e, job);
	env_files_free(&e, f);
}

/* Over a long link the second place's fetch is the part of the file from the read on; the
 * part before it goes in a request of its own beside it (as neighbours): sorted into one, it
 * would come first, and a read at a library's end (its data segment) wait for all of it. */
static void test_second_fault_over_a_long_link_reads_first(void **state)
{
	static const struct util_extent mid[] = {{1 * MiB, 3 * MiB}};
	const struct util_extent *const files[] = {mid};
	const size_t counts[] = {1};
	struct fetch_req r[2];
	struct fetch_job *job, *side;
	struct fetch_files *f;
	struct env e;

	f = env_files(&e, files, counts, 1);
	fetch_sched_link_sample(&e.s, 50000, 100000, 1 * MiB, 1 * MiB); /* 10 MiB/s, 50 ms */
	job = demand_job(&e, &r[0], 1 * MiB + 512 * KiB);
	complete(&e, job);
	job = demand_job(&e, &r[1], 3 * MiB + 512 * KiB); /* a second place, near the end */
	assert_one_run(job, 3 * MiB + 512 * KiB, 512 * KiB);
	side = fetch_sched_pick(&e.s, 1000, NULL);
	assert_non_null(side);
	assert_int_equal(side->kind, FETCH_JOB_READAHEAD);
	assert_int_equal(side->nruns, 2); /* the rest: before the read, less what is here */
	assert_int_equal(side->runs[0].offset, 1 * MiB);
	assert_int_equal(side->runs[0].length, 512 * KiB);
	assert_int_equal(side->runs[1].offset, 2 * MiB + 512 * KiB);
	assert_int_equal(side->runs[1].length, 1 * MiB);
	complete(&e, job);
	complete(&e, side);
	env_files_free(&e, f);
}

/* A read whose bytes a job in flight brings (made for another read, further on in its stream)
 * gets no request of its own and goes when they are here: the job's answer_at has the end of
 * its range, in order, once. */
static void test_a_read_on_its_way_goes_with_its_bytes(void **state)
{
	struct fetch_req r[3];
	struct fetch_job *job;
	struct env e;

	env_init(&e, 16 * MiB, false);
	event(&r[0], 0, 4096);
	assert_int_equal(fetch_sched_add(&e.s, &r[0], 0), 0);
	job = fetch_sched_pick(&e.s, 0, NULL);
	assert_non_null(job);
	assert_one_run(job, 0, 1 * MiB);
	assert_int_equal(job->nanswer, 1);
	event(&r[1], 512 * KiB + 100, 4096); /* spans two blocks */
	event(&r[2], 256 * KiB, 8192);
	assert_int_equal(fetch_sched_add(&e.s, &r[1], 0), 0);
	assert_int_equal(fetch_sched_add(&e.s, &r[2], 0), 0);
	assert_null(fetch_sched_pick(&e.s, 0, NULL));
	assert_null(fetch_sched_pick(&e.s, 0, NULL)); /* (once each) */
	assert_int_equal(job->nanswer, 3);
	assert_int_equal(job->answer_at[0], 4096);
	assert_int_equal(job->answer_at[1], 264 * KiB);
	assert_int_equal(job->answer_at[2], 520 * KiB);
	complete(&e, job);
	assert_true(fetch_req_satisfied(&e.s, &r[1]));
	env_free(&e);
}

/* Small files whose data lies beside each other share one request, whole files only, up to
 * a chunk, both ways; a larger file after them is not dragged in. */
static void test_small_files_share_a_request(void **state)
{
	static const struct util_extent a[] = {{0, 300 * KiB}};
	static const struct util_extent b[] = {{300 * KiB, 400 * KiB}};
	static const struct util_extent c[] = {{700 * KiB, 200 * KiB}};
	static const struct util_extent big[] = {{900 * KiB, 3 * MiB}};
	const struct util_extent *const files[] = {a, b, c, big};
	const size_t counts[] = {1, 1, 1, 1};
	struct fetch_req r;
	struct fetch_job *job;
	struct fetch_files *f;
	struct env e;

	f = env_files(&e, files, counts, 4);
	event(&r, 310 * KiB, 4096); /* in b: a, b and c come whole (900 KiB), not big */
	assert_int_equal(fetch_sched_add(&e.s, &r, 0), 0);
	job = fetch_sched_pick(&e.s, 0, NULL);
	assert_non_null(job);
	assert_one_run(job, 0, 900 * KiB); /* adjacent: one range */
	complete(&e, job);
	env_files_free(&e, f);
}

/* Over a long link a read's small file goes alone and its neighbours in a request of their own
 * beside it, so that the read has its bytes after a round trip and its own, not theirs: sent
 * once the read's own bytes would have passed the link (and 2 ms), so that the two responses
 * do not share the link's queue. Reads that arrive together still share one request with
 * their neighbours. */
static void test_small_files_neighbours_beside_over_a_long_link(void **state)
{
	static const struct util_extent a[] = {{0, 300 * KiB}};
	static const struct util_extent b[] = {{300 * KiB, 40 * KiB}};
	static const struct util_extent c[] = {{340 * KiB, 200 * KiB}};
	static const struct util_extent d[] = {{8 * MiB, 40 * KiB}};
	static const struct util_extent e2[] = {{8 * MiB + 40 * KiB, 40 * KiB}};
	const struct util_extent *const files[] = {a, b, c, d, e2};
	const size_t counts[] = {1, 1, 1, 1, 1};
	struct fetch_req r, q[2];
	struct fetch_job *job, *side;
	struct fetch_files *f;
	uint64_t wake;
	struct env e;

	f = env_files(&e, files, counts, 5);
	fetch_sched_link_sample(&e.s, 50000, 100000, 1 * MiB, 1 * MiB); /* 10 MiB/s, 50 ms */
	e.s.pol.max_side_jobs = 0; /* read-ahead's cap: the neighbours are the read's own */
	event(&r, 310 * KiB, 4096); /* in b */
	assert_int_equal(fetch_sched_add(&e.s, &r, 0), 0);
	job = fetch_sched_pick(&e.s, 0, NULL);
	assert_non_null(job);
	assert_int_equal(job->kind, FETCH_JOB_DEMAND);
	assert_one_run(job, 300 * KiB, 40 * KiB);
	assert_int_equal(job->answer_at[0], 316 * KiB); /* the read's end, in whole blocks */
	/* 40 KiB at 10 MiB/s: 4 ms, and the margin: not yet at 5 ms, then at once (well before
	 * the read's round trip of 50 ms) */
	assert_null(fetch_sched_pick(&e.s, 5, &wake));
	assert_int_equal(wake, 6);
	side = fetch_sched_pick(&e.s, 6, NULL);
	assert_non_null(side);
	assert_int_equal(side->kind, FETCH_JOB_READAHEAD);
	assert_int_equal(side->nruns, 2);
	assert_int_equal(side->runs[0].offset, 0);
	assert_int_equal(side->runs[0].length, 300 * KiB);
	assert_int_equal(side->runs[1].offset, 340 * KiB);
	assert_int_equal(side->runs[1].length, 200 * KiB);
	assert_null(fetch_sched_pick(&e.s, 6, NULL));
	complete(&e, job);
	complete(&e, side);
	assert_true(fetch_req_satisfied(&e.s, &r));
	/* two reads together (d and e2, each the other's neighbour): one request, as before */
	event(&q[0], 8 * MiB, 4096);
	event(&q[1], 8 * MiB + 40 * KiB, 4096);
	assert_int_equal(fetch_sched_add(&e.s, &q[0], 0), 0);
	assert_int_equal(fetch_sched_add(&e.s, &q[1], 0), 0);
	job = fetch_sched_pick(&e.s, 0, NULL);
	assert_non_null(job);
	assert_one_run(job, 8 * MiB, 80 * KiB);
	assert_null(fetch_sched_pick(&e.s, 0, NULL));
	complete(&e, job);
	env_files_free(&e, f);
}

/* A larger file among a small file's neighbours is passed over, not fetched and not the end
 * of them: the small file after it comes along, within four times the neighbours' budget
 * (a chunk here) of the read's file. */
static void test_small_files_pass_over_a_larger_file(void **state)
{
	static const struct util_extent a[] = {{0, 100 * KiB}};
	static const struct util_extent big[] = {{100 * KiB, 2 * MiB}};
	static const struct util_extent c[] = {{2 * MiB + 100 * KiB, 100 * KiB}};
	static const struct util_extent big2[] = {{2 * MiB + 200 * KiB, 2 * MiB}};
	static const struct util_extent far[] = {{4 * MiB + 200 * KiB, 100 * KiB}};
	const struct util_extent *const files[] = {a, big, c, big2, far};
	const size_t counts[] = {1, 1, 1, 1, 1};
	struct fetch_req r;
	struct fetch_job *job;
	struct fetch_files *f;
	struct env e;

	f = env_files(&e, files, counts, 5);
	job = demand_job(&e, &r, 0); /* in a */
	assert_int_equal(job->nruns, 2);
	assert_int_equal(job->runs[0].offset, 0);
	assert_int_equal(job->runs[0].length, 100 * KiB);
	assert_int_equal(job->runs[1].offset, 2 * MiB + 100 * KiB); /* c, not big */
	assert_int_equal(job->runs[1].length, 100 * KiB);	    /* and not far */
	complete(&e, job);
	env_files_free(&e, f);
}

/* A read's neighbours wait until the bytes sent before them would have passed the link, not
 * only the read's own (1 MiB of metadata at 10 MiB/s: 100 ms), and at most four round trips
 * after the read. */
static void test_neighbours_wait_for_the_link(void **state)
{
	static const struct util_extent a[] = {{0, 300 * KiB}};
	static const struct util_extent b[] = {{300 * KiB, 40 * KiB}};
	static const struct util_extent c[] = {{340 * KiB, 200 * KiB}};
	static const struct util_extent d[] = {{12 * MiB, 40 * KiB}};
	static const struct util_extent d2[] = {{12 * MiB + 40 * KiB, 40 * KiB}};
	static const struct util_extent g[] = {{14 * MiB, 40 * KiB}};
	static const struct util_extent g2[] = {{14 * MiB + 40 * KiB, 40 * KiB}};
	const struct util_extent *const files[] = {a, b, c, d, d2, g, g2};
	const size_t counts[] = {1, 1, 1, 1, 1, 1, 1};
	struct util_extent meta[] = {{8 * MiB, 1 * MiB}}, more[] = {{4 * MiB, 4 * MiB}};
	struct fetch_req m = {.kind = FETCH_REQ_ENSURE, .v = meta, .n = 1};
	struct fetch_req m2 = {.kind = FETCH_REQ_ENSURE, .v = more, .n = 1}, r, q, t;
	struct fetch_job *job, *read, *side, *read2, *side2;
	struct fetch_files *f;
	uint64_t wake;
	struct env e;

	f = env_files(&e, files, counts, 7);
	fetch_sched_link_sample(&e.s, 50000, 100000, 1 * MiB, 1 * MiB); /* 10 MiB/s, 50 ms */
	e.s.pol.max_side_jobs = 0;
	assert_int_equal(fetch_sched_add(&e.s, &m, 0), 0);
	job = fetch_sched_pick(&e.s, 0, NULL);
	assert_one_run(job, 8 * MiB, 1 * MiB); /* its bytes pass from 50 to 150 ms */
	event(&r, 310 * KiB, 4096);	       /* in b */
	assert_int_equal(fetch_sched_add(&e.s, &r, 0), 0);
	read = fetch_sched_pick(&e.s, 10, NULL);   /* (after its wait for company) */
	assert_one_run(read, 300 * KiB, 40 * KiB); /* 4 ms more: to 154 */
	/* their response a round trip after they go: from 154 ms, and the margin */
	assert_null(fetch_sched_pick(&e.s, 105, &wake));
	assert_int_equal(wake, 106);
	side = fetch_sched_pick(&e.s, 106, NULL);
	assert_non_null(side);
	assert_int_equal(side->kind, FETCH_JOB_READAHEAD);
	assert_int_equal(side->nruns, 2); /* a and c */
	/* the next read's neighbours wait for its bytes and the metadata's, not for those
	 * neighbours' 500 KiB (to 205 ms): speculative bytes are not counted */
	event(&t, 14 * MiB, 4096); /* in g */
	assert_int_equal(fetch_sched_add(&e.s, &t, 110), 0);
	read2 = fetch_sched_pick(&e.s, 110, NULL);
	assert_one_run(read2, 14 * MiB, 40 * KiB); /* from 160 ms: to 164 */
	assert_null(fetch_sched_pick(&e.s, 115, &wake));
	assert_int_equal(wake, 116);
	side2 = fetch_sched_pick(&e.s, 116, NULL);
	assert_one_run(side2, 14 * MiB + 40 * KiB, 40 * KiB);
	complete(&e, job);
	complete(&e, read);
	complete(&e, side);
	complete(&e, read2);
	complete(&e, side2);
	/* 4 MiB more at 1 s (passing 1,050-1,450 ms): the neighbours of a read at 1,010 ms then
	 * wait four round trips, not ~400 ms */
	assert_int_equal(fetch_sched_add(&e.s, &m2, 1000), 0);
	job = fetch_sched_pick(&e.s, 1000, NULL);
	assert_one_run(job, 4 * MiB, 4 * MiB);
	event(&q, 12 * MiB, 4096); /* in d */
	assert_int_equal(fetch_sched_add(&e.s, &q, 1000), 0);
	read = fetch_sched_pick(&e.s, 1010, NULL);
	assert_one_run(read, 12 * MiB, 40 * KiB);
	assert_null(fetch_sched_pick(&e.s, 1211, &wake));
	assert_int_equal(wake, 1212);
	side = fetch_sched_pick(&e.s, 1212, NULL);
	assert_one_run(side, 12 * MiB + 40 * KiB, 40 * KiB);
	complete(&e, job);
	complete(&e, read);
	complete(&e, side);
	env_files_free(&e, f);
}

/* The neighbours of reads that come one after the other go at most four round trips after
 * the first of them waited, not four round trips after the last read: a steady stream of
 * reads behind a long ensure would otherwise hold them back until the reads stop. */
static void test_neighbours_wait_from_the_first(void **state)
{
	enum { N = 6 };
	static struct util_extent fx[2 * N][1];
	const struct util_extent *files[2 * N];
	size_t counts[2 * N];
	struct util_extent meta[] = {{12 * MiB, 4 * MiB}};
	struct fetch_req m = {.kind = FETCH_REQ_ENSURE, .v = meta, .n = 1}, r[N];
	struct fetch_job *ens, *job, *side = NULL;
	struct fetch_files *f;
	uint64_t t, wake, at = 0;
	struct env e;

	for (int i = 0; i < N; i++) {
		fx[2 * i][0] = (struct util_extent){i * 256 * KiB, 40 * KiB};
		fx[2 * i + 1][0] = (struct util_extent){i * 256 * KiB + 40 * KiB, 40 * KiB};
		files[2 * i] = fx[2 * i];
		files[2 * i + 1] = fx[2 * i + 1];
		counts[2 * i] = counts[2 * i + 1] = 1;
	}
	f = env_files(&e, files, counts, 2 * N);
	fetch_sched_link_sample(&e.s, 50000, 100000, 1 * MiB, 1 * MiB); /* 10 MiB/s, 50 ms */
	e.s.pol.max_side_jobs = 0;
	assert_int_equal(fetch_sched_add(&e.s, &m, 0), 0);
	ens = fetch_sched_pick(&e.s, 0, NULL); /* its bytes pass from 50 to 450 ms */
	assert_one_run(ens, 12 * MiB, 4 * MiB);
	/* a read every 60 ms from 10 ms on, each with a neighbour of its own */
	for (int i = 0; i < N && !side; i++) {
		t = 10 + 60 * (uint64_t)i;
		event(&r[i], i * 256 * KiB, 4096);
		assert_int_equal(fetch_sched_add(&e.s, &r[i], t), 0);
		job = fetch_sched_pick(&e.s, t, NULL);
		assert_one_run(job, i * 256 * KiB, 40 * KiB);
		complete(&e, job);
		for (uint64_t u = t + 1; u < t + 60 && !side; u = wake) {
			wake = UINT64_MAX;
			side = fetch_sched_pick(&e.s, u, &wake);
			if (side)
				at = u;
			else
				assert_true(wake > u);
		}
	}
	/* the first read's neighbour waited from 12 ms, four round trips at most: 212 ms; the
	 * reads at 70, 130 and 190 ms came meanwhile, and theirs go with it */
	assert_non_null(side);
	assert_int_equal(side->kind, FETCH_JOB_READAHEAD);
	assert_int_equal(at, 212);
	assert_int_equal(side->nruns, 4);
	complete(&e, side);
	complete(&e, ens);
	env_files_free(&e, f);
}

/* What the link still carries is settled when a job readers wait on ends: a rate measured low
 * at first (a request in TCP's slow start) put the link's end seconds away, and the
 * neighbours of every read then waited their four round trips; once the jobs in flight have
 * arrived, they go at once. */
static void test_link_use_settles_when_a_read_ends(void **state)
{
	static const struct util_extent a[] = {{0, 40 * KiB}};
	static const struct util_extent b[] = {{40 * KiB, 40 * KiB}};
	const struct util_extent *const files[] = {a, b};
	const size_t counts[] = {1, 1};
	struct util_extent meta[] = {{12 * MiB, 4 * MiB}};
	struct fetch_req m = {.kind = FETCH_REQ_ENSURE, .v = meta, .n = 1}, r;
	struct fetch_job *ens, *read, *side;
	struct fetch_files *f;
	uint64_t wake;
	struct env e;

	f = env_files(&e, files, counts, 2);
	fetch_sched_link_sample(&e.s, 50000, 1000000, 1 * MiB, 1 * MiB); /* 1 MiB/s, 50 ms */
	e.s.pol.max_side_jobs = 0;
	assert_int_equal(fetch_sched_add(&e.s, &m, 0), 0);
	ens = fetch_sched_pick(&e.s, 0, NULL); /* 4 s of the link at that rate */
	assert_one_run(ens, 12 * MiB, 4 * MiB);
	complete_job_at(&e.bm, &e.s, ens, 300); /* ... it took 300 ms */
	event(&r, 10 * KiB, 4096);		/* in a */
	assert_int_equal(fetch_sched_add(&e.s, &r, 300), 0);
	read = fetch_sched_pick(&e.s, 310, NULL);
	assert_one_run(read, 0, 40 * KiB);
	/* the link carries the read's 40 KiB from 360 ms (40 ms at 1 MiB/s): its neighbour goes
	 * a round trip before they have passed, and the margin */
	assert_null(fetch_sched_pick(&e.s, 311, &wake));
	assert_int_equal(wake, 352);
	side = fetch_sched_pick(&e.s, 352, NULL);
	assert_one_run(side, 40 * KiB, 40 * KiB);
	complete(&e, read);
	complete(&e, side);
	env_files_free(&e, f);
}

/* Paced ensures (shared objects ahead of a loader) over a long link leave one after the
 * other, each once what went before it would have passed the link, at most four round trips
 * after it came; an ensure that is not paced, and any ensure over a short link, at once. */
static void test_paced_ensures(void **state)
{
	struct util_extent v1[] = {{0, 1 * MiB}}, v2[] = {{2 * MiB, 512 * KiB}};
	struct util_extent v3[] = {{4 * MiB, 4 * MiB}}, v4[] = {{10 * MiB, 64 * KiB}};
	struct util_extent v5[] = {{12 * MiB, 64 * KiB}};
	struct fetch_req a = {.kind = FETCH_REQ_ENSURE, .v = v1, .n = 1, .paced = true};
	struct fetch_req b = {.kind = FETCH_REQ_ENSURE, .v = v2, .n = 1, .paced = true};
	struct fetch_req c = {.kind = FETCH_REQ_ENSURE, .v = v3, .n = 1, .paced = true};
	struct fetch_req meta = {.kind = FETCH_REQ_ENSURE, .v = v4, .n = 1};
	struct fetch_req d = {.kind = FETCH_REQ_ENSURE, .v = v5, .n = 1, .paced = true};
	struct fetch_job *ja, *jb, *jc, *jm, *jd;
	uint64_t wake;
	struct env e;

	env_init(&e, 16 * MiB, false);
	fetch_sched_link_sample(&e.s, 50000, 100000, 1 * MiB, 1 * MiB); /* 10 MiB/s, 50 ms */
	assert_int_equal(fetch_sched_add(&e.s, &a, 0), 0);
	assert_int_equal(fetch_sched_add(&e.s, &b, 0), 0);
	assert_int_equal(fetch_sched_add(&e.s, &c, 0), 0);
	ja = fetch_sched_pick(&e.s, 0, NULL); /* the link is free: at once, passing 50-150 ms */
	assert_one_run(ja, 0, 1 * MiB);
	assert_null(fetch_sched_pick(&e.s, 0, &wake));
	assert_int_equal(wake, 102); /* b's response follows a's: from 150 ms, and the margin */
	assert_int_equal(fetch_sched_add(&e.s, &meta, 10), 0);
	jm = fetch_sched_pick(&e.s, 10, NULL); /* not paced: at once, passing 150-157 ms */
	assert_one_run(jm, 10 * MiB, 64 * KiB);
	assert_null(fetch_sched_pick(&e.s, 108, &wake));
	assert_int_equal(wake, 109);
	jb = fetch_sched_pick(&e.s, 109, NULL);
	assert_one_run(jb, 2 * MiB, 512 * KiB); /* passing 159-209 ms */
	assert_null(fetch_sched_pick(&e.s, 160, &wake));
	assert_int_equal(wake, 161);
	jc = fetch_sched_pick(&e.s, 161, NULL);
	assert_one_run(jc, 4 * MiB, 4 * MiB); /* passing 211-611 ms */
	/* one that came now waits four round trips at most, not ~400 ms */
	assert_int_equal(fetch_sched_add(&e.s, &d, 161), 0);
	assert_null(fetch_sched_pick(&e.s, 360, &wake));
	assert_int_equal(wake, 361);
	jd = fetch_sched_pick(&e.s, 361, NULL);
	assert_one_run(jd, 12 * MiB, 64 * KiB);
	complete(&e, ja);
	complete(&e, jm);
	complete(&e, jb);
	complete(&e, jc);
	complete(&e, jd);
	env_free(&e);

	/* a short link: no pacing */
	env_init(&e, 16 * MiB, false);
	fetch_sched_link_sample(&e.s, 1000, 2000, 1 * MiB, 1 * MiB);
	assert_int_equal(fetch_sched_add(&e.s, &a, 0), 0);
	assert_int_equal(fetch_sched_add(&e.s, &b, 0), 0);
	ja = fetch_sched_pick(&e.s, 0, NULL);
	jb = fetch_sched_pick(&e.s, 0, NULL);
	assert_one_run(ja, 0, 1 * MiB);
	assert_one_run(jb, 2 * MiB, 512 * KiB);
	complete(&e, ja);
	complete(&e, jb);
	env_free(&e);
}

/* Files of a 1 KiB-block image share 4 KiB blocks: a job lists each block once. */
static void test_files_sharing_a_block(void **state)
{
	static const struct util_extent a[] = {{1024, 1024}};
	static const struct util_extent b[] = {{3072, 1024}};
	static const struct util_extent c[] = {{5120, 2048}};
	const struct util_extent *const files[] = {a, b, c};
	const size_t counts[] = {1, 1, 1};
	struct fetch_req r;
	struct fetch_job *job;
	struct fetch_files *f;
	struct env e;

	env_init(&e, 1 * MiB, false);
	f = make_files(1 * MiB, files, counts, 3);
	e.s.files = f;
	event(&r, 3072, 1024);
	assert_int_equal(fetch_sched_add(&e.s, &r, 0), 0);
	job = fetch_sched_pick(&e.s, 0, NULL);
	assert_non_null(job);
	assert_one_run(job, 0, 8192);
	complete(&e, job);
	env_files_free(&e, f);
}

static void test_background_yields(void **state)
{
	struct env e;
	struct fetch_job *b1, *b2, *d;
	struct fetch_req r;

	env_init(&e, 32 * MiB, true);
	/* Idle: background fill in order, up to the side-job limit. */
	b1 = fetch_sched_pick(&e.s, 0, NULL);
	assert_non_null(b1);
	assert_int_equal(b1->kind, FETCH_JOB_BACKGROUND);
	assert_int_equal(b1->runs[0].offset, 0);
	assert_int_equal(b1->bytes, 4 * MiB);
	b2 = fetch_sched_pick(&e.s, 0, NULL);
	assert_int_equal(b2->runs[0].offset, 4 * MiB);
	assert_null(fetch_sched_pick(&e.s, 0, NULL));
	/* A reader arrives: its chunk goes first, and no new background job starts while it
	 * waits, even after a background job ends. */
	event(&r, 20 * MiB, 4096);
	assert_int_equal(fetch_sched_add(&e.s, &r, 0), 0);
	d = fetch_sched_pick(&e.s, 0, NULL);
	assert_int_equal(d->kind, FETCH_JOB_DEMAND);
	complete(&e, b1);
	assert_null(fetch_sched_pick(&e.s, 0, NULL)); /* b2 still running */
	complete(&e, b2);
	b1 = fetch_sched_pick(&e.s, 0, NULL); /* one background job while the reader waits */
	assert_non_null(b1);
	assert_int_equal(b1->kind, FETCH_JOB_BACKGROUND);
	assert_int_equal(b1->runs[0].offset, 8 * MiB);
	assert_null(fetch_sched_pick(&e.s, 0, NULL));
	/* A failed background job backs off and is retried from where it failed. */
	fetch_sched_job_done(&e.s, b1, -EAGAIN, 0);
	assert_null(fetch_sched_pick(&e.s, 0, NULL));
	b1 = fetch_sched_pick(&e.s, 10000, NULL);
	assert_non_null(b1);
	assert_int_equal(b1->runs[0].offset, 8 * MiB);
	/* Background never fetches what the reader's job is fetching. */
	complete(&e, b1);
	b1 = fetch_sched_pick(&e.s, 10000, NULL);
	assert_int_equal(b1->runs[0].offset, 12 * MiB);
	b2 = fetch_sched_pick(&e.s, 10000, NULL);
	assert_null(b2); /* reader still waits: only one background job */
	complete(&e, d);
	complete(&e, b1);
	b1 = fetch_sched_pick(&e.s, 10000, NULL);
	assert_int_equal(b1->runs[0].offset, 16 * MiB);
	assert_int_equal(b1->runs[0].length, 4 * MiB);
	complete(&e, b1);
	b1 = fetch_sched_pick(&e.s, 10000, NULL); /* the reader's chunk is not fetched again */
	assert_int_equal(b1->runs[0].offset, 21 * MiB);
	env_free(&e);
}

/* After a startup profile's replay brought some of a file, a read of it that misses at a
 * second place fetches a chunk, not the rest of the file: what the recorded programs read of
 * it came with the replay. A file the replay did not touch is still fetched whole. */
static void test_replayed_file_not_fetched_whole(void **state)
{
	static const struct util_extent mid[] = {{1 * MiB, 3 * MiB}};
	static const struct util_extent other[] = {{5 * MiB, 3 * MiB}};
	static const struct util_extent prof[] = {{2 * MiB, 64 * KiB}};
	const struct util_extent *const files[] = {mid, other};
	const size_t counts[] = {1, 1};
	struct fetch_replay rp = {.v = prof, .n = 1, .bytes = 64 * KiB};
	struct cache_bitmap mine;
	struct fetch_req r[3];
	struct fetch_job *job;
	struct fetch_files *f;
	struct env e;

	f = env_files(&e, files, counts, 2);
	assert_int_equal(cache_bitmap_init(&mine, 16 * MiB / 4096, false), 0);
	rp.mine = &mine;
	fetch_sched_replay(&e.s, &rp, 1);
	job = fetch_sched_pick(&e.s, 1, NULL);
	assert_non_null(job);
	assert_int_equal(job->kind, FETCH_JOB_REPLAY);
	complete(&e, job);
	assert_false(fetch_replay_active(&rp));
	job = demand_job(&e, &r[0], 3 * MiB); /* a second place of a file the replay brought */
	assert_one_run(job, 3 * MiB, 1 * MiB); /* a chunk (to the file's end) */
	complete(&e, job);
	job = demand_job(&e, &r[1], 7 * MiB); /* not the replay's: one chunk first ... */
	complete(&e, job);
	job = demand_job(&e, &r[2], 5 * MiB + 512 * KiB); /* ... then all it lacks, at once */
	assert_one_run(job, 5 * MiB, 2 * MiB);
	complete(&e, job);
	e.s.files = NULL;
	fetch_files_free(f);
	cache_bitmap_destroy(&mine);
	env_free(&e);
}

/* While a replay is under way, a miss in a file it brought some of starts no read-ahead (the
 * recorded programs' reads of it are on their way); another file's does, and so does the first
 * file's once the replay is over. */
static void test_no_readahead_in_a_file_the_replay_brings(void **state)
{
	static const struct util_extent mid[] = {{1 * MiB, 3 * MiB}};
	static const struct util_extent other[] = {{5 * MiB, 3 * MiB}};
	static const struct util_extent prof[] = {{2 * MiB, 64 * KiB}, {9 * MiB, 64 * KiB}};
	const struct util_extent *const files[] = {mid, other};
	const size_t counts[] = {1, 1};
	struct fetch_replay rp = {.v = prof, .n = 2, .bytes = 128 * KiB};
	struct cache_bitmap mine;
	struct fetch_files *f;
	struct env e;

	f = env_files(&e, files, counts, 2);
	assert_int_equal(cache_bitmap_init(&mine, 16 * MiB / 4096, false), 0);
	rp.mine = &mine;
	fetch_sched_replay(&e.s, &rp, 1);
	/* its first range arrived, the second not yet */
	cache_bitmap_set_range(&mine, 2 * MiB / 4096, 16);
	cache_bitmap_set_range(&e.bm, 2 * MiB / 4096, 16);
	rp.cursor = 1;
	assert_true(fetch_replay_active(&rp));
	assert_false(fetch_sched_note_read(&e.s, 1 * MiB, 4096)); /* mid's first byte */
	assert_int_equal(e.s.nra, 0);
	assert_true(fetch_sched_note_read(&e.s, 5 * MiB, 4096)); /* other's: its first window */
	assert_int_equal(e.s.nra, 1);
	e.s.nra = 0;
	rp.done_ms = 2;
	assert_false(fetch_replay_active(&rp));
	assert_true(fetch_sched_note_read(&e.s, 1 * MiB, 4096));
	assert_int_equal(e.s.nra, 1);
	assert_int_equal(e.s.ra[0].offset, 1 * MiB + 4096); /* after the read */
	e.s.nra = 0;
	e.s.files = NULL;
	fetch_files_free(f);
	cache_bitmap_destroy(&mine);
	env_free(&e);
}

/* A read that misses in a file the replay brings, while it runs, asks for its own block and
 * the profile's ranges of that file the replay has not asked for yet, not a chunk after the
 * read; when the profile lists nothing more of the file, or once the replay is over, the
 * chunk again. */
static void test_a_miss_in_a_file_the_replay_brings_takes_its_profile_ranges(void **state)
{
	static const struct util_extent mid[] = {{1 * MiB, 3 * MiB}};
	static const struct util_extent prof[] = {
	    {1 * MiB, 16 * KiB},	    /* asked for already (before the cursor) */
	    {3 * MiB, 8 * KiB},		    /* mid's, to come */
	    {8 * MiB, 64 * KiB},	    /* no file's */
	    {2 * MiB + 512 * KiB, 4 * KiB}, /* mid's, to come */
	};
	const struct util_extent *const files[] = {mid};
	const size_t counts[] = {1};
	struct fetch_replay rp = {.v = prof, .n = ARRAY_SIZE(prof), .bytes = 92 * KiB};
	struct cache_bitmap mine;
	struct fetch_files *f;
	struct fetch_job *j;
	struct fetch_req r;
	struct env e;

	(void)state;
	f = env_files(&e, files, counts, 1);
	assert_int_equal(cache_bitmap_init(&mine, 16 * MiB / 4096, false), 0);
	rp.mine = &mine;
	fetch_sched_replay(&e.s, &rp, 1);
	cache_bitmap_set_range(&mine, 1 * MiB / 4096, 4); /* its first range arrived */
	cache_bitmap_set_range(&e.bm, 1 * MiB / 4096, 4);
	rp.cursor = 1;
	event(&r, 2 * MiB, 4096);
	assert_int_equal(fetch_sched_add(&e.s, &r, 0), 0);
	j = fetch_sched_pick(&e.s, 1, NULL);
	assert_non_null(j);
	assert_int_equal(j->kind, FETCH_JOB_DEMAND);
	assert_int_equal(j->nruns, 3);
	assert_int_equal(j->runs[0].offset, 2 * MiB);
	assert_int_equal(j->runs[0].length, 4096);
	assert_int_equal(j->runs[1].offset, 2 * MiB + 512 * KiB);
	assert_int_equal(j->runs[1].length, 4 * KiB);
	assert_int_equal(j->runs[2].offset, 3 * MiB);
	assert_int_equal(j->runs[2].length, 8 * KiB);
	complete(&e, j);
	assert_int_equal(fetch_sched_collect(&e.s, 1, (struct fetch_req *[]){NULL}, 1), 1);
	/* The profile lists nothing more of mid (all of it here): a miss gets a chunk of mid's
	 * data from the read on, as with no profile; so it does once the replay is over. */
	for (int over = 0; over < 2; over++) {
		uint64_t at = (over ? 1 : 3) * MiB + 512 * KiB;

		rp.done_ms = over ? 2 : 0;
		assert_int_equal(fetch_replay_active(&rp), !over);
		event(&r, at, 4096);
		assert_int_equal(fetch_sched_add(&e.s, &r, 2), 0);
		j = fetch_sched_pick(&e.s, 2, NULL);
		assert_non_null(j);
		assert_int_equal(j->kind, FETCH_JOB_DEMAND);
		assert_int_equal(j->runs[0].offset, at);
		assert_true(j->runs[0].length >= 256 * KiB);
		complete(&e, j);
		assert_int_equal(fetch_sched_collect(&e.s, 2, (struct fetch_req *[]){NULL}, 1), 1);
	}
	cache_bitmap_destroy(&mine);
	env_files_free(&e, f);
}

/* Replaying a startup profile: its missing ranges, in its order, sent sorted in one
 * multi-range job; present ones skipped; demand first; about one window in flight. */
static void test_replay(void **state)
{
	static const struct util_extent prof[] = {
	    {10 * MiB, 32 * KiB}, {0, 64 * KiB}, {5 * MiB, 16 * KiB}, {10 * MiB, 8 * KiB},
	};
	struct cache_bitmap mine;
	struct fetch_replay rp = {.v = prof, .n = ARRAY_SIZE(prof), .bytes = 120 * KiB,
				  .mine = &mine};
	struct fetch_job *j, *d;
	struct fetch_req r;
	struct env e;

	env_init(&e, 32 * MiB, false);
	assert_int_equal(cache_bitmap_init(&mine, 32 * MiB / 4096, false), 0);
	cache_bitmap_set_range(&e.bm, 0, 16); /* the second range is present */
	event(&r, 20 * MiB, 4096);
	assert_int_equal(fetch_sched_add(&e.s, &r, 0), 0);
	fetch_sched_replay(&e.s, &rp, 1);
	assert_true(fetch_replay_active(&rp));
	d = fetch_sched_pick(&e.s, 1, NULL);
	assert_int_equal(d->kind, FETCH_JOB_DEMAND); /* the waiting reader first */
	j = fetch_sched_pick(&e.s, 1, NULL);
	assert_non_null(j);
	assert_int_equal(j->kind, FETCH_JOB_REPLAY);
	assert_int_equal(j->nruns, 2);
	assert_int_equal(j->runs[0].offset, 5 * MiB);
	assert_int_equal(j->runs[0].length, 16 * KiB);
	assert_int_equal(j->runs[1].offset, 10 * MiB);
	assert_int_equal(j->runs[1].length, 32 * KiB); /* the overlapping range folded in */
	assert_null(fetch_sched_pick(&e.s, 1, NULL)); /* nothing else to replay */
	complete(&e, j);
	assert_false(fetch_replay_active(&rp));
	assert_int_equal(rp.done_ms, 1);
	assert_int_equal(rp.fetched_bytes, 48 * KiB);
	assert_true(cache_bitmap_test_range(&mine, 5 * MiB / 4096, 4));
	assert_false(cache_bitmap_test(&mine, 0)); /* present before: not replay's */
	complete(&e, d);
	cache_bitmap_destroy(&mine);
	env_free(&e);
}

/* A cache disk nearly full (fetch_sched.room): a read fetches its own blocks only, and
 * nothing goes ahead of need -- read-ahead, a replay, the background fill -- until the disk
 * has room again; what jobs in flight will still write counts against the room. */
static void test_nothing_ahead_of_need_on_a_full_disk(void **state)
{
	static const struct util_extent prof[] = {{10 * MiB, 64 * KiB}};
	struct fetch_replay rp = {.v = prof, .n = ARRAY_SIZE(prof), .bytes = 64 * KiB};
	struct fetch_job *job, *ra;
	struct fetch_req r;
	struct env e;

	env_init(&e, 64 * MiB, true);
	e.s.room = 4 * MiB - 1; /* less than the largest job (max_job_bytes 4 MiB) */
	assert_true(fetch_sched_room_short(&e.s));
	fetch_sched_replay(&e.s, &rp, 1);
	assert_false(fetch_sched_note_read(&e.s, 0, 128 * KiB));
	assert_true(fetch_sched_note_read(&e.s, 128 * KiB, 128 * KiB)); /* read-ahead queued */
	event(&r, 30 * MiB + 8 * KiB, 4096);
	assert_int_equal(fetch_sched_add(&e.s, &r, 1), 0);
	job = fetch_sched_pick(&e.s, 1, NULL);
	assert_int_equal(job->kind, FETCH_JOB_DEMAND);
	assert_one_run(job, 30 * MiB + 8 * KiB, 4096); /* not its chunk */
	assert_null(fetch_sched_pick(&e.s, 1, NULL));  /* no read-ahead, replay or fill */
	complete(&e, job);

	/* Room again: what waited goes out, read-ahead first. */
	e.s.room = UINT64_MAX;
	assert_false(fetch_sched_room_short(&e.s));
	ra = fetch_sched_pick(&e.s, 1, NULL);
	assert_non_null(ra);
	assert_int_equal(ra->kind, FETCH_JOB_READAHEAD);
	/* A room that holds one job more: the one in flight takes it. */
	e.s.room = ra->bytes + 4 * MiB;
	assert_false(fetch_sched_room_short(&e.s));
	job = fetch_sched_pick(&e.s, 1, NULL);
	assert_non_null(job);
	assert_int_equal(job->kind, FETCH_JOB_REPLAY);
	assert_true(fetch_sched_room_short(&e.s)); /* 4 MiB less what the replay will write */
	assert_null(fetch_sched_pick(&e.s, 1, NULL));
	complete(&e, job);
	complete(&e, ra);
	assert_false(fetch_sched_room_short(&e.s)); /* (written: the caller's room tells) */
	env_free(&e);
}

static void test_replay_window_and_failures(void **state)
{
	struct util_extent prof[8];
	struct fetch_replay rp = {.v = prof, .n = ARRAY_SIZE(prof)};
	struct fetch_job *j[2], *k;
	struct env e;

	for (size_t i = 0; i < ARRAY_SIZE(prof); i++)
		prof[i] = (struct util_extent){(7 - i) * 2 * MiB, 1 * MiB};
	env_init(&e, 32 * MiB, false);
	e.s.pol.max_side_jobs = 8;
	fetch_sched_replay(&e.s, &rp, 1);
	/* The link is not measured: a window of 1 MiB, in requests of 512 KiB, in profile
	 * order. */
	for (size_t i = 0; i < 2; i++) {
		j[i] = fetch_sched_pick(&e.s, 1, NULL);
		assert_non_null(j[i]);
		assert_int_equal(j[i]->kind, FETCH_JOB_REPLAY);
		assert_int_equal(j[i]->bytes, 512 * KiB);
		assert_int_equal(j[i]->runs[0].offset, 14 * MiB + i * 512 * KiB);
	}
	assert_null(fetch_sched_pick(&e.s, 1, NULL)); /* a window in flight */
	j[0]->received = j[0]->bytes;		      /* the first one's bytes arrived */
	k = fetch_sched_pick(&e.s, 1, NULL);
	assert_non_null(k);
	assert_int_equal(k->runs[0].offset, 12 * MiB);
	assert_null(fetch_sched_pick(&e.s, 1, NULL));
	/* A failure goes back to where the failed job started, after a backoff. */
	fetch_sched_job_done(&e.s, k, -EAGAIN, 1);
	for (size_t i = 0; i < 2; i++)
		complete(&e, j[i]);
	assert_null(fetch_sched_pick(&e.s, 1, NULL));
	k = fetch_sched_pick(&e.s, 10000, NULL);
	assert_non_null(k);
	assert_int_equal(k->runs[0].offset, 12 * MiB);
	/* Failures in a row end the replay; readers fetch for themselves. (The successes
	 * above reset the count.) */
	for (unsigned i = 1; i < FETCH_REPLAY_ATTEMPTS; i++) {
		fetch_sched_job_done(&e.s, k, -EAGAIN, 10000 * i);
		k = fetch_sched_pick(&e.s, 10000 * (i + 1), NULL);
		assert_non_null(k);
	}
	fetch_sched_job_done(&e.s, k, -EAGAIN, 90000);
	assert_true(rp.failed);
	assert_false(fetch_replay_active(&rp));
	assert_null(fetch_sched_pick(&e.s, 100000, NULL));
	env_free(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_chunk_window),
	    cmocka_unit_test(test_policy_fix),
	    cmocka_unit_test(test_coalescing),
	    cmocka_unit_test(test_never_refetch_present),
	    cmocka_unit_test(test_short_last_block),
	    cmocka_unit_test(test_ensure_batches),
	    cmocka_unit_test(test_ensure_batch_split_by_header),
	    cmocka_unit_test(test_demand_jobs_keep_run_cap),
	    cmocka_unit_test(test_ensure_ranges_sharing_blocks),
	    cmocka_unit_test(test_retry_backoff_and_failures),
	    cmocka_unit_test(test_recent_failure_probes_once),
	    cmocka_unit_test(test_recent_failure_forgotten),
	    cmocka_unit_test(test_followup_of_a_timed_out_read_fails_at_once),
	    cmocka_unit_test(test_capacity),
	    cmocka_unit_test(test_readahead_detection),
	    cmocka_unit_test(test_long_link_readahead),
	    cmocka_unit_test(test_short_link_windows_double),
	    cmocka_unit_test(test_event_spanning_chunks),
	    cmocka_unit_test(test_readahead_hits),
	    cmocka_unit_test(test_background_yields),
	    cmocka_unit_test(test_demand_shares_budget),
	    cmocka_unit_test(test_reads_arriving_together_share_requests),
	    cmocka_unit_test(test_reads_together_take_their_neighbours),
	    cmocka_unit_test(test_file_start_after_present_head),
	    cmocka_unit_test(test_file_aware_fetching),
	    cmocka_unit_test(test_second_fault_fetches_the_file),
	    cmocka_unit_test(test_second_fault_over_a_long_link_reads_first),
	    cmocka_unit_test(test_a_read_on_its_way_goes_with_its_bytes),
	    cmocka_unit_test(test_replayed_file_not_fetched_whole),
	    cmocka_unit_test(test_small_files_share_a_request),
	    cmocka_unit_test(test_small_files_neighbours_beside_over_a_long_link),
	    cmocka_unit_test(test_small_files_pass_over_a_larger_file),
	    cmocka_unit_test(test_neighbours_wait_for_the_link),
	    cmocka_unit_test(test_neighbours_wait_from_the_first),
	    cmocka_unit_test(test_link_use_settles_when_a_read_ends),
	    cmocka_unit_test(test_paced_ensures),
	    cmocka_unit_test(test_files_sharing_a_block),
	    cmocka_unit_test(test_no_readahead_in_a_file_the_replay_brings),
	    cmocka_unit_test(test_a_miss_in_a_file_the_replay_brings_takes_its_profile_ranges),
	    cmocka_unit_test(test_replay),
	    cmocka_unit_test(test_replay_window_and_failures),
	    cmocka_unit_test(test_nothing_ahead_of_need_on_a_full_disk),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
