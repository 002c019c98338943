// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Unit tests for mirrors: the `mirror=` grammar, -o mirror adding up (in order, duplicates
 * dropped) and its refusals, deep copies of the options, which options are weak (plain HTTP,
 * skip_verify), a client's host table (mirror URLs with their path before /v2, override_path,
 * the ns query, Docker Hub's namespace, the registry last), and the choice of the next host
 * (capabilities, a mirror resting after a failed connection, the registry always last); what
 * the configuration file adds, in which order, and its errors. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "oci/internal.h"
#include "util/config.h"

static char *parse_ok(const char *text)
{
	struct util_error err = UTIL_ERROR_INIT;
	char *url = NULL;

	assert_int_equal(oci_mirror_url_parse(text, &url, &err), 0);
	assert_non_null(url);
	return url;
}

static void parse_bad(const char *text, const char *why)
{
	struct util_error err = UTIL_ERROR_INIT;
	char *url = NULL;

	assert_int_equal(oci_mirror_url_parse(text, &url, &err), -EINVAL);
	assert_null(url);
	if (!strstr(err.message, why))
		fail_msg("'%s': '%s' lacks '%s'", text, err.message, why);
}

static void expect_url(const char *text, const char *want)
{
	char *url = parse_ok(text);

	assert_string_equal(url, want);
	free(url);
}

static void test_grammar(void **state)
{
	expect_url("mirror.example.com", "https://mirror.example.com");
	expect_url("Mirror.Example.COM:5000", "https://mirror.example.com:5000");
	expect_url("http://127.0.0.1:5000", "http://127.0.0.1:5000");
	expect_url("HTTPS://m1/", "https://m1");
	expect_url("https://m1:443/cache/docker//", "https://m1:443/cache/docker");
	expect_url("http://[::1]:8080/p", "http://[::1]:8080/p");
	expect_url("m_1.internal/a-b/c.d~e", "https://m_1.internal/a-b/c.d~e");
	/* the path keeps its case: it is not a host name */
	expect_url("m1/Library", "https://m1/Library");

	parse_bad("", "empty");
	parse_bad("ftp://m1", "scheme");
	parse_bad("https://", "host");
	parse_bad("https://:5000", "host");
	parse_bad("https://user:pw@m1", "credentials");
	parse_bad("m1:0", "port");
	parse_bad("m1:65536", "port");
	parse_bad("m1:", "port");
	parse_bad("m1:12ab", "port");
	parse_bad("m1/path?x=1", "query");
	parse_bad("m1/a#b", "query");
	parse_bad("m1/a b", "may not contain");
	parse_bad("-m1", "host");
	parse_bad("m1.", "host");
	parse_bad("m 1", "host");
	parse_bad("[zz]:1", "IPv6");
	parse_bad("[]", "IPv6");
}

static void test_option(void **state)
{
	struct util_error err = UTIL_ERROR_INIT;
	struct oci_options o, copy;

	oci_options_init(&o);
	assert_int_equal(oci_options_set_list(&o, "mirror=m1,mirror=http://m2:5000/p,"
						  "mirror=M1/,insecure",
					      NULL, NULL, &err),
			 0);
	/* in order, the repeated one dropped, each with pull and resolve */
	assert_int_equal(o.n_mirrors, 2);
	assert_string_equal(o.mirrors[0].url, "https://m1");
	assert_string_equal(o.mirrors[1].url, "http://m2:5000/p");
	assert_int_equal(o.mirrors[0].caps, OCI_CAP_PULL | OCI_CAP_RESOLVE);
	assert_string_equal(o.mirrors[1].from, "-o mirror");

	/* a deep copy: freeing the original leaves it whole */
	assert_int_equal(oci_options_copy(&copy, &o), 0);
	oci_options_free(&o);
	assert_int_equal(copy.n_mirrors, 2);
	assert_string_equal(copy.mirrors[1].url, "http://m2:5000/p");
	assert_true(copy.insecure);
	oci_options_free(&copy);

	assert_int_equal(oci_options_set(&o, "mirror", NULL, &err), -EINVAL);
	assert_non_null(strstr(err.message, "needs a value"));
	assert_int_equal(oci_options_set(&o, "mirror", "ftp://x", &err), -EINVAL);
	assert_non_null(strstr(err.message, "option 'mirror'"));
	assert_non_null(strstr(err.message, "HOST[:PORT]"));
	assert_int_equal(o.n_mirrors, 0);
	oci_options_free(&o);
}

