// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Unit tests for `status --prometheus` (cli/status_prom.c): the exposition of mounts grouped
 * by cache entry. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cli/status.h"
#include "memout.h"

#define KEY_A  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define KEY_B  "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define DIGEST "sha256:" KEY_A

static struct mount_status_entry mount(const char *mp, const char *key, const char *transport,
				       bool alive)
{
	struct mount_status_entry e = {0};

	e.st.mountpoint = (char *)mp;
	e.st.source = (char *)"127.0.0.1:5000/r/x:1";
	e.st.digest = (char *)DIGEST;
	e.st.cache = (char *)(!strcmp(key, KEY_A) ? "/c/sha256/" KEY_A : "/c/sha256/" KEY_B);
	e.st.transport = (char *)transport;
	e.st.size = 12288;
	e.daemon_alive = alive;
	if (alive) {
		snprintf(e.fs.digest, sizeof(e.fs.digest), "%s", DIGEST);
		snprintf(e.fs.state, sizeof(e.fs.state), "running");
		snprintf(e.fs.profile_state, sizeof(e.fs.profile_state), "none");
		e.fs.size = 12288;
		e.fs.present_bytes = 8192;
		e.fs.fetched_bytes = 4096;
		e.fs.requests = 3;
		e.fs.events = 9;
		e.fs.denied = 1;
		e.fs.failures[FETCH_FAIL_5XX] = 2;
		e.fs.restarts = 1;
		e.fs.has_latency = true;
		e.fs.latency[0] = 8;
		e.fs.latency[FETCH_LATENCY_BOUNDS] = 1;
		e.fs.latency_sum_us = 61000500;
	}
	return e;
}

/* Lines of s that start with prefix (whole: that are prefix). */
static size_t count_lines(const char *s, const char *prefix, bool whole)
{
	size_t n = 0, len = strlen(prefix);

	for (const char *p = s; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		n += !strncmp(p, prefix, len) && (!whole || p[len] == '\n');
	return n;
}

static void test_status_groups_by_entry(void **state)
{
	/* Entry A mounted twice (once lost: its daemon was replaced), entry B (same digest,
	 * insecure) lost. */
	struct mount_status_entry v[] = {
	    mount("/m/one", KEY_A, "tls", false),
	    mount("/m/two \"q\"\n", KEY_A, "tls", true),
	    mount("/m/three", KEY_B, "insecure", false),
	};
	/* A mount each, the lost ones down; an entry each, whatever its mounts: the counters
	 * come from the live daemon. */
	static const char *const lines[] = {
	    "lazyerofs_mount_info{digest=\"" DIGEST "\",entry=\"" KEY_A
	    "\",mountpoint=\"/m/two \\\"q\\\"\\n\",source=\"127.0.0.1:5000/r/x:1\"} 1",
	    "lazyerofs_daemon_up{digest=\"" DIGEST "\",entry=\"" KEY_A
	    "\",mountpoint=\"/m/one\"} 0",
	    "lazyerofs_daemon_up{digest=\"" DIGEST "\",entry=\"" KEY_A
	    "\",mountpoint=\"/m/two \\\"q\\\"\\n\"} 1",
	    "lazyerofs_fetched_bytes_total{digest=\"" DIGEST "\",entry=\"" KEY_A "\"} 4096",
	    "lazyerofs_entry_state{digest=\"" DIGEST "\",entry=\"" KEY_A "\",state=\"running\"} 1",
	    "lazyerofs_entry_state{digest=\"" DIGEST "\",entry=\"" KEY_B "\",state=\"lost\"} 1",
	    "lazyerofs_entry_integrity{digest=\"" DIGEST "\",entry=\"" KEY_B
	    "\",integrity=\"insecure\"} 1",
	    "lazyerofs_errors_total{digest=\"" DIGEST "\",entry=\"" KEY_A "\",kind=\"5xx\"} 2",
	    "lazyerofs_errors_total{digest=\"" DIGEST "\",entry=\"" KEY_A "\",kind=\"denied\"} 1",
	    "lazyerofs_daemon_restarts_total{digest=\"" DIGEST "\",entry=\"" KEY_A
	    "\",process=\"worker\"} 1",
	    "lazyerofs_event_latency_seconds_bucket{digest=\"" DIGEST "\",entry=\"" KEY_A
	    "\",le=\"60\"} 8",
	    "lazyerofs_event_latency_seconds_count{digest=\"" DIGEST "\",entry=\"" KEY_A "\"} 9",
	    "lazyerofs_event_latency_seconds_sum{digest=\"" DIGEST "\",entry=\"" KEY_A
	    "\"} 61.0005",
	};
	struct out o;
	char *s;

	out_open(&o);
	assert_int_equal(cli_status_prometheus(o.f, v, 3), 0);
	s = out_close(&o);
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
		if (count_lines(s, lines[i], true) != 1)
			fail_msg("not once in the output: %s\n%s", lines[i], s);
	assert_int_equal(count_lines(s, "lazyerofs_mount_info{", false), 3);
	assert_int_equal(count_lines(s, "lazyerofs_blob_size_bytes{", false), 2);
	assert_int_equal(count_lines(s, "lazyerofs_fetched_bytes_total{", false), 1);
	assert_int_equal(count_lines(s, "lazyerofs_entry_state{", false), 10);
	/* Every family once, HELP before TYPE before its samples. */
	assert_int_equal(count_lines(s, "# TYPE lazyerofs_errors_total counter", false), 1);
	assert_int_equal(count_lines(s, "# HELP ", false), count_lines(s, "# TYPE ", false));
	assert_true(s[strlen(s) - 1] == '\n');
	free(s);

	/* No mounts: the families and no samples. */
	out_open(&o);
	assert_int_equal(cli_status_prometheus(o.f, NULL, 0), 0);
	s = out_close(&o);
	assert_int_equal(count_lines(s, "lazyerofs_", false), 0);
	assert_true(count_lines(s, "# TYPE lazyerofs_", false) > 10);
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_status_groups_by_entry),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
