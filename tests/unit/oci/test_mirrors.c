// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Unit tests for mirrors: the `mirror=` grammar, -o mirror adding up (in order, duplicates
 * dropped) and its refusals, deep copies of the options, which options are weak (plain HTTP,
 * skip_verify), a client's host table (mirror URLs with their path before /v2, override_path,
 * the ns query, Docker Hub's namespace, the registry last), and the choice of the next host
 * (capabilities, a mirror resting after a failed connection, the registry always last); what
 * the configuration file and containerd's hosts.toml add, in which order, and their errors. */
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
#include "util/config.h"
#include "tmpfiles.h"

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
	struct oci_mirror plain = {
	    .url = "https://m1/p", .caps = OCI_CAP_PULL | OCI_CAP_RESOLVE, .from = "-o mirror"};

	oci_options_init(&o);
	/* a URL alone (-o mirror=, the config file), then hosts.toml's host of that URL: one
	 * mirror, in the first one's place, with hosts.toml's settings */
	assert_int_equal(oci_options_add_mirror(&o, &plain), 1);
	m.resolve_first = true;
	assert_int_equal(oci_options_add_mirror(&o, &m), 0);
	assert_int_equal(o.n_mirrors, 1);
	assert_int_equal(o.mirrors[0].caps, OCI_CAP_PULL);
	assert_int_equal(o.mirrors[0].ca_pem_len, 3);
	assert_string_equal(o.mirrors[0].from, "hosts.toml");
	assert_int_equal(oci_options_add_mirror(&o, &plain), 0); /* (and they stay) */
	assert_int_equal(o.mirrors[0].ca_pem_len, 3);
	oci_options_free(&o);
	m.resolve_first = false;

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

static char tmpdir[64];

static void write_file(const char *rel, const char *text)
{
	tmp_write_file(tmpdir, rel, text);
}