static void test_copy_everything(void **state)
{
	char *headers[] = { "X-A: 1", "X-B: two", NULL };
	struct oci_mirror m = { .url = "https://m1/p", .caps = OCI_CAP_PULL, .override_path = true,
				.ca_pem = "PEM", .ca_pem_len = 3, .headers = headers,
				.proxy = "http://proxy:3128", .dial_timeout_ms = 700,
				.from = "hosts.toml" };
	struct oci_mirror server = { .url = NULL, .skip_verify = true };
	struct oci_options o, copy;

	oci_options_init(&o);
	assert_int_equal(oci_options_add_mirror(&o, &m), 1);
	assert_int_equal(oci_options_add_mirror(&o, &m), 0);
	o.server = calloc(1, sizeof(*o.server));
	assert_non_null(o.server);
	assert_int_equal(oci_mirror_copy(o.server, &server), 0);
	o.proxy = strdup("http://p:1");
	o.no_proxy = strdup("localhost");
	assert_int_equal(oci_options_copy(&copy, &o), 0);
	oci_options_free(&o);
	assert_int_equal(copy.n_mirrors, 1);
	assert_true(copy.mirrors[0].override_path);
	assert_int_equal(copy.mirrors[0].ca_pem_len, 3);
	assert_memory_equal(copy.mirrors[0].ca_pem, "PEM", 3);
	assert_string_equal(copy.mirrors[0].headers[1], "X-B: two");
	assert_null(copy.mirrors[0].headers[2]);
	assert_string_equal(copy.mirrors[0].proxy, "http://proxy:3128");
	assert_int_equal(copy.mirrors[0].dial_timeout_ms, 700);
	assert_non_null(copy.server);
	assert_true(copy.server->skip_verify);
	assert_null(copy.server->url);
	assert_string_equal(copy.proxy, "http://p:1");
	assert_string_equal(copy.no_proxy, "localhost");
	oci_options_free(&copy);
}

static void test_weak(void **state)
{
	struct util_error err = UTIL_ERROR_INIT;
	struct oci_mirror skip = { .url = "https://m3", .skip_verify = true };
	struct oci_options o;

	oci_options_init(&o);
	assert_false(oci_options_weak(&o));
	assert_int_equal(oci_options_set(&o, "mirror", "m1", &err), 0);
	assert_false(oci_options_weak(&o));
	assert_int_equal(oci_options_set(&o, "mirror", "http://m2", &err), 0);
	assert_true(oci_options_weak(&o));
	oci_options_free(&o);

	oci_options_init(&o);
	assert_int_equal(oci_options_add_mirror(&o, &skip), 1);
	assert_true(oci_options_weak(&o));
	oci_options_free(&o);

	oci_options_init(&o);
	o.insecure = true;
	assert_true(oci_options_weak(&o));
	oci_options_free(&o);
}

static struct oci_client *client(const char *source, struct oci_options *o)
{
	struct util_error err = UTIL_ERROR_INIT;
	struct oci_client *c = NULL;
	struct oci_ref *ref = NULL;

	assert_int_equal(oci_ref_parse(source, &ref, &err), 0);
	assert_int_equal(oci_client_new(ref, o, &c), 0);
	oci_ref_free(ref);
	return c;
}

