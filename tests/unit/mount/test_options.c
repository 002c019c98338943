// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Unit tests for mount: -o parsing and routing, mount flag rendering, state files (JSON
 * round trip, no secrets, damaged files), the public form of a source. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "mount/mount.h"
#include "util/cleanup.h"

struct opts_fixture {
	struct mount_opts m;
	struct oci_options o;
	struct util_error err;
};

static int parse(struct opts_fixture *f, const char *s)
{
	util_err_clear(&f->err);
	return mount_opts_parse(s, &f->m, &f->o, &f->err);
}

static int setup(void **state)
{
	struct opts_fixture *f = calloc(1, sizeof(*f));

	mount_opts_init(&f->m);
	oci_options_init(&f->o);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct opts_fixture *f = *state;

	mount_opts_free(&f->m);
	oci_options_free(&f->o);
	free(f);
	return 0;
}

static void test_defaults(void **state)
{
	struct opts_fixture *f = *state;

	assert_int_equal(parse(f, ""), 0);
	assert_false(f->m.prefetch_all);
	assert_null(f->m.cache_dir);
	assert_int_equal(f->m.timeout_ms, MOUNT_DEFAULT_TIMEOUT_MS);
	assert_int_equal(f->m.attr, MOUNT_ATTR_RDONLY);
}

static void test_own_keys(void **state)
{
	struct opts_fixture *f = *state;

	assert_int_equal(parse(f, "prefetch=all,timeout=3,cache=/var/tmp/c"), 0);
	assert_true(f->m.prefetch_all);
	assert_int_equal(f->m.timeout_ms, 3000);
	assert_int_equal(f->o.timeout_ms, 3000); /* the registry client follows timeout= */
	assert_string_equal(f->m.cache_dir, "/var/tmp/c");
	assert_int_equal(parse(f, "prefetch=none,cache=/other"), 0);
	assert_false(f->m.prefetch_all);
	assert_string_equal(f->m.cache_dir, "/other");
	assert_int_equal(f->m.profile, MOUNT_PROFILE_AUTO); /* the default */
	assert_int_equal(parse(f, "profile=/var/tmp/app.prof"), 0);
	assert_int_equal(f->m.profile, MOUNT_PROFILE_PATH);
	assert_string_equal(f->m.profile_path, "/var/tmp/app.prof");
	assert_int_equal(parse(f, "profile=none"), 0);
	assert_int_equal(f->m.profile, MOUNT_PROFILE_NONE);
	assert_null(f->m.profile_path);
	assert_int_equal(parse(f, "profile=auto"), 0);
	assert_int_equal(f->m.profile, MOUNT_PROFILE_AUTO);
}

static void test_flags(void **state)
{
	struct opts_fixture *f = *state;
	char buf[128];

	assert_int_equal(parse(f, "ro,nosuid,nodev,noexec,noatime,nodiratime"), 0);
	assert_int_equal(f->m.attr, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV |
					    MOUNT_ATTR_NOEXEC | MOUNT_ATTR_NOATIME |
					    MOUNT_ATTR_NODIRATIME);
	assert_string_equal(mount_attr_format(f->m.attr, buf, sizeof(buf)),
			    "ro,nosuid,nodev,noexec,nodiratime,noatime");
	/* The atime modes replace each other; defaults clears nosuid/nodev/noexec. */
	assert_int_equal(parse(f, "strictatime,defaults"), 0);
	assert_int_equal(f->m.attr, MOUNT_ATTR_RDONLY | MOUNT_ATTR_STRICTATIME |
					    MOUNT_ATTR_NODIRATIME);
	assert_int_equal(parse(f, "relatime,diratime"), 0);
	assert_int_equal(f->m.attr, MOUNT_ATTR_RDONLY);
	assert_string_equal(mount_attr_format(f->m.attr, buf, sizeof(buf)), "ro,relatime");
}

static void test_helper_noise_ignored(void **state)
{
	struct opts_fixture *f = *state;

	assert_int_equal(parse(f, "_netdev,x-systemd.automount,nofail,noauto,comment=x"), 0);
	assert_int_equal(f->m.attr, MOUNT_ATTR_RDONLY);
}

