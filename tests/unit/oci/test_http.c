// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Unit tests for oci's HTTP pieces: multipart/byteranges (split at every possible place),
 * Content-Range, Retry-After and HTTP dates, boundaries, WWW-Authenticate, token replies. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "oci/parse.h"

/* ---- multipart ---------------------------------------------------------------------------- */

struct collected {
	uint8_t blob[4096]; /* bytes by blob offset */
	uint8_t seen[4096];
	size_t calls;
	int fail_at_call; /* return -EIO at this call (1-based), 0 never */
};

static int collect(void *ctx, uint64_t off, const uint8_t *data, size_t len)
{
	struct collected *c = ctx;

	c->calls++;
	if (c->fail_at_call && (int)c->calls == c->fail_at_call)
		return -EIO;
	assert_true(off + len <= sizeof(c->blob));
	for (size_t i = 0; i < len; i++) {
		assert_int_equal(c->seen[off + i], 0); /* each byte once */
		c->seen[off + i] = 1;
		c->blob[off + i] = data[i];
	}
	return 0;
}

/* A multipart body with parts [off, off+len) of a blob whose byte i is (i * 7 + 3) & 0xff. */
static size_t make_body(char *out, size_t cap, const char *boundary, const uint64_t (*parts)[2],
			size_t n, bool go_style)
{
	size_t used = 0;

	for (size_t p = 0; p < n; p++) {
		used += (size_t)snprintf(out + used, cap - used,
					 "%s--%s\r\nContent-Type: application/octet-stream\r\n"
					 "Content-Range: bytes %llu-%llu/4096\r\n\r\n",
					 (p == 0 && go_style) ? "" : "\r\n", boundary,
					 (unsigned long long)parts[p][0],
					 (unsigned long long)(parts[p][0] + parts[p][1] - 1));
		for (uint64_t i = 0; i < parts[p][1]; i++)
			out[used++] = (char)(((parts[p][0] + i) * 7 + 3) & 0xff);
	}
	used += (size_t)snprintf(out + used, cap - used, "\r\n--%s--\r\n", boundary);
	return used;
}

static void check_parts(const struct collected *c, const uint64_t (*parts)[2], size_t n)
{
	size_t count = 0;

	for (size_t p = 0; p < n; p++)
		for (uint64_t i = parts[p][0]; i < parts[p][0] + parts[p][1]; i++) {
			assert_int_equal(c->seen[i], 1);
			assert_int_equal(c->blob[i], (uint8_t)((i * 7 + 3) & 0xff));
		}
	for (size_t i = 0; i < sizeof(c->seen); i++)
		count += c->seen[i];
	{
		size_t want = 0;

		for (size_t p = 0; p < n; p++)
			want += parts[p][1];
		assert_int_equal(count, want);
	}
}

static void test_multipart_every_split(void **state)
{
	static const uint64_t parts[][2] = { { 0, 100 }, { 1000, 1 }, { 2048, 300 }, { 4000, 96 } };
	char body[8192];

	for (int style = 0; style < 2; style++) {
		size_t len = make_body(body, sizeof(body), "THIS_STRING_SEPARATES", parts, 4, style);

		/* Two pieces split at every offset, then one byte at a time. */
		for (size_t cut = 0; cut <= len; cut++) {
			struct oci_multipart m;
			struct collected c = { 0 };

			assert_int_equal(oci_multipart_init(&m, "THIS_STRING_SEPARATES"), 0);
			assert_int_equal(oci_multipart_feed(&m, (uint8_t *)body, cut, collect, &c), 0);
			assert_int_equal(
				oci_multipart_feed(&m, (uint8_t *)body + cut, len - cut, collect, &c), 0);
			assert_int_equal(oci_multipart_finish(&m), 0);
			check_parts(&c, parts, 4);
			assert_int_equal(m.blob_total, 4096);
			assert_int_equal(m.parts, 4);
		}
		{
			struct oci_multipart m;
			struct collected c = { 0 };

			oci_multipart_init(&m, "THIS_STRING_SEPARATES");
			for (size_t i = 0; i < len; i++)
				assert_int_equal(oci_multipart_feed(&m, (uint8_t *)body + i, 1, collect, &c), 0);
			assert_int_equal(oci_multipart_finish(&m), 0);
			check_parts(&c, parts, 4);
		}
	}
}

