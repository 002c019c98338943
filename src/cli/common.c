// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Helpers shared by the subcommands: the one-line answer to a bad option, and -o lists of the
 * registry client's options. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "util/cleanup.h"
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

int cli_oci_options_parse(const char *cmd, struct oci_options *o, const char *s)
{
	_cleanup_free_ char *copy = strdup(s);
	char *save = NULL;

	if (!copy)
		return -ENOMEM;
	for (char *kv = strtok_r(copy, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
		struct util_error err;
		char *eq = strchr(kv, '=');
		int r;

		if (eq)
			*eq = 0;
		r = oci_options_set(o, kv, eq ? eq + 1 : NULL, &err);
		if (r == -ENOENT) {
			log_error("%s: unknown option '%s'; run 'lazyerofs %s --help'", cmd, kv, cmd);
			return -EINVAL;
		}
		if (r < 0) {
			log_error("%s: %s", cmd, err.message);
			return r;
		}
		if (r > 0)
			log_warning("%s", err.message);
	}
	return 0;
}
