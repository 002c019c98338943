// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Unit tests for oci: the reference grammar and the -o keys oci owns. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "oci/oci.h"
#include "oci/parse.h"

#define D64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

struct good {
	const char *in;
	const char *registry, *repository, *tag, *digest;
	const char *formatted;
};

static const struct good goods[] = {
	{ "debian", "registry-1.docker.io", "library/debian", NULL, NULL,
	  "registry-1.docker.io/library/debian" },
	{ "debian:12", "registry-1.docker.io", "library/debian", "12", NULL, NULL },
	{ "docker.io/debian:latest", "registry-1.docker.io", "library/debian", "latest", NULL,
	  NULL },
	{ "index.docker.io/library/busybox", "registry-1.docker.io", "library/busybox", NULL,
	  NULL, NULL },
	{ "oci://docker.io/foo/bar:v1", "registry-1.docker.io", "foo/bar", "v1", NULL, NULL },
	{ "foo/bar", "registry-1.docker.io", "foo/bar", NULL, NULL, NULL },
	{ "localhost/img", "localhost", "img", NULL, NULL, "localhost/img" },
	{ "localhost:5000/img:tag", "localhost:5000", "img", "tag", NULL, NULL },
	{ "127.0.0.1:35123/a/b/c:x.y-z_1", "127.0.0.1:35123", "a/b/c", "x.y-z_1", NULL,
	  "127.0.0.1:35123/a/b/c:x.y-z_1" },
	{ "ghcr.io/org/team/project/image:1.0", "ghcr.io", "org/team/project/image", "1.0", NULL,
	  NULL },
	{ "quay.io/a__b/c-d--e.f:T", "quay.io", "a__b/c-d--e.f", "T", NULL, NULL },
	{ "example.com/img@sha256:" D64, "example.com", "img", NULL, "sha256:" D64,
	  "example.com/img@sha256:" D64 },
	{ "example.com:443/img:t@sha256:" D64, "example.com:443", "img", "t", "sha256:" D64,
	  NULL },
	{ "[::1]:5000/img:t", "[::1]:5000", "img", "t", NULL, NULL },
	{ "My-Registry.Example.COM/img", "My-Registry.Example.COM", "img", NULL, NULL, NULL },
	{ "reg.io/img:_under", "reg.io", "img", "_under", NULL, NULL },
};

static void test_ref_good(void **state)
{
	for (size_t i = 0; i < sizeof(goods) / sizeof(goods[0]); i++) {
		const struct good *g = &goods[i];
		struct util_error err;
		struct oci_ref *r = NULL;
		char *f;

		if (oci_ref_parse(g->in, &r, &err) != 0)
			fail_msg("'%s' rejected: %s", g->in, err.message);
		assert_false(r->is_url);
		assert_string_equal(r->registry, g->registry);
		assert_string_equal(r->repository, g->repository);
		if (g->tag)
			assert_string_equal(r->tag, g->tag);
		else
			assert_null(r->tag);
		if (g->digest)
			assert_string_equal(r->digest, g->digest);
		else
			assert_null(r->digest);
		f = oci_ref_format(r);
		assert_non_null(f);
		if (g->formatted)
			assert_string_equal(f, g->formatted);
		/* The canonical form parses back to the same thing. */
		{
			struct oci_ref *r2 = NULL;
			char *f2;

			assert_int_equal(oci_ref_parse(f, &r2, &err), 0);
			f2 = oci_ref_format(r2);
			assert_string_equal(f, f2);
			free(f2);
			oci_ref_free(r2);
		}
		free(f);
		oci_ref_free(r);
	}
}

struct bad {
	const char *in;
	const char *mention; /* the message must name the bad part */
};

static const struct bad bads[] = {
    {"", "empty"},
    {"Foo", "lowercase"},
    {"example.com/Foo/bar", "lowercase"},
    {"example.com/foo:bad tag", "space"},
    {"example.com/foo:-x", "tag '-x'"},
    {"example.com/foo:.x", "tag '.x'"},
    {"example.com/foo:", "tag ''"},
    {"example.com/foo:"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
     "tag"},
    {"example.com/foo@sha256:abc", "digest 'sha256:abc'"},
    {"example.com/foo@sha512:" D64 D64, "only sha256"},
    {"example.com/foo@sha256:"
     "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
     "lowercase hex"},
    {"example.com/", "no repository"},
    {"example.com:0/foo", "port"},
    {"example.com:70000/foo", "port"},
    {"example.com:abc/foo", "port"},
    {"-bad.com/foo", "registry '-bad.com'"},
    {"bad..com/foo", "registry 'bad..com'"},
    {"exa_mple.com/foo", "registry 'exa_mple.com'"},
    {"example.com/foo//bar", "repository 'foo//bar'"},
    {"example.com/foo/", "repository 'foo/'"},
    {"example.com/-foo", "repository '-foo'"},
    {"example.com/foo_", "repository 'foo_'"},
    {"example.com/foo___bar", "repository 'foo___bar'"},
    {"example.com/foo..bar", "repository 'foo..bar'"},
    {":tag", "no repository"},
    {"@sha256:" D64, "no repository"},
    {"ftp://example.com/foo", "scheme"},
    {"https://", "no host"},
    {"http://host/a b", "percent-encoded"},
    {"http://127.0.0.1:99999/x.erofs", "Port number"},
    {"https://[::1/x.erofs", "invalid URL"},
    {"http://host:0/x.erofs", "port out of range"},
    {"[::1/foo", "IPv6"},
};