static void test_refused(void **state)
{
	struct opts_fixture *f = *state;

	assert_int_equal(parse(f, "ro,rw"), -EINVAL);
	assert_non_null(strstr(f->err.message, "'rw'"));
	assert_non_null(strstr(f->err.message, "read-only"));
	assert_int_equal(parse(f, "loop"), -EINVAL);
	assert_non_null(strstr(f->err.message, "'loop'"));
	/* As mount(8)'s helper, "rw" is mount(8)'s default, not a request: still read-only. */
	f->m.helper = true;
	assert_int_equal(parse(f, "rw,nosuid"), 0);
	assert_int_equal(f->m.attr, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID);
	assert_int_equal(parse(f, "loop"), -EINVAL);
}

static void test_bad_values(void **state)
{
	struct opts_fixture *f = *state;

	assert_int_equal(parse(f, "prefetch=some"), -EINVAL);
	assert_non_null(strstr(f->err.message, "prefetch"));
	assert_int_equal(parse(f, "prefetch"), -EINVAL);
	assert_int_equal(parse(f, "profile"), -EINVAL);
	assert_int_equal(parse(f, "profile="), -EINVAL);
	assert_non_null(strstr(f->err.message, "profile"));
	assert_int_equal(parse(f, "timeout=0"), -EINVAL);
	assert_int_equal(parse(f, "timeout=-1"), -EINVAL);
	assert_int_equal(parse(f, "timeout=1e3"), -EINVAL);
	assert_int_equal(parse(f, "timeout=99999999999999999999999"), -EINVAL);
	assert_int_equal(parse(f, "cache=relative/dir"), -EINVAL);
	assert_int_equal(parse(f, "cache"), -EINVAL);
	assert_int_equal(parse(f, "nosuid=1"), -EINVAL);
	assert_int_equal(parse(f, "ro,,nosuid"), 0); /* empty items are skipped, as mount(8) does */
	assert_int_equal(parse(f, "=x"), -EINVAL);
}

static void test_unknown_and_sloppy(void **state)
{
	struct opts_fixture *f = *state;

	assert_int_equal(parse(f, "ro,frobnicate=3"), -EINVAL);
	assert_non_null(strstr(f->err.message, "unknown option 'frobnicate'"));
	f->m.sloppy = true;
	assert_int_equal(parse(f, "ro,frobnicate=3"), 0);
}

static void test_routed_to_oci(void **state)
{
	struct opts_fixture *f = *state;

	assert_int_equal(parse(f, "insecure,layer=2,platform=linux/arm64/v8,ro"), 0);
	assert_true(f->o.insecure);
	assert_int_equal(f->o.layer, 2);
	assert_string_equal(f->o.platform, "linux/arm64/v8");
	/* A bad value for an oci key is the oci module's message, not "unknown option". */
	assert_int_equal(parse(f, "layer=banana"), -EINVAL);
	assert_null(strstr(f->err.message, "unknown option"));
	assert_true(f->err.message[0] != 0);
}

/* `lazyerofs fetch`: the keys that choose and fetch a blob, nothing of a mount's. */
static void test_fill_only(void **state)
{
	static const char *const refused[] = { "ro", "nosuid", "noatime", "defaults", "rw",
					       "loop", "_netdev", "x-systemd.automount",
					       "prefetch=all", "profile=none", "comment=x" };
	struct opts_fixture *f = *state;

	f->m.fill_only = true;
	assert_int_equal(parse(f, "insecure,layer=1,platform=linux/arm64,timeout=5,"
				  "cache=/var/tmp/c,username=u,digest=sha256:"
				  "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"),
			 0);
	assert_true(f->o.insecure);
	assert_int_equal(f->o.layer, 1);
	assert_int_equal(f->m.timeout_ms, 5000);
	assert_string_equal(f->m.cache_dir, "/var/tmp/c");
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		assert_int_equal(parse(f, refused[i]), -EINVAL);
		assert_non_null(strstr(f->err.message, "applies to mounts"));
		assert_non_null(strstr(f->err.message, "lazyerofs fetch --help"));
	}
	assert_int_equal(parse(f, "bogus"), -EINVAL);
	assert_non_null(strstr(f->err.message, "unknown option 'bogus'"));
	assert_non_null(strstr(f->err.message, "lazyerofs fetch --help"));
}

