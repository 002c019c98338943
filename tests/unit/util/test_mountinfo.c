// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Unit tests for util/mountinfo: the fields of real lines (optional fields, escapes, an empty
 * source), lines refused, and the walk over a file that stops when asked to. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "util/mountinfo.h"

static void test_lines(void **state)
{
	char a[] = "36 35 98:0 /mnt1 /mnt/parent\\040dir rw,noatime master:1 - ext3 /dev/root "
		   "rw,errors=continue";
	char b[] = "700 29 0:88 / /run/x ro,relatime shared:7 master:2 - erofs "
		   "/var/cache/lazyerofs/sha256/ab\\134cd ro,user_xattr";
	char c[] = "44 1 0:40 / /sys/fs/cgroup rw - cgroup2  rw"; /* empty source */
	struct util_mountinfo m;

	(void)state;
	assert_int_equal(util_mountinfo_parse(a, &m), 0);
	assert_int_equal(m.id, 36);
	assert_int_equal(m.major, 98);
	assert_int_equal(m.minor, 0);
	assert_string_equal(m.root, "/mnt1");
	assert_string_equal(m.mountpoint, "/mnt/parent dir");
	assert_string_equal(m.fstype, "ext3");
	assert_string_equal(m.source, "/dev/root");
	assert_string_equal(m.super_opts, "rw,errors=continue");
	assert_int_equal(util_mountinfo_parse(b, &m), 0);
	assert_int_equal(m.id, 700);
	assert_int_equal(m.minor, 88);
	assert_string_equal(m.fstype, "erofs");
	assert_string_equal(m.source, "/var/cache/lazyerofs/sha256/ab\\cd");
	assert_string_equal(m.super_opts, "ro,user_xattr");
	assert_int_equal(util_mountinfo_parse(c, &m), 0);
	assert_string_equal(m.fstype, "cgroup2");
	assert_string_equal(m.source, "");
	assert_string_equal(m.super_opts, "rw");
}

static void test_refused(void **state)
{
	static const char *bad[] = {
	    "",
	    "36 35 98:0 /mnt1 /mnt rw",			       /* no separator */
	    "36 35 98:0 /mnt1 - ext3 /dev/root rw",	       /* a field short */
	    "36 35 980 /mnt1 /mnt rw - ext3 /dev/root rw",     /* no colon */
	    "36 35 :0 /mnt1 /mnt rw - ext3 /dev/root rw",      /* no major */
	    "36 35 9x:0 /mnt1 /mnt rw - ext3 /dev/root rw",    /* not a number */
	    "36 35 9:-1 /mnt1 /mnt rw - ext3 /dev/root rw",    /* a sign */
	    "36 35 99999999999:0 /m /mnt rw - ext3 /dev/r rw", /* too large */
	    "36 35 98:0 /mnt1 /mnt rw - ext3",		       /* no source */
	    "36 35 98:0 /mnt1 /mnt rw - ",		       /* nothing after */
	    "x6 35 98:0 /mnt1 /mnt rw - ext3 /dev/root rw",    /* not an id */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char line[128];
		struct util_mountinfo m;

		snprintf(line, sizeof(line), "%s", bad[i]);
		assert_int_equal(util_mountinfo_parse(line, &m), -EINVAL);
	}
}

struct seen {
	int n;
	int stop_at;
};

static int count(const struct util_mountinfo *m, void *ud)
{
	struct seen *s = ud;

	(void)m;
	return ++s->n == s->stop_at ? 7 : 0;
}

static void test_each(void **state)
{
	char path[] = "/tmp/lazyerofs-mountinfo-XXXXXX";
	const char text[] = "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n"
			    "garbage\n"
			    "2 1 0:5 / /proc rw - proc proc rw\n"
			    "3 1 0:6 / /sys rw - sysfs sysfs rw"; /* no final newline */
	struct seen s = {0, 0};
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, sizeof(text) - 1), (ssize_t)sizeof(text) - 1);
	close(fd);
	assert_int_equal(util_mountinfo_each(path, count, &s), 0);
	assert_int_equal(s.n, 3); /* the garbage line is skipped */
	s = (struct seen){0, 2};
	assert_int_equal(util_mountinfo_each(path, count, &s), 7);
	assert_int_equal(s.n, 2);
	unlink(path);
	assert_int_equal(util_mountinfo_each(path, count, &s), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_lines),
	    cmocka_unit_test(test_refused),
	    cmocka_unit_test(test_each),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