static void cleanup_tmpdir(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	assert_int_equal(system(cmd), 0);
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
	/* host names know no case */
	{
		struct oci_ref *upper = ref_of("REG.Example.com:444/a:b");

		oci_options_init(&o);
		assert_int_equal(oci_options_apply_config(&o, upper, &cfg, &err), 0);
		assert_int_equal(o.n_mirrors, 1);
		oci_options_free(&o);
		oci_ref_free(upper);
	}

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

#define PEM_A "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
#define PEM_B "-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n"

/* a hosts.toml; %s: the test directory */
#define HOSTS_DOC                                                                                  \
	"# containerd's format\n"                                                                  \
	"server = \"https://docker.io\"\n"                                                         \
	"ca = \"server.pem\"\n"                                                                    \
	"[header]\n"                                                                               \
	"  x-server = \"s\"\n"                                                                     \
	"[host.\"https://m1\"]\n"                                                                  \
	"  capabilities = [\"pull\"]\n"                                                            \
	"  ca = [\"a.pem\", \"%s/b.pem\"]\n"                                                       \
	"  dial_timeout = \"1.5s\"\n"                                                              \
	"  # client: test_tlsfiles.c\n"                                                            \
	"  [host.\"https://m1\".header]\n"                                                         \
	"    x-one = \"1\"\n"                                                                      \
	"    x-two = [\"a\", \"b\"]\n"                                                             \
	"[host.\"http://M2:5000/v2/up\"]\n"                                                        \
	"  capabilities = [\"pull\", \"resolve\"]\n"                                               \
	"  override_path = true\n"                                                                 \
	"  proxy = \"http://proxy:3128\"\n"                                                        \
	"[host.\"https://pushonly\"]\n"                                                            \
	"  capabilities = [\"push\"]\n"                                                            \
	"[host.\"https://everything\"]\n"                                                          \
	"  skip_verify = true\n"                                                                   \
	"  header = { x-inline = \"i\", x-list = [\"p\", \"q\"] }\n"

static void test_hosts_toml(void **state)
{
	struct util_error err = UTIL_ERROR_INIT;
	char doc[2048], path[128];
	struct oci_options o;
	struct oci_client *c;

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/lazyerofs-hosts-XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	write_file("docker.io/server.pem", PEM_A);
	write_file("docker.io/a.pem", PEM_A);
	write_file("b.pem", PEM_B);
	snprintf(doc, sizeof(doc), HOSTS_DOC, tmpdir);
	snprintf(path, sizeof(path), "%s/docker.io/hosts.toml", tmpdir);

	oci_options_init(&o);
	assert_int_equal(oci_options_set(&o, "mirror", "m0", &err), 0);
	assert_int_equal(oci_options_apply_hosts_toml(&o, doc, strlen(doc), path, &err), 0);
	assert_int_equal(o.n_mirrors, 4); /* m0, m1, m2, everything: not the push-only host */
	assert_string_equal(o.mirrors[1].url, "https://m1");
	assert_int_equal(o.mirrors[1].caps, OCI_CAP_PULL);
	assert_int_equal(o.mirrors[1].dial_timeout_ms, 1500);
	assert_int_equal(o.mirrors[1].ca_pem_len, strlen(PEM_A PEM_B) + 2);
	assert_non_null(strstr(o.mirrors[1].ca_pem, "AAAA"));
	assert_non_null(strstr(o.mirrors[1].ca_pem, "BBBB"));
	assert_string_equal(o.mirrors[1].headers[0], "x-one: 1");
	assert_string_equal(o.mirrors[1].headers[2], "x-two: b");
	assert_null(o.mirrors[1].headers[3]);
	assert_string_equal(o.mirrors[2].url, "http://m2:5000/v2/up");
	assert_true(o.mirrors[2].override_path);
	assert_int_equal(o.mirrors[2].caps, OCI_CAP_PULL | OCI_CAP_RESOLVE);
	assert_string_equal(o.mirrors[2].proxy, "http://proxy:3128");
	assert_non_null(strstr(o.mirrors[2].from, "hosts.toml line 14"));
	/* no capabilities listed: all of them, as containerd does */
	assert_int_equal(o.mirrors[3].caps, OCI_CAP_PULL | OCI_CAP_RESOLVE);
	assert_true(o.mirrors[3].skip_verify);
	/* a header table written inline, as containerd takes it too */
	assert_string_equal(o.mirrors[3].headers[0], "x-inline: i");
	assert_string_equal(o.mirrors[3].headers[2], "x-list: q");
	assert_true(oci_options_weak(&o));
	/* the top level is the registry's server: Docker Hub's API host */
	assert_non_null(o.server);
	assert_string_equal(o.server->url, "https://registry-1.docker.io");
	assert_non_null(strstr(o.server->ca_pem, "AAAA"));
	assert_string_equal(o.server->headers[0], "x-server: s");

	c = client("debian", &o);
	assert_int_equal(c->nhosts, 5);
	assert_string_equal(c->hosts[2].api, "http://m2:5000/v2/up");
	assert_string_equal(c->hosts[2].query, "?ns=docker.io");
	assert_non_null(c->hosts[1].ca_blob.data);
	assert_int_equal(c->hosts[1].connect_timeout_ms, 1500);
	assert_int_equal(c->hosts[0].connect_timeout_ms, OCI_MIRROR_CONNECT_TIMEOUT_MS);
	assert_true(c->hosts[3].skip_verify);
	assert_string_equal(c->up->api, "https://registry-1.docker.io/v2");
	assert_non_null(c->up->ca_blob.data);
	oci_client_free(c);
	oci_options_free(&o);
	cleanup_tmpdir();
}

/* As containerd reads them: a URL whose path ends in /v2 is the API root, and capabilities
 * are in any case. */
static void test_hosts_toml_as_containerd(void **state)
{
	static const char doc[] = "server = \"https://reg.example/v2\"\n"
				  "[host.\"https://m1/mirror/v2\"]\n"
				  "  capabilities = [\"Pull\", \"RESOLVE\"]\n"
				  "[host.\"https://m2/v2x\"]\n"
				  "  capabilities = [\"pull\"]\n";
	struct util_error err = UTIL_ERROR_INIT;
	struct oci_options o;
	struct oci_client *c;

	oci_options_init(&o);
	assert_int_equal(oci_options_apply_hosts_toml(&o, doc, strlen(doc), "/x/hosts.toml", &err),
			 0);
	assert_int_equal(o.n_mirrors, 2);
	assert_true(o.mirrors[0].override_path);
	assert_int_equal(o.mirrors[0].caps, OCI_CAP_PULL | OCI_CAP_RESOLVE);
	assert_false(o.mirrors[1].override_path);
	c = client("debian", &o);
	assert_string_equal(c->hosts[0].api, "https://m1/mirror/v2");
	assert_string_equal(c->hosts[1].api, "https://m2/v2x/v2");
	assert_string_equal(c->up->api, "https://reg.example/v2");
	oci_client_free(c);
	oci_options_free(&o);
}

static void hosts_bad(const char *text, unsigned line, const char *why)
{
	struct util_error err = UTIL_ERROR_INIT;
	struct oci_options o;
	char want[160];

	oci_options_init(&o);
	assert_int_equal(
	    oci_options_apply_hosts_toml(&o, text, strlen(text), "/x/hosts.toml", &err),
	    line ? -EINVAL : -EBADMSG);
	snprintf(want, sizeof(want), "/x/hosts.toml: line %u: ", line ? line : 1);
	if (strncmp(err.message, want, strlen(want)) || !strstr(err.message, why))
		fail_msg("%s: got '%s', want '%s...%s'", text, err.message, want, why);
	assert_null(strchr(err.message, '\n'));
	oci_options_free(&o);
}

static void test_hosts_toml_refused(void **state)
{
	hosts_bad("[host.\"https://m1\"]\ncapabilities = [\"pull\", \"fetch\"]\n", 2,
		  "unknown capability 'fetch'");
	hosts_bad("[host.\"https://m1\"]\ncapabilities = \"pull\"\n", 2, "must be an array");
	hosts_bad("\n[host.\"ftp://m1\"]\n", 2, "scheme");
	hosts_bad("[host.\"https://m1\"]\nca = \"missing.pem\"\n", 2,
		  "ca='/x/missing.pem': No such file");
	hosts_bad("[host.\"https://m1\"]\nca = 5\n", 2, "'ca' must be a path");
	hosts_bad("[host.\"https://m1\"]\ndial_timeout = \"soon\"\n", 2, "'dial_timeout'");
	hosts_bad("[host.\"https://m1\"]\ndial_timeout = \"1e3s\"\n", 2, "'dial_timeout'");
	hosts_bad("[host.\"https://m1\"]\nskip_verify = \"yes\"\n", 2, "true or false");
	hosts_bad("[host.\"https://m1\".header]\n\"a b\" = \"1\"\n", 2, "not a header name");
	hosts_bad("[host.\"https://m1\".header]\nx = \"1\\r\\nEvil: 2\"\n", 2, "one line");
	hosts_bad("server = 5\n", 1, "'server' must be a URL");
	hosts_bad("host = 5\n", 1, "'host' must be tables");
	hosts_bad("[host]\nm1 = 5\n", 2, "must be a table");
	hosts_bad("[host.\"https://m1\"\n", 0, "expected ']'");
}

static void test_hosts_dir(void **state)
{
	struct util_error err = UTIL_ERROR_INIT;
	struct oci_ref *ported = ref_of("127.0.0.1:5000/a:b"), *plain = ref_of("quay.io/a:b"),
		       *hub = ref_of("library/debian"), *v6 = ref_of("[::1]:5000/a:b"),
		       *v6bare = ref_of("[::1]/a:b");
	struct oci_options o;

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/lazyerofs-certsd-XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	write_file("127.0.0.1_5000_/hosts.toml", "[host.\"https://first\"]\n");
	write_file("127.0.0.1:5000/hosts.toml", "[host.\"https://second\"]\n");
	write_file("_default/hosts.toml", "[host.\"https://fallback\"]\n");
	write_file("docker.io/hosts.toml", "[host.\"https://hub-mirror\"]\n");
	/* containerd's name for an IPv6 registry with a port: the last ':' made '_', and '_' */
	write_file("[::1]_5000_/hosts.toml", "[host.\"https://v6-first\"]\n");
	write_file("[::1]/hosts.toml", "[host.\"https://v6-bare\"]\n");

	oci_options_init(&o);
	assert_int_equal(oci_options_apply_hosts(&o, ported, tmpdir, &err), 0);
	assert_int_equal(o.n_mirrors, 1);
	assert_string_equal(o.mirrors[0].url, "https://first");
	oci_options_free(&o);
	oci_options_init(&o);
	assert_int_equal(oci_options_apply_hosts(&o, plain, tmpdir, &err), 0);
	assert_string_equal(o.mirrors[0].url, "https://fallback");
	oci_options_free(&o);
	oci_options_init(&o);
	assert_int_equal(oci_options_apply_hosts(&o, hub, tmpdir, &err), 0);
	assert_string_equal(o.mirrors[0].url, "https://hub-mirror");
	oci_options_free(&o);
	oci_options_init(&o);
	assert_int_equal(oci_options_apply_hosts(&o, v6, tmpdir, &err), 0);
	assert_string_equal(o.mirrors[0].url, "https://v6-first");
	oci_options_free(&o);
	oci_options_init(&o);
	assert_int_equal(oci_options_apply_hosts(&o, v6bare, tmpdir, &err), 0);
	assert_string_equal(o.mirrors[0].url, "https://v6-bare");
	oci_options_free(&o);
	cleanup_tmpdir();

	/* no directory at all: nothing added */
	oci_options_init(&o);
	assert_int_equal(oci_options_apply_hosts(&o, ported, "/nonexistent/certs.d", &err), 0);
	assert_int_equal(o.n_mirrors, 0);
	assert_null(o.server);
	oci_options_free(&o);
	oci_ref_free(ported);
	oci_ref_free(plain);
	oci_ref_free(hub);
	oci_ref_free(v6);
	oci_ref_free(v6bare);
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
	    cmocka_unit_test(test_hosts_toml),
	    cmocka_unit_test(test_hosts_toml_as_containerd),
	    cmocka_unit_test(test_hosts_toml_refused),
	    cmocka_unit_test(test_hosts_dir),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
