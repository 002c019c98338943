// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * `lazyerofs gc [--max-size SIZE] [--dry-run]`: evict whole cache entries that no mount uses,
 * least recently used first, until the cache fits SIZE (else the cache-max budget, else
 * nothing is kept). One line per evicted entry and a total on stdout; the work is cache_gc()
 * in src/cache/.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/cache.h"
#include "cli/cli.h"
#include "mount/mount.h"
#include "mount/resolve.h"
#include "util/config.h"
#include "util/log.h"
#include "util/strutil.h"

static void usage(FILE *f)
{
	fprintf(
	    f, "Usage: lazyerofs gc [-v] [--max-size SIZE] [--dry-run]\n"
	       "\n"
	       "Evict whole cache entries (images) that no mount uses, least recently used\n"
	       "first, until the cache directory takes at most SIZE. An entry a mount uses, or\n"
	       "one a mount or a fetch is opening right now, is never evicted; a later mount of\n"
	       "an evicted image fetches it again. Still over SIZE, entries in use are trimmed:\n"
	       "their daemons give back blocks nobody read for a minute or more (never the\n"
	       "image's metadata, never of a verified entry); reads fetch them again.\n"
	       "\n"
	       "  --max-size SIZE   the budget: an integer with an optional K, M, G or T suffix\n"
	       "                    (powers of 1024), or a percentage of the cache filesystem\n"
	       "                    (10%%). Default: cache-max ($LAZYEROFS_CACHE_MAX, else the\n"
	       "                    configuration file's); with none, every entry no mount uses\n"
	       "                    is evicted (and nothing in use is trimmed)\n"
	       "  -n, --dry-run     list what would be evicted; remove nothing\n"
	       "  -v, --verbose     more output\n"
	       "  -h, --help        show this help\n"
	       "\n"
	       "Records of pushes interrupted more than 7 days ago (a registry forgets\n"
	       "their sessions) are removed too, one line each.\n"
	       "Prints one line per evicted entry (digest, size, last use) and a total.\n"
	       "The budget also applies to every mount and fetch: before one makes a new\n"
	       "entry, unused entries are evicted the same way while the cache is over it.\n"
	       "Environment: LAZYEROFS_CACHE_DIR (default " MOUNT_DEFAULT_CACHE_DIR
	       "), LAZYEROFS_CACHE_MAX, LAZYEROFS_CONFIG (default /etc/lazyerofs/config).\n");
}

struct report {
	bool dry_run;
};

static void each(void *ctx, const struct cache_gc_entry *e)
{
	const struct report *rep = ctx;
	char size[32], when[32] = "never";
	time_t t = (time_t)e->last_use;
	struct tm tm;

	if (e->last_use > 0 && localtime_r(&t, &tm))
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
	util_format_bytes(e->freed, size, sizeof(size));
	if (e->gone)
		printf("%s %s%s (%s, last used %s)\n", rep->dry_run ? "would evict" : "evicted",
		       e->digest[0] ? e->digest : "entry ", e->digest[0] ? "" : e->key, size, when);
	else
		printf("trimmed %s%s (%s of blocks not read lately; in use)\n",
		       e->digest[0] ? e->digest : "entry ", e->digest[0] ? "" : e->key, size);
}