static void test_multipart_payload_with_the_delimiter_is_refused(void **state)
{
	/* The delimiter occurs in no part (RFC 2046 5.1.1): one inside the span a Content-Range
	 * announced is a part shorter than that; nothing from it on is passed on. */
	const char *body =
	    "--b\r\nContent-Range: bytes 10-19/4096\r\n\r\n\r\n--b--\r\n\r\r\n--b--\r\n";
	struct oci_multipart m;
	struct collected c = { 0 };

	assert_int_equal(oci_multipart_init(&m, "b"), 0);
	assert_int_equal(oci_multipart_feed(&m, (const uint8_t *)body, strlen(body), collect, &c),
			 -EBADMSG);
	for (size_t i = 0; i < sizeof(c.seen); i++)
		assert_int_equal(c.seen[i], 0);
}

/* A part k bytes shorter than its Content-Range says, the body split at every offset (and fed
 * a byte at a time): refused, and every byte passed on is the blob's own -- never the
 * framing that follows the short part (which would be kept in the cache as blob bytes). */
static void test_multipart_short_part_passes_no_framing(void **state)
{
	static const uint64_t parts[][2] = {{0, 100}, {1000, 300}, {2048, 300}};
	const char *boundary = "3d6b6a416f9b5";
	char body[8192], shortened[8192];

	for (size_t k = 1; k <= strlen(boundary) + 40; k++) {
		size_t len = make_body(body, sizeof(body), boundary, parts, 3, true), n = 0;
		/* part 1's payload: after its headers, 300 bytes; drop its last k */
		char hdr[128];
		const char *p1;
		size_t at;

		snprintf(hdr, sizeof(hdr), "Content-Range: bytes 1000-1299/4096\r\n\r\n");
		p1 = strstr(body, hdr);
		assert_non_null(p1);
		at = (size_t)(p1 - body) + strlen(hdr) + 300 - k;
		memcpy(shortened, body, at);
		memcpy(shortened + at, body + at + k, len - at - k);
		n = len - k;
		for (size_t cut = 0; cut <= n; cut += (cut < 200 || cut > n - 200) ? 1 : 7) {
			struct oci_multipart m;
			struct collected c = {0};
			int r;

			oci_multipart_init(&m, boundary);
			r = oci_multipart_feed(&m, (uint8_t *)shortened, cut, collect, &c);
			if (r == 0)
				r = oci_multipart_feed(&m, (uint8_t *)shortened + cut, n - cut,
						       collect, &c);
			if (r == 0)
				r = oci_multipart_finish(&m);
			if (r != -EBADMSG)
				fail_msg("short by %zu, cut at %zu: %d", k, cut, r);
			for (size_t i = 0; i < sizeof(c.seen); i++)
				if (c.seen[i] && c.blob[i] != (uint8_t)((i * 7 + 3) & 0xff))
					fail_msg(
					    "short by %zu, cut at %zu: byte %zu is not the blob's",
					    k, cut, i);
		}
		{
			struct oci_multipart m;
			struct collected c = {0};
			int r = 0;

			oci_multipart_init(&m, boundary);
			for (size_t i = 0; i < n && r == 0; i++)
				r = oci_multipart_feed(&m, (uint8_t *)shortened + i, 1, collect,
						       &c);
			assert_int_equal(r ? r : oci_multipart_finish(&m), -EBADMSG);
			for (size_t i = 0; i < sizeof(c.seen); i++)
				if (c.seen[i])
					assert_int_equal(c.blob[i], (uint8_t)((i * 7 + 3) & 0xff));
		}
	}
}

