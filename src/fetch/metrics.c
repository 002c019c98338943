// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * What the daemon measures beyond plain counts, for `status --json` and `--prometheus`: how
 * long each read event waited for its answer (a histogram with fixed buckets) and why fetches
 * failed (one kind a failure). Recording is a few relaxed atomic adds in struct fetch_shared,
 * so the numbers survive a worker's replacement like the other counters; the status reply
 * carries them and the client reads them back.
 */
#include <errno.h>
#include <string.h>

#include "fetch/internal.h"
#include "util/cleanup.h"
#include "util/macro.h"
#include "util/time.h"

/* From a read answered out of the page cache (~50 us a live mark costs, DESIGN fact 8) to one
 * that waited out the default 60 s deadline. */
const uint64_t fetch_latency_bounds_us[FETCH_LATENCY_BOUNDS] = {
    100, 1000, 10000, 50000, 100000, 500000, 1000000, 5000000, 30000000, 60000000,
};

size_t fetch_latency_bucket(uint64_t us)
{
	size_t i = 0;

	while (i < FETCH_LATENCY_BOUNDS && us > fetch_latency_bounds_us[i])
		i++;
	return i;
}

static const char *const fail_names[FETCH_FAIL_KINDS] = {
    [FETCH_FAIL_TIMEOUT] = "timeout", [FETCH_FAIL_5XX] = "5xx",	    [FETCH_FAIL_4XX] = "4xx",
    [FETCH_FAIL_NETWORK] = "network", [FETCH_FAIL_WRITE] = "write", [FETCH_FAIL_OTHER] = "other",
};

const char *fetch_fail_kind_name(enum fetch_fail_kind k)
{
	return (unsigned)k < FETCH_FAIL_KINDS ? fail_names[k] : "other";
}

enum fetch_fail_kind fetch_fail_kind_of(int err, int http_status, bool write_failed, bool timed_out)
{
	/* What the daemon saw itself first: its own write, its own deadline. */
	if (write_failed)
		return FETCH_FAIL_WRITE;
	if (timed_out)
		return FETCH_FAIL_TIMEOUT;
	if (http_status >= 500 || http_status == 429 || http_status == 408)
		return FETCH_FAIL_5XX;
	if ((http_status >= 400 && http_status < 500) || err == -EACCES || err == -ENOENT ||
	    err == -ESTALE)
		return FETCH_FAIL_4XX;
	/* The registry client's vocabulary without an answer: -EAGAIN for connect, reset,
	 * DNS and timeouts inside the deadline, -EPROTO for TLS and garbled replies. */
	if (http_status == 0 && (err == -EAGAIN || err == -EPROTO))
		return FETCH_FAIL_NETWORK;
	return FETCH_FAIL_OTHER;
}

void fetch_latency_observe(struct fetch_shared *sh, uint64_t read_us)
{
	uint64_t now = util_now_us(), us = now > read_us ? now - read_us : 0;

	SH_ADD(sh->latency[fetch_latency_bucket(us)], 1);
	SH_ADD(sh->latency_sum_us, us);
}

void fetch_failure_count(struct fetch_shared *sh, enum fetch_fail_kind k)
{
	SH_ADD(sh->failures[(unsigned)k < FETCH_FAIL_KINDS ? k : FETCH_FAIL_OTHER], 1);
}

static json_t *u64_array(const uint64_t *v, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; a && i < n; i++)
		if (json_array_append_new(a, json_integer((json_int_t)v[i])) < 0) {
			json_decref(a);
			return NULL;
		}
	return a;
}

json_t *fetch_metrics_json(const struct fetch_status *s)
{
	_cleanup_json_ json_t *o = json_object();
	json_t *kinds = json_object();
	int r = json_object_set_new(o, "failures", kinds); /* takes kinds, even on failure */

	for (size_t k = 0; r == 0 && k < FETCH_FAIL_KINDS; k++)
		r = json_object_set_new(kinds, fail_names[k],
					json_integer((json_int_t)s->failures[k]));
	if (r == 0)
		r = json_object_set_new(o, "retries", json_integer((json_int_t)s->retries));
	if (r == 0 && s->has_latency)
		r = json_object_set_new(o, "latency_bounds_us",
					u64_array(fetch_latency_bounds_us, FETCH_LATENCY_BOUNDS)) ||
		    json_object_set_new(o, "latency_buckets",
					u64_array(s->latency, FETCH_LATENCY_BUCKETS)) ||
		    json_object_set_new(o, "latency_sum_us",
					json_integer((json_int_t)s->latency_sum_us));
	return r == 0 ? TAKE_PTR(o) : NULL;
}

void fetch_metrics_status(struct fetch_shared *sh, json_t *o)
{
	struct fetch_status s = {.retries = SH_LOAD(sh->retries),
				 .has_latency = true,
				 .latency_sum_us = SH_LOAD(sh->latency_sum_us)};
	_cleanup_json_ json_t *more = NULL;

	for (size_t k = 0; k < FETCH_FAIL_KINDS; k++)
		s.failures[k] = SH_LOAD(sh->failures[k]);
	for (size_t i = 0; i < FETCH_LATENCY_BUCKETS; i++)
		s.latency[i] = SH_LOAD(sh->latency[i]);
	more = fetch_metrics_json(&s);
	if (more)
		(void)json_object_update(o, more);
}

/* v[0..n) from a JSON array of exactly n unsigned integers. */
static bool read_u64_array(json_t *a, uint64_t *v, size_t n)
{
	if (!json_is_array(a) || json_array_size(a) != n)
		return false;
	for (size_t i = 0; i < n; i++) {
		json_t *x = json_array_get(a, i);

		if (!json_is_integer(x) || json_integer_value(x) < 0)
			return false;
		v[i] = (uint64_t)json_integer_value(x);
	}
	return true;
}

void fetch_metrics_parse(json_t *reply, struct fetch_status *ret)
{
	uint64_t bounds[FETCH_LATENCY_BOUNDS];
	json_t *kinds = json_object_get(reply, "failures");

	(void)util_json_get_u64(reply, "retries", &ret->retries);
	for (size_t k = 0; json_is_object(kinds) && k < FETCH_FAIL_KINDS; k++)
		(void)util_json_get_u64(kinds, fail_names[k], &ret->failures[k]);
	/* A histogram is only summed up against the bounds it was counted with. */
	ret->has_latency = read_u64_array(json_object_get(reply, "latency_bounds_us"), bounds,
					  FETCH_LATENCY_BOUNDS) &&
			   !memcmp(bounds, fetch_latency_bounds_us, sizeof(bounds)) &&
			   read_u64_array(json_object_get(reply, "latency_buckets"), ret->latency,
					  FETCH_LATENCY_BUCKETS) &&
			   util_json_get_u64(reply, "latency_sum_us", &ret->latency_sum_us) >= 0;
	if (!ret->has_latency) {
		memset(ret->latency, 0, sizeof(ret->latency));
		ret->latency_sum_us = 0;
	}
}
