// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Unit tests for the TLS files of containerd's host directory: hosts.toml's `client` in each
 * of containerd's forms (a file holding certificate and key, a list of them, [cert, key]
 * pairs, relative to the file's directory), the host presenting the first one, and what is
 * refused (a missing file, a key of another certificate, wrong types) with the file and line
 * named; Docker's layout (NAME.crt, NAME.cert + NAME.key) of a directory without hosts.toml,
 * and that hosts.toml, when there is one, is all that is read. */
#include <errno.h>
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
#include "tmpfiles.h"

/* A self-signed EC certificate with its key, and the key of another one. */
#define CERT_A                                                                                     \
	"-----BEGIN CERTIFICATE-----\n"                                                            \
	"MIIBfjCCASOgAwIBAgIUEUDZ68NGtSN64Op9TJfHUw781WQwCgYIKoZIzj0EAwIw\n"                       \
	"EzERMA8GA1UEAwwIY2xpZW50LWEwIBcNMjYxMjA1MDc1NDMwWhgPMjEyNjExMTEw\n"                       \
	"NzU0MzBaMBMxETAPBgNVBAMMCGNsaWVudC1hMFkwEwYHKoZIzj0CAQYIKoZIzj0D\n"                       \
	"AQcDQgAE2MSTbkTdmyhx7jBii1/6pDXkEG4WSqIYus73LMgD94KumvE5YPM/dwaY\n"                       \
	"k+CEPcVr/VeJ9WXeQeaJ7EHwMGnpwKNTMFEwHQYDVR0OBBYEFLnVyxIKgEmM66sL\n"                       \
	"Sw4zxjZJDbl7MB8GA1UdIwQYMBaAFLnVyxIKgEmM66sLSw4zxjZJDbl7MA8GA1Ud\n"                       \
	"EwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSQAwRgIhAPb1VGhNgNH5D/rhCsRmjJTx\n"                       \
	"/5PGrqScL6R7KdfZFK9NAiEA1iR8Rj5urfiEqYItEmuSDhqtqLo/N+2mtG4UHHmg\n"                       \
	"t9U=\n"                                                                                   \
	"-----END CERTIFICATE-----\n"
#define KEY_A                                                                                      \
	"-----BEGIN PRIVATE KEY-----\n"                                                            \
	"MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgnZY0BKNlEyNG8hN2\n"                       \
	"0b3w1AjjY1H+aJoPDkxLSb9BtyihRANCAATYxJNuRN2bKHHuMGKLX/qkNeQQbhZK\n"                       \
	"ohi6zvcsyAP3gq6a8Tlg8z93BpiT4IQ9xWv9V4n1Zd5B5onsQfAwaenA\n"                               \
	"-----END PRIVATE KEY-----\n"
#define KEY_B                                                                                      \
	"-----BEGIN PRIVATE KEY-----\n"                                                            \
	"MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg7+kFsfw3HParkzBe\n"                       \
	"sjR4WybZYFkkdqXzT6y1QO2TtTChRANCAASEmG9G6yteavi+HAah9MHdh0lEcwwj\n"                       \
	"9zoFIo7KazBDaennsXdwiXpDxt2zydsZgQORPLBlsg+On/tlzNrDOHrS\n"                               \
	"-----END PRIVATE KEY-----\n"
#define CA_PEM "-----BEGIN CERTIFICATE-----\nCCCC\n-----END CERTIFICATE-----\n"

static char tmpdir[64];

static void write_file(const char *rel, const char *text)
{
	tmp_write_file(tmpdir, rel, text);
}

static int setup(void **state)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/lazyerofs-tlsfiles-XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	write_file("h/a.cert", CERT_A);
	write_file("h/a.key", KEY_A);
	write_file("h/b.key", KEY_B);
	write_file("h/a.pem", CERT_A KEY_A);
	write_file("h/ca.pem", CA_PEM);
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	assert_int_equal(system(cmd), 0);
	return 0;
}

/* hosts.toml text as if at TMP/h/hosts.toml: 0 or -errno, err filled. */
static int apply(struct oci_options *o, const char *text, struct util_error *err)
{
	char path[128];

	snprintf(path, sizeof(path), "%s/h/hosts.toml", tmpdir);
	return oci_options_apply_hosts_toml(o, text, strlen(text), path, err);
}

