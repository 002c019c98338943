// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Helpers shared by the subcommands: the one-line answer to a bad option. */
#include <getopt.h>
#include <string.h>

#include "cli/cli.h"
#include "util/log.h"

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
