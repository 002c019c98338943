// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Unit tests for the TOML subset parser (what it takes, what it refuses and on which line),
 * the configuration file on top of it (known keys and their kinds, unknown keys ignored,
 * "PATH: line N" errors, a missing file) and SIZE parsing. */
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

#include "util/config.h"
#include "util/strutil.h"
#include "util/toml.h"

static struct util_toml *parse_ok(const char *text)
{
	struct util_error err = UTIL_ERROR_INIT;
	struct util_toml *t = NULL;
	int r = util_toml_parse(text, strlen(text), &t, &err);

	if (r < 0)
		fail_msg("parse failed: %s", err.message);
	assert_non_null(t);
	return t;
}

/* Refused, with a message starting "line N:" that contains why. */
static void parse_bad(const char *text, unsigned line, const char *why)
{
	struct util_error err = UTIL_ERROR_INIT;
	struct util_toml *t = NULL;
	char want[32];

	assert_int_equal(util_toml_parse(text, strlen(text), &t, &err), -EBADMSG);
	assert_null(t);
	snprintf(want, sizeof(want), "line %u: ", line);
	if (strncmp(err.message, want, strlen(want)) || !strstr(err.message, why))
		fail_msg("%s: got '%s', want '%s...%s'", text, err.message, want, why);
}

static const struct util_toml *path(const struct util_toml *t, const char *a, const char *b,
				    const char *c)
{
	t = util_toml_get(t, a);
	if (t && b)
		t = util_toml_get(t, b);
	if (t && c)
		t = util_toml_get(t, c);
	assert_non_null(t);
	return t;
}

static void test_document(void **state)
{
	struct util_toml *t = parse_ok("\xef\xbb\xbf# a comment\n"
				       "server = \"https://registry-1.docker.io\"   # trailing\n"
				       "\n"
				       "  [host.\"https://m1:5000/p\"]\r\n"
				       "  capabilities = [\"pull\", 'resolve',]\n"
				       "  skip_verify = true\n"
				       "  [host.\"https://m1:5000/p\".header]\n"
				       "    x-a = [\"v1\",\n"
				       "           # inside\n"
				       "           \"v2\"\n"
				       "    ]\n"
				       "a.b.c = -42\n"
				       "'quoted.key' = 1_000\n"
				       "when = 1979-05-27T07:32:00Z\n"
				       "ratio = 0.5\n"
				       "nested = [[1, 2], [\"x\"], []]\n");
	const struct util_toml *v, *host;

	v = path(t, "server", NULL, NULL);
	assert_int_equal(v->type, UTIL_TOML_STRING);
	assert_string_equal(v->str, "https://registry-1.docker.io");
	assert_int_equal(v->line, 2);
	host = path(t, "host", "https://m1:5000/p", NULL);
	assert_int_equal(host->type, UTIL_TOML_TABLE);
	assert_true(host->header);
	assert_int_equal(host->line, 4);
	v = path(host, "capabilities", NULL, NULL);
	assert_int_equal(v->type, UTIL_TOML_ARRAY);
	assert_int_equal(v->n, 2);
	assert_string_equal(v->items[1]->str, "resolve");
	assert_null(v->items[1]->key);
	v = path(host, "skip_verify", NULL, NULL);
	assert_int_equal(v->type, UTIL_TOML_BOOLEAN);
	assert_true(v->boolean);
	v = path(host, "header", "x-a", NULL);
	assert_int_equal(v->n, 2);
	assert_string_equal(v->items[1]->str, "v2");
	assert_int_equal(v->items[1]->line, 10);
	/* a.b.c after [host...header] goes into that table, as TOML says */
	v = path(host, "header", "a", "b");
	assert_int_equal(v->type, UTIL_TOML_TABLE);
	assert_false(v->header);
	v = path(v, "c", NULL, NULL);
	assert_int_equal(v->integer, -42);
	v = path(host, "header", "quoted.key", NULL);
	assert_int_equal(v->type, UTIL_TOML_INTEGER);
	assert_int_equal(v->integer, 1000);
	v = path(host, "header", "when", NULL);
	assert_int_equal(v->type, UTIL_TOML_OTHER);
	assert_string_equal(v->str, "1979-05-27T07:32:00Z");
	assert_int_equal(path(host, "header", "ratio", NULL)->type, UTIL_TOML_OTHER);
	v = path(host, "header", "nested", NULL);
	assert_int_equal(v->n, 3);
	assert_int_equal(v->items[0]->type, UTIL_TOML_ARRAY);
	assert_int_equal(v->items[0]->items[1]->integer, 2);
	assert_int_equal(v->items[2]->n, 0);
	assert_null(util_toml_get(t, "missing"));
	assert_null(util_toml_get(path(t, "server", NULL, NULL), "x"));
	util_toml_free(t);

	/* empty documents */
	t = parse_ok("");
	assert_int_equal(t->n, 0);
	util_toml_free(t);
	t = parse_ok("\n\n# only a comment");
	util_toml_free(t);
}

