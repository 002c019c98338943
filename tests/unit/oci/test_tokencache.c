// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Unit tests for the bearer token cache shared between processes: the file's parser and
 * formatter, and (as root) store, load, expiry, other keys, foreign files, drop and sweep
 * in a private run directory of the test's own. */
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

#define HOST "reg.example.com:5000"
#define SCOPE "repository:a/b:pull"
#define NOW 1700000000

static int parse(const char *s, char **tok, int64_t *exp, uint64_t *life)
{
	return oci_token_file_parse(s, strlen(s), HOST, SCOPE, tok, exp, life);
}

static void test_parse(void **state)
{
	char *text = NULL, *tok = NULL;
	int64_t exp;
	uint64_t life;

	assert_int_equal(oci_token_file_format(HOST, SCOPE, "abc.def-ghi", NOW + 300, 300, &text), 0);
	assert_int_equal(parse(text, &tok, &exp, &life), 0);
	assert_string_equal(tok, "abc.def-ghi");
	assert_int_equal(exp, NOW + 300);
	assert_int_equal(life, 300);
	free(tok);
	/* another key's file */
	assert_int_equal(oci_token_file_parse(text, strlen(text), "other:5000", SCOPE, &tok, &exp,
					      &life), -ESTALE);
	assert_int_equal(oci_token_file_parse(text, strlen(text), HOST, "repository:a/c:pull",
					      &tok, &exp, &life), -ESTALE);
	free(text);

#define BAD(x) assert_int_equal(parse((x), &tok, &exp, &life), -EBADMSG)
	BAD("");
	BAD("[]");
	BAD("{\"v\":1}");
	BAD("{\"v\":2,\"host\":\"" HOST "\",\"scope\":\"" SCOPE "\",\"token\":\"t\","
	    "\"expires\":1,\"lifetime\":1}");
	BAD("{\"v\":1,\"host\":\"" HOST "\",\"scope\":\"" SCOPE "\",\"token\":\"\","
	    "\"expires\":1,\"lifetime\":1}");
	BAD("{\"v\":1,\"host\":\"" HOST "\",\"scope\":\"" SCOPE "\",\"token\":\"a b\","
	    "\"expires\":1,\"lifetime\":1}");
	BAD("{\"v\":1,\"host\":\"" HOST "\",\"scope\":\"" SCOPE "\",\"token\":\"t\","
	    "\"expires\":\"1\",\"lifetime\":1}");
	BAD("{\"v\":1,\"host\":\"" HOST "\",\"scope\":\"" SCOPE "\",\"token\":\"t\","
	    "\"expires\":-5,\"lifetime\":1}");
	BAD("{\"v\":1,\"host\":\"" HOST "\",\"scope\":\"" SCOPE "\",\"token\":\"t\","
	    "\"expires\":1,\"lifetime\":0}");
	BAD("{\"v\":1,\"host\":\"" HOST "\",\"scope\":\"" SCOPE "\",\"token\":\"t\","
	    "\"expires\":1,\"lifetime\":99999999999}");
	BAD("{\"v\":1,\"host\":7,\"scope\":\"" SCOPE "\",\"token\":\"t\","
	    "\"expires\":1,\"lifetime\":1}");
#undef BAD
	/* a token with quotes and backslashes survives the round trip */
	assert_int_equal(oci_token_file_format(HOST, SCOPE, "a\"b\\c", NOW, 1, &text), 0);
	assert_int_equal(parse(text, &tok, &exp, &life), 0);
	assert_string_equal(tok, "a\"b\\c");
	free(tok);
	free(text);
}

static char run_dir[] = "/tmp/lazyerofs-tokencache-XXXXXX";

static void key(struct oci_token_key *k, const char *identity)
{
	*k = (struct oci_token_key){ .host = HOST, .realm = "https://auth.example.com/token",
				     .service = "reg", .scope = SCOPE, .identity = identity };
}

static int count_files(void)
{
	char cmd[128];
	FILE *f;
	int n = -1;

	snprintf(cmd, sizeof(cmd), "ls -A %s/tokens | wc -l", run_dir);
	f = popen(cmd, "r");
	if (f) {
		if (fscanf(f, "%d", &n) != 1)
			n = -1;
		pclose(f);
	}
	return n;
}

static void test_store_load(void **state)
{
	struct oci_token_key k, other;
	char path[256], *tok = NULL;
	uint64_t left, life;
	struct stat st;
	time_t now = time(NULL);

	if (geteuid() != 0)
		skip();
	assert_non_null(mkdtemp(run_dir));
	key(&k, "id-alice");
	key(&other, "id-bob");
	/* nothing cached yet; no directory: no cache at all */
	assert_int_equal(oci_token_cache_load(run_dir, &k, now, &tok, &left, &life), -ENOENT);
	assert_int_equal(oci_token_cache_load(NULL, &k, now, &tok, &left, &life), -ENOENT);
	assert_int_equal(oci_token_cache_store(run_dir, &k, "tok-alice", now, 300), 0);
	assert_int_equal(oci_token_cache_load(run_dir, &k, now + 10, &tok, &left, &life), 0);
	assert_string_equal(tok, "tok-alice");
	assert_int_equal(left, 290);
	assert_int_equal(life, 300);
	free(tok);
	/* other credentials: a miss */
	assert_int_equal(oci_token_cache_load(run_dir, &other, now, &tok, &left, &life), -ENOENT);
	/* expired; further away than its life (the clock went back) */
	assert_int_equal(oci_token_cache_load(run_dir, &k, now + 300, &tok, &left, &life),
			 -ESTALE);
	assert_int_equal(oci_token_cache_load(run_dir, &k, now - 10, &tok, &left, &life),
			 -ESTALE);
	/* root's alone: 0600 in a 0700 directory */
	snprintf(path, sizeof(path), "%s/tokens", run_dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	assert_int_equal(count_files(), 1);
	/* a file someone else could read is not trusted */
	{
		char cmd[512];

		snprintf(cmd, sizeof(cmd), "chmod 0644 %s/tokens/*", run_dir);
		assert_int_equal(system(cmd), 0);
		assert_int_equal(oci_token_cache_load(run_dir, &k, now, &tok, &left, &life), -EPERM);
		snprintf(cmd, sizeof(cmd), "chmod 0600 %s/tokens/*", run_dir);
		assert_int_equal(system(cmd), 0);
	}
	/* a second key; writing it sweeps out the first once it is long expired */
	assert_int_equal(oci_token_cache_store(run_dir, &other, "tok-bob", now, 300), 0);
	assert_int_equal(count_files(), 2);
	assert_int_equal(oci_token_cache_store(run_dir, &other, "tok-bob2", now + 400, 300), 0);
	assert_int_equal(count_files(), 1);
	assert_int_equal(oci_token_cache_load(run_dir, &other, now + 400, &tok, &left, &life), 0);
	assert_string_equal(tok, "tok-bob2");
	free(tok);
	oci_token_cache_drop(run_dir, &other);
	assert_int_equal(count_files(), 0);
	assert_int_equal(oci_token_cache_load(run_dir, &other, now, &tok, &left, &life), -ENOENT);
	/* a run directory that is not private: no cache */
	assert_int_equal(chmod(run_dir, 0755), 0);
	assert_int_equal(oci_token_cache_store(run_dir, &k, "t", now, 300), -EPERM);
	{
		char cmd[256];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", run_dir);
		assert_int_equal(system(cmd), 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_store_load),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