static void test_ref_bad(void **state)
{
	for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
		struct util_error err;
		struct oci_ref *r = NULL;
		int ret = oci_ref_parse(bads[i].in, &r, &err);

		if (ret != -EINVAL)
			fail_msg("'%s' accepted (%d)", bads[i].in, ret);
		assert_null(r);
		if (!strstr(err.message, bads[i].mention))
			fail_msg("'%s': message '%s' lacks '%s'", bads[i].in, err.message,
				 bads[i].mention);
		assert_null(strchr(err.message, '\n'));
	}
}

static void test_ref_long(void **state)
{
	char name[300], *s;
	struct util_error err;
	struct oci_ref *r = NULL;

	memset(name, 'a', sizeof(name) - 1);
	name[sizeof(name) - 1] = 0;
	assert_true(asprintf(&s, "example.com/%s", name) > 0);
	assert_int_equal(oci_ref_parse(s, &r, &err), -EINVAL);
	assert_non_null(strstr(err.message, "longer than"));
	free(s);
	s = malloc(OCI_REF_MAX + 10);
	memset(s, 'a', OCI_REF_MAX + 9);
	s[OCI_REF_MAX + 9] = 0;
	assert_int_equal(oci_ref_parse(s, &r, &err), -EINVAL);
	assert_non_null(strstr(err.message, "too long"));
	free(s);
}

static void test_ref_url(void **state)
{
	struct util_error err;
	struct oci_ref *r = NULL;

	assert_int_equal(oci_ref_parse("https://bucket.s3.example.com/img.erofs?X-Sig=secret", &r,
				       &err), 0);
	assert_true(r->is_url);
	assert_string_equal(r->url, "https://bucket.s3.example.com/img.erofs?X-Sig=secret");
	assert_null(r->registry);
	oci_ref_free(r);
	r = NULL;
	/* The query (a presigned URL's signature) never reaches an error message. */
	assert_int_equal(oci_ref_parse("https://user:pw@h/a b?sig=secret", &r, &err), -EINVAL);
	assert_null(strstr(err.message, "secret"));
	assert_null(strstr(err.message, "pw"));
}

static void test_redact(void **state)
{
	char out[128];

	oci_url_redact("https://u:p@host:1/path/x?sig=1#f", out, sizeof(out));
	assert_string_equal(out, "https://host:1/path/x");
	oci_url_redact("http://host", out, sizeof(out));
	assert_string_equal(out, "http://host");
	oci_url_redact("https://host/a?b", out, 12);
	assert_string_equal(out, "https://hos");
}