static void test_strings_and_numbers(void **state)
{
	struct util_toml *t = parse_ok("a = \"q\\\"b\\\\s\\tt\\u00e9\\U0001F600\"\n"
				       "b = 'C:\\path\\no escapes'\n"
				       "c = \"\"\n"
				       "max = 9223372036854775807\n"
				       "min = -9223372036854775808\n"
				       "zero = 0\n"
				       "plus = +7\n"
				       "lead = 0755\n"
				       "\"\" = 'empty key'\n");

	assert_string_equal(util_toml_get(t, "a")->str, "q\"b\\s\tt\xc3\xa9\xf0\x9f\x98\x80");
	assert_string_equal(util_toml_get(t, "b")->str, "C:\\path\\no escapes");
	assert_string_equal(util_toml_get(t, "c")->str, "");
	assert_true(util_toml_get(t, "max")->integer == INT64_MAX);
	assert_true(util_toml_get(t, "min")->integer == INT64_MIN);
	assert_int_equal(util_toml_get(t, "zero")->integer, 0);
	assert_int_equal(util_toml_get(t, "plus")->integer, 7);
	/* not a TOML integer (leading zero): kept as text, not misread as octal or 755 */
	assert_int_equal(util_toml_get(t, "lead")->type, UTIL_TOML_OTHER);
	assert_string_equal(util_toml_get(t, "")->str, "empty key");
	util_toml_free(t);
}

static void test_refused(void **state)
{
	parse_bad("a = 1\na = 2\n", 2, "defined twice (first on line 1)");
	parse_bad("[t]\nx = 1\n[t]\n", 3, "table [t] is defined twice");
	parse_bad("a = 1\n[a]\n", 2, "'a' is an integer (line 1), not a table");
	parse_bad("a.b = 1\na = 2\n", 2, "defined twice");
	parse_bad("x\n", 1, "expected '='");
	parse_bad("= 1\n", 1, "cannot start with '='");
	parse_bad("a = \"open\n", 1, "without its closing");
	parse_bad("a = 'open", 1, "without its closing");
	parse_bad("a = \"\\q\"\n", 1, "unknown escape \\q");
	parse_bad("a = \"\\u12\"\n", 1, "bad \\u escape");
	parse_bad("a = \"\\u0000\"\n", 1, "U+0000");
	parse_bad("a = \"\\uD800\"\n", 1, "U+D800");
	parse_bad("a = \"tab\tok, bell\x07 not\"\n", 1, "control character");
	parse_bad("\n\nmirrors = m1\n", 3, "a string needs quotes");
	parse_bad("a = {x = 1\n}\n", 1, "expected ',' or '}'");
	parse_bad("a = {x = 1,}\n", 1, "a ',' before the '}'");
	parse_bad("a = {x = 1 y = 2}\n", 1, "expected ',' or '}'");
	parse_bad("a = {x = 1, x = 2}\n", 1, "defined twice");
	parse_bad("a = {x = 1}\n[a]\n", 2, "'a' is an inline table (line 1)");
	/* an inline table is complete: no dotted key or [header] adds to it */
	parse_bad("a = {b = 1}\na.c = 2\n", 2, "'a' is an inline table");
	parse_bad("a = {b = 1}\n[a.x]\ny = 1\n", 2, "'a' is an inline table");
	parse_bad("[r]\nx = {q = {w = 1}}\n[r.x.q.z]\n", 3, "'x' is an inline table");
	parse_bad("a = {b = {c = 1}, b.d = 2}\n", 1, "'b' is an inline table");
	parse_bad("[[a]]\n", 1, "arrays of tables");
	parse_bad("a = \"\"\"x\"\"\"\n", 1, "multi-line strings");
	parse_bad("a = 1 2\n", 1, "expected the end of the line");
	parse_bad("a = [1 2]\n", 1, "expected ',' or ']'");
	parse_bad("a = [1,\n2,\n", 3, "closing ']'");
	parse_bad("a = 1\rb = 2\n", 1, "carriage return");
	parse_bad("a = 99999999999999999999\n", 1, "out of range");
	parse_bad("a = -9223372036854775809\n", 1, "out of range");
	parse_bad("a =\n", 1, "value is missing");
	parse_bad("a = # nothing\n", 1, "value is missing");
	parse_bad("[a\n", 1, "expected ']'");
	parse_bad("[]\n", 1, "a key cannot start with ']'");
	parse_bad("a.\n", 1, "a key is missing");
	parse_bad("# bell \x07\n", 1, "control character in a comment");
	parse_bad("a = ,\n", 1, "',' cannot start a value");
}