static void test_multipart_bad(void **state)
{
	static const char *const bad[] = {
	    /* no Content-Range */
	    "--b\r\nContent-Type: x\r\n\r\nabc\r\n--b--\r\n",
	    /* two Content-Ranges */
	    "--b\r\nContent-Range: bytes 0-1/10\r\nContent-Range: bytes "
	    "0-1/10\r\n\r\nab\r\n--b--\r\n",
	    /* garbage where the next delimiter belongs */
	    "--b\r\nContent-Range: bytes 0-1/10\r\n\r\nabXX\r\n--b--\r\n",
	    /* totals disagree */
	    "--b\r\nContent-Range: bytes 0-0/10\r\n\r\na\r\n--b\r\nContent-Range: bytes "
	    "2-2/11\r\n\r\n"
	    "c\r\n--b--\r\n",
	    /* bad range */
	    "--b\r\nContent-Range: bytes 5-1/10\r\n\r\nab\r\n--b--\r\n",
	    /* a header line without a colon */
	    "--b\r\nContent-Range bytes 0-1/10\r\n\r\nab\r\n--b--\r\n",
	    /* a payload a byte short of its Content-Range: the CR before the delimiter would
	     * be taken as its last byte */
	    "--b\r\nContent-Range: bytes 0-3/10\r\n\r\nabc\r\n--b--\r\n",
	    /* two bytes short: the CRLF would be */
	    "--b\r\nContent-Range: bytes 0-3/10\r\n\r\nab\r\n--b--\r\n",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct oci_multipart m;
		struct collected c = { 0 };

		oci_multipart_init(&m, "b");
		if (oci_multipart_feed(&m, (const uint8_t *)bad[i], strlen(bad[i]), collect, &c) !=
		    -EBADMSG)
			fail_msg("case %zu accepted", i);
		/* stays failed */
		assert_int_equal(oci_multipart_feed(&m, (const uint8_t *)"x", 1, collect, &c), -EBADMSG);
		/* a part's last two bytes are passed on only after the CRLF that ends it */
		if (i >= 6)
			assert_int_equal(c.seen[2] | c.seen[3], 0);
	}
}

static void test_multipart_caps_and_truncation(void **state)
{
	struct oci_multipart m;
	struct collected c = { 0 };
	char *big = malloc(20000);
	const char *trunc = "--b\r\nContent-Range: bytes 0-9/10\r\n\r\nabc";

	/* a preamble without end */
	memset(big, 'x', 20000);
	oci_multipart_init(&m, "b");
	assert_int_equal(oci_multipart_feed(&m, (uint8_t *)big, 20000, collect, &c), -EBADMSG);
	/* many short preamble lines, past the cap */
	for (size_t i = 0; i < 20000; i += 2)
		memcpy(big + i, "\r\n", 2);
	oci_multipart_init(&m, "b");
	assert_int_equal(oci_multipart_feed(&m, (uint8_t *)big, 20000, collect, &c), -EBADMSG);
	/* endless part headers */
	oci_multipart_init(&m, "b");
	assert_int_equal(oci_multipart_feed(&m, (const uint8_t *)"--b\r\n", 5, collect, &c), 0);
	for (size_t i = 0; i < 20000; i += 10)
		memcpy(big + i, "X-A: 1234\n", 10);
	assert_int_equal(oci_multipart_feed(&m, (uint8_t *)big, 20000, collect, &c), -EBADMSG);
	free(big);
	/* truncated body: fine so far, but not finished */
	oci_multipart_init(&m, "b");
	assert_int_equal(oci_multipart_feed(&m, (const uint8_t *)trunc, strlen(trunc), collect, &c), 0);
	assert_int_equal(oci_multipart_finish(&m), -EBADMSG);
	/* the callback's error is passed through */
	{
		const char *ok = "--b\r\nContent-Range: bytes 0-1/10\r\n\r\nab\r\n--b--\r\n";
		struct collected c2 = { .fail_at_call = 1 };

		oci_multipart_init(&m, "b");
		assert_int_equal(oci_multipart_feed(&m, (const uint8_t *)ok, strlen(ok), collect, &c2),
				 -EIO);
	}
	assert_int_equal(oci_multipart_init(&m, ""), -EINVAL);
}