static void test_options(void **state)
{
	struct oci_options o;
	struct util_error err;
	char path[] = "/tmp/lazyerofs-test-pw-XXXXXX";
	int fd;

	oci_options_init(&o);
	assert_int_equal(o.layer, -1);
	assert_int_equal(oci_options_set(&o, "insecure", NULL, &err), 0);
	assert_true(o.insecure);
	assert_int_equal(oci_options_set(&o, "oci.insecure", "no", &err), 0);
	assert_false(o.insecure);
	assert_int_equal(oci_options_set(&o, "insecure", "maybe", &err), -EINVAL);
	assert_int_equal(oci_options_set(&o, "layer", "3", &err), 0);
	assert_int_equal(o.layer, 3);
	assert_int_equal(oci_options_set(&o, "oci.layer", "0", &err), 0);
	assert_int_equal(o.layer, 0);
	assert_int_equal(oci_options_set(&o, "layer", "-1", &err), -EINVAL);
	assert_int_equal(oci_options_set(&o, "layer", "", &err), -EINVAL);
	assert_int_equal(oci_options_set(&o, "blob", "sha256:" D64, &err), 0);
	assert_string_equal(o.blob, "sha256:" D64);
	assert_int_equal(oci_options_set(&o, "oci.blob", "sha256:12", &err), -EINVAL);
	assert_non_null(strstr(err.message, "sha256:12"));
	assert_int_equal(oci_options_set(&o, "digest", "sha256:" D64, &err), 0);
	assert_int_equal(oci_options_set(&o, "platform", "linux/arm64/v8", &err), 0);
	assert_string_equal(o.platform, "linux/arm64/v8");
	assert_int_equal(oci_options_set(&o, "oci.platform", "linux", &err), -EINVAL);
	assert_int_equal(oci_options_set(&o, "platform", "linux//x", &err), -EINVAL);
	assert_int_equal(oci_options_set(&o, "username", "bob", &err), 0);
	assert_int_equal(oci_options_set(&o, "oci.username", "al:ice", &err), -EINVAL);
	assert_int_equal(oci_options_set(&o, "timeout", "2", &err), 0);
	assert_int_equal(o.timeout_ms, 2000);
	assert_int_equal(oci_options_set(&o, "timeout", "0.25", &err), 0);
	assert_int_equal(o.timeout_ms, 250);
	assert_int_equal(oci_options_set(&o, "timeout", "0", &err), -EINVAL);
	assert_int_equal(oci_options_set(&o, "timeout", "abc", &err), -EINVAL);
	assert_int_equal(oci_options_set(&o, "timeout", "1.", &err), -EINVAL);
	assert_int_equal(oci_options_set(&o, "ca", "/nonexistent/ca.pem", &err), -EINVAL);
	assert_non_null(strstr(err.message, "/nonexistent/ca.pem"));

	/* Keys oci does not own are routed elsewhere. */
	assert_int_equal(oci_options_set(&o, "prefetch", "all", &err), -ENOENT);
	assert_int_equal(oci_options_set(&o, "ro", NULL, &err), -ENOENT);
	assert_int_equal(oci_options_set(&o, "oci.tarindex", "x", &err), -ENOENT);

	/* password-file: one trailing newline stripped; the password never in a message. */
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "s3cr:et\n", 8), 8);
	close(fd);
	assert_int_equal(oci_options_set(&o, "password-file", path, &err), 0);
	assert_string_equal(o.password, "s3cr:et");
	fd = open(path, O_WRONLY | O_TRUNC);
	assert_int_equal(write(fd, "\n", 1), 1);
	close(fd);
	assert_int_equal(oci_options_set(&o, "password-file", path, &err), -EINVAL);
	assert_non_null(strstr(err.message, "empty"));
	fd = open(path, O_WRONLY | O_TRUNC);
	{
		char big[5000];

		memset(big, 'x', sizeof(big));
		assert_int_equal(write(fd, big, sizeof(big)), (ssize_t)sizeof(big));
	}
	close(fd);
	assert_int_equal(oci_options_set(&o, "password-file", path, &err), -EINVAL);
	assert_non_null(strstr(err.message, "larger"));
	unlink(path);
	assert_int_equal(oci_options_set(&o, "password-file", path, &err), -EINVAL);
	assert_non_null(strstr(err.message, "cannot read"));
	assert_string_equal(o.password, "s3cr:et");

	/* oci.password works but warns. */
	assert_int_equal(oci_options_set(&o, "oci.password", "hunter2", &err), 1);
	assert_non_null(strstr(err.message, "password-file"));
	assert_null(strstr(err.message, "hunter2"));
	assert_string_equal(o.password, "hunter2");
	oci_options_free(&o);
	assert_null(o.password);
}

static void count_warning(void *ctx, const char *message)
{
	(*(int *)ctx)++;
	assert_null(strstr(message, "hunter2"));
}

/* A whole -o list: keys in order, the last of a key wins, the first unknown key or bad value
 * stops it with a message naming it, a warning reaches the callback. */
static void test_options_list(void **state)
{
	struct oci_options o;
	struct util_error err;
	int warnings = 0;

	oci_options_init(&o);
	assert_int_equal(oci_options_set_list(&o, "insecure,layer=2,,timeout=1.5,layer=1", NULL,
					      NULL, &err),
			 0);
	assert_true(o.insecure);
	assert_int_equal(o.layer, 1);
	assert_int_equal(o.timeout_ms, 1500);
	assert_int_equal(oci_options_set_list(&o, "oci.password=hunter2,insecure=no",
					      count_warning, &warnings, &err),
			 1);
	assert_int_equal(warnings, 1);
	assert_false(o.insecure);
	assert_int_equal(oci_options_set_list(&o, "insecure,bogus=1,layer=7", NULL, NULL, &err),
			 -ENOENT);
	assert_string_equal(err.message, "unknown option 'bogus'");
	assert_true(o.insecure);
	assert_int_equal(o.layer, 1); /* nothing after the bad key */
	assert_int_equal(oci_options_set_list(&o, "layer=x", NULL, NULL, &err), -EINVAL);
	assert_non_null(strstr(err.message, "layer"));
	assert_int_equal(oci_options_set_list(&o, "", NULL, NULL, &err), 0);
	oci_options_free(&o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ref_good),  cmocka_unit_test(test_ref_bad),
		cmocka_unit_test(test_ref_long),  cmocka_unit_test(test_ref_url),
		cmocka_unit_test(test_redact),    cmocka_unit_test(test_options),
		cmocka_unit_test(test_options_list),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
