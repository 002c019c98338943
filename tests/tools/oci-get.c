// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * oci-get: the registry client from the command line, for the integration tests and the
 * benchmark. Resolves SOURCE, reads byte ranges (or the whole blob in chunks with several
 * readers in threads), optionally writes the bytes to a file, and prints one JSON line:
 *
 *   oci-get [-o OPTS] [--out FILE] SOURCE [OFFSET:LENGTH ...]
 *   oci-get [-o OPTS] [--out FILE] --all [--chunk BYTES] [--parallel N] SOURCE
 *   oci-get [-o OPTS] --referrer TYPE [--layer-type MEDIA_TYPE] [--timeout MS] SOURCE
 *
 * {"digest","size","media_type","requests","bytes","seconds","sha256", ...}: requests and
 * bytes of the range reads, seconds they took, sha256 of the bytes read. With --all the
 * blob's digest (when known) is verified. With --referrer: the newest referrer of TYPE of the
 * resolved image manifest (oci_referrer_newest, within --timeout) and, with --layer-type, its
 * layer of that type (oci_artifact_fetch, in the time left):
 * {"referrer","referrer_size","artifact_type","created","seconds"[,"layer_size","layer_sha256",
 * "layer"]}; none is exit 3. Errors: one line "oci-get: ..." on stderr, exit 2; usage errors
 * exit 1.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "oci/oci.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/macro.h"
#include "util/sha256.h"
#include "util/strutil.h"

#define RANGES_TOTAL_MAX (1ULL << 30)

static _printf_(1, 2) int usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("oci-get: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\n", stderr);
	return 1;
}

static int fail(const struct util_error *err, int r, const char *what)
{
	if (err && err->message[0])
		fprintf(stderr, "oci-get: %s\n", err->message);
	else
		fprintf(stderr, "oci-get: %s: %s\n", what, strerror(-r));
	return 2;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void warn_line(void *ctx, const char *message)
{
	fprintf(stderr, "oci-get: warning: %s\n", message);
}

static int parse_opts(struct oci_options *o, const char *s)
{
	struct util_error err = UTIL_ERROR_INIT;
	int r = oci_options_set_list(o, s, warn_line, NULL, &err);

	return r < 0 ? usage_error("%s", util_err_msg(&err, r)) : 0;
}

/* ---- explicit ranges ------------------------------------------------------------------------ */

struct wanted {
	uint64_t off, len, at; /* at: where in the output buffer */
};

struct ranges_ctx {
	struct wanted *w; /* sorted by offset for one call */
	size_t n;
	uint8_t *buf;
};

static int ranges_sink(void *ctx, uint64_t offset, const void *data, size_t len)
{
	struct ranges_ctx *k = ctx;
	size_t lo = 0, hi = k->n;

	/* the range holding offset */
	while (hi - lo > 1) {
		size_t mid = (lo + hi) / 2;

		if (k->w[mid].off <= offset)
			lo = mid;
		else
			hi = mid;
	}
	if (offset < k->w[lo].off || offset + len > k->w[lo].off + k->w[lo].len)
		return -ERANGE;
	memcpy(k->buf + k->w[lo].at + (offset - k->w[lo].off), data, len);
	return 0;
}

/* ---- --separate: every range a read of its own, all submitted at once --------------------------- */

struct sep_read {
	struct ranges_ctx k;
	bool done;
	int result;
	struct util_error err;
};

static int sep_sink(void *ctx, uint64_t offset, const void *data, size_t len)
{
	return ranges_sink(&((struct sep_read *)ctx)->k, offset, data, len);
}

static void sep_done(void *ctx, int result, const struct util_error *err,
		     const struct oci_read_stats *stats)
{
	struct sep_read *s = ctx;

	s->done = true;
	s->result = result;
	if (err)
		s->err = *err;
}

/* Submit every range as its own read to one reader, then drive them all together; the first
 * failure (in range order) is returned. */
static int read_separately(struct oci_reader *rd, struct wanted *w, size_t nw, uint8_t *buf,
			   struct util_error *err)
{
	struct sep_read *v = calloc(nw ? nw : 1, sizeof(*v));
	size_t left = nw;
	int r = 0;

	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < nw; i++) {
		struct util_extent e = { w[i].off, w[i].len };

		v[i].k = (struct ranges_ctx){ .buf = buf, .w = &w[i], .n = 1 };
		r = oci_reader_submit(rd, &e, 1, 0, sep_sink, sep_done, &v[i], err);
		if (r < 0) {
			free(v);
			return r;
		}
	}
	while (left) {
		oci_reader_perform(rd, 1000);
		left = 0;
		for (size_t i = 0; i < nw; i++)
			left += !v[i].done;
	}
	for (size_t i = 0; i < nw && r == 0; i++)
		if (v[i].result < 0) {
			r = v[i].result;
			*err = v[i].err;
		}
	free(v);
	return r;
}