static int parse_args(int argc, char **argv, const char **ret_size, bool *ret_dry_run)
{
	static const struct option longopts[] = {
	    {"max-size", required_argument, NULL, 's'},
	    {"dry-run", no_argument, NULL, 'n'},
	    {"help", no_argument, NULL, 'h'},
	    {"verbose", no_argument, NULL, 'v'},
	    {NULL, 0, NULL, 0},
	};
	int c;

	opterr = 0;
	optind = 0; /* (glibc starts over, permuting: options after the operands too) */
	while ((c = getopt_long(argc, argv, "nhv", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			*ret_size = optarg;
			break;
		case 'n':
			*ret_dry_run = true;
			break;
		case 'v':
			cli_verbose_inc();
			break;
		case 'h':
			usage(stdout);
			return CLI_EXIT_OK;
		default:
			if (optopt == 's') {
				log_error("gc: option --max-size needs a value; run 'lazyerofs gc "
					  "--help'");
				return CLI_EXIT_USAGE;
			}
			return cli_option_error("gc", "nhv", argv);
		}
	}
	if (optind != argc) {
		log_error("gc: unexpected argument '%s'; run 'lazyerofs gc --help'", argv[optind]);
		return CLI_EXIT_USAGE;
	}
	return -1;
}

int cli_gc(int argc, char **argv)
{
	struct util_error err = UTIL_ERROR_INIT;
	struct cache_gc_result res;
	struct util_size max = {0};
	struct report rep = {0};
	const char *size = NULL, *cache_dir = mount_env_cache_dir();
	bool no_budget = false;
	char a[32], b[32], c[40];
	int r;

	r = parse_args(argc, argv, &size, &rep.dry_run);
	if (r >= 0)
		return r;
	if (size) {
		r = util_parse_size(size, &max);
		if (r < 0) {
			log_error("gc: --max-size '%s': %s; it wants %s", size,
				  r == -ERANGE ? "out of range" : "not a size", UTIL_SIZE_SYNTAX);
			return CLI_EXIT_USAGE;
		}
	} else {
		const char *env = getenv("LAZYEROFS_CACHE_MAX");

		r = util_cache_max(&max, &err);
		if (r < 0) {
			/* A bad LAZYEROFS_CACHE_MAX is bad usage, like a bad --max-size; a broken
			 * configuration file is not the command line's fault. */
			log_error("gc: %s", err.message);
			return env && *env ? CLI_EXIT_USAGE : CLI_EXIT_FAILURE;
		}
		no_budget = r == 0;
	}
	{
		struct util_error derr = UTIL_ERROR_INIT;

		if (mount_check_dir_paths(cache_dir, mount_env_run_dir(), &derr) < 0) {
			log_error("gc: %s", derr.message);
			return CLI_EXIT_FAILURE;
		}
	}
	/* Without any budget, unused entries go; entries in use are not trimmed to nothing. */
	r = mount_cache_gc(cache_dir, mount_env_run_dir(), &max, rep.dry_run, !no_budget, each,
			   &rep, &res);
	if (r < 0) {
		fflush(stdout); /* what was evicted before the failure, first */
		if (r == -EPERM)
			log_error("gc: cache directory '%s' must be owned by root with mode 0700",
				  cache_dir);
		else if (r == -EINVAL)
			log_error("gc: cache directory '%s' must be an absolute path", cache_dir);
		else
			log_error("gc: cache directory '%s': %s", cache_dir, strerror(-r));
		return CLI_EXIT_FAILURE;
	}
	/* Records of pushes interrupted long ago (push_record.c) go too. */
	{
		size_t nrec;

		r = cli_upload_records_sweep(cache_dir, rep.dry_run, &nrec);
		if (r < 0)
			log_warning("gc: upload records in '%s/uploads': %s", cache_dir,
				    strerror(-r));
	}
	util_format_bytes(res.freed, a, sizeof(a));
	util_format_bytes(res.total - res.freed, b, sizeof(b));
	if (no_budget)
		snprintf(c, sizeof(c), "none: nothing unused is kept");
	else
		util_format_bytes(res.budget, c, sizeof(c));
	printf("%s %zu of %zu entries", rep.dry_run ? "would evict" : "evicted", res.evicted,
	       res.entries);
	if (res.trimmed)
		printf(", trimmed %zu in use", res.trimmed);
	printf(", %s %s; the cache %s %s (budget %s)", a, rep.dry_run ? "to free" : "freed",
	       rep.dry_run ? "would hold" : "holds", b, c);
	if (res.total - res.freed > res.budget)
		printf("; over budget: %zu entr%s in use hold %s", res.in_use,
		       res.in_use == 1 ? "y" : "ies",
		       util_format_bytes(res.in_use_bytes, a, sizeof(a)));
	printf("\n");
	if (fflush(stdout) != 0) {
		log_error("gc: writing the result: %m");
		return CLI_EXIT_FAILURE;
	}
	if (res.failed) {
		log_error("gc: %zu cache entr%s could not be evicted (entry %s: %s); remove %s "
			  "'%s/sha256/%s*' by hand",
			  res.failed, res.failed == 1 ? "y" : "ies", res.failed_key,
			  strerror(-res.failed_err), res.failed == 1 ? "it:" : "them, as",
			  cache_dir, res.failed_key);
		return CLI_EXIT_FAILURE;
	}
	return CLI_EXIT_OK;
}
