// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Unit tests for oci credentials: auth.json / config.json lookup (auths with base64, scheme
 * and /v1/ keys, repository-scoped keys, Docker Hub aliases, credHelpers, credsStore), helper
 * replies, base64, and the file/helper search order through the environment. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "oci/internal.h"
#include "oci/parse.h"

/* base64("alice:s3cret") and base64("bob:pw:with:colons") */
#define ALICE "YWxpY2U6czNjcmV0"
#define BOB "Ym9iOnB3OndpdGg6Y29sb25z"

static int lookup(const char *json, const char *registry, const char *repo, struct oci_creds *c)
{
	return oci_creds_lookup(json, strlen(json), registry, repo, c);
}

static void test_auths(void **state)
{
	struct oci_creds c;

	assert_int_equal(lookup("{\"auths\":{\"reg.example.com\":{\"auth\":\"" ALICE "\"}}}",
				"reg.example.com", "a/b", &c), 0);
	assert_string_equal(c.username, "alice");
	assert_string_equal(c.password, "s3cret");
	assert_null(c.helper);
	oci_creds_free(&c);
	assert_null(c.password);

	/* scheme and path forms, port must match */
	assert_int_equal(lookup("{\"auths\":{\"https://reg.example.com:5000/v2/\":{\"auth\":\"" BOB
				"\"}}}", "reg.example.com:5000", "x", &c), 0);
	assert_string_equal(c.username, "bob");
	assert_string_equal(c.password, "pw:with:colons");
	oci_creds_free(&c);
	assert_int_equal(lookup("{\"auths\":{\"reg.example.com:5000\":{\"auth\":\"" BOB "\"}}}",
				"reg.example.com", "x", &c), -ENOENT);
	assert_int_equal(lookup("{\"auths\":{\"other.com\":{\"auth\":\"" BOB "\"}}}",
				"reg.example.com", "x", &c), -ENOENT);

	/* Docker Hub: the legacy key serves registry-1.docker.io */
	assert_int_equal(lookup("{\"auths\":{\"https://index.docker.io/v1/\":{\"auth\":\"" ALICE
				"\"}}}", "registry-1.docker.io", "library/debian", &c), 0);
	assert_string_equal(c.username, "alice");
	oci_creds_free(&c);

	/* repository-scoped keys (containers-auth.json): the most specific wins */
	const char *scoped = "{\"auths\":{\"reg.io\":{\"auth\":\"" ALICE "\"},"
			     "\"reg.io/team\":{\"auth\":\"" BOB "\"},"
			     "\"reg.io/team/other\":{\"username\":\"carol\",\"password\":\"c\"}}}";
	assert_int_equal(lookup(scoped, "reg.io", "team/app", &c), 0);
	assert_string_equal(c.username, "bob");
	oci_creds_free(&c);
	assert_int_equal(lookup(scoped, "reg.io", "team/other/x", &c), 0);
	assert_string_equal(c.username, "carol");
	assert_string_equal(c.password, "c");
	oci_creds_free(&c);
	assert_int_equal(lookup(scoped, "reg.io", "teamwork", &c), 0); /* not a component prefix */
	assert_string_equal(c.username, "alice");
	oci_creds_free(&c);

	/* identity token */
	assert_int_equal(lookup("{\"auths\":{\"reg.io\":{\"auth\":\"PHRva2VuPjo=\","
				"\"identitytoken\":\"refresh-me\"}}}", "reg.io", "a", &c), 0);
	assert_string_equal(c.identity_token, "refresh-me");
	assert_null(c.password);
	oci_creds_free(&c);

	/* malformed */
	assert_int_equal(lookup("{\"auths\":{\"reg.io\":{\"auth\":\"!!!\"}}}", "reg.io", "a", &c),
			 -EBADMSG);
	assert_int_equal(lookup("{\"auths\":{\"reg.io\":{\"auth\":\"bm9jb2xvbg==\"}}}", "reg.io",
				"a", &c), -EBADMSG); /* "nocolon" */
	assert_int_equal(lookup("{\"auths\":[]}", "reg.io", "a", &c), -EBADMSG);
	assert_int_equal(lookup("{\"auths\":{\"reg.io\":5}}", "reg.io", "a", &c), -EBADMSG);
	assert_int_equal(lookup("not json", "reg.io", "a", &c), -EBADMSG);
	assert_int_equal(lookup("{}", "reg.io", "a", &c), -ENOENT);
	assert_int_equal(lookup("{\"auths\":{\"reg.io\":{}}}", "reg.io", "a", &c), -ENOENT);
}