/* ---- --all ----------------------------------------------------------------------------------- */

struct all_ctx {
	struct oci_client *c;
	uint64_t size, chunk, nchunks;
	int out_fd;
	pthread_mutex_t lock;
	pthread_cond_t turn;
	uint64_t next_chunk;    /* next chunk to fetch; under lock */
	uint64_t next_hash;     /* next chunk to hash and write; under lock */
	bool failed;            /* under lock */
	int error;
	struct util_error err;
	struct util_sha256 *sha;
	uint64_t requests, bytes; /* under lock */
};

struct chunk_buf {
	uint8_t *buf;
	uint64_t base;
};

static int chunk_sink(void *ctx, uint64_t offset, const void *data, size_t len)
{
	struct chunk_buf *b = ctx;

	memcpy(b->buf + (offset - b->base), data, len);
	return 0;
}

static void *all_worker(void *arg)
{
	struct all_ctx *a = arg;
	struct oci_reader *rd = NULL;
	struct chunk_buf cb = { 0 };
	struct util_error err;
	uint64_t req = 0, bytes = 0;
	int r;

	r = oci_reader_new(a->c, &rd);
	if (r == 0)
		cb.buf = malloc(a->chunk ? a->chunk : 1);
	if (r < 0 || !cb.buf) {
		pthread_mutex_lock(&a->lock);
		if (!a->failed) {
			a->failed = true;
			a->error = r < 0 ? r : -ENOMEM;
		}
		pthread_cond_broadcast(&a->turn);
		pthread_mutex_unlock(&a->lock);
		oci_reader_free(rd);
		free(cb.buf);
		return NULL;
	}
	for (;;) {
		struct util_extent e;
		uint64_t k;

		pthread_mutex_lock(&a->lock);
		if (a->failed || a->next_chunk >= a->nchunks) {
			pthread_mutex_unlock(&a->lock);
			break;
		}
		k = a->next_chunk++;
		pthread_mutex_unlock(&a->lock);

		e.offset = k * a->chunk;
		e.length = MIN(a->chunk, a->size - e.offset);
		cb.base = e.offset;
		r = oci_read_ranges(rd, &e, 1, chunk_sink, &cb, &err);

		pthread_mutex_lock(&a->lock);
		while (!a->failed && r == 0 && a->next_hash != k)
			pthread_cond_wait(&a->turn, &a->lock);
		if (r < 0 && !a->failed) {
			a->failed = true;
			a->error = r;
			a->err = err;
		}
		if (!a->failed) {
			util_sha256_update(a->sha, cb.buf, e.length);
			if (a->out_fd >= 0 &&
			    (r = util_pwrite_full(a->out_fd, cb.buf, e.length, e.offset)) < 0) {
				a->failed = true;
				a->error = r;
				snprintf(a->err.message, sizeof(a->err.message),
					 "writing the output: %s", strerror(-r));
			}
			a->next_hash++;
		}
		pthread_cond_broadcast(&a->turn);
		pthread_mutex_unlock(&a->lock);
	}
	oci_reader_stats(rd, &req, &bytes);
	pthread_mutex_lock(&a->lock);
	a->requests += req;
	a->bytes += bytes;
	pthread_mutex_unlock(&a->lock);
	oci_reader_free(rd);
	free(cb.buf);
	return NULL;
}