static void test_boundary(void **state)
{
	char b[OCI_BOUNDARY_MAX + 1];
	const char *ct;

	ct = "multipart/byteranges; boundary=3d6b6a416f9b5";
	assert_int_equal(oci_content_type_boundary(ct, strlen(ct), b, sizeof(b)), 0);
	assert_string_equal(b, "3d6b6a416f9b5");
	ct = "Multipart/ByteRanges;charset=x; boundary=\"a \\\"q\\\" b\"";
	assert_int_equal(oci_content_type_boundary(ct, strlen(ct), b, sizeof(b)), 0);
	assert_string_equal(b, "a \"q\" b");
	ct = "application/octet-stream";
	assert_int_equal(oci_content_type_boundary(ct, strlen(ct), b, sizeof(b)), -ENOENT);
	ct = "multipart/byteranges";
	assert_int_equal(oci_content_type_boundary(ct, strlen(ct), b, sizeof(b)), -EBADMSG);
	ct = "multipart/byteranges; boundary=\"unterminated";
	assert_int_equal(oci_content_type_boundary(ct, strlen(ct), b, sizeof(b)), -EBADMSG);
	ct = "multipart/byteranges; boundary=";
	assert_int_equal(oci_content_type_boundary(ct, strlen(ct), b, sizeof(b)), -EBADMSG);
	assert_int_equal(oci_content_type_boundary("multipart/byteranges; boundary=abcdef", 37, b, 4),
			 -EBADMSG);
	assert_true(oci_media_type_is("application/json; charset=utf-8", "application/json"));
	assert_false(oci_media_type_is("application/jsonx", "application/json"));
}

/* ---- Content-Range, Retry-After, dates, headers ---------------------------------------------- */

static void test_content_range(void **state)
{
	uint64_t f, l, t;

#define CR(s) oci_content_range_parse(s, strlen(s), &f, &l, &t)
	assert_int_equal(CR("bytes 0-99/1000"), 0);
	assert_int_equal(f, 0);
	assert_int_equal(l, 99);
	assert_int_equal(t, 1000);
	assert_int_equal(CR("  BYTES 5-5/*  "), 0);
	assert_int_equal(t, UINT64_MAX);
	assert_int_equal(CR("bytes=10-20/30"), 0);
	assert_int_equal(CR("bytes 18446744073709551614-18446744073709551614/18446744073709551615"), 0);
	assert_int_equal(CR("bytes 99999999999999999999-1/2"), -EBADMSG);
	assert_int_equal(CR("bytes 5-4/10"), -EBADMSG);
	assert_int_equal(CR("bytes 5-10/10"), -EBADMSG);
	assert_int_equal(CR("bytes */10"), -EBADMSG);
	assert_int_equal(CR("bytes 1-2"), -EBADMSG);
	assert_int_equal(CR("bytes 1-2/3x"), -EBADMSG);
	assert_int_equal(CR("items 1-2/3"), -EBADMSG);
	assert_int_equal(CR(""), -EBADMSG);
#undef CR
	assert_int_equal(oci_upload_range_parse("0-1023", 6, &t), 0);
	assert_int_equal(t, 1024);
	assert_int_equal(oci_upload_range_parse("bytes=0-0", 9, &t), 0);
	assert_int_equal(t, 1);
	assert_int_equal(oci_upload_range_parse("5-10", 4, &t), -EBADMSG);
}

