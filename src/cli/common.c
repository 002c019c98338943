// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Helpers shared by the subcommands: -v, the one-line answer to a bad option, -o lists of
 * the registry client's options, and progress on stderr. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "erofs/erofs.h"
#include "mount/mount.h"
#include "mount/resolve.h"
#include "oci/oci.h"
#include "util/log.h"
#include "util/strutil.h"
#include "util/time.h"

void cli_verbose_inc(void)
{
	util_log_set_level(util_log_get_level() + 1);
}

/* Is argument a a cluster of short options ("-xv") holding letter c? */
static bool short_cluster_has(const char *a, int c)
{
	return a && a[0] == '-' && a[1] && a[1] != '-' && strchr(a + 1, c);
}

int cli_option_error(const char *cmd, const char *optstring, char **argv)
{
	/* getopt_long leaves optopt at the letter of a short option it refuses (unknown, or
	 * without its value), which sits in the argument it works on (optind) or, when it was
	 * that argument's last, in the one before; at the value of a long option given a value
	 * it takes none of (or none it needs), and at 0 for an unknown long option, both
	 * stepped over. */
	const char *prev = optind > 0 ? argv[optind - 1] : NULL, *cur = argv[optind];
	const char *spec = optopt ? strchr(optstring, optopt) : NULL;
	bool is_short =
	    optopt && (short_cluster_has(cur, optopt) || short_cluster_has(prev, optopt));
	int n = prev ? (int)strcspn(prev, "=") : 0;

	if (is_short && spec && spec[1] == ':')
		log_error("%s: option -%c needs a value; run 'lazyerofs %s --help'", cmd, optopt,
			  cmd);
	else if (is_short)
		log_error("%s: unknown option '-%c'; run 'lazyerofs %s --help'", cmd, optopt, cmd);
	else if (!prev || strncmp(prev, "--", 2) != 0)
		log_error("%s: unknown option; run 'lazyerofs %s --help'", cmd, cmd);
	else if (optopt)
		log_error("%s: option '%.*s' %s; run 'lazyerofs %s --help'", cmd, n, prev,
			  prev[n] ? "takes no value" : "needs a value", cmd);
	else
		log_error("%s: unknown option '%.*s'; run 'lazyerofs %s --help'", cmd, n, prev,
			  cmd);
	return CLI_EXIT_USAGE;
}

static void log_warning_line(void *ctx, const char *message)
{
	log_warning("%s", message);
}

int cli_oci_options_parse(const char *cmd, struct oci_options *o, const char *s)
{
	struct util_error err = UTIL_ERROR_INIT;
	int r;

	r = oci_options_set_list(o, s, log_warning_line, NULL, &err);
	if (r == -ENOENT)
		log_error("%s: %s; run 'lazyerofs %s --help'", cmd, err.message, cmd);
	else if (r < 0)
		log_error("%s: %s", cmd, util_err_msg(&err, r));
	else if (o->n_mirrors) {
		/* Mirrors serve pulls; what is published goes to the registry itself. */
		log_error("%s: option 'mirror' is for pulling (mount); %s writes to the registry "
			  "itself",
			  cmd, cmd);
		r = -EINVAL;
	}
	return r < 0 ? -EINVAL : 0;
}

int cli_add_opt_arg(const char *cmd, const char **optv, size_t *optn, const char *arg)
{
	if (*optn == CLI_MAX_OPT_ARGS) {
		log_error("%s: too many -o arguments (at most %d)", cmd, CLI_MAX_OPT_ARGS);
		return -E2BIG;
	}
	optv[(*optn)++] = arg;
	return 0;
}