static void test_hosts(void **state)
{
	struct oci_mirror resolve_only = { .url = "https://resolver", .caps = OCI_CAP_RESOLVE };
	struct oci_mirror none = { .url = "https://nothing", .caps = 0 };
	struct oci_mirror raw = { .url = "https://raw/v2/up", .caps = OCI_CAP_PULL,
				  .override_path = true };
	struct util_error err = UTIL_ERROR_INIT;
	struct oci_options o;
	struct oci_client *c;
	char *url;

	oci_options_init(&o);
	assert_int_equal(oci_options_set_list(&o, "mirror=m1:5000/cache,mirror=http://m2", NULL,
					      NULL, &err),
			 0);
	assert_int_equal(oci_options_add_mirror(&o, &resolve_only), 1);
	assert_int_equal(oci_options_add_mirror(&o, &none), 1);
	assert_int_equal(oci_options_add_mirror(&o, &raw), 1);
	c = client("reg.example.com:444/team/app:v1", &o);
	/* the host without capabilities is left out; the registry comes last */
	assert_int_equal(c->nhosts, 5);
	assert_ptr_equal(c->up, &c->hosts[4]);
	assert_string_equal(c->hosts[0].api, "https://m1:5000/cache/v2");
	assert_string_equal(c->hosts[0].origin, "https://m1:5000");
	assert_string_equal(c->hosts[0].name, "m1:5000");
	assert_true(c->hosts[0].mirror);
	assert_string_equal(c->hosts[1].api, "http://m2/v2");
	assert_string_equal(c->hosts[3].api, "https://raw/v2/up");
	assert_string_equal(c->up->api, "https://reg.example.com:444/v2");
	assert_string_equal(c->up->name, "reg.example.com:444");
	assert_false(c->up->mirror);
	url = oci_host_url(c, &c->hosts[0], "blobs", "sha256:00");
	assert_string_equal(
	    url, "https://m1:5000/cache/v2/team/app/blobs/sha256:00?ns=reg.example.com:444");
	free(url);
	url = oci_host_url(c, c->up, "manifests", "v1");
	assert_string_equal(url, "https://reg.example.com:444/v2/team/app/manifests/v1");
	free(url);

	/* blobs: the pull hosts in order, the registry last */
	assert_int_equal(oci_host_next(c, 0, OCI_CAP_PULL), 0);
	assert_int_equal(oci_host_next(c, 1, OCI_CAP_PULL), 1);
	assert_int_equal(oci_host_next(c, 2, OCI_CAP_PULL), 3);
	assert_int_equal(oci_host_next(c, 4, OCI_CAP_PULL), 4);
	assert_int_equal(oci_host_next(c, 2, OCI_CAP_RESOLVE), 2);
	/* a mirror that could not be reached rests; one that lacks the thing does not */
	assert_true(oci_host_failed(c, &c->hosts[0], -EAGAIN, "cannot connect"));
	assert_int_equal(oci_host_next(c, 0, OCI_CAP_PULL), 1);
	assert_true(oci_host_failed(c, &c->hosts[1], -ENOENT, "HTTP 404"));
	assert_int_equal(oci_host_next(c, 0, OCI_CAP_PULL), 1);
	assert_true(oci_host_failed(c, &c->hosts[1], -EPROTO, "TLS"));
	assert_true(oci_host_failed(c, &c->hosts[3], -EAGAIN, "timed out"));
	/* every mirror resting: the registry */
	assert_int_equal(oci_host_next(c, 0, OCI_CAP_PULL), 4);
	/* the registry's failures are final */
	assert_false(oci_host_failed(c, c->up, -EAGAIN, "cannot connect"));
	assert_false(oci_host_failed(c, &c->hosts[2], -ENOMEM, "out of memory"));
	oci_client_free(c);

	/* Docker Hub is the docker.io namespace; insecure is the registry's plain HTTP alone */
	o.insecure = true;
	c = client("debian:12", &o);
	assert_string_equal(c->up->api, "http://registry-1.docker.io/v2");
	assert_string_equal(c->hosts[0].api, "https://m1:5000/cache/v2");
	assert_string_equal(c->hosts[0].query, "?ns=docker.io");
	oci_client_free(c);

	/* URL sources have no mirrors */
	c = client("https://files.example.com/img.erofs", &o);
	assert_int_equal(c->nhosts, 1);
	assert_null(c->up->api);
	oci_client_free(c);
	oci_options_free(&o);
}

static void test_server(void **state)
{
	char *headers[] = { "X-Token: t", NULL };
	struct oci_mirror server = { .url = "http://local-copy:8080/base", .headers = headers,
				     .override_path = false };
	struct oci_options o;
	struct oci_client *c;

	oci_options_init(&o);
	o.server = calloc(1, sizeof(*o.server));
	assert_non_null(o.server);
	assert_int_equal(oci_mirror_copy(o.server, &server), 0);
	assert_true(oci_options_weak(&o));
	c = client("reg.example.com/app@sha256:"
		   "0000000000000000000000000000000000000000000000000000000000000000",
		   &o);
	assert_int_equal(c->nhosts, 1);
	assert_string_equal(c->up->api, "http://local-copy:8080/base/v2");
	assert_string_equal(c->up->origin, "http://local-copy:8080");
	assert_non_null(c->up->headers);
	assert_string_equal(c->up->headers->data, "X-Token: t");
	assert_non_null(strstr(c->up->shown, "reg.example.com"));
	oci_client_free(c);
	oci_options_free(&o);
}