static void test_retry_after(void **state)
{
	uint64_t ms;
	time_t now = 784111777; /* Sun, 06 Nov 1994 08:49:37 GMT */
	time_t t;

#define RA(s) oci_retry_after_parse(s, strlen(s), now, &ms)
	assert_int_equal(RA("2"), 0);
	assert_int_equal(ms, 2000);
	assert_int_equal(RA(" 0 "), 0);
	assert_int_equal(ms, 0);
	assert_int_equal(RA("99999999999"), 0);
	assert_int_equal(ms, 24ULL * 3600 * 1000); /* capped */
	assert_int_equal(RA("Sun, 06 Nov 1994 08:49:40 GMT"), 0);
	assert_int_equal(ms, 3000);
	assert_int_equal(RA("Sunday, 06-Nov-94 08:49:47 GMT"), 0);
	assert_int_equal(ms, 10000);
	assert_int_equal(RA("Sun Nov  6 08:50:37 1994"), 0);
	assert_int_equal(ms, 60000);
	assert_int_equal(RA("Sun, 06 Nov 1994 08:00:00 GMT"), 0); /* in the past */
	assert_int_equal(ms, 0);
	assert_int_equal(RA("-1"), -EBADMSG);
	assert_int_equal(RA("1.5"), -EBADMSG);
	assert_int_equal(RA("soon"), -EBADMSG);
	assert_int_equal(RA("Sun, 06 Foo 1994 08:49:40 GMT"), -EBADMSG);
	assert_int_equal(RA("Sun, 06 Nov 1994 25:49:40 GMT"), -EBADMSG);
#undef RA
	assert_int_equal(oci_http_date_parse("Thu, 01 Jan 1970 00:00:00 GMT", 29, &t), 0);
	assert_int_equal(t, 0);
	assert_int_equal(oci_http_date_parse("Tue, 29 Feb 2000 12:00:00 GMT", 29, &t), 0);
	assert_int_equal(t, 951825600);
	assert_int_equal(oci_rfc3339_parse("2009-11-10T23:00:00Z", 20, &t), 0);
	assert_int_equal(t, 1257894000);
	assert_int_equal(oci_rfc3339_parse("2009-11-10T23:00:00.123456789+01:00", 35, &t), 0);
	assert_int_equal(t, 1257894000 - 3600);
	assert_int_equal(oci_rfc3339_parse("2009-11-10 23:00:00", 19, &t), -EBADMSG);
	assert_int_equal(oci_rfc3339_parse("2009-13-10T23:00:00Z", 20, &t), -EBADMSG);
}

static void test_header_split(void **state)
{
	const char *n, *v;
	size_t nl, vl;
	const char *line = "Content-Type:  text/plain \r\n";

	assert_int_equal(oci_header_split(line, strlen(line), &n, &nl, &v, &vl), 0);
	assert_int_equal(nl, 12);
	assert_memory_equal(n, "Content-Type", 12);
	assert_int_equal(vl, 10);
	assert_memory_equal(v, "text/plain", 10);
	line = "X-Empty:\r\n";
	assert_int_equal(oci_header_split(line, strlen(line), &n, &nl, &v, &vl), 0);
	assert_int_equal(vl, 0);
	assert_int_equal(oci_header_split("\r\n", 2, &n, &nl, &v, &vl), -EBADMSG);
	assert_int_equal(oci_header_split(": x", 3, &n, &nl, &v, &vl), -EBADMSG);
	assert_int_equal(oci_header_split("Bad Name: x", 11, &n, &nl, &v, &vl), -EBADMSG);
}

/* ---- WWW-Authenticate ---------------------------------------------------------------------- */