static void test_helpers(void **state)
{
	struct oci_creds c;

	/* credHelpers beats auths and credsStore for its registry */
	const char *cfg = "{\"auths\":{\"reg.io\":{\"auth\":\"" ALICE "\"}},"
			  "\"credHelpers\":{\"reg.io\":\"pass\"},\"credsStore\":\"desktop\"}";
	assert_int_equal(lookup(cfg, "reg.io", "a", &c), 0);
	assert_string_equal(c.helper, "pass");
	assert_null(c.username);
	oci_creds_free(&c);
	/* other registries: auths entry with data, else credsStore */
	assert_int_equal(lookup("{\"auths\":{\"o.io\":{\"auth\":\"" ALICE "\"}},"
				"\"credsStore\":\"desktop\"}", "o.io", "a", &c), 0);
	assert_string_equal(c.username, "alice");
	oci_creds_free(&c);
	assert_int_equal(lookup("{\"auths\":{\"o.io\":{}},\"credsStore\":\"desktop\"}", "o.io", "a",
				&c), 0);
	assert_string_equal(c.helper, "desktop");
	oci_creds_free(&c);
	/* helper names cannot be paths */
	assert_int_equal(lookup("{\"credsStore\":\"../../bin/sh\"}", "o.io", "a", &c), -EBADMSG);
	assert_int_equal(lookup("{\"credHelpers\":{\"o.io\":\"a b\"}}", "o.io", "a", &c), -EBADMSG);

	/* helper replies */
	const char *r1 = "{\"ServerURL\":\"reg.io\",\"Username\":\"u\",\"Secret\":\"s\"}";
	assert_int_equal(oci_creds_helper_reply_parse(r1, strlen(r1), &c), 0);
	assert_string_equal(c.username, "u");
	assert_string_equal(c.password, "s");
	oci_creds_free(&c);
	const char *r2 = "{\"Username\":\"<token>\",\"Secret\":\"idt\"}";
	assert_int_equal(oci_creds_helper_reply_parse(r2, strlen(r2), &c), 0);
	assert_null(c.username);
	assert_string_equal(c.identity_token, "idt");
	oci_creds_free(&c);
	assert_int_equal(oci_creds_helper_reply_parse("{\"Username\":\"u\"}", 16, &c), -EBADMSG);
	assert_int_equal(oci_creds_helper_reply_parse("credentials not found", 21, &c), -EBADMSG);

	assert_string_equal(oci_creds_server_name("registry-1.docker.io"),
			    "https://index.docker.io/v1/");
	assert_string_equal(oci_creds_server_name("reg.io:5000"), "reg.io:5000");
}

static void test_base64(void **state)
{
	static const char *const plain[] = { "", "f", "fo", "foo", "foob", "fooba", "foobar" };
	static const char *const enc[] = { "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=",
					   "Zm9vYmFy" };

	for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
		char *e = oci_base64_encode(plain[i], strlen(plain[i]));
		uint8_t *d = NULL;
		size_t dl = 0;

		assert_string_equal(e, enc[i]);
		assert_int_equal(oci_base64_decode(e, strlen(e), &d, &dl), 0);
		assert_int_equal(dl, strlen(plain[i]));
		assert_memory_equal(d, plain[i], dl);
		free(e);
		free(d);
	}
	{
		uint8_t *d;
		size_t dl;

		assert_int_equal(oci_base64_decode("Zg=a", 4, &d, &dl), -EBADMSG);
		assert_int_equal(oci_base64_decode("Z", 1, &d, &dl), -EBADMSG);
		assert_int_equal(oci_base64_decode("Zm9v!", 5, &d, &dl), -EBADMSG);
	}
}

/* ---- search order through the environment, and a real helper process --------------------- */

static char tmpdir[64];

static void write_file(const char *name, const char *content, mode_t mode)
{
	char path[256];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
	close(fd);
}

static struct oci_client *client_for(const char *ref_s, const char *user, const char *pw)
{
	struct oci_options o;
	struct util_error err;
	struct oci_ref *ref = NULL;
	struct oci_client *c = NULL;

	oci_options_init(&o);
	if (user)
		o.username = strdup(user);
	if (pw)
		o.password = strdup(pw);
	assert_int_equal(oci_ref_parse(ref_s, &ref, &err), 0);
	assert_int_equal(oci_client_new(ref, &o, &c), 0);
	oci_ref_free(ref);
	oci_options_free(&o);
	return c;
}