/* ---- --referrer ------------------------------------------------------------------------------ */

static int print_referrer(struct oci_client *c, const char *type, const char *layer_type,
			  uint64_t timeout_ms)
{
	struct oci_referrer ref;
	struct util_error err;
	char sha[UTIL_DIGEST_STR_LEN];
	uint8_t d[UTIL_SHA256_LEN];
	double t0 = now_s(), used;
	void *buf = NULL;
	size_t len = 0;
	json_t *j;
	char *line;
	int r;

	r = oci_referrer_newest(c, type, timeout_ms, &ref, &err);
	if (r == -ENOENT) {
		fprintf(stderr, "oci-get: %s\n", err.message);
		return 3;
	}
	if (r < 0)
		return fail(&err, r, "referrers");
	j = json_pack("{s:s, s:I, s:s, s:s}", "referrer", ref.digest, "referrer_size",
		      (json_int_t)ref.size, "artifact_type", ref.artifact_type, "created",
		      ref.created);
	if (!j)
		return 2;
	if (layer_type) {
		/* what is left of the time (0: the client's timeout, as for the lookup) */
		used = (now_s() - t0) * 1000;
		r = oci_artifact_fetch(c, &ref, layer_type, 1 << 20,
				       !timeout_ms	       ? 0
				       : timeout_ms > used ? timeout_ms - (uint64_t)used
							   : 1,
				       &buf, &len, &err);
		if (r < 0) {
			json_decref(j);
			return fail(&err, r, "artifact");
		}
		util_sha256_buf(buf, len, d);
		util_digest_format(d, sha);
		json_object_set_new(j, "layer_size", json_integer((json_int_t)len));
		json_object_set_new(j, "layer_sha256", json_string(sha));
		json_object_set_new(j, "layer", json_stringn(buf, len));
		free(buf);
	}
	json_object_set_new(j, "seconds", json_real(now_s() - t0));
	line = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	if (!line)
		return 2;
	printf("%s\n", line);
	free(line);
	return 0;
}

/* What main owns, freed by done() on every way out (the sanitizer build checks leaks). */
static struct oci_options g_opts;
static struct oci_ref *g_ref;
static struct oci_client *g_client;
static struct wanted *g_w;
static uint8_t *g_buf;
static struct oci_reader *g_reader;
static int g_out_fd = -1;