static void test_client_forms(void **state)
{
	char abs[200], text[512];
	const char *forms[] = {
	    "client = \"a.pem\"\n",		    /* one file: certificate and key */
	    "client = [\"a.pem\", \"a.pem\"]\n",    /* files */
	    "client = [[\"a.cert\", \"a.key\"]]\n", /* pairs, relative */
	    abs,				    /* absolute, mixed with a file */
	};

	snprintf(abs, sizeof(abs), "client = [[\"%s/h/a.cert\", \"a.key\"], \"a.pem\"]\n", tmpdir);
	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
		struct util_error err = UTIL_ERROR_INIT;
		struct oci_options o;
		struct oci_client *c;
		struct oci_ref *ref = NULL;

		snprintf(text, sizeof(text), "[host.\"https://m1\"]\n%s", forms[i]);
		oci_options_init(&o);
		if (apply(&o, text, &err) != 0)
			fail_msg("%s: %s", text, err.message);
		assert_int_equal(o.n_mirrors, 1);
		assert_non_null(strstr(o.mirrors[0].clients[0].cert, "BEGIN CERTIFICATE"));
		assert_non_null(strstr(o.mirrors[0].clients[0].key, "BEGIN PRIVATE KEY"));
		assert_int_equal(o.mirrors[0].clients[0].key_len,
				 strlen(o.mirrors[0].clients[0].key));
		assert_null(o.server);

		assert_int_equal(oci_ref_parse("reg.example/a:b", &ref, &err), 0);
		assert_int_equal(oci_client_new(ref, &o, &c), 0);
		assert_ptr_equal(c->hosts[0].cert_blob.data, c->opts.mirrors[0].clients[0].cert);
		assert_int_equal(c->hosts[0].key_blob.len, c->opts.mirrors[0].clients[0].key_len);
		/* two certificates (the same one twice): the handshake chooses */
		assert_int_equal(o.mirrors[0].nclients, i == 0 || i == 2 ? 1 : 2);
		assert_true((c->hosts[0].choice != NULL) == (o.mirrors[0].nclients > 1));
		assert_null(c->up->cert_blob.data); /* per host: the registry presents none */
		oci_client_free(c);
		oci_ref_free(ref);
		oci_options_free(&o);
	}
}

/* The top level is the registry's own server, client included; copies keep it. */
static void test_client_server(void **state)
{
	struct util_error err = UTIL_ERROR_INIT;
	struct oci_options o, copy;

	oci_options_init(&o);
	assert_int_equal(apply(&o, "client = [[\"a.cert\", \"a.key\"]]\n", &err), 0);
	assert_non_null(o.server);
	assert_null(o.server->url);
	assert_string_equal(o.server->clients[0].key, KEY_A);
	assert_int_equal(oci_options_copy(&copy, &o), 0);
	assert_int_equal(copy.server->nclients, 1);
	assert_string_equal(copy.server->clients[0].cert, CERT_A);
	assert_string_equal(copy.server->clients[0].key, KEY_A);
	oci_options_free(&copy);
	oci_options_free(&o);
}

static void refused(const char *text, unsigned line, const char *why)
{
	struct util_error err = UTIL_ERROR_INIT;
	struct oci_options o;
	char want[200];

	oci_options_init(&o);
	assert_int_equal(apply(&o, text, &err), -EINVAL);
	snprintf(want, sizeof(want), "%s/h/hosts.toml: line %u: ", tmpdir, line);
	if (strncmp(err.message, want, strlen(want)) || !strstr(err.message, why))
		fail_msg("%s: got '%s', want '%s...%s'", text, err.message, want, why);
	assert_null(strchr(err.message, '\n'));
	oci_options_free(&o);
}

static void test_client_refused(void **state)
{
	char why[300];

	snprintf(why, sizeof(why), "client certificate '%s/h/missing.cert': No such file", tmpdir);
	refused("[host.\"https://m1\"]\nclient = [[\"missing.cert\", \"a.key\"]]\n", 2, why);
	snprintf(why, sizeof(why), "client key '%s/h/missing.key': No such file", tmpdir);
	refused("\n\nclient = [[\"a.cert\", \"missing.key\"]]\n", 3, why);
	snprintf(why, sizeof(why),
		 "client key '%s/h/b.key' does not belong to the certificate "
		 "'%s/h/a.cert'",
		 tmpdir, tmpdir);
	refused("[host.\"https://m1\"]\nclient = [[\"a.cert\", \"b.key\"]]\n", 2, why);
	/* a later pair is checked too */
	refused("[host.\"https://m1\"]\nclient = [\"a.pem\",\n  [\"a.cert\", \"b.key\"]]\n", 3,
		"does not belong");
	refused("client = \"a.cert\"\n", 1, "holds no PEM private key");
	refused("client = [[\"a.key\", \"a.key\"]]\n", 1, "holds no PEM certificate");
	refused("client = [[\"a.cert\", \"ca.pem\"]]\n", 1, "holds no PEM private key");
	refused("client = 5\n", 1, "'client' must be a path, or an array");
	refused("client = [5]\n", 1, "'client' must be a path, or an array");
	refused("client = [[\"a.cert\"]]\n", 1, "two paths (it has 1)");
	refused("client = [[\"a.cert\", \"a.key\", \"a.key\"]]\n", 1, "two paths (it has 3)");
	refused("client = [[\"a.cert\", 5]]\n", 1, "'client' must be a path");
	refused("client = \"\"\n", 1, "'client' must be a path");
	{
		char many[400] = "client = [\"a.pem\"";

		for (int i = 0; i < OCI_CLIENT_CERTS_MAX; i++)
			strcat(many, ", \"a.pem\"");
		strcat(many, "]\n");
		refused(many, 1, "more than 16 for one host");
	}
}