static void test_public_source(void **state)
{
	char *s;

	s = mount_public_source("127.0.0.1:5000/repo:tag", false);
	assert_string_equal(s, "127.0.0.1:5000/repo:tag");
	free(s);
	s = mount_public_source("https://user:p@ss@host.example/x/img.erofs?X-Amz-Signature=abc#f",
				true);
	assert_string_equal(s, "https://host.example/x/img.erofs");
	free(s);
	s = mount_public_source("http://host:8080?sig=1", true);
	assert_string_equal(s, "http://host:8080");
	free(s);
}

static void test_state_roundtrip(void **state)
{
	struct mount_state a = {
	    .mnt_id = 2147483692ULL,
	    .pid = 4242,
	    .mounted_by = 17,
	    .mnt_ns = 4026531841ULL,
	    .mountpoint = "/mnt/x \"quoted\"",
	    .source = "127.0.0.1:5000/repo:tag",
	    .digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
	    .cache = "/var/cache/lazyerofs/sha256/0123",
	    .socket = "/run/lazyerofs/d.sock",
	    .options = "ro,nosuid",
	    .size = 1ULL << 40,
	};
	struct mount_state b = { 0 };
	_cleanup_free_ char *text = NULL;

	assert_int_equal(mount_state_to_json(&a, &text), 0);
	assert_int_equal(mount_state_from_json(text, strlen(text), &b), 0);
	assert_true(b.mnt_id == a.mnt_id);
	assert_int_equal(b.pid, a.pid);
	assert_int_equal(b.mounted_by, a.mounted_by);
	assert_int_equal(b.mnt_ns, a.mnt_ns);
	assert_string_equal(b.mountpoint, a.mountpoint);
	assert_string_equal(b.source, a.source);
	assert_string_equal(b.digest, a.digest);
	assert_string_equal(b.cache, a.cache);
	assert_string_equal(b.socket, a.socket);
	assert_string_equal(b.options, a.options);
	assert_true(b.size == a.size);
	mount_state_done(&b);
}

static void test_state_damaged(void **state)
{
	struct mount_state b = { 0 };
	static const char *const bad[] = {
		"", "{", "[]", "{\"mnt_id\":1}", "{\"mnt_id\":-1,\"pid\":1,\"mountpoint\":\"/m\","
		"\"source\":\"s\",\"socket\":\"/s\"}",
		"{\"mnt_id\":1,\"pid\":1,\"mountpoint\":7,\"source\":\"s\",\"socket\":\"/s\"}",
		"{\"mnt_id\":1,\"pid\":99999999999,\"mountpoint\":\"/m\",\"source\":\"s\","
		"\"socket\":\"/s\"}",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(mount_state_from_json(bad[i], strlen(bad[i]), &b), -EBADMSG);
}

static void test_state_files(void **state)
{
	char dir[] = "/tmp/lazyerofs-mount-test-XXXXXX";
	struct mount_state a = { .mnt_id = 99, .pid = 1, .mountpoint = "/m", .source = "s",
				 .socket = "/s" };
	struct mount_state b = { 0 };
	int fd;

	assert_non_null(mkdtemp(dir));
	fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(mount_state_read(fd, 99, &b), -ENOENT);
	assert_int_equal(mount_state_write(fd, &a), 0);
	assert_int_equal(mount_state_read(fd, 99, &b), 0);
	assert_string_equal(b.mountpoint, "/m");
	mount_state_done(&b);
	/* A file that names another mount id is not this mount's state. */
	assert_int_equal(renameat(fd, "99", fd, "100"), 0);
	assert_int_equal(mount_state_read(fd, 100, &b), -EBADMSG);
	/* A symlink is never followed. */
	assert_int_equal(symlinkat("100", fd, "101"), 0);
	assert_true(mount_state_read(fd, 101, &b) < 0);
	assert_int_equal(mount_state_remove(fd, 100), 0);
	assert_int_equal(mount_state_remove(fd, 100), 0);
	assert_int_equal(unlinkat(fd, "101", 0), 0);
	close(fd);
	assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
		cmocka_unit_test_setup_teardown(test_own_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flags, setup, teardown),
		cmocka_unit_test_setup_teardown(test_helper_noise_ignored, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_values, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_and_sloppy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_routed_to_oci, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fill_only, setup, teardown),
		cmocka_unit_test(test_public_source),
		cmocka_unit_test(test_state_roundtrip),
		cmocka_unit_test(test_state_damaged),
		cmocka_unit_test(test_state_files),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