static void test_find(void **state)
{
	struct oci_creds cr;
	struct oci_client *c;
	char *src = NULL, why[256] = "", path[256], *oldpath = getenv("PATH") ? strdup(getenv("PATH")) : NULL;

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/lazyerofs-creds-XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	unsetenv("REGISTRY_AUTH_FILE");
	unsetenv("XDG_RUNTIME_DIR");
	unsetenv("DOCKER_CONFIG");
	setenv("HOME", tmpdir, 1);

	/* nothing configured */
	c = client_for("reg.io/a:b", NULL, NULL);
	assert_int_equal(oci_creds_find(c, c->up, UINT64_MAX, &cr, &src, why, sizeof(why)),
			 -ENOENT);
	oci_client_free(c);

	/* -o username/password-file wins over files */
	write_file("config.json", "{\"auths\":{\"reg.io\":{\"auth\":\"" ALICE "\"}}}", 0600);
	setenv("DOCKER_CONFIG", tmpdir, 1);
	c = client_for("reg.io/a:b", "opt-user", "opt-pw");
	assert_int_equal(oci_creds_find(c, c->up, UINT64_MAX, &cr, &src, why, sizeof(why)), 0);
	assert_string_equal(cr.username, "opt-user");
	oci_creds_free(&cr);
	free(src);
	oci_client_free(c);

	/* $DOCKER_CONFIG/config.json */
	c = client_for("reg.io/a:b", NULL, NULL);
	assert_int_equal(oci_creds_find(c, c->up, UINT64_MAX, &cr, &src, why, sizeof(why)), 0);
	assert_string_equal(cr.username, "alice");
	assert_non_null(strstr(src, "config.json"));
	oci_creds_free(&cr);
	free(src);

	/* $REGISTRY_AUTH_FILE comes first */
	write_file("auth.json", "{\"auths\":{\"reg.io\":{\"auth\":\"" BOB "\"}}}", 0600);
	snprintf(path, sizeof(path), "%s/auth.json", tmpdir);
	setenv("REGISTRY_AUTH_FILE", path, 1);
	assert_int_equal(oci_creds_find(c, c->up, UINT64_MAX, &cr, &src, why, sizeof(why)), 0);
	assert_string_equal(cr.username, "bob");
	oci_creds_free(&cr);
	free(src);
	unsetenv("REGISTRY_AUTH_FILE");

	/* a credential helper, found on PATH, gets the server name on stdin */
	write_file("docker-credential-unit",
		   "#!/bin/sh\n[ \"$1\" = get ] || exit 3\nread -r s\n"
		   "printf '{\"Username\":\"helper-user\",\"Secret\":\"%s-secret\"}' \"$s\"\n",
		   0755);
	write_file("config.json", "{\"credHelpers\":{\"reg.io\":\"unit\"}}", 0600);
	setenv("PATH", tmpdir, 1);
	assert_int_equal(oci_creds_find(c, c->up, UINT64_MAX, &cr, &src, why, sizeof(why)), 0);
	assert_string_equal(cr.username, "helper-user");
	assert_string_equal(cr.password, "reg.io-secret");
	assert_non_null(strstr(src, "helper"));
	oci_creds_free(&cr);
	free(src);

	/* a helper that has nothing, or is missing */
	write_file("docker-credential-unit", "#!/bin/sh\necho 'credentials not found'\nexit 1\n",
		   0755);
	why[0] = 0;
	assert_true(oci_creds_find(c, c->up, UINT64_MAX, &cr, &src, why, sizeof(why)) < 0);
	assert_non_null(strstr(why, "docker-credential-unit"));
	/* one that closes its stdin unread: the server name meets a pipe without a reader,
	 * which fails the lookup instead of killing the caller with SIGPIPE */
	write_file("docker-credential-unit", "#!/bin/sh\nexec 0<&-\nsleep 0.3\nexit 1\n", 0755);
	why[0] = 0;
	assert_true(oci_creds_find(c, c->up, UINT64_MAX, &cr, &src, why, sizeof(why)) < 0);
	assert_non_null(strstr(why, "docker-credential-unit"));
	write_file("config.json", "{\"credsStore\":\"nonexistent\"}", 0600);
	why[0] = 0;
	assert_true(oci_creds_find(c, c->up, UINT64_MAX, &cr, &src, why, sizeof(why)) < 0);
	assert_non_null(strstr(why, "docker-credential-nonexistent"));
	oci_client_free(c);

	if (oldpath)
		setenv("PATH", oldpath, 1);
	free(oldpath);
	snprintf(path, sizeof(path), "rm -rf '%s'", tmpdir);
	assert_int_equal(system(path), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_auths),
		cmocka_unit_test(test_helpers),
		cmocka_unit_test(test_base64),
		cmocka_unit_test(test_find),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
