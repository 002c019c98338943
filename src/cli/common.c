// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Helpers shared by the subcommands: -v, the one-line answer to a bad option, and -o lists
 * of the registry client's options. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "util/log.h"

void cli_verbose_inc(void)
{
	util_log_set_level(util_log_get_level() + 1);
}

int cli_option_error(const char *cmd, const char *optstring, char **argv)
{
	const char *spec = optopt ? strchr(optstring, optopt) : NULL;

	/* getopt leaves optopt at a known option's letter when its value is missing, and at an
	 * unknown letter (or 0 for an unknown long option) otherwise. */
	if (spec && spec[1] == ':')
		log_error("%s: option -%c needs a value; run 'lazyerofs %s --help'", cmd, optopt,
			  cmd);
	else
		log_error("%s: unknown option '%s'; run 'lazyerofs %s --help'", cmd, argv[optind - 1],
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

int cli_registry_args(const char *cmd, int argc, char **argv, int nargs, const char *what,
		      struct oci_options *opts, void (*usage)(FILE *f))
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "verbose", no_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 },
	};
	int opt;

	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "+o:hv", longopts, NULL)) != -1) {
		switch (opt) {
		case 'o':
			if (cli_oci_options_parse(cmd, opts, optarg) < 0)
				return CLI_EXIT_USAGE;
			break;
		case 'v':
			cli_verbose_inc();
			break;
		case 'h':
			usage(stdout);
			return CLI_EXIT_OK;
		default:
			return cli_option_error(cmd, "+o:hv", argv);
		}
	}
	if (argc - optind != nargs) {
		log_error("%s: expected %s; run 'lazyerofs %s --help'", cmd, what, cmd);
		return CLI_EXIT_USAGE;
	}
	return -1;
}