int cli_opt_args(const char *cmd, int argc, char **argv, int nargs, const char *what,
		 const char **optv, size_t *optn, void (*usage)(FILE *f))
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "options", required_argument, NULL, 'o' },
		{ "verbose", no_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	opterr = 0;
	optind = 0; /* (glibc starts over, permuting: options after the operands too) */
	*optn = 0;
	while ((c = getopt_long(argc, argv, "ho:v", longopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			usage(stdout);
			return CLI_EXIT_OK;
		case 'o':
			if (cli_add_opt_arg(cmd, optv, optn, optarg) < 0)
				return CLI_EXIT_USAGE;
			break;
		case 'v':
			cli_verbose_inc();
			break;
		default:
			return cli_option_error(cmd, "ho:v", argv);
		}
	}
	if (argc - optind != nargs) {
		log_error("%s: expected %s; see 'lazyerofs %s --help'", cmd, what, cmd);
		return CLI_EXIT_USAGE;
	}
	return -1;
}

int cli_registry_args(const char *cmd, int argc, char **argv, int nargs, const char *what,
		      struct oci_options *opts, void (*usage)(FILE *f))
{
	const char *optv[CLI_MAX_OPT_ARGS];
	size_t optn = 0;
	int r = cli_opt_args(cmd, argc, argv, nargs, what, optv, &optn, usage);

	if (r >= 0)
		return r;
	for (size_t i = 0; i < optn; i++)
		if (cli_oci_options_parse(cmd, opts, optv[i]) < 0)
			return CLI_EXIT_USAGE;
	/* Bearer tokens shared with mounts (and other pushes) through the run directory. */
	if (!opts->run_dir && !(opts->run_dir = strdup(mount_env_run_dir()))) {
		log_error("%s: out of memory", cmd);
		return CLI_EXIT_FAILURE;
	}
	return -1;
}

int cli_mount_opts(const char *cmd, const char *const *optv, size_t optn, struct mount_opts *mo,
		   struct oci_options *oo)
{
	struct util_error err = UTIL_ERROR_INIT;

	for (size_t i = 0; i < optn; i++)
		if (mount_opts_parse(optv[i], mo, oo, &err) < 0) {
			log_error("%s: %s", cmd, err.message);
			return -EINVAL;
		}
	return 0;
}

void cli_progress_init(struct cli_progress *p, const char *verb, const char *name, bool lines)
{
	*p = (struct cli_progress){ .verb = verb, .name = name, .lines = lines, .last_pct = -1 };
	p->tty = isatty(STDERR_FILENO) == 1;
}

void cli_progress_update(struct cli_progress *p, uint64_t done, uint64_t total)
{
	char a[32], b[32];
	int pct = total ? (int)(MIN(done, total) * 100 / total) : 100, bars;
	uint64_t now = util_now_ms();

	if (pct == p->last_pct)
		return;
	util_format_bytes(done, a, sizeof(a));
	util_format_bytes(total, b, sizeof(b));
	if (p->tty) {
		bars = pct / 4;
		fprintf(stderr, "\r%s %s [%.*s%*s] %3d%% %s / %s ", p->verb, p->name, bars,
			"#########################", 25 - bars, "", pct, a, b);
		p->open = pct < 100;
		if (!p->open)
			fputc('\n', stderr);
	} else if (p->lines) {
		if (p->last_pct >= 0 && pct / 10 == p->last_pct / 10 && pct < 100 &&
		    now - p->last_line_ms < CLI_PROGRESS_LINE_MS)
			return;
		fprintf(stderr, "%s %s: %d%% (%s of %s)\n", p->verb, p->name, pct, a, b);
		p->last_line_ms = now;
	} else {
		return;
	}
	p->last_pct = pct;
	fflush(stderr);
}

void cli_progress_end(struct cli_progress *p)
{
	if (p->open)
		fputc('\n', stderr);
	p->open = false;
}

int cli_metadata_map(struct erofs_io *io, char **ret, struct util_error *err)
{
	struct erofs_walk_opts wopts = {.merge_gap = 0};
	struct erofs_walk_stats st;
	struct util_extents ext;
	int r;

	*ret = NULL;
	util_extents_init(&ext);
	r = erofs_walk(io, &wopts, &ext, &st, err);
	if (r >= 0) {
		r = oci_metamap_encode(ext.v, ext.n, io->size, ret);
		if (r == -E2BIG)
			util_err_set(err, r, "its metadata lies in too many ranges for a map of %u "
					     "bytes", OCI_METAMAP_MAX_TEXT);
		else if (r >= 0)
			log_debug("metadata map of %zu range(s), %llu bytes, in %zu characters", ext.n,
				  (unsigned long long)util_extents_total(&ext), strlen(*ret));
	}
	util_extents_free(&ext);
	return r;
}

int cli_push_options(const char *cmd, const struct oci_ref *ref, struct oci_options *opts)
{
	struct util_error err = UTIL_ERROR_INIT;
	struct oci_options full;
	int r = mount_push_options(opts, ref, NULL, &full, &err);

	if (r < 0) {
		oci_options_free(&full);
		log_error("%s: %s", cmd, util_err_msg(&err, r));
		return r;
	}
	oci_options_free(opts);
	*opts = full;
	return 0;
}