static struct oci_ref *ref_of(const char *source)
{
	struct util_error err = UTIL_ERROR_INIT;
	struct oci_ref *ref = NULL;

	assert_int_equal(oci_ref_parse(source, &ref, &err), 0);
	return ref;
}

static void test_config_file(void **state)
{
	const char *text = "proxy = \"http://proxy:3128\"\n"
			   "[registry.\"docker.io\"]\n"
			   "mirrors = [\"m1\", \"http://m2:5000/p\"]\n"
			   "[registry.\"reg.example.com:444\"]\n"
			   "mirrors = [\"https://m3\"]\n";
	struct util_error err = UTIL_ERROR_INIT;
	struct oci_ref *hub = ref_of("debian"), *other = ref_of("reg.example.com:444/a:b"),
		       *url = ref_of("https://files.example.com/x.erofs");
	struct util_config cfg;
	struct oci_options o;

	assert_int_equal(util_config_parse(text, strlen(text), "/etc/lazyerofs/config", &cfg, &err),
			 0);
	oci_options_init(&o);
	assert_int_equal(oci_options_set(&o, "mirror", "m9", &err), 0);
	assert_int_equal(oci_options_apply_config(&o, hub, &cfg, &err), 0);
	/* -o's first, then the file's for Docker Hub (configured as docker.io) */
	assert_int_equal(o.n_mirrors, 3);
	assert_string_equal(o.mirrors[0].url, "https://m9");
	assert_string_equal(o.mirrors[1].url, "https://m1");
	assert_string_equal(o.mirrors[2].url, "http://m2:5000/p");
	assert_string_equal(o.mirrors[2].from, "/etc/lazyerofs/config line 3");
	assert_int_equal(o.mirrors[2].caps, OCI_CAP_PULL | OCI_CAP_RESOLVE);
	assert_string_equal(o.proxy, "http://proxy:3128");
	oci_options_free(&o);

	/* a proxy given before is kept; other registries get their own mirrors */
	oci_options_init(&o);
	o.proxy = strdup("http://mine:1");
	assert_int_equal(oci_options_apply_config(&o, other, &cfg, &err), 0);
	assert_int_equal(o.n_mirrors, 1);
	assert_string_equal(o.mirrors[0].url, "https://m3");
	assert_string_equal(o.proxy, "http://mine:1");
	oci_options_free(&o);

	/* URL sources: the proxy only */
	oci_options_init(&o);
	assert_int_equal(oci_options_apply_config(&o, url, &cfg, &err), 0);
	assert_int_equal(o.n_mirrors, 0);
	assert_non_null(o.proxy);
	oci_options_free(&o);
	util_config_free(&cfg);

	/* a bad mirror anywhere in the file stops every mount, naming its line */
	text = "[registry.\"quay.io\"]\nmirrors = [\"https://ok\",\n\"ftp://bad\\n\"]\n";
	assert_int_equal(util_config_parse(text, strlen(text), "/c", &cfg, &err), 0);
	oci_options_init(&o);
	assert_int_equal(oci_options_apply_config(&o, hub, &cfg, &err), -EINVAL);
	assert_non_null(strstr(err.message, "/c: line 3: a mirror of quay.io: "));
	assert_non_null(strstr(err.message, "scheme"));
	assert_null(strchr(err.message, '\n'));
	oci_options_free(&o);
	util_config_free(&cfg);
	oci_ref_free(hub);
	oci_ref_free(other);
	oci_ref_free(url);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_grammar),
		cmocka_unit_test(test_option),
		cmocka_unit_test(test_copy_everything),
		cmocka_unit_test(test_weak),
		cmocka_unit_test(test_hosts),
		cmocka_unit_test(test_server),
		cmocka_unit_test(test_config_file),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