/* A directory without hosts.toml: Docker's file names, for the registry's server. */
static void test_cert_files(void **state)
{
	struct util_error err = UTIL_ERROR_INIT;
	struct oci_ref *ref = NULL;
	char certs_d[128];
	struct oci_options o;

	snprintf(certs_d, sizeof(certs_d), "%s/certs.d", tmpdir);
	assert_int_equal(mkdir(certs_d, 0700), 0);
	write_file("certs.d/reg.example_5000_/ca.crt", CA_PEM);
	write_file("certs.d/reg.example_5000_/z.crt", CA_PEM);
	write_file("certs.d/reg.example_5000_/client.cert", CERT_A);
	write_file("certs.d/reg.example_5000_/client.key", KEY_A);
	write_file("certs.d/reg.example_5000_/notes.txt", "not a certificate");
	write_file("certs.d/_default/hosts.toml", "[host.\"https://fallback\"]\n");
	assert_int_equal(oci_ref_parse("reg.example:5000/a:b", &ref, &err), 0);

	oci_options_init(&o);
	assert_int_equal(oci_options_apply_hosts(&o, ref, certs_d, &err), 0);
	assert_non_null(o.server);
	assert_null(o.server->url);
	assert_int_equal(o.server->ca_pem_len, 2 * (strlen(CA_PEM) + 1));
	assert_string_equal(o.server->clients[0].cert, CERT_A);
	assert_string_equal(o.server->clients[0].key, KEY_A);
	/* the first directory there is is the whole configuration: not _default's */
	assert_int_equal(o.n_mirrors, 0);
	oci_options_free(&o);

	/* an empty hosts.toml is none (containerd's) */
	write_file("certs.d/reg.example_5000_/hosts.toml", "");
	oci_options_init(&o);
	assert_int_equal(oci_options_apply_hosts(&o, ref, certs_d, &err), 0);
	assert_non_null(o.server);
	assert_int_equal(o.server->nclients, 1);
	oci_options_free(&o);

	/* with a hosts.toml, the files are not read: a broken one goes unnoticed */
	write_file("certs.d/reg.example_5000_/broken.cert", "junk");
	write_file("certs.d/reg.example_5000_/hosts.toml", "[host.\"https://m1\"]\n");
	oci_options_init(&o);
	assert_int_equal(oci_options_apply_hosts(&o, ref, certs_d, &err), 0);
	assert_null(o.server);
	assert_int_equal(o.n_mirrors, 1);
	oci_options_free(&o);

	/* without, it is refused, named */
	write_file("certs.d/reg.example_5000_/hosts.toml", "");
	oci_options_init(&o);
	assert_int_equal(oci_options_apply_hosts(&o, ref, certs_d, &err), -EINVAL);
	assert_non_null(strstr(err.message, "/certs.d/reg.example_5000_/broken.cert' holds no PEM "
					    "certificate"));
	oci_options_free(&o);

	/* a certificate with its key inside needs no .key */
	write_file("certs.d/reg.example_5000_/broken.cert", CERT_A KEY_A);
	oci_options_init(&o);
	assert_int_equal(oci_options_apply_hosts(&o, ref, certs_d, &err), 0);
	assert_int_equal(o.server->nclients, 2); /* in the order of their names */
	assert_string_equal(o.server->clients[0].cert, CERT_A KEY_A);
	assert_string_equal(o.server->clients[1].cert, CERT_A);
	oci_options_free(&o);
	oci_ref_free(ref);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_client_forms),
	    cmocka_unit_test(test_client_server),
	    cmocka_unit_test(test_client_refused),
	    cmocka_unit_test(test_cert_files),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