static void test_challenge(void **state)
{
	struct oci_challenge c;
	const char *s;

#define CH(x) (s = (x), oci_challenge_parse(s, strlen(s), &c))
	assert_int_equal(CH("Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\","
			    "scope=\"repository:library/debian:pull\""), 0);
	assert_int_equal(c.scheme, OCI_AUTH_BEARER);
	assert_string_equal(c.realm, "https://auth.docker.io/token");
	assert_string_equal(c.service, "registry.docker.io");
	assert_string_equal(c.scope, "repository:library/debian:pull");

	/* commas and escaped quotes inside quoted strings; odd spacing; case */
	assert_int_equal(CH("bearer  realm = \"https://a/t?x=1,y=2\" , scope=\"repository:a:pull,push\""
			    ", service=\"s \\\"q\\\"\""), 0);
	assert_string_equal(c.realm, "https://a/t?x=1,y=2");
	assert_string_equal(c.scope, "repository:a:pull,push");
	assert_string_equal(c.service, "s \"q\"");

	/* several challenges in one value: Bearer preferred, wherever it is */
	assert_int_equal(CH("Basic realm=\"Registry Realm\", Bearer realm=\"https://t/\",service=s"), 0);
	assert_int_equal(c.scheme, OCI_AUTH_BEARER);
	assert_string_equal(c.realm, "https://t/");
	assert_string_equal(c.service, "s");
	assert_int_equal(CH("Negotiate abc123==, Basic realm=\"r\""), 0);
	assert_int_equal(c.scheme, OCI_AUTH_BASIC);
	assert_string_equal(c.realm, "r");
	assert_int_equal(CH("Basic realm=r, NTLM"), 0);
	assert_int_equal(c.scheme, OCI_AUTH_BASIC);
	assert_int_equal(CH("Bearer realm=\"https://t/\",error=\"insufficient_scope\""), 0);
	assert_string_equal(c.error, "insufficient_scope");

	assert_int_equal(CH("Negotiate abc"), -ENOENT);
	assert_int_equal(CH(""), -ENOENT);
	assert_int_equal(CH("Bearer service=\"x\""), -EBADMSG); /* no realm */
	assert_int_equal(CH("Bearer realm=\"unterminated"), -EBADMSG);
	assert_int_equal(CH("Bearer realm=\"a\" junk"), -EBADMSG);
	assert_int_equal(CH("Bearer realm=\"a\rb\""), -EBADMSG); /* control character */
	{
		char big[3000];

		memcpy(big, "Bearer realm=\"", 14);
		memset(big + 14, 'a', 2000);
		memcpy(big + 2014, "\"", 2);
		assert_int_equal(CH(big), -EBADMSG); /* realm too long */
	}
#undef CH
}

static void test_token_reply(void **state)
{
	char *tok = NULL, *rt = NULL;
	uint64_t life;
	time_t now = 1257894000; /* 2009-11-10T23:00:00Z */
	const char *s;

#define TR(x) (s = (x), oci_token_reply_parse(s, strlen(s), now, &tok, &life, &rt))
	assert_int_equal(TR("{\"token\":\"abc.def\",\"expires_in\":300}"), 0);
	assert_string_equal(tok, "abc.def");
	assert_int_equal(life, 300);
	assert_null(rt);
	free(tok);
	assert_int_equal(TR("{\"access_token\":\"xyz\"}"), 0);
	assert_string_equal(tok, "xyz");
	assert_int_equal(life, 60); /* the spec's default */
	free(tok);
	/* issued 100 s ago: 200 s left */
	assert_int_equal(TR("{\"token\":\"t\",\"expires_in\":300,\"issued_at\":\"2009-11-10T22:58:20Z\","
			    "\"refresh_token\":\"r1\"}"), 0);
	assert_int_equal(life, 200);
	assert_string_equal(rt, "r1");
	free(tok);
	free(rt);
	rt = NULL;
	/* an issue time in the future (clock skew) does not shorten the life */
	assert_int_equal(TR("{\"token\":\"t\",\"expires_in\":300,\"issued_at\":\"2009-11-11T00:00:00Z\"}"),
			 0);
	assert_int_equal(life, 300);
	free(tok);
	/* a life under the protocol's 60 s floor (given, or what an old issue time leaves) is
	 * taken as 60 s: not a token request per request */
	assert_int_equal(TR("{\"token\":\"t\",\"expires_in\":0}"), 0);
	assert_int_equal(life, 60);
	free(tok);
	assert_int_equal(
	    TR("{\"token\":\"t\",\"expires_in\":300,\"issued_at\":\"2009-11-10T22:55:10Z\"}"), 0);
	assert_int_equal(life, 60); /* issued 290 s ago */
	free(tok);
	/* token preferred over access_token; an empty token falls back */
	assert_int_equal(TR("{\"token\":\"\",\"access_token\":\"b\"}"), 0);
	assert_string_equal(tok, "b");
	free(tok);

	assert_int_equal(TR("{}"), -EBADMSG);
	assert_int_equal(TR("[]"), -EBADMSG);
	assert_int_equal(TR("{\"token\":5}"), -EBADMSG);
	assert_int_equal(TR("{\"token\":\"a b\"}"), -EBADMSG);      /* header injection */
	assert_int_equal(TR("{\"token\":\"a\\r\\nX: y\"}"), -EBADMSG);
	assert_int_equal(TR("{\"token\":\"a\",\"expires_in\":-5}"), -EBADMSG);
	assert_int_equal(TR("{\"token\":\"a\",\"expires_in\":\"soon\"}"), -EBADMSG);
	assert_int_equal(TR("not json"), -EBADMSG);
#undef TR
}