/* Inline tables, as containerd's hosts.toml may write its headers. */
static void test_inline_tables(void **state)
{
	struct util_toml *t = parse_ok("[host.\"https://m\"]\n"
				       "header = { x-custom = \"1\", \"x-two\" = [\"a\", \"b\"] }\n"
				       "empty = {}\n"
				       "nested = {a = {b.c = 3}}\n");
	const struct util_toml *h = path(t, "host", "https://m", "header");

	assert_int_equal(h->type, UTIL_TOML_TABLE);
	assert_int_equal(h->n, 2);
	assert_string_equal(util_toml_get(h, "x-custom")->str, "1");
	assert_int_equal(util_toml_get(h, "x-two")->n, 2);
	assert_int_equal(path(t, "host", "https://m", "empty")->n, 0);
	h = path(path(t, "host", "https://m", "nested"), "a", "b", "c");
	assert_int_equal(h->integer, 3);
	util_toml_free(t);
}

static void test_caps(void **state)
{
	struct util_error err = UTIL_ERROR_INIT;
	struct util_toml *t = NULL;
	char *deep = calloc(1, 4 * UTIL_TOML_MAX_DEPTH + 16);
	char nul[] = "a = 1\n\0b = 2\n";
	size_t n = 0;

	assert_non_null(deep);
	n += (size_t)sprintf(deep, "a = ");
	for (int i = 0; i < UTIL_TOML_MAX_DEPTH + 1; i++)
		deep[n++] = '[';
	for (int i = 0; i < UTIL_TOML_MAX_DEPTH + 1; i++)
		deep[n++] = ']';
	deep[n++] = '\n';
	parse_bad(deep, 1, "nested more than");
	free(deep);
	/* inline tables nest through their keys' values: bounded the same */
	deep = calloc(1, 8 * UTIL_TOML_MAX_DEPTH + 32);
	assert_non_null(deep);
	n = 0;
	for (int i = 0; i < UTIL_TOML_MAX_DEPTH + 1; i++)
		n += (size_t)sprintf(deep + n, "a = {");
	n += (size_t)sprintf(deep + n, "a = 1");
	for (int i = 0; i < UTIL_TOML_MAX_DEPTH + 1; i++)
		deep[n++] = '}';
	deep[n++] = '\n';
	parse_bad(deep, 1, "nested more than");
	free(deep);

	assert_int_equal(util_toml_parse(nul, sizeof(nul) - 1, &t, &err), -EBADMSG);
	assert_non_null(strstr(err.message, "NUL"));

	/* many values */
	{
		size_t cap = (size_t)UTIL_TOML_MAX_VALUES * 3 + 16;
		char *many = malloc(cap);
		size_t k;

		assert_non_null(many);
		k = (size_t)sprintf(many, "a = [");
		for (int i = 0; i < UTIL_TOML_MAX_VALUES; i++)
			k += (size_t)sprintf(many + k, "1,");
		sprintf(many + k, "]\n");
		parse_bad(many, 1, "more than");
		free(many);
	}
	{
		char *big = malloc(UTIL_TOML_MAX_SIZE + 2);

		assert_non_null(big);
		memset(big, '#', UTIL_TOML_MAX_SIZE + 1);
		assert_int_equal(util_toml_parse(big, UTIL_TOML_MAX_SIZE + 1, &t, &err), -EFBIG);
		free(big);
	}
}


static int config(const char *text, struct util_config *c, struct util_error *err)
{
	return util_config_parse(text, strlen(text), "/etc/lazyerofs/config", c, err);
}

static void config_bad(const char *text, const char *want)
{
	struct util_error err = UTIL_ERROR_INIT;
	struct util_config c;

	assert_true(config(text, &c, &err) < 0);
	if (!strstr(err.message, want))
		fail_msg("%s: got '%s', want '%s'", text, err.message, want);
}