static int done(int code)
{
	oci_reader_free(g_reader);
	oci_client_free(g_client);
	oci_ref_free(g_ref);
	oci_options_free(&g_opts);
	free(g_w);
	free(g_buf);
	if (g_out_fd >= 0)
		close(g_out_fd);
	return code;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "all", no_argument, NULL, 'a' },     { "chunk", required_argument, NULL, 'c' },
		{ "parallel", required_argument, NULL, 'p' }, { "out", required_argument, NULL, 'O' },
		{ "separate", no_argument, NULL, 'S' }, { "help", no_argument, NULL, 'h' },
		{ "referrer", required_argument, NULL, 'R' },
		{ "layer-type", required_argument, NULL, 'L' },
		{ "timeout", required_argument, NULL, 'T' },
		{ NULL, 0, NULL, 0 },
	};
	const char *referrer = NULL, *layer_type = NULL;
	uint64_t referrer_timeout = 0;
	struct oci_blob blob;
	struct util_error err;
	const char *out = NULL;
	uint64_t chunk = 4ULL << 20, parallel = 1, requests = 0, bytes = 0, resolve_req = 0;
	uint8_t digest[UTIL_SHA256_LEN];
	char sha[UTIL_DIGEST_STR_LEN];
	bool all = false, separate = false;
	double t0, t1, t2;
	int opt, r;
	json_t *j;
	char *line;

	oci_options_init(&g_opts);
	while ((opt = getopt_long(argc, argv, "o:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'o':
			r = parse_opts(&g_opts, optarg);
			if (r)
				return done(r);
			break;
		case 'a':
			all = true;
			break;
		case 'c':
			if (util_parse_u64(optarg, &chunk) < 0 || chunk == 0 || chunk > (1ULL << 30))
				return done(usage_error("--chunk: '%s' is not a byte count (1..1 GiB)",
						   optarg));
			break;
		case 'p':
			if (util_parse_u64(optarg, &parallel) < 0 || parallel == 0 || parallel > 64)
				return done(usage_error("--parallel: '%s' is not 1..64", optarg));
			break;
		case 'O':
			out = optarg;
			break;
		case 'S':
			separate = true;
			break;
		case 'R':
			referrer = optarg;
			break;
		case 'L':
			layer_type = optarg;
			break;
		case 'T':
			if (util_parse_u64(optarg, &referrer_timeout) < 0)
				return done(usage_error("--timeout: '%s' is not milliseconds", optarg));
			break;
		case 'h':
			printf("Usage: oci-get [-o OPTS] [--out FILE] [--separate [--parallel N]] SOURCE "
			       "[OFFSET:LENGTH ...]\n"
			       "       oci-get [-o OPTS] [--out FILE] --all [--chunk BYTES] "
			       "[--parallel N] SOURCE\n"
			       "       oci-get [-o OPTS] --referrer TYPE [--layer-type MEDIA_TYPE] "
			       "[--timeout MS] SOURCE\n");
			return done(0);
		default:
			return done(1);
		}
	}
	if (optind >= argc)
		return done(usage_error("no SOURCE given"));
	if (all && optind + 1 < argc)
		return done(usage_error("--all takes no ranges"));
	if (oci_global_init() < 0)
		return done(usage_error("cannot initialise libcurl"));
	r = oci_ref_parse(argv[optind], &g_ref, &err);
	if (r < 0)
		return done(usage_error("%s", err.message));

	/* The ranges, checked before any network traffic. */
	size_t nw = (size_t)(argc - optind - 1);
	struct wanted *w = g_w = calloc(nw ? nw : 1, sizeof(*w));
	uint64_t total = 0;

	if (!w)
		return done(2);
	for (size_t i = 0; i < nw; i++) {
		char *a = argv[optind + 1 + i], *colon = strchr(a, ':');

		if (!colon)
			return done(usage_error("range '%s' is not OFFSET:LENGTH", a));
		*colon = 0;
		if (util_parse_u64(a, &w[i].off) < 0 || util_parse_u64(colon + 1, &w[i].len) < 0) {
			*colon = ':';
			return done(usage_error("range '%s' is not OFFSET:LENGTH", a));
		}
		w[i].at = total;
		total += w[i].len;
		if (total > RANGES_TOTAL_MAX)
			return done(usage_error("ranges add up to more than 1 GiB"));
	}

	r = oci_client_new(g_ref, &g_opts, &g_client);
	if (r < 0)
		return done(fail(NULL, r, "cannot create the client"));
	if (out) {
		g_out_fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (g_out_fd < 0) {
			fprintf(stderr, "oci-get: cannot open '%s': %m\n", out);
			return done(2);
		}
	}
	t0 = now_s();
	r = oci_resolve(g_client, &blob, &err);
	if (r < 0)
		return done(fail(&err, r, "resolve"));
	t1 = now_s();
	oci_client_stats(g_client, &resolve_req);
	if (referrer)
		return done(print_referrer(g_client, referrer, layer_type, referrer_timeout));

	if (all) {
		struct all_ctx a = { .c = g_client, .size = blob.size, .chunk = chunk,
				      .out_fd = g_out_fd };
		pthread_t th[64];

		a.nchunks = (blob.size + chunk - 1) / chunk;
		pthread_mutex_init(&a.lock, NULL);
		pthread_cond_init(&a.turn, NULL);
		if (util_sha256_new(&a.sha) < 0)
			return done(2);
		for (uint64_t i = 0; i < parallel; i++)
			pthread_create(&th[i], NULL, all_worker, &a);
		for (uint64_t i = 0; i < parallel; i++)
			pthread_join(th[i], NULL);
		if (a.failed) {
			util_sha256_free(a.sha);
			return done(fail(&a.err, a.error, "reading the blob"));
		}
		util_sha256_final(a.sha, digest);
		util_sha256_free(a.sha);
		requests = a.requests;
		bytes = a.bytes;
		util_digest_format(digest, sha);
		if (blob.digest[0] && strcmp(sha, blob.digest) != 0) {
			fprintf(stderr, "oci-get: digest mismatch: the blob should be %s but its "
					"bytes hash to %s\n", blob.digest, sha);
			return done(2);
		}
	} else {
		struct oci_reader *rd = NULL;
		struct ranges_ctx k;
		bool sorted = true;
		uint8_t *buf = g_buf = malloc(total ? total : 1);

		if (!buf)
			return done(2);
		r = oci_reader_new(g_client, &g_reader);
		rd = g_reader;
		if (r < 0)
			return done(fail(NULL, r, "reader"));
		for (size_t i = 1; i < nw; i++)
			if (w[i].off < w[i - 1].off + w[i - 1].len)
				sorted = false;
		k.buf = buf;
		if (separate) {
			oci_reader_set_parallel(rd, (unsigned)parallel);
			r = read_separately(rd, w, nw, buf, &err);
			if (r < 0)
				return done(fail(&err, r, "reading ranges"));
		} else if (sorted && nw) {
			struct util_extent *e = calloc(nw, sizeof(*e));

			for (size_t i = 0; i < nw; i++) {
				e[i].offset = w[i].off;
				e[i].length = w[i].len;
			}
			k.w = w;
			k.n = nw;
			r = oci_read_ranges(rd, e, nw, ranges_sink, &k, &err);
			free(e);
			if (r < 0)
				return done(fail(&err, r, "reading ranges"));
		} else {
			for (size_t i = 0; i < nw; i++) {
				struct util_extent e = { w[i].off, w[i].len };

				k.w = &w[i];
				k.n = 1;
				r = oci_read_ranges(rd, &e, 1, ranges_sink, &k, &err);
				if (r < 0)
					return done(fail(&err, r, "reading ranges"));
			}
		}
		oci_reader_stats(rd, &requests, &bytes);
		util_sha256_buf(buf, total, digest);
		util_digest_format(digest, sha);
		if (g_out_fd >= 0 && (r = util_pwrite_full(g_out_fd, buf, total, 0)) < 0) {
			fprintf(stderr, "oci-get: writing '%s': %s\n", out, strerror(-r));
			return done(2);
		}
	}
	t2 = now_s();
	if (g_out_fd >= 0 && close(TAKE_FD(g_out_fd)) < 0) {
		fprintf(stderr, "oci-get: writing '%s': %m\n", out);
		return done(2);
	}
	j = json_pack("{s:s, s:I, s:s, s:I, s:I, s:f, s:s, s:I, s:f, s:s, s:s, s:s}", "digest",
		      blob.digest, "size", (json_int_t)blob.size, "media_type", blob.media_type,
		      "requests", (json_int_t)requests, "bytes", (json_int_t)bytes, "seconds", t2 - t1,
		      "sha256", sha, "resolve_requests", (json_int_t)resolve_req, "resolve_seconds",
		      t1 - t0, "cache_key", blob.cache_key, "manifest_digest", blob.manifest_digest,
		      "validator", blob.validator);
	if (j && (json_object_set_new(j, "manifest_size",
				      json_integer((json_int_t)blob.manifest_size)) < 0 ||
		  json_object_set_new(j, "manifest_media_type",
				      json_string(blob.manifest_media_type)) < 0))
		return done(2);
	line = j ? json_dumps(j, JSON_COMPACT) : NULL;
	if (!line)
		return done(2);
	printf("%s\n", line);
	free(line);
	json_decref(j);
	return done(0);
}