static void test_registry_error(void **state)
{
	char code[64], msg[300];
	const char *b = "{\"errors\":[{\"code\":\"MANIFEST_UNKNOWN\",\"message\":\"manifest unknown\","
			"\"detail\":{}},{\"code\":\"X\",\"message\":\"two\\nlines\"}]}";

	assert_int_equal(oci_registry_error_parse(b, strlen(b), code, sizeof(code), msg, sizeof(msg)),
			 0);
	assert_string_equal(code, "MANIFEST_UNKNOWN");
	assert_string_equal(msg, "MANIFEST_UNKNOWN: manifest unknown; X: two lines");
	/* the same error for two blobs: said once */
	b = "{\"errors\":[{\"code\":\"MANIFEST_BLOB_UNKNOWN\",\"message\":\"blob unknown\"},"
	    "{\"code\":\"MANIFEST_BLOB_UNKNOWN\",\"message\":\"blob unknown\"}]}";
	assert_int_equal(
	    oci_registry_error_parse(b, strlen(b), code, sizeof(code), msg, sizeof(msg)), 0);
	assert_string_equal(msg, "MANIFEST_BLOB_UNKNOWN: blob unknown");
	/* a token server's OAuth2 error */
	b = "{\"error\":\"invalid_grant\",\"error_description\":\"refresh token\\nexpired\"}";
	assert_int_equal(
	    oci_registry_error_parse(b, strlen(b), code, sizeof(code), msg, sizeof(msg)), 0);
	assert_string_equal(code, "invalid_grant");
	assert_string_equal(msg, "invalid_grant: refresh token expired");
	b = "{\"error\":\"invalid_request\"}";
	assert_int_equal(
	    oci_registry_error_parse(b, strlen(b), code, sizeof(code), msg, sizeof(msg)), 0);
	assert_string_equal(msg, "invalid_request");
	b = "{\"error\":\"\"}";
	assert_int_equal(
	    oci_registry_error_parse(b, strlen(b), code, sizeof(code), msg, sizeof(msg)), -EBADMSG);
	assert_int_equal(oci_registry_error_parse("<html>", 6, code, sizeof(code), msg, sizeof(msg)),
			 -EBADMSG);
	assert_int_equal(oci_registry_error_parse("{\"errors\":[]}", 13, code, sizeof(code), msg,
						  sizeof(msg)), -EBADMSG);
	assert_int_equal(oci_errno_from_status(401), -EACCES);
	assert_int_equal(oci_errno_from_status(403), -EACCES);
	assert_int_equal(oci_errno_from_status(404), -ENOENT);
	assert_int_equal(oci_errno_from_status(429), -EAGAIN);
	assert_int_equal(oci_errno_from_status(503), -EAGAIN);
	assert_int_equal(oci_errno_from_status(400), -EBADMSG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_multipart_every_split),
	    cmocka_unit_test(test_multipart_payload_with_the_delimiter_is_refused),
	    cmocka_unit_test(test_multipart_short_part_passes_no_framing),
	    cmocka_unit_test(test_multipart_bad),
	    cmocka_unit_test(test_multipart_caps_and_truncation),
	    cmocka_unit_test(test_boundary),
	    cmocka_unit_test(test_content_range),
	    cmocka_unit_test(test_retry_after),
	    cmocka_unit_test(test_header_split),
	    cmocka_unit_test(test_challenge),
	    cmocka_unit_test(test_token_reply),
	    cmocka_unit_test(test_registry_error),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