static void test_config(void **state)
{
	struct util_error err = UTIL_ERROR_INIT;
	const struct util_config_registry *reg;
	struct util_config c;
	char dir[] = "/tmp/lazyerofs-config-XXXXXX", file[64];
	FILE *f;

	assert_int_equal(config("# lazyerofs\n"
				"proxy = \"http://proxy:3128\"\n"
				"no-proxy = \"localhost,.internal,::1,fe80::/10,10.0.0.0/8\"\n"
				"cache-max = \"10G\"\n"
				"metrics-dir = \"/var/lib/node_exporter\"\n"
				"unknown = [1, 'x']\n"
				"[registry.\"docker.io\"]\n"
				"mirrors = [\"https://m1\",\n"
				"           \"http://m2:5000/path\"]\n"
				"later = true\n"
				"[registry.\"quay.io\"]\n"
				"[other]\n"
				"x = 1\n",
				&c, &err),
			 0);
	assert_string_equal(c.path, "/etc/lazyerofs/config");
	assert_string_equal(c.proxy, "http://proxy:3128");
	assert_int_equal(c.proxy_line, 2);
	assert_string_equal(c.no_proxy, "localhost,.internal,::1,fe80::/10,10.0.0.0/8");
	assert_true(c.have_cache_max);
	assert_true(c.cache_max.bytes == 10ULL << 30);
	assert_string_equal(c.metrics_dir, "/var/lib/node_exporter");
	assert_int_equal(c.n_registries, 2);
	reg = util_config_registry(&c, "docker.io");
	assert_non_null(reg);
	assert_int_equal(reg->n_mirrors, 2);
	assert_string_equal(reg->mirrors[1], "http://m2:5000/path");
	assert_int_equal(reg->lines[0], 8);
	assert_int_equal(reg->lines[1], 9);
	reg = util_config_registry(&c, "quay.io");
	assert_non_null(reg);
	assert_int_equal(reg->n_mirrors, 0);
	assert_null(util_config_registry(&c, "ghcr.io"));
	util_config_free(&c);

	assert_int_equal(config("cache-max = 1048576\n", &c, &err), 0);
	assert_int_equal(c.cache_max.bytes, 1048576);
	util_config_free(&c);
	assert_int_equal(config("cache-max = \"25%\"\n", &c, &err), 0);
	assert_int_equal(c.cache_max.percent, 25);
	assert_null(c.proxy);
	assert_false(c.n_registries);
	util_config_free(&c);

	config_bad("proxy = 3128\n", "/etc/lazyerofs/config: line 1: 'proxy' must be a string");
	/* no-proxy entries libcurl would never match */
	config_bad("no-proxy = \"localhost,127.0.0.1:5000\"\n",
		   "line 1: 'no-proxy' entry '127.0.0.1:5000' would never match");
	config_bad("no-proxy = \"[::1]\"\n", "'no-proxy' entry '[::1]' would never match");
	config_bad("no-proxy = \"reg.example:443,::1\"\n", "entry 'reg.example:443'");
	config_bad("\nproxy = \"http://a b\"\n", "line 2: 'proxy' must be non-empty");
	config_bad("cache-max = \"10 GB\"\n", "line 1: 'cache-max' must be a size");
	config_bad("cache-max = 0\n", "'cache-max' must be a size");
	config_bad("cache-max = \"0\"\n", "'cache-max' must be a size");
	config_bad("metrics-dir = \"relative/dir\"\n", "line 1: 'metrics-dir' must be an absolute");
	config_bad("registry = \"docker.io\"\n", "line 1: 'registry' must be a table");
	config_bad("[registry]\ndocker = 1\n", "line 2: 'registry.docker' must be a table");
	config_bad("[registry.\"docker.io\"]\nmirrors = \"https://m1\"\n",
		   "line 2: 'mirrors' must be an array of strings");
	config_bad("[registry.\"docker.io\"]\nmirrors = [\"https://m1\",\n 5]\n",
		   "line 3: 'mirrors' must be an array of strings, not of an integer");
	config_bad("[registry.\"\"]\n", "line 1: [registry.\"\"]");
	config_bad("proxy = \"x\"\nproxy = \"y\"\n",
		   "/etc/lazyerofs/config: line 2: the key 'proxy' is defined twice");

	/* files: a missing one is an empty configuration; a broken one names itself */
	assert_non_null(mkdtemp(dir));
	snprintf(file, sizeof(file), "%s/config", dir);
	assert_int_equal(util_config_load(file, &c, &err), 0);
	assert_null(c.path);
	util_config_free(&c);
	f = fopen(file, "w");
	assert_non_null(f);
	fputs("[registry.\"docker.io\"]\nmirrors = [\"https://m1\"\n", f);
	fclose(f);
	assert_int_equal(util_config_load(file, &c, &err), -EBADMSG);
	assert_non_null(strstr(err.message, file));
	assert_non_null(strstr(err.message, "line 3: an array without its closing ']'"));
	assert_int_equal(unlink(file), 0);
	assert_int_equal(rmdir(dir), 0);

	setenv("LAZYEROFS_CONFIG", "/somewhere/else", 1);
	assert_string_equal(util_config_path(), "/somewhere/else");
	unsetenv("LAZYEROFS_CONFIG");
	assert_string_equal(util_config_path(), UTIL_CONFIG_PATH);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_document), cmocka_unit_test(test_strings_and_numbers),
	    cmocka_unit_test(test_refused),  cmocka_unit_test(test_inline_tables),
	    cmocka_unit_test(test_caps),     cmocka_unit_test(test_config),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
